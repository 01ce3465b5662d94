//! The create use case: validate, take an id, make the code, hand the row (with its
//! idempotency record) to the group-commit writer, and fill the new link into the caches once
//! it is committed.

use std::sync::Arc;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;

use super::idempotency::{fingerprint, replay_or_refuse};
use super::writer::{CreateWriter, WriteError};
use super::{LinkCache, RemoteCache, ResolvedLink};
use crate::domain::{
    Alias, AliasError, ExpiresAt, ExpiryError, IdempotencyKey, TargetUrl, UrlError, UrlPolicy,
    now_micros,
};
use crate::ids::{CodeCodec, IdGenerator};
use crate::storage::{BatchKey, BatchRow, Db, LinkRecord, RowOutcome, StorageError, StoredAnswer};

/// Fresh ids tried when one collides (an id reissued after a clock step, or a generated code
/// that an alias took first): each retry is astronomically less likely than the one before.
const MAX_ID_ATTEMPTS: usize = 3;

/// A create as the HTTP layer received it.
pub struct CreateRequest<'a> {
    /// Whose Idempotency-Key this is (the client IP): one client cannot replay another's answers.
    pub scope: &'a str,
    pub key: Option<IdempotencyKey>,
    /// The body, already known to be JSON. It is checked against the request schema only
    /// after a stored answer was looked up, so a retry gets its first answer even if the
    /// request would no longer validate (an `expires_at` now in the past).
    pub json: serde_json::Value,
}

/// Whether an answer is fresh or a replay of a stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    Fresh,
    Replayed,
}

/// What a create answers: the status and JSON body to send, and the short URL for `Location`.
pub struct Created {
    pub status: StatusCode,
    pub body: String,
    pub short_url: String,
    pub replay: Replay,
}

#[derive(Debug, Error)]
pub enum CreateError {
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Alias(#[from] AliasError),
    #[error(transparent)]
    Expiry(#[from] ExpiryError),
    #[error("the alias '{0}' is already taken")]
    AliasTaken(String),
    #[error("a request with this Idempotency-Key is still being processed")]
    KeyInUse,
    #[error("this Idempotency-Key was already used with a different request body")]
    KeyReused,
    #[error("this instance holds no worker id")]
    NoWorkerId,
    #[error("too many creates are waiting to be written")]
    Busy,
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("create failed: {0}")]
    Internal(&'static str),
}

/// The request body of `POST /shorten`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShortenRequest {
    url: String,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

/// The 201 body, also stored for replays.
#[derive(Serialize, Deserialize)]
struct ShortenResponse {
    code: String,
    short_url: String,
    url: String,
    created_at: String,
    expires_at: Option<String>,
}

/// A request that passed validation.
struct ValidRequest {
    target: TargetUrl,
    alias: Option<Alias>,
    expires_at: Option<OffsetDateTime>,
}

/// Creates links. Cheap to share behind the application state.
pub struct Creator {
    db: Db,
    writer: Arc<CreateWriter>,
    ids: Arc<IdGenerator>,
    codec: CodeCodec,
    cache: Arc<LinkCache>,
    url_policy: UrlPolicy,
    /// Without a trailing slash.
    public_base_url: String,
    /// The Redis tier, written through on create.
    remote: Option<Arc<RemoteCache>>,
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
        }
    }

    /// Writes every created link through to `remote` (Redis).
    pub fn with_remote(mut self, remote: Option<Arc<RemoteCache>>) -> Self {
        self.remote = remote;
        self
    }

