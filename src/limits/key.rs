//! Who a limit counts: an IPv4 address, the /64 an IPv6 address is in, or an API key.

use std::fmt;
use std::net::IpAddr;

use crate::domain::{KeyId, canonical};

/// Who a limit counts: an IPv4 address, or the /64 an IPv6 address is in (one subscriber's
/// network; a single host can use a whole /64); or, for a request with a valid API key, the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKey {
    Address(IpAddr),
    Key(KeyId),
}

impl LimitKey {
    pub fn of(address: IpAddr) -> LimitKey {
        match canonical(address) {
            IpAddr::V6(v6) => {
                LimitKey::Address(IpAddr::V6((v6.to_bits() & !u128::from(u64::MAX)).into()))
            }
            v4 => LimitKey::Address(v4),
        }
    }

    pub fn key(id: KeyId) -> LimitKey {
        LimitKey::Key(id)
    }
}

/// An address as written (`198.51.100.7`, `2001:db8:1:2::`), a key as `key:<id>`: what names
/// a bucket in Redis.
impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::Address(address) => address.fmt(f),
            LimitKey::Key(id) => write!(f, "key:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> LimitKey {
        LimitKey::of(raw.parse().unwrap())
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:198.51.100.7"), key("198.51.100.7"));
        assert_ne!(key("198.51.100.7"), key("198.51.100.8"));
    }
}
