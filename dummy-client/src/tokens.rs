//! The tokens file: the login tokens of bot accounts, one `username token` line each.
//!
//! ```text
//! bot-00001 9f2c...e1
//! bot-00002 41d7...0b
//! ```
//!
//! A `register` run [`save`]s the tokens it was issued: the file is read again, this run's
//! lines replace those of the same usernames, every other line is kept, and the result is
//! written to a temporary file beside it and renamed over it, so that a crash or a full disk
//! never leaves half a file. A `resume` run [`Tokens::read`]s it at start.
//!
//! Blank lines and lines starting with `#` are skipped. Any other line must be a valid
//! username and a token separated by white space; usernames are unique ignoring case (as on
//! the server). A line that breaks this makes the whole file bad: the error names the file
//! and the line, never the token, since tokens are credentials.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::names::MAX_USERNAME_LEN;

/// Shortest username the server accepts (PROTOCOL.md, session rule 3).
const MIN_USERNAME_LEN: usize = 3;
/// Longest token the server accepts in `C2S_Resume`.
const MAX_TOKEN_LEN: usize = 256;

/// Why the tokens file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read tokens file \"{}\": {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A line is not `username token`.
    #[error("bad tokens file \"{}\": line {line}: {why}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// The file could not be written.
    #[error("cannot write tokens file \"{}\": {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

/// Tokens by username. Lookups ignore case, like the server's usernames.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Lowercased username -> (username as written, token).
    by_user: BTreeMap<String, (String, String)>,
}

impl Tokens {
    /// No tokens.
    pub fn new() -> Self {
        Tokens::default()
    }

    /// Sets the token of `username`, replacing any it had (whatever the case it was written in).
    pub fn insert(&mut self, username: &str, token: &str) {
        self.by_user.insert(
            username.to_ascii_lowercase(),
            (username.to_owned(), token.to_owned()),
        );
    }

    /// The token of `username`.
    pub fn get(&self, username: &str) -> Option<&str> {
        self.by_user
            .get(&username.to_ascii_lowercase())
            .map(|(_, token)| token.as_str())
    }

    /// Number of usernames with a token.
    pub fn len(&self) -> usize {
        self.by_user.len()
    }

    /// Whether there is no token at all.
    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }

    /// `(username, token)` pairs, ordered by username ignoring case.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_user
            .values()
            .map(|(user, token)| (user.as_str(), token.as_str()))
    }

    /// Every line of `newer` replaces the line of its username, if any.
    pub fn merge(&mut self, newer: &Tokens) {
        for (key, entry) in &newer.by_user {
            self.by_user.insert(key.clone(), entry.clone());
        }
    }

    /// Parses the text of a tokens file; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, TokensError> {
        let mut tokens = Tokens::new();
        let mut line_of = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            let bad = |why: String| TokensError::Line {
                path: path.to_owned(),
                line: number,
                why,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let [username, token] = fields[..] else {
                return Err(bad(format!(
                    "expected \"username token\" (got {} fields)",
                    fields.len()
                )));
            };
            check_username(username).map_err(bad)?;
            if token.len() > MAX_TOKEN_LEN {
                return Err(bad(format!(
                    "token of {username} must be 1..={MAX_TOKEN_LEN} bytes (got {} bytes)",
                    token.len()
                )));
            }
            if let Some(first) = line_of.insert(username.to_ascii_lowercase(), number) {
                return Err(bad(format!(
                    "username {username} appears twice (first on line {first})"
                )));
            }
            tokens.insert(username, token);
        }
        Ok(tokens)
    }

    /// Reads and parses the file at `path`; a missing file is an error.
    pub fn read(path: &Path) -> Result<Self, TokensError> {
        let text = fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_owned(),
            source,
        })?;
        Tokens::parse(&text, path)
    }

    /// Like [`read`](Self::read), but a missing file holds no tokens.
    pub fn read_or_empty(path: &Path) -> Result<Self, TokensError> {
        match fs::read_to_string(path) {
            Ok(text) => Tokens::parse(&text, path),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Tokens::new()),
            Err(source) => Err(TokensError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The file's text: one `username token` line each, ordered by username.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for (username, token) in self.iter() {
            text.push_str(username);
            text.push(' ');
            text.push_str(token);
            text.push('\n');
        }
        text
    }

    /// Writes [`to_text`](Self::to_text) to `path` atomically: to a temporary file beside it,
    /// flushed to disk, then renamed over it. Readers see the old file or the new one.
    pub fn write(&self, path: &Path) -> Result<(), TokensError> {
        let failed = |source| TokensError::Write {
            path: path.to_owned(),
            source,
        };
        let Some(name) = path.file_name() else {
            return Err(failed(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file path",
            )));
        };
        let mut temp_name = name.to_owned();
        temp_name.push(format!(".tmp{}", std::process::id()));
        let temp = path.with_file_name(temp_name);
        let written = write_new(&temp, self.to_text().as_bytes()).and_then(|()| {
            // The rename replaces the file in one step (on the same file system, which the
            // temporary file beside it is on).
            fs::rename(&temp, path)
        });
        if let Err(error) = written {
            // Best effort: the error that matters is the one returned.
            let _ = fs::remove_file(&temp);
            return Err(failed(error));
        }
        Ok(())
    }
}

/// Creates (or truncates) `path`, readable by its owner only where the platform has modes
/// (tokens are credentials), writes `bytes` and flushes them to disk.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Saves `new` into the tokens file at `path`: its lines replace those of the same usernames,
/// the file's other lines are kept, and the file is replaced atomically. Returns the number
/// of lines written from `new`. A file that exists but does not parse is left alone (error).
pub fn save(path: &Path, new: &Tokens) -> Result<usize, TokensError> {
    let mut all = Tokens::read_or_empty(path)?;
    all.merge(new);
    all.write(path)?;
    Ok(new.len())
}

