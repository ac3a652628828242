//! The running client: the terminal, the keys, the network and the clock, handed to the
//! [`App`] one event at a time, and its actions carried out.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, DisableBracketedPaste, EnableBracketedPaste, Event};
use ratatui::crossterm::execute;
use ratatui::DefaultTerminal;
use spdlog::sink::FileSink;
use spdlog::{Level, LevelFilter, Logger};
use tokio::sync::mpsc;

use crate::app::{Action, App};
use crate::cli::Settings;
use crate::conn::{NetEvent, Network, TargetError};
use crate::tokens::TokenStore;
use crate::ui;

/// Why the client could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The terminal could not be set up or drawn on.
    #[error("terminal: {0}")]
    Terminal(#[source] std::io::Error),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The log file could not be opened.
    #[error("--log {path:?}: {why}")]
    Log {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// The TLS settings could not be used.
    #[error("{0}")]
    Target(#[from] TargetError),
}

/// How long queued requests (a logout, say) may take to be written at exit.
const EXIT_FLUSH: Duration = Duration::from_millis(300);

/// Runs the client until the person quits.
pub fn run(settings: Settings) -> Result<(), RunError> {
    setup_logging(settings.log.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(run_async(settings))
}

async fn run_async(settings: Settings) -> Result<(), RunError> {
    let network = Network::new(&settings.target)?;
    let server = settings.target.url.to_string();
    let store = settings.config_dir.clone().map(TokenStore::new);
    let (saved, store_problem) = match &store {
        Some(store) => match store.load(&server) {
            Ok(saved) => (saved, None),
            Err(error) => (
                None,
                Some(format!("Saved logins are not available: {error}")),
            ),
        },
        None => (
            None,
            Some(
                "No config directory (neither $XDG_CONFIG_HOME nor $HOME is set): tokens are \
                 not saved; give one with --config-dir DIR"
                    .to_string(),
            ),
        ),
    };
    let (mut app, actions) = App::new(settings.target.url.clone(), settings.start, saved);
    if let Some(problem) = store_problem {
        app.report_error(problem);
    }
    let mut terminal = ratatui::try_init().map_err(RunError::Terminal)?;
    let _ = execute!(std::io::stdout(), EnableBracketedPaste);
    let mut session = Running {
        app,
        network,
        store,
        server,
    };
    let result = session.event_loop(&mut terminal, actions).await;
    let _ = execute!(std::io::stdout(), DisableBracketedPaste);
    ratatui::restore();
    session.network.shutdown(EXIT_FLUSH).await;
    result
}

/// The app with what carries out its actions.
struct Running {
    app: App,
    network: Network,
    store: Option<TokenStore>,
    /// The server's URL: the key of its token.
    server: String,
}

impl Running {
    async fn event_loop(
        &mut self,
        terminal: &mut DefaultTerminal,
        first: Vec<Action>,
    ) -> Result<(), RunError> {
        let mut keys = spawn_key_reader();
        let mut signals = Signals::new();
        if self.carry_out(first) {
            return Ok(());
        }
        loop {
            let mut view = None;
            terminal
                .draw(|frame| view = Some(ui::draw(frame, &self.app)))
                .map_err(RunError::Terminal)?;
            if let Some(view) = view {
                self.app.set_view(view.page, view.max_scroll);
            }
            let deadline = self.app.next_deadline();
            let actions = tokio::select! {
                event = keys.recv() => match event {
                    Some(Event::Key(key)) => self.app.on_key(key),
                    Some(Event::Paste(text)) => {
                        self.app.on_paste(&text);
                        Vec::new()
                    }
                    // A resize, focus, mouse: drawn again above.
                    Some(_) => Vec::new(),
                    // The terminal is gone.
                    None => vec![Action::Quit],
                },
                event = self.network.next() => {
                    let now = Instant::now();
                    match event {
                        NetEvent::Connected => self.app.on_connected(now),
                        NetEvent::Ready(transport) => {
                            self.app.on_ready(transport);
                            Vec::new()
                        }
                        NetEvent::Message(message) => self.app.on_server(message, now),
                        NetEvent::Undecodable(why) => {
                            self.app.on_undecodable(why, now);
                            Vec::new()
                        }
                        NetEvent::Closed(closure) => self.app.on_closed(closure, now),
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() => self.app.on_tick(Instant::now()),
                _ = signals.recv() => vec![Action::Quit],
            };
            if self.carry_out(actions) {
                return Ok(());
            }
        }
    }

    /// Carries out `actions`, and those the app asks for when a request cannot be sent;
    /// `true` when one is to quit.
    fn carry_out(&mut self, actions: Vec<Action>) -> bool {
        let mut actions = VecDeque::from(actions);
        while let Some(action) = actions.pop_front() {
            match action {
                Action::Send(request) => {
                    if let Err(error) = self.network.send(&request) {
                        // Before what is left: a connection given up takes no more requests
                        // (they are sent again once the session is back).
                        for next in self.app.on_send_failed(error.to_string()).into_iter().rev() {
                            actions.push_front(next);
                        }
                    }
                }
                Action::Connect => self.network.connect(),
                Action::SaveToken(saved) => {
                    if let Some(store) = &self.store {
                        if let Err(error) = store.save(&self.server, saved) {
                            self.app
                                .report_error(format!("The token could not be saved: {error}"));
                        }
                    }
                }
                Action::ForgetToken => {
                    if let Some(store) = &self.store {
                        if let Err(error) = store.forget(&self.server) {
                            self.app.report_error(format!(
                                "The saved token could not be removed: {error}"
                            ));
                        }
                    }
                }
                Action::Quit => return true,
            }
        }
        false
    }
}

/// Keys (and resizes, pastes) from a thread of their own: crossterm's read blocks.
fn spawn_key_reader() -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(256);
    std::thread::spawn(move || {
        while let Ok(event) = event::read() {
            if tx.blocking_send(event).is_err() {
                break;
            }
        }
    });
    rx
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// SIGTERM and SIGHUP: leave as /quit does, restoring the terminal.
struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                terminate: signal(SignalKind::terminate()).ok(),
                hangup: signal(SignalKind::hangup()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn one(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = one(&mut self.terminate) => {}
                _ = one(&mut self.hangup) => {}
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    }
}

/// Logs to `path` when given; otherwise nowhere, since the terminal is the client's screen.
fn setup_logging(path: Option<&Path>) -> Result<(), RunError> {
    let failed = |why: String| RunError::Log {
        path: path.map(|p| p.display().to_string()).unwrap_or_default(),
        why,
    };
    let mut builder = Logger::builder();
    builder.name("world-client");
    match path {
        Some(path) => {
            create_private_file(path).map_err(|e| failed(e.to_string()))?;
            let sink = FileSink::builder()
                .path(path)
                .build_arc()
                .map_err(|e| failed(e.to_string()))?;
            builder
                .sink(sink)
                .level_filter(LevelFilter::MoreSevereEqual(Level::Info))
                .flush_level_filter(LevelFilter::All);
        }
        None => {
            builder.level_filter(LevelFilter::Off);
        }
    }
    let logger: Arc<Logger> = builder.build_arc().map_err(|e| failed(e.to_string()))?;
    spdlog::set_default_logger(logger);
    Ok(())
}

/// Creates `path` for appending, readable by its owner only, if it does not exist.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}
