//! [`AddrRange`]: an address or a CIDR range of addresses, as written in a config list; and
//! [`resolve`]: `HOST:PORT` or `ADDR:PORT` to a socket address, wherever one is configured.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// `ADDR:PORT`, or `HOST:PORT` resolved (once, now) to its first IPv4 address, or its first
/// address when it has no IPv4 one: `localhost:7000` is `127.0.0.1:7000`.
pub fn resolve(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if !text.contains(':') {
        return Err("ADDR:PORT or HOST:PORT".to_string());
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("ADDR:PORT or HOST:PORT ({e})"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| "a host name that resolves".to_string())
}

/// Serde: a socket address written as `ADDR:PORT` or `HOST:PORT` (see [`resolve`]).
pub(crate) fn socket_addr<'de, D: serde::Deserializer<'de>>(de: D) -> Result<SocketAddr, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(de)?;
    // The loader adds the value as written.
    resolve(&text).map_err(|rule| serde::de::Error::custom(format!("must be {rule}")))
}

/// Serde: a list of socket addresses, each as [`socket_addr`] takes it.
pub(crate) fn socket_addrs<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Vec<SocketAddr>, D::Error> {
    let texts = <Vec<String> as serde::Deserialize>::deserialize(de)?;
    texts
        .iter()
        .map(|text| {
            resolve(text).map_err(|rule| {
                serde::de::Error::custom(format!("each must be {rule}, not {text:?}"))
            })
        })
        .collect()
}

/// One address (`"10.1.2.3"`, `"::1"`) or a CIDR range (`"127.0.0.0/8"`, `"fd00::/8"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrRange {
    /// The first address of the range (host bits cleared).
    network: IpAddr,
    /// Leading bits that must match.
    prefix: u8,
}

impl AddrRange {
    /// Whether `addr` lies in the range. An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`)
    /// is matched as the IPv4 address it carries.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, unmap(addr)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                mask(u32::from(a) as u128, 32, self.prefix) == u32::from(net) as u128
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                mask(u128::from(a), 128, self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address; any other address unchanged.
pub fn unmap(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// `value` (of `bits` bits) with all but its leading `prefix` bits cleared.
fn mask(value: u128, bits: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        let keep = (!0u128) << (bits - prefix);
        value & keep & if bits == 128 { !0 } else { (1u128 << bits) - 1 }
    }
}

impl FromStr for AddrRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| "an IP address or a CIDR range such as 10.0.0.0/8".to_string())?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= bits => p,
                _ => return Err(format!("a CIDR prefix length of 0..={bits}")),
            },
        };
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4((mask(u32::from(a) as u128, 32, prefix) as u32).into()),
            IpAddr::V6(a) => IpAddr::V6(mask(u128::from(a), 128, prefix).into()),
        };
        Ok(AddrRange { network, prefix })
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_resolve_to_an_address_ipv4_first() {
        assert_eq!(
            resolve("127.0.0.1:7000"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 7000)))
        );
        assert_eq!(resolve("[::1]:7000").unwrap().port(), 7000);
        assert_eq!(
            resolve("localhost:7000"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 7000)))
        );
        assert!(resolve("localhost").is_err());
        assert!(resolve("nope.invalid:7000").is_err());
    }

    fn range(text: &str) -> AddrRange {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_cidr_range_contains_exactly_its_addresses() {
        let loopback = range("127.0.0.0/8");
        assert!(loopback.contains(ip("127.0.0.1")));
        assert!(loopback.contains(ip("127.255.3.4")));
        assert!(!loopback.contains(ip("128.0.0.1")));
        assert!(!loopback.contains(ip("::1")));
        let net = range("10.1.2.128/25");
        assert!(net.contains(ip("10.1.2.255")));
        assert!(!net.contains(ip("10.1.2.127")));
        assert_eq!(net.to_string(), "10.1.2.128/25");
    }

    #[test]
    fn a_plain_address_is_a_range_of_one() {
        let one = range("::1");
        assert!(one.contains(ip("::1")));
        assert!(!one.contains(ip("::2")));
        assert!(range("192.168.0.7").contains(ip("192.168.0.7")));
        assert!(!range("192.168.0.7").contains(ip("192.168.0.8")));
    }

    #[test]
    fn host_bits_are_cleared_and_prefix_zero_matches_everything_of_its_family() {
        assert_eq!(range("10.9.9.9/8").to_string(), "10.0.0.0/8");
        assert!(range("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(range("::/0").contains(ip("2001:db8::1")));
        assert!(range("fd00::/8").contains(ip("fd12:3456::1")));
        assert!(!range("fd00::/8").contains(ip("fe80::1")));
    }

    #[test]
    fn ipv4_mapped_ipv6_peers_match_ipv4_ranges() {
        assert!(range("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn bad_ranges_are_refused_saying_what_is_expected() {
        for bad in [
            "localhost",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "",
            "1.2.3.4/",
        ] {
            assert!(bad.parse::<AddrRange>().is_err(), "{bad}");
        }
        assert_eq!(
            "10.0.0.0/33".parse::<AddrRange>().unwrap_err(),
            "a CIDR prefix length of 0..=32"
        );
    }
}
