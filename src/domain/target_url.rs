//! Target URLs: parsed with the WHATWG rules of the `url` crate, refused unless plainly safe to
//! redirect to, and stored in canonical ASCII form (punycode host, percent-encoded path).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use thiserror::Error;
use url::{Host, Url};

use super::canonical;

/// Longest canonical URL we store, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// A validated, canonical `http`/`https` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl(Url);

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("url is longer than {MAX_URL_LEN} bytes")]
    TooLong,
    #[error("url contains control characters (tabs, line breaks or other)")]
    ControlCharacter,
    #[error("url is not a valid absolute URL: {0}")]
    Malformed(String),
    #[error("only http and https URLs can be shortened")]
    Scheme,
    #[error("URLs with user information (user:password@) are refused")]
    Userinfo,
    #[error("url has no host")]
    NoHost,
    #[error("the host of this url is blocked")]
    Blocked,
    #[error("url points at this service itself")]
    OwnHost,
    #[error("url points at a private, loopback or link-local address, or port 0")]
    PrivateTarget,
    #[error("the host of this url mixes scripts or imitates another domain (IDN look-alike)")]
    Confusable,
}

/// What a target must not point at.
#[derive(Debug, Clone)]
pub struct UrlPolicy {
    /// The host of this service's public base URL, in ASCII.
    pub own_host: String,
    /// The port of the public base URL (its scheme's default when it names none).
    pub own_port: u16,
    /// Where this service listens: its port on a loopback address, or on this address, is a
    /// redirect loop.
    pub listen: SocketAddr,
    /// Refuse literal private, loopback, link-local and unspecified addresses, and port 0
    /// (`SHORTENER_BLOCK_PRIVATE_TARGETS`).
    pub block_private: bool,
    pub blocklist: Blocklist,
}

impl Default for UrlPolicy {
    fn default() -> Self {
        UrlPolicy {
            own_host: String::new(),
            own_port: 80,
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            block_private: false,
            blocklist: Blocklist::default(),
        }
    }
}

impl UrlPolicy {
    /// Whether a link to `target` may be made here: not back to this service, not to a
    /// private address when those are refused, not to a blocked host.
    pub fn admit(&self, target: &TargetUrl) -> Result<(), UrlError> {
        let url = &target.0;
        let host = url.host().ok_or(UrlError::NoHost)?;
        let port = url.port_or_known_default().unwrap_or(0);
        if self.is_self(&host, port) {
            return Err(UrlError::OwnHost);
        }
        if self.block_private
            && (port == 0
                || literal_address(&host).is_some_and(is_private)
                || is_localhost_name(&host_name(&host)))
        {
            return Err(UrlError::PrivateTarget);
        }
        if self.blocklist.blocks(&host) {
            return Err(UrlError::Blocked);
        }
        Ok(())
    }

    /// A link back to this service: its public host on its public port, or a loopback (or the
    /// listen) address on the port it listens on. Hosts are compared as written in the URL
    /// (canonical after WHATWG parsing: lower case, IPv4 in dotted decimal, IPv6 compressed),
    /// with no DNS look-up; another port on the same machine is another service.
    fn is_self(&self, host: &Host<&str>, port: u16) -> bool {
        let name = host_name(host);
        let own_host = self.own_host.trim_end_matches('.');
        let on_own_port = port == self.own_port || port == self.listen.port();
        if name.eq_ignore_ascii_case(own_host) {
            // A public host on this machine (development) is this service only on its ports.
            return on_own_port || !names_loopback(own_host);
        }
        if port != self.listen.port() {
            return false;
        }
        match literal_address(host) {
            Some(address) => {
                address.is_loopback()
                    || address.is_unspecified()
                    || address == canonical(self.listen.ip())
            }
            None => is_localhost_name(&name),
        }
    }
}

/// Whether a host as configured (a name or a literal address) is this machine.
fn names_loopback(host: &str) -> bool {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<IpAddr>() {
        Ok(address) => canonical(address).is_loopback(),
        Err(_) => is_localhost_name(host),
    }
}

