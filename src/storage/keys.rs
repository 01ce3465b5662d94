//! API keys: made, listed and revoked by `shortener apikey` (on a connection of its own, as
//! the owner of the tables: the service's role only reads `api_keys`), and read by the
//! service (what changed since a change sequence; one key by its digest); and when each key was
//! last used, which the service writes in batches.

use time::OffsetDateTime;
use tokio_postgres::Row;

use super::{Db, PgTarget, StorageError, pool};
use crate::domain::{KeyDigest, KeyId, KeyScope};
use crate::telemetry::metrics::DbOperation;

/// A key as the service checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub id: KeyId,
    pub digest: KeyDigest,
    pub scope: KeyScope,
    pub revoked: bool,
    /// Moves on every change of the key (made, revoked).
    pub change_seq: i64,
}

/// A key as `shortener apikey list` shows it.
#[derive(Debug, Clone)]
pub struct KeyListing {
    pub id: KeyId,
    pub name: String,
    pub scope: KeyScope,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

const KEY_COLUMNS: &str = "id, digest, scope, revoked_at IS NOT NULL, change_seq";

fn scope_of(row: &Row, index: usize) -> Result<KeyScope, StorageError> {
    let scope: String = row.try_get(index)?;
    KeyScope::parse(&scope).ok_or(StorageError::Unreadable("an API key's scope"))
}

impl KeyRow {
    fn from_row(row: &Row) -> Result<Self, StorageError> {
        let digest: Vec<u8> = row.try_get(1)?;
        Ok(KeyRow {
            id: KeyId(row.try_get(0)?),
            digest: KeyDigest(
                digest
                    .try_into()
                    .map_err(|_| StorageError::Unreadable("an API key's digest"))?,
            ),
            scope: scope_of(row, 2)?,
            revoked: row.try_get(3)?,
            change_seq: row.try_get(4)?,
        })
    }
}

/// Stores a new key (its digest only); answers its id.
pub async fn create_api_key(
    target: &PgTarget,
    name: &str,
    scope: KeyScope,
    digest: KeyDigest,
) -> Result<KeyId, StorageError> {
    super::on_own_connection(target, async |client: &mut tokio_postgres::Client| {
        let row = client
            .query_one(
                "INSERT INTO api_keys (name, scope, digest) VALUES ($1, $2, $3) RETURNING id",
                &[&name, &scope.as_str(), &digest.0.as_slice()],
            )
            .await?;
        Ok::<_, StorageError>(KeyId(row.try_get(0)?))
    })
    .await
}

/// Every key, oldest first, with when it was last used.
pub async fn list_api_keys(target: &PgTarget) -> Result<Vec<KeyListing>, StorageError> {
    super::on_own_connection(target, async |client: &mut tokio_postgres::Client| {
        let rows = client
            .query(
                "SELECT k.id, k.name, k.scope, k.created_at, u.last_used_at, k.revoked_at \
                 FROM api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.id ORDER BY k.id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyListing {
                    id: KeyId(row.try_get(0)?),
                    name: row.try_get(1)?,
                    scope: scope_of(row, 2)?,
                    created_at: row.try_get(3)?,
                    last_used_at: row.try_get(4)?,
                    revoked_at: row.try_get(5)?,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()
    })
    .await
}

/// Revokes key `id` (its change sequence moves, so every instance reads it), recording who did
/// it in the audit log, in one transaction. Answers `false` when no key has that id (a key
/// already revoked is revoked again: no change, no new audit line).
pub async fn revoke_api_key(
    target: &PgTarget,
    id: KeyId,
    actor: &str,
) -> Result<bool, StorageError> {
    super::on_own_connection(target, async |client: &mut tokio_postgres::Client| {
        let tx = client.transaction().await?;
        let exists = tx
            .query_opt("SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = $1 FOR UPDATE", &[&id.0])
            .await?;
        let Some(row) = exists else {
            return Ok(false);
        };
        if !row.try_get::<_, bool>(0)? {
            tx.execute(
                "UPDATE api_keys SET revoked_at = now(), change_seq = nextval('api_keys_change_seq') \
                 WHERE id = $1",
                &[&id.0],
            )
            .await?;
            tx.execute(
                "INSERT INTO audit_log (actor, action, target) VALUES ($1, 'revoke', $2)",
                &[&actor, &format!("key:{id}")],
            )
            .await?;
        }
        tx.commit().await?;
        Ok::<_, StorageError>(true)
    })
    .await
}

impl Db {
    /// Keys whose change sequence is above `since`, in sequence order, read on the primary.
    pub async fn api_keys_changed_since(&self, since: i64) -> Result<Vec<KeyRow>, StorageError> {
        self.bounded(DbOperation::Keys, async {
            let conn = pool::checkout(&self.read).await?;
            let rows = conn
                .client
                .query(
                    &format!(
                        "SELECT {KEY_COLUMNS} FROM api_keys WHERE change_seq > $1 ORDER BY change_seq"
                    ),
                    &[&since],
                )
                .await?;
            rows.iter().map(KeyRow::from_row).collect()
        })
        .await
    }

    /// The key with `digest`, if any, read on the primary.
    pub async fn api_key_by_digest(
        &self,
        digest: KeyDigest,
    ) -> Result<Option<KeyRow>, StorageError> {
        self.bounded(DbOperation::KeyLookup, async {
            let conn = pool::checkout(&self.read).await?;
            let row = conn
                .client
                .query_opt(
                    &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE digest = $1"),
                    &[&digest.0.as_slice()],
                )
                .await?;
            row.as_ref().map(KeyRow::from_row).transpose()
        })
        .await
    }

    /// Records when each key was last used (never moving a time back).
    pub async fn record_key_usage(
        &self,
        used: &[(KeyId, OffsetDateTime)],
    ) -> Result<(), StorageError> {
        if used.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = used.iter().map(|(id, _)| id.0).collect();
        let at: Vec<OffsetDateTime> = used.iter().map(|(_, at)| *at).collect();
        self.bounded(DbOperation::Keys, async {
            let conn = pool::checkout(&self.background).await?;
            conn.client
                .execute(
                    "INSERT INTO api_key_usage (key_id, last_used_at) \
                     SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[]) \
                     ON CONFLICT (key_id) DO UPDATE SET last_used_at = \
                       GREATEST(api_key_usage.last_used_at, EXCLUDED.last_used_at)",
                    &[&ids, &at],
                )
                .await?;
            Ok(())
        })
        .await
    }
}

/// One line of the audit log.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// The newest `limit` entries of the audit log, oldest first.
pub async fn audit_log(target: &PgTarget, limit: i64) -> Result<Vec<AuditEntry>, StorageError> {
    super::on_own_connection(target, async |client: &mut tokio_postgres::Client| {
        let rows = client
            .query(
                "SELECT at, actor, action, target, detail FROM \
                   (SELECT * FROM audit_log ORDER BY id DESC LIMIT $1) newest ORDER BY id",
                &[&limit],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    at: row.try_get(0)?,
                    actor: row.try_get(1)?,
                    action: row.try_get(2)?,
                    target: row.try_get(3)?,
                    detail: row.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()
    })
    .await
}
