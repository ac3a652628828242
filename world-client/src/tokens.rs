//! The tokens of earlier logins, one per server, in `tokens.toml` in the config directory.
//!
//! A token logs in as its account without the password, so the file is the owner's only:
//! created with mode 0600 in a directory of mode 0700 (on unix), written whole to a temporary
//! file beside it and renamed over it, so that a crash never leaves half a file. Tokens never
//! appear in messages, logs or `Debug` output.
//!
//! ```toml
//! [servers."tcp://127.0.0.1:7000"]
//! username = "ann"
//! token = "…64 hexadecimal characters…"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The name of the file in the config directory.
pub const FILE_NAME: &str = "tokens.toml";

/// The login saved for one server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// The account the token logs in as.
    pub username: String,
    /// The token of its last login (`S2C_AuthResult.token`).
    pub token: String,
}

impl fmt::Debug for Saved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saved")
            .field("username", &self.username)
            .field("token", &"<secret>")
            .finish()
    }
}

/// The file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    /// By server URL, as [`crate::url::ServerUrl`] prints it.
    #[serde(default)]
    servers: BTreeMap<String, Saved>,
}

/// Why the tokens file could not be read or written; says which file and why, never a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file is not what this client writes.
    #[error("{} is not a tokens file ({message}); remove it to start afresh", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said, without the file's text.
        message: String,
    },
    /// The directory or the file cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// The tokens file of one config directory.
#[derive(Clone, Debug)]
pub struct TokenStore {
    dir: PathBuf,
}

impl TokenStore {
    /// The store in `dir` (created when a token is first saved).
    pub fn new(dir: impl Into<PathBuf>) -> TokenStore {
        TokenStore { dir: dir.into() }
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The login saved for `server`, if any.
    pub fn load(&self, server: &str) -> Result<Option<Saved>, TokenError> {
        Ok(self.read()?.servers.remove(server))
    }

    /// Saves `saved` for `server`, replacing what was saved for it.
    pub fn save(&self, server: &str, saved: Saved) -> Result<(), TokenError> {
        let mut file = self.read()?;
        file.servers.insert(server.to_string(), saved);
        self.write(&file)
    }

    /// Forgets the login saved for `server`; nothing to do when there is none.
    pub fn forget(&self, server: &str) -> Result<(), TokenError> {
        let mut file = self.read()?;
        if file.servers.remove(server).is_some() {
            self.write(&file)?;
        }
        Ok(())
    }

    fn read(&self) -> Result<TokensFile, TokenError> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TokensFile::default()),
            Err(source) => return Err(TokenError::Read { path, source }),
        };
        toml::from_str(&text).map_err(|e| TokenError::Parse {
            path,
            message: e.message().to_string(),
        })
    }

    fn write(&self, file: &TokensFile) -> Result<(), TokenError> {
        create_private_dir(&self.dir).map_err(|source| TokenError::Write {
            path: self.dir.clone(),
            source,
        })?;
        let path = self.path();
        let text = format!(
            "# world-client: the token of the last login to each server. A token logs in as its\n\
             # account without the password: keep this file private.\n\n{}",
            toml::to_string(file).expect("a map of strings serializes")
        );
        let temporary = self.dir.join(format!("{FILE_NAME}.tmp"));
        write_private(&temporary, text.as_bytes())
            .and_then(|()| fs::rename(&temporary, &path))
            .map_err(|source| {
                let _ = fs::remove_file(&temporary);
                TokenError::Write { path, source }
            })
    }
}

/// Creates `dir` (and its parents) if needed, and makes it the owner's only.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// Writes `bytes` to `path`, created (or truncated) readable and writable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    // A file that existed keeps its mode through open: set it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("world-client-tokens-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn saved(username: &str, token: &str) -> Saved {
        Saved {
            username: username.into(),
            token: token.into(),
        }
    }

    #[test]
    fn tokens_are_saved_per_server_and_forgotten() {
        let dir = temp_dir("roundtrip");
        let store = TokenStore::new(dir.join("world-client"));
        assert_eq!(store.load("tcp://a:1").unwrap(), None);
        store.save("tcp://a:1", saved("ann", "aa")).unwrap();
        store.save("ws://b:2/ws", saved("bob", "bb")).unwrap();
        store.save("tcp://a:1", saved("ann", "cc")).unwrap();
        assert_eq!(store.load("tcp://a:1").unwrap(), Some(saved("ann", "cc")));
        assert_eq!(store.load("ws://b:2/ws").unwrap(), Some(saved("bob", "bb")));
        store.forget("tcp://a:1").unwrap();
        assert_eq!(store.load("tcp://a:1").unwrap(), None);
        assert_eq!(store.load("ws://b:2/ws").unwrap(), Some(saved("bob", "bb")));
        store.forget("tcp://nowhere:3").unwrap();
        let _ = fs::remove_dir_all(dir);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_the_owners_only_even_when_it_existed_open() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("modes");
        let config = dir.join("world-client");
        let store = TokenStore::new(&config);
        store.save("tcp://a:1", saved("ann", "aa")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.path()), 0o600);
        assert_eq!(mode(&config), 0o700);
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&config, fs::Permissions::from_mode(0o755)).unwrap();
        store.save("tcp://a:1", saved("ann", "bb")).unwrap();
        assert_eq!(mode(&store.path()), 0o600);
        assert_eq!(mode(&config), 0o700);
        assert!(!config.join("tokens.toml.tmp").exists());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_damaged_file_is_named_and_no_token_is_ever_shown() {
        let dir = temp_dir("damaged");
        let store = TokenStore::new(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(store.path(), "servers = 3 # secret-token-here\n").unwrap();
        let error = store.load("tcp://a:1").unwrap_err().to_string();
        assert!(
            error.contains("tokens.toml is not a tokens file"),
            "{error}"
        );
        assert!(!error.contains("secret-token-here"), "{error}");
        let shown = format!("{:?}", saved("ann", "0123abcd"));
        assert!(!shown.contains("0123abcd"), "{shown}");
        let _ = fs::remove_dir_all(dir);
    }
}
