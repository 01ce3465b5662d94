//! Group commit: the one task that gathers creates into batches. Handlers hand it an owned row
//! through a bounded queue and wait for that row's outcome; whenever one of its `concurrency`
//! slots (one per write-pool connection) is free, it takes what is queued (up to `batch_max`),
//! lingers a little for more only when more were already waiting (never when the queue was
//! idle: a lone create is written at once), writes the batch in one transaction
//! (`storage::Db::create_batch`) and answers each handler through its own channel. While every
//! slot is busy committing, the queue fills and the next batches grow.
//!
//! A batch request's rows come as one unit (`write_unit`): it waits in the same queue, then
//! takes a slot of its own and is written by its request in one transaction, never split.
//!
//! A full queue is refused at once (the handler answers 503 with `Retry-After`) instead of
//! making requests wait without bound. On shutdown the writer stops accepting, writes what
//! is queued, answers everyone, and exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::storage::{BatchRow, Db, RowOutcome, StorageError, UnitKey, UnitOutcome};
use crate::telemetry::Chain;
use crate::telemetry::metrics::{BatchResult, CreateMetrics};

/// How the writer batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterSettings {
    /// Most rows in one transaction (1 writes every create on its own).
    pub batch_max: usize,
    /// How long a batch that found others waiting waits for more before it is written.
    pub linger: Duration,
    /// Most creates waiting for the writer; more are refused.
    pub queue: usize,
    /// Batches written at once (the write pool's size: each holds one connection).
    pub concurrency: usize,
    /// Longest a create waits in the queue for a batch to take it (the pool's acquire
    /// timeout: like a request waiting for a connection); past it, it is answered 503 instead
    /// of written, so a database that stops answering costs each create one bounded wait
    /// rather than every batch's time bound queued before it.
    pub queue_wait: Duration,
}

/// Why a row got no outcome. The batch's error is shared by every row of the batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The queue is full: try again shortly.
    #[error("the create queue is full")]
    QueueFull,
    /// The writer has stopped (shutdown).
    #[error("the create writer has stopped: the service is shutting down")]
    Stopped,
    /// The database could not take the batch (down, overloaded, or the commit's fate is
    /// unknown after a timeout): nothing of it is acknowledged.
    #[error("the create batch was not written")]
    Unavailable(#[source] Arc<StorageError>),
    /// The database refused the batch for another reason (a bug): logged where it happened.
    #[error("the create batch failed")]
    Failed(#[source] Arc<StorageError>),
}

/// Outcomes compare by kind: to a row, two failed batches are the same outcome whatever the
/// database said.
impl PartialEq for WriteError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

impl Eq for WriteError {}

struct Pending {
    row: BatchRow,
    reply: oneshot::Sender<Result<RowOutcome, WriteError>>,
    queued_at: Instant,
}

/// What waits in the writer's queue: a row for the next batch, or a unit of rows (a batch
/// request) waiting for a slot of its own. Rows are nearly all of it: they stay inline (a box
/// would cost every create an allocation; the queue's slots are that size either way).
#[allow(clippy::large_enum_variant)]
enum Work {
    Row(Pending),
    Unit(oneshot::Sender<OwnedSemaphorePermit>),
}

/// The handle handlers submit through; cheap to share.
pub struct CreateWriter {
    queue: mpsc::Sender<Work>,
    counts: Arc<Counts>,
    /// Units of rows are written by the request that brings them, in a slot of the writer's.
    db: Db,
    metrics: CreateMetrics,
    /// Cancelled at shutdown: nothing new is taken from then on.
    stop: CancellationToken,
}

/// What the writer has done so far.
#[derive(Debug, Default)]
struct Counts {
    batches: AtomicU64,
    rows: AtomicU64,
}

impl CreateWriter {
    /// The handle, and the task to spawn (it returns once `stop` is cancelled and everything
    /// queued by then is written and answered). Each batch in flight is a task on `tasks`.
    pub fn new(
        db: Db,
        settings: WriterSettings,
        stop: CancellationToken,
        tasks: TaskTracker,
    ) -> (CreateWriter, impl Future<Output = ()> + Send + 'static) {
        Self::with_metrics(db, settings, stop, tasks, CreateMetrics::default())
    }

    /// As [`CreateWriter::new`], each batch counted in `metrics`.
    pub fn with_metrics(
        db: Db,
        settings: WriterSettings,
        stop: CancellationToken,
        tasks: TaskTracker,
        metrics: CreateMetrics,
    ) -> (CreateWriter, impl Future<Output = ()> + Send + 'static) {
        let (queue, receiver) = mpsc::channel(settings.queue.max(1));
        let counts = Arc::new(Counts::default());
        let task = run(
            Batching {
                db: db.clone(),
                settings,
                stop: stop.clone(),
                tasks,
                counts: Arc::clone(&counts),
                metrics: metrics.clone(),
            },
            receiver,
        );
        (
            CreateWriter {
                queue,
                counts,
                db,
                metrics,
                stop,
            },
            task,
        )
    }

    /// Writes `row` with the next batch; answers its outcome once the batch is committed.
    pub async fn write(&self, row: BatchRow) -> Result<RowOutcome, WriteError> {
        if self.stop.is_cancelled() {
            return Err(WriteError::Stopped);
        }
        let (reply, outcome) = oneshot::channel();
        self.enqueue(Work::Row(Pending {
            row,
            reply,
            queued_at: Instant::now(),
        }))?;
        outcome.await.unwrap_or(Err(WriteError::Stopped))
    }

    /// Writes `rows` and the answer `answer` makes of their outcomes under `key`, in one
    /// transaction of their own (never split, whatever `SHORTENER_CREATE_BATCH_MAX` is, and
    /// never shared with other creates): the unit waits in the queue like any create, then
    /// takes one of the writer's slots (one write connection) while this request writes it.
    pub async fn write_unit(
        &self,
        rows: &[BatchRow],
        key: Option<&UnitKey>,
        status: u16,
        answer: &(dyn Fn(&[RowOutcome]) -> Option<String> + Sync),
    ) -> Result<UnitOutcome, WriteError> {
        if self.stop.is_cancelled() {
            return Err(WriteError::Stopped);
        }
        let (reply, turn) = oneshot::channel();
        self.enqueue(Work::Unit(reply))?;
        let slot = turn.await.map_err(|_| WriteError::Stopped)?;
        self.counts.batches.fetch_add(1, Ordering::Relaxed);
        self.counts
            .rows
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let result = self.db.create_unit(rows, key, status, answer).await;
        drop(slot);
        self.metrics
            .batch(batch_result(&result), rows.len(), started.elapsed());
        result.map_err(|error| refused(error, rows.len()))
    }

    fn enqueue(&self, work: Work) -> Result<(), WriteError> {
        self.queue.try_send(work).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => WriteError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => WriteError::Stopped,
        })
    }

    /// Most creates that may wait for the writer.
    pub fn capacity(&self) -> usize {
        self.queue.max_capacity()
    }

    /// Creates waiting for the writer now.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Batches written so far (committed or not).
    pub fn batches(&self) -> u64 {
        self.counts.batches.load(Ordering::Relaxed)
    }

    /// Rows in those batches.
    pub fn rows(&self) -> u64 {
        self.counts.rows.load(Ordering::Relaxed)
    }
}

