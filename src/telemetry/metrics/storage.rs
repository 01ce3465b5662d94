//! Storage's series: Redis commands sent and failed, storage calls made and failed.

use std::sync::Arc;

use ::metrics::Counter;

use super::registry::{Registry, noops};
use super::vocabulary::{DbCause, DbOperation, RedisCause, RedisCommand};

/// Redis commands, and those that failed.
#[derive(Clone)]
pub struct RedisMetrics {
    /// `[command]`.
    commands: Arc<[Counter]>,
    /// `[command][cause]`.
    errors: Arc<[Counter]>,
}

impl Default for RedisMetrics {
    fn default() -> Self {
        RedisMetrics {
            commands: noops(RedisCommand::COUNT),
            errors: noops(RedisCommand::COUNT * RedisCause::COUNT),
        }
    }
}

impl RedisMetrics {
    pub fn sent(&self, command: RedisCommand) {
        self.commands[command.index()].increment(1);
    }

    pub fn failed(&self, command: RedisCommand, cause: RedisCause) {
        self.errors[command.index() * RedisCause::COUNT + cause.index()].increment(1);
    }
}

/// Storage calls, and those that failed.
#[derive(Clone)]
pub struct DbMetrics {
    /// `[operation]`.
    calls: Arc<[Counter]>,
    /// `[operation][cause]`.
    errors: Arc<[Counter]>,
}

impl Default for DbMetrics {
    fn default() -> Self {
        DbMetrics {
            calls: noops(DbOperation::COUNT),
            errors: noops(DbOperation::COUNT * DbCause::COUNT),
        }
    }
}

impl DbMetrics {
    /// One call of `operation` made (whatever its outcome).
    pub fn called(&self, operation: DbOperation) {
        self.calls[operation.index()].increment(1);
    }

    pub fn failed(&self, operation: DbOperation, cause: DbCause) {
        self.errors[operation.index() * DbCause::COUNT + cause.index()].increment(1);
    }
}

impl RedisMetrics {
    pub(super) fn register(registry: &Registry) -> Self {
        RedisMetrics {
            commands: registry.counters_by::<RedisCommand>(
                "shortener_redis_commands_total",
                "Redis commands sent, by command (the failed ones too): the denominator of the \
                 error ratio.",
                "command",
            ),
            errors: registry.counters_by_pair::<RedisCommand, RedisCause>(
                "shortener_redis_errors_total",
                "Redis commands that failed, by command and cause.",
                ("command", "cause"),
            ),
        }
    }
}

impl DbMetrics {
    pub(super) fn register(registry: &Registry) -> Self {
        DbMetrics {
            calls: registry.counters_by::<DbOperation>(
                "shortener_db_operations_total",
                "Storage calls made, by operation (the failed ones too).",
                "operation",
            ),
            errors: registry.counters_by_pair::<DbOperation, DbCause>(
                "shortener_db_errors_total",
                "Storage calls that failed, by operation and cause.",
                ("operation", "cause"),
            ),
        }
    }
}
