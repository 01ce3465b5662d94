//! Click statistics: batched, effectively-once upserts and the daily series.

use crate::telemetry::metrics::DbOperation;
use time::{Date, OffsetDateTime};

use super::{Db, StorageError, pool};

/// One batch of click tallies in columns, ready for `UNNEST`: one entry per (link, day).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClickRows {
    pub link_ids: Vec<i64>,
    pub days: Vec<Date>,
    pub clicks: Vec<i64>,
    pub bot_clicks: Vec<i64>,
    pub last_click_at: Vec<OffsetDateTime>,
}

impl ClickRows {
    pub fn len(&self) -> usize {
        self.link_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.link_ids.is_empty()
    }
}

/// One day of one link's statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyClicks {
    pub day: Date,
    pub clicks: i64,
    pub bot_clicks: i64,
    pub last_click_at: OffsetDateTime,
}

/// One link's clicks as stored: the daily rows kept, and what the days pruned added up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredClicks {
    pub days: Vec<DailyClicks>,
    /// `(clicks, bot_clicks, last_click_at)` of the days pruned, if any were.
    pub pruned: Option<(i64, i64, OffsetDateTime)>,
}

impl StoredClicks {
    /// Clicks by people over the link's life.
    pub fn clicks(&self) -> i64 {
        let pruned = self.pruned.map_or(0, |(clicks, _, _)| clicks);
        pruned + self.days.iter().map(|day| day.clicks).sum::<i64>()
    }
}

impl Db {
    /// Adds `rows` to the daily tallies unless `batch_id` was applied before. The batch id is
    /// recorded in the same transaction, so a retry after a lost COMMIT acknowledgement counts
    /// nothing twice. Answers whether this call applied the batch.
    pub async fn apply_click_batch(
        &self,
        batch_id: i64,
        rows: &ClickRows,
    ) -> Result<bool, StorageError> {
        self.bounded(DbOperation::Clicks, async {
            let mut conn = pool::checkout(&self.background).await?;
            let statements = conn.background()?;
            let (claim, upsert) = (
                statements.claim_batch.clone(),
                statements.upsert_clicks.clone(),
            );
            let tx = conn.client.transaction().await?;
            if tx.execute(&claim, &[&batch_id]).await? == 0 {
                tx.commit().await?;
                return Ok(false);
            }
            tx.execute(
                &upsert,
                &[
                    &rows.link_ids,
                    &rows.days,
                    &rows.clicks,
                    &rows.bot_clicks,
                    &rows.last_click_at,
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Every day with clicks for `link_id`, oldest first, read from the primary (where the
    /// flusher writes) so the lag stays within one flush interval.
    pub async fn daily_clicks(&self, link_id: i64) -> Result<StoredClicks, StorageError> {
        self.bounded(DbOperation::Stats, async {
            let conn = pool::checkout(&self.read).await?;
            let rows = conn
                .client
                .query(&conn.read()?.daily_clicks, &[&link_id])
                .await?;
            let mut clicks = StoredClicks::default();
            for row in &rows {
                let (count, bots, last) = (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
                match row.try_get::<_, Option<Date>>(0)? {
                    Some(day) => clicks.days.push(DailyClicks {
                        day,
                        clicks: count,
                        bot_clicks: bots,
                        last_click_at: last,
                    }),
                    None => clicks.pruned = Some((count, bots, last)),
                }
            }
            Ok(clicks)
        })
        .await
    }
}
