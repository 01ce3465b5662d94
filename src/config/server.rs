//! Listeners and HTTP: where the two listeners bind, the connection limits, how redirects are
//! answered, whom `X-Forwarded-For` is believed from, CORS, the access log, and the shutdown
//! timings.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use http::{HeaderValue, StatusCode};

use super::parse::{self, ConfigErrors};
use crate::domain::{IpNet, TrustedProxies};
use crate::http::{ConnectionLimits, HttpSettings, PerPeerCap};
use crate::telemetry::AccessLog;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address of the main (public) listener.
    #[arg(long, env = "SHORTENER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Address of the admin listener (/metrics, /healthz, /readyz).
    #[arg(long, env = "SHORTENER_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: String,
    /// Status of redirects: 301, 302, 307 or 308.
    #[arg(long, env = "SHORTENER_REDIRECT_STATUS", default_value = "302")]
    pub redirect_status: String,
    /// max-age, in seconds, of the `Cache-Control: private` header on redirects.
    #[arg(long, env = "SHORTENER_REDIRECT_MAX_AGE", default_value = "0")]
    pub redirect_max_age: String,
    /// Comma-separated CIDRs whose X-Forwarded-For is believed.
    #[arg(long, env = "SHORTENER_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Comma-separated origins (`https://app.example.com`) whose browser pages may call the
    /// API (creates and stats); none by default.
    #[arg(long, env = "SHORTENER_CORS_ORIGINS", default_value = "")]
    pub cors_origins: String,
    /// Deadline for draining requests and flushing after SIGTERM.
    #[arg(long, env = "SHORTENER_SHUTDOWN_GRACE", default_value = "25s")]
    pub shutdown_grace: String,
    /// After SIGTERM, how long to keep serving new requests while readiness already answers
    /// 503, so load balancers stop sending before the listener closes (Kubernetes: ~5s).
    #[arg(long, env = "SHORTENER_SHUTDOWN_DELAY", default_value = "0s")]
    pub shutdown_delay: String,
    /// Time a client has to send request headers; also closes keep-alive connections idle this long.
    #[arg(long, env = "SHORTENER_HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: String,
    /// Time a client has to send a whole request body, once its headers arrived: 408 after it.
    #[arg(long, env = "SHORTENER_BODY_READ_TIMEOUT", default_value = "5s")]
    pub body_read_timeout: String,
    /// Connections the kernel queues for accept on each listener (capped by net.core.somaxconn).
    #[arg(long, env = "SHORTENER_LISTEN_BACKLOG", default_value = "4096")]
    pub listen_backlog: String,
    /// Most connections open at once from one TCP peer (an IPv6 peer: its /64); more are closed
    /// at once. Never applied to SHORTENER_TRUSTED_PROXIES.
    #[arg(
        long,
        env = "SHORTENER_MAX_CONNECTIONS_PER_PEER",
        default_value = "256"
    )]
    pub max_connections_per_peer: String,
    /// Most open connections on the main listener; further clients wait in the accept backlog.
    #[arg(long, env = "SHORTENER_MAX_CONNECTIONS", default_value = "10000")]
    pub max_connections: String,
    /// One log line per request of the main listener: `off`, `errors` (5xx answers) or `all`.
    #[arg(long, env = "SHORTENER_ACCESS_LOG", default_value = "off")]
    pub access_log: String,
    /// With `SHORTENER_ACCESS_LOG=all`: the share of answers below 500 that get a line
    /// (0 < share ≤ 1); every 5xx gets one.
    #[arg(long, env = "SHORTENER_ACCESS_LOG_SAMPLE", default_value = "1")]
    pub access_log_sample: String,
    /// `true`: creates without an API key are refused (401); `false`: anyone may create, and
    /// a create with a key belongs to it.
    #[arg(
        long,
        env = "SHORTENER_REQUIRE_API_KEY_FOR_CREATE",
        default_value = "false"
    )]
    pub require_api_key_for_create: String,
    /// Largest body of `POST /shorten/batch`, in bytes (413 above it).
    #[arg(long, env = "SHORTENER_BATCH_BODY_LIMIT", default_value = "1048576")]
    pub batch_body_limit: String,
}

/// Where to listen and how to answer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The accept queue of each listener.
    pub backlog: u32,
    /// The main listener's limits (the admin listener's are the same without the per-peer cap).
    pub connections: ConnectionLimits,
    /// How requests are answered.
    pub http: HttpSettings,
    pub shutdown: ShutdownSettings,
}

/// How the service stops after SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownSettings {
    /// Everything is stopped within this.
    pub grace: Duration,
    /// Serving goes on this long while readiness already answers 503.
    pub delay: Duration,
}

