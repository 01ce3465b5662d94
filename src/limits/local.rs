//! The in-process limiter: GCRA (`governor`) keyed by client, over a sharded key store of our
//! own capped at `SHORTENER_RATE_LIMIT_MAX_KEYS`. A decision is one hash-map operation under
//! one shard's std mutex (never held across an `.await`) and makes no network call.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use governor::RateLimiter;
use governor::clock::{Clock, MonotonicClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use std::num::NonZeroU32;

use super::{Decision, LimitKey, RateSpec};

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
        self.decide(self.limiter.check_key(&key))
    }

    /// Counts `cost` requests of `key` at once: all pass, or none (and none is counted). A cost
    /// above the burst never passes.
    pub fn check_n(&self, key: LimitKey, cost: NonZeroU32) -> Decision {
        match self.limiter.check_key_n(&key, cost) {
            Ok(result) => self.decide(result),
            Err(_) => Decision {
                allowed: false,
                remaining: 0,
                reset_seconds: (self.spec.emission_interval() * self.spec.burst.get())
                    .as_secs_f64()
                    .ceil() as u64,
                retry_after_seconds: (self.spec.emission_interval() * self.spec.burst.get())
                    .as_secs_f64()
                    .ceil()
                    .max(1.0) as u64,
            },
        }
    }

    fn decide(
        &self,
        result: Result<governor::middleware::StateSnapshot, governor::NotUntil<C::Instant>>,
    ) -> Decision {
        let interval = self.spec.emission_interval();
        match result {
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

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn spec(raw: &str) -> RateSpec {
        raw.parse().unwrap()
    }

    fn key(raw: &str) -> LimitKey {
        LimitKey::of(raw.parse().unwrap())
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
