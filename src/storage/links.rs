//! Links: lookups for redirects, and the create transaction with its idempotency record.

use std::sync::atomic::Ordering;

use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use super::{Db, StorageError, pool};

/// A link as stored.
#[derive(Debug, Clone)]
pub struct LinkRecord {
    pub id: i64,
    pub code: String,
    pub target_url: String,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub disabled_at: Option<OffsetDateTime>,
}

impl LinkRecord {
    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(LinkRecord {
            id: row.try_get(0)?,
            code: row.try_get(1)?,
            target_url: row.try_get(2)?,
            created_at: row.try_get(3)?,
            expires_at: row.try_get(4)?,
            disabled_at: row.try_get(5)?,
        })
    }
}

/// A link about to be inserted.
#[derive(Debug)]
pub struct NewLink<'a> {
    pub id: i64,
    pub code: &'a str,
    pub target_url: &'a str,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
}

/// The idempotency record written in the same transaction as the link.
#[derive(Debug)]
pub struct IdempotentRequest<'a> {
    /// Whose key this is (the client IP): one client cannot replay another's responses.
    pub scope: &'a str,
    pub key: &'a str,
    /// SHA-256 of the normalised request body.
    pub fingerprint: &'a [u8],
    /// The response stored for replays.
    pub status: u16,
    pub body: &'a str,
}

/// A response stored under an Idempotency-Key less than 24 hours ago.
#[derive(Debug, PartialEq, Eq)]
pub struct StoredAnswer {
    pub fingerprint: Vec<u8>,
    pub status: u16,
    pub body: String,
}

impl StoredAnswer {
    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        let status: i16 = row.try_get(1)?;
        Ok(StoredAnswer {
            fingerprint: row.try_get(0)?,
            status: status as u16,
            body: row.try_get(2)?,
        })
    }
}

/// What became of a create.
#[derive(Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The code (an alias, or in theory a generated code) belongs to another link.
    CodeTaken,
    /// The id is already in use: the caller retries with a fresh id.
    IdTaken,
    /// The key was used before (by a request that won a race with this one): the caller
    /// replays the stored answer or refuses a different body.
    Stored(StoredAnswer),
    /// Another request with this key is being processed right now.
    KeyInUse,
}

impl Db {
    /// The link named by `code` on the next healthy replica. `decoded_id` is the id a
    /// generated-shape code decodes to. `None` when no replica is configured or every one is
    /// being passed over after a failure; a replica that fails is passed over for a while.
    pub async fn find_link_on_replica(
        &self,
        code: &str,
        decoded_id: Option<i64>,
    ) -> Option<Result<Option<LinkRecord>, StorageError>> {
        let replica = self.replica()?;
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let found = self.bounded(find_on(&replica.pool, code, decoded_id)).await;
        if let Err(error) = &found {
            replica.failed(error);
        }
        Some(found)
    }

    /// The link named by `code` on the primary's read pool.
    pub async fn find_link_on_primary(
        &self,
        code: &str,
        decoded_id: Option<i64>,
    ) -> Result<Option<LinkRecord>, StorageError> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        self.primary_lookups.fetch_add(1, Ordering::Relaxed);
        self.bounded(find_on(&self.read, code, decoded_id)).await
    }

    /// The answer stored under `(scope, key)` in the last 24 hours, if any. Read without the
    /// lock: `create_link` checks again under it.
    pub async fn stored_answer(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<StoredAnswer>, StorageError> {
        self.bounded(async {
            let conn = pool::checkout(&self.write).await?;
            let row = conn
                .client
                .query_opt(&conn.write()?.idempotency_get, &[&scope, &key])
                .await?;
            match row {
                Some(row) if row.try_get::<_, bool>(3)? => Ok(Some(StoredAnswer::from_row(&row)?)),
                _ => Ok(None),
            }
        })
        .await
    }

    /// Inserts `link` and, when given, its idempotency record, in one transaction.
    pub async fn create_link(
        &self,
        link: &NewLink<'_>,
        idempotency: Option<&IdempotentRequest<'_>>,
    ) -> Result<CreateOutcome, StorageError> {
        self.bounded(async {
            let mut conn = pool::checkout(&self.write).await?;
            let statements = conn.write()?;
            let (lock, get, delete, insert_link, insert_key) = (
                statements.idempotency_lock.clone(),
                statements.idempotency_get.clone(),
                statements.idempotency_delete.clone(),
                statements.insert_link.clone(),
                statements.idempotency_insert.clone(),
            );
            let tx = conn.client.transaction().await?;

            if let Some(request) = idempotency {
                // A transaction-scoped advisory lock on (scope, key): a concurrent request with the
                // same key sees it taken and answers 409 instead of waiting; a crash releases it.
                let lock_name = format!("{}\n{}", request.scope, request.key);
                let locked: bool = tx.query_one(&lock, &[&lock_name]).await?.try_get(0)?;
                if !locked {
                    return Ok(CreateOutcome::KeyInUse);
                }
                let stored = tx.query_opt(&get, &[&request.scope, &request.key]).await?;
                if let Some(row) = stored {
                    let fresh: bool = row.try_get(3)?;
                    if fresh {
                        return Ok(CreateOutcome::Stored(StoredAnswer::from_row(&row)?));
                    }
                    tx.execute(&delete, &[&request.scope, &request.key]).await?;
                }
            }

            let inserted = tx
                .execute(
                    &insert_link,
                    &[
                        &link.id,
                        &link.code,
                        &link.target_url,
                        &link.created_at,
                        &link.expires_at,
                    ],
                )
                .await;
            match inserted {
                Ok(0) => return Ok(CreateOutcome::CodeTaken),
                Ok(_) => {}
                Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    return Ok(CreateOutcome::IdTaken);
                }
                Err(error) => return Err(error.into()),
            }

            if let Some(request) = idempotency {
                tx.execute(
                    &insert_key,
                    &[
                        &request.scope,
                        &request.key,
                        &request.fingerprint,
                        &(request.status as i16),
                        &request.body,
                        &link.id,
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(CreateOutcome::Created)
        })
        .await
    }
}

async fn find_on(
    pool: &pool::PgPool,
    code: &str,
    decoded_id: Option<i64>,
) -> Result<Option<LinkRecord>, StorageError> {
    let conn = pool::checkout(pool).await?;
    let statements = conn.read()?;
    let row = match decoded_id {
        Some(id) => {
            conn.client
                .query_opt(&statements.find_by_id_then_code, &[&id, &code])
                .await?
        }
        None => {
            conn.client
                .query_opt(&statements.find_by_code, &[&code])
                .await?
        }
    };
    Ok(row.as_ref().map(LinkRecord::from_row).transpose()?)
}
