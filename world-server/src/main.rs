//! `world-server`: runs a world server with a TOML config, or with its embedded defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use config::ServerConfig;
use world_server::ServerError;

/// A tick-driven world server: rooms, chat, whispers and presence over protobuf frames.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML config file; without it the embedded defaults are used (see config/world-server.toml).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Address to listen on, overriding server.listen.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Log level, overriding log.level: trace, debug, info, warn, error, critical, off.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    // Before any file or thread: what this process writes is for its owner only.
    config::logging::restrict_new_files();
    let args = Args::parse();
    let mut config = match ServerConfig::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("world-server: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Err(error) =
        config::logging::init(&config.log, args.log_level.as_deref(), "world-server")
    {
        eprintln!("world-server: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("world-server: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.server.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                spdlog::error!("server: cannot listen on {}: {error}", config.server.listen);
                return ExitCode::FAILURE;
            }
        };
        match world_server::run(listener, config, shutdown_signal()).await {
            Ok(_) => ExitCode::SUCCESS,
            // Nothing has run yet: one line, like a bad config value.
            Err(error @ ServerError::Storage { .. }) => {
                eprintln!("world-server: {error}");
                ExitCode::from(error.exit_code())
            }
            Err(error) => {
                spdlog::error!("server: {error}");
                ExitCode::from(error.exit_code())
            }
        }
    });
    config::logging::flush();
    code
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => spdlog::info!("server: SIGINT received"),
        _ = terminate => spdlog::info!("server: SIGTERM received"),
    }
}
