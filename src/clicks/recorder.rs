//! The in-memory click tallies.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use time::{Date, OffsetDateTime};

use crate::storage::ClickRows;

/// Independent locks, so concurrent redirects rarely wait on one another.
const SHARDS: usize = 32;
const MS_PER_DAY: i64 = 86_400_000;
/// Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    clicks: u64,
    bot_clicks: u64,
    last_click_unix_ms: i64,
}

/// Who clicked: people and bots are counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickKind {
    Person,
    Bot,
}

/// Tallies per (link id, UTC day since 1970).
type Shard = HashMap<(i64, i32), Tally>;

/// Counts clicks in memory until the flusher drains them.
#[derive(Debug)]
pub struct ClickRecorder {
    shards: Box<[Mutex<Shard>]>,
}

impl Default for ClickRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClickRecorder {
    pub fn new() -> Self {
        ClickRecorder {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Counts one click on `link_id` now. Never blocks on I/O.
    pub fn record(&self, link_id: i64, kind: ClickKind) {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as i64);
        self.record_at(link_id, kind, unix_ms);
    }

    pub fn record_at(&self, link_id: i64, kind: ClickKind, unix_ms: i64) {
        let day = unix_ms.div_euclid(MS_PER_DAY) as i32;
        let mut shard = self.shards[shard_of(link_id)]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tally = shard.entry((link_id, day)).or_default();
        match kind {
            ClickKind::Bot => tally.bot_clicks += 1,
            ClickKind::Person => tally.clicks += 1,
        }
        tally.last_click_unix_ms = tally.last_click_unix_ms.max(unix_ms);
    }

    /// Takes every tally counted so far, leaving the recorder empty.
    pub fn drain(&self) -> ClickRows {
        let mut rows = ClickRows::default();
        for shard in self.shards.iter() {
            let taken = std::mem::take(&mut *shard.lock().unwrap_or_else(|p| p.into_inner()));
            for ((link_id, day), tally) in taken {
                rows.link_ids.push(link_id);
                rows.days
                    .push(Date::from_julian_day(UNIX_EPOCH_JULIAN_DAY + day).unwrap_or(Date::MIN));
                rows.clicks.push(tally.clicks as i64);
                rows.bot_clicks.push(tally.bot_clicks as i64);
                rows.last_click_at.push(
                    OffsetDateTime::from_unix_timestamp_nanos(
                        i128::from(tally.last_click_unix_ms) * 1_000_000,
                    )
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                );
            }
        }
        rows
    }
}

/// Snowflake ids end in worker and sequence bits that are often zero: mix before picking.
fn shard_of(link_id: i64) -> usize {
    let mixed = (link_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 59) as usize % SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn tallies_per_link_and_utc_day_then_drains_empty() {
        let recorder = ClickRecorder::new();
        let day_one = datetime!(2026-11-29 23:59:59.5 UTC).unix_timestamp() * 1000;
        recorder.record_at(7, ClickKind::Person, day_one);
        recorder.record_at(7, ClickKind::Person, day_one + 100);
        recorder.record_at(7, ClickKind::Bot, day_one + 200);
        recorder.record_at(7, ClickKind::Person, day_one + 1_000); // 2026-11-30
        recorder.record_at(8, ClickKind::Bot, day_one);

        let rows = recorder.drain();
        let mut found: Vec<_> = (0..rows.len())
            .map(|i| {
                (
                    rows.link_ids[i],
                    rows.days[i],
                    rows.clicks[i],
                    rows.bot_clicks[i],
                )
            })
            .collect();
        found.sort();
        assert_eq!(
            found,
            vec![
                (7, date!(2026 - 11 - 29), 2, 1),
                (7, date!(2026 - 11 - 30), 1, 0),
                (8, date!(2026 - 11 - 29), 0, 1),
            ]
        );
        assert!(recorder.drain().is_empty());
    }
}