/// The host as text, without a trailing dot.
fn host_name<'a>(host: &'a Host<&str>) -> std::borrow::Cow<'a, str> {
    match host {
        Host::Domain(domain) => std::borrow::Cow::Borrowed(domain.trim_end_matches('.')),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

/// The address a host names literally (IPv4-mapped IPv6 as IPv4).
fn literal_address(host: &Host<&str>) -> Option<IpAddr> {
    match host {
        Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
        Host::Ipv6(v6) => Some(canonical(IpAddr::V6(*v6))),
        Host::Domain(_) => None,
    }
}

/// `localhost` and its subdomains always name a loopback address (RFC 6761).
fn is_localhost_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Loopback, RFC 1918, link-local (the cloud metadata address 169.254.169.254 among them),
/// unique-local IPv6, and unspecified addresses.
fn is_private(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4 == Ipv4Addr::UNSPECIFIED
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6 == Ipv6Addr::UNSPECIFIED
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Hosts that may not be linked to; an entry also blocks its subdomains. Clones share one
/// list, so [`Blocklist::replace_with`] (a reload) reaches every holder at once.
#[derive(Debug, Clone, Default)]
pub struct Blocklist(Arc<RwLock<Arc<HashSet<String>>>>);

impl Blocklist {
    /// Parses one host a line; blank lines and `#` comments are skipped. Every bad line is reported.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let mut hosts = HashSet::new();
        let mut errors = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            match Host::parse(entry) {
                Ok(host) => {
                    hosts.insert(host.to_string().trim_end_matches('.').to_owned());
                }
                Err(error) => errors.push(format!("line {}: '{entry}': {error}", number + 1)),
            }
        }
        if errors.is_empty() {
            Ok(Blocklist(Arc::new(RwLock::new(Arc::new(hosts)))))
        } else {
            Err(errors)
        }
    }

    /// Entries in the list now.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes `other`'s entries this list's, for every clone of it.
    pub fn replace_with(&self, other: &Blocklist) {
        let entries = other.snapshot();
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = entries;
    }

    fn snapshot(&self) -> Arc<HashSet<String>> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// An IP address is blocked only by itself; a domain by itself or any parent domain.
    fn blocks(&self, host: &Host<&str>) -> bool {
        let hosts = self.snapshot();
        let Host::Domain(domain) = host else {
            return hosts.contains(&host.to_string());
        };
        let mut candidate = domain.trim_end_matches('.');
        loop {
            if hosts.contains(candidate) {
                return true;
            }
            match candidate.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => candidate = parent,
                _ => return false,
            }
        }
    }
}

