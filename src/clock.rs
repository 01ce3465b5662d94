//! The wall clock the use cases read: a link's creation time and expiry, an Idempotency-Key's
//! age, whether a code is younger than the replica-lag bound. Injected, so that a test moves
//! time instead of sleeping. (The lease deadline is the monotonic clock's, in `ids`.)

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

    /// Moves an adjustable clock (and every clone of it) back by `by`, as a clock stepped back
    /// by NTP or by hand; does nothing to the system's clock.
    pub fn rewind(&self, by: Duration) {
        if let Some(offset) = &self.offset_micros {
            let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
            offset.fetch_sub(micros, Ordering::AcqRel);
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

/// A wall clock that moved more than this much further (or less far) than the monotonic clock
/// since the last look has stepped; less is the drift NTP slews away.
pub const STEP_TOLERANCE_MS: u64 = 1_000;

/// Notices steps of the wall clock (NTP stepping it, an operator setting it) by comparing how
/// far it moved since the last look with how far the monotonic clock did.
#[derive(Debug)]
pub struct StepWatch {
    /// The last look: (wall clock, monotonic clock), in milliseconds.
    last: Mutex<Option<(u64, u64)>>,
    /// The monotonic time of the last step seen; `u64::MAX` while none was.
    stepped_at: AtomicU64,
}

impl Default for StepWatch {
    fn default() -> Self {
        StepWatch {
            last: Mutex::new(None),
            stepped_at: AtomicU64::new(u64::MAX),
        }
    }
}

impl StepWatch {
    /// Looks at the two clocks (`wall_ms`, `monotonic_ms` now): how long ago, on the monotonic
    /// clock, the wall clock last stepped; `None` while it never did.
    pub fn since_step(&self, wall_ms: u64, monotonic_ms: u64) -> Option<u64> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((wall_then, monotonic_then)) = *last {
            let expected = wall_then.saturating_add(monotonic_ms.saturating_sub(monotonic_then));
            if wall_ms.abs_diff(expected) > STEP_TOLERANCE_MS {
                self.stepped_at.store(monotonic_ms, Ordering::Relaxed);
            }
        }
        *last = Some((wall_ms, monotonic_ms));
        match self.stepped_at.load(Ordering::Relaxed) {
            u64::MAX => None,
            at => Some(monotonic_ms.saturating_sub(at)),
        }
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
        clone.rewind(Duration::from_secs(7200));
        let moved = clock.now() - before;
        assert!(moved < -time::Duration::minutes(59), "{moved}");
        let system = Clock::system();
        system.advance(Duration::from_secs(3600));
        system.rewind(Duration::from_secs(7200));
        assert!((system.now() - OffsetDateTime::now_utc()).abs() < time::Duration::minutes(1));
    }

    #[test]
    fn a_step_either_way_is_seen_and_drift_is_not() {
        let watch = StepWatch::default();
        assert_eq!(watch.since_step(100_000_000, 50), None);
        // Both clocks moved 10 s, the wall one 900 ms more: drift, not a step.
        assert_eq!(watch.since_step(100_010_900, 10_050), None);
        // The wall clock jumped an hour ahead within a second.
        assert_eq!(watch.since_step(103_611_900, 11_050), Some(0));
        assert_eq!(watch.since_step(103_613_900, 13_050), Some(2_000));
        // Then two hours back.
        assert_eq!(watch.since_step(96_414_900, 14_050), Some(0));
        assert_eq!(watch.since_step(96_419_900, 19_050), Some(5_000));
    }
}
