//! `shortener disable CODE|--host HOST [--reason TEXT] [--by NAME]` / `enable …`: a takedown
//! (of one link, or of every link to a host), recorded with who and why, made the way an edit
//! through the API is, one link at a time: one transaction that moves the link's version, records the change in the feed and the
//! audit log; then the new version written into Redis (where an older one never replaces it)
//! and announced to every instance, which serve the change within a second (within
//! `SHORTENER_CACHE_TTL` for one that hears neither). Exit 1 when no link has the code; a
//! host with no link to change is not an error.

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
    let (disabled, action) = match state {
        LinkState::Disabled => (true, "disable"),
        LinkState::Enabled => (false, "enable"),
    };
    let audit = Audit {
        actor: match &args.by {
            Some(by) => format!("cli:{by}"),
            None => "cli".into(),
        },
        action,
        detail: match (&args.host, &args.reason) {
            (Some(host), Some(reason)) => format!("host={host}; reason: {reason}"),
            (None, Some(reason)) => format!("reason: {reason}"),
            (_, None) => String::new(),
        },
    };
    let edit = LinkEdit {
        disabled: Some(disabled),
        ..LinkEdit::default()
    };
    let codes = match (&args.code, &args.host) {
        (Some(code), _) => vec![code.clone()],
        (None, Some(host)) => {
            match runtime.block_on(storage::codes_for_host(&target, host, disabled)) {
                Ok(codes) => {
                    tracing::info!(%host, links = codes.len(), ?state, "links to the host found");
                    codes
                }
                Err(error) => {
                    tracing::error!(error = %Chain(&error), "cannot find the links to the host");
                    return ExitCode::FAILURE;
                }
            }
        }
        (None, None) => unreachable!("clap requires a code or --host"),
    };
    let redis = match args.redis.parse() {
        Ok(redis) => redis,
        Err(error) => {
            tracing::warn!(%error, "redis not configured correctly; instances read the changes from the feed");
            None
        }
    };
    let mut changed = Vec::with_capacity(codes.len());
    for code in &codes {
        match runtime.block_on(storage::change_link_once(&target, code, &edit, &audit)) {
            Ok(Some((link, seq))) => {
                tracing::info!(%code, ?state, version = link.version, "link updated; every instance serves the change within a second");
                changed.push((link, seq));
            }
            Ok(None) => {
                tracing::error!(%code, "no link has this code");
                return ExitCode::FAILURE;
            }
            Err(error) => {
                tracing::error!(%code, error = %Chain(&error), "cannot update the link");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(redis) = redis
        && !changed.is_empty()
    {
        runtime.block_on(announce_changes(&redis, &changed));
    }
    ExitCode::SUCCESS
}

/// Writes the changes into Redis and announces them; a Redis that does not answer leaves the
/// instances to read them from the feed (and to write them into Redis once they hear it again).
async fn announce_changes(redis: &RedisConfig, changed: &[(LinkRecord, i64)]) {
    let tasks = TaskTracker::new();
    match RedisStore::connect(&redis.settings, tasks.clone()) {
        Err(error) => {
            tracing::warn!(error = %Chain(&error), "cannot reach redis; instances read the changes from the feed");
        }
        Ok(store) => {
            if store.wait_connected(REDIS_WAIT).await {
                let remote = RemoteCache::new(store.clone(), redis.ttl, tasks.clone());
                for (link, seq) in changed {
                    announce(Some(&remote), Some(&store), link, *seq).await;
                }
            } else {
                tracing::warn!("redis did not answer; instances read the changes from the feed");
            }
            store.quit().await;
        }
    }
    tasks.close();
    tasks.wait().await;
}
