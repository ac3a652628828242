//! Logging set-up for both binaries, over spdlog-rs.
//!
//! [`init`] replaces spdlog's default logger, so `spdlog::info!` and friends work from every
//! crate without passing a logger around. Lines look like
//!
//! ```text
//! [2025-01-02 03:04:05.678] [world-server] [info] listening on 127.0.0.1:7000
//! ```
//!
//! where the bracketed name is the `component` given to [`init`] (spdlog's logger name,
//! printed by its default `FullFormatter`).
//!
//! Console output goes to stderr, leaving stdout to a program's real output (the
//! dummy-client's report). The console is unbuffered; the log file is buffered and flushed at
//! every warning or worse, once a second, at [`flush`], and by spdlog at process exit.

use std::{path::Path, sync::Arc, time::Duration};

use spdlog::{
    sink::{RotatingFileSink, RotationPolicy, Sink, StdStreamSink},
    Level, LevelFilter, Logger,
};

use crate::{error::ConfigError, log::LogConfig, parse_log_level};

/// How often buffered file output is written out even when nothing severe is logged, so that
/// `tail -f` shows recent lines.
const FLUSH_PERIOD: Duration = Duration::from_secs(1);

/// Installs the default logger described by `log`, named `component` in every line.
///
/// `level_override` (from `--log-level`) wins over `log.level`. When `log.file` is set, lines
/// also go to that file, rotated at `file_max_size_mb` with `file_max_files` kept. May be
/// called again; the new logger replaces the old one.
pub fn init(
    log: &LogConfig,
    level_override: Option<&str>,
    component: &str,
) -> Result<(), ConfigError> {
    let level = match level_override {
        Some(level) => parse_log_level(level).map_err(ConfigError::LogLevel)?,
        None => log
            .level_filter()
            .map_err(|message| ConfigError::Logging(format!("log.level: {message}")))?,
    };

    let console = StdStreamSink::builder()
        .stderr()
        .build_arc()
        .map_err(|err| ConfigError::Logging(format!("cannot open stderr: {err}")))?;
    let mut sinks: Vec<Arc<dyn Sink>> = vec![console];

    if let Some(path) = log.file_path() {
        create_owner_only(path).map_err(|err| {
            ConfigError::Logging(format!(
                "cannot open log file \"{}\": {err}",
                path.display()
            ))
        })?;
        let file = RotatingFileSink::builder()
            .base_path(path)
            .rotation_policy(RotationPolicy::FileSize(log.file_max_size_bytes()))
            .max_files(log.file_max_files)
            .build_arc()
            .map_err(|err| {
                ConfigError::Logging(format!(
                    "cannot open log file \"{}\": {err}",
                    path.display()
                ))
            })?;
        sinks.push(file);
    }

    let logger = Logger::builder()
        .name(component)
        .level_filter(level)
        .flush_level_filter(LevelFilter::MoreSevereEqual(Level::Warn))
        .sinks(sinks)
        .build_arc()
        .map_err(|err| ConfigError::Logging(format!("component name \"{component}\": {err}")))?;
    if log.file_path().is_some() {
        logger.set_flush_period(Some(FLUSH_PERIOD));
    }
    spdlog::set_default_logger(logger);
    Ok(())
}

/// Creates the log file (and its directory) if it does not exist, readable by the owner only
/// on unix: spdlog would create it with the process's umask. An existing file keeps its mode.
/// The files of later rotations are spdlog's; [`restrict_new_files`] covers them.
fn create_owner_only(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}

/// Makes every file this process creates from now on readable and writable by its owner only
/// (umask 077 on unix; nothing elsewhere): log files and their rotations, the database and
/// its journals, the dummy client's tokens. Call first thing in `main`, before any thread.
/// Files that exist keep their mode.
pub fn restrict_new_files() {
    #[cfg(unix)]
    // SAFETY: umask(2) only replaces the process's file mode creation mask; it cannot fail and
    // touches no memory of ours.
    unsafe {
        libc::umask(0o077);
    }
}

/// Writes out everything the default logger has buffered; call before leaving `main`
/// on paths that may skip spdlog's own exit hook.
pub fn flush() {
    spdlog::default_logger().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_level_override_is_rejected_before_anything_is_installed() {
        let err = init(&LogConfig::default(), Some("chatty"), "test").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid log level override: unknown log level \"chatty\" (expected one of trace, debug, info, warn, error, critical, off)"
        );
    }

    #[test]
    fn log_file_is_created_owner_only_and_receives_lines_with_the_component_and_level() {
        let dir = std::env::temp_dir().join(format!("config-logging-test-{}", std::process::id()));
        let path = dir.join("test.log");
        let config = LogConfig {
            file: path.clone(),
            ..LogConfig::default()
        };
        init(&config, Some("debug"), "unit-test").unwrap();
        spdlog::debug!("hello from the test");
        spdlog::trace!("below the level");
        flush();

        let written = std::fs::read_to_string(&path).unwrap();
        #[cfg(unix)]
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777
        };
        std::fs::remove_dir_all(&dir).unwrap();
        #[cfg(unix)]
        assert_eq!(mode, 0o600, "{mode:o}");
        assert!(
            written.contains("[unit-test] [debug] hello from the test"),
            "{written}"
        );
        assert!(!written.contains("below the level"), "{written}");
    }
}
