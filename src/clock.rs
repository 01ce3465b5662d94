//! The wall clock the use cases read: a link's creation time and expiry, an Idempotency-Key's
//! age, whether a code is younger than the replica-lag bound. Injected, so that a test moves
//! time instead of sleeping. (The lease deadline is the monotonic clock's, in `ids`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

use crate::domain::truncate_to_micros;

/// The system's clock, or the system's clock moved forward by a test.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Microseconds added to the system's time; `None` for the service's own clock.
    offset_micros: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// The system's clock, which [`Clock::advance`] moves forward (tests).
    pub fn adjustable() -> Clock {
        Clock {
            offset_micros: Some(Arc::default()),
        }
    }

    /// Moves an adjustable clock (and every clone of it) forward by `by`; does nothing to the
    /// system's clock.
    pub fn advance(&self, by: Duration) {
        if let Some(offset) = &self.offset_micros {
            let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
            offset.fetch_add(micros, Ordering::AcqRel);
        }
    }

    /// Now, in UTC, at the microsecond precision Postgres stores.
    pub fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        let now = match &self.offset_micros {
            None => now,
            Some(offset) => now + time::Duration::microseconds(offset.load(Ordering::Acquire)),
        };
        truncate_to_micros(now)
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn unix_ms(&self) -> u64 {
        (self.now().unix_timestamp_nanos() / 1_000_000).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustable_clock_moves_every_clone_and_the_system_one_never() {
        let clock = Clock::adjustable();
        let clone = clock.clone();
        let before = clock.now();
        clone.advance(Duration::from_secs(3600));
        let moved = clock.now() - before;
        assert!(moved >= time::Duration::hours(1), "{moved}");
        assert!(
            moved < time::Duration::hours(1) + time::Duration::minutes(1),
            "{moved}"
        );
        let system = Clock::system();
        system.advance(Duration::from_secs(3600));
        assert!(system.now() - OffsetDateTime::now_utc() < time::Duration::minutes(1));
    }
}
