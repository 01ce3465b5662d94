//! Group commit of creates: many links (and their idempotency records) in one transaction of
//! set-based statements, with an outcome per row.
//!
//! A batch of N rows costs one round trip for its links when none carries an Idempotency-Key
//! (a single `INSERT … SELECT FROM UNNEST(…) ON CONFLICT DO NOTHING RETURNING id`, atomic on
//! its own), and six when some do (BEGIN, claim the keys, read their stored answers, insert the
//! links, insert the keys, COMMIT), whatever N is. One row's conflict is that row's outcome,
//! never the batch's failure.
//!
//! Deadlock freedom across instances: keys are claimed with `pg_try_advisory_xact_lock`, which
//! never waits, in (scope, key) order; links are inserted in code order, so two batches that
//! would wait on each other's uncommitted codes wait in the same order. A deadlock or
//! serialization failure that happens anyway is retried once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use time::OffsetDateTime;
use tokio_postgres::Transaction;
use tokio_postgres::error::SqlState;

use crate::domain::KeyId;
use crate::telemetry::metrics::DbOperation;

use super::links::StoredAnswer;
use super::{Db, StorageError, pool};

/// The idempotency record of one row, written with its link (and its `created_at`).
#[derive(Debug, Clone)]
pub struct BatchKey {
    /// Whose key this is (the client IP): one client cannot replay another's responses.
    pub scope: String,
    pub key: String,
    /// Answers stored under this key at or before this instant are stale: deleted, and the key
    /// used again.
    pub fresh_since: OffsetDateTime,
    /// SHA-256 of the normalised request body.
    pub fingerprint: Vec<u8>,
    /// The response stored for replays.
    pub status: u16,
    pub body: String,
}

/// One create of a batch, owned (it crosses a channel to the writer).
#[derive(Debug, Clone)]
pub struct BatchRow {
    pub id: i64,
    pub code: String,
    pub target_url: String,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    /// The API key that makes it.
    pub owner: Option<KeyId>,
    /// Its visit limit (its visits left start there).
    pub max_visits: Option<i64>,
    /// What a `reuse` create finds it by (links without alias, expiry or visit limit).
    pub reuse_digest: Option<[u8; 32]>,
    pub key: Option<BatchKey>,
}

impl BatchRow {
    /// A create of `code` with no owner, limit or idempotency record.
    pub fn new(id: i64, code: String, target_url: String, created_at: OffsetDateTime) -> Self {
        BatchRow {
            id,
            code,
            target_url,
            created_at,
            expires_at: None,
            owner: None,
            max_visits: None,
            reuse_digest: None,
            key: None,
        }
    }
}

/// What became of one row.
#[derive(Debug, PartialEq, Eq)]
pub enum RowOutcome {
    /// Committed.
    Created,
    /// The code belongs to another link (inserted before, or earlier in this batch).
    CodeTaken,
    /// The id is already in use: the caller retries with a fresh id.
    IdTaken,
    /// The key was used before: the caller replays the stored answer or refuses another body.
    Stored(StoredAnswer),
    /// Another request with this key is being processed right now (here or elsewhere).
    KeyInUse,
}

/// The idempotency record of a whole unit of rows (one batch request): one key, one stored
/// answer, written in the rows' transaction.
#[derive(Debug, Clone)]
pub struct UnitKey {
    pub scope: String,
    pub key: String,
    pub fresh_since: OffsetDateTime,
    pub fingerprint: Vec<u8>,
    /// When the request was made: the key's age counts from then.
    pub made_at: OffsetDateTime,
}

/// What became of a unit of rows.
#[derive(Debug, PartialEq, Eq)]
pub enum UnitOutcome {
    /// Committed with this outcome per row, and this answer stored under the unit's key.
    Written {
        outcomes: Vec<RowOutcome>,
        answer: String,
    },
    /// The key was used before: nothing written.
    Stored(StoredAnswer),
    /// Another request with this key is being processed right now.
    KeyInUse,
    /// The answer could not be made: nothing written.
    Unanswerable,
}

impl Db {
    /// Writes `rows` in one transaction; answers an outcome per row, in `rows`' order. An error
    /// means nothing of the batch was committed (or, for a timeout after COMMIT was sent, that
    /// it is unknown whether it was).
    pub async fn create_batch(&self, rows: &[BatchRow]) -> Result<Vec<RowOutcome>, StorageError> {
        self.write_retried(rows.len(), |commit_sent| {
            self.create_batch_once(rows, commit_sent)
        })
        .await
    }

