//! Per-client rate limits: what a limit is (`N/s,burst=M`), who the client is for a limit
//! (an IPv4 address, or the /64 of an IPv6 one), the in-process limiter, and the create limit
//! shared through Redis.
//!
//! The limiter is GCRA (`governor`), keyed by client, over a sharded key store of our own
//! capped at `SHORTENER_RATE_LIMIT_MAX_KEYS` per route: a client whose state was evicted starts
//! again with a full burst, which only ever lets through a client the cap pushed out, never
//! refuses one. A decision is one hash-map operation under one shard's lock, and makes no
//! network call: the redirect path stays in memory. (A moka-backed store cost 300 ns a
//! decision, its admission bookkeeping included; this one is measured in docs/benchmarks.md.)
//!
//! A limit of `N/s,burst=M` is a bucket of `M` requests that refills one request every `1/N`
//! seconds. It is advertised with the IETF RateLimit fields as quota `q = M` over window
//! `w = ceil(M / N)` seconds (the time an empty bucket takes to fill): `20/s,burst=40` is
//! `"create";q=40;w=2`. `RateLimit`'s `r` is what is left of the burst now, and `t` the seconds
//! until the bucket is full again.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};

use crate::domain::canonical;
use crate::storage::RedisStore;
use crate::telemetry::metrics::{LimitMetrics, LimitRoute};

/// How often a limit refills: per second, minute or hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Second,
    Minute,
    Hour,
}

impl Per {
    fn duration(self) -> Duration {
        match self {
            Per::Second => Duration::from_secs(1),
            Per::Minute => Duration::from_secs(60),
            Per::Hour => Duration::from_secs(3600),
        }
    }
}

/// `N/s,burst=M` (also `/m`, `/h`; `burst` defaults to `N`), or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    pub count: NonZeroU32,
    pub per: Per,
    pub burst: NonZeroU32,
}

impl FromStr for RateSpec {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{raw}' is not a limit like 20/s,burst=40 (or off)");
        let mut parts = raw.split(',').map(str::trim);
        let rate = parts.next().ok_or_else(bad)?;
        let (count, per) = rate.split_once('/').ok_or_else(bad)?;
        let count: NonZeroU32 = count.trim().parse().map_err(|_| bad())?;
        let per = match per.trim() {
            "s" | "sec" | "second" => Per::Second,
            "m" | "min" | "minute" => Per::Minute,
            "h" | "hour" => Per::Hour,
            _ => return Err(bad()),
        };
        let mut burst = count;
        for part in parts {
            match part
                .split_once('=')
                .map(|(name, value)| (name.trim(), value.trim()))
            {
                Some(("burst", value)) => burst = value.parse().map_err(|_| bad())?,
                _ => return Err(bad()),
            }
        }
        Ok(RateSpec { count, per, burst })
    }
}

impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = match self.per {
            Per::Second => "s",
            Per::Minute => "m",
            Per::Hour => "h",
        };
        write!(f, "{}/{per},burst={}", self.count, self.burst)
    }
}

impl RateSpec {
    /// One request back every this long.
    pub fn emission_interval(&self) -> Duration {
        self.per.duration() / self.count.get()
    }

    fn quota(&self) -> Quota {
        Quota::with_period(self.emission_interval())
            .expect("a positive interval")
            .allow_burst(self.burst)
    }

    /// The window `w` of `RateLimit-Policy`: seconds for an empty bucket to fill, at least 1.
    pub fn window_seconds(&self) -> u64 {
        (self.emission_interval() * self.burst.get())
            .as_secs_f64()
            .ceil()
            .max(1.0) as u64
    }
}

/// Who a limit counts: an IPv4 address, or the /64 an IPv6 address is in (one subscriber's
/// network; a single host can use a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitKey(IpAddr);

