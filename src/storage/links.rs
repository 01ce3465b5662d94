//! Links: lookups for redirects, and the stored answer of an Idempotency-Key (creates are
//! written in batches: `batch.rs`).

use crate::telemetry::metrics::DbOperation;

use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{Db, StorageError, pool};
use crate::domain::KeyId;

/// A link as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRecord {
    pub id: i64,
    pub code: String,
    pub target_url: String,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub disabled_at: Option<OffsetDateTime>,
    /// Moves on every change: a cache never takes an older one over a newer.
    pub version: i64,
    /// Deleted: the row is kept (its code answers 410 and is never issued again).
    pub deleted_at: Option<OffsetDateTime>,
    /// The API key that made it; `None` for an anonymous link.
    pub owner: Option<KeyId>,
    pub max_visits: Option<i64>,
    pub visits_left: Option<i64>,
}

/// What a replica answered to a lookup.
#[derive(Debug)]
pub struct ReplicaAnswer {
    pub found: Result<Option<LinkRecord>, StorageError>,
    /// The replica lagged past the bound when last probed: its "no such link" is not final.
    pub lagging: bool,
}

/// The columns [`LinkRecord::from_row`] reads, in its order.
pub(super) const LINK_COLUMNS: &str = "id, code, target_url, created_at, expires_at, \
    disabled_at, version, deleted_at, owner_key_id, max_visits, visits_left";

impl LinkRecord {
    /// A link as a create makes it: version 1, no owner, no visit limit.
    pub fn new(id: i64, code: String, target_url: String, created_at: OffsetDateTime) -> Self {
        LinkRecord {
            id,
            code,
            target_url,
            created_at,
            expires_at: None,
            disabled_at: None,
            version: 1,
            deleted_at: None,
            owner: None,
            max_visits: None,
            visits_left: None,
        }
    }

    pub(super) fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(LinkRecord {
            id: row.try_get(0)?,
            code: row.try_get(1)?,
            target_url: row.try_get(2)?,
            created_at: row.try_get(3)?,
            expires_at: row.try_get(4)?,
            disabled_at: row.try_get(5)?,
            version: row.try_get(6)?,
            deleted_at: row.try_get(7)?,
            owner: row.try_get::<_, Option<i64>>(8)?.map(KeyId),
            max_visits: row.try_get(9)?,
            visits_left: row.try_get(10)?,
        })
    }
}

/// A response stored under an Idempotency-Key, still fresh.
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

impl Db {
    /// The link named by `code` on the next healthy replica. `decoded_id` is the id a
    /// generated-shape code decodes to. `None` when no replica is configured or every one is
    /// being passed over after a failure; a replica that fails is passed over for a while.
    pub async fn find_link_on_replica(
        &self,
        code: &str,
        decoded_id: Option<i64>,
    ) -> Option<ReplicaAnswer> {
        let replica = self.replica()?;
        let lagging = replica.lagging.load(std::sync::atomic::Ordering::Relaxed);
        let found = self
            .bounded(
                DbOperation::LookupReplica,
                find_on(&replica.pool, code, decoded_id),
            )
            .await;
        if let Err(error) = &found {
            replica.failed(error);
        }
        Some(ReplicaAnswer { found, lagging })
    }

    /// The link named by `code` on the primary's read pool.
    pub async fn find_link_on_primary(
        &self,
        code: &str,
        decoded_id: Option<i64>,
    ) -> Result<Option<LinkRecord>, StorageError> {
        self.bounded(
            DbOperation::LookupPrimary,
            find_on(&self.read, code, decoded_id),
        )
        .await
    }

    /// The answer stored under `(scope, key)` after `fresh_since`, if any. Read without the
    /// lock: for a retry that can no longer be written (its body no longer validates, or no
    /// worker id is held); every other create reads it under the lock, in its batch.
    pub async fn stored_answer(
        &self,
        scope: &str,
        key: &str,
        fresh_since: OffsetDateTime,
    ) -> Result<Option<StoredAnswer>, StorageError> {
        self.bounded(DbOperation::Create, async {
            let conn = pool::checkout(&self.write).await?;
            let row = conn
                .client
                .query_opt(
                    &conn.write()?.idempotency_get,
                    &[&scope, &key, &fresh_since],
                )
                .await?;
            match row {
                Some(row) if row.try_get::<_, bool>(3)? => Ok(Some(StoredAnswer::from_row(&row)?)),
                _ => Ok(None),
            }
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
