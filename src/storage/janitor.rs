//! Pruning of rows that only matter for a while, one bounded chunk per statement.
//!
//! Every chunk is a short transaction that first takes one advisory lock
//! ([`PRUNE_LOCK_KEY`], transaction-level): while one instance prunes, the others' chunks find
//! the lock taken and stop their pass, so the fleet prunes one chunk at a time. A chunk picks
//! at most `limit` rows by an index on the column it is cut by, from where the chunk before it
//! stopped (a keyset: the rows it removed stay in the index, dead, until vacuum, and a scan
//! from the start would step over all of them, chunk after chunk), so its cost does not depend
//! on how large the backlog is: a backlog of any size is worked off by repeating chunks, each
//! well within the statement timeout.

use time::{Date, OffsetDateTime};
use tokio_postgres::types::ToSql;

use super::{Db, StorageError, pool};
use crate::telemetry::metrics::{DbOperation, PruneTable};

/// Key of the advisory lock a chunk holds. The value only has to be this program's own (and
/// not the migration lock's).
pub const PRUNE_LOCK_KEY: i64 = 0x73_686f_7274_7072; // "shortpr"

/// What a chunk removes, and before when.
#[derive(Debug, Clone, Copy)]
pub enum PruneCut {
    /// Idempotency records stored before it.
    IdempotencyKeys(OffsetDateTime),
    /// Click batch ids applied before it (no retry is that late).
    StatsBatches(OffsetDateTime),
    /// The change feed's rows older than it.
    LinkChanges(OffsetDateTime),
    /// Daily click rows of days before it, folded into the link's totals row.
    ClickDays(Date),
    /// Links expired before it (and neither deleted nor disabled): their target, click rows
    /// and idempotency records go, a tombstone stays, and the change is put in the feed.
    ExpiredLinks(OffsetDateTime),
}

impl PruneCut {
    pub fn table(self) -> PruneTable {
        match self {
            PruneCut::IdempotencyKeys(_) => PruneTable::IdempotencyKeys,
            PruneCut::StatsBatches(_) => PruneTable::StatsBatches,
            PruneCut::LinkChanges(_) => PruneTable::LinkChanges,
            PruneCut::ClickDays(_) => PruneTable::ClickDays,
            PruneCut::ExpiredLinks(_) => PruneTable::ExpiredLinks,
        }
    }
}

/// What one chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// This many rows went (fewer than asked: nothing is left), the last of them at `reached`
    /// on the cut column: the next chunk starts there.
    Pruned {
        rows: u64,
        reached: Option<OffsetDateTime>,
    },
    /// Another instance holds the lock: nothing was done.
    Busy,
}

/// Where the first chunk of a pass starts: before every row.
pub const PRUNE_FROM_START: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

/// `ctid`s of at most `$2` rows before `$1` and from `$3` on, by the index on the cut column;
/// answers how many went and the last one's place.
const IDEMPOTENCY_CHUNK: &str = "WITH gone AS (DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY( \
     SELECT ctid FROM idempotency_keys WHERE created_at < $1 AND created_at >= $3 \
     ORDER BY created_at LIMIT $2)) RETURNING created_at) \
     SELECT count(*), max(created_at) FROM gone";
const BATCHES_CHUNK: &str = "WITH gone AS (DELETE FROM stats_batches WHERE ctid = ANY(ARRAY( \
     SELECT ctid FROM stats_batches WHERE applied_at < $1 AND applied_at >= $3 \
     ORDER BY applied_at LIMIT $2)) RETURNING applied_at) \
     SELECT count(*), max(applied_at) FROM gone";
const CHANGES_CHUNK: &str = "WITH gone AS (DELETE FROM link_changes WHERE ctid = ANY(ARRAY( \
     SELECT ctid FROM link_changes WHERE changed_at < $1 AND changed_at >= $3 \
     ORDER BY changed_at LIMIT $2)) RETURNING changed_at) \
     SELECT count(*), max(changed_at) FROM gone";
/// One statement: the rows deleted are added to their links' totals in the same snapshot, so
/// a link's totals are the same before and after.
const CLICK_DAYS_CHUNK: &str = "WITH gone AS ( \
       DELETE FROM link_clicks_daily WHERE ctid = ANY(ARRAY( \
         SELECT ctid FROM link_clicks_daily \
         WHERE day < $1 AND day >= ($3::timestamptz AT TIME ZONE 'UTC')::date \
         ORDER BY day LIMIT $2)) \
       RETURNING link_id, day, clicks, bot_clicks, last_click_at), \
     folded AS ( \
       INSERT INTO link_clicks_total (link_id, clicks, bot_clicks, last_click_at) \
       SELECT link_id, sum(clicks), sum(bot_clicks), max(last_click_at) FROM gone \
       GROUP BY link_id \
       ON CONFLICT (link_id) DO UPDATE SET \
         clicks = link_clicks_total.clicks + excluded.clicks, \
         bot_clicks = link_clicks_total.bot_clicks + excluded.bot_clicks, \
         last_click_at = greatest(link_clicks_total.last_click_at, excluded.last_click_at) \
       RETURNING 1) \
     SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM folded), \
       (SELECT max(day)::timestamp AT TIME ZONE 'UTC' FROM gone)";
