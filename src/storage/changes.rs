//! Changes of links: an edit, a delete, a takedown, each one transaction that moves the link's
//! version, records the change in `link_changes` (the feed an instance re-reads after missing
//! notifications) and in the audit log. Which change is allowed, and what it means for the
//! caches, is `links`' to decide; here a change is applied only if the version is still the
//! one the caller read.

use std::time::Duration;

use time::OffsetDateTime;

use super::links::{LINK_COLUMNS, LinkRecord};
use super::{Db, PgTarget, StorageError, pool};
use crate::telemetry::metrics::DbOperation;

/// What a change sets (`None`: left as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkEdit {
    pub target_url: Option<String>,
    /// `Some(None)` clears the expiry.
    pub expires_at: Option<Option<OffsetDateTime>>,
    /// `Some(true)` disables (keeping an earlier `disabled_at`), `Some(false)` enables.
    pub disabled: Option<bool>,
    /// Marks the link deleted (its row kept as a tombstone).
    pub delete: bool,
}

/// Who made a change and what it was, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// `key:<id>` or `cli`.
    pub actor: String,
    /// `patch`, `delete`, `disable`, `enable`.
    pub action: &'static str,
    pub detail: String,
}

/// One row of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    pub seq: i64,
    pub code: String,
    pub version: i64,
}

/// What became of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Applied: the link as it is now, and its place in the feed.
    Applied { link: LinkRecord, seq: i64 },
    /// The link's version was no longer `expected`: someone else changed it first.
    Moved,
}

/// Applies `edit` to link `id` if its version is still `expected`, in one transaction with its
/// feed row and its audit line.
async fn apply(
    client: &mut tokio_postgres::Client,
    id: i64,
    expected: i64,
    edit: &LinkEdit,
    audit: &Audit,
) -> Result<Changed, StorageError> {
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE links SET \
                   target_url = coalesce($3::text, target_url), \
                   expires_at = CASE WHEN $4::boolean THEN $5::timestamptz ELSE expires_at END, \
                   disabled_at = CASE WHEN $6::boolean IS NULL THEN disabled_at \
                                      WHEN $6::boolean THEN coalesce(disabled_at, now()) \
                                      ELSE NULL END, \
                   deleted_at = CASE WHEN $7::boolean THEN coalesce(deleted_at, now()) \
                                     ELSE deleted_at END, \
                   reuse_digest = CASE WHEN $3::text IS NULL AND NOT $4::boolean \
                                       THEN reuse_digest END, \
                   version = version + 1 \
                 WHERE id = $1 AND version = $2 RETURNING {LINK_COLUMNS}"
            ),
            &[
                &id,
                &expected,
                &edit.target_url,
                &edit.expires_at.is_some(),
                &edit.expires_at.flatten(),
                &edit.disabled,
                &edit.delete,
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Changed::Moved);
    };
    let link = LinkRecord::from_row(&row)?;
    let seq: i64 = tx
        .query_one(
            "INSERT INTO link_changes (link_id, code, version) VALUES ($1, $2, $3) RETURNING seq",
            &[&link.id, &link.code, &link.version],
        )
        .await?
        .try_get(0)?;
    tx.execute(
        "INSERT INTO audit_log (actor, action, target, detail) VALUES ($1, $2, $3, $4)",
        &[&audit.actor, &audit.action, &link.code, &audit.detail],
    )
    .await?;
    tx.commit().await?;
    Ok(Changed::Applied { link, seq })
}

async fn by_code(
    client: &impl tokio_postgres::GenericClient,
    code: &str,
) -> Result<Option<LinkRecord>, StorageError> {
    let row = client
        .query_opt(
            &format!("SELECT {LINK_COLUMNS} FROM links WHERE code = $1"),
            &[&code],
        )
        .await?;
    Ok(row.as_ref().map(LinkRecord::from_row).transpose()?)
}

impl Db {
    /// The link whose code is exactly `code` (never one an alias merely resembles), read on
    /// the primary: what a change is decided on.
    pub async fn link_by_code(&self, code: &str) -> Result<Option<LinkRecord>, StorageError> {
        self.bounded(DbOperation::Change, async {
            let conn = pool::checkout(&self.write).await?;
            by_code(&conn.client, code).await
        })
        .await
    }

