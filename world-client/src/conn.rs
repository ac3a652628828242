//! The network: one connection at a time to the server, made with the `net` crate.
//!
//! [`Network::connect`] resolves the host and opens a TCP connection in the background;
//! [`Network::next`] then reports, in order, [`NetEvent::Connected`], `Ready` (once TLS or
//! the WebSocket upgrade is done), each message, and `Closed`. Every connection has a number
//! of its own (its `SessionId`), so that the late events of a connection given up are told
//! apart from those of the current one and dropped.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use net::tls::{TlsConnector, Trust};
use net::{
    ConnectSide, DisconnectReason, Negotiation, Session, SessionConfig, SessionEvent, SessionId,
    Transport, WsTarget,
};
use protocol::{C2sMessage, FrameTooLarge, S2cMessage};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::url::ServerUrl;
use crate::words::Closure;

/// How long resolving and the TCP connect may take, and then the TLS or WebSocket set-up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest frame taken from the server: frames it sends may be as large as the format allows.
pub const MAX_PACKET_SIZE: usize = 65535;

/// Largest WebSocket message taken from the server.
pub const MAX_WS_MESSAGE: usize = 1 << 24;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct Target {
    /// The server.
    pub url: ServerUrl,
    /// Whose certificates to trust, for `tls://` and `wss://`.
    pub trust: Trust,
    /// The name the server's certificate must carry; the URL's host when `None`.
    pub tls_name: Option<String>,
}

/// Why a [`Target`] cannot be used: a CA file that cannot be read, a bad name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The trust settings (`--ca`, the system's CAs) do not make a TLS config.
    #[error("{0}")]
    Trust(String),
    /// The name to check the certificate against is not a DNS name or an IP address.
    #[error("{0}")]
    Name(String),
}

impl Target {
    /// How sessions to this target are set up: the TLS config is built (and a CA file read)
    /// once, here.
    pub fn negotiation(&self) -> Result<Negotiation, TargetError> {
        if !self.url.is_tls() && !self.url.is_websocket() {
            return Ok(Negotiation::Frames);
        }
        let tls = if self.url.is_tls() {
            let mut config = net::tls::client_config(&self.trust).map_err(TargetError::Trust)?;
            if self.url.is_websocket() {
                // A TLS port serves frames, and HTTP (so WebSocket) to the clients that ask
                // for it by ALPN.
                config = net::tls::for_http(&config);
            }
            let name = self.tls_name.as_deref().unwrap_or(self.url.bare_host());
            let name = net::tls::server_name(name).map_err(TargetError::Name)?;
            Some((TlsConnector::from(config), name))
        } else {
            None
        };
        let websocket = self.url.is_websocket().then(|| WsTarget {
            host: self.url.authority(),
            path: self.url.path.clone(),
            origin: None,
            max_message: MAX_WS_MESSAGE,
        });
        Ok(Negotiation::Connect(Arc::new(ConnectSide {
            tls,
            websocket,
            timeout: CONNECT_TIMEOUT,
        })))
    }
}

/// What the network reports.
#[derive(Debug)]
pub enum NetEvent {
    /// The TCP connection is made; requests may be sent (they wait for a TLS or WebSocket
    /// set-up, if any).
    Connected,
    /// The TLS or WebSocket set-up is done.
    Ready(Transport),
    /// A message from the server.
    Message(S2cMessage),
    /// A frame that does not decode as a message this client knows.
    Undecodable(String),
    /// The connection ended, or could not be made.
    Closed(Closure),
}

