//! The background pipelines' series: the group-commit writer, the click flusher, the
//! worker-id lease.

use std::sync::Arc;
use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram};

use super::registry::{Registry, noops};
use super::vocabulary::{BatchResult, ClickLabel, DbCause, RenewalResult};

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
