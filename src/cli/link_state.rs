//! `shortener disable CODE` / `enable CODE`: one link's state changed in Postgres, and its
//! Redis key deleted so instances that miss in memory read the new state. Exit 1 when no link
//! has the code.

use std::process::ExitCode;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_util::task::TaskTracker;

use crate::config::{LinkArgs, RedisConfig, command_logs};
use crate::storage::{self, LinkState, RedisStore};
use crate::telemetry::{self, Chain};

/// How long the command waits for Redis.
const REDIS_WAIT: Duration = Duration::from_secs(2);

pub fn run(runtime: &Runtime, args: &LinkArgs, state: LinkState) -> ExitCode {
    let target = match args.primary.target() {
        Ok(target) => target,
        Err(reason) => return super::database_url_refused(&reason),
    };
    let _logs = telemetry::init(&command_logs());
    let changed = runtime.block_on(storage::set_link_state(&target, &args.code, state));
    match changed {
        Ok(true) => {
            match args.redis.parse() {
                Ok(Some(redis)) => runtime.block_on(forget_in_redis(&redis, &args.code)),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "redis not configured correctly; its key is left to expire");
                }
            }
            tracing::info!(code = %args.code, ?state, "link updated; instances that cached it follow within SHORTENER_CACHE_TTL");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            tracing::error!(code = %args.code, "no link has this code");
            ExitCode::FAILURE
        }
        Err(error) => {
            tracing::error!(error = %Chain(&error), "cannot update the link");
            ExitCode::FAILURE
        }
    }
}

/// Deletes the link's Redis key; a Redis that does not answer leaves it to expire.
async fn forget_in_redis(redis: &RedisConfig, code: &str) {
    let tasks = TaskTracker::new();
    let deleted = match RedisStore::connect(&redis.settings, tasks.clone()) {
        Err(error) => Err(error.to_string()),
        Ok(store) => {
            let deleted = if store.wait_connected(REDIS_WAIT).await {
                store
                    .delete_link(code)
                    .await
                    .map_err(|error| Chain(&error).to_string())
            } else {
                Err("redis did not answer".to_owned())
            };
            store.quit().await;
            deleted
        }
    };
    tasks.close();
    tasks.wait().await;
    if let Err(error) = deleted {
        tracing::warn!(
            code,
            %error,
            "could not delete the link's Redis key; it expires within SHORTENER_REDIS_TTL"
        );
    }
}
