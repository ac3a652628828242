//! The server's URL: `tcp://HOST:PORT`, `tls://HOST:PORT`, `ws://HOST:PORT/PATH` or
//! `wss://HOST:PORT/PATH`.
//!
//! Its [`Display`](std::fmt::Display) form is canonical (the path of a WebSocket URL always
//! written, `/ws` by default) and is the key under which the token of that server is saved.

use std::fmt;

use net::Transport;

/// The URL of a server this client connects to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    /// What the connection speaks: [`Transport::Tcp`], `Tls`, `Ws` or `Wss`.
    pub transport: Transport,
    /// The host as written: a name, an IPv4 address, or an IPv6 address in brackets.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The WebSocket path (`/ws` by default); empty for `tcp://` and `tls://`.
    pub path: String,
}

/// Why a URL is not one this client can connect to; the message says what is wrong, the
/// caller says which URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// No `scheme://` or an unknown scheme.
    #[error("must start with tcp://, tls://, ws:// or wss://")]
    Scheme,
    /// No host before the port.
    #[error("has no host (expected {0}://HOST:PORT)")]
    NoHost(&'static str),
    /// No `:PORT`, or one that is not 1-65535.
    #[error("needs a port 1-65535 after the host (expected {0}://HOST:PORT)")]
    Port(&'static str),
    /// A path on a URL that has none (`tcp://`, `tls://`).
    #[error("{0}:// takes no path")]
    Path(&'static str),
}

/// The default server: the world server's default listen address.
pub const DEFAULT_URL: &str = "tcp://127.0.0.1:7000";

/// The WebSocket path used when a `ws://` or `wss://` URL names none.
pub const DEFAULT_WS_PATH: &str = "/ws";

impl ServerUrl {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<ServerUrl, UrlError> {
        let (scheme, rest) = text.split_once("://").ok_or(UrlError::Scheme)?;
        let (transport, scheme) = match scheme.to_ascii_lowercase().as_str() {
            "tcp" => (Transport::Tcp, "tcp"),
            "tls" => (Transport::Tls, "tls"),
            "ws" => (Transport::Ws, "ws"),
            "wss" => (Transport::Wss, "wss"),
            _ => return Err(UrlError::Scheme),
        };
        let websocket = matches!(transport, Transport::Ws | Transport::Wss);
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let path = match (websocket, path) {
            (true, "") => DEFAULT_WS_PATH.to_string(),
            (true, path) => path.to_string(),
            (false, "") | (false, "/") => String::new(),
            (false, _) => return Err(UrlError::Path(scheme)),
        };
        // The port follows the last colon outside an IPv6 address's brackets.
        let (host, port) = match authority.rfind(':') {
            Some(at) if !authority[at..].contains(']') => (&authority[..at], &authority[at + 1..]),
            _ => return Err(UrlError::Port(scheme)),
        };
        if host.is_empty() || host == "[]" {
            return Err(UrlError::NoHost(scheme));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or(UrlError::Port(scheme))?;
        Ok(ServerUrl {
            transport,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// The host without the brackets of an IPv6 address: what to resolve, and the default
    /// name to check a certificate against.
    pub fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// `HOST:PORT` as written, for the WebSocket `Host` header.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Whether the connection starts with a TLS handshake.
    pub fn is_tls(&self) -> bool {
        matches!(self.transport, Transport::Tls | Transport::Wss)
    }

    /// Whether frames travel in WebSocket messages.
    pub fn is_websocket(&self) -> bool {
        matches!(self.transport, Transport::Ws | Transport::Wss)
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}:{}{}",
            self.transport.label(),
            self.host,
            self.port,
            self.path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_schemes_parse_and_print_canonically() {
        let tcp = ServerUrl::parse("tcp://127.0.0.1:7000").unwrap();
        assert_eq!(tcp.transport, Transport::Tcp);
        assert_eq!((tcp.host.as_str(), tcp.port), ("127.0.0.1", 7000));
        assert_eq!(tcp.to_string(), "tcp://127.0.0.1:7000");
        let ws = ServerUrl::parse("ws://localhost:7000").unwrap();
        assert_eq!(ws.to_string(), "ws://localhost:7000/ws");
        let wss = ServerUrl::parse("WSS://chat.example:443/game/ws").unwrap();
        assert_eq!(wss.to_string(), "wss://chat.example:443/game/ws");
        assert!(wss.is_tls() && wss.is_websocket());
        let tls = ServerUrl::parse("tls://[::1]:7443").unwrap();
        assert_eq!(tls.bare_host(), "::1");
        assert_eq!(tls.authority(), "[::1]:7443");
        assert_eq!(tls.to_string(), "tls://[::1]:7443");
    }

    #[test]
    fn bad_urls_say_what_is_missing() {
        assert_eq!(ServerUrl::parse("127.0.0.1:7000"), Err(UrlError::Scheme));
        assert_eq!(ServerUrl::parse("http://x:1"), Err(UrlError::Scheme));
        assert_eq!(ServerUrl::parse("tcp://x"), Err(UrlError::Port("tcp")));
        assert_eq!(ServerUrl::parse("tcp://x:0"), Err(UrlError::Port("tcp")));
        assert_eq!(
            ServerUrl::parse("tcp://x:70000"),
            Err(UrlError::Port("tcp"))
        );
        assert_eq!(ServerUrl::parse("tls://[::1]"), Err(UrlError::Port("tls")));
        assert_eq!(
            ServerUrl::parse("ws://:7000/ws"),
            Err(UrlError::NoHost("ws"))
        );
        assert_eq!(ServerUrl::parse("tcp://x:1/ws"), Err(UrlError::Path("tcp")));
        assert_eq!(
            UrlError::Port("tcp").to_string(),
            "needs a port 1-65535 after the host (expected tcp://HOST:PORT)"
        );
    }
}
