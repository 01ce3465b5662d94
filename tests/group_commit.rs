//! Group commit against real Postgres: the writer (`links::CreateWriter`) over
//! `storage::Db::create_batch`. Concurrent creates share transactions; each row gets its own
//! outcome (an alias taken inside the batch or before it, an id in use, a key in flight or
//! answered before); a full queue is refused at once; shutdown writes what is queued. And the
//! same through HTTP: the queue-full 503.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{connect, eventually, scalar};
use shortener::links::{CreateWriter, WriteError, WriterSettings};
use shortener::storage::{BatchKey, BatchRow, Db, PoolSettings, PoolSizes, RowOutcome};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

fn db_on(url: &str) -> Db {
    let settings = PoolSettings {
        sizes: PoolSizes {
            read: 2,
            write: 2,
            background: 1,
        },
        acquire_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(10),
    };
    Db::connect_lazy(&common::target(url), &[], &settings)
}

/// A writer on `url`, its task running until the token is cancelled.
fn writer_on(
    url: &str,
    settings: WriterSettings,
) -> (
    Arc<CreateWriter>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let stop = CancellationToken::new();
    let (writer, task) = CreateWriter::new(
        db_on(url),
        settings,
        stop.clone(),
        tokio_util::task::TaskTracker::new(),
    );
    (Arc::new(writer), stop, tokio::spawn(task))
}

fn row(id: i64, code: &str) -> BatchRow {
    BatchRow::new(
        id,
        code.to_owned(),
        format!("https://example.com/{id}"),
        OffsetDateTime::now_utc(),
    )
}

fn keyed(id: i64, code: &str, key: &str) -> BatchRow {
    BatchRow {
        key: Some(BatchKey {
            scope: "203.0.113.7".into(),
            key: key.into(),
            fresh_since: OffsetDateTime::now_utc() - shortener::links::KEY_LIFETIME,
            fingerprint: vec![7; 32],
            status: 201,
            body: format!("{{\"code\":\"{code}\"}}"),
        }),
        ..row(id, code)
    }
}

/// One batch at a time, so that rows queue up behind a blocked one.
const BATCHING: WriterSettings = WriterSettings {
    batch_max: 64,
    linger: Duration::from_millis(20),
    queue: 1024,
    concurrency: 1,
    queue_wait: Duration::from_secs(60),
};

