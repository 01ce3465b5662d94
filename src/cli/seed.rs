//! `shortener seed --links N [--codes-out FILE]` (hidden: load tests only): links made as the
//! service makes them (ids from a leased worker id, codes from the code key) and written with
//! COPY, 100,000 to a transaction.
//!
//! The worker id is leased like an instance's, so seeding next to running instances never
//! issues an id one of them issues; the lease is released (with its high-water mark) at the end.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{KeySource, SeedArgs, command_logs};
use crate::ids::{CodeCodec, CodeKey, IdGenerator};
use crate::lease::{LeaseConfig, LeaseKeeper};
use crate::storage::{Db, PgTarget, PoolSettings, PoolSizes, SeedLink};
use crate::telemetry::{self, Chain};

pub fn run(runtime: &Runtime, args: &SeedArgs) -> ExitCode {
    let target = match args.primary.target() {
        Ok(target) => target,
        Err(reason) => return super::database_url_refused(&reason),
    };
    let (key, source) = match args.code_key.key() {
        Ok(key) => key,
        Err(reason) => {
            eprintln!("invalid configuration: SHORTENER_CODE_KEY: {reason}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    let _logs = telemetry::init(&command_logs());
    if source == KeySource::Development {
        tracing::warn!("SHORTENER_CODE_KEY is not set: seeding with the public development key");
    }
    let codes = match runtime.block_on(seed(&target, &key, args.links, &args.lease())) {
        Ok(codes) => codes,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "seeding failed");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.codes_out {
        // The runtime is idle here: a plain write is fine.
        let mut text = codes.join("\n");
        text.push('\n');
        if let Err(error) = std::fs::write(path, text) {
            tracing::error!(path = %path.display(), error = %Chain(&error), "cannot write the codes");
            return ExitCode::FAILURE;
        }
    }
    tracing::info!(links = codes.len(), "seeded");
    ExitCode::SUCCESS
}

/// Links written in one COPY.
const CHUNK: usize = 100_000;
/// Every target is this long (the memory measurements assume 60-byte URLs).
const URL_LEN: usize = 60;
const URL_PREFIX: &str = "https://example.com/seeded/";

/// Writes `count` links; answers their codes, in id order.
async fn seed(
    target: &PgTarget,
    key: &CodeKey,
    count: u64,
    lease: &LeaseConfig,
) -> anyhow::Result<Vec<String>> {
    let db = Db::connect_lazy(
        target,
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
    );
    let ids = Arc::new(IdGenerator::new());
    let mut lease = LeaseKeeper::new(db.clone(), Arc::clone(&ids), lease);
    lease.step().await;
    if ids.worker().is_none() {
        bail!("no worker id could be leased (is the database migrated and reachable?)");
    }
    let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
    tasks.spawn(lease.run(stop.clone()));
    tasks.close();
    let written = write_links(&db, &ids, key, count).await;
    stop.cancel();
    tasks.wait().await;
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
