//! What is kept only for a while, and how it goes: idempotency records past their 24 hours,
//! click-batch ids and the change feed past any retry or catch-up, daily click rows past
//! `SHORTENER_STATS_RETENTION` (folded into the link's totals), and links expired for longer
//! than `SHORTENER_LINK_RETENTION` (made tombstones). Pruned every
//! `SHORTENER_PRUNE_INTERVAL`, off the request path, in chunks of at most [`CHUNK_ROWS`] rows
//! (one short statement each, whatever the backlog), one chunk at a time in the whole fleet
//! (each holds an advisory lock; an instance that finds it taken leaves its pass to the
//! holder).

use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::idempotency::KEY_LIFETIME;
use crate::clock::Clock;
use crate::storage::{Chunk, Db, PRUNE_FROM_START, PruneCut};
use crate::telemetry::Chain;
use crate::telemetry::metrics::{PruneMetrics, PrunePass};

/// How often expired rows are deleted, by default.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Most rows one chunk removes: with the cut column indexed, a chunk of this size takes tens
/// of milliseconds, far within the statement timeout.
pub const CHUNK_ROWS: i64 = 5_000;
/// How long click-batch ids are kept: a retry comes within minutes.
pub const BATCH_IDS_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long the change feed is kept: an instance re-reads at most minutes of it (a change
/// that could not reach Redis is repaired from it once Redis is back, within this bound).
pub const CHANGES_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// What is kept, and how often the pruner runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Days of daily click rows kept (`None`: for ever).
    pub stats_days: Option<u32>,
    /// Days an expired link is kept whole (`None`: for ever).
    pub link_days: Option<u32>,
    pub every: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            stats_days: Some(400),
            link_days: None,
            every: PRUNE_EVERY,
        }
    }
}

impl RetentionSettings {
    /// What a pass removes when it runs at `now`.
    pub fn cuts(&self, now: OffsetDateTime) -> Vec<PruneCut> {
        let mut cuts = vec![
            PruneCut::IdempotencyKeys(now - KEY_LIFETIME),
            PruneCut::StatsBatches(now - BATCH_IDS_KEPT),
            PruneCut::LinkChanges(now - CHANGES_KEPT),
        ];
        if let Some(days) = self.stats_days {
            cuts.push(PruneCut::ClickDays((now - DAY * days).date()));
        }
        if let Some(days) = self.link_days {
            cuts.push(PruneCut::ExpiredLinks(now - DAY * days));
        }
        cuts
    }
}

/// Runs the passes.
pub struct Pruner {
    db: Db,
    clock: Clock,
    settings: RetentionSettings,
    metrics: PruneMetrics,
}

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassEnd {
    /// Everything past its time is gone (or was when the pass looked).
    Done,
    /// Another instance was pruning: the pass was left to it.
    LeftToAnother,
    /// A chunk failed; the rest is tried next pass.
    Failed,
    /// Stopped by shutdown.
    Stopped,
}

impl Pruner {
    pub fn new(db: Db, clock: Clock, settings: RetentionSettings, metrics: PruneMetrics) -> Self {
        Pruner {
            db,
            clock,
            settings,
            metrics,
        }
    }

    /// A pass every `settings.every` until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.settings.every) => {}
                _ = stop.cancelled() => return,
            }
            if self.pass(&stop).await == PassEnd::Stopped {
                return;
            }
        }
    }

    /// One pass: each kind of row, chunk after chunk until none is left; then how far behind
    /// each is, for the overdue gauges.
    pub async fn pass(&self, stop: &CancellationToken) -> PassEnd {
        let cuts = self.settings.cuts(self.clock.now());
        let mut end = PassEnd::Done;
        'cuts: for &cut in &cuts {
            let table = cut.table();
            // Each chunk starts where the one before it stopped.
            let mut from = PRUNE_FROM_START;
            loop {
                if stop.is_cancelled() {
                    return PassEnd::Stopped;
                }
                match self.db.prune_chunk(cut, CHUNK_ROWS, from).await {
                    Ok(Chunk::Pruned { rows, reached }) => {
                        self.metrics.chunk(table, rows);
                        if rows < CHUNK_ROWS as u64 {
                            break;
                        }
                        from = reached.unwrap_or(from);
                    }
                    Ok(Chunk::Busy) => {
                        end = PassEnd::LeftToAnother;
                        break 'cuts;
                    }
                    Err(error) => {
                        self.metrics.failed(table);
                        crate::throttled!(warn, table = table.label(), error = %Chain(&error), "pruning failed; tried again next pass");
                        end = PassEnd::Failed;
                        break;
                    }
                }
            }
        }
        for &cut in &cuts {
            match self.db.prune_overdue(cut).await {
                Ok(seconds) => self.metrics.overdue(cut.table(), seconds),
                Err(error) => {
                    tracing::debug!(error = %Chain(&error), "pruning backlog not measured")
                }
            }
        }
        tracing::debug!(?end, "pruning pass");
        self.metrics.pass(match end {
            PassEnd::Done => PrunePass::Done,
            PassEnd::LeftToAnother => PrunePass::LeftToAnother,
            PassEnd::Failed | PassEnd::Stopped => PrunePass::Failed,
        });
        end
    }
}
