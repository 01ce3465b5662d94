//! How a change of a link reaches every tier of every instance, and never comes undone.
//!
//! A change (an edit, a delete, a takedown) is one transaction that moves the link's version
//! and appends it to the feed in Postgres (`link_changes`). The instance that made it then
//! writes the new version into Redis (a compare-version write: an older one never replaces it)
//! and into its own cache, and announces it on Redis pub/sub. Every instance, on hearing an
//! announcement, drops older versions of the code from its cache and remembers the new
//! version, so that a lookup reading an older one from Redis or a lagging replica does not
//! keep it ([`LinkCache::changed`]).
//!
//! Announcements can be missed (pub/sub delivers at most once). So every instance also reads
//! the feed every [`CATCH_UP_EVERY`] from where it was; when its subscription drops it stops
//! trusting its cache (drops it, and keeps new links only briefly) until the subscription is
//! back and the feed read, and then also writes the current version of every code that changed
//! meanwhile into Redis (a change made while Redis was away did not reach it).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{BreakerState, LinkCache, RemoteCache, ResolvedLink};
use crate::storage::{ChangeEvent, ChangeSubscriber, Db, LinkRecord, RedisStore, StorageError};
use crate::telemetry::Chain;

/// How often the feed is read whatever the subscription hears.
pub const CATCH_UP_EVERY: Duration = Duration::from_secs(1);
/// Places in the feed looked at again behind the newest one applied (those written in the last
/// ten seconds): a change whose transaction committed after later ones is still read (changes
/// are short transactions; this is many times how many can commit while one is in flight).
const LOOKBACK: i64 = 1_000;
/// Rows read from the feed at once.
const PAGE: i64 = 1_000;
/// How far back an instance that starts remembers changes: a link changed this recently is
/// not taken from a replica (or Redis) at an older version by an instance that never heard of
/// the change. A replica lagging by more than this can still serve such an instance the old
/// version, until the link's next change.
pub const REMEMBERED_ON_START: Duration = Duration::from_secs(600);
/// Most changes remembered on start.
const REMEMBERED_ON_START_AT_MOST: i64 = 100_000;

/// Announces, hears and applies changes.
pub struct ChangeFeed {
    db: Db,
    cache: Arc<LinkCache>,
    remote: Option<Arc<RemoteCache>>,
    /// Where changes are announced; `None` without Redis (the feed alone carries them).
    redis: Option<RedisStore>,
    /// The newest place in the feed read (0: none yet).
    applied: AtomicI64,
    /// The oldest place in the feed whose version may not have reached Redis (0: none): a
    /// change made or read while Redis did not answer, written there once it does.
    unrepaired_from: AtomicI64,
}

impl ChangeFeed {
    pub fn new(
        db: Db,
        cache: Arc<LinkCache>,
        remote: Option<Arc<RemoteCache>>,
        redis: Option<RedisStore>,
    ) -> Self {
        ChangeFeed {
            db,
            cache,
            remote,
            redis,
            applied: AtomicI64::new(0),
            unrepaired_from: AtomicI64::new(0),
        }
    }

    /// A change committed here, at `seq` in the feed: Redis and this instance's cache take
    /// the new version, and the others are told.
    pub async fn made(&self, link: &LinkRecord, seq: i64) {
        match ResolvedLink::from_record(link.clone()) {
            Some(resolved) => self.cache.put_newer(&link.code, resolved).await,
            None => self.cache.changed(&link.code, link.version).await,
        }
        if !announce(self.remote.as_deref(), self.redis.as_ref(), link, seq).await {
            self.missed_redis(seq);
        }
    }

    /// Where the feed is now, and the versions of the links changed in the last
    /// [`REMEMBERED_ON_START`]: older changes need not be read (they are in every tier
    /// already, or older than anything cached), recent ones must not be undone by a lagging
    /// replica or an old value in Redis.
    pub async fn start_at_the_end(&self) -> Result<(), StorageError> {
        let last = self.db.last_link_change().await?;
        let recent = self
            .db
            .recent_link_changes(REMEMBERED_ON_START, REMEMBERED_ON_START_AT_MOST)
            .await?;
        for row in &recent {
            self.cache.changed(&row.code, row.version).await;
        }
        self.applied.fetch_max(last, Ordering::AcqRel);
        Ok(())
    }

