//! Whether a connection is taken (the server's room, what one address may hold), and what each
//! address holds.

use std::net::{IpAddr, SocketAddr};

use net::DisconnectReason;
use protocol::ErrorCode;

use super::{Game, World};
use crate::dispatcher::HandlerError;
use crate::throttle::addr_key;

/// The network of `addr` that [`crate::world::WorldConfig::max_sessions_per_prefix`] counts:
/// its IPv4 /24, or its IPv6 /48 (an IPv4 address mapped into IPv6 counts as IPv4).
pub fn prefix_key(addr: IpAddr) -> IpAddr {
    match config::addr::unmap(addr) {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & 0xffff_ff00).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 80) - 1)).into()),
    }
}

/// Sessions of one address (an IPv4 address, or an IPv6 /64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressUse {
    /// Sessions connected.
    pub sessions: usize,
    /// Of which not logged in.
    pub unauthenticated: usize,
}

/// Why a connection is not taken: the error it is sent, and its disconnect reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The error code sent before the close.
    pub code: ErrorCode,
    /// The reason sent.
    pub reason: String,
    /// The disconnect reason logged.
    pub disconnect: DisconnectReason,
}

impl<G: Game> World<G> {
    /// Whether a connection from `peer` may be taken now; otherwise what it is told.
    pub fn admission(&self, peer: IpAddr) -> Result<(), Refused> {
        let c = &self.config;
        if self.clients.len() + self.lingering.len() >= c.max_sessions {
            return Err(Refused {
                code: ErrorCode::ServerFull,
                reason: format!(
                    "server full: {} sessions is the most it takes",
                    c.max_sessions
                ),
                disconnect: DisconnectReason::ServerFull,
            });
        }
        if c.throttle.is_exempt(peer) {
            return Ok(());
        }
        let used = self
            .addresses
            .get(&addr_key(peer))
            .copied()
            .unwrap_or_default();
        let refuse = |reason: String| Refused {
            code: ErrorCode::TooManyConnections,
            reason,
            disconnect: DisconnectReason::TooManyConnections,
        };
        if c.max_sessions_per_address > 0 && used.sessions >= c.max_sessions_per_address {
            return Err(refuse(format!(
                "{} connections from your address, the most limits.max_sessions_per_address allows",
                used.sessions
            )));
        }
        let network = self
            .prefixes
            .get(&prefix_key(peer))
            .copied()
            .unwrap_or_default();
        if c.max_sessions_per_prefix > 0 && network >= c.max_sessions_per_prefix {
            return Err(refuse(format!(
                "{network} connections from your network ({}), the most limits.max_sessions_per_prefix allows",
                if peer.is_ipv4() { "/24" } else { "/48" }
            )));
        }
        if c.max_unauthenticated_per_address > 0
            && used.unauthenticated >= c.max_unauthenticated_per_address
        {
            return Err(refuse(format!(
                "{} connections from your address are not logged in, the most limits.max_unauthenticated_per_address allows; log in on one of them first",
                used.unauthenticated
            )));
        }
        Ok(())
    }

    /// Whether one more guest may log in: guests hold fewer than `max_guests` (the rest of
    /// the server is kept for players with accounts). Counts the guest when it may.
    pub(crate) fn take_guest_place(&mut self) -> Result<(), HandlerError> {
        if self.guests >= self.config.max_guests {
            return Err(HandlerError::new(
                ErrorCode::ServerFull,
                format!(
                    "guests hold the {} places open to them; the rest is kept for players with accounts",
                    self.config.max_guests
                ),
            ));
        }
        self.guests += 1;
        Ok(())
    }

    pub(super) fn address_use(&mut self, peer: SocketAddr) -> &mut AddressUse {
        self.addresses.entry(addr_key(peer.ip())).or_default()
    }
}
