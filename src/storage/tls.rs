//! Postgres connection strings with libpq's TLS settings, over rustls.
//!
//! tokio-postgres knows `sslmode=disable|prefer|require` and nothing of certificates; managed
//! Postgres services tell their users to connect with `sslmode=verify-full` and
//! `sslrootcert=<their CA bundle>`. This module reads both out of the connection string (URL
//! or `key=value` form), hands the rest to tokio-postgres, and builds the rustls verifier they
//! ask for, with libpq's meaning:
//!
//! | `sslmode`          | TLS                    | certificate checked                      |
//! |--------------------|------------------------|------------------------------------------|
//! | `disable`          | never                  | —                                        |
//! | `prefer` (default) | if the server offers it | no (chain only, when `sslrootcert` is set) |
//! | `require`          | always                 | no (chain only, when `sslrootcert` is set) |
//! | `verify-ca`        | always                 | chain, against `sslrootcert` (required)  |
//! | `verify-full`      | always                 | chain and host name                      |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the system's roots; with
//! `verify-full` and no `sslrootcert` the system's roots are used. (libpq would read
//! `~/.postgresql/root.crt`; a service has no such home.)

use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::Config;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// A Postgres server to connect to: its connection string parsed once (at start-up, by
/// `config`), with the TLS it asks for. Its `Debug` names the server, never the password.
#[derive(Clone)]
pub struct PgTarget {
    pub(super) config: Config,
    pub(super) tls: MakeRustlsConnect,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("server", &self.server())
            .field("ssl_mode", &self.config.get_ssl_mode())
            .finish()
    }
}

impl PgTarget {
    /// Reads a Postgres connection string (URL or `key=value` form) with libpq's `sslmode`
    /// and `sslrootcert`. The error never repeats the string (it may hold a password).
    pub fn parse(url: &str) -> Result<PgTarget, String> {
        parse(url)
    }

