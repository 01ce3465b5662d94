//! Worker-id leases: two running instances never hold the same Snowflake worker id.
//!
//! A lease is a row per worker id with a holder and an expiry. Taking one is a single
//! `INSERT … ON CONFLICT DO UPDATE … WHERE expired`, which Postgres serialises per row, so two
//! instances racing for the same id cannot both win. The holder renews well before expiry and
//! records the generator's high-water mark, so whoever takes the id next starts above it.

use crate::telemetry::metrics::DbOperation;
use std::ops::RangeInclusive;
use std::time::Duration;

use super::{Db, StorageError, pool};
use crate::ids::WorkerId;

/// A worker id held until `ttl` after the last renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub worker: WorkerId,
    /// The previous holder's last issued millisecond (since the id epoch).
    pub high_water_ms: u64,
}

const ACQUIRE_ATTEMPTS: usize = 5;

impl Db {
    /// Takes the lowest free (or expired) worker id in `range` for `holder`, or `None` when all
    /// are held by live instances. A lease `holder` already has (an attempt whose answer was
    /// lost) counts as free for it.
    pub async fn acquire_worker_id(
        &self,
        holder: &str,
        range: RangeInclusive<u16>,
        ttl: Duration,
    ) -> Result<Option<Lease>, StorageError> {
        self.bounded(DbOperation::Lease, async {
            let conn = pool::checkout_own(&self.lease, &self.background).await?;
            let (low, high) = (i32::from(*range.start()), i32::from(*range.end()));
            for _ in 0..ACQUIRE_ATTEMPTS {
                let row = conn
                    .client
                    .query_opt(
                        "INSERT INTO worker_leases (worker_id, holder, expires_at) \
                     SELECT g, $1, now() + make_interval(secs => $2::float8) \
                     FROM generate_series($3::int, $4::int) AS g \
                     WHERE NOT EXISTS (SELECT 1 FROM worker_leases l WHERE l.worker_id = g \
                                       AND l.expires_at > now() AND l.holder <> $1) \
                     ORDER BY g LIMIT 1 \
                     ON CONFLICT (worker_id) DO UPDATE \
                       SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
                       WHERE worker_leases.expires_at <= now() \
                          OR worker_leases.holder = EXCLUDED.holder \
                     RETURNING worker_id, high_water_ms",
                        &[&holder, &ttl.as_secs_f64(), &low, &high],
                    )
                    .await?;
                if let Some(row) = row {
                    let worker: i32 = row.try_get(0)?;
                    let high_water_ms: i64 = row.try_get(1)?;
                    let worker = u16::try_from(worker)
                        .ok()
                        .and_then(WorkerId::new)
                        .ok_or_else(|| {
                            StorageError::Unavailable("worker id out of range".into())
                        })?;
                    return Ok(Some(Lease {
                        worker,
                        high_water_ms: high_water_ms.max(0) as u64,
                    }));
                }
                // Either every id is held, or another instance took our candidate between the
                // NOT EXISTS and the INSERT: look again.
                let free: bool = conn
                    .client
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM generate_series($1::int, $2::int) AS g \
                     WHERE NOT EXISTS (SELECT 1 FROM worker_leases l \
                                       WHERE l.worker_id = g AND l.expires_at > now()))",
                        &[&low, &high],
                    )
                    .await?
                    .try_get(0)?;
                if !free {
                    return Ok(None);
                }
            }
            Ok(None)
        })
        .await
    }

    /// Extends `holder`'s lease on `worker` and records the high-water mark. `false` when the
    /// lease is no longer ours (it expired and was taken over).
    pub async fn renew_worker_id(
        &self,
        worker: WorkerId,
        holder: &str,
        high_water_ms: u64,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.bounded(DbOperation::Lease, async {
            let conn = pool::checkout_own(&self.lease, &self.background).await?;
            let updated = conn
            .client
            .execute(
                "UPDATE worker_leases SET expires_at = now() + make_interval(secs => $3::float8), \
                   high_water_ms = GREATEST(high_water_ms, $4) \
                 WHERE worker_id = $1 AND holder = $2 AND expires_at > now()",
                &[
                    &i32::from(worker.get()),
                    &holder,
                    &ttl.as_secs_f64(),
                    &(high_water_ms as i64),
                ],
            )
            .await?;
            Ok(updated == 1)
        })
        .await
    }

    /// Gives the lease up at shutdown, keeping the high-water mark for the next holder.
    pub async fn release_worker_id(
        &self,
        worker: WorkerId,
        holder: &str,
        high_water_ms: u64,
    ) -> Result<(), StorageError> {
        self.bounded(DbOperation::Lease, async {
            let conn = pool::checkout_own(&self.lease, &self.background).await?;
            conn.client
                .execute(
                    "UPDATE worker_leases SET expires_at = now(), \
                   high_water_ms = GREATEST(high_water_ms, $3) \
                 WHERE worker_id = $1 AND holder = $2",
                    &[&i32::from(worker.get()), &holder, &(high_water_ms as i64)],
                )
                .await?;
            Ok(())
        })
        .await
    }
}
