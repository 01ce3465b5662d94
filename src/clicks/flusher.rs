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

#[derive(Debug, Clone)]
pub struct FlushSettings {
    pub interval: Duration,
    /// Most (link, day) rows kept while the database is unreachable.
    pub max_pending_rows: usize,
}

struct Batch {
    id: i64,
    rows: ClickRows,
}

/// Runs until `stop` is cancelled, then seals and writes what is left, retrying until it is
/// written or the caller's deadline drops this future.
pub async fn run_flusher(
    recorder: Arc<ClickRecorder>,
    db: Db,
    settings: FlushSettings,
    stop: CancellationToken,
) {
    let mut pending = VecDeque::new();
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => break,
        }
        seal(&recorder, &mut pending, settings.max_pending_rows);
        write_pending(&db, &mut pending).await;
    }
    seal(&recorder, &mut pending, settings.max_pending_rows);
    while !pending.is_empty() {
        write_pending(&db, &mut pending).await;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tracing::info!("click flusher stopped with every batch written");
}

fn seal(recorder: &ClickRecorder, pending: &mut VecDeque<Batch>, max_pending_rows: usize) {
    let rows = recorder.drain();
    if !rows.is_empty() {
        pending.push_back(Batch {
            id: fastrand::i64(..),
            rows,
        });
    }
    let mut total: usize = pending.iter().map(|batch| batch.rows.len()).sum();
    while total > max_pending_rows {
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
        recorder.count_dropped(clicks as u64);
        tracing::error!(
            clicks,
            "dropped a click batch: the database stayed unreachable"
        );
    }
}

async fn write_pending(db: &Db, pending: &mut VecDeque<Batch>) {
    while let Some(batch) = pending.front() {
        match db.apply_click_batch(batch.id, &batch.rows).await {
            Ok(applied) => {
                if !applied {
                    tracing::info!(batch = batch.id, "click batch was already applied");
                }
                pending.pop_front();
            }
            Err(error) => {
                tracing::warn!(%error, pending = pending.len(), "click batch not written; will retry");
                return;
            }
        }
    }
}