/// What the writer's task works with.
struct Batching {
    db: Db,
    settings: WriterSettings,
    stop: CancellationToken,
    tasks: TaskTracker,
    counts: Arc<Counts>,
    metrics: CreateMetrics,
}

async fn run(batching: Batching, mut receiver: mpsc::Receiver<Work>) {
    let Batching {
        db,
        settings,
        stop,
        tasks,
        counts,
        metrics,
    } = batching;
    let batch_max = settings.batch_max.max(1);
    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut in_flight: Vec<JoinHandle<()>> = Vec::new();
    let mut stopping = false;
    let refusing = Arc::new(Refusing::default());
    // A unit met while gathering a batch: it waits for the next slot.
    let mut held: Option<Work> = None;
    loop {
        // A batch is gathered only once a connection's worth of room is free: while every
        // slot is busy, creates keep queuing and the next batch grows.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let first = if let Some(work) = held.take() {
            Some(work)
        } else if stopping {
            receiver.recv().await
        } else {
            tokio::select! {
                biased;
                pending = receiver.recv() => pending,
                _ = stop.cancelled() => {
                    // Refuse new creates; what is queued is still received below.
                    receiver.close();
                    stopping = true;
                    continue;
                }
            }
        };
        let first = match first {
            None => break,
            // Its request writes it in this slot (a request that went away hands it back).
            Some(Work::Unit(turn)) => {
                let _ = turn.send(slot);
                continue;
            }
            Some(Work::Row(pending)) => pending,
        };
        let mut batch = vec![first];
        held = take_queued(&mut receiver, &mut batch, batch_max);
        if held.is_none() && batch.len() > 1 && !settings.linger.is_zero() && !stopping {
            let deadline = Instant::now() + settings.linger;
            while batch.len() < batch_max && held.is_none() {
                match timeout_at(deadline, receiver.recv()).await {
                    Ok(Some(Work::Row(pending))) => {
                        batch.push(pending);
                        held = take_queued(&mut receiver, &mut batch, batch_max);
                    }
                    Ok(Some(unit)) => held = Some(unit),
                    _ => break,
                }
            }
        }
        // Right after a batch the database could not take, the batch is refused at once: the
        // primary is down, and each create should learn it in milliseconds, not after its
        // own batch's bounds. The first batch after the pause tries again.
        if refusing.now() && !stopping {
            let answer = WriteError::Unavailable(Arc::new(StorageError::Unavailable(
                "a create batch could not be written moments ago".to_owned(),
            )));
            for pending in batch {
                let _ = pending.reply.send(Err(answer.clone()));
            }
            drop(slot);
            continue;
        }
        // Those that waited past the bound are answered now, not written.
        let waited_since = Instant::now().checked_sub(settings.queue_wait);
        if let Some(since) = waited_since
            && batch.iter().any(|pending| pending.queued_at < since)
        {
            let (stale, fresh): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .partition(|pending| pending.queued_at < since);
            crate::throttled!(
                warn,
                rows = stale.len(),
                "creates answered 503: they waited for the writer past the acquire timeout"
            );
            let answer = WriteError::Unavailable(Arc::new(StorageError::PoolTimeout));
            for pending in stale {
                let _ = pending.reply.send(Err(answer.clone()));
            }
            batch = fresh;
            if batch.is_empty() {
                drop(slot);
                continue;
            }
        }
        counts.batches.fetch_add(1, Ordering::Relaxed);
        counts.rows.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let db = db.clone();
        let metrics = metrics.clone();
        in_flight.retain(|batch| !batch.is_finished());
        let refusing = Arc::clone(&refusing);
        in_flight.push(tasks.spawn(async move {
            write_batch(&db, batch, &metrics, &refusing).await;
            drop(slot);
        }));
    }
    // Everyone queued has been taken; wait until each batch in flight has answered its rows.
    for batch in in_flight {
        let _ = batch.await;
    }
}