impl LimitKey {
    pub fn of(address: IpAddr) -> LimitKey {
        match canonical(address) {
            IpAddr::V6(v6) => LimitKey(IpAddr::V6((v6.to_bits() & !u128::from(u64::MAX)).into())),
            v4 => LimitKey(v4),
        }
    }
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

/// Shards of the key store: a decision locks one of them for a hash-map operation.
const SHARDS: usize = 64;

/// GCRA state per key (the theoretical arrival time, in nanoseconds since the limiter
/// started), in `SHARDS` mutex-guarded maps holding at most `max_keys` in all. A full shard
/// drops an arbitrary key to make room: that client starts again with a full burst. A lock is
/// held for one map operation and never across an `.await`.
struct CappedStore {
    shards: Box<[Mutex<HashMap<LimitKey, u64>>]>,
    per_shard: usize,
    hasher: RandomState,
}

impl CappedStore {
    fn new(max_keys: u64) -> Self {
        let per_shard = (max_keys as usize).div_ceil(SHARDS).max(1);
        CappedStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &LimitKey) -> &Mutex<HashMap<LimitKey, u64>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    fn len(&self) -> u64 {
        self.shards
            .iter()
            .map(|shard| shard.lock().map_or(0, |map| map.len()) as u64)
            .sum()
    }
}

impl StateStore for CappedStore {
    type Key = LimitKey;

    fn measure_and_replace<T, F, E>(&self, key: &LimitKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // A poisoned shard (a panic while it was held) still holds valid integers.
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (outcome, next) = f(shard.get(key).map(|&tat| Nanos::new(tat)))?;
        if !shard.contains_key(key)
            && shard.len() >= self.per_shard
            && let Some(evicted) = shard.keys().next().copied()
        {
            shard.remove(&evicted);
        }
        shard.insert(*key, next.as_u64());
        Ok(outcome)
    }
}

/// The limiter's handle on the store, shared with [`LocalLimiter::keys`].
struct SharedStore(Arc<CappedStore>);

impl StateStore for SharedStore {
    type Key = LimitKey;

