//! A lock-free Snowflake-style id generator.
//!
//! Layout of the 63-bit id (the sign bit is always 0 so it fits Postgres `BIGINT`):
//! `41 bits of milliseconds since EPOCH | 10 bits of worker id | 12 bits of sequence`.
//!
//! Why our own instead of a crate: the `snowflake_id` crate repeats ids when its per-millisecond
//! sequence wraps and ignores its datacenter bits (see `tests/snowflake_id_crate.rs` and ADR 0002).
//! Here the last issued `(millisecond, sequence)` pair lives in one `AtomicU64`, and a new id is
//! always strictly greater than the last one: when the clock steps backwards or the sequence is
//! exhausted, the generator borrows the next millisecond instead of waiting or panicking.
//!
//! The generator also knows until when its worker id is leased (a deadline on the coarse
//! monotonic clock, moved forward by each renewal) and checks it on every id: a process that
//! was paused past its lease (SIGSTOP, a VM migration, a long GC-like stall of the host) issues
//! nothing once it runs again, even before its lease keeper has noticed.

use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(target_os = "linux"))]
use std::time::{SystemTime, UNIX_EPOCH};

/// 2026-01-01T00:00:00Z. 41 bits of milliseconds from here last until 2095.
pub const EPOCH_UNIX_MS: u64 = 1_767_225_600_000;

const SEQUENCE_BITS: u32 = 12;
const WORKER_BITS: u32 = 10;
const TIMESTAMP_BITS: u32 = 41;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;
const TIMESTAMP_MASK: u64 = (1 << TIMESTAMP_BITS) - 1;

/// The highest worker id the layout can carry (1023).
pub const MAX_WORKER_ID: u16 = (1 << WORKER_BITS) - 1;

/// Marks a generator that holds no worker id (its lease was lost or never taken).
const NO_WORKER: u64 = u64::MAX;

/// A worker id in `0..=MAX_WORKER_ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(u16);

impl WorkerId {
    pub fn new(value: u16) -> Option<Self> {
        (value <= MAX_WORKER_ID).then_some(WorkerId(value))
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// Issues unique, strictly increasing ids for one process.
///
/// The generator starts without a worker id; `next_id` answers `None` until [`IdGenerator::assign`]
/// is called, and again after [`IdGenerator::revoke`].
#[derive(Debug)]
pub struct IdGenerator {
    worker: AtomicU64,
    /// `(milliseconds since EPOCH << SEQUENCE_BITS) | sequence` of the last id issued.
    last: AtomicU64,
    /// Ids are issued only while [`monotonic_ms`] is below this.
    valid_until_ms: AtomicU64,
    /// The wall clock's reading for the last id, and how often it read earlier than that.
    last_clock_ms: AtomicU64,
    clock_steps_back: AtomicU64,
}

/// A wall clock that reads more than this much earlier than for the id before has stepped
/// back; less is two creates racing across a coarse clock tick (1–4 ms).
const CLOCK_STEP_TOLERANCE_MS: u64 = 10;

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl IdGenerator {
    pub fn new() -> Self {
        IdGenerator {
            worker: AtomicU64::new(NO_WORKER),
            last: AtomicU64::new(0),
            valid_until_ms: AtomicU64::new(0),
            last_clock_ms: AtomicU64::new(0),
            clock_steps_back: AtomicU64::new(0),
        }
    }

    /// Ids issued so far while the wall clock read earlier than for the id before.
    pub fn clock_steps_back(&self) -> u64 {
        self.clock_steps_back.load(Ordering::Relaxed)
    }

    /// How far the last id's millisecond is ahead of the wall clock now (0 when it is not).
    pub fn borrowed_ahead_ms(&self) -> u64 {
        self.high_water_ms().saturating_sub(now_ms())
    }

    /// A generator that holds `worker` from the start, with no deadline (benchmarks and tests).
    pub fn with_worker(worker: WorkerId) -> Self {
        let generator = Self::new();
        generator.assign(worker, 0, u64::MAX);
        generator
    }

    /// Starts issuing ids as `worker` until [`monotonic_ms`] reaches `valid_until_ms`, never
    /// below `floor_ms` (the high-water mark the previous holder of this worker id recorded),
    /// so a clock that stepped back across a restart or a takeover does not repeat that
    /// holder's ids.
    pub fn assign(&self, worker: WorkerId, floor_ms: u64, valid_until_ms: u64) {
        self.last
            .fetch_max((floor_ms + 1) << SEQUENCE_BITS, Ordering::SeqCst);
        self.valid_until_ms.store(valid_until_ms, Ordering::SeqCst);
        self.worker.store(u64::from(worker.0), Ordering::SeqCst);
    }

    /// The lease was renewed: ids may be issued until `valid_until_ms`.
    pub fn extend(&self, valid_until_ms: u64) {
        self.valid_until_ms.store(valid_until_ms, Ordering::SeqCst);
    }

    /// Stops issuing ids (the lease behind the worker id is no longer known to be ours).
    pub fn revoke(&self) {
        self.worker.store(NO_WORKER, Ordering::SeqCst);
    }

    /// The worker id this generator issues ids with, while its lease is valid.
    pub fn worker(&self) -> Option<WorkerId> {
        let worker = self.worker.load(Ordering::Acquire);
        (worker != NO_WORKER && monotonic_ms() < self.valid_until_ms.load(Ordering::Acquire))
            .then_some(WorkerId(worker as u16))
    }

    /// The millisecond (since EPOCH) of the last id issued: recorded with the lease.
    pub fn high_water_ms(&self) -> u64 {
        self.last.load(Ordering::Acquire) >> SEQUENCE_BITS
    }

    /// The next id, or `None` while no worker id is held or its lease may have expired.
    pub fn next_id(&self) -> Option<i64> {
        self.next_id_at(now_ms(), monotonic_ms())
    }

    /// The next id as if the real-time clock read `now_ms` (milliseconds since EPOCH) and the
    /// monotonic clock `monotonic_ms`.
    pub fn next_id_at(&self, now_ms: u64, monotonic_ms: u64) -> Option<i64> {
        let worker = self.worker.load(Ordering::Acquire);
        if worker == NO_WORKER || monotonic_ms >= self.valid_until_ms.load(Ordering::Acquire) {
            return None;
        }
        let clock_before = self.last_clock_ms.swap(now_ms, Ordering::Relaxed);
        if now_ms + CLOCK_STEP_TOLERANCE_MS < clock_before {
            self.clock_steps_back.fetch_add(1, Ordering::Relaxed);
        }
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = if now_ms > last >> SEQUENCE_BITS {
                now_ms << SEQUENCE_BITS
            } else {
                // Same millisecond, a clock that stepped back, or an exhausted sequence: the
                // increment carries into the millisecond, borrowing from the future.
                last + 1
            };
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Some(compose_id(
                        next >> SEQUENCE_BITS,
                        worker as u16,
                        (next & SEQUENCE_MASK) as u16,
                    ));
                }
                Err(actual) => last = actual,
            }
        }
    }
}

