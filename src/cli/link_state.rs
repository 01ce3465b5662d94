//! `shortener disable CODE` / `enable CODE`: a takedown, made the way an edit through the API
//! is: one transaction that moves the link's version, records the change in the feed and the
//! audit log; then the new version written into Redis (where an older one never replaces it)
//! and announced to every instance, which serve the change within a second (within
//! `SHORTENER_CACHE_TTL` for one that hears neither). Exit 1 when no link has the code.

use std::process::ExitCode;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_util::task::TaskTracker;

use crate::config::{LinkArgs, RedisConfig, command_logs};
use crate::links::{RemoteCache, announce};
use crate::storage::{self, Audit, LinkEdit, LinkRecord, RedisStore};
use crate::telemetry::{self, Chain};

/// How long the command waits for Redis.
const REDIS_WAIT: Duration = Duration::from_secs(2);

/// What the command makes of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Served (clears `disabled_at`).
    Enabled,
    /// Answered 410 (sets `disabled_at` to now, unless it is already set).
    Disabled,
}

pub fn run(runtime: &Runtime, args: &LinkArgs, state: LinkState) -> ExitCode {
    let target = match args.primary.target() {
        Ok(target) => target,
        Err(reason) => return super::database_url_refused(&reason),
    };
    let _logs = telemetry::init(&command_logs());
    let (edit, action) = match state {
        LinkState::Disabled => (true, "disable"),
        LinkState::Enabled => (false, "enable"),
    };
    let audit = Audit {
        actor: "cli".into(),
        action,
        detail: String::new(),
    };
    let edit = LinkEdit {
        disabled: Some(edit),
        ..LinkEdit::default()
    };
    let changed = runtime.block_on(storage::change_link_once(
        &target, &args.code, &edit, &audit,
    ));
    match changed {
        Ok(Some((link, seq))) => {
            match args.redis.parse() {
                Ok(Some(redis)) => runtime.block_on(announce_change(&redis, &link, seq)),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "redis not configured correctly; instances read the change from the feed");
                }
            }
            tracing::info!(code = %args.code, ?state, version = link.version, "link updated; every instance serves the change within a second");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            tracing::error!(code = %args.code, "no link has this code");
            ExitCode::FAILURE
        }
        Err(error) => {
            tracing::error!(error = %Chain(&error), "cannot update the link");
            ExitCode::FAILURE
        }
    }
}

/// Writes the change into Redis and announces it; a Redis that does not answer leaves the
/// instances to read it from the feed (and to write it into Redis once they hear it again).
async fn announce_change(redis: &RedisConfig, link: &LinkRecord, seq: i64) {
    let tasks = TaskTracker::new();
    match RedisStore::connect(&redis.settings, tasks.clone()) {
        Err(error) => {
            tracing::warn!(error = %Chain(&error), "cannot reach redis; instances read the change from the feed");
        }
        Ok(store) => {
            if store.wait_connected(REDIS_WAIT).await {
                let remote = RemoteCache::new(store.clone(), redis.ttl, tasks.clone());
                announce(Some(&remote), Some(&store), link, seq).await;
            } else {
                tracing::warn!("redis did not answer; instances read the change from the feed");
            }
            store.quit().await;
        }
    }
    tasks.close();
    tasks.wait().await;
}
