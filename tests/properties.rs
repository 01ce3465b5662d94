//! B3: the parsers at the edge hold their rules for generated input, not only for the examples
//! of their unit tests (cargo-fuzz needs a nightly toolchain; proptest runs in `make test`):
//! the target URL validator, the alias and Idempotency-Key parsers, and the client address
//! taken from `X-Forwarded-For`. Each parser never panics; what it accepts is exactly what its
//! rule says; and an accepted target is one the redirect can send as it is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::HeaderValue;
use proptest::prelude::*;
use shortener::domain::{
    Alias, IdempotencyKey, IpNet, MAX_URL_LEN, RESERVED_WORDS, TargetUrl, TrustedProxies, canonical,
};

/// Text with what attacks a URL parser: ASCII, controls, whitespace, percent signs, `@`, and
/// letters of other scripts (look-alikes).
fn hostile_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => proptest::char::range(' ', '~'),
            1 => proptest::char::range('\0', '\u{1f}'),
            1 => prop::sample::select(vec!['\u{7f}', '\u{85}', '\u{a0}', '\u{2028}', '\u{200b}', '\u{feff}']),
            1 => prop::sample::select(vec!['а', 'е', 'о', 'р', 'ѕ', 'ο', 'ε', 'ß', 'é', '中']),
        ],
        0..300,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// A well-formed `http(s)` URL: a host name, a path, maybe a query and a fragment.