/// Packs the three fields into an id.
pub fn compose_id(ms_since_epoch: u64, worker: u16, sequence: u16) -> i64 {
    let id = ((ms_since_epoch & TIMESTAMP_MASK) << (WORKER_BITS + SEQUENCE_BITS))
        | (u64::from(worker) << SEQUENCE_BITS)
        | (u64::from(sequence) & SEQUENCE_MASK);
    id as i64
}

/// Unpacks an id into `(milliseconds since EPOCH, worker, sequence)`.
pub fn split_id(id: i64) -> (u64, u16, u16) {
    let id = id as u64;
    (
        id >> (WORKER_BITS + SEQUENCE_BITS),
        ((id >> SEQUENCE_BITS) & u64::from(MAX_WORKER_ID)) as u16,
        (id & SEQUENCE_MASK) as u16,
    )
}

/// Milliseconds since EPOCH from the coarse real-time clock: a few nanoseconds instead of a
/// full clock read, at the kernel tick's resolution (1–4 ms). Ids within one tick are told
/// apart by the sequence, and a stale reading only makes the generator borrow ahead.
#[cfg(target_os = "linux")]
fn now_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec and CLOCK_REALTIME_COARSE exists on Linux.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) };
    if status != 0 {
        return 0;
    }
    let unix_ms = (now.tv_sec as u64) * 1000 + (now.tv_nsec as u64) / 1_000_000;
    unix_ms.saturating_sub(EPOCH_UNIX_MS)
}

/// Milliseconds on the coarse monotonic clock (the kernel tick's resolution; it never steps
/// and keeps counting while the process is stopped): the clock of lease deadlines.
#[cfg(target_os = "linux")]
pub fn monotonic_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as in `now_ms`; CLOCK_MONOTONIC_COARSE exists on Linux.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    if status != 0 {
        return u64::MAX;
    }
    (now.tv_sec as u64) * 1000 + (now.tv_nsec as u64) / 1_000_000
}

