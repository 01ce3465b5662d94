//! The create limit shared by every instance through Redis: one atomic GCRA step per create,
//! on Redis' clock. This is the one place below `http` that a limit makes a network call
//! (ARCHITECTURE.md's layer table says so): while Redis does not answer, the limit is this
//! instance's own (never no limit), and a create waits for Redis at most one command timeout.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Decision, LimitKey, LimitMode, LocalLimiter, RateSpec};
use crate::storage::RedisStore;

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

    pub fn spec(&self) -> RateSpec {
        self.spec
    }

    pub fn mode(&self) -> LimitMode {
        if self.redis.is_some() && self.shared.load(Ordering::Relaxed) {
            LimitMode::Shared
        } else {
            LimitMode::PerInstance
        }
    }

    /// Counts `cost` creates of `key` (all or none).
    pub async fn check(&self, key: LimitKey, cost: NonZeroU32) -> Decision {
        let Some(redis) = &self.redis else {
            return self.local.check_n(key, cost);
        };
        let answer = redis
            .gcra(
                &format!("rl:create:{key}"),
                self.spec.emission_interval(),
                self.spec.burst.get(),
                cost.get(),
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
                self.local.check_n(key, cost)
            }
        }
    }
}