    /// Writes `rows` (which carry no keys of their own) and, under `key`, the answer `answer`
    /// makes of their outcomes, all in one transaction: a retry of the unit finds either all
    /// of it or none. `status` is the stored answer's status.
    pub async fn create_unit(
        &self,
        rows: &[BatchRow],
        key: Option<&UnitKey>,
        status: u16,
        answer: &(dyn Fn(&[RowOutcome]) -> Option<String> + Sync),
    ) -> Result<UnitOutcome, StorageError> {
        self.write_retried(rows.len(), |commit_sent| async move {
            let mut conn = pool::checkout(&self.write).await?;
            let statements = conn.write()?.clone();
            let tx = conn.client.transaction().await?;
            if let Some(key) = key {
                let name = vec![format!("{}\n{}", key.scope, key.key)];
                let claimed = tx.query_one(&statements.batch_claim_keys, &[&name]).await?;
                if !claimed.try_get::<_, bool>(0)? {
                    return Ok(UnitOutcome::KeyInUse);
                }
                let (scopes, keys) = (vec![key.scope.as_str()], vec![key.key.as_str()]);
                let stored = tx
                    .query_opt(
                        &statements.batch_stored_answers,
                        &[&scopes, &keys, &vec![key.fresh_since]],
                    )
                    .await?;
                if let Some(row) = stored {
                    let status: i16 = row.try_get(3)?;
                    return Ok(UnitOutcome::Stored(StoredAnswer {
                        fingerprint: row.try_get(2)?,
                        status: status as u16,
                        body: row.try_get(4)?,
                    }));
                }
            }
            let outcomes = write_links(&tx, &statements, rows, &mut undecided(rows.len())).await?;
            let Some(body) = answer(&outcomes) else {
                return Ok(UnitOutcome::Unanswerable);
            };
            if let Some(key) = key {
                tx.execute(
                    &statements.batch_insert_keys,
                    &[
                        &vec![key.scope.as_str()],
                        &vec![key.key.as_str()],
                        &vec![key.fingerprint.as_slice()],
                        &vec![status as i16],
                        &vec![body.as_str()],
                        &vec![None::<i64>],
                        &vec![key.made_at],
                    ],
                )
                .await?;
            }
            commit_sent.store(true, Ordering::Relaxed);
            tx.commit().await?;
            Ok(UnitOutcome::Written {
                outcomes,
                answer: body,
            })
        })
        .await
    }

    async fn create_batch_once(
        &self,
        rows: &[BatchRow],
        commit_sent: Arc<AtomicBool>,
    ) -> Result<Vec<RowOutcome>, StorageError> {
        let mut conn = pool::checkout(&self.write).await?;
        let statements = conn.write()?.clone();
        if rows.iter().all(|row| row.key.is_none()) {
            // One statement: atomic without a transaction around it.
            let mut undecided = undecided(rows.len());
            commit_sent.store(true, Ordering::Relaxed);
            return write_links(&conn.client, &statements, rows, &mut undecided).await;
        }
        let tx = conn.client.transaction().await?;
        let mut decided = claim_keys(&tx, &statements, rows).await?;
        let outcomes = write_links(&tx, &statements, rows, &mut decided).await?;
        insert_keys(&tx, &statements, rows, &outcomes).await?;
        commit_sent.store(true, Ordering::Relaxed);
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Runs `write` (told where to record that its COMMIT was sent), once more after a
    /// deadlock or serialization failure; counts the call and its failure.
    async fn write_retried<T, F, Fut>(&self, rows: usize, write: F) -> Result<T, StorageError>
    where
        F: Fn(Arc<AtomicBool>) -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        self.metrics.called(DbOperation::Create);
        let result = match self.write_once(rows, &write).await {
            Err(StorageError::Database(error)) if is_retryable(&error) => {
                tracing::info!(error = %crate::telemetry::Chain(&error), rows, "create batch retried once");
                match self.write_once(rows, &write).await {
                    Err(StorageError::Database(error)) if is_retryable(&error) => {
                        Err(StorageError::Contention(error))
                    }
                    other => other,
                }
            }
            other => other,
        };
        if let Err(error) = &result {
            self.metrics.failed(DbOperation::Create, error.cause());
        }
        result
    }

