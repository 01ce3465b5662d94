//! The Redis tier between moka and Postgres: a link found in Postgres is filled into Redis
//! without waiting for the reply, a created link is written through, and a breaker stops
//! asking Redis while it fails (a background probe closes it again). Negative answers are
//! never stored in Redis.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ResolvedLink;
use super::breaker::{Breaker, BreakerState};
use crate::storage::{LinkRecord, RedisStore};

/// Fills in flight at once; more are dropped (the next miss fills again).
const MAX_FILLS_IN_FLIGHT: usize = 256;
/// Consecutive failures (errors or timeouts) that open the breaker.
const BREAKER_THRESHOLD: u32 = 5;
/// How often an open breaker's probe asks Redis.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// Format of the stored value; a value of another version is ignored (a miss).
const VALUE_VERSION: &str = "1";

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
                decode(code, &value?)
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
        let (this, code, value) = (Arc::clone(self), code.to_owned(), encode(record));
        self.tasks.spawn(async move {
            this.put(&code, value).await;
            drop(permit);
        });
    }

    /// Stores a link just created (awaited, but within one command timeout, and a failure
    /// only costs a later miss).
    pub async fn write_through(&self, code: &str, record: &LinkRecord) {
        if self.breaker.state() == BreakerState::Closed {
            self.put(code, encode(record)).await;
        }
    }

    async fn put(&self, code: &str, value: Bytes) {
        match self.store.put_link(code, value, self.ttl).await {
            Ok(()) => self.breaker.succeeded(),
            Err(error) => {
                tracing::debug!(%error, "redis set failed");
                self.breaker.failed(&error);
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

/// `version \n id \n created_at \n expires_at \n disabled_at \n url`, instants as Unix
/// microseconds (empty when absent): compact, and readable with `redis-cli`.
fn encode(record: &LinkRecord) -> Bytes {
    let micros = |at: Option<OffsetDateTime>| {
        at.map(|at| (at.unix_timestamp_nanos() / 1_000).to_string())
            .unwrap_or_default()
    };
    Bytes::from(format!(
        "{VALUE_VERSION}\n{}\n{}\n{}\n{}\n{}",
        record.id,
        micros(Some(record.created_at)),
        micros(record.expires_at),
        micros(record.disabled_at),
        record.target_url
    ))
}

fn decode(code: &str, value: &[u8]) -> Option<Arc<ResolvedLink>> {
    let text = std::str::from_utf8(value).ok()?;
    let mut fields = text.splitn(6, '\n');
    if fields.next()? != VALUE_VERSION {
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
    let created_at = instant(fields.next()?)??;
    let expires_at = instant(fields.next()?)?;
    let disabled_at = instant(fields.next()?)?;
    let target_url = fields.next()?.to_owned();
    ResolvedLink::from_record(LinkRecord {
        id,
        code: code.to_owned(),
        target_url,
        created_at,
        expires_at,
        disabled_at,
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn values_read_back_as_they_were_written() {
        let record = LinkRecord {
            id: 42,
            code: "abc".into(),
            target_url: "https://example.com/a?b=c".into(),
            created_at: datetime!(2026-11-30 12:00:00.123456 UTC),
            expires_at: Some(datetime!(2027-01-01 00:00:00 UTC)),
            disabled_at: None,
        };
        let link = decode("abc", &encode(&record)).unwrap();
        assert_eq!(link.id, 42);
        assert_eq!(link.created_at, record.created_at);
        assert_eq!(link.expires_at, record.expires_at);
        assert_eq!(link.disabled_at, None);
        assert_eq!(link.target_url(), "https://example.com/a?b=c");
        assert!(decode("abc", b"2\n42\n0\n\n\nhttps://x/").is_none());
        assert!(decode("abc", b"1\nx\n0\n\n\nhttps://x/").is_none());
        assert!(decode("abc", b"garbage").is_none());
    }
}
