//! What the handlers share: the use cases they call, the limits they apply, the instance's
//! status for the admin listener, the metrics they count in, and how they answer. Built once
//! at start-up; the HTTP layer owns it and nothing below it sees it.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode};

use crate::domain::TrustedProxies;
use crate::limits::RouteLimits;
use crate::links::{Creator, KeyRing, Manager, QrCodes, Resolver};
use crate::status::Status;
use crate::telemetry::AccessLog;
use crate::telemetry::metrics::Metrics;

/// How requests are answered (`SHORTENER_*` settings of the HTTP layer).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Peers whose `X-Forwarded-For` (and `X-Request-Id`) is believed.
    pub trusted_proxies: TrustedProxies,
    pub redirect_status: StatusCode,
    /// `private, max-age=N`, on every redirect.
    pub redirect_cache_control: HeaderValue,
    /// Time a client has to send a create's body (408 after it).
    pub body_read_timeout: Duration,
    /// Origins whose pages may call creates and stats (CORS); empty: CORS off.
    pub cors_origins: Vec<HeaderValue>,
    /// Which requests get an access-log line.
    pub access_log: AccessLog,
    /// Share of answers below 500 logged when `access_log` is `All`.
    pub access_log_sample: f64,
    /// Creates without an API key are refused (401).
    pub require_key_for_create: bool,
    /// Largest body of a batch of creates (413 above it).
    pub batch_body_limit: usize,
}

/// The parts of the service the handlers call.
pub struct Services {
    pub resolver: Arc<Resolver>,
    pub qr: QrCodes,
    pub creator: Creator,
    pub manager: Manager,
    pub keys: Arc<KeyRing>,
    pub limits: Arc<RouteLimits>,
    pub status: Arc<Status>,
    pub metrics: Arc<Metrics>,
}

/// Everything a handler of either listener needs.
pub struct State {
    pub(super) resolver: Arc<Resolver>,
    pub(super) qr: QrCodes,
    pub(super) creator: Creator,
    pub(super) manager: Manager,
    pub(super) keys: Arc<KeyRing>,
    pub(super) limits: Arc<RouteLimits>,
    pub(super) status: Arc<Status>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) settings: HttpSettings,
}

impl State {
    pub fn new(services: Services, settings: HttpSettings) -> Self {
        let Services {
            resolver,
            qr,
            creator,
            manager,
            keys,
            limits,
            status,
            metrics,
        } = services;
        State {
            resolver,
            qr,
            creator,
            manager,
            keys,
            limits,
            status,
            metrics,
            settings,
        }
    }

    /// Whether a stop was asked for: answers then close their connection.
    pub(super) fn draining(&self) -> bool {
        self.status.draining()
    }
}
