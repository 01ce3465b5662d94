//! The in-process cache: how many links, and how long an entry (found or unknown) is trusted.

use clap::Args;

use super::parse::{self, ConfigErrors};
use crate::links::CacheSettings;

#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Most links held in this instance's memory.
    #[arg(long, env = "SHORTENER_CACHE_CAPACITY", default_value = "1000000")]
    pub cache_capacity: String,
    /// Longest a link is served from memory before it is read again: bounds how long a link
    /// disabled in the database keeps redirecting on an instance that cached it.
    #[arg(long, env = "SHORTENER_CACHE_TTL", default_value = "60s")]
    pub cache_ttl: String,
    /// Longest an unknown code is remembered as unknown (negative cache; a tenth of the capacity).
    #[arg(long, env = "SHORTENER_NEGATIVE_TTL", default_value = "1s")]
    pub negative_ttl: String,
}

impl CacheArgs {
    pub(super) fn parse(&self, errors: &mut ConfigErrors) -> Option<CacheSettings> {
        let capacity = errors.take(
            "SHORTENER_CACHE_CAPACITY",
            parse::positive::<u64>(&self.cache_capacity),
        );
        let ttl = errors.take("SHORTENER_CACHE_TTL", parse::duration(&self.cache_ttl));
        let negative_ttl = errors.take(
            "SHORTENER_NEGATIVE_TTL",
            parse::duration(&self.negative_ttl),
        );
        Some(CacheSettings {
            capacity: capacity?,
            ttl: ttl?,
            negative_ttl: negative_ttl?,
        })
    }
}