    /// The change at `seq` may not be in Redis: it is written there once Redis answers.
    fn missed_redis(&self, seq: i64) {
        let _ = self
            .unrepaired_from
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |from| {
                (from == 0 || seq < from).then_some(seq)
            });
    }

    /// Writes into Redis the changes it missed, once its breaker is closed again.
    async fn repair_missed(&self) -> Result<(), StorageError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let from = self.unrepaired_from.load(Ordering::Acquire);
        if from == 0 || remote.state() != BreakerState::Closed {
            return Ok(());
        }
        self.unrepaired_from.store(0, Ordering::Release);
        let mut after = from - 1;
        loop {
            // Every change from `from` on, however old (`applied` = `after`: no look-back
            // window), including any this instance has not read from the feed yet.
            let rows = match self.db.link_changes_after(after, after, PAGE).await {
                Ok(rows) => rows,
                Err(error) => {
                    self.missed_redis(after + 1);
                    return Err(error);
                }
            };
            for row in &rows {
                match self.repair(&row.code).await {
                    Ok(true) => {}
                    Ok(false) => self.missed_redis(row.seq),
                    Err(error) => {
                        self.missed_redis(row.seq);
                        return Err(error);
                    }
                }
                after = row.seq;
            }
            if rows.len() < PAGE as usize {
                if self.unrepaired_from.load(Ordering::Acquire) == 0 {
                    tracing::info!("the changes that had not reached redis are written there now");
                }
                return Ok(());
            }
        }
    }

    /// Reads the feed from where this instance is and applies what it finds; writes the
    /// current version of each changed code into Redis when it was not announced (or, with
    /// `repair_redis`, whatever was heard).
    /// Answers how many changes were read.
    async fn catch_up(&self, repair_redis: bool) -> Result<usize, StorageError> {
        if self.applied.load(Ordering::Acquire) == 0 {
            self.start_at_the_end().await?;
        }
        let mut read = 0;
        let applied = self.applied.load(Ordering::Acquire);
        let mut after = applied.saturating_sub(LOOKBACK);
        loop {
            let rows = self.db.link_changes_after(after, applied, PAGE).await?;
            for row in &rows {
                // A change not heard of before was not announced (a command without Redis
                // settings, or a Redis that failed it): it may not be in Redis either.
                let unheard = self.cache.known_version(&row.code).await < row.version;
                self.cache.changed(&row.code, row.version).await;
                if (repair_redis || unheard) && !self.repair(&row.code).await? {
                    self.missed_redis(row.seq);
                }
                after = row.seq;
            }
            read += rows.len();
            self.applied.fetch_max(after, Ordering::AcqRel);
            if rows.len() < PAGE as usize {
                return Ok(read);
            }
        }
    }

    /// Writes the current version of `code` into Redis (which keeps it unless it holds a
    /// newer one). Answers whether Redis holds it now (`true` without Redis: nothing to do).
    async fn repair(&self, code: &str) -> Result<bool, StorageError> {
        let Some(remote) = &self.remote else {
            return Ok(true);
        };
        match self.db.link_by_code(code).await? {
            Some(link) => Ok(remote.write_through(code, &link).await),
            None => Ok(true),
        }
    }

    /// Applies announcements heard on `subscriber` (none without Redis) and reads the feed
    /// every [`CATCH_UP_EVERY`], until `stop` is cancelled.
    pub async fn run(
        self: Arc<Self>,
        subscriber: Option<ChangeSubscriber>,
        stop: CancellationToken,
    ) {
        let mut catch_up = tokio::time::interval(CATCH_UP_EVERY);
        catch_up.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let Some(mut subscriber) = subscriber else {
            loop {
                tokio::select! {
                    _ = catch_up.tick() => self.read_feed(false).await,
                    _ = stop.cancelled() => return,
                }
            }
        };
        loop {
            tokio::select! {
                event = subscriber.next() => match event {
                    ChangeEvent::Message(text) => match parse_announcement(&text) {
                        Some((_, version, code)) => self.cache.changed(code, version).await,
                        None => tracing::debug!(%text, "an announcement of another format was ignored"),
                    },
                    ChangeEvent::Subscribed => {
                        // Heard again: what was missed is read (and repaired in Redis) before
                        // the cache is trusted again.
                        if self.catch_up(true).await.is_ok() {
                            if !self.cache.is_trusted() {
                                tracing::info!("the subscription to changes is back; the cache is trusted again");
                            }
                            self.cache.trust_again();
                        }
                    }
                    ChangeEvent::Lost(why) => {
                        if self.cache.is_trusted() {
                            tracing::warn!(%why, "the subscription to changes dropped: the cache is dropped, and links are cached for a second at most until it is back");
                        }
                        self.cache.stop_trusting();
                    }
                },
                _ = catch_up.tick() => {
                    if self.cache.is_trusted() && !subscriber.is_connected() {
                        tracing::warn!("the subscription to changes is not connected: links are cached for a second at most until it is back");
                        self.cache.stop_trusting();
                    }
                    self.read_feed(false).await;
                }
                _ = stop.cancelled() => break,
            }
        }
        subscriber.quit().await;
    }

    async fn read_feed(&self, repair_redis: bool) {
        if let Err(error) = self.catch_up(repair_redis).await {
            crate::throttled!(warn, error = %Chain(&error), "the change feed could not be read; changes not announced are applied when it can");
        }
        if let Err(error) = self.repair_missed().await {
            crate::throttled!(warn, error = %Chain(&error), "changes that missed redis could not be read again; retried in a second");
        }
    }
}

/// Writes a committed change (at `seq` in the feed) into Redis (a compare-version write) and
/// announces it to every instance: what the instance that made it does, and `shortener
/// disable` / `enable`.
pub async fn announce(
    remote: Option<&RemoteCache>,
    redis: Option<&RedisStore>,
    link: &LinkRecord,
    seq: i64,
) -> bool {
    let mut in_redis = true;
    if let Some(remote) = remote
        && !remote.write_through(&link.code, link).await
    {
        tracing::warn!(
            code = %link.code,
            "a change did not reach redis; it is written there once redis answers"
        );
        in_redis = false;
    }
    if let Some(redis) = redis
        && let Err(error) = redis
            .publish_change(&announcement(seq, link.version, &link.code))
            .await
    {
        crate::throttled!(warn, error = %Chain(&error), "a change was not announced; other instances read it from the feed within a second");
    }
    in_redis
}

/// `seq version code`: what an announcement says.
fn announcement(seq: i64, version: i64, code: &str) -> String {
    format!("{seq} {version} {code}")
}

fn parse_announcement(text: &str) -> Option<(i64, i64, &str)> {
    let mut fields = text.splitn(3, ' ');
    let seq = fields.next()?.parse().ok()?;
    let version = fields.next()?.parse().ok()?;
    let code = fields.next().filter(|code| !code.is_empty())?;
    Some((seq, version, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_read_back() {
        assert_eq!(
            parse_announcement(&announcement(12, 3, "my-alias")),
            Some((12, 3, "my-alias"))
        );
        assert_eq!(parse_announcement("12 x code"), None);
        assert_eq!(parse_announcement("12 3 "), None);
        assert_eq!(parse_announcement("garbage"), None);
    }
}