    /// Applies `edit` to link `id` if its version is still `expected` (see [`Changed`]).
    pub async fn change_link(
        &self,
        id: i64,
        expected: i64,
        edit: &LinkEdit,
        audit: &Audit,
    ) -> Result<Changed, StorageError> {
        self.bounded(DbOperation::Change, async {
            let mut conn = pool::checkout(&self.write).await?;
            apply(&mut conn.client, id, expected, edit, audit).await
        })
        .await
    }

    /// The feed after `applied` (exclusive), and the rows between `floor` and `applied` that
    /// were written in the last ten seconds (a transaction that committed after later ones),
    /// oldest first, at most `limit` rows.
    pub async fn link_changes_after(
        &self,
        floor: i64,
        applied: i64,
        limit: i64,
    ) -> Result<Vec<ChangeRow>, StorageError> {
        self.bounded(DbOperation::Change, async {
            let conn = pool::checkout(&self.background).await?;
            let rows = conn
                .client
                .query(
                    "SELECT seq, code, version FROM link_changes \
                     WHERE seq > $1 AND (seq > $2 OR changed_at > clock_timestamp() - interval '10 seconds') \
                     ORDER BY seq LIMIT $3",
                    &[&floor, &applied, &limit],
                )
                .await?;
            change_rows(&rows)
        })
        .await
    }

    /// The changes of the last `within` (at most `limit`, the newest), oldest first.
    pub async fn recent_link_changes(
        &self,
        within: Duration,
        limit: i64,
    ) -> Result<Vec<ChangeRow>, StorageError> {
        self.bounded(DbOperation::Change, async {
            let conn = pool::checkout(&self.background).await?;
            let rows = conn
                .client
                .query(
                    "SELECT seq, code, version FROM ( \
                       SELECT seq, code, version FROM link_changes \
                       WHERE seq > (SELECT coalesce(max(seq), 0) FROM link_changes) - $2 \
                         AND changed_at > clock_timestamp() - make_interval(secs => $1) \
                     ) AS recent ORDER BY seq",
                    &[&within.as_secs_f64(), &limit],
                )
                .await?;
            change_rows(&rows)
        })
        .await
    }

    /// The newest place in the feed (0 when it is empty).
    pub async fn last_link_change(&self) -> Result<i64, StorageError> {
        self.bounded(DbOperation::Change, async {
            let conn = pool::checkout(&self.background).await?;
            let row = conn
                .client
                .query_one("SELECT coalesce(max(seq), 0) FROM link_changes", &[])
                .await?;
            Ok(row.try_get(0)?)
        })
        .await
    }
}

/// Rows of `seq, code, version`.
fn change_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<ChangeRow>, StorageError> {
    rows.iter()
        .map(|row| {
            Ok(ChangeRow {
                seq: row.try_get(0)?,
                code: row.try_get(1)?,
                version: row.try_get(2)?,
            })
        })
        .collect()
}

/// The codes of the live links whose target's host is `host` (compared without case) and
/// whose `disabled` state is not `disabled` yet: what a takedown by host changes. A scan of
/// the table, for an operator's command.
pub async fn codes_for_host(
    target: &PgTarget,
    host: &str,
    disabled: bool,
) -> Result<Vec<String>, StorageError> {
    super::on_own_connection(target, async |client: &mut tokio_postgres::Client| {
        let rows = client
            .query(
                "SELECT code FROM links \
                 WHERE deleted_at IS NULL AND (disabled_at IS NOT NULL) <> $2 \
                   AND lower(substring(target_url FROM \
                         '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?(\\[[^]]*\\]|[^:/?#]*)')) \
                       = lower($1) \
                 ORDER BY id",
                &[&host, &disabled],
            )
            .await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(StorageError::from))
            .collect()
    })
    .await
}

/// A takedown from the command line (`shortener disable` / `enable`), on a connection of its
/// own: the same change as an edit through the API. `None` when no link has the code.
pub async fn change_link_once(
    target: &PgTarget,
    code: &str,
    edit: &LinkEdit,
    audit: &Audit,
) -> Result<Option<(LinkRecord, i64)>, StorageError> {
    super::on_own_connection(target, async |client: &mut tokio_postgres::Client| {
        loop {
            let Some(link) = by_code(&*client, code).await? else {
                return Ok::<_, StorageError>(None);
            };
            match apply(client, link.id, link.version, edit, audit).await? {
                Changed::Applied { link, seq } => return Ok(Some((link, seq))),
                // Changed meanwhile: read it again.
                Changed::Moved => continue,
            }
        }
    })
    .await
}
