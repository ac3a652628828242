//! The command line, checked: [`Cli`] as clap parses it, [`Settings`] once every value has
//! been understood. A bad value is an [`ArgError`] that names the option and the value.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;
use net::tls::Trust;

use crate::app::StartLogin;
use crate::command::valid_username;
use crate::conn::Target;
use crate::url::{ServerUrl, DEFAULT_URL};

/// A terminal chat client of the world server.
#[derive(Debug, Parser)]
#[command(name = "world-client", version, about, long_about = None)]
pub struct Cli {
    /// The server: tcp://HOST:PORT (its game port), tls://HOST:PORT (its TLS port),
    /// ws://HOST:PORT/PATH (its web port) or wss://HOST:PORT/PATH (its TLS port); the path
    /// defaults to /ws
    #[arg(value_name = "URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// A PEM file of the CAs (or the self-signed certificate) to trust, for tls:// and wss://;
    /// the system's CAs by default
    #[arg(long, value_name = "PATH", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// Trust any certificate (tls:// and wss://): for tests only, anyone on the way can read
    /// and change what is sent
    #[arg(long)]
    pub insecure: bool,
    /// The name the server's certificate must carry; the URL's host by default
    #[arg(long, value_name = "NAME")]
    pub tls_name: Option<String>,
    /// Log in as the guest NAME at once
    #[arg(long, value_name = "NAME", conflicts_with = "resume")]
    pub guest: Option<String>,
    /// Log in at once with the token saved at the last login to this server (done anyway
    /// when a token is saved and --guest is not given)
    #[arg(long)]
    pub resume: bool,
    /// Where the tokens file lives; $XDG_CONFIG_HOME/world-client or ~/.config/world-client
    /// by default
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Write what the connection does (connects, disconnects and why) to this file
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,
}

/// A value the client cannot use: the option, the value, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgError {
    /// The option, such as `--ca`, or `URL`.
    pub option: &'static str,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub why: String,
}

impl std::fmt::Display for ArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.option, self.why)
        } else {
            write!(f, "{} {:?}: {}", self.option, self.value, self.why)
        }
    }
}

impl std::error::Error for ArgError {}

impl ArgError {
    fn new(option: &'static str, value: impl Into<String>, why: impl Into<String>) -> ArgError {
        ArgError {
            option,
            value: value.into(),
            why: why.into(),
        }
    }
}

/// The environment variables that choose the default config directory.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// `XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<OsString>,
    /// `HOME`.
    pub home: Option<OsString>,
}

impl Env {
    /// This process's.
    pub fn from_process() -> Env {
        Env {
            xdg_config_home: std::env::var_os("XDG_CONFIG_HOME"),
            home: std::env::var_os("HOME"),
        }
    }

    /// `$XDG_CONFIG_HOME/world-client` when it is an absolute path, else
    /// `$HOME/.config/world-client`; `None` without either.
    pub fn default_config_dir(&self) -> Option<PathBuf> {
        let xdg = self
            .xdg_config_home
            .as_ref()
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        let base = xdg.or_else(|| {
            self.home
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
        Some(base.join("world-client"))
    }
}

/// Everything the client runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where and how to connect.
    pub target: Target,
    /// The login to make at once.
    pub start: StartLogin,
    /// Where the tokens file lives; `None` when no directory could be chosen.
    pub config_dir: Option<PathBuf>,
    /// The log file, if any.
    pub log: Option<PathBuf>,
}

impl Settings {
    /// Checks `cli` and makes the settings; `env` chooses the default config directory.
    pub fn from_cli(cli: Cli, env: &Env) -> Result<Settings, ArgError> {
        let url = ServerUrl::parse(&cli.url)
            .map_err(|e| ArgError::new("URL", cli.url.clone(), e.to_string()))?;
        let plain = |option: &'static str, value: String| {
            ArgError::new(
                option,
                value,
                format!("only tls:// and wss:// URLs have a certificate to check (URL is {url})"),
            )
        };
        if !url.is_tls() {
            if let Some(ca) = &cli.ca {
                return Err(plain("--ca", ca.display().to_string()));
            }
            if let Some(name) = &cli.tls_name {
                return Err(plain("--tls-name", name.clone()));
            }
            if cli.insecure {
                return Err(plain("--insecure", String::new()));
            }
        }
        let trust = match (&cli.ca, cli.insecure) {
            (Some(path), _) => Trust::CaFile(path.clone()),
            (None, true) => Trust::Insecure,
            (None, false) => Trust::System,
        };
        let target = Target {
            url,
            trust,
            tls_name: cli.tls_name.clone(),
        };
        // Reads the CA file and checks the name now, not at the first connect.
        if let Err(error) = target.negotiation() {
            return Err(match (&cli.ca, &cli.tls_name, error) {
                (_, Some(name), crate::conn::TargetError::Name(why)) => {
                    ArgError::new("--tls-name", name.clone(), why)
                }
                (Some(ca), _, e) => ArgError::new("--ca", ca.display().to_string(), e.to_string()),
                (None, _, e) => ArgError::new("URL", cli.url.clone(), e.to_string()),
            });
        }
        let start = match (cli.guest, cli.resume) {
            (Some(name), _) if !valid_username(&name) => {
                return Err(ArgError::new(
                    "--guest",
                    name,
                    "a username is 3-32 characters of [A-Za-z0-9_.-]",
                ))
            }
            (Some(name), _) => StartLogin::Guest(name),
            (None, true) => StartLogin::Resume,
            (None, false) => StartLogin::Auto,
        };
        let config_dir = match cli.config_dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                return Err(ArgError::new("--config-dir", "", "must name a directory"))
            }
            Some(dir) => Some(dir),
            None => env.default_config_dir(),
        };
        Ok(Settings {
            target,
            start,
            config_dir,
            log: cli.log,
        })
    }
}

