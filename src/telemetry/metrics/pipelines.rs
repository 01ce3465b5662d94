//! The background pipelines' series: the group-commit writer, the click flusher, the
//! worker-id lease, the pruner, the blocklist's reloads.

use std::sync::Arc;
use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram};

use super::registry::{Registry, noops};
use super::vocabulary::{
    BatchResult, ClickLabel, DbCause, PrunePass, PruneTable, ReloadResult, RenewalResult,
};

/// The group-commit writer.
#[derive(Clone)]
pub struct CreateMetrics {
    pub batch_size: Histogram,
    pub batch_duration: Histogram,
    batches: Arc<[Counter]>,
}

impl Default for CreateMetrics {
    fn default() -> Self {
        CreateMetrics {
            batch_size: Histogram::noop(),
            batch_duration: Histogram::noop(),
            batches: noops(BatchResult::COUNT),
        }
    }
}

impl CreateMetrics {
    pub fn batch(&self, result: BatchResult, rows: usize, took: Duration) {
        self.batches[result.index()].increment(1);
        self.batch_size.record(rows as f64);
        self.batch_duration.record(took.as_secs_f64());
    }
}

/// The click flusher.
#[derive(Clone)]
pub struct ClickMetrics {
    flushed: Arc<[Counter]>,
    pub dropped: Counter,
    pub batches_pending: Gauge,
    pub rows_pending: Gauge,
    /// The bound on `rows_pending`, past which the oldest batches are dropped.
    pub rows_pending_max: Gauge,
    pub lag_seconds: Gauge,
    pub flush_duration: Histogram,
    failures: Arc<[Counter]>,
}

impl Default for ClickMetrics {
    fn default() -> Self {
        ClickMetrics {
            flushed: noops(ClickLabel::COUNT),
            dropped: Counter::noop(),
            batches_pending: Gauge::noop(),
            rows_pending: Gauge::noop(),
            rows_pending_max: Gauge::noop(),
            lag_seconds: Gauge::noop(),
            flush_duration: Histogram::noop(),
            failures: noops(DbCause::COUNT),
        }
    }
}

impl ClickMetrics {
    pub fn flushed(&self, kind: ClickLabel, clicks: u64) {
        self.flushed[kind.index()].increment(clicks);
    }

    pub fn flush_failed(&self, cause: DbCause) {
        self.failures[cause.index()].increment(1);
    }
}

/// The worker-id lease.
#[derive(Clone)]
pub struct LeaseMetrics {
    renewals: Arc<[Counter]>,
}

impl Default for LeaseMetrics {
    fn default() -> Self {
        LeaseMetrics {
            renewals: noops(RenewalResult::COUNT),
        }
    }
}

impl LeaseMetrics {
    pub fn renewal(&self, result: RenewalResult) {
        self.renewals[result.index()].increment(1);
    }
}

impl LeaseMetrics {
    pub(super) fn register(registry: &Registry) -> Self {
        LeaseMetrics {
            renewals: registry.counters_by::<RenewalResult>(
                "shortener_lease_renewals_total",
                "Worker-id lease renewals, by result.",
                "result",
            ),
        }
    }
}

pub(super) fn create_metrics(registry: &Registry) -> CreateMetrics {
    CreateMetrics {
        batch_size: registry.histogram(
            "shortener_create_batch_size",
            "Rows per batch of creates written in one transaction.",
            &[],
        ),
        batch_duration: registry.histogram(
            "shortener_create_batch_duration_seconds",
            "Time to write one batch of creates, checkout to commit.",
            &[],
        ),
        batches: registry.counters_by::<BatchResult>(
            "shortener_create_batches_total",
            "Batches of creates written, by result.",
            "result",
        ),
    }
}