    pub async fn create(&self, request: CreateRequest<'_>) -> Result<Created, CreateError> {
        let fingerprint = fingerprint(&request.json)?;
        let now = now_micros();
        let valid = match self.validate(&request.json, now) {
            Ok(valid) => valid,
            // A retry gets its first answer even if the request would no longer validate (an
            // `expires_at` now in the past).
            Err(error) => {
                let stored = self.stored_replay(&request, &fingerprint).await?;
                return stored.ok_or(error);
            }
        };

        for _ in 0..MAX_ID_ATTEMPTS {
            let Some(id) = self.ids.next_id() else {
                // Without a worker id no link can be made, but a retry can still be answered.
                let stored = self.stored_replay(&request, &fingerprint).await?;
                return stored.ok_or(CreateError::NoWorkerId);
            };
            let code = match &valid.alias {
                Some(alias) => alias.as_str().to_owned(),
                None => String::from_utf8_lossy(&self.codec.encode(id)).into_owned(),
            };
            let answer = ShortenResponse {
                short_url: format!("{}/{}", self.public_base_url, code),
                url: valid.target.as_str().to_owned(),
                created_at: rfc3339(now),
                expires_at: valid.expires_at.map(rfc3339),
                code,
            };
            let body =
                serde_json::to_string(&answer).map_err(|_| CreateError::Internal("answer JSON"))?;
            let row = BatchRow {
                id,
                code: answer.code.clone(),
                target_url: valid.target.as_str().to_owned(),
                created_at: now,
                expires_at: valid.expires_at,
                key: request.key.as_ref().map(|key| BatchKey {
                    scope: request.scope.to_owned(),
                    key: key.as_str().to_owned(),
                    fingerprint: fingerprint.to_vec(),
                    status: StatusCode::CREATED.as_u16(),
                    body: body.clone(),
                }),
            };
            let outcome = self
                .writer
                .write(row.clone())
                .await
                .map_err(|error| match error {
                    WriteError::QueueFull => CreateError::Busy,
                    WriteError::Stopped => CreateError::Storage(StorageError::Unavailable(
                        "the service is shutting down".into(),
                    )),
                    WriteError::Unavailable => CreateError::Storage(StorageError::Unavailable(
                        "the create batch was not written".into(),
                    )),
                    WriteError::Failed => CreateError::Internal("the create batch failed"),
                })?;
            match outcome {
                RowOutcome::Created => {
                    self.fill_cache(row).await;
                    return Ok(Created {
                        status: StatusCode::CREATED,
                        body,
                        short_url: answer.short_url,
                        replay: Replay::Fresh,
                    });
                }
                RowOutcome::Stored(stored) => {
                    return replayed(replay_or_refuse(stored, &fingerprint)?);
                }
                RowOutcome::KeyInUse => return Err(CreateError::KeyInUse),
                RowOutcome::CodeTaken if valid.alias.is_some() => {
                    return Err(CreateError::AliasTaken(answer.code));
                }
                RowOutcome::CodeTaken | RowOutcome::IdTaken => {
                    tracing::warn!(
                        id,
                        "generated id or code already in use; retrying with a fresh id"
                    );
                }
            }
        }
        Err(CreateError::Internal("no free id after several attempts"))
    }

    /// The answer stored for the request's key, sent again, if a request with that key was
    /// answered before (none without a key).
    async fn stored_replay(
        &self,
        request: &CreateRequest<'_>,
        fingerprint: &[u8; 32],
    ) -> Result<Option<Created>, CreateError> {
        let Some(key) = &request.key else {
            return Ok(None);
        };
        match self.db.stored_answer(request.scope, key.as_str()).await? {
            Some(stored) => replayed(replay_or_refuse(stored, fingerprint)?).map(Some),
            None => Ok(None),
        }
    }

    fn validate(
        &self,
        json: &serde_json::Value,
        now: OffsetDateTime,
    ) -> Result<ValidRequest, CreateError> {
        let request = ShortenRequest::deserialize(json)
            .map_err(|error| CreateError::InvalidBody(error.to_string()))?;
        Ok(ValidRequest {
            target: TargetUrl::parse(&request.url, &self.url_policy)?,
            alias: request.alias.as_deref().map(Alias::parse).transpose()?,
            expires_at: request
                .expires_at
                .as_deref()
                .map(|raw| ExpiresAt::parse(raw, now).map(ExpiresAt::get))
                .transpose()?,
        })
    }

    /// The new link is served from this instance's memory at once, and an earlier "no such
    /// code" here is forgotten.
    async fn fill_cache(&self, row: BatchRow) {
        let record = LinkRecord {
            id: row.id,
            code: row.code,
            target_url: row.target_url,
            created_at: row.created_at,
            expires_at: row.expires_at,
            disabled_at: None,
        };
        if let Some(remote) = &self.remote {
            remote.write_through(&record.code, &record).await;
        }
        let code = record.code.clone();
        let resolved = ResolvedLink::from_record(record);
        self.cache.created(&code, resolved).await;
    }
}

/// A stored answer, sent again with `Idempotent-Replayed: true`.
fn replayed(stored: StoredAnswer) -> Result<Created, CreateError> {
    let status =
        StatusCode::from_u16(stored.status).map_err(|_| CreateError::Internal("stored status"))?;
    let answer: ShortenResponse = serde_json::from_str(&stored.body)
        .map_err(|_| CreateError::Internal("stored answer JSON"))?;
    Ok(Created {
        status,
        body: stored.body,
        short_url: answer.short_url,
        replay: Replay::Replayed,
    })
}

fn rfc3339(instant: OffsetDateTime) -> String {
    instant
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
