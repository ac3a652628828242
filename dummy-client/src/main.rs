//! `dummy-client`: loads a world server with a swarm of chat bots and reports what it saw.
//!
//! ```text
//! dummy-client [--config PATH] [--server ADDR:PORT[,ADDR:PORT...]] [--bots N] [--duration SECS]
//!              [--auth guest|register|login|resume] [--tokens PATH]
//!              [--transport tcp|ws] [--tls] [--ca PATH | --tls-insecure] [--tls-name NAME]
//!              [--scenario chat|arena] [--json PATH] [--html PATH] [--log-level LEVEL]
//!              [--resumable] [--chaos RATE]
//! ```
//!
//! Flags override the config file; without `--config` the embedded defaults are used. The
//! report goes to stdout, as a versioned JSON document to `--json PATH`, and as a
//! self-contained page to `--html PATH`; both files are opened before the run starts, so that
//! a path that cannot be written is a usage error and not a lost run. Exit code 0 when the run passed,
//! 1 when it did not (one line on stderr says why), 2 for a bad config or argument, or a
//! missing or bad tokens file. Ctrl-C stops the run early and still reports; a second Ctrl-C
//! quits at once.
//!
//! Bots log in as guests by default. To load the server with accounts, create them once,
//! then log in to them, or resume with the tokens the first run saved:
//!
//! ```text
//! dummy-client --auth register --bots 1000 --tokens bot-tokens.txt   # creates bot-00001..
//! dummy-client --auth login --bots 1000
//! dummy-client --auth resume --bots 1000 --tokens bot-tokens.txt
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use dummy_client::ClientConfig;
use tokio_util::sync::CancellationToken;

/// Loads a world server with a swarm of chat bots and reports sent, received, lost and
/// latency. Exit code 0 when nothing was lost, 1 when the run failed, 2 for bad arguments.
#[derive(Debug, Parser)]
#[command(name = "dummy-client", version)]
struct Cli {
    /// TOML config file (default: the embedded defaults, see config/dummy-client.toml).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Server to load, overriding client.server; or the nodes of a cluster, comma-separated
    /// (overriding client.servers), bot i on the (i mod n)-th. Host names are resolved once
    /// at start.
    #[arg(long, value_name = "ADDR:PORT[,ADDR:PORT...]")]
    server: Option<String>,
    /// Number of bots, overriding client.bots.
    #[arg(long, value_name = "N")]
    bots: Option<usize>,
    /// Seconds of chatting from the first connect, overriding client.duration_secs.
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// How bots log in, overriding bots.auth: guest, register (create the accounts
    /// {name_prefix}00001.. and save their tokens), login (with bots.password) or resume
    /// (with the saved tokens).
    #[arg(long, value_name = "MODE")]
    auth: Option<String>,
    /// Tokens file, overriding bots.tokens_file: register saves to it, resume reads it.
    #[arg(long, value_name = "PATH")]
    tokens: Option<PathBuf>,
    /// How bots carry their frames, overriding client.transport: tcp, or ws (WebSocket at
    /// client.ws_path, "/ws" by default).
    #[arg(long, value_name = "tcp|ws", value_parser = ["tcp", "ws"])]
    transport: Option<String>,
    /// Connect with TLS (to the server's tls.listen port), overriding client.tls.
    #[arg(long)]
    tls: bool,
    /// With --tls: trust the certificate authorities (or the self-signed certificate) in
    /// this PEM file, overriding client.tls_ca.
    #[arg(long, value_name = "PATH")]
    ca: Option<PathBuf>,
    /// With --tls: trust any certificate (a test server's self-signed one; never a real
    /// server), overriding client.tls_insecure.
    #[arg(long)]
    tls_insecure: bool,
    /// With --tls: the name the server's certificate must carry (default: the server's
    /// address), overriding client.tls_name.
    #[arg(long, value_name = "NAME")]
    tls_name: Option<String>,
    /// Also write the report as a JSON document (schema_version 1) to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Also write the report as a self-contained HTML page to this file: throughput, latency,
    /// errors and disconnects over time, the latency distribution and the settings.
    #[arg(long, value_name = "PATH")]
    html: Option<PathBuf>,
    /// Log level, overriding log.level: trace, debug, info, warn, error, critical, off.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// What the bots do: "chat" (rooms and chat lines on world-server, the default) or
    /// "arena" (random walks in the arena game, examples/arena, every bot's view checked).
    #[arg(long, value_name = "NAME", default_value = "chat", value_parser = ["chat", "arena"])]
    scenario: String,
    /// Log bots in with resumable sessions (bots.resumable): a bot whose connection drops
    /// takes its session back and gets every line it missed.
    #[arg(long)]
    resumable: bool,
    /// Drop each bot's connection RATE times a minute on purpose, at random (closing the
    /// socket, or stalling it), overriding bots.chaos_per_min; the bots resume, and the
    /// report counts resumes, their latency, and lines lost or delivered twice.
    #[arg(long, value_name = "RATE")]
    chaos: Option<f64>,
}

