//! The Redis tier between moka and Postgres: a link found in Postgres is filled into Redis
//! without waiting for the reply, a created or changed link is written through, and a breaker
//! stops asking Redis while it fails (a background probe closes it again). Every write carries
//! the link's version and is refused by Redis when it holds that version or a newer one, so a
//! fill that began before a change and lands after it never undoes it; a deleted link is a
//! value too (a tombstone), never a `DEL` a late fill could undo. Negative answers are never
//! stored in Redis.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ResolvedLink;
use super::breaker::{Breaker, BreakerState};
use crate::domain::KeyId;
use crate::storage::{LinkRecord, RedisStore};

/// Fills in flight at once; more are dropped (the next miss fills again).
const MAX_FILLS_IN_FLIGHT: usize = 256;
/// Consecutive failures (errors or timeouts) that open the breaker.
const BREAKER_THRESHOLD: u32 = 5;
/// How often an open breaker's probe asks Redis.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// Format of the stored value; a value of another format is ignored (a miss).
const VALUE_FORMAT: &str = "2";

/// The Redis tier of the resolver and the creator.
pub struct RemoteCache {
    store: RedisStore,
    breaker: Breaker,
    fills: Arc<Semaphore>,
    ttl: Duration,
    /// Where background fills run.
    tasks: TaskTracker,
}

impl RemoteCache {
    /// Background fills are tasks on `tasks`.
    pub fn new(store: RedisStore, ttl: Duration, tasks: TaskTracker) -> Self {
        RemoteCache {
            store,
            breaker: Breaker::new(BREAKER_THRESHOLD),
            fills: Arc::new(Semaphore::new(MAX_FILLS_IN_FLIGHT)),
            ttl,
            tasks,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// The link stored for `code`; `None` on a miss, an error (counted by the breaker) or
    /// while the breaker is open. Never waits longer than the command timeout.
    pub async fn get(&self, code: &str) -> Option<Arc<ResolvedLink>> {
        if self.breaker.state() == BreakerState::Open {
            return None;
        }
        match self.store.get_link(code).await {
            Ok(value) => {
                self.breaker.succeeded();
                let (version, value) = value?;
                decode(code, version, &value)
            }
            Err(error) => {
                tracing::debug!(%error, "redis get failed");
                self.breaker.failed(&error);
                None
            }
        }
    }

    /// Stores a link read from Postgres, in the background; dropped when too many fills are
    /// in flight or the breaker is open.
    pub fn fill(self: &Arc<Self>, code: &str, record: &LinkRecord) {
        if self.breaker.state() == BreakerState::Open {
            return;
        }
        let Ok(permit) = Arc::clone(&self.fills).try_acquire_owned() else {
            return;
        };
        let (this, code, version, value) = (
            Arc::clone(self),
            code.to_owned(),
            record.version,
            encode(record),
        );
        self.tasks.spawn(async move {
            this.put(&code, version, &value).await;
            drop(permit);
        });
    }

    /// Stores a link just created or changed (awaited, but within one command timeout).
    /// Answers whether Redis holds this version (or a newer one) now: `false` when it could
    /// not be asked, which a change has to repair later.
    pub async fn write_through(&self, code: &str, record: &LinkRecord) -> bool {
        self.breaker.state() == BreakerState::Closed
            && self.put(code, record.version, &encode(record)).await
    }

    /// Whether Redis answered: it stored the version, or holds a newer one.
    async fn put(&self, code: &str, version: i64, value: &[u8]) -> bool {
        match self
            .store
            .put_link_if_newer(code, version, value, self.ttl)
            .await
        {
            Ok(_stored_or_newer) => {
                self.breaker.succeeded();
                true
            }
            Err(error) => {
                tracing::debug!(%error, "redis set failed");
                self.breaker.failed(&error);
                false
            }
        }
    }

    /// Pings Redis every `PROBE_EVERY` until `stop` is cancelled: an answer closes an open
    /// breaker; a failure counts toward opening it, so an idle instance notices too. (An
    /// answer does not reset the count while closed: in a cluster the PING may reach a
    /// healthy node while requests to a hung one keep failing.)
    pub async fn run_probe(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(PROBE_EVERY) => {}
                _ = stop.cancelled() => return,
            }
            match (self.store.ping().await, self.breaker.state()) {
                (Ok(()), BreakerState::Open) => self.breaker.succeeded(),
                (Ok(()), BreakerState::Closed) => {}
                (Err(error), _) => self.breaker.failed(&error),
            }
        }
    }
}

