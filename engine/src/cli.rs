//! The command line that every game's server binary shares, so that a game's `main` is one
//! call:
//!
//! ```no_run
//! # struct MyGame;
//! # impl engine::Game for MyGame {
//! #     fn register(_: &mut engine::Setup<Self>)
//! #         -> Result<(), engine::DispatchError> { Ok(()) }
//! # }
//! fn main() -> std::process::ExitCode {
//!     engine::cli::main("my-game", "My game's server.", |_config| MyGame)
//! }
//! ```
//!
//! Options: `--config PATH` (a world-server TOML file; without it the embedded defaults),
//! `--listen ADDR:PORT` (overrides `server.listen`), `--web ADDR:PORT|off` (overrides
//! `web.listen`: the page and WebSocket), `--tls-listen ADDR:PORT`, `--tls-cert PATH` and
//! `--tls-key PATH` (override `tls.*`), `--admin ADDR:PORT` (overrides `admin.listen`:
//! metrics, health and the admin page), `--log-level LEVEL` (overrides `log.level`),
//! `--record DIR` and `--record-max-mib MIB` (every input of the world recorded:
//! [`crate::record`]). The storage is the game's (`Game::STORAGE`) unless `storage.backend`
//! names another. `replay DIR` (with `--config PATH`, under another configuration) runs a
//! recording through the world again instead of serving: exit 0 when every tick's output is
//! the recorded one, 1 otherwise. It stops gracefully on SIGINT or
//! SIGTERM and exits 0; a configuration it cannot use exits 2 with one line saying why, and a
//! failure at run time exits 1.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use config::{GameConfig, NoSettings, ServerConfig};

use crate::server::{bind, bind_port, open_storage, run_recording, ServerError};
use crate::world::Game;

/// The options.
#[derive(Parser, Debug)]
struct Args {
    /// What to do instead of serving.
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML config file; without it the embedded defaults are used (see config/world-server.toml).
    /// With `replay`: the configuration to replay under, instead of the recorded one.
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    /// Records every input of the world, with its tick and time, to segment files in DIR
    /// (made if missing; it must hold no recording yet), for `replay`.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// The most MiB a recording takes, all segments together: it stops there (1-1048576).
    #[arg(long, value_name = "MIB", default_value_t = 1024, requires = "record")]
    record_max_mib: u64,
    /// Address to listen on, overriding server.listen (a host name is resolved).
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// Address of the web port (the browser page, WebSocket), overriding web.listen; "off"
    /// for none. Each server on one machine needs its own.
    #[arg(long, value_name = "ADDR:PORT|off")]
    web: Option<String>,
    /// Address of the TLS port (frames, https:// and wss://), overriding tls.listen.
    #[arg(long, value_name = "ADDR:PORT")]
    tls_listen: Option<String>,
    /// The TLS certificate chain (PEM), overriding tls.cert.
    #[arg(long, value_name = "PATH")]
    tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM), overriding tls.key.
    #[arg(long, value_name = "PATH")]
    tls_key: Option<PathBuf>,
    /// Address of the admin listener (/metrics, /healthz, /readyz, the admin page),
    /// overriding admin.listen. Never the game port.
    #[arg(long, value_name = "ADDR:PORT")]
    admin: Option<String>,
    /// NATS server of the cluster this node is part of, overriding cluster.nats_url.
    #[arg(long, value_name = "nats://HOST:PORT")]
    nats: Option<String>,
    /// This node's name in the cluster, overriding cluster.node.
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Log level, overriding log.level: trace, debug, info, warn, error, critical, off.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