pub(super) fn click_metrics(registry: &Registry) -> ClickMetrics {
    ClickMetrics {
        flushed: registry.counters_by::<ClickLabel>(
            "shortener_clicks_flushed_total",
            "Clicks written to Postgres, by kind.",
            "kind",
        ),
        dropped: registry.counter(
            "shortener_clicks_dropped_total",
            "Clicks given up because Postgres stayed unreachable past the pending bound.",
            &[],
        ),
        batches_pending: registry.gauge(
            "shortener_click_batches_pending",
            "Sealed click batches not yet written.",
            &[],
        ),
        rows_pending: registry.gauge(
            "shortener_click_rows_pending",
            "(link, day) rows in the unwritten click batches.",
            &[],
        ),
        rows_pending_max: registry.gauge(
            "shortener_click_rows_pending_max",
            "Most unwritten click rows kept; past it the oldest batches are dropped.",
            &[],
        ),
        lag_seconds: registry.gauge(
            "shortener_click_flush_lag_seconds",
            "Age of the oldest unwritten click batch, in seconds (0 when none).",
            &[],
        ),
        flush_duration: registry.histogram(
            "shortener_click_flush_duration_seconds",
            "Time to write one click batch.",
            &[],
        ),
        failures: registry.counters_by::<DbCause>(
            "shortener_click_flush_failures_total",
            "Click batch writes that failed and will be retried, by cause.",
            "cause",
        ),
    }
}

/// The pruner.
#[derive(Clone)]
pub struct PruneMetrics {
    passes: Arc<[Counter]>,
    rows: Arc<[Counter]>,
    chunks: Arc<[Counter]>,
    failures: Arc<[Counter]>,
    overdue: Arc<[Gauge]>,
}

impl Default for PruneMetrics {
    fn default() -> Self {
        PruneMetrics {
            passes: noops(PrunePass::COUNT),
            rows: noops(PruneTable::COUNT),
            chunks: noops(PruneTable::COUNT),
            failures: noops(PruneTable::COUNT),
            overdue: (0..PruneTable::COUNT).map(|_| Gauge::noop()).collect(),
        }
    }
}

impl PruneMetrics {
    pub fn pass(&self, end: PrunePass) {
        self.passes[end.index()].increment(1);
    }

    pub fn chunk(&self, table: PruneTable, rows: u64) {
        self.chunks[table.index()].increment(1);
        self.rows[table.index()].increment(rows);
    }

    pub fn failed(&self, table: PruneTable) {
        self.failures[table.index()].increment(1);
    }

    pub fn overdue(&self, table: PruneTable, seconds: f64) {
        self.overdue[table.index()].set(seconds);
    }

    pub(super) fn register(registry: &Registry) -> Self {
        PruneMetrics {
            passes: registry.counters_by::<PrunePass>(
                "shortener_prune_passes_total",
                "Pruning passes of this instance, by how they ended (left_to_another: another \
                 instance held the lock).",
                "end",
            ),
            rows: registry.counters_by::<PruneTable>(
                "shortener_prune_rows_total",
                "Rows pruned (expired links: links made tombstones), by table.",
                "table",
            ),
            chunks: registry.counters_by::<PruneTable>(
                "shortener_prune_chunks_total",
                "Chunks of pruning run by this instance, by table.",
                "table",
            ),
            failures: registry.counters_by::<PruneTable>(
                "shortener_prune_failures_total",
                "Chunks of pruning that failed (tried again next pass), by table.",
                "table",
            ),
            overdue: PruneTable::ALL
                .iter()
                .map(|table| {
                    registry.gauge(
                        "shortener_prune_overdue_seconds",
                        "How long the oldest row pruning would remove has been past its time \
                         (0: none), by table.",
                        &[("table", table.label())],
                    )
                })
                .collect(),
        }
    }
}

/// Reloads of the blocklist file.
#[derive(Clone)]
pub struct BlocklistMetrics {
    reloads: Arc<[Counter]>,
    pub entries: Gauge,
}

impl Default for BlocklistMetrics {
    fn default() -> Self {
        BlocklistMetrics {
            reloads: noops(ReloadResult::COUNT),
            entries: Gauge::noop(),
        }
    }
}

impl BlocklistMetrics {
    pub fn reload(&self, result: ReloadResult) {
        self.reloads[result.index()].increment(1);
    }

    pub(super) fn register(registry: &Registry) -> Self {
        BlocklistMetrics {
            reloads: registry.counters_by::<ReloadResult>(
                "shortener_blocklist_reloads_total",
                "Reloads of the blocklist file (on SIGHUP or a change of the file), by result \
                 (refused: unreadable or unparsable, the list in force stays).",
                "result",
            ),
            entries: registry.gauge(
                "shortener_blocklist_entries",
                "Hosts on the blocklist in force.",
                &[],
            ),
        }
    }
}