#[cfg(not(target_os = "linux"))]
pub fn monotonic_ms() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[cfg(not(target_os = "linux"))]
fn now_ms() -> u64 {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    unix_ms.saturating_sub(EPOCH_UNIX_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: u16) -> WorkerId {
        WorkerId::new(id).unwrap()
    }

    #[test]
    fn layout_round_trips_and_keeps_the_sign_bit_clear() {
        let id = compose_id(TIMESTAMP_MASK, MAX_WORKER_ID, SEQUENCE_MASK as u16);
        assert!(id > 0);
        assert_eq!(
            split_id(id),
            (TIMESTAMP_MASK, MAX_WORKER_ID, SEQUENCE_MASK as u16)
        );
        assert_eq!(split_id(compose_id(12_345, 7, 42)), (12_345, 7, 42));
    }

    #[test]
    fn worker_ids_above_the_layout_are_refused() {
        assert!(WorkerId::new(MAX_WORKER_ID).is_some());
        assert!(WorkerId::new(MAX_WORKER_ID + 1).is_none());
    }

    #[test]
    fn no_ids_without_a_worker_and_none_after_revoke() {
        let generator = IdGenerator::new();
        assert_eq!(generator.next_id(), None);
        assert_eq!(generator.worker(), None);
        generator.assign(worker(3), 0, u64::MAX);
        assert_eq!(generator.worker(), Some(worker(3)));
        let id = generator.next_id().unwrap();
        assert_eq!(split_id(id).1, 3);
        generator.revoke();
        assert_eq!(generator.next_id(), None);
        assert_eq!(generator.worker(), None);
    }

    #[test]
    fn sequence_exhaustion_borrows_the_next_millisecond_without_repeating() {
        let generator = IdGenerator::with_worker(worker(1));
        let ids: Vec<i64> = (0..10_000)
            .map(|_| generator.next_id_at(1_000, 0).unwrap())
            .collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(split_id(ids[0]), (1_000, 1, 0));
        assert_eq!(split_id(ids[4095]), (1_000, 1, 4095));
        assert_eq!(split_id(ids[4096]), (1_001, 1, 0));
    }

    #[test]
    fn a_clock_stepping_backwards_neither_panics_nor_repeats() {
        let generator = IdGenerator::with_worker(worker(1));
        let before = generator.next_id_at(50_000, 0).unwrap();
        assert_eq!(generator.clock_steps_back(), 0);
        let after = generator.next_id_at(10_000, 0).unwrap();
        assert!(after > before);
        assert_eq!(split_id(after), (50_000, 1, 1));
        assert_eq!(generator.clock_steps_back(), 1, "the step back is counted");
        generator.next_id_at(10_000 - CLOCK_STEP_TOLERANCE_MS, 0);
        assert_eq!(
            generator.clock_steps_back(),
            1,
            "a tick's jitter is not a step"
        );
        // Once the clock catches up again, the sequence restarts at 0.
        assert_eq!(
            split_id(generator.next_id_at(50_001, 0).unwrap()),
            (50_001, 1, 0)
        );
    }

    #[test]
    fn assign_honours_the_previous_holders_high_water_mark() {
        let generator = IdGenerator::new();
        generator.assign(worker(9), 90_000, u64::MAX);
        assert_eq!(
            split_id(generator.next_id_at(10, 0).unwrap()),
            (90_001, 9, 1)
        );
        assert_eq!(generator.high_water_ms(), 90_001);
    }

    #[test]
    fn no_id_is_issued_once_the_lease_deadline_passed_until_it_is_extended() {
        let generator = IdGenerator::new();
        generator.assign(worker(4), 0, 10_000);
        assert!(generator.next_id_at(1, 9_999).is_some());
        // The process was stopped past its deadline: nothing, whatever the real-time clock says.
        assert_eq!(generator.next_id_at(2, 10_000), None);
        assert_eq!(generator.next_id_at(3, 50_000), None);
        // A renewal moves the deadline.
        generator.extend(60_000);
        assert!(generator.next_id_at(4, 50_000).is_some());
    }

    #[test]
    fn the_real_deadline_is_read_from_the_monotonic_clock() {
        let generator = IdGenerator::new();
        generator.assign(worker(5), 0, monotonic_ms() + 60_000);
        assert!(generator.next_id().is_some());
        assert_eq!(generator.worker(), Some(worker(5)));
        generator.extend(monotonic_ms().saturating_sub(1));
        assert_eq!(generator.next_id(), None);
        assert_eq!(generator.worker(), None);
    }
}