/// Why a request was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection.
    #[error("not connected")]
    NotConnected,
    /// The request does not fit in a frame.
    #[error("{0}")]
    TooLarge(#[from] FrameTooLarge),
    /// The session refused it.
    #[error("{0}")]
    Session(#[from] net::SendError),
}

/// The connection to the server, one at a time.
pub struct Network {
    url: ServerUrl,
    config: SessionConfig,
    tracker: TaskTracker,
    events_tx: mpsc::Sender<SessionEvent>,
    events: mpsc::Receiver<SessionEvent>,
    opened_tx: mpsc::Sender<(u64, Result<TcpStream, String>)>,
    opened: mpsc::Receiver<(u64, Result<TcpStream, String>)>,
    session: Option<Session>,
    generation: u64,
}

impl Network {
    /// A network for `target`; fails when its TLS settings cannot be used.
    pub fn new(target: &Target) -> Result<Network, TargetError> {
        let config = SessionConfig {
            max_packet_size: MAX_PACKET_SIZE,
            negotiation: target.negotiation()?,
            ..SessionConfig::default()
        };
        let (events_tx, events) = mpsc::channel(1024);
        let (opened_tx, opened) = mpsc::channel(4);
        Ok(Network {
            url: target.url.clone(),
            config,
            tracker: TaskTracker::new(),
            events_tx,
            events,
            opened_tx,
            opened,
            session: None,
            generation: 0,
        })
    }

    /// Opens a new connection, giving up the current one, if any.
    pub fn connect(&mut self) {
        self.close();
        self.generation += 1;
        let generation = self.generation;
        let (host, port) = (self.url.bare_host().to_string(), self.url.port);
        let opened = self.opened_tx.clone();
        self.tracker.spawn(async move {
            let result = match tokio::time::timeout(
                CONNECT_TIMEOUT,
                TcpStream::connect((host.as_str(), port)),
            )
            .await
            {
                Ok(Ok(stream)) => Ok(stream),
                Ok(Err(error)) => Err(format!("{host} port {port}: {error}")),
                Err(_) => Err(format!(
                    "{host} port {port}: no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )),
            };
            let _ = opened.send((generation, result)).await;
        });
    }

    /// Closes the current connection gracefully (what is queued is still written).
    pub fn close(&mut self) {
        if let Some(mut session) = self.session.take() {
            session.close(DisconnectReason::Shutdown);
        }
    }

    /// Sends `request` on the current connection.
    pub fn send(&self, request: &C2sMessage) -> Result<(), SendError> {
        let session = self.session.as_ref().ok_or(SendError::NotConnected)?;
        session.send(&mut vec![frame(request)?])?;
        Ok(())
    }

    /// The next event of the current connection.
    pub async fn next(&mut self) -> NetEvent {
        loop {
            tokio::select! {
                Some((generation, result)) = self.opened.recv() => {
                    if generation != self.generation {
                        continue;
                    }
                    match result {
                        Ok(stream) => {
                            let _ = stream.set_nodelay(true);
                            self.session = Some(Session::spawn(
                                SessionId(generation),
                                stream,
                                &self.config,
                                self.events_tx.clone(),
                                &self.tracker,
                            ));
                            spdlog::info!("world-client: connected to {}", self.url);
                            return NetEvent::Connected;
                        }
                        Err(why) => {
                            spdlog::info!("world-client: cannot connect to {}: {why}", self.url);
                            return NetEvent::Closed(Closure::Connect(why));
                        }
                    }
                }
                Some(event) = self.events.recv() => {
                    if let Some(event) = self.event(event) {
                        return event;
                    }
                }
            }
        }
    }

    fn event(&mut self, event: SessionEvent) -> Option<NetEvent> {
        let current = SessionId(self.generation);
        match event {
            SessionEvent::Ready { session, transport } if session == current => {
                spdlog::info!("world-client: {} set up ({transport})", self.url);
                Some(NetEvent::Ready(transport))
            }
            SessionEvent::Received {
                session, packet, ..
            } if session == current => {
                if let Some(s) = &self.session {
                    s.release_credit(1);
                }
                Some(match S2cMessage::decode(packet.id, packet.payload) {
                    Ok(message) => NetEvent::Message(message),
                    Err(error) => NetEvent::Undecodable(error.to_string()),
                })
            }
            SessionEvent::Closed { session, reason } if session == current => {
                spdlog::info!("world-client: disconnected from {}: {reason}", self.url);
                self.session = None;
                Some(NetEvent::Closed(Closure::Session(reason)))
            }
            // A connection given up: its events are late.
            _ => None,
        }
    }

    /// Waits a little for the current connection's queued requests to be written: at exit.
    pub async fn shutdown(mut self, within: Duration) {
        self.close();
        self.tracker.close();
        let _ = tokio::time::timeout(within, self.tracker.wait()).await;
    }
}

/// The frame of `request`.
pub fn frame(request: &C2sMessage) -> Result<Bytes, FrameTooLarge> {
    match request {
        C2sMessage::C2sChat(m) => protocol::frame(m),
        C2sMessage::C2sPing(m) => protocol::frame(m),
        C2sMessage::C2sRegister(m) => protocol::frame(m),
        C2sMessage::C2sLogin(m) => protocol::frame(m),
        C2sMessage::C2sResume(m) => protocol::frame(m),
        C2sMessage::C2sLogout(m) => protocol::frame(m),
        C2sMessage::C2sWhisper(m) => protocol::frame(m),
        C2sMessage::C2sRoomJoin(m) => protocol::frame(m),
        C2sMessage::C2sRoomLeave(m) => protocol::frame(m),
        C2sMessage::C2sRoomList(m) => protocol::frame(m),
        C2sMessage::C2sSessionResume(m) => protocol::frame(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::world::C2sLogin;

    #[test]
    fn a_request_is_framed_as_the_protocol_page_shows() {
        let login = C2sMessage::C2sLogin(C2sLogin {
            username: "ann".into(),
            password: String::new(),
            ..Default::default()
        });
        assert_eq!(
            frame(&login).unwrap().as_ref(),
            &[0x09, 0x00, 0xdb, 0x07, 0x0a, 0x03, 0x61, 0x6e, 0x6e]
        );
    }

    #[test]
    fn each_scheme_negotiates_what_it_names() {
        let target = |url: &str| Target {
            url: ServerUrl::parse(url).unwrap(),
            trust: Trust::Insecure,
            tls_name: None,
        };
        assert!(matches!(
            target("tcp://127.0.0.1:7000").negotiation().unwrap(),
            Negotiation::Frames
        ));
        for (url, transport) in [
            ("tls://localhost:7443", Transport::Tls),
            ("ws://127.0.0.1:7000", Transport::Ws),
            ("wss://[::1]:7443/game", Transport::Wss),
        ] {
            match target(url).negotiation().unwrap() {
                Negotiation::Connect(side) => {
                    assert_eq!(side.transport(), transport, "{url}");
                    if let Some(ws) = &side.websocket {
                        assert!(ws.path == "/ws" || ws.path == "/game");
                        assert!(ws.host.ends_with(":7000") || ws.host == "[::1]:7443");
                    }
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        let mut bad_name = target("tls://localhost:7443");
        bad_name.tls_name = Some("not a name".into());
        assert!(matches!(bad_name.negotiation(), Err(TargetError::Name(_))));
        let mut missing_ca = target("tls://localhost:7443");
        missing_ca.trust = Trust::CaFile("/nonexistent/ca.pem".into());
        assert!(matches!(
            missing_ca.negotiation(),
            Err(TargetError::Trust(_))
        ));
    }
}