/// Moves queued rows into `batch` (up to `max`); answers a unit met on the way, which stops it.
fn take_queued(
    receiver: &mut mpsc::Receiver<Work>,
    batch: &mut Vec<Pending>,
    max: usize,
) -> Option<Work> {
    while batch.len() < max {
        match receiver.try_recv() {
            Ok(Work::Row(pending)) => batch.push(pending),
            Ok(unit) => return Some(unit),
            Err(_) => return None,
        }
    }
    None
}

fn batch_result<T>(result: &Result<T, StorageError>) -> BatchResult {
    match result {
        Ok(_) => BatchResult::Committed,
        Err(error) if error.is_transient() => BatchResult::Unavailable,
        Err(_) => BatchResult::Failed,
    }
}

/// What a batch's failure means for its rows (logged here, once per batch).
fn refused(error: StorageError, rows: usize) -> WriteError {
    if error.is_transient() {
        crate::throttled!(warn, error = %Chain(&error), sqlstate = error.sqlstate(), rows, "create batch not written: database unavailable");
        WriteError::Unavailable(Arc::new(error))
    } else {
        tracing::error!(error = %Chain(&error), sqlstate = error.sqlstate(), rows, "create batch failed");
        WriteError::Failed(Arc::new(error))
    }
}

/// After a batch the database could not take, how long new batches are refused at once (503)
/// instead of each waiting out its own bounds; the first batch after it tries again.
const REFUSE_AFTER_UNAVAILABLE: Duration = Duration::from_millis(500);

/// Until when batches are refused at once after one the database could not take.
#[derive(Default)]
struct Refusing(std::sync::Mutex<Option<Instant>>);

impl Refusing {
    fn now(&self) -> bool {
        let until = *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        until.is_some_and(|until| Instant::now() < until)
    }

    fn start(&self) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some(Instant::now() + REFUSE_AFTER_UNAVAILABLE);
    }
}

async fn write_batch(db: &Db, batch: Vec<Pending>, metrics: &CreateMetrics, refusing: &Refusing) {
    let started = std::time::Instant::now();
    let (rows, replies): (Vec<BatchRow>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.row, pending.reply))
        .unzip();
    let result = db.create_batch(&rows).await;
    metrics.batch(batch_result(&result), rows.len(), started.elapsed());
    match result {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // A handler that gave up (its client went away) no longer listens.
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(error) => {
            let answer = refused(error, rows.len());
            if matches!(answer, WriteError::Unavailable(_)) {
                refusing.start();
            }
            for reply in replies {
                let _ = reply.send(Err(answer.clone()));
            }
        }
    }
}
