//! What happens on a connection before frames flow: TLS, the WebSocket upgrade, and the few
//! HTTP answers a server gives (its page, errors).
//!
//! A server's port ([`AcceptSide`]) serves frames, HTTP, or both:
//!
//! - a port of frames without TLS needs no negotiation at all ([`Negotiation::Frames`]): the
//!   server speaks first, at once;
//! - a web port serves HTTP: `GET` of the WebSocket path with an upgrade becomes a
//!   WebSocket, `GET` of a file the game serves gets it, anything else an HTTP error; each
//!   exchange but the upgrade ends the connection. A client that sends something else is
//!   told where to go: a TLS ClientHello gets a TLS alert, a frame an error frame;
//! - a TLS port does the TLS handshake first (a client that sends anything else is told, in
//!   plain text or in a frame, that the port speaks TLS); then a client that asked for HTTP
//!   (ALPN `http/1.1`, as every browser does) is served as on a web port, and any other
//!   speaks frames, the server first.
//!
//! Telling clients apart never waits on a client's silence: a client of frames may wait for
//! the server to speak first, and a browser may open a connection and use it only later.
//!
//! A client ([`ConnectSide`]) does the TLS handshake and the WebSocket upgrade it is told to.
//! The whole negotiation runs within its timeout; the session's owner counts it against the
//! login deadline as well.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http;
use crate::reason::{io_reason, DisconnectReason};
use crate::tls::{TlsAcceptor, TlsConnector};
use crate::ws::{self, Origins, Role};

/// The reading half of a negotiated connection.
pub type BoxRead = Pin<Box<dyn AsyncRead + Send>>;
/// The writing half of a negotiated connection.
pub type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;

/// What a session speaks, once negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// Frames over TCP.
    Tcp,
    /// Frames over TLS.
    Tls,
    /// Frames in WebSocket messages.
    Ws,
    /// Frames in WebSocket messages over TLS.
    Wss,
    /// An HTTP exchange (the page, an error): no session.
    Http,
    /// An HTTP exchange over TLS.
    Https,
}

impl Transport {
    /// Every transport, in the order of [`Transport::label`]s.
    pub const ALL: [Transport; 6] = [
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
        Transport::Http,
        Transport::Https,
    ];

    /// A short name: `tcp`, `tls`, `ws`, `wss`, `http`, `https`.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
            Transport::Http => "http",
            Transport::Https => "https",
        }
    }

    fn of(secure: bool, plain: Transport, tls: Transport) -> Transport {
        if secure {
            tls
        } else {
            plain
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A file a server's port answers `GET path` with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebFile {
    /// The path, such as `/` or `/app.js`.
    pub path: String,
    /// Its `Content-Type`.
    pub content_type: String,
    /// Its bytes.
    pub body: Bytes,
}

/// What a port serves over HTTP: the WebSocket path and the files.
#[derive(Clone, Debug)]
pub struct Web {
    /// The path of WebSocket upgrades, such as `/ws`.
    pub ws_path: String,
    /// Which origins may upgrade.
    pub origins: Origins,
    /// Largest WebSocket message taken, in bytes.
    pub max_message: usize,
    /// The files served, by path.
    pub files: Vec<WebFile>,
}

pub use crate::tls::ALPN_HTTP;

/// How a server's port sets up its connections.
#[derive(Clone)]
pub struct AcceptSide {
    /// TLS first, when the port is a TLS port. Its config offers [`ALPN_HTTP`] when the
    /// port serves [`web`](Self::web).
    pub tls: Option<TlsAcceptor>,
    /// HTTP: WebSocket and files. On a plain port, it is all the port serves; on a TLS port,
    /// it serves the clients that ask for HTTP by ALPN.
    pub web: Option<Web>,
    /// The longest the whole negotiation may take.
    pub timeout: Duration,
    /// What a client that speaks frames where the port does not take them (plain frames on
    /// a TLS port, frames on a web port) is sent before the close: a frame saying where
    /// frames are served, or nothing.
    pub wrong_port: Bytes,
}

impl fmt::Debug for AcceptSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptSide")
            .field("tls", &self.tls.is_some())
            .field("web", &self.web)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Where a client's WebSocket upgrade goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsTarget {
    /// The `Host` header: the server's host and port.
    pub host: String,
    /// The path, such as `/ws`.
    pub path: String,
    /// An `Origin` header to send, if any.
    pub origin: Option<String>,
    /// Largest WebSocket message taken from the server, in bytes.
    pub max_message: usize,
}

