//! Who is calling: API keys, checked from memory ([`KeyRing`]).
//!
//! Every key (its digest, scope, and whether it is revoked) is held in memory, refreshed once
//! a second from what changed since the last refresh, so a revocation reaches every instance
//! within about a second, and an instance whose key set is older than [`MAX_STALENESS`] answers
//! keyed requests 503 rather than trust it. A key made since the last refresh is looked up once
//! (single-flight); an unknown key is remembered as unknown for [`UNKNOWN_FOR`], and lookups of
//! unknown keys are limited per client: a flood of random keys costs the database at most one
//! lookup each, within that limit, and nothing after. When each key was last used is kept in
//! memory and written every [`USAGE_EVERY`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use moka::future::Cache;
use thiserror::Error;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::domain::{ApiKey, ClientIp, IdempotencyScope, KeyDigest, KeyId, KeyScope};
use crate::ids::monotonic_ms;
use crate::limits::{LimitKey, LocalLimiter, RateSpec};
use crate::storage::{Db, KeyRow, StorageError};
use crate::telemetry::Chain;

/// How often the key set is refreshed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// A key set older than this is not trusted: keyed requests answer 503.
pub const MAX_STALENESS: Duration = Duration::from_secs(5);
/// How long a key the database does not know is remembered as unknown.
pub const UNKNOWN_FOR: Duration = Duration::from_secs(10);
/// How often the last use of each key is written.
pub const USAGE_EVERY: Duration = Duration::from_secs(10);
/// Changes re-read behind the newest one seen: a key change whose transaction committed after
/// a later one is still read (changes of keys are rare; this is many times their concurrency).
const LOOKBACK: i64 = 100;
/// Lookups of keys not in memory, per client.
const UNKNOWN_LOOKUPS_PER_CLIENT: &str = "5/s,burst=20";
/// Digests remembered as unknown at once.
const MAX_UNKNOWN: u64 = 100_000;

/// A key that checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHolder {
    pub id: KeyId,
    pub scope: KeyScope,
}

/// Who a request comes from, as the use cases see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No key: known by its address.
    Anonymous(ClientIp),
    /// A valid key (the address it came from too).
    Key { holder: KeyHolder, client: ClientIp },
}

impl Caller {
    /// The key, when one was sent.
    pub fn holder(&self) -> Option<KeyHolder> {
        match self {
            Caller::Anonymous(_) => None,
            Caller::Key { holder, .. } => Some(*holder),
        }
    }

    /// Whose Idempotency-Keys its own are: its key's, else its address's.
    pub fn idempotency_scope(&self) -> IdempotencyScope {
        match self {
            Caller::Anonymous(client) => IdempotencyScope::Client(*client),
            Caller::Key { holder, .. } => IdempotencyScope::Key(holder.id),
        }
    }

    /// Who its rate limits count: its key, else its address.
    pub fn limit_key(&self) -> LimitKey {
        match self {
            Caller::Anonymous(client) => LimitKey::of(client.get()),
            Caller::Key { holder, .. } => LimitKey::key(holder.id),
        }
    }
}

/// Why a key was not accepted.
#[derive(Debug, Error)]
pub enum AuthError {
    /// Malformed, unknown or revoked (401).
    #[error("the API key is not valid")]
    Invalid,
    /// This instance's key set is too old to trust (503).
    #[error("the API keys could not be checked: the key set is {age:?} old")]
    Stale { age: Duration },
    /// A key not in memory could not be looked up (503).
    #[error("the API key could not be looked up")]
    Unavailable(#[source] Arc<StorageError>),
}

#[derive(Debug, Clone, Copy)]
struct KnownKey {
    id: KeyId,
    scope: KeyScope,
    revoked: bool,
}

impl From<&KeyRow> for KnownKey {
    fn from(row: &KeyRow) -> Self {
        KnownKey {
            id: row.id,
            scope: row.scope,
            revoked: row.revoked,
        }
    }
}

/// Every key, held in memory.
pub struct KeyRing {
    db: Db,
    keys: RwLock<HashMap<KeyDigest, KnownKey>>,
    /// The highest change sequence read.
    seen: AtomicI64,
    /// Monotonic milliseconds of the last refresh that succeeded (0: none yet).
    refreshed_ms: AtomicU64,
    /// Keys not in memory, looked up once: found (then also held in `keys`) or unknown.
    looked_up: Cache<KeyDigest, Option<KnownKey>>,
    lookups_per_client: LocalLimiter,
    /// The last use of each key since the last write.
    used: Mutex<HashMap<KeyId, OffsetDateTime>>,
    clock: Clock,
}

impl KeyRing {
    pub fn new(db: Db, clock: Clock) -> Self {
        let spec: RateSpec = UNKNOWN_LOOKUPS_PER_CLIENT
            .parse()
            .unwrap_or_else(|_| unreachable!("a valid limit"));
        KeyRing {
            db,
            keys: RwLock::default(),
            seen: AtomicI64::new(0),
            refreshed_ms: AtomicU64::new(0),
            looked_up: Cache::builder()
                .max_capacity(MAX_UNKNOWN)
                .time_to_live(UNKNOWN_FOR)
                .build(),
            lookups_per_client: LocalLimiter::new(spec, MAX_UNKNOWN),
            used: Mutex::default(),
            clock,
        }
    }