fn ordinary_url() -> impl Strategy<Value = String> {
    proptest::string::string_regex(
        "https?://[a-z][a-z0-9]{0,15}(\\.[a-z][a-z0-9]{0,10}){0,2}\\.(com|org|net|example)(:[1-9][0-9]{1,3})?(/[A-Za-z0-9._~-]{0,12}){0,4}(\\?[a-z]{1,5}=[A-Za-z0-9%]{0,8}(&[a-z]{1,5}=[A-Za-z0-9]{0,8}){0,3})?(#[a-z]{0,6})?",
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever the input: no panic, and an accepted target is canonical, bounded, free of
    /// controls and whitespace, carries no credentials, and can be sent as `Location`.
    #[test]
    fn what_the_url_validator_accepts_is_sendable_and_canonical(
        raw in prop_oneof![
            hostile_text(),
            ordinary_url().prop_map(|url| url),
            (ordinary_url(), hostile_text()).prop_map(|(url, tail)| url + &tail),
            // Hosts with characters host names do not have.
            proptest::string::string_regex("https?://[a-z0-9{}`|^~©é.-]{1,12}(/[a-z]{0,5})?").unwrap(),
        ]
    ) {
        if let Ok(target) = TargetUrl::parse(&raw) {
            let text = target.as_str();
            prop_assert!(TargetUrl::is_redirectable(text), "{text}");
            prop_assert!(text.len() <= MAX_URL_LEN);
            prop_assert!(!text.chars().any(|c| c.is_control() || c.is_whitespace()), "{text:?}");
            prop_assert!(HeaderValue::from_str(text).is_ok(), "{text:?}");
            let authority = text.split_once("://").unwrap().1.split(['/', '?', '#']).next().unwrap();
            prop_assert!(!authority.contains('@'), "credentials kept in {text}");
            // A host name, an IPv4 address or a bracketed IPv6 one; then maybe a port.
            let host = if authority.starts_with('[') {
                authority.split(']').next().unwrap()
            } else {
                authority.rsplit_once(':').map_or(authority, |(host, _)| host)
            };
            prop_assert!(
                host.starts_with('[')
                    || host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')),
                "a host with other characters: {text}"
            );
            let again = TargetUrl::parse(text);
            prop_assert_eq!(again.as_ref().map(TargetUrl::as_str).ok(), Some(text));
        }
    }

    #[test]
    fn ordinary_urls_are_accepted(url in ordinary_url()) {
        prop_assert!(TargetUrl::parse(&url).is_ok(), "{url}");
    }

    /// A control character anywhere, or credentials before the host, and it is refused.
    #[test]
    fn controls_and_credentials_are_refused(
        url in ordinary_url(),
        at in any::<prop::sample::Index>(),
        control in proptest::char::range('\0', '\u{1f}'),
        user in "[a-z]{1,8}(:[a-z0-9]{0,8})?",
    ) {
        let mut with_control = url.clone();
        let mut position = at.index(url.len() + 1);
        while !with_control.is_char_boundary(position) {
            position -= 1;
        }
        with_control.insert(position, control);
        // Leading and trailing spaces are trimmed; a control character never is.
        prop_assert!(TargetUrl::parse(&with_control).is_err(), "{with_control:?}");
        let (scheme, rest) = url.split_once("://").unwrap();
        let with_user = format!("{scheme}://{user}@{rest}");
        prop_assert!(TargetUrl::parse(&with_user).is_err(), "{with_user}");
    }

    /// Accepted exactly when 3–64 characters of `[A-Za-z0-9_-]` and not a reserved word (in any
    /// letter case); kept as given.
    #[test]
    fn aliases_follow_their_rule(
        raw in prop_oneof![
            "[A-Za-z0-9_-]{0,70}",
            hostile_text(),
            prop::sample::select(RESERVED_WORDS.to_vec()).prop_map(|w| w.to_uppercase()),
        ]
    ) {
        let rule = (3..=64).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && !RESERVED_WORDS.iter().any(|w| w.eq_ignore_ascii_case(&raw));
        match Alias::parse(&raw) {
            Ok(alias) => {
                prop_assert!(rule, "accepted {raw:?}");
                prop_assert_eq!(alias.as_str(), raw.as_str());
            }
            Err(_) => prop_assert!(!rule, "refused {raw:?}"),
        }
    }

    /// Accepted exactly when 1–255 bytes of visible ASCII; kept as given.
    #[test]
    fn idempotency_keys_follow_their_rule(raw in prop::collection::vec(any::<u8>(), 0..300)) {
        let rule = (1..=255).contains(&raw.len()) && raw.iter().all(|b| (0x21..=0x7e).contains(b));
        match IdempotencyKey::parse(&raw) {
            Ok(key) => {
                prop_assert!(rule);
                prop_assert_eq!(key.as_str().as_bytes(), raw.as_slice());
            }
            Err(_) => prop_assert!(!rule),
        }
    }

    /// From an untrusted peer, `X-Forwarded-For` is never believed, whatever it holds.
    #[test]
    fn an_untrusted_peer_is_the_client(
        peer in any::<Ipv4Addr>().prop_filter("not trusted", |ip| ip.octets()[0] != 10),
        lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 0..4),
    ) {
        let proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]);
        let client = proxies.client_ip(IpAddr::V4(peer), lines.iter().map(Vec::as_slice));
        prop_assert_eq!(client.get(), IpAddr::V4(peer));
    }

    /// From a trusted peer: the right-most entry that is not a trusted proxy, walking the
    /// lines right to left; an unreadable entry stops the walk at the last address read.
    #[test]
    fn a_trusted_peer_names_the_nearest_untrusted_address(
        entries in prop::collection::vec(
            prop_oneof![
                3 => any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
                2 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| format!("10.0.{a}.{b}")),
                1 => any::<Ipv6Addr>().prop_map(|ip| ip.to_string()),
                1 => any::<Ipv4Addr>().prop_map(|ip| format!("::ffff:{ip}")),
                1 => "[a-z ]{0,6}",
            ],
            0..8,
        ),
        split in any::<prop::sample::Index>(),
        spaces in any::<bool>(),
    ) {
        let proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]);
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        // The entries as one or two header lines.
        let separator = if spaces { ", " } else { "," };
        let cut = split.index(entries.len() + 1);
        let lines: Vec<String> = [&entries[..cut], &entries[cut..]]
            .iter()
            .filter(|part| !part.is_empty())
            .map(|part| part.join(separator))
            .collect();
        let mut expected = peer;
        for entry in entries.iter().rev() {
            match entry.trim().parse::<IpAddr>() {
                Ok(address) => {
                    expected = canonical(address);
                    if !proxies.contains(expected) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let client = proxies.client_ip(peer, lines.iter().map(|line| line.as_bytes()));
        prop_assert_eq!(client.get(), expected, "{:?}", lines);
    }
}