/// How a client sets up its connections.
#[derive(Clone)]
pub struct ConnectSide {
    /// A TLS handshake first, checking the server's certificate against this name.
    pub tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    /// A WebSocket upgrade, after TLS if any.
    pub websocket: Option<WsTarget>,
    /// The longest the whole negotiation may take.
    pub timeout: Duration,
}

impl fmt::Debug for ConnectSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectSide")
            .field("tls", &self.tls.as_ref().map(|(_, name)| name))
            .field("websocket", &self.websocket)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ConnectSide {
    /// What a connection made this way speaks.
    pub fn transport(&self) -> Transport {
        match (self.tls.is_some(), self.websocket.is_some()) {
            (false, false) => Transport::Tcp,
            (true, false) => Transport::Tls,
            (false, true) => Transport::Ws,
            (true, true) => Transport::Wss,
        }
    }
}

/// How a session's connection is set up before frames flow.
#[derive(Clone, Debug, Default)]
pub enum Negotiation {
    /// Frames over TCP from the first byte: nothing to set up.
    #[default]
    Frames,
    /// The accepting side of a port.
    Accept(Arc<AcceptSide>),
    /// The connecting side.
    Connect(Arc<ConnectSide>),
}

impl Negotiation {
    /// Whether frames flow over the bare socket from the first byte: no TLS, no HTTP.
    pub(crate) fn is_plain(&self) -> bool {
        match self {
            Negotiation::Frames => true,
            Negotiation::Accept(side) => side.tls.is_none() && side.web.is_none(),
            Negotiation::Connect(side) => side.tls.is_none() && side.websocket.is_none(),
        }
    }
}

/// How frames travel once negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Back to back, as they are.
    Raw,
    /// In WebSocket binary messages, as this end of the connection.
    WebSocket(Role),
}

/// The outcome of a negotiation.
pub(crate) enum Negotiated {
    /// Frames flow.
    Frames {
        transport: Transport,
        reader: BoxRead,
        writer: BoxWrite,
        framing: Framing,
        /// Bytes read during the negotiation that belong to the frames.
        buffered: BytesMut,
    },
    /// An HTTP exchange was answered; the connection is closed.
    Answered {
        transport: Transport,
        reason: DisconnectReason,
    },
}

impl Negotiated {
    /// Plain TCP frames.
    pub(crate) fn frames(stream: TcpStream) -> Negotiated {
        let (reader, writer) = stream.into_split();
        Negotiated::Frames {
            transport: Transport::Tcp,
            reader: Box::pin(reader),
            writer: Box::pin(writer),
            framing: Framing::Raw,
            buffered: BytesMut::new(),
        }
    }
}

/// A plain TCP socket shared by the session's reader, its owner, who writes to it directly
/// while nothing waits to be written, and its write task (when it needs one): this is the
/// write task's view. Writes wait on the socket's readiness, then try it without blocking.
pub(crate) struct SharedTcp(pub(crate) Arc<TcpStream>);