    /// The holder of `key`, sent by `client`.
    pub async fn authenticate(&self, key: &ApiKey, client: IpAddr) -> Result<KeyHolder, AuthError> {
        let age = self.age();
        if age > MAX_STALENESS {
            return Err(AuthError::Stale { age });
        }
        let digest = key.digest();
        let known = match self.held(&digest) {
            Some(known) => known,
            None => self.look_up(digest, client).await?,
        };
        if known.revoked {
            return Err(AuthError::Invalid);
        }
        self.used
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(known.id, self.clock.now());
        Ok(KeyHolder {
            id: known.id,
            scope: known.scope,
        })
    }

    /// How old the key set is (the time since the last refresh that succeeded).
    pub fn age(&self) -> Duration {
        match self.refreshed_ms.load(Ordering::Acquire) {
            0 => Duration::MAX,
            at => Duration::from_millis(monotonic_ms().saturating_sub(at)),
        }
    }

    fn held(&self, digest: &KeyDigest) -> Option<KnownKey> {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(digest)
            .copied()
    }

    /// A key not in memory: its one lookup (or the one already made), limited per client.
    async fn look_up(&self, digest: KeyDigest, client: IpAddr) -> Result<KnownKey, AuthError> {
        if let Some(looked_up) = self.looked_up.get(&digest).await {
            return looked_up.ok_or(AuthError::Invalid);
        }
        if !self.lookups_per_client.check(LimitKey::of(client)).allowed {
            return Err(AuthError::Invalid);
        }
        let found = self
            .looked_up
            .try_get_with(digest, async {
                let row = self.db.api_key_by_digest(digest).await?;
                Ok::<_, StorageError>(row.as_ref().map(|row| {
                    let known = KnownKey::from(row);
                    self.hold(digest, known);
                    known
                }))
            })
            .await
            .map_err(AuthError::Unavailable)?;
        found.ok_or(AuthError::Invalid)
    }

    fn hold(&self, digest: KeyDigest, known: KnownKey) {
        self.keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(digest, known);
    }

    /// Reads what changed since the last refresh. Answers how many keys changed.
    pub async fn refresh(&self) -> Result<usize, StorageError> {
        let since = self.seen.load(Ordering::Acquire).saturating_sub(LOOKBACK);
        let rows = self.db.api_keys_changed_since(since).await?;
        let mut newest = self.seen.load(Ordering::Acquire);
        for row in &rows {
            self.hold(row.digest, KnownKey::from(row));
            newest = newest.max(row.change_seq);
        }
        self.seen.store(newest, Ordering::Release);
        self.refreshed_ms
            .store(monotonic_ms().max(1), Ordering::Release);
        Ok(rows.len())
    }

    /// Writes the last use of each key used since the last write.
    async fn write_usage(&self) {
        let used: Vec<(KeyId, OffsetDateTime)> = std::mem::take(
            &mut *self
                .used
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
        .into_iter()
        .collect();
        if let Err(error) = self.db.record_key_usage(&used).await {
            crate::throttled!(warn, error = %Chain(&error), keys = used.len(), "the last use of API keys was not written; it is written with the next use");
        }
    }

    /// Refreshes every [`REFRESH_EVERY`] and writes usage every [`USAGE_EVERY`] until `stop`
    /// is cancelled; then writes usage once more.
    pub async fn keep_fresh(self: Arc<Self>, stop: CancellationToken) {
        let mut refresh = tokio::time::interval(REFRESH_EVERY);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut usage = tokio::time::interval(USAGE_EVERY);
        usage.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = refresh.tick() => {
                    if let Err(error) = self.refresh().await {
                        crate::throttled!(warn, error = %Chain(&error), age = ?self.age(), "API keys not refreshed; keyed requests answer 503 once the key set is 5 s old");
                    }
                }
                _ = usage.tick() => self.write_usage().await,
                _ = stop.cancelled() => break,
            }
        }
        self.write_usage().await;
    }
}