/// A username the server accepts: 3..=32 chars of `[A-Za-z0-9_.-]`.
fn check_username(username: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    if (MIN_USERNAME_LEN..=MAX_USERNAME_LEN).contains(&username.len())
        && username.bytes().all(allowed)
    {
        Ok(())
    } else {
        Err(format!(
            "username must be {MIN_USERNAME_LEN}..={MAX_USERNAME_LEN} chars of [A-Za-z0-9_.-] \
             (got {username:?})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "dummy-client-tokens-{name}-{}-{}",
                std::process::id(),
                crate::names::new_run_id()
            ));
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self) -> PathBuf {
            self.0.join("bot-tokens.txt")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn tokens(pairs: &[(&str, &str)]) -> Tokens {
        let mut tokens = Tokens::new();
        for (user, token) in pairs {
            tokens.insert(user, token);
        }
        tokens
    }

    fn parse_error(text: &str) -> String {
        Tokens::parse(text, Path::new("t.txt"))
            .expect_err("the text should be refused")
            .to_string()
    }

    #[test]
    fn a_written_file_reads_back_the_same_tokens() {
        let dir = TempDir::new("roundtrip");
        let written = tokens(&[("bot-00002", "t2"), ("bot-00001", "t1")]);
        written.write(&dir.file()).unwrap();
        assert_eq!(
            fs::read_to_string(dir.file()).unwrap(),
            "bot-00001 t1\nbot-00002 t2\n"
        );
        let read = Tokens::read(&dir.file()).unwrap();
        assert_eq!(read, written);
        assert_eq!(read.get("bot-00001"), Some("t1"));
        assert_eq!(read.get("BOT-00002"), Some("t2"));
        assert_eq!(read.get("bot-00003"), None);
        let leftovers: Vec<_> = fs::read_dir(&dir.0).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = TempDir::new("mode");
        tokens(&[("bot-00001", "t1")]).write(&dir.file()).unwrap();
        let mode = fs::metadata(dir.file()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }

    #[test]
    fn saving_replaces_this_runs_usernames_and_keeps_the_others() {
        let dir = TempDir::new("merge");
        fs::write(
            dir.file(),
            "# a comment, dropped when the file is rewritten\n\
             alice a-old\nbot-00001 old1\n\nBOT-00002 old2\n",
        )
        .unwrap();
        let new = tokens(&[("bot-00001", "new1"), ("bot-00002", "new2")]);
        assert_eq!(save(&dir.file(), &new).unwrap(), 2);
        assert_eq!(
            fs::read_to_string(dir.file()).unwrap(),
            "alice a-old\nbot-00001 new1\nbot-00002 new2\n"
        );
    }

    #[test]
    fn saving_creates_a_missing_file() {
        let dir = TempDir::new("create");
        save(&dir.file(), &tokens(&[("bot-00001", "t1")])).unwrap();
        assert_eq!(fs::read_to_string(dir.file()).unwrap(), "bot-00001 t1\n");
    }

    #[test]
    fn saving_over_a_bad_file_fails_and_leaves_it_alone() {
        let dir = TempDir::new("bad-merge");
        fs::write(dir.file(), "bot-00001\n").unwrap();
        let error = save(&dir.file(), &tokens(&[("bot-00002", "t2")])).unwrap_err();
        assert!(
            matches!(error, TokensError::Line { line: 1, .. }),
            "{error}"
        );
        assert_eq!(fs::read_to_string(dir.file()).unwrap(), "bot-00001\n");
    }

    #[test]
    fn a_missing_file_is_an_error_to_read_but_empty_to_merge_into() {
        let dir = TempDir::new("missing");
        let error = Tokens::read(&dir.file()).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "cannot read tokens file \"{}\": ",
                dir.file().display()
            )),
            "{error}"
        );
        assert!(!error.contains('\n'));
        assert!(Tokens::read_or_empty(&dir.file()).unwrap().is_empty());
    }

    #[test]
    fn a_line_without_a_token_is_an_error_naming_file_and_line() {
        assert_eq!(
            parse_error("bot-00001 t1\nbot-00002\n"),
            r#"bad tokens file "t.txt": line 2: expected "username token" (got 1 fields)"#
        );
        assert_eq!(
            parse_error("bot-00001 t1 extra\n"),
            r#"bad tokens file "t.txt": line 1: expected "username token" (got 3 fields)"#
        );
    }

    #[test]
    fn a_bad_username_is_an_error_but_the_token_is_never_shown() {
        let error = parse_error("\n\nno way secret-token\n");
        assert!(error.contains("line 3: expected"), "{error}");
        let error = parse_error("ab secret-token\n");
        assert_eq!(
            error,
            r#"bad tokens file "t.txt": line 1: username must be 3..=32 chars of [A-Za-z0-9_.-] (got "ab")"#
        );
        let long = format!("bot-00001 {}\n", "s".repeat(300));
        let error = parse_error(&long);
        assert!(error.contains("(got 300 bytes)"), "{error}");
        assert!(!error.contains("sss"), "{error}");
    }

    #[test]
    fn a_username_twice_is_an_error_even_in_another_case() {
        assert_eq!(
            parse_error("bot-00001 t1\nBot-00001 t2\n"),
            r#"bad tokens file "t.txt": line 2: username Bot-00001 appears twice (first on line 1)"#
        );
    }

    #[test]
    fn blank_and_comment_lines_and_extra_white_space_are_skipped() {
        let parsed = Tokens::parse(
            "# tokens\n\n  bot-00001\tt1  \r\nbot-00002 t2",
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(parsed, tokens(&[("bot-00001", "t1"), ("bot-00002", "t2")]));
    }
}