/// What the binary does instead of serving.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Runs a recording made with --record through the world again, tick by tick, and stops
    /// at the first tick whose output differs from the recorded one, saying what differs.
    /// Exits 0 when every tick matched, 1 otherwise.
    Replay {
        /// The recording's directory.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Parses the command line and runs the game `make_game` builds from the configuration,
/// until SIGINT or SIGTERM. `program` names the binary in `--help` and in error lines. The
/// game has no settings of its own: a key in `[game]` is refused (see [`main_with`]).
pub fn main<G: Game>(
    program: &'static str,
    about: &'static str,
    make_game: impl FnOnce(&ServerConfig) -> G,
) -> ExitCode {
    main_with(program, about, |config, _: NoSettings| make_game(config))
}

/// [`main`] for a game with settings of its own, `C`: the `[game]` section of the file, read
/// and checked at start like every other key (a bad one stops the server with one line, exit
/// 2), then given to `make_game` with the rest of the configuration.
///
/// ```no_run
/// # struct Arena { size: f32 }
/// # impl engine::Game for Arena {
/// #     fn register(_: &mut engine::Setup<Self>)
/// #         -> Result<(), engine::DispatchError> { Ok(()) }
/// # }
/// #[derive(Default, serde::Deserialize)]
/// #[serde(default, deny_unknown_fields)]
/// struct Rules {
///     size: f32,
/// }
///
/// impl config::GameConfig for Rules {
///     fn check(&self, rules: &config::Rules) -> Result<(), config::ConfigError> {
///         rules.range("game.size", self.size, 1.0..=1e6)
///     }
/// }
///
/// fn main() -> std::process::ExitCode {
///     engine::cli::main_with("arena", "An arena.", |_, rules: Rules| Arena { size: rules.size })
/// }
/// ```
pub fn main_with<G: Game, C: GameConfig>(
    program: &'static str,
    about: &'static str,
    make_game: impl FnOnce(&ServerConfig, C) -> G,
) -> ExitCode {
    // Before any file or thread: what this process writes is for its owner only.
    config::logging::restrict_new_files();
    let command = Args::command()
        .name(program)
        .about(about)
        .version(env!("CARGO_PKG_VERSION"));
    let args = match Args::from_arg_matches(&command.get_matches()) {
        Ok(args) => args,
        Err(error) => error.exit(),
    };
    if let Some(Command::Replay { dir }) = &args.command {
        return replay(program, dir, &args, make_game);
    }
    if !(1..=1 << 20).contains(&args.record_max_mib) {
        eprintln!(
            "{program}: --record-max-mib must be 1-1048576 (got {})",
            args.record_max_mib
        );
        return ExitCode::from(2);
    }
    let record = args.record.clone().map(|dir| crate::record::RecordTo {
        dir,
        max_bytes: args.record_max_mib << 20,
    });
    let mut config = match ServerConfig::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{program}: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = args.listen {
        match config::addr::resolve(&listen) {
            Ok(addr) => config.server.listen = addr,
            Err(rule) => {
                eprintln!("{program}: --listen {listen:?} must be {rule}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(admin) = args.admin {
        config.admin.listen = admin;
    }
    if let Some(web) = args.web {
        config.web.listen = if web == "off" { String::new() } else { web };
    }
    if let Some(listen) = args.tls_listen {
        config.tls.listen = listen;
    }
    if let Some(cert) = args.tls_cert {
        config.tls.cert = cert;
    }
    if let Some(key) = args.tls_key {
        config.tls.key = key;
    }
    if let Some(nats) = args.nats {
        config.cluster.nats_url = nats;
    }
    if let Some(node) = args.node {
        config.cluster.node = node;
    }
    if let Err(error) = config.validate("the command line") {
        eprintln!("{program}: {error}");
        return ExitCode::from(2);
    }
    let settings: C = match config.game_config() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{program}: {error}");
            return ExitCode::from(2);
        }
    };
    config.apply_game_defaults(G::NAME, G::STORAGE);
    if let Err(error) = config::logging::init(&config.log, args.log_level.as_deref(), program) {
        eprintln!("{program}: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{program}: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let run = async {
            let listener = bind_port("server.listen", config.server.listen).await?;
            // The other ports and the certificate before the database: a port in use or a
            // certificate that cannot serve is one line, with nothing else done.
            let listeners = bind::<G>(listener, &config).await?;
            let storage = open_storage(&config)?;
            let game = make_game(&config, settings);
            run_recording(listeners, config, game, storage, record, shutdown_signal()).await
        };
        exit_code(program, run).await
    });
    config::logging::flush();
    code
}

/// `replay DIR`: the recording through the world of `make_game`; what it found on stdout.
fn replay<G: Game, C: GameConfig>(
    program: &str,
    dir: &std::path::Path,
    args: &Args,
    make_game: impl FnOnce(&ServerConfig, C) -> G,
) -> ExitCode {
    let config = match &args.config {
        Some(path) => match ServerConfig::load(Some(path)) {
            Ok(config) => Some(config),
            Err(error) => {
                eprintln!("{program}: {error}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    // What the world logs as it runs again is the run's, not news: warnings and worse only.
    let level = args.log_level.as_deref().unwrap_or("warn");
    if let Err(error) = config::logging::init(&config::LogConfig::default(), Some(level), program) {
        eprintln!("{program}: {error}");
        return ExitCode::from(2);
    }
    let started = std::time::Instant::now();
    let mut stdout = std::io::stdout();
    let result = crate::record::replay::<G>(
        dir,
        config,
        |config| {
            let settings: C = config.game_config().map_err(|e| e.to_string())?;
            Ok(make_game(config, settings))
        },
        &mut stdout,
    );
    config::logging::flush();
    match result {
        Ok(replayed) => {
            println!(
                "replay: {} ticks and {} inputs in {:.2} s: every tick's output is the recorded one; {}",
                replayed.ticks,
                replayed.inputs,
                started.elapsed().as_secs_f64(),
                match &replayed.end {
                    Some(why) => format!("the recording ended: {why}"),
                    None => "the recording has no end record (the server was killed)".to_string(),
                }
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("replay: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn exit_code<T>(
    program: &str,
    run: impl Future<Output = Result<T, ServerError>>,
) -> ExitCode {
    match run.await {
        Ok(_) => ExitCode::SUCCESS,
        // Nothing has run yet: one line, like a bad config value.
        Err(
            error @ (ServerError::Storage { .. }
            | ServerError::Cluster { .. }
            | ServerError::Certificate { .. }
            | ServerError::Listen { .. }),
        ) => {
            eprintln!("{program}: {error}");
            ExitCode::from(error.exit_code())
        }
        Err(error) => {
            spdlog::error!("server: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
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
