//! Click statistics: how often the tallies kept in memory are written to Postgres, and how many
//! unwritten rows are kept while it cannot take them.

use clap::Args;

use super::parse::{self, ConfigErrors};
use crate::clicks::FlushSettings;

#[derive(Debug, Args)]
pub struct ClickArgs {
    /// How often click tallies are written to Postgres, e.g. 1s or 250ms.
    #[arg(long, env = "SHORTENER_STATS_FLUSH_INTERVAL", default_value = "1s")]
    pub stats_flush_interval: String,
    /// Most (link, day) click rows kept unwritten while Postgres is away; past it the oldest
    /// batches are dropped and counted (about 100 bytes a row).
    #[arg(long, env = "SHORTENER_STATS_PENDING_ROWS", default_value = "1000000")]
    pub stats_pending_rows: String,
}

impl ClickArgs {
    pub(super) fn parse(&self, errors: &mut ConfigErrors) -> Option<FlushSettings> {
        let interval = errors.take(
            "SHORTENER_STATS_FLUSH_INTERVAL",
            parse::duration(&self.stats_flush_interval),
        );
        let max_pending_rows = errors.take(
            "SHORTENER_STATS_PENDING_ROWS",
            parse::positive(&self.stats_pending_rows),
        );
        Some(FlushSettings {
            interval: interval?,
            max_pending_rows: max_pending_rows?,
        })
    }
}