/// `2 \n id \n created_at \n expires_at \n disabled_at \n deleted \n owner \n visit_limited
/// \n url` (its version is kept by `storage` beside it), instants as Unix microseconds and
/// options empty when absent, flags `0` or `1`: compact, and readable with `redis-cli`.
fn encode(record: &LinkRecord) -> Vec<u8> {
    let micros = |at: Option<OffsetDateTime>| {
        at.map(|at| (at.unix_timestamp_nanos() / 1_000).to_string())
            .unwrap_or_default()
    };
    let flag = |on: bool| if on { "1" } else { "0" };
    format!(
        "{VALUE_FORMAT}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        record.id,
        micros(Some(record.created_at)),
        micros(record.expires_at),
        micros(record.disabled_at),
        flag(record.deleted_at.is_some()),
        record
            .owner
            .map(|owner| owner.0.to_string())
            .unwrap_or_default(),
        flag(record.max_visits.is_some()),
        record.target_url
    )
    .into_bytes()
}

fn decode(code: &str, version: i64, value: &[u8]) -> Option<Arc<ResolvedLink>> {
    let text = std::str::from_utf8(value).ok()?;
    let mut fields = text.splitn(9, '\n');
    if fields.next()? != VALUE_FORMAT {
        return None;
    }
    let id = fields.next()?.parse().ok()?;
    let instant = |field: &str| -> Option<Option<OffsetDateTime>> {
        if field.is_empty() {
            return Some(None);
        }
        let micros: i128 = field.parse().ok()?;
        OffsetDateTime::from_unix_timestamp_nanos(micros * 1_000)
            .ok()
            .map(Some)
    };
    let flag = |field: &str| match field {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    };
    let created_at = instant(fields.next()?)??;
    let expires_at = instant(fields.next()?)?;
    let disabled_at = instant(fields.next()?)?;
    let deleted = flag(fields.next()?)?;
    let owner = match fields.next()? {
        "" => None,
        owner => Some(KeyId(owner.parse().ok()?)),
    };
    let visit_limited = flag(fields.next()?)?;
    let target_url = fields.next()?.to_owned();
    ResolvedLink::from_record(LinkRecord {
        expires_at,
        disabled_at,
        version,
        // Only whether it is deleted matters once cached.
        deleted_at: deleted.then_some(created_at),
        owner,
        // Only whether it has a limit matters once cached: the count is the primary's.
        max_visits: visit_limited.then_some(1),
        visits_left: None,
        ..LinkRecord::new(id, code.to_owned(), target_url, created_at)
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn values_read_back_as_they_were_written() {
        let record = LinkRecord {
            expires_at: Some(datetime!(2027-01-01 00:00:00 UTC)),
            version: 7,
            owner: Some(KeyId(3)),
            max_visits: Some(10),
            ..LinkRecord::new(
                42,
                "abc".into(),
                "https://example.com/a?b=c\nd".into(),
                datetime!(2026-11-30 12:00:00.123456 UTC),
            )
        };
        // A URL holding a line break is refused when read back, whatever the format says.
        assert!(decode("abc", 7, &encode(&record)).is_none());
        let record = LinkRecord {
            target_url: "https://example.com/a?b=c".into(),
            ..record
        };
        let link = decode("abc", 7, &encode(&record)).unwrap();
        assert_eq!((link.id, link.version()), (42, 7));
        assert_eq!(link.created_at, record.created_at);
        assert_eq!(link.expires_at, record.expires_at);
        assert!(!link.disabled);
        assert_eq!(link.owner(), Some(KeyId(3)));
        assert!(link.visit_limited && !link.deleted);
        assert_eq!(link.target_url(), "https://example.com/a?b=c");
        let deleted = LinkRecord {
            deleted_at: Some(datetime!(2026-12-01 00:00:00 UTC)),
            ..record
        };
        assert!(decode("abc", 8, &encode(&deleted)).unwrap().deleted);
        assert!(decode("abc", 1, b"1\n42\n0\n\n\nhttps://x/").is_none());
        assert!(decode("abc", 1, b"2\nx\n0\n\n\n0\n\n0\nhttps://x/").is_none());
        assert!(decode("abc", 1, b"garbage").is_none());
    }
}
