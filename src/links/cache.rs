//! The in-process tier: a moka cache of resolved links, and a smaller one of codes known to
//! name no link.
//!
//! Positive entries live at most `ttl`, which bounds how long a change missed by this instance
//! keeps being served. Gone links (expired, disabled, deleted) stay cached and answer 410 from
//! memory. Negative entries live at most `negative_ttl`, so scanners of unknown codes cost one
//! lookup per code per window, and another instance's new alias is seen at most that late. A
//! local create drops its code's negative entry at once.
//!
//! Changes are versioned. A change heard from another instance ([`LinkCache::changed`])
//! records the code's new version and drops an older cached one; a lookup that read an older
//! version than one recorded (from a Redis or a replica not yet up to date) does not keep it.
//! While this instance cannot hear changes ([`LinkCache::stop_trusting`]), it drops what it
//! holds and caches new links only for [`UNTRUSTED_TTL`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use moka::ops::compute::Op;

use super::ResolvedLink;

/// The negative cache holds at most this share of the positive cache's capacity.
const NEGATIVE_SHARE_DIVISOR: u64 = 10;
/// How long a link is cached while changes cannot be heard.
pub const UNTRUSTED_TTL: Duration = Duration::from_secs(1);
/// How long the version of a changed code is remembered: longer than a link is kept in any
/// tier that could still hold an older one (this cache, or Redis after a missed change).
const CHANGES_REMEMBERED_FOR: Duration = Duration::from_secs(3600);
/// Changed codes remembered at once.
const MAX_CHANGES_REMEMBERED: u64 = 1_000_000;

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

/// Both caches, shared by the resolver (which fills them), the creator (which drops negative
/// entries and fills in what it created) and the change feed (which drops what changed).
pub struct LinkCache {
    pub(super) found: Cache<Box<str>, Arc<ResolvedLink>>,
    pub(super) absent: Cache<Box<str>, ()>,
    /// What is cached while changes cannot be heard.
    untrusted: Cache<Box<str>, Arc<ResolvedLink>>,
    /// Whether changes can be heard now.
    trusted: AtomicBool,
    /// The newest version heard of each recently changed code.
    versions: Cache<Box<str>, i64>,
    /// Counts local creates. A lookup records a code as absent only if no create happened
    /// while it ran, so a lookup that began just before a create cannot hide the new link.
    creates: AtomicU64,
    /// Counts changes heard: a lookup that ran while one was heard checks what it read.
    changes: AtomicU64,
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
            untrusted: Cache::builder()
                .max_capacity(Self::negative_capacity(settings))
                .time_to_live(UNTRUSTED_TTL)
                .build(),
            trusted: AtomicBool::new(true),
            versions: Cache::builder()
                .max_capacity(MAX_CHANGES_REMEMBERED)
                .time_to_live(CHANGES_REMEMBERED_FOR)
                .build(),
            creates: AtomicU64::new(0),
            changes: AtomicU64::new(0),
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

    /// Puts `link` in the cache under `code` (benchmarks and warm-up tools).
    pub async fn insert(&self, code: &str, link: Arc<ResolvedLink>) {
        self.found.insert(Box::from(code), link).await;
    }

    /// The cached link of `code` while changes are not heard (the normal cache is empty then).
    pub(super) async fn untrusted_get(&self, code: &str) -> Option<Arc<ResolvedLink>> {
        if self.trusted.load(Ordering::Acquire) {
            return None;
        }
        self.untrusted.get(code).await
    }

    /// Whether a lookup's result goes into the normal cache (changes are heard).
    pub(super) fn is_trusted(&self) -> bool {
        self.trusted.load(Ordering::Acquire)
    }

    /// Whether changes are heard as they are made (or there is no Redis to hear them from),
    /// so links are cached for the cache TTL; `false` while links are kept a second at most.
    pub fn hears_changes(&self) -> bool {
        self.is_trusted()
    }

    /// Keeps a link read while changes are not heard, for [`UNTRUSTED_TTL`].
    pub(super) async fn keep_untrusted(&self, code: &str, link: Arc<ResolvedLink>) {
        self.untrusted.insert(Box::from(code), link).await;
    }

    /// Changes cannot be heard from now on: everything held is dropped (it may have changed
    /// unheard), and new links are kept only briefly until [`LinkCache::trust_again`].
    pub fn stop_trusting(&self) {
        if self.trusted.swap(false, Ordering::AcqRel) {
            self.found.invalidate_all();
        }
    }

    /// Changes are heard again (and those missed were read): links are cached as usual.
    pub fn trust_again(&self) {
        self.trusted.store(true, Ordering::Release);
    }

    /// The newest version heard of `code` (0 when none was).
    pub(super) async fn known_version(&self, code: &str) -> i64 {
        self.versions.get(code).await.unwrap_or(0)
    }

