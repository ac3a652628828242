//! [`ConfigError`]: every way loading a configuration or setting up logging can fail.
//!
//! Each message is one line that names the file (its *origin*), the key, the rule and the
//! value, so that an operator can fix the file without reading the code:
//!
//! ```text
//! invalid config "world-server.toml": server.tick_ms must be 1..=1000 (got 0)
//! ```

use std::{fmt::Display, io, ops::RangeInclusive};

/// Why a configuration could not be loaded, or logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read config \"{origin}\": {source}")]
    Read {
        /// The path as given.
        origin: String,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// The text is not valid TOML.
    #[error("invalid config \"{origin}\": TOML syntax error{}: {message}", at_line(*line))]
    Syntax {
        /// The name of the file (or the embedded default) in messages.
        origin: String,
        /// 1-based line of the error, when the parser reported a position.
        line: Option<usize>,
        /// The parser's description, folded onto one line.
        message: String,
    },

    /// A key that no section declares; usually a typo, so it is refused rather than ignored,
    /// with the nearest key of its section when one is near.
    #[error(
        "invalid config \"{origin}\": unknown key \"{key}\"{}",
        did_you_mean(suggestion)
    )]
    UnknownKey {
        /// The name of the file (or the embedded default) in messages.
        origin: String,
        /// Full dotted path of the key, e.g. `server.tick_msx`.
        key: String,
        /// The nearest known key of the same section, e.g. `server.tick_ms`.
        suggestion: Option<String>,
    },

    /// A value of the wrong type or that does not parse (e.g. a bad socket address).
    #[error("invalid config \"{origin}\": {key}: {message}")]
    BadValue {
        /// The name of the file (or the embedded default) in messages.
        origin: String,
        /// Full dotted path of the key, e.g. `server.listen`.
        key: String,
        /// What is wrong, ending with the offending value where known.
        message: String,
    },

    /// A well-typed value that breaks a rule: a range, a length, a relation to another key.
    #[error("invalid config \"{origin}\": {key} must be {rule} (got {got})")]
    Rule {
        /// The name of the file (or the embedded default) in messages.
        origin: String,
        /// Full dotted path of the key, e.g. `server.tick_ms`.
        key: String,
        /// The rule, phrased to follow "must be", e.g. `1..=1000`.
        rule: String,
        /// The offending value as written in TOML (strings quoted).
        got: String,
    },

    /// A `--log-level` given on the command line that is not a level name.
    #[error("invalid log level override: {0}")]
    LogLevel(String),

    /// The logger could not be built, e.g. the log file could not be opened.
    #[error("cannot set up logging: {0}")]
    Logging(String),
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|key| format!(" (did you mean \"{key}\"?)"))
        .unwrap_or_default()
}

fn at_line(line: Option<usize>) -> String {
    line.map(|line| format!(" at line {line}"))
        .unwrap_or_default()
}

/// Checks a configuration against its rules; every failure becomes a [`ConfigError::Rule`]
/// naming `origin`. A game checks its own settings with it ([`crate::GameConfig`]).
pub struct Rules<'a> {
    origin: &'a str,
}

impl<'a> Rules<'a> {
    /// Rules for the file `origin`.
    pub fn new(origin: &'a str) -> Self {
        Self { origin }
    }

    /// A failed rule on `key`.
    pub fn fail(&self, key: &str, rule: impl Into<String>, got: impl Into<String>) -> ConfigError {
        ConfigError::Rule {
            origin: self.origin.to_owned(),
            key: key.to_owned(),
            rule: rule.into(),
            got: got.into(),
        }
    }

    /// `value` must lie in `range`; the message shows the range as `lo..=hi`.
    pub fn range<T>(&self, key: &str, value: T, range: RangeInclusive<T>) -> Result<(), ConfigError>
    where
        T: PartialOrd + Display,
    {
        if range.contains(&value) {
            Ok(())
        } else {
            Err(self.fail(
                key,
                format!("{}..={}", range.start(), range.end()),
                value.to_string(),
            ))
        }
    }

    /// `value` must be at most `max_bytes` bytes long.
    pub fn max_bytes(&self, key: &str, value: &str, max_bytes: usize) -> Result<(), ConfigError> {
        if value.len() <= max_bytes {
            Ok(())
        } else {
            Err(self.fail(key, format!("at most {max_bytes} bytes"), quoted(value)))
        }
    }

    /// `value` must be `1..=max_chars` characters, each ASCII alphanumeric or one of `_.-`, so
    /// that names built from it are plain, printable and safe in logs and file names.
    pub(crate) fn name_prefix(
        &self,
        key: &str,
        value: &str,
        max_chars: usize,
    ) -> Result<(), ConfigError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if (1..=max_chars).contains(&value.chars().count()) && value.chars().all(allowed) {
            Ok(())
        } else {
            Err(self.fail(
                key,
                format!("1..={max_chars} chars of [A-Za-z0-9_.-]"),
                quoted(value),
            ))
        }
    }

    /// `value` of `key` must be less than `limit` of `limit_key`.
    pub(crate) fn less_than(
        &self,
        key: &str,
        value: usize,
        limit_key: &str,
        limit: usize,
    ) -> Result<(), ConfigError> {
        if value < limit {
            Ok(())
        } else {
            Err(self.fail(
                key,
                format!("less than {limit_key}"),
                format!("{value} >= {limit}"),
            ))
        }
    }
}

/// A string as TOML would write it, quotes and escapes included.
pub(crate) fn quoted(s: &str) -> String {
    // Debug escaping matches TOML's basic strings for everything a config value holds.
    format!("{s:?}")
}