/// The tombstone keeps the code (never issued again), the owner and the times; the version
/// moves and the feed gets the change, so every instance's tiers learn of it.
const EXPIRED_LINKS_CHUNK: &str = "WITH picked AS ( \
       SELECT id FROM links \
       WHERE expires_at < $1 AND expires_at >= $3 AND deleted_at IS NULL \
         AND disabled_at IS NULL \
       ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED), \
     emptied AS ( \
       UPDATE links SET target_url = '', deleted_at = now(), reuse_digest = NULL, \
         max_visits = NULL, visits_left = NULL, version = version + 1 \
       FROM picked WHERE links.id = picked.id \
       RETURNING links.id, links.code, links.version, links.expires_at), \
     clicks AS (DELETE FROM link_clicks_daily d USING emptied WHERE d.link_id = emptied.id \
       RETURNING 1), \
     totals AS (DELETE FROM link_clicks_total t USING emptied WHERE t.link_id = emptied.id \
       RETURNING 1), \
     records AS (DELETE FROM idempotency_keys k USING emptied WHERE k.link_id = emptied.id \
       RETURNING 1), \
     fed AS (INSERT INTO link_changes (link_id, code, version) \
       SELECT id, code, version FROM emptied RETURNING 1) \
     SELECT (SELECT count(*) FROM emptied), (SELECT count(*) FROM clicks), \
       (SELECT count(*) FROM totals), (SELECT count(*) FROM records), (SELECT count(*) FROM fed), \
       (SELECT max(expires_at) FROM emptied)";

impl Db {
    /// One chunk of at most `limit` rows of what `cut` names, from `from` on the cut column
    /// ([`PRUNE_FROM_START`], or where the chunk before it reached), under the prune lock.
    pub async fn prune_chunk(
        &self,
        cut: PruneCut,
        limit: i64,
        from: OffsetDateTime,
    ) -> Result<Chunk, StorageError> {
        self.bounded(DbOperation::Prune, async {
            let mut conn = pool::checkout(&self.background).await?;
            let tx = conn.client.transaction().await?;
            let locked: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PRUNE_LOCK_KEY])
                .await?
                .try_get(0)?;
            if !locked {
                return Ok(Chunk::Busy);
            }
            let (sql, before): (&str, &(dyn ToSql + Sync)) = match &cut {
                PruneCut::IdempotencyKeys(before) => (IDEMPOTENCY_CHUNK, before),
                PruneCut::StatsBatches(before) => (BATCHES_CHUNK, before),
                PruneCut::LinkChanges(before) => (CHANGES_CHUNK, before),
                PruneCut::ClickDays(before) => (CLICK_DAYS_CHUNK, before),
                PruneCut::ExpiredLinks(before) => (EXPIRED_LINKS_CHUNK, before),
            };
            // Each statement answers the rows it removed first and where it reached last.
            let row = tx.query_one(sql, &[before, &limit, &from]).await?;
            let rows = row.try_get::<_, i64>(0)? as u64;
            let reached = row.try_get::<_, Option<OffsetDateTime>>(row.len() - 1)?;
            tx.commit().await?;
            Ok(Chunk::Pruned { rows, reached })
        })
        .await
    }

    /// How long the oldest row `cut` would remove has been past its time, in seconds (0 when
    /// there is none): how far pruning is behind.
    pub async fn prune_overdue(&self, cut: PruneCut) -> Result<f64, StorageError> {
        self.bounded(DbOperation::Prune, async {
            let conn = pool::checkout(&self.background).await?;
            let (sql, at) = match cut {
                PruneCut::IdempotencyKeys(at) => (
                    "SELECT min(created_at) FROM idempotency_keys WHERE created_at < $1",
                    at,
                ),
                PruneCut::StatsBatches(at) => (
                    "SELECT min(applied_at) FROM stats_batches WHERE applied_at < $1",
                    at,
                ),
                PruneCut::LinkChanges(at) => (
                    "SELECT min(changed_at) FROM link_changes WHERE changed_at < $1",
                    at,
                ),
                PruneCut::ExpiredLinks(at) => (
                    "SELECT min(expires_at) FROM links WHERE expires_at < $1 \
                     AND deleted_at IS NULL AND disabled_at IS NULL",
                    at,
                ),
                PruneCut::ClickDays(day) => (
                    "SELECT min(day)::timestamp AT TIME ZONE 'UTC' FROM link_clicks_daily \
                     WHERE day < ($1 AT TIME ZONE 'UTC')::date",
                    day.midnight().assume_utc(),
                ),
            };
            let oldest: Option<OffsetDateTime> =
                conn.client.query_one(sql, &[&at]).await?.try_get(0)?;
            Ok(oldest.map_or(0.0, |oldest| (at - oldest).as_seconds_f64().max(0.0)))
        })
        .await
    }
}