/// Exit code of a bad config or argument.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // Before any file or thread: what this process writes is for its owner only.
    config::logging::restrict_new_files();
    let cli = Cli::parse();
    let config = match load_config(&cli) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("dummy-client: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(error) = config::logging::init(&config.log, cli.log_level.as_deref(), "dummy-client")
    {
        eprintln!("dummy-client: {error}");
        return ExitCode::from(EXIT_USAGE);
    }
    let outputs = match Outputs::open(cli.json.as_deref(), cli.html.as_deref()) {
        Ok(outputs) => outputs,
        Err(message) => {
            eprintln!("dummy-client: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let outcome = if cli.scenario == "arena" {
        run_arena(config, outputs)
    } else {
        run(config, outputs)
    };
    let code = match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("dummy-client: {error:#}");
            ExitCode::FAILURE
        }
    };
    config::logging::flush();
    code
}

/// The config file (or the embedded defaults) with the flags applied, validated again.
fn load_config(cli: &Cli) -> Result<ClientConfig, String> {
    let mut config = ClientConfig::load(cli.config.as_deref()).map_err(|e| e.to_string())?;
    if let Some(server) = &cli.server {
        let servers = server
            .split(',')
            .map(|one| resolve(one.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        config.client.server = servers[0];
        config.client.servers = if servers.len() > 1 {
            servers
        } else {
            Vec::new()
        };
    }
    if let Some(bots) = cli.bots {
        config.client.bots = bots;
    }
    if let Some(duration) = cli.duration {
        config.client.duration_secs = duration;
    }
    if let Some(auth) = &cli.auth {
        config.bots.auth = auth.clone();
    }
    if let Some(tokens) = &cli.tokens {
        config.bots.tokens_file = tokens.clone();
    }
    if cli.resumable {
        config.bots.resumable = true;
    }
    if let Some(chaos) = cli.chaos {
        config.bots.chaos_per_min = chaos;
    }
    if let Some(transport) = &cli.transport {
        config.client.transport = transport.clone();
    }
    if cli.tls {
        config.client.tls = true;
    }
    if let Some(ca) = &cli.ca {
        config.client.tls_ca = ca.clone();
    }
    if cli.tls_insecure {
        config.client.tls_insecure = true;
    }
    if let Some(name) = &cli.tls_name {
        config.client.tls_name = name.clone();
    }
    let tls_options = cli.ca.is_some() || cli.tls_insecure || cli.tls_name.is_some();
    if tls_options && !config.client.tls {
        return Err(
            "--ca, --tls-insecure and --tls-name go with --tls (or client.tls = true)".into(),
        );
    }
    let origin = match &cli.config {
        Some(path) => format!("{} and command line", path.display()),
        None => "command line".to_owned(),
    };
    config.validate(&origin).map_err(|e| e.to_string())?;
    Ok(config)
}

/// `ADDR:PORT`, or `HOST:PORT` resolved to its first address.
fn resolve(server: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = server.parse() {
        return Ok(addr);
    }
    let invalid = |why: String| format!("invalid argument --server {server:?}: {why}");
    server
        .to_socket_addrs()
        .map_err(|e| invalid(e.to_string()))?
        .next()
        .ok_or_else(|| invalid("resolves to no address".to_owned()))
}

/// What both scenarios' reports give the command line.
trait Verdict: std::fmt::Display {
    fn passed(&self) -> bool;
    fn failures(&self) -> Vec<String>;
    fn to_json(&self) -> String;
    fn to_html(&self) -> String;
}

impl Verdict for dummy_client::Report {
    fn passed(&self) -> bool {
        dummy_client::Report::passed(self)
    }
    fn failures(&self) -> Vec<String> {
        dummy_client::Report::failures(self)
    }
    fn to_json(&self) -> String {
        dummy_client::Report::to_json(self)
    }
    fn to_html(&self) -> String {
        dummy_client::Report::to_html(self)
    }
}

impl Verdict for dummy_client::arena_swarm::ArenaReport {
    fn passed(&self) -> bool {
        dummy_client::arena_swarm::ArenaReport::passed(self)
    }
    fn failures(&self) -> Vec<String> {
        dummy_client::arena_swarm::ArenaReport::failures(self)
    }
    fn to_json(&self) -> String {
        dummy_client::arena_swarm::ArenaReport::to_json(self)
    }
    fn to_html(&self) -> String {
        dummy_client::arena_swarm::ArenaReport::to_html(self)
    }
}

/// The report files, opened before the run.
struct Outputs {
    files: Vec<Output>,
}

struct Output {
    flag: &'static str,
    path: PathBuf,
    file: std::fs::File,
    /// Made by this run: removed when the run does not start.
    created: bool,
    html: bool,
}

impl Outputs {
    /// Opens (creating when absent, not yet truncating) `--json` and `--html`; `Err` is one line
    /// naming the flag, the path and why it cannot be written. A missing directory of the
    /// file is made when its own parent exists (`reports/run.json` makes `reports/`); deeper
    /// missing directories are refused, as a likely typo.
    fn open(json: Option<&Path>, html: Option<&Path>) -> Result<Outputs, String> {
        if let (Some(json), Some(html)) = (json, html) {
            if json == html {
                return Err(format!(
                    "invalid argument --html {:?}: the same file as --json",
                    html.display().to_string()
                ));
            }
        }
        let mut outputs = Outputs { files: Vec::new() };
        for (flag, path, html) in [("--json", json, false), ("--html", html, true)] {
            let Some(path) = path else { continue };
            let invalid = |why: String| {
                format!(
                    "invalid argument {flag} {:?}: {why}",
                    path.display().to_string()
                )
            };
            if path.is_dir() {
                return Err(invalid("a directory, not a file".to_owned()));
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let up = dir.parent().filter(|u| !u.as_os_str().is_empty());
                if !dir.exists() && up.is_none_or(Path::exists) {
                    std::fs::create_dir(dir).map_err(|e| {
                        invalid(format!("cannot make its directory {}: {e}", dir.display()))
                    })?;
                }
            }
            let created = !path.exists();
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| invalid(format!("cannot write it: {e}")))?;
            outputs.files.push(Output {
                flag,
                path: path.to_owned(),
                file,
                created,
                html,
            });
        }
        Ok(outputs)
    }

    /// Writes `report` to every file.
    fn write(self, report: &impl Verdict) -> anyhow::Result<()> {
        use std::io::Write as _;
        for mut output in self.files {
            let text = if output.html {
                report.to_html()
            } else {
                report.to_json() + "\n"
            };
            output
                .file
                .set_len(0)
                .and_then(|()| output.file.write_all(text.as_bytes()))
                .and_then(|()| output.file.sync_all())
                .with_context(|| {
                    format!(
                        "cannot write the {} report to {}",
                        output.flag,
                        output.path.display()
                    )
                })?;
        }
        Ok(())
    }

    /// The run did not start: the files this run made go again.
    fn discard(self) {
        for output in self.files {
            if output.created {
                drop(output.file);
                let _ = std::fs::remove_file(&output.path);
            }
        }
    }
}

fn run(config: ClientConfig, outputs: Outputs) -> anyhow::Result<ExitCode> {
    scenario(outputs, |shutdown| async move {
        dummy_client::run(config, shutdown).await.map_err(|error| {
            eprintln!("dummy-client: {error}");
        })
    })
}

fn run_arena(config: ClientConfig, outputs: Outputs) -> anyhow::Result<ExitCode> {
    scenario(outputs, |shutdown| async move {
        dummy_client::arena_swarm::run_arena(config, shutdown)
            .await
            .map_err(|error| {
                eprintln!("dummy-client: {error}");
            })
    })
}

/// Runs a scenario on a runtime of its own (Ctrl-C stops it early), prints its report (and
/// writes it to `outputs`), and turns its verdict into the exit code. `Err` from the
/// scenario is a run that could not start: a usage error, already told.
fn scenario<R, F>(
    outputs: Outputs,
    start: impl FnOnce(CancellationToken) -> F,
) -> anyhow::Result<ExitCode>
where
    R: Verdict,
    F: std::future::Future<Output = Result<R, ()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_ctrl_c(shutdown.clone()));
        let Ok(report) = start(shutdown).await else {
            outputs.discard();
            return Ok(ExitCode::from(EXIT_USAGE));
        };
        print!("{report}");
        outputs.write(&report)?;
        if report.passed() {
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!("dummy-client: FAILED: {}", report.failures().join("; "));
            Ok(ExitCode::FAILURE)
        }
    })
}

/// First Ctrl-C: stop the run early (it still drains and reports). Second: quit at once.
async fn stop_on_ctrl_c(shutdown: CancellationToken) {
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handler: the run simply cannot be interrupted gracefully.
        return;
    }
    eprintln!("dummy-client: stopping early: draining, then reporting (Ctrl-C again to quit)");
    shutdown.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}
