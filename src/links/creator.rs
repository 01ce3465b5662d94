//! The create use case: admit the new link (where it points, when it expires), take an id,
//! make the code, hand the row (with its idempotency record) to the group-commit writer, and
//! fill the new link into the caches once it is committed.

use std::num::NonZeroU64;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use thiserror::Error;
use time::OffsetDateTime;

use super::idempotency::{Idempotency, replay_or_refuse};
use super::keys::Caller;
use super::schema::SchemaCheck;
use super::writer::{CreateWriter, WriteError};
use super::{LinkCache, RemoteCache, ResolvedLink};
use crate::clock::Clock;
use crate::domain::{Alias, ExpiresAt, ExpiryError, TargetUrl, UrlError, UrlPolicy};
use crate::ids::{CodeCodec, EPOCH_UNIX_MS, IdGenerator, monotonic_ms};
use crate::storage::{
    BatchKey, BatchRow, Db, LinkRecord, ListedLink, RowOutcome, StorageError, StoredAnswer,
};

/// Fresh ids tried when one collides (an id reissued after a clock step, or a generated code
/// that an alias took first): each retry is astronomically less likely than the one before.
const MAX_ID_ATTEMPTS: usize = 3;

/// The status of an answer that made a link, stored with its key for replays.
const CREATED: u16 = 201;

/// A link to make, its parts already read into domain types at the edge. Where it may point
/// and whether its expiry is still ahead is checked here, after a retry's stored answer was
/// looked for: a retry gets its first answer even if the request would no longer be admitted.
#[derive(Debug, Clone)]
pub struct NewLink {
    pub target: TargetUrl,
    pub alias: Option<Alias>,
    pub expires_at: Option<ExpiresAt>,
    /// After this many redirects (all instances together) the link answers 410.
    pub max_visits: Option<NonZeroU64>,
    /// Answer the caller's live link to the same URL (without alias, expiry or visit limit),
    /// if it has one, instead of making another.
    pub reuse: Reuse,
}

/// Whether a create may answer an existing link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Always make a new link.
    Never,
    /// Answer the caller's live link to the same URL when there is one.
    Existing,
}

impl NewLink {
    /// A link to `target` and nothing more.
    pub fn to(target: TargetUrl) -> Self {
        NewLink {
            target,
            alias: None,
            expires_at: None,
            max_visits: None,
            reuse: Reuse::Never,
        }
    }

    /// Whether a later `reuse` create may answer it: no alias, expiry or visit limit.
    pub(super) fn reusable(&self) -> bool {
        self.alias.is_none() && self.expires_at.is_none() && self.max_visits.is_none()
    }
}

/// A link just made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedLink {
    pub code: String,
    /// The public base URL and the code.
    pub short_url: String,
    /// The target, canonical.
    pub url: String,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
}

/// How the answer of a create is written: the body of its 201, stored with its
/// Idempotency-Key so that a retry is sent the same bytes. The caller's (the HTTP layer's).
pub type RenderAnswer = fn(&CreatedLink) -> Result<String, serde_json::Error>;

/// What a create answers.
#[derive(Debug)]
pub enum Created {
    /// Made now: the link and its answer's body (a 201).
    New { link: CreatedLink, body: String },
    /// An existing link of the caller to the same URL (`reuse`): the link and its body (200).
    Reused { link: CreatedLink, body: String },
    /// A retry: the answer stored the first time, to be sent again as it was.
    Replayed { status: u16, body: String },
}

