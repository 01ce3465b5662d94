//! Who a request comes from: the TCP peer, or the right-most untrusted address of every
//! `X-Forwarded-For` line when the peer is a trusted proxy (`domain::TrustedProxies`).

use std::net::SocketAddr;

use http::{HeaderMap, HeaderValue};

use crate::domain::{ClientIp, TrustedProxies};

pub fn client_ip(proxies: &TrustedProxies, peer: SocketAddr, headers: &HeaderMap) -> ClientIp {
    proxies.client_ip(
        peer.ip(),
        headers
            .get_all("x-forwarded-for")
            .iter()
            .map(HeaderValue::as_bytes),
    )
}