impl TargetUrl {
    /// Reads an absolute `http(s)` URL into its canonical form: the rules that hold whatever
    /// the configuration (scheme, userinfo, control characters, length, IDN look-alikes).
    /// Where it may point is [`UrlPolicy::admit`]'s to say.
    pub fn parse(raw: &str) -> Result<Self, UrlError> {
        // Percent-encoding at most triples a character; anything longer cannot fit.
        if raw.len() > MAX_URL_LEN * 3 {
            return Err(UrlError::TooLong);
        }
        let raw = raw.trim_matches(' ');
        // The WHATWG parser silently drops tabs and newlines ("java\tscript:"); refuse them instead.
        if raw.chars().any(char::is_control) {
            return Err(UrlError::ControlCharacter);
        }
        let url = Url::parse(raw).map_err(|error| UrlError::Malformed(error.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlError::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Userinfo);
        }
        match url.host() {
            None => return Err(UrlError::NoHost),
            // The WHATWG parser keeps characters no host name has (`{`, `` ` ``, `|`…), and
            // punycodes them with the rest: a target that is then no URI (RFC 3986) at all.
            Some(Host::Domain(domain)) if !domain.bytes().all(is_host_name_byte) => {
                return Err(UrlError::Malformed(
                    "the host is not a host name (letters, digits, '-', '.', '_')".into(),
                ));
            }
            Some(Host::Domain(domain)) if is_confusable(domain.trim_end_matches('.')) => {
                return Err(UrlError::Confusable);
            }
            Some(_) => {}
        }
        if url.as_str().len() > MAX_URL_LEN {
            return Err(UrlError::TooLong);
        }
        Ok(TargetUrl(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn into_string(self) -> String {
        String::from(self.0)
    }

    /// The check repeated just before a redirect is sent.
    pub fn is_redirectable(target: &str) -> bool {
        target.starts_with("https://") || target.starts_with("http://")
    }
}

/// A byte of a host name in its ASCII form (IDN labels are `xn--` punycode by then); `_` is
/// not in DNS host names but is in real ones (service and legacy names), so it is kept.
fn is_host_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    Cyrillic,
    Greek,
    Armenian,
}

fn script(c: char) -> Option<Script> {
    match c {
        'a'..='z' | 'A'..='Z' | '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}' => {
            Some(Script::Latin)
        }
        '\u{0400}'..='\u{052F}' => Some(Script::Cyrillic),
        '\u{0370}'..='\u{03FF}' | '\u{1F00}'..='\u{1FFF}' => Some(Script::Greek),
        '\u{0530}'..='\u{058F}' => Some(Script::Armenian),
        _ => None,
    }
}

/// Letters of other scripts that look like Latin letters once lower-cased by IDNA.
const LATIN_LOOKALIKES: &str = "аеорсухіјѕһԁԛԝӏьοινκραυօսոհցզ";

/// A host imitates another when one label mixes Latin, Cyrillic, Greek or Armenian letters
/// (`pаypal` with a Cyrillic `а`), or when a label under an ASCII top-level domain is written
/// wholly in look-alike letters of another script (`аррӏе.com`). Whole-script labels such as
/// `пример.рф` stay allowed.
fn is_confusable(ascii_domain: &str) -> bool {
    let tld_is_ascii = ascii_domain
        .rsplit('.')
        .next()
        .is_some_and(|tld| !tld.starts_with("xn--"));
    ascii_domain.split('.').any(|label| {
        let Some(encoded) = label.strip_prefix("xn--") else {
            return false;
        };
        let Some(unicode) = idna::punycode::decode_to_string(encoded) else {
            return true;
        };
        let mut scripts = unicode.chars().filter_map(script);
        let Some(first) = scripts.next() else {
            return false;
        };
        if scripts.any(|other| other != first) {
            return true;
        }
        let letters_all_lookalikes = unicode
            .chars()
            .filter(|c| script(*c).is_some())
            .all(|c| LATIN_LOOKALIKES.contains(c));
        first != Script::Latin && tld_is_ascii && letters_all_lookalikes
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read, then admitted by `policy`: what a create checks.
    fn checked(raw: &str, policy: &UrlPolicy) -> Result<TargetUrl, UrlError> {
        let target = TargetUrl::parse(raw)?;
        policy.admit(&target)?;
        Ok(target)
    }

    fn policy() -> UrlPolicy {
        UrlPolicy {
            own_host: "sho.rt".into(),
            blocklist: Blocklist::parse(
                "# bad places\nevil.example\n\nmalware.test # trailing\ndotted.example.\n\
                 127.0.0.1\n[::1]\n",
            )
            .unwrap(),
            ..UrlPolicy::default()
        }
    }

    #[test]
    fn links_back_to_this_service_are_refused_in_every_spelling() {
        // Listening on 0.0.0.0:8080, public host sho.rt: any port of the public host, and
        // this machine on the port the service listens on.
        for own in [
            "http://sho.rt/x",
            "https://SHO.RT:8443/x",
            "http://sho.rt./x",
            "http://127.0.0.1:8080/x",
            "http://127.1.2.3:8080/x",
            "http://2130706433:8080/x",
            "http://0x7f.1:8080/x",
            "http://[::1]:8080/x",
            "http://[0:0:0:0:0:0:0:1]:8080/x",
            "http://[::ffff:127.0.0.1]:8080/x",
            "http://localhost:8080/x",
            "http://LOCALHOST.:8080/x",
            "http://api.localhost:8080/",
            "http://0.0.0.0:8080/",
            "http://[::]:8080/",
        ] {
            assert_eq!(parse(own), Err(UrlError::OwnHost), "{own}");
        }
        // Other ports of this machine are other services.
        for other in [
            "http://localhost:3000/",
            "http://[::2]:8080/",
            "http://127.0.0.2/",
        ] {
            assert!(parse(other).is_ok(), "{other}");
        }
    }

    #[test]
    fn a_public_host_on_this_machine_is_this_service_only_on_its_ports() {
        let policy = UrlPolicy {
            own_host: "localhost".into(),
            own_port: 8080,
            listen: "127.0.0.1:8080".parse().unwrap(),
            ..UrlPolicy::default()
        };
        let parse = |raw: &str| checked(raw, &policy);
        assert_eq!(parse("http://localhost:8080/a"), Err(UrlError::OwnHost));
        assert_eq!(parse("http://localhost.:8080/a"), Err(UrlError::OwnHost));
        assert_eq!(parse("http://[::1]:8080/a"), Err(UrlError::OwnHost));
        assert!(parse("http://localhost:5173/app").is_ok());
        assert!(parse("http://localhost/").is_ok());
    }

    #[test]
    fn private_targets_are_refused_only_when_asked() {
        let private = [
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1:8443/",
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:9000/",
            "http://0.0.0.0:9000/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://localhost:9000/",
            "http://example.com:0/",
        ];
        let open = UrlPolicy::default();
        let closed = UrlPolicy {
            block_private: true,
            ..UrlPolicy::default()
        };
        for raw in private {
            assert!(checked(raw, &open).is_ok(), "{raw} with the setting off");
            assert_eq!(checked(raw, &closed), Err(UrlError::PrivateTarget), "{raw}");
        }
        for public in [
            "http://8.8.8.8/",
            "http://[2001:db8::1]/",
            "https://example.com/",
        ] {
            assert!(checked(public, &closed).is_ok(), "{public}");
        }
    }

    fn parse(raw: &str) -> Result<String, UrlError> {
        checked(raw, &policy()).map(TargetUrl::into_string)
    }

    #[test]
    fn canonicalises_to_ascii() {
        assert_eq!(
            parse("HTTPS://Example.COM").unwrap(),
            "https://example.com/"
        );
        assert_eq!(
            parse("https://bücher.example/a b?q=ü#frag").unwrap(),
            "https://xn--bcher-kva.example/a%20b?q=%C3%BC#frag"
        );
        assert_eq!(
            parse("http://example.com:80/x").unwrap(),
            "http://example.com/x"
        );
        assert_eq!(
            parse("  https://example.com/  ").unwrap(),
            "https://example.com/"
        );
        assert_eq!(
            parse("https://пример.рф/").unwrap(),
            "https://xn--e1afmkfd.xn--p1ai/"
        );
    }

    #[test]
    fn refuses_other_schemes_in_any_case_and_with_hidden_whitespace() {
        for raw in [
            "JaVaScRiPt:alert(1)",
            "javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "file:///etc/passwd",
            "ftp://example.com/",
            "mailto:a@example.com",
            "ws://example.com/",
        ] {
            assert_eq!(parse(raw), Err(UrlError::Scheme), "{raw}");
        }
        for raw in [
            "java\tscript:alert(1)",
            "https://exa\nmple.com/",
            "https://a.example/\r\nX: y",
        ] {
            assert_eq!(parse(raw), Err(UrlError::ControlCharacter), "{raw:?}");
        }
    }

    #[test]
    fn refuses_relative_malformed_and_userinfo() {
        for raw in [
            "/relative/path",
            "example.com",
            "//example.com/x",
            "http://[::1]:99999/",
            "https://",
            "",
            // Characters no host name has, which the WHATWG parser keeps (found by schemathesis).
            "https://{©{/",
            "https://a`b.example/",
            "https://a|b.example/",
        ] {
            assert!(matches!(parse(raw), Err(UrlError::Malformed(_))), "{raw}");
        }
        // Host names as they are written: letters, digits, '-', '.', '_', and IDNs.
        for ok in [
            "https://my_host.example/",
            "https://bücher.example/",
            "http://a-b.c/",
        ] {
            assert!(parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            parse("https://user:pw@host.example/"),
            Err(UrlError::Userinfo)
        );
        assert_eq!(
            parse("https://bank.com@evil.example/"),
            Err(UrlError::Userinfo)
        );
    }

    #[test]
    fn refuses_long_blocked_and_own_hosts() {
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(parse(&long), Err(UrlError::TooLong));
        assert_eq!(
            parse(&format!("https://example.com/{}", "a".repeat(10_000))),
            Err(UrlError::TooLong)
        );
        // Percent-encoding happens before the length check.
        let expands = format!("https://example.com/{}", "é".repeat(400));
        assert_eq!(parse(&expands), Err(UrlError::TooLong));
        assert_eq!(parse("https://evil.example/x"), Err(UrlError::Blocked));
        assert_eq!(parse("https://EVIL.example./x"), Err(UrlError::Blocked));
        assert_eq!(
            parse("https://deep.sub.malware.test/"),
            Err(UrlError::Blocked)
        );
        assert!(parse("https://notevil.example/").is_ok());
        assert_eq!(parse("http://SHO.RT:8080/abc"), Err(UrlError::OwnHost));
        assert_eq!(parse("http://sho.rt./abc"), Err(UrlError::OwnHost));
        assert_eq!(parse("https://dotted.example/"), Err(UrlError::Blocked));
        assert_eq!(parse("https://a.dotted.example./"), Err(UrlError::Blocked));
        assert_eq!(parse("http://127.0.0.1/"), Err(UrlError::Blocked));
        assert_eq!(
            parse("http://0x7f.1/"),
            Err(UrlError::Blocked),
            "another spelling"
        );
        assert_eq!(parse("http://[0:0::1]/"), Err(UrlError::Blocked));
        assert!(parse("http://127.0.0.2/").is_ok());
    }

    #[test]
    fn refuses_idn_look_alikes() {
        for raw in [
            "https://pаypal.com/", // Cyrillic а inside a Latin label
            "https://аррӏе.com/",  // wholly Cyrillic look-alikes under .com
            "https://gοοgle.com/", // Greek omicrons
            "https://xn--pypal-4ve.com/",
        ] {
            assert_eq!(parse(raw), Err(UrlError::Confusable), "{raw}");
        }
        assert!(parse("https://münchen.de/").is_ok());
    }

    #[test]
    fn blocklist_reports_every_bad_line() {
        let errors = Blocklist::parse("good.example\nbad host\n[::1\n").unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].starts_with("line 2"));
    }
}
