//! Who the client is: the TCP peer, or what `X-Forwarded-For` says when the peer is a trusted proxy.

use std::net::IpAddr;
use std::str::FromStr;

/// The address a request is attributed to (idempotency scope, and later rate limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(IpAddr);

impl ClientIp {
    pub fn get(self) -> IpAddr {
        self.0
    }
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`); a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let network: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("'{raw}' is not an IP address or CIDR"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => match prefix.trim().parse::<u8>() {
                Ok(prefix) if prefix <= max => prefix,
                _ => return Err(format!("'{raw}' has a prefix length outside 0..={max}")),
            },
        };
        Ok(IpNet { network, prefix })
    }
}

impl IpNet {
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, canonical(address)) {
            (IpAddr::V4(network), IpAddr::V4(address)) => prefix_match(
                network.to_bits().into(),
                address.to_bits().into(),
                self.prefix,
                32,
            ),
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                prefix_match(network.to_bits(), address.to_bits(), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_match(network: u128, address: u128, prefix: u8, width: u32) -> bool {
    let shift = width - u32::from(prefix);
    shift >= width || (network >> shift) == (address >> shift)
}

/// IPv4-mapped IPv6 addresses (dual-stack sockets) count as the IPv4 address they carry.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The proxies whose `X-Forwarded-For` header is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        TrustedProxies(networks)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(address))
    }

    /// Whether `address` is one of the trusted proxies.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.trusts(address)
    }

    /// The client behind `peer`. When the peer is trusted, walk `X-Forwarded-For` from the right
    /// (the entries nearest to us, appended by proxies we trust) to the first address that is not
    /// itself a trusted proxy. Entries further left were written by the client and prove nothing.
    /// `forwarded_for` is every `X-Forwarded-For` line in the order received: several lines are
    /// one list (RFC 9110 §5.3), so a proxy that adds a line of its own is honoured too.
    pub fn client_ip<'a, I>(&self, peer: IpAddr, forwarded_for: I) -> ClientIp
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: DoubleEndedIterator,
    {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return ClientIp(peer);
        }
        let mut client = peer;
        for line in forwarded_for.into_iter().rev() {
            let Ok(line) = std::str::from_utf8(line) else {
                return ClientIp(client);
            };
            for entry in line.rsplit(',') {
                let Ok(address) = entry.trim().parse::<IpAddr>() else {
                    return ClientIp(client);
                };
                client = canonical(address);
                if !self.trusts(client) {
                    return ClientIp(client);
                }
            }
        }
        ClientIp(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|net| net.parse().unwrap()).collect())
    }

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap()
    }

    #[test]
    fn parses_and_matches_cidrs() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")));
        assert!(
            "0.0.0.0/0"
                .parse::<IpNet>()
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        assert!("fd00::/8".parse::<IpNet>().unwrap().contains(ip("fd12::1")));
        assert!(
            "127.0.0.1"
                .parse::<IpNet>()
                .unwrap()
                .contains(ip("127.0.0.1"))
        );
        for bad in ["10.0.0.0/33", "::/129", "nonsense", "10.0.0.0/x", ""] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_address() {
        let client = proxies(&[]).client_ip(ip("203.0.113.9"), [&b"1.2.3.4"[..]]);
        assert_eq!(client.get(), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_proxies_name_the_rightmost_untrusted_hop() {
        let proxies = proxies(&["10.0.0.0/8"]);
        let client = proxies.client_ip(ip("10.0.0.2"), [&b"6.6.6.6, 198.51.100.7, 10.0.0.3"[..]]);
        assert_eq!(client.get(), ip("198.51.100.7"));
        let none: [&[u8]; 0] = [];
        assert_eq!(
            proxies.client_ip(ip("10.0.0.2"), none).get(),
            ip("10.0.0.2")
        );
        let garbage = proxies.client_ip(ip("10.0.0.2"), [&b"not-an-ip"[..]]);
        assert_eq!(garbage.get(), ip("10.0.0.2"));
    }

    #[test]
    fn every_forwarded_for_line_counts_and_the_rightmost_untrusted_wins() {
        let proxies = proxies(&["10.0.0.0/8"]);
        // The client's own line comes first; our proxies appended a line each after it.
        let lines: [&[u8]; 3] = [b"6.6.6.6", b"198.51.100.7", b"10.0.0.9, 10.0.0.3"];
        assert_eq!(
            proxies.client_ip(ip("10.0.0.2"), lines).get(),
            ip("198.51.100.7")
        );
        // Never the left-most: a spoofed first entry is ignored.
        let lines: [&[u8]; 1] = [b"1.1.1.1, 203.0.113.5"];
        assert_eq!(
            proxies.client_ip(ip("10.0.0.2"), lines).get(),
            ip("203.0.113.5")
        );
        // An IPv4-mapped peer is matched as IPv4.
        let lines: [&[u8]; 1] = [b"203.0.113.5"];
        assert_eq!(
            proxies.client_ip(ip("::ffff:10.0.0.1"), lines).get(),
            ip("203.0.113.5")
        );
        assert!(
            "10.0.0.0/8"
                .parse::<IpNet>()
                .unwrap()
                .contains(ip("::ffff:10.0.0.1"))
        );
    }
}
