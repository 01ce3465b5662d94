//! What is kept, and for how long: daily click rows, expired links, and how often the pruner
//! deletes what is past its time.

use clap::Args;

use super::parse::{self, ConfigErrors};
use crate::links::RetentionSettings;

#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Days of daily click rows kept, e.g. 400d, or `off` to keep them for ever. Older rows are
    /// folded into one totals row per link, so a link's totals never shrink.
    #[arg(long, env = "SHORTENER_STATS_RETENTION", default_value = "400d")]
    pub stats_retention: String,
    /// Days a link stays whole after it expired, e.g. 90d, or `off` (the default) to keep
    /// expired links for ever. Past it, the link loses its target and its rows but keeps a
    /// tombstone: it answers 410 and its code is never issued again. Disabled links are not
    /// taken.
    #[arg(long, env = "SHORTENER_LINK_RETENTION", default_value = "off")]
    pub link_retention: String,
    /// How often one instance of the fleet deletes what is past its time (in chunks, under an
    /// advisory lock), e.g. 10m.
    #[arg(long, env = "SHORTENER_PRUNE_INTERVAL", default_value = "10m")]
    pub prune_interval: String,
}

/// Fewest days of daily rows kept: a click batch retried late still finds its day's row.
const MIN_STATS_DAYS: u32 = 2;

impl RetentionArgs {
    pub(super) fn parse(&self, errors: &mut ConfigErrors) -> Option<RetentionSettings> {
        let stats = errors.take(
            "SHORTENER_STATS_RETENTION",
            days(&self.stats_retention, MIN_STATS_DAYS),
        );
        let links = errors.take("SHORTENER_LINK_RETENTION", days(&self.link_retention, 1));
        let every = errors.take(
            "SHORTENER_PRUNE_INTERVAL",
            parse::duration(&self.prune_interval),
        );
        Some(RetentionSettings {
            stats_days: stats?,
            link_days: links?,
            every: every?,
        })
    }
}

/// Longest retention taken: a century is surely a typo.
const MAX_DAYS: u32 = 36_500;

/// `400d` (a whole number of days, at least `least`), or `off` (`None`: kept for ever).
fn days(raw: &str, least: u32) -> Result<Option<u32>, String> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let days: u32 = raw
        .strip_suffix('d')
        .and_then(|number| number.parse().ok())
        .ok_or_else(|| format!("'{raw}' is not a number of days like 90d, nor off"))?;
    if !(least..=MAX_DAYS).contains(&days) {
        return Err(format!("'{raw}' must be from {least}d to {MAX_DAYS}d"));
    }
    Ok(Some(days))
}

#[cfg(test)]
mod tests {
    use super::days;

    #[test]
    fn days_are_whole_days_or_off() {
        assert_eq!(days("400d", 2), Ok(Some(400)));
        assert_eq!(days(" off ", 2), Ok(None));
        assert_eq!(days("OFF", 2), Ok(None));
        for refused in ["", "400", "1d", "0d", "-3d", "2.5d", "36501d", "3w"] {
            assert!(days(refused, 2).is_err(), "{refused}");
        }
    }
}
