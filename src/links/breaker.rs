//! A circuit breaker for the Redis tier: after `threshold` consecutive failures (errors or
//! timeouts) the resolver stops asking Redis, a background probe asks it instead, and the
//! first probe that succeeds closes the breaker again. Each transition is logged once.
//!
//! A hung Redis (SIGSTOP, a master that stopped answering) costs each redirect at most one
//! command timeout, and only until `threshold` of them have failed.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::storage::RedisError;
use crate::telemetry::Chain;

/// Whether the tier is being asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests ask Redis.
    Closed,
    /// Requests skip Redis; the probe asks it.
    Open,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    consecutive_failures: AtomicU32,
    open: AtomicBool,
}

impl Breaker {
    pub fn new(threshold: u32) -> Self {
        Breaker {
            threshold: threshold.max(1),
            consecutive_failures: AtomicU32::new(0),
            open: AtomicBool::new(false),
        }
    }

    pub fn state(&self) -> BreakerState {
        if self.open.load(Ordering::Relaxed) {
            BreakerState::Open
        } else {
            BreakerState::Closed
        }
    }

    /// A command answered.
    pub fn succeeded(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if self.open.swap(false, Ordering::AcqRel) {
            tracing::info!("redis answers again; circuit closed");
        }
    }

    /// A command failed or timed out, for `cause`.
    pub fn failed(&self, cause: &RedisError) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= self.threshold && !self.open.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                failures,
                error = %Chain(cause),
                "redis keeps failing; circuit open, skipping it"
            );
        }
    }
}
