//! Per-client rate limits: what a limit is ([`RateSpec`], `N/s,burst=M`), who the client is
//! for a limit ([`LimitKey`]: an IPv4 address, or the /64 of an IPv6 one), the in-process
//! limiter ([`LocalLimiter`]), and the create limit shared through Redis ([`CreateLimit`]).
//!
//! Redirect and stats decisions are made in memory and make no network call: the redirect
//! path stays in memory. Only the create limit asks Redis (`shared`), a stated exception of
//! the layer table. (A moka-backed key store cost 300 ns a decision, its admission
//! bookkeeping included; the one in `local` is measured in docs/benchmarks.md.)
//!
//! A limit of `N/s,burst=M` is a bucket of `M` requests that refills one request every `1/N`
//! seconds. It is advertised with the IETF RateLimit fields as quota `q = M` over window
//! `w = ceil(M / N)` seconds (the time an empty bucket takes to fill): `20/s,burst=40` is
//! `"create";q=40;w=2`. `RateLimit`'s `r` is what is left of the burst now, and `t` the seconds
//! until the bucket is full again.

mod key;
mod local;
mod rate;
mod shared;

use std::num::NonZeroU32;

pub use key::LimitKey;
pub use local::LocalLimiter;
pub use rate::{Per, RateSpec};
pub use shared::CreateLimit;

use crate::storage::RedisStore;
use crate::telemetry::metrics::{LimitMetrics, LimitRoute};

/// Every route's limit (`None`: off), and how many clients each keeps state for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    pub create: Option<RateSpec>,
    pub redirect: Option<RateSpec>,
    pub stats: Option<RateSpec>,
    pub max_keys: u64,
}

/// What a limiter said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests left in the burst after this one (0 when refused).
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_seconds: u64,
    /// When refused: seconds until one request would pass (at least 1).
    pub retry_after_seconds: u64,
}

/// Where the create limit is kept right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    Off,
    /// In Redis, one bucket per client for every instance.
    Shared,
    /// In this instance's memory: no Redis is configured, or it does not answer.
    PerInstance,
}

/// The routes that have a limit of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedRoute {
    Create,
    Redirect,
    Stats,
}

impl LimitedRoute {
    /// The policy's name in the RateLimit fields.
    pub fn name(self) -> &'static str {
        match self {
            LimitedRoute::Create => "create",
            LimitedRoute::Redirect => "redirect",
            LimitedRoute::Stats => "stats",
        }
    }
}

/// Every route's limiter (`None` where the limit is off).
pub struct RouteLimits {
    create: Option<CreateLimit>,
    redirect: Option<LocalLimiter>,
    stats: Option<LocalLimiter>,
    metrics: LimitMetrics,
}

impl RouteLimits {
    /// `redis`: where the create limit is shared, when Redis is configured.
    pub fn new(settings: LimitSettings, redis: Option<RedisStore>) -> Self {
        let max_keys = settings.max_keys;
        let limiter = |spec: Option<RateSpec>| spec.map(|spec| LocalLimiter::new(spec, max_keys));
        RouteLimits {
            create: settings
                .create
                .map(|spec| CreateLimit::new(spec, max_keys, redis)),
            redirect: limiter(settings.redirect),
            stats: limiter(settings.stats),
            metrics: LimitMetrics::default(),
        }
    }

    /// Counts every decision in `metrics`.
    pub fn with_metrics(mut self, metrics: LimitMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Counts one redirect or stats request of `key`; `None` when that route is not limited. (Creates: [`RouteLimits::check_create`].)
    pub fn check(&self, route: LimitedRoute, key: LimitKey) -> Option<(RateSpec, Decision)> {
        let (limiter, label) = match route {
            LimitedRoute::Create => return None,
            LimitedRoute::Redirect => (self.redirect.as_ref()?, LimitRoute::Redirect),
            LimitedRoute::Stats => (self.stats.as_ref()?, LimitRoute::Stats),
        };
        let decision = limiter.check(key);
        self.metrics.decided(label, decision.allowed);
        Some((limiter.spec(), decision))
    }

    /// Counts `cost` creates of `key` (all or none: a batch takes one per item); `None` when
    /// creates are not limited.
    pub async fn check_create(
        &self,
        key: LimitKey,
        cost: NonZeroU32,
    ) -> Option<(RateSpec, Decision)> {
        let limit = self.create.as_ref()?;
        let decision = limit.check(key, cost).await;
        self.metrics.decided(LimitRoute::Create, decision.allowed);
        Some((limit.spec(), decision))
    }

    pub fn create_mode(&self) -> LimitMode {
        self.create
            .as_ref()
            .map_or(LimitMode::Off, CreateLimit::mode)
    }
}
