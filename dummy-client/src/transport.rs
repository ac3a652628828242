//! How bots reach the server: frames on TCP, or in WebSocket messages, with or without TLS
//! (`client.transport`, `client.tls` and the trust keys), one [`SessionConfig`] per server.

use std::net::SocketAddr;
use std::sync::Arc;

use config::client::ClientSection;
use net::tls::{self, TlsConnector, Trust};
use net::{ConnectSide, Negotiation, SessionConfig, WsTarget};

use crate::RunError;

/// The session config of a bot on each server, by the server's index in `servers`.
pub fn session_configs(
    client: &ClientSection,
    servers: &[SocketAddr],
    base: &SessionConfig,
) -> Result<Vec<SessionConfig>, RunError> {
    let connector = if client.tls {
        let trust = if client.tls_insecure {
            Trust::Insecure
        } else if client.tls_ca.as_os_str().is_empty() {
            Trust::System
        } else {
            Trust::CaFile(client.tls_ca.clone())
        };
        let key = if client.tls_ca.as_os_str().is_empty() {
            "client.tls"
        } else {
            "client.tls_ca"
        };
        let config = tls::client_config(&trust).map_err(|why| RunError::Config {
            key,
            value: client.tls_ca.display().to_string(),
            rule: format!("usable for TLS ({why})"),
        })?;
        // Over WebSocket, the TLS port is asked for HTTP (ALPN); otherwise it serves frames.
        let config = if client.transport == "ws" {
            tls::for_http(&config)
        } else {
            config
        };
        Some(TlsConnector::from(config))
    } else {
        None
    };
    servers
        .iter()
        .map(|server| {
            let tls = match &connector {
                None => None,
                Some(connector) => {
                    let host = if client.tls_name.is_empty() {
                        server.ip().to_string()
                    } else {
                        client.tls_name.clone()
                    };
                    let name = tls::server_name(&host).map_err(|why| RunError::Config {
                        key: "client.tls_name",
                        value: format!("{host:?}"),
                        rule: format!("a DNS name or an IP address ({why})"),
                    })?;
                    Some((connector.clone(), name))
                }
            };
            let websocket = (client.transport == "ws").then(|| WsTarget {
                host: server.to_string(),
                path: client.ws_path.clone(),
                origin: None,
                // What a server sends in one message is one tick of one session's frames.
                max_message: 64 << 20,
            });
            let negotiation = if tls.is_none() && websocket.is_none() {
                Negotiation::Frames
            } else {
                Negotiation::Connect(Arc::new(ConnectSide {
                    tls,
                    websocket,
                    timeout: client.login_timeout(),
                }))
            };
            Ok(SessionConfig {
                negotiation,
                ..base.clone()
            })
        })
        .collect()
}

/// What the bots speak, for reports: `tcp`, `tls`, `ws` or `wss`.
pub fn label(client: &ClientSection) -> &'static str {
    match (client.transport.as_str(), client.tls) {
        ("ws", true) => "wss",
        ("ws", false) => "ws",
        (_, true) => "tls",
        _ => "tcp",
    }
}
