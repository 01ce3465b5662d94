//! The link use cases: resolving a code through the tiers ([`Resolver`]) and creating a link
//! ([`Creator`]).
//!
//! `http` parses a request, calls one function here and renders what it answers; `storage`
//! runs the SQL these use cases need. This layer owns the rules in between: the tier order
//! (moka, then Postgres replicas, then the primary), single-flight, negative entries,
//! fill-back, ids and codes, and the idempotency protocol. It never sees hyper types or SQL
//! text; `http`'s value types (`HeaderValue`, `StatusCode`) are allowed, so a cached link
//! carries its `Location` value ready to send.

mod batch;
mod breaker;
mod cache;
mod changes;
mod creator;
mod idempotency;
mod keys;
mod manager;
mod qr;
mod remote;
mod resolver;
mod retention;
mod schema;
mod writer;

use std::sync::Arc;

use http::HeaderValue;
use time::OffsetDateTime;

pub use batch::{BatchCreated, BatchItem, MAX_BATCH_ITEMS, RenderBatch};
pub use breaker::BreakerState;
pub use cache::{CacheSettings, LinkCache, UNTRUSTED_TTL};
pub use changes::{CATCH_UP_EVERY, ChangeFeed, announce};
pub use creator::{
    CreateError, CreateFailure, Created, CreatedLink, Creator, NewLink, RenderAnswer, Reuse,
};
pub use idempotency::{Idempotency, KEY_LIFETIME};
pub use keys::{AuthError, Caller, KeyHolder, KeyRing, MAX_STALENESS};
pub use manager::{
    Cursor, DEFAULT_PAGE, Edit, IfMatch, MAX_PAGE, ManageError, ManagedLink, Manager, Page, etag_of,
};
pub use qr::{
    DEFAULT_SIZE as QR_DEFAULT_SIZE, MAX_SIZE as QR_MAX_SIZE, MIN_SIZE as QR_MIN_SIZE, QrAnswer,
    QrCodes, QrError, QrFormat, QrRequest, RENDERS_AT_ONCE, render as render_qr,
};
pub use remote::RemoteCache;
pub use resolver::{LinkStats, ResolveError, Resolver, Visit};
pub use retention::{CHUNK_ROWS, PRUNE_EVERY, PassEnd, Pruner, RetentionSettings};
pub use schema::{EXPAND_ONLY_SUFFIX, SchemaCheck, SchemaState};
pub use writer::{CreateWriter, WriteError, WriterSettings};

use crate::clock::Clock;
use crate::domain::{KeyId, TargetUrl};
use crate::storage::LinkRecord;

/// A link as the redirect path needs it, built once when it enters the cache: a hit clones
/// an `Arc` and a `HeaderValue` (a reference count each) and re-validates nothing.
#[derive(Debug)]
pub struct ResolvedLink {
    pub id: i64,
    /// The target, checked to be `http(s)` and ready to send as `Location`.
    pub location: HeaderValue,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    /// The API key that made it (its id; 0 for none, which no key has).
    owner: i64,
    /// Moves on every change: no tier takes an older version over a newer one. (Stored as
    /// 32 bits, with the flags beside it in one word: four billion edits of one link is
    /// more than any will see, and a cached link stays 96 bytes.)
    version: u32,
    /// Disabled: answers 410 until enabled.
    pub disabled: bool,
    /// Deleted: answers 410 for good.
    pub deleted: bool,
    /// Has a visit limit: each redirect takes a visit on the primary.
    pub visit_limited: bool,
}

impl ResolvedLink {
    /// The link of a stored row, or `None` when the stored target may not be redirected to
    /// (checked again here, not only when the link was created).
    pub fn from_record(record: LinkRecord) -> Option<Arc<Self>> {
        // A deleted link never redirects: its target is never sent, and a tombstone made by
        // retention has none left.
        if record.deleted_at.is_some() {
            return Some(Arc::new(ResolvedLink {
                location: HeaderValue::from_static(""),
                ..Self::fields_of(&record)
            }));
        }
        if !TargetUrl::is_redirectable(&record.target_url) {
            tracing::error!(
                link_id = record.id,
                "stored target is not http(s); refusing to serve it"
            );
            return None;
        }
        let fields = Self::fields_of(&record);
        let location = HeaderValue::from_maybe_shared(bytes::Bytes::from(record.target_url))
            .map_err(|_| {
                tracing::error!(link_id = record.id, "stored target is not a header value")
            })
            .ok()?;
        Some(Arc::new(ResolvedLink { location, ..fields }))
    }

    /// Every field of `record`'s link but its `Location` (left empty).
    fn fields_of(record: &LinkRecord) -> ResolvedLink {
        ResolvedLink {
            id: record.id,
            version: u32::try_from(record.version).unwrap_or(u32::MAX),
            location: HeaderValue::from_static(""),
            created_at: record.created_at,
            expires_at: record.expires_at,
            disabled: record.disabled_at.is_some(),
            owner: record.owner.map_or(0, |owner| owner.0),
            deleted: record.deleted_at.is_some(),
            visit_limited: record.max_visits.is_some(),
        }
    }

    /// A link as a create makes it (its first version, not disabled or deleted).
    pub fn new(id: i64, location: HeaderValue, created_at: OffsetDateTime) -> Self {
        ResolvedLink {
            id,
            version: 1,
            location,
            created_at,
            expires_at: None,
            disabled: false,
            owner: 0,
            deleted: false,
            visit_limited: false,
        }
    }

    /// Its version (every change moves it).
    pub fn version(&self) -> i64 {
        i64::from(self.version)
    }

    /// The same link at `version` (tests of the tiers' ordering).
    pub fn at_version(mut self, version: i64) -> Self {
        self.version = u32::try_from(version).unwrap_or(u32::MAX);
        self
    }

    /// The API key that made it.
    pub fn owner(&self) -> Option<KeyId> {
        (self.owner != 0).then_some(KeyId(self.owner))
    }

    /// Deleted, expired or disabled links answer 410. Reads the clock only for links that
    /// expire.
    pub fn is_gone(&self, clock: &Clock) -> bool {
        self.deleted || self.disabled || self.expires_at.is_some_and(|at| at <= clock.now())
    }

    /// The target URL (ASCII: it was stored in canonical form).
    pub fn target_url(&self) -> &str {
        self.location.to_str().unwrap_or_default()
    }
}