    /// Where it connects, `host:port` (hosts and ports as libpq pairs them), for logs.
    pub fn server(&self) -> String {
        let ports = self.config.get_ports();
        self.config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(index, host)| {
                let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
                match host {
                    tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(path) => {
                        format!("{}:{port}", path.display())
                    }
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What a connection string asks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

fn parse(url: &str) -> Result<PgTarget, String> {
    let (rest, sslmode, rootcert) = take_tls_params(url);
    let mut config = Config::from_str(&rest)
        .map_err(|_| "is not a valid Postgres connection string (value not shown)".to_owned())?;
    let (mode, check) = match (sslmode.as_deref(), rootcert.is_some()) {
        (None | Some("prefer"), false) => (SslMode::Prefer, Check::Nothing),
        (None | Some("prefer"), true) => (SslMode::Prefer, Check::Chain),
        (Some("disable"), _) => (SslMode::Disable, Check::Nothing),
        (Some("require"), false) => (SslMode::Require, Check::Nothing),
        (Some("require"), true) => (SslMode::Require, Check::Chain),
        (Some("verify-ca"), _) => (SslMode::Require, Check::Chain),
        (Some("verify-full"), _) => (SslMode::Require, Check::ChainAndName),
        (Some(other), _) => {
            return Err(format!(
                "sslmode '{other}' is not one of disable, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    config.ssl_mode(mode);
    let roots = match (check, rootcert.as_deref()) {
        (Check::Nothing, _) => None,
        (Check::Chain, None) => {
            return Err("sslmode=verify-ca needs sslrootcert (a CA file)".into());
        }
        (Check::Chain, Some("system")) => {
            return Err("sslrootcert=system is only allowed with sslmode=verify-full".into());
        }
        (Check::ChainAndName, None | Some("system")) => Some(system_roots()?),
        (_, Some(path)) => Some(roots_from_file(path)?),
    };
    Ok(PgTarget {
        config,
        tls: MakeRustlsConnect::new(client_config(check, roots)?),
    })
}

/// Splits `sslmode` and `sslrootcert` off a connection string; answers the rest unchanged.
fn take_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let (mut sslmode, mut rootcert) = (None, None);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), None, None);
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = || {
                url::form_urlencoded::parse(format!("v={value}").as_bytes())
                    .next()
                    .map(|(_, value)| value.into_owned())
                    .unwrap_or_default()
            };
            match key {
                "sslmode" => sslmode = Some(decoded()),
                "sslrootcert" => rootcert = Some(decoded()),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, sslmode, rootcert);
    }
    // `key=value` pairs separated by white space (these two values are never quoted).
    let mut kept = Vec::new();
    for token in url.split_whitespace() {
        if let Some(value) = token.strip_prefix("sslmode=") {
            sslmode = Some(value.to_owned());
        } else if let Some(value) = token.strip_prefix("sslrootcert=") {
            rootcert = Some(value.to_owned());
        } else {
            kept.push(token);
        }
    }
    if sslmode.is_none() && rootcert.is_none() {
        // Nothing taken: leave quoting and spacing exactly as they were.
        return (url.to_owned(), None, None);
    }
    (kept.join(" "), sslmode, rootcert)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(check: Check, roots: Option<RootCertStore>) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match (check, roots) {
        (Check::Nothing, _) | (_, None) => Arc::new(AnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        }),
        (Check::Chain, Some(roots)) => Arc::new(ChainOnly(webpki_verifier(roots, provider)?)),
        (Check::ChainAndName, Some(roots)) => webpki_verifier(roots, provider)?,
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn webpki_verifier(
    roots: RootCertStore,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("TLS: {e}"))
}

fn roots_from_file(path: &str) -> Result<RootCertStore, String> {
    let unreadable = |e: &dyn std::fmt::Display| format!("sslrootcert '{path}': {e}");
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
        roots
            .add(cert.map_err(|e| unreadable(&e))?)
            .map_err(|e| unreadable(&e))?;
    }
    if roots.is_empty() {
        return Err(unreadable(&"holds no certificate"));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err("no system CA certificates found for sslmode=verify-full".into());
    }
    Ok(roots)
}

/// `require` and `prefer` without a CA: the connection is encrypted, the peer not
/// authenticated (libpq's meaning). The handshake's signatures are still checked.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a given CA; the name in the certificate is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_are_taken_out_of_both_forms() {
        let (rest, mode, root) = take_tls_params(
            "postgres://u:p@db.example:5432/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        );
        assert_eq!(
            rest,
            "postgres://u:p@db.example:5432/app?application_name=x"
        );
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/ca.pem"));

        let (rest, mode, root) =
            take_tls_params("host=db port=5432 sslmode=require user=u password='a b'");
        assert_eq!(rest, "host=db port=5432 user=u password='a b'");
        assert_eq!(mode.as_deref(), Some("require"));
        assert_eq!(root, None);

        let plain = "host=db password='two  spaces'";
        assert_eq!(take_tls_params(plain).0, plain);
        let url = "postgres://u@db/app";
        assert_eq!(take_tls_params(url), (url.to_owned(), None, None));
    }

    #[test]
    fn modes_map_onto_the_driver_and_a_verifier() {
        for (url, mode) in [
            ("postgres://u@db/app", SslMode::Prefer),
            ("postgres://u@db/app?sslmode=disable", SslMode::Disable),
            ("postgres://u@db/app?sslmode=require", SslMode::Require),
            ("host=db user=u sslmode=require", SslMode::Require),
        ] {
            assert_eq!(parse(url).unwrap().config.get_ssl_mode(), mode, "{url}");
        }
        let refused = |url: &str| parse(url).err().unwrap();
        assert!(refused("postgres://u:secret@db/app?sslmode=always").contains("'always'"));
        assert!(!refused("postgres://u:secret@db/app?sslmode=always").contains("secret"));
        assert!(refused("postgres://u@db/app?sslmode=verify-ca").contains("needs sslrootcert"));
        assert!(
            refused("postgres://u@db/app?sslmode=verify-ca&sslrootcert=system")
                .contains("only allowed with sslmode=verify-full")
        );
        assert!(
            refused("postgres://u@db/app?sslmode=verify-full&sslrootcert=/no/such/ca.pem")
                .contains("sslrootcert '/no/such/ca.pem'")
        );
        assert!(refused("postgres://u:secret@db/app?nonsense=1").contains("not a valid Postgres"));
    }
}
