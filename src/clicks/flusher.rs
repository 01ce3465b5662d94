//! The task that writes click batches to Postgres.
//!
//! Every interval it seals what the recorder holds into a batch with a fresh random id and
//! writes the oldest unwritten batches first. A failed batch is retried with the same id (the
//! write is effectively-once per id). Unwritten batches are bounded: past the bound the oldest
//! are dropped and counted, so an unreachable database cannot grow memory without limit.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::ClickRecorder;
use crate::storage::{ClickRows, Db};
use crate::telemetry::Chain;
use crate::telemetry::metrics::{ClickLabel, ClickMetrics};

/// Unwritten click rows kept while Postgres is unreachable (about 100 MB at worst).
pub const MAX_PENDING_CLICK_ROWS: usize = 1_000_000;

/// How often tallies are written, and how many unwritten rows are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushSettings {
    pub interval: Duration,
    /// Most (link, day) rows kept while the database is unreachable.
    pub max_pending_rows: usize,
}

impl FlushSettings {
    /// A flush every `interval`, with the default bound on unwritten rows.
    pub fn every(interval: Duration) -> Self {
        FlushSettings {
            interval,
            max_pending_rows: MAX_PENDING_CLICK_ROWS,
        }
    }
}

struct Batch {
    id: i64,
    rows: ClickRows,
    sealed: std::time::Instant,
}

/// What the flusher reports as it goes.
struct Flushing<'a> {
    recorder: &'a ClickRecorder,
    db: &'a Db,
    metrics: &'a ClickMetrics,
    max_pending_rows: usize,
    /// Why the last write failed, for the line that drops a batch.
    last_failure: Option<String>,
}

/// Runs until `stop` is cancelled, then seals and writes what is left, retrying until it is
/// written or the caller's deadline drops this future.
pub async fn run_flusher(
    recorder: Arc<ClickRecorder>,
    db: Db,
    settings: FlushSettings,
    metrics: ClickMetrics,
    stop: CancellationToken,
) {
    let mut flushing = Flushing {
        recorder: &recorder,
        db: &db,
        metrics: &metrics,
        max_pending_rows: settings.max_pending_rows,
        last_failure: None,
    };
    metrics
        .rows_pending_max
        .set(settings.max_pending_rows as f64);
    let mut pending = VecDeque::new();
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => break,
        }
        flushing.seal(&mut pending);
        flushing.write_pending(&mut pending).await;
    }
    flushing.seal(&mut pending);
    while !pending.is_empty() {
        flushing.write_pending(&mut pending).await;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tracing::info!("click flusher stopped with every batch written");
}

impl Flushing<'_> {
    /// Seals what the recorder holds into a batch; drops the oldest past the bound.
    fn seal(&mut self, pending: &mut VecDeque<Batch>) {
        let rows = self.recorder.drain();
        if !rows.is_empty() {
            pending.push_back(Batch {
                id: fastrand::i64(..),
                rows,
                sealed: std::time::Instant::now(),
            });
        }
        let mut total: usize = pending.iter().map(|batch| batch.rows.len()).sum();
        while total > self.max_pending_rows {
            let Some(oldest) = pending.pop_front() else {
                break;
            };
            total -= oldest.rows.len();
            let clicks: i64 = oldest
                .rows
                .clicks
                .iter()
                .chain(&oldest.rows.bot_clicks)
                .sum();
            self.metrics.dropped.increment(clicks as u64);
            tracing::error!(
                clicks,
                error = self
                    .last_failure
                    .as_deref()
                    .unwrap_or("no write had failed yet"),
                "dropped a click batch: the database stayed unreachable"
            );
        }
        self.report(pending);
    }

    /// Writes the oldest batches first; stops at the first that fails (retried next time).
    async fn write_pending(&mut self, pending: &mut VecDeque<Batch>) {
        while let Some(batch) = pending.front() {
            let started = std::time::Instant::now();
            let result = self.db.apply_click_batch(batch.id, &batch.rows).await;
            self.metrics
                .flush_duration
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(applied) => {
                    if applied {
                        let sum = |clicks: &[i64]| clicks.iter().sum::<i64>().max(0) as u64;
                        self.metrics
                            .flushed(ClickLabel::Person, sum(&batch.rows.clicks));
                        self.metrics
                            .flushed(ClickLabel::Bot, sum(&batch.rows.bot_clicks));
                    } else {
                        tracing::info!(batch = batch.id, "click batch was already applied");
                    }
                    pending.pop_front();
                }
                Err(error) => {
                    self.metrics.flush_failed(error.cause());
                    self.last_failure = Some(Chain(&error).to_string());
                    crate::throttled!(warn, error = %Chain(&error), sqlstate = error.sqlstate(), pending = pending.len(), "click batch not written; will retry");
                    break;
                }
            }
        }
        self.report(pending);
    }

    fn report(&self, pending: &VecDeque<Batch>) {
        self.metrics.batches_pending.set(pending.len() as f64);
        self.metrics
            .rows_pending
            .set(pending.iter().map(|batch| batch.rows.len()).sum::<usize>() as f64);
        self.metrics.lag_seconds.set(
            pending
                .front()
                .map_or(0.0, |oldest| oldest.sealed.elapsed().as_secs_f64()),
        );
    }
}