/// The one line to print for a clap error: its first line without the `error: ` prefix.
pub fn one_line(error: &clap::Error) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or("bad arguments").trim();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, String> {
        let cli = Cli::try_parse_from(std::iter::once("world-client").chain(args.iter().copied()))
            .map_err(|e| one_line(&e))?;
        let env = Env {
            xdg_config_home: None,
            home: Some("/home/ann".into()),
        };
        Settings::from_cli(cli, &env).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_connect_to_the_local_server_and_keep_tokens_in_the_home_config() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.target.url.to_string(), "tcp://127.0.0.1:7000");
        assert_eq!(s.start, StartLogin::Auto);
        assert_eq!(
            s.config_dir,
            Some(PathBuf::from("/home/ann/.config/world-client"))
        );
    }

    #[test]
    fn options_are_taken() {
        let s = settings(&["wss://localhost:7443", "--insecure", "--guest", "ann"]).unwrap();
        assert_eq!(s.target.trust, Trust::Insecure);
        assert_eq!(s.start, StartLogin::Guest("ann".into()));
        let s = settings(&[
            "ws://127.0.0.1:7000/ws",
            "--resume",
            "--config-dir",
            "/tmp/c",
        ])
        .unwrap();
        assert_eq!(s.start, StartLogin::Resume);
        assert_eq!(s.config_dir, Some(PathBuf::from("/tmp/c")));
    }

    #[test]
    fn bad_values_are_one_line_naming_the_option_and_the_value() {
        assert_eq!(
            settings(&["localhost:7000"]).unwrap_err(),
            "URL \"localhost:7000\": must start with tcp://, tls://, ws:// or wss://"
        );
        assert_eq!(
            settings(&["--guest", "a b"]).unwrap_err(),
            "--guest \"a b\": a username is 3-32 characters of [A-Za-z0-9_.-]"
        );
        let ca = settings(&["tls://localhost:7443", "--ca", "/nonexistent/ca.pem"]).unwrap_err();
        assert!(ca.starts_with("--ca \"/nonexistent/ca.pem\": "), "{ca}");
        let plain = settings(&["--ca", "/x.pem"]).unwrap_err();
        assert!(
            plain.starts_with("--ca \"/x.pem\": only tls:// and wss://"),
            "{plain}"
        );
        let name = settings(&["tls://localhost:1", "--insecure", "--tls-name", "a b"]).unwrap_err();
        assert!(name.starts_with("--tls-name \"a b\": "), "{name}");
        let both = settings(&["--guest", "ann", "--resume"]).unwrap_err();
        assert!(
            both.contains("--guest") && both.contains("--resume"),
            "{both}"
        );
        assert!(!both.contains('\n'));
        let unknown = settings(&["--colour"]).unwrap_err();
        assert!(unknown.contains("--colour"), "{unknown}");
    }

    #[test]
    fn the_config_dir_follows_xdg_then_home() {
        let env = |xdg: Option<&str>, home: Option<&str>| Env {
            xdg_config_home: xdg.map(Into::into),
            home: home.map(Into::into),
        };
        assert_eq!(
            env(Some("/x"), Some("/h")).default_config_dir(),
            Some(PathBuf::from("/x/world-client"))
        );
        assert_eq!(
            env(Some("relative"), Some("/h")).default_config_dir(),
            Some(PathBuf::from("/h/.config/world-client"))
        );
        assert_eq!(env(None, None).default_config_dir(), None);
    }
}