impl SharedTcp {
    /// Closes the sending side: the peer reads the end after what was written.
    pub(crate) fn shutdown(socket: &TcpStream) -> std::io::Result<()> {
        match socket2::SockRef::from(socket).shutdown(std::net::Shutdown::Write) {
            // The peer is gone already: this side is as closed as it can be.
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(()),
            done => done,
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.poll_write_vectored(cx, &[std::io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                done => return std::task::Poll::Ready(done),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(SharedTcp::shutdown(&self.0))
    }
}

/// A connection being negotiated, and whether it is inside TLS.
struct Conn<S> {
    io: S,
    secure: bool,
}

/// The first-byte classes of a client.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Frames,
    Http,
    TlsHello,
}

/// What the first bytes of a client say it speaks; `None` while they cannot tell yet.
fn classify(first: &[u8], plain_port: bool) -> Option<Kind> {
    if plain_port && first.first() == Some(&0x16) {
        return crate::codec::is_client_hello(first).map(|hello| {
            if hello {
                Kind::TlsHello
            } else {
                Kind::Frames
            }
        });
    }
    // A method is capital letters, then a space. A frame's fourth byte is the high byte of
    // its id (0x03-0x0B for ids 1000-2999), never a letter or a space.
    let letters = first
        .iter()
        .take(3)
        .take_while(|b| b.is_ascii_uppercase())
        .count();
    if letters < first.len().min(3) {
        return Some(Kind::Frames);
    }
    match first.get(3) {
        None => None,
        Some(b) if b.is_ascii_uppercase() || *b == b' ' => Some(Kind::Http),
        Some(_) => Some(Kind::Frames),
    }
}

fn handshake(why: impl Into<String>) -> DisconnectReason {
    DisconnectReason::Handshake(why.into())
}

/// Reads more into `buf`; the peer's close is an error.
async fn read_more<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
) -> Result<(), DisconnectReason> {
    match io.read_buf(buf).await {
        Ok(0) => Err(DisconnectReason::PeerClosed),
        Ok(_) => Ok(()),
        Err(e) => Err(io_reason(&e)),
    }
}

/// Writes `bytes`, closes this side, and reads (dropping it) what the peer still sends until
/// it closes too or `linger` is up, so that the close does not reset the answer away.
pub(crate) async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    bytes: &[u8],
    linger: Duration,
) {
    let _ = tokio::time::timeout(linger, async {
        if io.write_all(bytes).await.is_err() || io.shutdown().await.is_err() {
            return;
        }
        let mut sink = [0u8; 512];
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// The accepting side's negotiation of `stream`.
pub(crate) async fn accept(
    side: &AcceptSide,
    mut stream: TcpStream,
    linger: Duration,
) -> Result<Negotiated, DisconnectReason> {
    let Some(acceptor) = &side.tls else {
        let Some(web) = &side.web else {
            return Ok(Negotiated::frames(stream));
        };
        // A web port: HTTP, or a client at the wrong door.
        let mut buf = BytesMut::with_capacity(1024);
        let kind = loop {
            read_more(&mut stream, &mut buf).await?;
            if let Some(kind) = classify(&buf, true) {
                break kind;
            }
        };
        return match kind {
            Kind::Http => {
                serve_http(
                    Conn {
                        io: stream,
                        secure: false,
                    },
                    buf,
                    web,
                    linger,
                )
                .await
            }
            Kind::TlsHello => {
                // A fatal handshake_failure alert: the client reports a TLS error, not garbage.
                answer_and_close(
                    &mut stream,
                    &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28],
                    linger,
                )
                .await;
                Err(handshake("a TLS ClientHello on a port without TLS"))
            }
            Kind::Frames => {
                answer_and_close(&mut stream, &side.wrong_port, linger).await;
                Err(handshake("frames on the web port"))
            }
        };
    };
    // On a TLS port, the first byte of a client must open a TLS handshake record.
    let mut first = [0u8; 4];
    let n = loop {
        match stream.peek(&mut first).await {
            Ok(0) => return Err(DisconnectReason::PeerClosed),
            Ok(n) if first[0] != 0x16 && n < 4 && first[..n].iter().all(u8::is_ascii_uppercase) => {
                // Maybe an HTTP method: wait for the rest of it.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(n) => break n,
            Err(e) => return Err(io_reason(&e)),
        }
    };
    if first[0] != 0x16 {
        let answer = if classify(&first[..n], false) == Some(Kind::Http) {
            http::text_response(
                400,
                &[],
                "this port speaks TLS: use https:// (the page) or wss:// (WebSocket)",
            )
        } else {
            side.wrong_port.to_vec()
        };
        answer_and_close(&mut stream, &answer, linger).await;
        return Err(handshake("plain bytes on the TLS port"));
    }
    let tls = acceptor
        .accept(stream)
        .await
        .map_err(|e| handshake(format!("TLS handshake failed: {e}")))?;
    let wants_http = tls.get_ref().1.alpn_protocol() == Some(ALPN_HTTP);
    let conn = Conn {
        io: tls,
        secure: true,
    };
    match &side.web {
        Some(web) if wants_http => serve_http(conn, BytesMut::new(), web, linger).await,
        _ => Ok(split(conn, Transport::Tls, Framing::Raw, BytesMut::new())),
    }
}

fn split<S: AsyncRead + AsyncWrite + Send + 'static>(
    conn: Conn<S>,
    transport: Transport,
    framing: Framing,
    buffered: BytesMut,
) -> Negotiated {
    let (reader, writer) = tokio::io::split(conn.io);
    Negotiated::Frames {
        transport,
        reader: Box::pin(reader),
        writer: Box::pin(writer),
        framing,
        buffered,
    }
}

/// Reads the rest of an HTTP request head and answers it: the upgrade, a file, or an error.
async fn serve_http<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut conn: Conn<S>,
    mut buf: BytesMut,
    web: &Web,
    linger: Duration,
) -> Result<Negotiated, DisconnectReason> {
    let http_transport = Transport::of(conn.secure, Transport::Http, Transport::Https);
    let parsed = loop {
        match http::parse_request(&buf) {
            Ok(Some(parsed)) => break Ok(parsed),
            Ok(None) => read_more(&mut conn.io, &mut buf).await?,
            Err(error) => break Err(error),
        }
    };
    let (status, answer) = match parsed {
        Err(http::HttpError::TooLong) => (
            431,
            http::text_response(431, &[], "request head over 8 KiB"),
        ),
        Err(error) => (400, http::text_response(400, &[], &error.to_string())),
        Ok((request, len)) if request.path == web.ws_path => {
            match ws::accept_upgrade(&request, &web.origins) {
                Ok(response) => {
                    conn.io
                        .write_all(&response)
                        .await
                        .map_err(|e| io_reason(&e))?;
                    let _ = buf.split_to(len);
                    let transport = Transport::of(conn.secure, Transport::Ws, Transport::Wss);
                    return Ok(split(
                        conn,
                        transport,
                        Framing::WebSocket(Role::Server),
                        buf,
                    ));
                }
                Err(refused) => {
                    let version = [("Sec-WebSocket-Version", "13")];
                    let extra: &[(&str, &str)] = if refused.status == 426 { &version } else { &[] };
                    (
                        refused.status,
                        http::text_response(refused.status, extra, &refused.why),
                    )
                }
            }
        }
        Ok((request, _)) => file_answer(&request, web),
    };
    answer_and_close(&mut conn.io, &answer, linger).await;
    Ok(Negotiated::Answered {
        transport: http_transport,
        reason: DisconnectReason::Http(status),
    })
}

/// The headers every page gets: it runs only its own script, is never framed, and sends no
/// referrer.
const PAGE_HEADERS: [(&str, &str); 4] = [
    (
        "Content-Security-Policy",
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
];

/// The answer to a request for anything but the WebSocket path.
fn file_answer(request: &http::Request, web: &Web) -> (u16, Vec<u8>) {
    if request.method != "GET" {
        return (
            405,
            http::text_response(405, &[("Allow", "GET")], "only GET is served here"),
        );
    }
    if let Some(file) = web.files.iter().find(|f| f.path == request.path) {
        let mut headers = vec![("Content-Type", file.content_type.as_str())];
        headers.extend_from_slice(&PAGE_HEADERS);
        return (200, http::response(200, &headers, &file.body));
    }
    if request.path == "/favicon.ico" {
        return (204, http::response(204, &[], b""));
    }
    let hint = if web.files.iter().any(|f| f.path == "/") {
        format!("the page is at /, WebSocket at {}", web.ws_path)
    } else {
        format!("this server serves WebSocket at {}", web.ws_path)
    };
    (
        404,
        http::text_response(
            404,
            &[],
            &format!("no such page {:?}: {hint}", request.path),
        ),
    )
}

/// The connecting side's negotiation of `stream`.
pub(crate) async fn connect(
    side: &ConnectSide,
    stream: TcpStream,
) -> Result<Negotiated, DisconnectReason> {
    let transport = side.transport();
    match &side.tls {
        None => match &side.websocket {
            None => Ok(Negotiated::frames(stream)),
            Some(target) => {
                upgrade(
                    Conn {
                        io: stream,
                        secure: false,
                    },
                    target,
                    transport,
                )
                .await
            }
        },
        Some((connector, name)) => {
            let tls = connector
                .connect(name.clone(), stream)
                .await
                .map_err(|e| handshake(format!("TLS handshake failed: {e}")))?;
            let conn = Conn {
                io: tls,
                secure: true,
            };
            match &side.websocket {
                None => Ok(split(conn, transport, Framing::Raw, BytesMut::new())),
                Some(target) => upgrade(conn, target, transport).await,
            }
        }
    }
}

/// A client's WebSocket upgrade on `conn`.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut conn: Conn<S>,
    target: &WsTarget,
    transport: Transport,
) -> Result<Negotiated, DisconnectReason> {
    let key = ws::new_key();
    let request = ws::upgrade_request(&target.host, &target.path, &key, target.origin.as_deref());
    conn.io
        .write_all(&request)
        .await
        .map_err(|e| io_reason(&e))?;
    let mut buf = BytesMut::with_capacity(1024);
    let (head, len) = loop {
        match http::parse_response(&buf) {
            Ok(Some(parsed)) => break parsed,
            Ok(None) => read_more(&mut conn.io, &mut buf).await?,
            Err(e) => return Err(handshake(format!("WebSocket upgrade: {e}"))),
        }
    };
    if head.status != 101 {
        // The body says why, in a line.
        let _ = buf.split_to(len);
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            read_more(&mut conn.io, &mut buf),
        )
        .await;
        let body = String::from_utf8_lossy(&buf);
        let why = body.lines().next().unwrap_or("").trim();
        return Err(handshake(format!(
            "the server answered the WebSocket upgrade with HTTP {} {}{}{}",
            head.status,
            http::reason_phrase(head.status),
            if why.is_empty() { "" } else { ": " },
            why
        )));
    }
    ws::check_upgrade_response(&head, &key).map_err(handshake)?;
    let _ = buf.split_to(len);
    Ok(split(
        conn,
        transport,
        Framing::WebSocket(Role::Client),
        buf,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_tell_clients_apart() {
        assert_eq!(classify(b"GET ", true), Some(Kind::Http));
        assert_eq!(classify(b"POST", true), Some(Kind::Http));
        assert_eq!(classify(b"GE", true), None);
        assert_eq!(classify(b"GET", true), None);
        assert_eq!(classify(b"", true), None);
        // C2S_Login {username: "ann"}: 09 00 db 07 ...
        assert_eq!(
            classify(&[0x09, 0x00, 0xdb, 0x07], true),
            Some(Kind::Frames)
        );
        assert_eq!(classify(&[0x09], true), Some(Kind::Frames));
        // A frame of 16705 bytes with id 0x0741: three letters, then not a letter.
        assert_eq!(classify(b"AAA\x07", true), Some(Kind::Frames));
        let hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00];
        assert_eq!(classify(&hello, true), Some(Kind::TlsHello));
        assert_eq!(classify(&hello[..5], true), None);
        assert_eq!(classify(&hello, false), Some(Kind::Frames));
        // A 22-byte frame: 0x16 first, not a ClientHello.
        assert_eq!(
            classify(&[0x16, 0x00, 0xd0, 0x07, 0x0a, 0x03], true),
            Some(Kind::Frames)
        );
    }

    #[test]
    fn files_are_served_and_others_get_errors() {
        let web = Web {
            ws_path: "/ws".into(),
            origins: Origins::Same,
            max_message: 1 << 16,
            files: vec![WebFile {
                path: "/".into(),
                content_type: "text/html; charset=utf-8".into(),
                body: Bytes::from_static(b"<p>hi</p>"),
            }],
        };
        let get = |path: &str| {
            let text = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            http::parse_request(text.as_bytes()).unwrap().unwrap().0
        };
        let (status, page) = file_answer(&get("/"), &web);
        let page = String::from_utf8(page).unwrap();
        assert_eq!(status, 200);
        assert!(
            page.contains("Content-Security-Policy: default-src 'self'"),
            "{page}"
        );
        assert!(page.ends_with("<p>hi</p>"));
        assert_eq!(file_answer(&get("/favicon.ico"), &web).0, 204);
        let (status, missing) = file_answer(&get("/nope"), &web);
        assert_eq!(status, 404);
        assert!(String::from_utf8(missing)
            .unwrap()
            .contains("the page is at /"));
        let mut post = get("/");
        post.method = "POST".into();
        assert_eq!(file_answer(&post, &web).0, 405);
    }
}
