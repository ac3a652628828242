//! [`LogConfig`], the `[log]` section shared by both programs, and [`parse_log_level`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use spdlog::{Level, LevelFilter};

use crate::error::{quoted, ConfigError, Rules};

/// The level names accepted in `log.level` and `--log-level`, most verbose first.
pub const LOG_LEVELS: [&str; 7] = ["trace", "debug", "info", "warn", "error", "critical", "off"];

/// Turns a level name (one of [`LOG_LEVELS`], lowercase) into the filter that lets that level
/// and every more severe one through; `off` disables logging.
///
/// The error is a short phrase meant to follow the name of whatever gave the value, e.g.
/// `unknown log level "verbose" (expected one of trace, debug, info, warn, error, critical, off)`.
pub fn parse_log_level(s: &str) -> Result<LevelFilter, String> {
    let level = match s {
        "trace" => Level::Trace,
        "debug" => Level::Debug,
        "info" => Level::Info,
        "warn" => Level::Warn,
        "error" => Level::Error,
        "critical" => Level::Critical,
        "off" => return Ok(LevelFilter::Off),
        _ => {
            return Err(format!(
                "unknown log level {} (expected one of {})",
                quoted(s),
                LOG_LEVELS.join(", ")
            ))
        }
    };
    Ok(LevelFilter::MoreSevereEqual(level))
}

/// `[log]`: where log lines go and how much is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Least severe level written: one of `trace`, `debug`, `info`, `warn`, `error`,
    /// `critical`, `off`. Default `"info"`: start-up, shutdown and disconnects with their
    /// reasons, but nothing per message (hot paths log at `debug`). A `--log-level` on the
    /// command line overrides it.
    pub level: String,
    /// Path of a log file rotated by size, written in addition to the console; empty means
    /// console only. Default `""`, so that a fresh checkout writes no files anywhere.
    pub file: PathBuf,
    /// Size in MiB at which the log file is rotated, 1..=4096. Default 64: hours of `info`
    /// logs under load, yet small enough to open in an editor.
    pub file_max_size_mb: u64,
    /// Number of log files kept, the current one included, 1..=1000; the oldest is deleted
    /// on rotation. Default 5, so logs use at most `5 * file_max_size_mb` MiB of disk.
    pub file_max_files: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            file: PathBuf::new(),
            file_max_size_mb: 64,
            file_max_files: 5,
        }
    }
}

impl LogConfig {
    /// The log file, or `None` when logging goes to the console only.
    pub fn file_path(&self) -> Option<&Path> {
        (!self.file.as_os_str().is_empty()).then_some(self.file.as_path())
    }

    /// The filter for [`level`](Self::level); `Err` only if the config was not validated.
    pub fn level_filter(&self) -> Result<LevelFilter, String> {
        parse_log_level(&self.level)
    }

    /// The rotation size in bytes.
    pub fn file_max_size_bytes(&self) -> u64 {
        self.file_max_size_mb * 1024 * 1024
    }

    pub(crate) fn validate(&self, rules: &Rules<'_>) -> Result<(), ConfigError> {
        if parse_log_level(&self.level).is_err() {
            return Err(rules.fail(
                "log.level",
                format!("one of {}", LOG_LEVELS.join(", ")),
                quoted(&self.level),
            ));
        }
        rules.range("log.file_max_size_mb", self.file_max_size_mb, 1..=4096)?;
        rules.range("log.file_max_files", self.file_max_files, 1..=1000)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_level_parses_and_off_disables() {
        for name in LOG_LEVELS {
            assert!(parse_log_level(name).is_ok(), "{name}");
        }
        assert_eq!(parse_log_level("off"), Ok(LevelFilter::Off));
        assert_eq!(
            parse_log_level("warn"),
            Ok(LevelFilter::MoreSevereEqual(Level::Warn))
        );
    }

    #[test]
    fn unknown_log_level_is_an_error_naming_the_value_and_the_choices() {
        assert_eq!(
            parse_log_level("verbose").unwrap_err(),
            "unknown log level \"verbose\" (expected one of trace, debug, info, warn, error, critical, off)"
        );
    }
}