    /// One try of `write` within the call timeout; a failure after its COMMIT was sent is
    /// logged as such (the rows' fate is unknown).
    async fn write_once<T, F, Fut>(&self, rows: usize, write: &F) -> Result<T, StorageError>
    where
        F: Fn(Arc<AtomicBool>) -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let commit_sent = Arc::new(AtomicBool::new(false));
        let result = pool::within(self.call_timeout, write(Arc::clone(&commit_sent)))
            .await
            .unwrap_or(Err(StorageError::TimedOut(
                "the database did not answer in time",
            )));
        if let Err(error) = &result
            && error.is_transient()
            && commit_sent.load(Ordering::Relaxed)
        {
            tracing::warn!(
                error = %crate::telemetry::Chain(error),
                rows,
                "create batch: the commit was sent but never acknowledged; its links may exist \
                 (answered 503: a retry with the same Idempotency-Key is safe, one without may \
                 create a second link)"
            );
        }
        result
    }
}

fn undecided(count: usize) -> Vec<Option<RowOutcome>> {
    (0..count).map(|_| None).collect()
}

/// Claims each distinct key without waiting and reads the answers stored under the claimed
/// ones. Answers, per row, the outcome already decided (`None`: the row is to be inserted).
async fn claim_keys(
    tx: &Transaction<'_>,
    statements: &pool::WriteStatements,
    rows: &[BatchRow],
) -> Result<Vec<Option<RowOutcome>>, StorageError> {
    let mut outcomes = undecided(rows.len());
    // Rows with a key, in (scope, key) order; a key seen twice in one batch is in flight for
    // the second row (the advisory lock is re-entrant within a transaction, so it would not
    // say so).
    let mut keyed: Vec<(usize, &BatchKey)> = rows
        .iter()
        .enumerate()
        .filter_map(|(index, row)| row.key.as_ref().map(|key| (index, key)))
        .collect();
    keyed.sort_by(|(a_index, a), (b_index, b)| {
        (&a.scope, &a.key, a_index).cmp(&(&b.scope, &b.key, b_index))
    });
    let mut claimed: Vec<(usize, &BatchKey)> = Vec::with_capacity(keyed.len());
    for (index, key) in keyed {
        if claimed
            .last()
            .is_some_and(|(_, last)| last.scope == key.scope && last.key == key.key)
        {
            outcomes[index] = Some(RowOutcome::KeyInUse);
        } else {
            claimed.push((index, key));
        }
    }
    let names: Vec<String> = claimed
        .iter()
        .map(|(_, key)| format!("{}\n{}", key.scope, key.key))
        .collect();
    let locks = tx.query(&statements.batch_claim_keys, &[&names]).await?;
    let mut held = Vec::with_capacity(claimed.len());
    for ((index, key), row) in claimed.into_iter().zip(locks) {
        if row.try_get::<_, bool>(0)? {
            held.push((index, key));
        } else {
            outcomes[index] = Some(RowOutcome::KeyInUse);
        }
    }
    if held.is_empty() {
        return Ok(outcomes);
    }
    let scopes: Vec<&str> = held.iter().map(|(_, key)| key.scope.as_str()).collect();
    let keys: Vec<&str> = held.iter().map(|(_, key)| key.key.as_str()).collect();
    let fresh_since: Vec<OffsetDateTime> = held.iter().map(|(_, key)| key.fresh_since).collect();
    let stored = tx
        .query(
            &statements.batch_stored_answers,
            &[&scopes, &keys, &fresh_since],
        )
        .await?;
    let mut answers: HashMap<(String, String), StoredAnswer> = HashMap::new();
    for row in stored {
        let scope: String = row.try_get(0)?;
        let key: String = row.try_get(1)?;
        let status: i16 = row.try_get(3)?;
        answers.insert(
            (scope, key),
            StoredAnswer {
                fingerprint: row.try_get(2)?,
                status: status as u16,
                body: row.try_get(4)?,
            },
        );
    }
    for (index, key) in held {
        if let Some(answer) = answers.remove(&(key.scope.clone(), key.key.clone())) {
            outcomes[index] = Some(RowOutcome::Stored(answer));
        }
    }
    Ok(outcomes)
}