/// Writes every row at once (each from a task of its own); answers their outcomes in order.
async fn write_all(writer: &Arc<CreateWriter>, rows: Vec<BatchRow>) -> Vec<RowOutcome> {
    let handles: Vec<_> = rows
        .into_iter()
        .map(|row| {
            let writer = Arc::clone(writer);
            tokio::spawn(async move { writer.write(row).await.expect("written") })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(handles.len());
    for handle in handles {
        outcomes.push(handle.await.unwrap());
    }
    outcomes
}

/// Holds `links` locked (ACCESS EXCLUSIVE) until dropped: every insert waits behind it.
struct LockedLinks {
    client: tokio_postgres::Client,
}

impl LockedLinks {
    async fn take(url: &str) -> LockedLinks {
        let client = connect(url).await;
        client
            .batch_execute("BEGIN; LOCK TABLE links IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        LockedLinks { client }
    }

    async fn release(self) {
        self.client.batch_execute("ROLLBACK").await.unwrap();
    }
}

/// Waits until an insert into `links` is blocked on a lock in this database.
async fn wait_for_a_blocked_insert(url: &str) {
    let db = connect(url).await;
    let blocked = eventually(Duration::from_secs(10), || async {
        scalar(
            &db,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' \
               AND query LIKE 'INSERT INTO links%'",
        )
        .await
            > 0
    })
    .await;
    assert!(blocked, "no insert is waiting on the lock");
}

#[tokio::test]
async fn concurrent_creates_share_transactions_and_all_are_durable() {
    let url = common::fresh_database().await;
    let (writer, stop, task) = writer_on(&url, BATCHING);
    let rows: Vec<BatchRow> = (1..=300).map(|i| row(i, &format!("gc-{i}"))).collect();
    let outcomes = write_all(&writer, rows).await;
    assert!(outcomes.iter().all(|o| *o == RowOutcome::Created));
    assert_eq!(writer.rows(), 300);
    assert!(
        writer.batches() < 100,
        "300 concurrent creates took {} batches",
        writer.batches()
    );
    let db = connect(&url).await;
    assert_eq!(scalar(&db, "SELECT count(*) FROM links").await, 300);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn each_row_gets_its_own_outcome_inside_one_batch() {
    let url = common::fresh_database().await;
    let db = connect(&url).await;
    db.batch_execute(
        "INSERT INTO links (id, code, target_url, created_at) VALUES \
         (1, 'taken-before', 'https://example.com/1', now()), \
         (2, 'owner-of-id-2', 'https://example.com/2', now())",
    )
    .await
    .unwrap();
    // One batch: the table is locked while the rows queue up behind the first.
    let (writer, stop, task) = writer_on(&url, BATCHING);
    let locked = LockedLinks::take(&url).await;
    let first = tokio::spawn({
        let writer = Arc::clone(&writer);
        async move { writer.write(row(10, "first")).await }
    });
    wait_for_a_blocked_insert(&url).await;
    let mut rows: Vec<BatchRow> = (20..30).map(|id| row(id, "same-alias")).collect();
    rows.push(row(30, "taken-before"));
    rows.push(row(2, "fresh-code-old-id"));
    rows.push(row(31, "plain"));
    let batch = tokio::spawn({
        let writer = Arc::clone(&writer);
        async move { write_all(&writer, rows).await }
    });
    let queued = eventually(Duration::from_secs(5), || async { writer.queued() == 13 }).await;
    assert!(queued, "the 13 rows did not queue behind the blocked batch");
    locked.release().await;
    assert_eq!(first.await.unwrap(), Ok(RowOutcome::Created));
    let outcomes = batch.await.unwrap();
    assert_eq!(writer.batches(), 2, "the 13 queued rows made one batch");
    let alias = &outcomes[..10];
    assert_eq!(
        alias.iter().filter(|o| **o == RowOutcome::Created).count(),
        1
    );
    assert_eq!(
        alias
            .iter()
            .filter(|o| **o == RowOutcome::CodeTaken)
            .count(),
        9
    );
    assert_eq!(outcomes[10], RowOutcome::CodeTaken, "an alias taken before");
    assert_eq!(outcomes[11], RowOutcome::IdTaken, "an id in use");
    assert_eq!(
        outcomes[12],
        RowOutcome::Created,
        "its neighbours' conflicts cost it nothing"
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM links WHERE code = 'same-alias'").await,
        1
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn keys_are_claimed_without_waiting_and_answered_from_what_was_stored() {
    let url = common::fresh_database().await;
    let (writer, stop, task) = writer_on(&url, BATCHING);
    // Answered before: the stored answer comes back, and no second link is made.
    assert_eq!(
        writer.write(keyed(1, "k-first", "key-a")).await,
        Ok(RowOutcome::Created)
    );
    match writer.write(keyed(2, "k-second", "key-a")).await {
        Ok(RowOutcome::Stored(answer)) => {
            assert_eq!(answer.body, "{\"code\":\"k-first\"}");
            assert_eq!(answer.status, 201);
        }
        other => panic!("{other:?}"),
    }
    // The same key twice in one batch: one is written, the other is in flight.
    let outcomes = write_all(
        &writer,
        vec![keyed(3, "k-third", "key-b"), keyed(4, "k-fourth", "key-b")],
    )
    .await;
    let created = outcomes
        .iter()
        .filter(|o| **o == RowOutcome::Created)
        .count();
    let in_flight = outcomes
        .iter()
        .filter(|o| **o == RowOutcome::KeyInUse)
        .count();
    let stored = outcomes
        .iter()
        .filter(|o| matches!(o, RowOutcome::Stored(_)))
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
    assert_eq!(in_flight + stored, 1, "{outcomes:?}");
    // A key held elsewhere (another instance's transaction) is in flight: answered at once.
    let other = connect(&url).await;
    other
        .batch_execute("SELECT pg_advisory_lock(hashtextextended(E'203.0.113.7\\nkey-c', 0))")
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        writer.write(keyed(5, "k-fifth", "key-c")).await,
        Ok(RowOutcome::KeyInUse)
    );
    assert!(started.elapsed() < Duration::from_secs(5), "it waited");
    let db = connect(&url).await;
    assert_eq!(scalar(&db, "SELECT count(*) FROM links").await, 2);
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM idempotency_keys").await,
        2
    );
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_full_queue_is_refused_at_once_and_shutdown_writes_what_was_queued() {
    let url = common::fresh_database().await;
    let settings = WriterSettings {
        batch_max: 1,
        linger: Duration::ZERO,
        queue: 3,
        concurrency: 1,
        queue_wait: Duration::from_secs(60),
    };
    let (writer, stop, task) = writer_on(&url, settings);
    let locked = LockedLinks::take(&url).await;
    let mut waiting = Vec::new();
    let first = Arc::clone(&writer);
    waiting.push(tokio::spawn(
        async move { first.write(row(1, "q-1")).await },
    ));
    wait_for_a_blocked_insert(&url).await;
    for id in 2..=4 {
        let writer = Arc::clone(&writer);
        waiting.push(tokio::spawn(async move {
            writer.write(row(id, &format!("q-{id}"))).await
        }));
    }
    let queued = eventually(Duration::from_secs(5), || async { writer.queued() == 3 }).await;
    assert!(queued, "three creates did not queue behind the blocked one");
    assert_eq!(
        writer.write(row(5, "q-5")).await,
        Err(WriteError::QueueFull)
    );

    // Shutdown while four wait: nothing new is taken, all four are written and answered.
    // No wait: a write reads the stop token itself, so the refusal holds from the cancel on
    // (the writer's task, parked on its one busy slot, has not even seen it yet).
    stop.cancel();
    assert_eq!(writer.write(row(6, "q-6")).await, Err(WriteError::Stopped));
    assert_eq!(writer.queued(), 3, "the refused create was queued");
    locked.release().await;
    for handle in waiting {
        assert_eq!(handle.await.unwrap(), Ok(RowOutcome::Created));
    }
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the writer exits once the queue is written")
        .unwrap();
    let db = connect(&url).await;
    assert_eq!(scalar(&db, "SELECT count(*) FROM links").await, 4);
}

#[tokio::test]
async fn a_lone_create_does_not_wait_for_the_linger() {
    let url = common::fresh_database().await;
    let settings = WriterSettings {
        linger: Duration::from_secs(30),
        ..BATCHING
    };
    let (writer, stop, task) = writer_on(&url, settings);
    let answered = tokio::time::timeout(Duration::from_secs(10), writer.write(row(1, "alone")))
        .await
        .expect("a lone create is written at once, not after the 30 s linger");
    assert_eq!(answered, Ok(RowOutcome::Created));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_full_create_queue_answers_503_with_retry_after() {
    let url = common::fresh_database().await;
    let app = common::spawn_app_on(&url, &["--create-batch-max", "1", "--create-queue", "1"]).await;
    let body = r#"{"url": "https://example.com/q"}"#;
    // Warm: the pools' connections are open and their statements prepared before the lock.
    assert_eq!(app.shorten(body).await.status, 201);
    let locked = LockedLinks::take(&url).await;
    let app = Arc::new(app);
    let writing = tokio::spawn({
        let app = Arc::clone(&app);
        async move { app.shorten(body).await.status }
    });
    wait_for_a_blocked_insert(&url).await;
    // Five more at once: one fits in the queue, four are refused at once.
    let more: Vec<_> = (0..5)
        .map(|_| {
            let app = Arc::clone(&app);
            tokio::spawn(async move { app.shorten(body).await })
        })
        .collect();
    // All five handled before the lock goes: four answered, one waiting in the queue.
    let handled = eventually(Duration::from_secs(10), || async {
        more.iter().filter(|create| create.is_finished()).count() == 4
            && app
                .scrape()
                .await
                .value("shortener_create_queue_depth", &[])
                == 1.0
    })
    .await;
    assert!(handled, "the five creates were not all refused or queued");
    locked.release().await;
    assert_eq!(writing.await.unwrap(), 201);
    let mut statuses = Vec::new();
    for handle in more {
        let response = handle.await.unwrap();
        if response.status == 503 {
            let problem = response.assert_problem(503);
            assert_eq!(problem["type"], "urn:shortener:problem:overloaded");
            assert!(response.header("retry-after").is_some());
        }
        statuses.push(response.status);
    }
    statuses.sort();
    assert_eq!(statuses, [201, 503, 503, 503, 503]);
    Arc::try_unwrap(app).ok().unwrap().shutdown().await;
}

#[tokio::test]
async fn batches_of_two_instances_racing_for_the_same_aliases_never_deadlock() {
    let url = common::fresh_database().await;
    let settings = WriterSettings {
        concurrency: 4,
        queue_wait: Duration::from_secs(60),
        batch_max: 16,
        ..BATCHING
    };
    let writers = [writer_on(&url, settings), writer_on(&url, settings)];
    // Both ask for the same 50 aliases, 4 times each, in opposite orders.
    let mut rounds = Vec::new();
    for (side, (writer, _, _)) in writers.iter().enumerate() {
        let mut rows = Vec::new();
        for repeat in 0..4 {
            for n in 0..50 {
                let n = if side == 0 { n } else { 49 - n };
                let id = 1 + (side * 1000 + repeat * 100 + n) as i64;
                rows.push(row(id, &format!("race-{n}")));
            }
        }
        let writer = Arc::clone(writer);
        rounds.push(tokio::spawn(async move { write_all(&writer, rows).await }));
    }
    let mut created = 0;
    for round in rounds {
        for outcome in round.await.unwrap() {
            match outcome {
                RowOutcome::Created => created += 1,
                RowOutcome::CodeTaken => {}
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(created, 50, "each alias went to exactly one row");
    let db = connect(&url).await;
    assert_eq!(scalar(&db, "SELECT count(*) FROM links").await, 50);
    for (_, stop, task) in writers {
        stop.cancel();
        task.await.unwrap();
    }
}