    /// A token to hand back to [`LinkCache::check_after_lookup`].
    pub(super) fn changes_so_far(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// `code` changed to `version` elsewhere: any older version cached is dropped, and a lookup
    /// that reads an older one from now on does not keep it.
    pub async fn changed(&self, code: &str, version: i64) {
        self.heard(code, version).await;
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.drop_older(code, version).await;
        self.absent.invalidate(code).await;
    }

    /// Remembers `version` of `code`, unless a newer one is remembered.
    async fn heard(&self, code: &str, version: i64) {
        self.versions
            .entry(Box::from(code))
            .and_compute_with(|known| async move {
                match known {
                    Some(entry) if *entry.value() >= version => Op::Nop,
                    _ => Op::Put(version),
                }
            })
            .await;
    }

    /// Drops the cached link of `code` if it is older than `version`.
    async fn drop_older(&self, code: &str, version: i64) {
        self.found
            .entry(Box::from(code))
            .and_compute_with(|cached| async move {
                match cached {
                    Some(entry) if entry.value().version() < version => Op::Remove,
                    _ => Op::Nop,
                }
            })
            .await;
        self.untrusted.invalidate(code).await;
    }

    /// After a lookup that began at `changes_before` put `link` in the cache: if a change was
    /// heard meanwhile and `link` is older than it, it is dropped again. Answers whether
    /// `link` is still current.
    pub(super) async fn check_after_lookup(
        &self,
        code: &str,
        link: &ResolvedLink,
        changes_before: u64,
    ) -> bool {
        if self.changes_so_far() == changes_before {
            return true;
        }
        let known = self.known_version(code).await;
        if link.version() < known {
            self.drop_older(code, known).await;
            return false;
        }
        true
    }

    /// A change made here: `link` (its new version) replaces an older one cached, never a
    /// newer one.
    pub async fn put_newer(&self, code: &str, link: Arc<ResolvedLink>) {
        let version = link.version();
        self.heard(code, version).await;
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.absent.invalidate(code).await;
        if !self.is_trusted() {
            self.untrusted.insert(Box::from(code), link).await;
            return;
        }
        self.found
            .entry(Box::from(code))
            .and_compute_with(|cached| async move {
                match cached {
                    Some(entry) if entry.value().version() >= version => Op::Nop,
                    _ => Op::Put(link),
                }
            })
            .await;
    }

    /// A create of `code` committed here: forget that it was unknown, and serve it from memory.
    pub(super) async fn created(&self, code: &str, link: Option<Arc<ResolvedLink>>) {
        self.creates.fetch_add(1, Ordering::AcqRel);
        self.absent.invalidate(code).await;
        if let Some(link) = link {
            if self.is_trusted() {
                self.insert(code, link).await;
            } else {
                self.keep_untrusted(code, link).await;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use time::OffsetDateTime;

    fn cache() -> LinkCache {
        LinkCache::new(CacheSettings {
            capacity: 100,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(60),
        })
    }

    fn version(version: i64, target: &'static str) -> Arc<ResolvedLink> {
        let link = ResolvedLink::new(
            1,
            HeaderValue::from_static(target),
            OffsetDateTime::UNIX_EPOCH,
        );
        Arc::new(link.at_version(version))
    }

    async fn cached(cache: &LinkCache, code: &str) -> Option<i64> {
        cache.found.get(code).await.map(|link| link.version())
    }

    #[tokio::test]
    async fn a_change_heard_drops_older_versions_and_never_a_newer_one() {
        let cache = cache();
        cache.insert("abc", version(1, "https://a/1")).await;
        cache.changed("abc", 2).await;
        assert_eq!(cached(&cache, "abc").await, None, "version 1 dropped");
        cache.insert("abc", version(3, "https://a/3")).await;
        // A late announcement of an older change leaves the newer version alone.
        cache.changed("abc", 2).await;
        assert_eq!(cached(&cache, "abc").await, Some(3));
        assert_eq!(cache.known_version("abc").await, 2, "the newest heard");
    }

    #[tokio::test]
    async fn a_lookup_that_read_an_older_version_than_one_heard_meanwhile_is_not_kept() {
        let cache = cache();
        let before = cache.changes_so_far();
        // The lookup read version 1 and put it in; version 2 was heard while it ran.
        let read = version(1, "https://a/1");
        cache.insert("abc", Arc::clone(&read)).await;
        cache.changed("abc", 2).await;
        cache.insert("abc", Arc::clone(&read)).await;
        assert!(!cache.check_after_lookup("abc", &read, before).await);
        assert_eq!(cached(&cache, "abc").await, None);
        // Nothing heard since a lookup began: what it read stands, without looking further.
        let since = cache.changes_so_far();
        let current = version(2, "https://a/2");
        cache.insert("abc", Arc::clone(&current)).await;
        assert!(cache.check_after_lookup("abc", &current, since).await);
        assert_eq!(cached(&cache, "abc").await, Some(2));
    }

    #[tokio::test]
    async fn a_change_made_here_replaces_an_older_version_but_loses_to_a_newer_one() {
        let cache = cache();
        cache.insert("abc", version(1, "https://a/1")).await;
        cache.put_newer("abc", version(2, "https://a/2")).await;
        assert_eq!(cached(&cache, "abc").await, Some(2));
        cache.insert("abc", version(4, "https://a/4")).await;
        cache.put_newer("abc", version(3, "https://a/3")).await;
        assert_eq!(cached(&cache, "abc").await, Some(4));
    }

    #[tokio::test]
    async fn while_changes_cannot_be_heard_nothing_is_kept_for_long() {
        let cache = cache();
        cache.insert("abc", version(1, "https://a/1")).await;
        cache.stop_trusting();
        assert_eq!(
            cached(&cache, "abc").await,
            None,
            "dropped: it may change unheard"
        );
        assert!(!cache.is_trusted());
        cache.put_newer("abc", version(2, "https://a/2")).await;
        assert_eq!(cached(&cache, "abc").await, None);
        assert_eq!(
            cache.untrusted_get("abc").await.map(|link| link.version()),
            Some(2)
        );
        cache.trust_again();
        assert!(cache.untrusted_get("abc").await.is_none());
    }
}