/// Inserts the rows whose outcome is not decided yet, in code order; answers every row's
/// outcome.
async fn write_links(
    client: &impl tokio_postgres::GenericClient,
    statements: &pool::WriteStatements,
    rows: &[BatchRow],
    decided: &mut [Option<RowOutcome>],
) -> Result<Vec<RowOutcome>, StorageError> {
    let mut order: Vec<usize> = (0..rows.len()).filter(|&i| decided[i].is_none()).collect();
    order.sort_by(|&a, &b| (&rows[a].code, a).cmp(&(&rows[b].code, b)));
    let mut inserted: HashSet<i64> = HashSet::new();
    if !order.is_empty() {
        let ids: Vec<i64> = order.iter().map(|&i| rows[i].id).collect();
        let codes: Vec<&str> = order.iter().map(|&i| rows[i].code.as_str()).collect();
        let targets: Vec<&str> = order.iter().map(|&i| rows[i].target_url.as_str()).collect();
        let created: Vec<OffsetDateTime> = order.iter().map(|&i| rows[i].created_at).collect();
        let expires: Vec<Option<OffsetDateTime>> =
            order.iter().map(|&i| rows[i].expires_at).collect();
        let owners: Vec<Option<i64>> = order
            .iter()
            .map(|&i| rows[i].owner.map(|owner| owner.0))
            .collect();
        let max_visits: Vec<Option<i64>> = order.iter().map(|&i| rows[i].max_visits).collect();
        let reuse: Vec<Option<&[u8]>> = order
            .iter()
            .map(|&i| {
                rows[i]
                    .reuse_digest
                    .as_ref()
                    .map(|digest| digest.as_slice())
            })
            .collect();
        for row in client
            .query(
                &statements.batch_insert_links,
                &[
                    &ids,
                    &codes,
                    &targets,
                    &created,
                    &expires,
                    &owners,
                    &max_visits,
                    &reuse,
                ],
            )
            .await?
        {
            inserted.insert(row.try_get(0)?);
        }
    }
    let refused: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| !inserted.contains(&rows[i].id))
        .collect();
    // Why a row was not inserted: its code belongs to another link, or else its id is taken.
    let mut owners: HashMap<String, i64> = HashMap::new();
    if !refused.is_empty() {
        let codes: Vec<&str> = refused.iter().map(|&i| rows[i].code.as_str()).collect();
        for row in client
            .query(&statements.batch_code_owners, &[&codes])
            .await?
        {
            owners.insert(row.try_get(0)?, row.try_get(1)?);
        }
    }
    Ok(rows
        .iter()
        .enumerate()
        .map(|(index, row)| match decided[index].take() {
            Some(outcome) => outcome,
            None if inserted.contains(&row.id) => RowOutcome::Created,
            None => match owners.get(&row.code) {
                Some(&owner) if owner != row.id => RowOutcome::CodeTaken,
                _ => RowOutcome::IdTaken,
            },
        })
        .collect())
}

/// Stores the answers of the created rows that carry a key.
async fn insert_keys(
    tx: &Transaction<'_>,
    statements: &pool::WriteStatements,
    rows: &[BatchRow],
    outcomes: &[RowOutcome],
) -> Result<(), StorageError> {
    let mut created: Vec<(&BatchKey, &BatchRow)> = rows
        .iter()
        .zip(outcomes)
        .filter(|(_, outcome)| **outcome == RowOutcome::Created)
        .filter_map(|(row, _)| row.key.as_ref().map(|key| (key, row)))
        .collect();
    if created.is_empty() {
        return Ok(());
    }
    created.sort_by(|(a, _), (b, _)| (&a.scope, &a.key).cmp(&(&b.scope, &b.key)));
    let scopes: Vec<&str> = created.iter().map(|(key, _)| key.scope.as_str()).collect();
    let keys: Vec<&str> = created.iter().map(|(key, _)| key.key.as_str()).collect();
    let fingerprints: Vec<&[u8]> = created
        .iter()
        .map(|(key, _)| key.fingerprint.as_slice())
        .collect();
    let statuses: Vec<i16> = created.iter().map(|(key, _)| key.status as i16).collect();
    let bodies: Vec<&str> = created.iter().map(|(key, _)| key.body.as_str()).collect();
    let link_ids: Vec<i64> = created.iter().map(|(_, row)| row.id).collect();
    let created_at: Vec<OffsetDateTime> = created.iter().map(|(_, row)| row.created_at).collect();
    tx.execute(
        &statements.batch_insert_keys,
        &[
            &scopes,
            &keys,
            &fingerprints,
            &statuses,
            &bodies,
            &link_ids,
            &created_at,
        ],
    )
    .await?;
    Ok(())
}

/// Deadlocks and serialization failures are worth one more try of the whole batch.
pub(super) fn is_retryable(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(code) if *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
    )
}
