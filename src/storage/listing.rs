//! The links of an owner (or every link), newest first, a page at a time, with their clicks.

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

    /// The newest live link with `digest` (a reusable link of one owner and one URL).
    pub async fn reusable_link(&self, digest: &[u8]) -> Result<Option<LinkRecord>, StorageError> {
        self.bounded(DbOperation::Create, async {
            let conn = pool::checkout(&self.write).await?;
            let row = conn
                .client
                .query_opt(
                    &format!(
                        "SELECT {LINK_COLUMNS} FROM links WHERE reuse_digest = $1 \
                         AND deleted_at IS NULL AND disabled_at IS NULL \
                         ORDER BY id DESC LIMIT 1"
                    ),
                    &[&digest],
                )
                .await?;
            Ok(row.as_ref().map(LinkRecord::from_row).transpose()?)
        })
        .await
    }
}
