//! The links of an owner (or every link), newest first, a page at a time, with their clicks.

use std::collections::HashMap;

use super::links::{LINK_COLUMNS, LinkRecord};
use super::{Db, StorageError, pool};
use crate::domain::KeyId;
use crate::telemetry::metrics::DbOperation;

/// A link of a listing, with its clicks by people (every day together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedLink {
    pub link: LinkRecord,
    pub clicks: i64,
}

impl Db {
    /// Links not deleted, owned by `owner` (every link for `None`), with ids below `before`,
    /// newest first, at most `limit`; read on the primary.
    pub async fn list_links(
        &self,
        owner: Option<KeyId>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ListedLink>, StorageError> {
        self.bounded(DbOperation::List, async {
            let conn = pool::checkout(&self.read).await?;
            let rows = conn
                .client
                .query(
                    &format!(
                        "SELECT {LINK_COLUMNS}, \
                           coalesce((SELECT sum(d.clicks) FROM link_clicks_daily d \
                                     WHERE d.link_id = links.id), 0)::bigint \
                           + coalesce((SELECT t.clicks FROM link_clicks_total t \
                                       WHERE t.link_id = links.id), 0) \
                         FROM links WHERE deleted_at IS NULL \
                           AND ($1::bigint IS NULL OR owner_key_id = $1) \
                           AND ($2::bigint IS NULL OR id < $2) \
                         ORDER BY id DESC LIMIT $3"
                    ),
                    &[&owner.map(|owner| owner.0), &before, &limit],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(ListedLink {
                        link: LinkRecord::from_row(row)?,
                        clicks: row.try_get(11)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// For each of `digests` that has one, the newest live link with it (a reusable link of
    /// one owner and one URL), with its clicks.
    pub async fn reusable_links(
        &self,
        digests: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], ListedLink>, StorageError> {
        if digests.is_empty() {
            return Ok(HashMap::new());
        }
        self.bounded(DbOperation::Create, async {
            let conn = pool::checkout(&self.write).await?;
            let asked: Vec<&[u8]> = digests.iter().map(|digest| digest.as_slice()).collect();
            let rows = conn
                .client
                .query(
                    &format!(
                        "SELECT DISTINCT ON (reuse_digest) {LINK_COLUMNS}, \
                           coalesce((SELECT sum(d.clicks) FROM link_clicks_daily d \
                                     WHERE d.link_id = links.id), 0)::bigint \
                           + coalesce((SELECT t.clicks FROM link_clicks_total t \
                                       WHERE t.link_id = links.id), 0), reuse_digest \
                         FROM links WHERE reuse_digest = ANY($1::bytea[]) \
                           AND deleted_at IS NULL AND disabled_at IS NULL \
                         ORDER BY reuse_digest, id DESC"
                    ),
                    &[&asked],
                )
                .await?;
            let mut found = HashMap::with_capacity(rows.len());
            for row in &rows {
                let digest: Vec<u8> = row.try_get(12)?;
                let Ok(digest) = <[u8; 32]>::try_from(digest.as_slice()) else {
                    continue;
                };
                let listed = ListedLink {
                    link: LinkRecord::from_row(row)?,
                    clicks: row.try_get(11)?,
                };
                found.insert(digest, listed);
            }
            Ok(found)
        })
        .await
    }
}
