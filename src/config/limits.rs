//! Per-client rate limits: one `N/s,burst=M` (or `off`) per route, and how many clients each
//! limit keeps state for.

use clap::Args;

use super::parse::{self, ConfigErrors};
use crate::limits::{LimitSettings, RateSpec};

#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Creates per client (IP, or IPv6 /64): `N/s,burst=M` (also /m, /h), or `off`.
    #[arg(
        long,
        env = "SHORTENER_RATE_LIMIT_CREATE",
        default_value = "20/s,burst=40"
    )]
    pub rate_limit_create: String,
    /// Redirects per client, 404s included; kept in this instance's memory.
    #[arg(
        long,
        env = "SHORTENER_RATE_LIMIT_REDIRECT",
        default_value = "1000/s,burst=2000"
    )]
    pub rate_limit_redirect: String,
    /// Stats requests per client.
    #[arg(
        long,
        env = "SHORTENER_RATE_LIMIT_STATS",
        default_value = "50/s,burst=100"
    )]
    pub rate_limit_stats: String,
    /// Most clients each limit keeps state for; an evicted client starts with a full burst.
    #[arg(long, env = "SHORTENER_RATE_LIMIT_MAX_KEYS", default_value = "100000")]
    pub rate_limit_max_keys: String,
}

impl LimitArgs {
    pub(super) fn parse(&self, errors: &mut ConfigErrors) -> Option<LimitSettings> {
        let create = errors.take(
            "SHORTENER_RATE_LIMIT_CREATE",
            limit(&self.rate_limit_create),
        );
        let redirect = errors.take(
            "SHORTENER_RATE_LIMIT_REDIRECT",
            limit(&self.rate_limit_redirect),
        );
        let stats = errors.take("SHORTENER_RATE_LIMIT_STATS", limit(&self.rate_limit_stats));
        let max_keys = errors.take(
            "SHORTENER_RATE_LIMIT_MAX_KEYS",
            parse::positive::<u64>(&self.rate_limit_max_keys),
        );
        Some(LimitSettings {
            create: create?,
            redirect: redirect?,
            stats: stats?,
            max_keys: max_keys?,
        })
    }
}

/// A limit, or `None` for `off`.
fn limit(raw: &str) -> Result<Option<RateSpec>, String> {
    if raw.trim().eq_ignore_ascii_case("off") {
        Ok(None)
    } else {
        raw.trim().parse().map(Some)
    }
}