impl ServerArgs {
    pub(super) fn parse(&self, errors: &mut ConfigErrors) -> Option<ServerConfig> {
        let listen = errors.take("SHORTENER_LISTEN", parse::socket_address(&self.listen));
        let admin_listen = errors.take(
            "SHORTENER_ADMIN_LISTEN",
            parse::socket_address(&self.admin_listen),
        );
        let redirect_status = errors.take(
            "SHORTENER_REDIRECT_STATUS",
            redirect_status(&self.redirect_status),
        );
        let redirect_cache_control = errors.take(
            "SHORTENER_REDIRECT_MAX_AGE",
            redirect_cache_control(&self.redirect_max_age),
        );
        let mut proxies = Vec::new();
        for raw in parse::list(&self.trusted_proxies) {
            if let Some(net) = errors.take("SHORTENER_TRUSTED_PROXIES", raw.parse::<IpNet>()) {
                proxies.push(net);
            }
        }
        let mut cors_origins = Vec::new();
        for raw in parse::list(&self.cors_origins) {
            if let Some(origin) = errors.take("SHORTENER_CORS_ORIGINS", origin(&raw)) {
                cors_origins.push(origin);
            }
        }
        let grace = errors.take(
            "SHORTENER_SHUTDOWN_GRACE",
            parse::duration(&self.shutdown_grace),
        );
        let delay = errors.take(
            "SHORTENER_SHUTDOWN_DELAY",
            parse::duration_or_zero(&self.shutdown_delay),
        );
        let header_read_timeout = errors.take(
            "SHORTENER_HEADER_READ_TIMEOUT",
            parse::duration(&self.header_read_timeout),
        );
        let body_read_timeout = errors.take(
            "SHORTENER_BODY_READ_TIMEOUT",
            parse::duration(&self.body_read_timeout),
        );
        let backlog = errors.take(
            "SHORTENER_LISTEN_BACKLOG",
            parse::positive::<u32>(&self.listen_backlog),
        );
        let per_peer = errors.take(
            "SHORTENER_MAX_CONNECTIONS_PER_PEER",
            parse::positive::<usize>(&self.max_connections_per_peer),
        );
        let max_connections = errors.take(
            "SHORTENER_MAX_CONNECTIONS",
            parse::positive::<usize>(&self.max_connections),
        );
        let access_log = errors.take(
            "SHORTENER_ACCESS_LOG",
            AccessLog::parse(self.access_log.trim()),
        );
        let access_log_sample = errors.take(
            "SHORTENER_ACCESS_LOG_SAMPLE",
            share(&self.access_log_sample),
        );
        let require_key_for_create = errors.take(
            "SHORTENER_REQUIRE_API_KEY_FOR_CREATE",
            parse::switch(&self.require_api_key_for_create),
        );
        let batch_body_limit = errors.take(
            "SHORTENER_BATCH_BODY_LIMIT",
            parse::positive::<usize>(&self.batch_body_limit),
        );
        // Two listeners on one address cannot both bind, unless the port is left to the system.
        if let (Some(listen), Some(admin)) = (listen, admin_listen)
            && listen == admin
            && listen.port() != 0
        {
            errors.push(
                "SHORTENER_ADMIN_LISTEN",
                "must differ from SHORTENER_LISTEN",
            );
        }
        if let (Some(grace), Some(delay)) = (grace, delay)
            && delay >= grace
        {
            errors.push(
                "SHORTENER_SHUTDOWN_DELAY",
                "must be shorter than SHORTENER_SHUTDOWN_GRACE",
            );
        }
        let trusted_proxies = TrustedProxies::new(proxies);
        Some(ServerConfig {
            listen: listen?,
            admin_listen: admin_listen?,
            backlog: backlog?,
            connections: ConnectionLimits {
                header_read_timeout: header_read_timeout?,
                max_connections: max_connections?,
                per_peer: Some(PerPeerCap {
                    max: per_peer?,
                    exempt: trusted_proxies.clone(),
                }),
            },
            http: HttpSettings {
                trusted_proxies,
                redirect_status: redirect_status?,
                redirect_cache_control: redirect_cache_control?,
                body_read_timeout: body_read_timeout?,
                cors_origins,
                access_log: access_log?,
                access_log_sample: access_log_sample?,
                require_key_for_create: require_key_for_create?,
                batch_body_limit: batch_body_limit?,
            },
            shutdown: ShutdownSettings {
                grace: grace?,
                delay: delay?,
            },
        })
    }
}

fn share(raw: &str) -> Result<f64, String> {
    let raw = raw.trim();
    match raw.parse::<f64>() {
        Ok(share) if share > 0.0 && share <= 1.0 => Ok(share),
        _ => Err(format!("'{raw}' is not a share above 0 and at most 1")),
    }
}

fn redirect_status(raw: &str) -> Result<StatusCode, String> {
    let raw = raw.trim();
    match raw {
        "301" => Ok(StatusCode::MOVED_PERMANENTLY),
        "302" => Ok(StatusCode::FOUND),
        "307" => Ok(StatusCode::TEMPORARY_REDIRECT),
        "308" => Ok(StatusCode::PERMANENT_REDIRECT),
        _ => Err(format!("'{raw}' is not one of 301, 302, 307, 308")),
    }
}

fn redirect_cache_control(raw: &str) -> Result<HeaderValue, String> {
    let max_age: u32 = raw
        .trim()
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())?;
    HeaderValue::try_from(format!("private, max-age={max_age}")).map_err(|e| e.to_string())
}

/// An origin as browsers send it: `scheme://host[:port]`, no path, no trailing slash.
fn origin(raw: &str) -> Result<HeaderValue, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("'{raw}' is not an origin: {e}"))?;
    let origin = url.origin().ascii_serialization();
    if !matches!(url.scheme(), "http" | "https")
        || url.path() != "/"
        || raw.trim_end_matches('/') != origin
    {
        return Err(format!(
            "'{raw}' is not an origin like https://app.example.com"
        ));
    }
    HeaderValue::try_from(origin).map_err(|e| format!("'{raw}' is not a header value: {e}"))
}