    fn measure_and_replace<T, F, E>(&self, key: &LimitKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

/// One route's limit for every client, in this process.
pub struct LocalLimiter<C: Clock = MonotonicClock> {
    spec: RateSpec,
    limiter: RateLimiter<LimitKey, SharedStore, C, StateInformationMiddleware>,
    clock: C,
    store: Arc<CappedStore>,
}

impl LocalLimiter<MonotonicClock> {
    pub fn new(spec: RateSpec, max_keys: u64) -> Self {
        LocalLimiter::with_clock(spec, max_keys, MonotonicClock)
    }
}

impl<C: Clock + Clone> LocalLimiter<C> {
    /// A limiter reading `clock` (tests pass a fake one).
    pub fn with_clock(spec: RateSpec, max_keys: u64, clock: C) -> Self {
        let store = Arc::new(CappedStore::new(max_keys));
        let limiter = RateLimiter::<LimitKey, SharedStore, C, StateInformationMiddleware>::new(
            spec.quota(),
            SharedStore(Arc::clone(&store)),
            clock.clone(),
        );
        LocalLimiter {
            spec,
            limiter,
            clock,
            store,
        }
    }

    pub fn spec(&self) -> RateSpec {
        self.spec
    }

    /// Counts one request of `key`.
    pub fn check(&self, key: LimitKey) -> Decision {
        let interval = self.spec.emission_interval();
        match self.limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let missing = self.spec.burst.get().saturating_sub(remaining);
                Decision {
                    allowed: true,
                    remaining,
                    reset_seconds: (interval * missing).as_secs_f64().ceil() as u64,
                    retry_after_seconds: 0,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision {
                    allowed: false,
                    remaining: 0,
                    reset_seconds: (wait + interval * (self.spec.burst.get() - 1))
                        .as_secs_f64()
                        .ceil() as u64,
                    retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
                }
            }
        }
    }

    /// Clients held now (at most the cap, rounded up to a multiple of the shard count).
    pub fn keys(&self) -> u64 {
        self.store.len()
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
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

/// The create limit: shared by every instance through Redis when Redis is configured (one
/// atomic GCRA step per create, on Redis' clock), and this instance's own while Redis does not
/// answer (never no limit). A create waits for Redis at most one command timeout; each change
/// of mode is logged once.
pub struct CreateLimit {
    spec: RateSpec,
    local: LocalLimiter,
    redis: Option<RedisStore>,
    shared: AtomicBool,
}

impl CreateLimit {
    pub fn new(spec: RateSpec, max_keys: u64, redis: Option<RedisStore>) -> Self {
        CreateLimit {
            spec,
            local: LocalLimiter::new(spec, max_keys),
            shared: AtomicBool::new(redis.is_some()),
            redis,
        }
    }

    pub fn mode(&self) -> LimitMode {
        if self.redis.is_some() && self.shared.load(Ordering::Relaxed) {
            LimitMode::Shared
        } else {
            LimitMode::PerInstance
        }
    }

    /// Counts one create of `client`.
    pub async fn check(&self, client: IpAddr) -> Decision {
        let key = LimitKey::of(client);
        let Some(redis) = &self.redis else {
            return self.local.check(key);
        };
        let answer = redis
            .gcra(
                &format!("rl:create:{key}"),
                self.spec.emission_interval(),
                self.spec.burst.get(),
            )
            .await;
        match answer {
            Ok(answer) => {
                if !self.shared.swap(true, Ordering::AcqRel) {
                    tracing::info!("redis answers again: the create limit is shared again");
                }
                Decision {
                    allowed: answer.allowed,
                    remaining: answer.remaining,
                    reset_seconds: answer.reset.as_secs_f64().ceil() as u64,
                    retry_after_seconds: if answer.allowed {
                        0
                    } else {
                        answer.retry_after.as_secs_f64().ceil().max(1.0) as u64
                    },
                }
            }
            Err(error) => {
                if self.shared.swap(false, Ordering::AcqRel) {
                    tracing::warn!(
                        error = %crate::telemetry::Chain(&error),
                        "redis does not answer: the create limit is per instance until it does"
                    );
                }
                self.local.check(key)
            }
        }
    }
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
    pub fn new(
        create: Option<RateSpec>,
        redirect: Option<RateSpec>,
        stats: Option<RateSpec>,
        max_keys: u64,
        redis: Option<RedisStore>,
    ) -> Self {
        let limiter = |spec: Option<RateSpec>| spec.map(|spec| LocalLimiter::new(spec, max_keys));
        RouteLimits {
            create: create.map(|spec| CreateLimit::new(spec, max_keys, redis)),
            redirect: limiter(redirect),
            stats: limiter(stats),
            metrics: LimitMetrics::default(),
        }
    }

    /// Counts every decision in `metrics`.
    pub fn with_metrics(mut self, metrics: LimitMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Counts one redirect or stats request of `client`; `None` when that route is not
    /// limited. (Creates: [`RouteLimits::check_create`].)
    pub fn check(&self, route: LimitedRoute, client: IpAddr) -> Option<(RateSpec, Decision)> {
        let (limiter, label) = match route {
            LimitedRoute::Create => return None,
            LimitedRoute::Redirect => (self.redirect.as_ref()?, LimitRoute::Redirect),
            LimitedRoute::Stats => (self.stats.as_ref()?, LimitRoute::Stats),
        };
        let decision = limiter.check(LimitKey::of(client));
        self.metrics.decided(label, decision.allowed);
        Some((limiter.spec(), decision))
    }

    /// Counts one create of `client`; `None` when creates are not limited.
    pub async fn check_create(&self, client: IpAddr) -> Option<(RateSpec, Decision)> {
        let limit = self.create.as_ref()?;
        let decision = limit.check(client).await;
        self.metrics.decided(LimitRoute::Create, decision.allowed);
        Some((limit.spec, decision))
    }

    pub fn create_mode(&self) -> LimitMode {
        self.create
            .as_ref()
            .map_or(LimitMode::Off, CreateLimit::mode)
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn spec(raw: &str) -> RateSpec {
        raw.parse().unwrap()
    }

    fn key(raw: &str) -> LimitKey {
        LimitKey::of(raw.parse().unwrap())
    }

    #[test]
    fn limits_parse_and_map_onto_quota_and_window() {
        let create = spec("20/s,burst=40");
        assert_eq!(create.burst.get(), 40);
        assert_eq!(create.emission_interval(), Duration::from_millis(50));
        assert_eq!(create.window_seconds(), 2);
        assert_eq!(spec("1000/s,burst=2000").window_seconds(), 2);
        assert_eq!(spec("60/h,burst=100").window_seconds(), 6000);
        assert_eq!(spec("5/m").burst.get(), 5);
        assert_eq!(spec(" 5 / m , burst = 7 ").to_string(), "5/m,burst=7");
        for bad in [
            "",
            "20",
            "20/d",
            "0/s",
            "20/s,burst=0",
            "20/s,bust=3",
            "x/s",
        ] {
            assert!(bad.parse::<RateSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:198.51.100.7"), key("198.51.100.7"));
        assert_ne!(key("198.51.100.7"), key("198.51.100.8"));
    }

    #[test]
    fn a_burst_passes_then_the_rate_and_the_headers_follow_the_clock() {
        let clock = FakeRelativeClock::default();
        let limiter = LocalLimiter::with_clock(spec("2/s,burst=4"), 100, clock.clone());
        let client = key("203.0.113.1");
        let decisions: Vec<Decision> = (0..5).map(|_| limiter.check(client)).collect();
        assert!(decisions[..4].iter().all(|d| d.allowed));
        assert_eq!(
            decisions.iter().map(|d| d.remaining).collect::<Vec<_>>(),
            [3, 2, 1, 0, 0]
        );
        assert_eq!(decisions[3].reset_seconds, 2, "4 missing at 0.5 s each");
        let refused = decisions[4];
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_seconds, 1, "0.5 s, rounded up");
        // Another client is not affected.
        assert!(limiter.check(key("203.0.113.2")).allowed);
        // Half a second later one more passes, and only one.
        clock.advance(Duration::from_millis(500));
        assert!(limiter.check(client).allowed);
        assert!(!limiter.check(client).allowed);
        // After a full refill, the whole burst again.
        clock.advance(Duration::from_secs(2));
        assert_eq!((0..5).filter(|_| limiter.check(client).allowed).count(), 4);
    }

    #[test]
    fn a_sustained_rate_is_held_within_ten_percent() {
        // 100 requests a second offered for 10 s against 20/s,burst=5: the burst, then 20 a second.
        let clock = FakeRelativeClock::default();
        let limiter = LocalLimiter::with_clock(spec("20/s,burst=5"), 100, clock.clone());
        let client = key("198.51.100.1");
        let mut passed = 0;
        for _ in 0..1_000 {
            passed += usize::from(limiter.check(client).allowed);
            clock.advance(Duration::from_millis(10));
        }
        let expected = 5 + 20 * 10;
        assert!(
            passed.abs_diff(expected) * 10 <= expected,
            "{passed} passed, {expected} expected"
        );
    }

    #[test]
    fn a_slow_refill_lets_exactly_the_burst_through() {
        let clock = FakeRelativeClock::default();
        let limiter = LocalLimiter::with_clock(spec("60/h,burst=100"), 100, clock.clone());
        let client = key("2001:db8::1");
        let passed = (0..150).filter(|_| limiter.check(client).allowed).count();
        assert_eq!(passed, 100);
        let refused = limiter.check(client);
        assert_eq!(refused.retry_after_seconds, 60);
    }

    #[test]
    fn the_key_store_holds_at_most_its_cap() {
        // B7: a scanner spread over 100,000 addresses.
        let limiter = LocalLimiter::new(spec("10/s,burst=10"), 10_000);
        for n in 0..100_000u32 {
            limiter.check(LimitKey::of(IpAddr::V4(n.into())));
        }
        let cap = 10_000u64.div_ceil(SHARDS as u64) * SHARDS as u64;
        assert!(limiter.keys() <= cap, "{} keys", limiter.keys());
        assert!(
            limiter.keys() >= 9_000,
            "the cap is used: {} keys",
            limiter.keys()
        );
    }
}