#[derive(Debug, Error)]
pub enum CreateError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Expiry(#[from] ExpiryError),
    #[error("the alias '{}' is already taken", .0.as_str())]
    AliasTaken(Alias),
    #[error("a request with this Idempotency-Key is still being processed")]
    KeyInUse,
    #[error("this Idempotency-Key was already used with a different request body")]
    KeyReused,
    #[error("this instance holds no worker id")]
    NoWorkerId,
    #[error("the database schema is not the one this binary was built for")]
    SchemaMismatch,
    #[error("too many creates are waiting to be written")]
    Busy,
    /// The database could not take the create now: worth a retry later (503).
    #[error("the create could not be written now")]
    Unavailable(#[source] CreateFailure),
    /// A failure a retry will not fix (500).
    #[error("the create failed")]
    Failed(#[source] CreateFailure),
}

/// Why a create was not written.
#[derive(Debug, Error)]
pub enum CreateFailure {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Writer(#[from] WriteError),
    #[error("no free id after {attempts} attempts")]
    NoFreeId { attempts: usize },
    #[error("the answer could not be written")]
    Answer(#[source] serde_json::Error),
    #[error("the answer of a batch could not be written")]
    BatchAnswer,
    #[error("the stored answer has status {0}, which is not one")]
    StoredStatus(u16),
}

impl From<StorageError> for CreateError {
    fn from(error: StorageError) -> Self {
        if error.is_transient() {
            CreateError::Unavailable(error.into())
        } else {
            CreateError::Failed(error.into())
        }
    }
}

/// Creates links. Cheap to share behind the HTTP layer's state.
pub struct Creator {
    pub(super) db: Db,
    pub(super) writer: Arc<CreateWriter>,
    pub(super) ids: Arc<IdGenerator>,
    pub(super) codec: CodeCodec,
    pub(super) cache: Arc<LinkCache>,
    pub(super) url_policy: UrlPolicy,
    /// Without a trailing slash.
    pub(super) public_base_url: String,
    /// The Redis tier, written through on create.
    pub(super) remote: Option<Arc<RemoteCache>>,
    pub(super) clock: Clock,
    /// Creates are refused while the schema is not one this binary can write.
    pub(super) schema: Option<Arc<SchemaCheck>>,
}

impl Creator {
    pub fn new(
        db: Db,
        writer: Arc<CreateWriter>,
        ids: Arc<IdGenerator>,
        codec: CodeCodec,
        cache: Arc<LinkCache>,
        url_policy: UrlPolicy,
        public_base_url: String,
    ) -> Self {
        Creator {
            db,
            writer,
            ids,
            codec,
            cache,
            url_policy,
            public_base_url,
            remote: None,
            clock: Clock::system(),
            schema: None,
        }
    }

    /// Refuses creates while `schema` says the database's schema is not this binary's.
    pub fn with_schema_check(mut self, schema: Arc<SchemaCheck>) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Whether the schema refuses writes now.
    pub(super) fn schema_refuses(&self) -> bool {
        self.schema
            .as_ref()
            .is_some_and(|schema| schema.state().refuses())
    }

    /// Writes every created link through to `remote` (Redis).
    pub fn with_remote(mut self, remote: Option<Arc<RemoteCache>>) -> Self {
        self.remote = remote;
        self
    }

    /// The next id, its time `now` as the injected clock read it for this create (so a link's
    /// id and its `created_at` agree, and a test can step the clock under both).
    pub(super) fn next_id(&self, now: OffsetDateTime) -> Option<i64> {
        let unix_ms = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        self.ids
            .next_id_at(unix_ms.saturating_sub(EPOCH_UNIX_MS), monotonic_ms())
    }

    /// Reads creation times and expiries off `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Makes `link` for `caller` (it owns it when it sent a key), or answers again what its
    /// Idempotency-Key was first answered, or (with `reuse`) an existing link of the caller's.
    pub async fn create(
        &self,
        caller: &Caller,
        link: NewLink,
        idempotency: Option<Idempotency>,
        render: RenderAnswer,
    ) -> Result<Created, CreateError> {
        let now = self.clock.now();
        if let Err(refused) = self.admit(&link, now) {
            return self.replay_or(refused, idempotency.as_ref()).await;
        }
        if self.schema_refuses() {
            return self
                .replay_or(CreateError::SchemaMismatch, idempotency.as_ref())
                .await;
        }
        let reuse_digest = link.reusable().then(|| reuse_digest(caller, &link.target));
        if let (Reuse::Existing, Some(digest)) = (link.reuse, reuse_digest)
            && let Some(ListedLink { link: existing, .. }) =
                self.db.reusable_links(&[digest]).await?.remove(&digest)
        {
            let created = self.created_link(
                &existing.code,
                existing.target_url,
                existing.created_at,
                existing.expires_at,
            );
            let body = render(&created)
                .map_err(|error| CreateError::Failed(CreateFailure::Answer(error)))?;
            return Ok(Created::Reused {
                link: created,
                body,
            });
        }
        for _ in 0..MAX_ID_ATTEMPTS {
            let Some(id) = self.next_id(now) else {
                // Without a worker id no link can be made, but a retry can still be answered.
                return self
                    .replay_or(CreateError::NoWorkerId, idempotency.as_ref())
                    .await;
            };
            let code = match &link.alias {
                Some(alias) => alias.as_str().to_owned(),
                None => String::from_utf8_lossy(&self.codec.encode(id)).into_owned(),
            };
            let created = self.created_link(
                &code,
                link.target.as_str().to_owned(),
                now,
                link.expires_at.map(ExpiresAt::get),
            );
            let body = render(&created)
                .map_err(|error| CreateError::Failed(CreateFailure::Answer(error)))?;
            let row = BatchRow {
                expires_at: created.expires_at,
                owner: caller.holder().map(|holder| holder.id),
                max_visits: link
                    .max_visits
                    .map(|max| i64::try_from(max.get()).unwrap_or(i64::MAX)),
                reuse_digest,
                key: idempotency.as_ref().map(|idempotency| BatchKey {
                    scope: idempotency.scope.stored(),
                    key: idempotency.key.as_str().to_owned(),
                    fresh_since: idempotency.fresh_since(now),
                    fingerprint: idempotency.fingerprint.as_bytes().to_vec(),
                    status: CREATED,
                    body: body.clone(),
                }),
                ..BatchRow::new(id, created.code.clone(), created.url.clone(), now)
            };
            let outcome = self.writer.write(row.clone()).await.map_err(written)?;
            match outcome {
                RowOutcome::Created => {
                    self.fill_cache(row).await;
                    return Ok(Created::New {
                        link: created,
                        body,
                    });
                }
                RowOutcome::Stored(stored) => {
                    let idempotency = idempotency.as_ref().map(|i| &i.fingerprint);
                    return replayed(replay_or_refuse(stored, idempotency)?);
                }
                RowOutcome::KeyInUse => return Err(CreateError::KeyInUse),
                RowOutcome::CodeTaken => {
                    if let Some(alias) = link.alias {
                        return Err(CreateError::AliasTaken(alias));
                    }
                    tracing::warn!(
                        id,
                        "generated code already in use; retrying with a fresh id"
                    );
                }
                RowOutcome::IdTaken => {
                    tracing::warn!(id, "generated id already in use; retrying with a fresh id");
                }
            }
        }
        Err(CreateError::Failed(CreateFailure::NoFreeId {
            attempts: MAX_ID_ATTEMPTS,
        }))
    }

    /// The answer stored under `idempotency`'s key, to send again: `None` when the key was
    /// not used (or its answer went stale), [`CreateError::KeyReused`] when it was used with
    /// another body. For a retry of a request that would no longer be read or admitted: it is
    /// answered as it was the first time.
    pub async fn replay(&self, idempotency: &Idempotency) -> Result<Option<Created>, CreateError> {
        let stored = self
            .db
            .stored_answer(
                &idempotency.scope.stored(),
                idempotency.key.as_str(),
                idempotency.fresh_since(self.clock.now()),
            )
            .await?;
        match stored {
            Some(stored) => Ok(Some(replayed(replay_or_refuse(
                stored,
                Some(&idempotency.fingerprint),
            )?)?)),
            None => Ok(None),
        }
    }

    /// A create that will not be made (`refused`): its key's stored answer when it has one.
    pub(super) async fn replay_or(
        &self,
        refused: CreateError,
        idempotency: Option<&Idempotency>,
    ) -> Result<Created, CreateError> {
        match idempotency {
            Some(idempotency) => self.replay(idempotency).await?.ok_or(refused),
            None => Err(refused),
        }
    }

    /// The link a create answers.
    fn created_link(
        &self,
        code: &str,
        url: String,
        created_at: OffsetDateTime,
        expires_at: Option<OffsetDateTime>,
    ) -> CreatedLink {
        CreatedLink {
            code: code.to_owned(),
            short_url: format!("{}/{}", self.public_base_url, code),
            url,
            created_at,
            expires_at,
        }
    }

    /// Whether `link` may be made now: where it points, and whether its expiry is ahead.
    fn admit(&self, link: &NewLink, now: OffsetDateTime) -> Result<(), CreateError> {
        self.url_policy.admit(&link.target)?;
        if let Some(expires_at) = link.expires_at {
            expires_at.check_after(now)?;
        }
        Ok(())
    }

    /// The new link is served from this instance's memory at once, and an earlier "no such
    /// code" here is forgotten.
    pub(super) async fn fill_cache(&self, row: BatchRow) {
        let record = record_of(row);
        if let Some(remote) = &self.remote {
            remote.write_through(&record.code, &record).await;
        }
        let code = record.code.clone();
        let resolved = ResolvedLink::from_record(record);
        self.cache.created(&code, resolved).await;
    }
}

/// The record a created row became.
pub(super) fn record_of(row: BatchRow) -> LinkRecord {
    LinkRecord {
        expires_at: row.expires_at,
        owner: row.owner,
        max_visits: row.max_visits,
        visits_left: row.max_visits,
        ..LinkRecord::new(row.id, row.code, row.target_url, row.created_at)
    }
}

/// What a `reuse` create looks a link up by: its owner (the caller's key, or its address when
/// anonymous) and its canonical URL.
pub(super) fn reuse_digest(caller: &Caller, target: &TargetUrl) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update(caller.idempotency_scope().stored().as_bytes());
    digest.update(b"\n");
    digest.update(target.as_str().as_bytes());
    digest.finalize().into()
}

/// What the writer's refusal means for the client.
pub(super) fn written(error: WriteError) -> CreateError {
    match error {
        WriteError::QueueFull => CreateError::Busy,
        WriteError::Stopped | WriteError::Unavailable(_) => CreateError::Unavailable(error.into()),
        WriteError::Failed(_) => CreateError::Failed(error.into()),
    }
}

/// A stored answer, sent again with `Idempotent-Replayed: true`.
fn replayed(stored: StoredAnswer) -> Result<Created, CreateError> {
    if !(100..=599).contains(&stored.status) {
        return Err(CreateError::Failed(CreateFailure::StoredStatus(
            stored.status,
        )));
    }
    Ok(Created::Replayed {
        status: stored.status,
        body: stored.body,
    })
}
