//! `shortener seed`: links for load tests, made as the service makes them (ids from a leased
//! worker id, codes from the code key) and written with COPY, 100,000 to a transaction.
//!
//! The worker id is leased like an instance's, so seeding next to running instances never
//! issues an id one of them issues; the lease is released (with its high-water mark) at the end.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::ids::{CodeCodec, CodeKey, IdGenerator};
use crate::lease::{LeaseKeeper, LeaseSettings};
use crate::storage::{Db, PoolSettings, PoolSizes, SeedLink};

/// Links written in one COPY.
const CHUNK: usize = 100_000;
/// Every target is this long (the memory measurements assume 60-byte URLs).
const URL_LEN: usize = 60;
const URL_PREFIX: &str = "https://example.com/seeded/";

/// Writes `count` links; answers their codes, in id order.
pub async fn seed(database_url: &str, key: &CodeKey, count: u64) -> anyhow::Result<Vec<String>> {
    let db = Db::connect_lazy(
        database_url,
        &[],
        &PoolSettings {
            sizes: PoolSizes {
                read: 1,
                write: 1,
                background: 1,
            },
            acquire_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(600),
        },
    )?;
    let ids = Arc::new(IdGenerator::new());
    let mut lease = LeaseKeeper::new(db.clone(), Arc::clone(&ids), None, LeaseSettings::default());
    lease.step().await;
    if ids.worker().is_none() {
        bail!("no worker id could be leased (is the database migrated and reachable?)");
    }
    let stop = CancellationToken::new();
    let keeper = tokio::spawn(lease.run(stop.clone()));
    let written = write_links(&db, &ids, key, count).await;
    stop.cancel();
    let _ = keeper.await;
    written
}

async fn write_links(
    db: &Db,
    ids: &IdGenerator,
    key: &CodeKey,
    count: u64,
) -> anyhow::Result<Vec<String>> {
    let codec = CodeCodec::new(key);
    let mut codes = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut chunk = Vec::with_capacity(CHUNK);
    for n in 0..count {
        let id = ids
            .next_id()
            .context("the worker-id lease was lost while seeding")?;
        let code = String::from_utf8_lossy(&codec.encode(id)).into_owned();
        codes.push(code.clone());
        chunk.push(SeedLink {
            id,
            code,
            target_url: format!(
                "{URL_PREFIX}{n:0>width$}",
                width = URL_LEN - URL_PREFIX.len()
            ),
        });
        if chunk.len() == CHUNK || n + 1 == count {
            db.copy_links(&chunk)
                .await
                .context("COPY of a chunk of links failed")?;
            tracing::info!(written = n + 1, of = count, "seeding");
            chunk.clear();
        }
    }
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seeded_target_is_sixty_bytes() {
        let url = format!(
            "{URL_PREFIX}{:0>width$}",
            7,
            width = URL_LEN - URL_PREFIX.len()
        );
        assert_eq!(url.len(), URL_LEN);
        assert!(url.ends_with("000007"));
    }
}
