//! Click statistics: how often the tallies kept in memory are written to Postgres.

use clap::Args;

use super::parse::{self, ConfigErrors};
use crate::clicks::FlushSettings;

#[derive(Debug, Args)]
pub struct ClickArgs {
    /// How often click tallies are written to Postgres, e.g. 1s or 250ms.
    #[arg(long, env = "SHORTENER_STATS_FLUSH_INTERVAL", default_value = "1s")]
    pub stats_flush_interval: String,
}

impl ClickArgs {
    pub(super) fn parse(&self, errors: &mut ConfigErrors) -> Option<FlushSettings> {
        let interval = errors.take(
            "SHORTENER_STATS_FLUSH_INTERVAL",
            parse::duration(&self.stats_flush_interval),
        );
        Some(FlushSettings::every(interval?))
    }
}
