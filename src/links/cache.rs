//! The in-process tier: a moka cache of resolved links, and a smaller one of codes known to
//! name no link.
//!
//! Positive entries live at most `ttl`, which bounds how long a link disabled in the
//! database keeps being served by an instance that cached it. Gone links (expired or
//! disabled) stay cached and answer 410 from memory. Negative entries live at most
//! `negative_ttl`, so scanners of unknown codes cost one lookup per code per window, and
//! another instance's new alias is seen at most that late. A local create drops its code's
//! negative entry at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;

use super::ResolvedLink;

/// The negative cache holds at most this share of the positive cache's capacity.
const NEGATIVE_SHARE_DIVISOR: u64 = 10;

/// Sizes and lifetimes of the cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Most links held (`SHORTENER_CACHE_CAPACITY`).
    pub capacity: u64,
    /// Longest a link is served from memory before it is read again (`SHORTENER_CACHE_TTL`).
    pub ttl: Duration,
    /// Longest a code is remembered as unknown (`SHORTENER_NEGATIVE_TTL`).
    pub negative_ttl: Duration,
}

/// Both caches, shared by the resolver (which fills them) and the creator (which drops
/// negative entries and fills in what it created).
pub struct LinkCache {
    pub(super) found: Cache<Box<str>, Arc<ResolvedLink>>,
    pub(super) absent: Cache<Box<str>, ()>,
    /// Counts local creates. A lookup records a code as absent only if no create happened
    /// while it ran, so a lookup that began just before a create cannot hide the new link.
    creates: AtomicU64,
}

impl LinkCache {
    pub fn new(settings: CacheSettings) -> Self {
        LinkCache {
            found: Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.ttl)
                .build(),
            absent: Cache::builder()
                .max_capacity(Self::negative_capacity(settings))
                .time_to_live(settings.negative_ttl)
                .build(),
            creates: AtomicU64::new(0),
        }
    }

    /// Number of links held, after moka's pending bookkeeping has run (it counts lazily).
    pub async fn entry_count_now(&self) -> u64 {
        self.found.run_pending_tasks().await;
        self.found.entry_count()
    }

    /// Codes remembered as unknown (moka's count, which lags a little behind).
    pub fn unknown_entries(&self) -> u64 {
        self.absent.entry_count()
    }

    /// Capacities of the caches `settings` make: links, unknown codes.
    pub fn capacities(settings: CacheSettings) -> [u64; 2] {
        [settings.capacity, Self::negative_capacity(settings)]
    }

    fn negative_capacity(settings: CacheSettings) -> u64 {
        (settings.capacity / NEGATIVE_SHARE_DIVISOR).max(1)
    }

    /// Puts `link` in the cache under `code` (the creator after a create; benchmarks and
    /// warm-up tools).
    pub async fn insert(&self, code: &str, link: Arc<ResolvedLink>) {
        self.found.insert(Box::from(code), link).await;
    }

    /// A create of `code` committed here: forget that it was unknown, and serve it from memory.
    pub(super) async fn created(&self, code: &str, link: Option<Arc<ResolvedLink>>) {
        self.creates.fetch_add(1, Ordering::AcqRel);
        self.absent.invalidate(code).await;
        if let Some(link) = link {
            self.insert(code, link).await;
        }
    }

    /// A token to hand back to [`LinkCache::remember_absent`].
    pub(super) fn creates_so_far(&self) -> u64 {
        self.creates.load(Ordering::Acquire)
    }

    /// Records `code` as unknown, unless a local create happened since `creates_before`.
    /// Checked after the insert: a create that lands between a check and the insert would
    /// otherwise be hidden for a whole negative TTL.
    pub(super) async fn remember_absent(&self, code: &str, creates_before: u64) {
        if self.creates_so_far() != creates_before {
            return;
        }
        self.absent.insert(Box::from(code), ()).await;
        if self.creates_so_far() != creates_before {
            self.absent.invalidate(code).await;
        }
    }
}
