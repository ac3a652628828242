//! The ports of a server and how each sets its connections up: the game port (`server.listen`:
//! frames, the server speaking first), the web port (`web.listen`: the game's page and
//! WebSocket over HTTP), and the TLS port (`tls.listen`: frames, and HTTP for the clients that
//! ask for it by ALPN); and the TLS certificate, checked at start and replaced while the
//! server runs (on SIGHUP, or when its files change), leaving established sessions as they
//! are.
//!
//! Why the page and WebSocket have a port of their own rather than sharing the game port:
//! on the game port the server speaks first, so a port serving both would have to wait for a
//! client's silence to tell a client of frames from a browser, delaying every client that
//! waits for `S2C_Welcome`, and breaking browsers, which open connections ahead of time and
//! use them later. TLS needs no such wait: the handshake says (ALPN) what a client wants.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use config::ServerConfig;
use net::tls::{self, CertFile, CertSlot, TlsAcceptor};
use net::{AcceptSide, Negotiation, Origins, Web};
use protocol::world::S2cError;
use protocol::ErrorCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ServerError;
use crate::metrics::Metrics;
use crate::world::Game;

/// What the ports of a server serve.
pub(crate) struct Ports {
    /// How the web port sets its connections up; `None` without `web.listen`.
    pub web: Option<Negotiation>,
    /// How the TLS port does, and its certificate; `None` without `tls.listen`.
    pub tls: Option<(Negotiation, Arc<CertSlot>)>,
}

/// An error frame for a client of frames at a port that does not take them.
fn wrong_port(reason: String) -> Bytes {
    let error = S2cError {
        code: ErrorCode::BadRequest as i32,
        reason,
        request_id: 0,
        retry_after_ms: 0,
    };
    protocol::frame(&error).unwrap_or_default()
}

impl Ports {
    /// The ports `config` asks for, serving the files of `G`; the game port is `game_addr`.
    /// Checks the TLS certificate.
    pub fn new<G: Game>(
        config: &ServerConfig,
        game_addr: std::net::SocketAddr,
    ) -> Result<Ports, ServerError> {
        let web = Web {
            ws_path: config.web.path.clone(),
            origins: Origins::from_list(&config.web.allowed_origins),
            max_message: config.web.max_message_bytes,
            files: G::web_files(),
        };
        let timeout = config.net.handshake_timeout();
        let web_port = config.web.address().map(|_| {
            Negotiation::Accept(Arc::new(AcceptSide {
                tls: None,
                web: Some(web.clone()),
                timeout,
                wrong_port: wrong_port(format!(
                    "this port serves HTTP (the page, WebSocket at {}); frames are served on {game_addr}",
                    config.web.path
                )),
            }))
        });
        let tls = match config.tls.address() {
            None => None,
            Some(_) => {
                let slot = CertSlot::new(load(config)?);
                let server = tls::server_config(slot.clone(), config.tls.allow_tls12, true);
                let side = AcceptSide {
                    tls: Some(TlsAcceptor::from(server)),
                    web: Some(web),
                    timeout,
                    wrong_port: wrong_port(format!(
                        "this port speaks TLS; frames without TLS are served on {game_addr}"
                    )),
                };
                Some((Negotiation::Accept(Arc::new(side)), slot))
            }
        };
        Ok(Ports { web: web_port, tls })
    }
}

/// The certificate and key of `config`, checked now.
fn load(config: &ServerConfig) -> Result<Arc<net::rustls::sign::CertifiedKey>, ServerError> {
    tls::load_certified_key(&config.tls.cert, &config.tls.key, SystemTime::now()).map_err(|error| {
        ServerError::Certificate {
            key: match error.file {
                CertFile::Cert => "tls.cert",
                CertFile::Key => "tls.key",
            },
            path: error.path,
            reason: error.reason,
        }
    })
}

/// The last change of the certificate's files, to notice a new one.
fn stamp(paths: &[&PathBuf]) -> Vec<Option<SystemTime>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// Replaces the certificate of `slot` on SIGHUP, and when its files change (checked every
/// `tls.reload_secs`), until `stop`. A certificate that does not load is logged, counted,
/// and the one in use stays.
pub(crate) fn spawn_reload(
    slot: Arc<CertSlot>,
    config: &ServerConfig,
    metrics: &Metrics,
    stop: CancellationToken,
    tracker: &TaskTracker,
) {
    let config = config.clone();
    let metrics = metrics.clone();
    show_expiry(&slot, &metrics);
    tracker.spawn(async move {
        let paths = [&config.tls.cert, &config.tls.key];
        let mut last = stamp(&paths);
        let every = (config.tls.reload_secs > 0).then(|| Duration::from_secs(config.tls.reload_secs));
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<()>();
            let tick = async {
                match every {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending::<()>().await,
                }
            };
            let why = tokio::select! {
                _ = stop.cancelled() => return,
                _ = hup => "SIGHUP",
                _ = tick => {
                    let now = stamp(&paths);
                    if now == last {
                        continue;
                    }
                    last = now;
                    "its files changed"
                }
            };
            // Reading files is blocking, if brief.
            let loaded = {
                let config = config.clone();
                tokio::task::spawn_blocking(move || load(&config)).await
            };
            match loaded {
                Ok(Ok(key)) => {
                    slot.replace(key);
                    metrics.tls_reloads.inc();
                    let until = tls::expiry(&slot.current()).map(|(_, at)| at);
                    spdlog::info!(
                        "tls: new certificate from {} ({why}), valid until {}; sessions already established keep theirs",
                        config.tls.cert.display(),
                        until.as_deref().unwrap_or("?")
                    );
                    show_expiry(&slot, &metrics);
                }
                Ok(Err(error)) => {
                    metrics.tls_reload_failures.inc();
                    spdlog::error!(
                        "tls: the new certificate ({why}) cannot serve, the one in use stays: {error}"
                    );
                }
                Err(_) => {}
            }
        }
    });
}

fn show_expiry(slot: &CertSlot, metrics: &Metrics) {
    if let Some((at, _)) = tls::expiry(&slot.current()) {
        metrics.tls_expiry.set(at);
    }
}
