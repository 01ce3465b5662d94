//! `POST /shorten`: validate, take an id, insert (with the idempotency record), answer 201.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderValue, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{json_response, rfc3339};
use crate::app::App;
use crate::domain::{Alias, ExpiresAt, IdempotencyKey, TargetUrl, now_micros};
use crate::http::body::read_limited;
use crate::http::{ApiError, Response};
use crate::storage::{CreateOutcome, IdempotentRequest, NewLink, StoredAnswer};

/// Fresh ids tried when one collides (an id reissued after a clock step, or a generated code
/// that an alias took first): each retry is astronomically less likely than the one before.
const MAX_ID_ATTEMPTS: usize = 3;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShortenRequest {
    url: String,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

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
    /// See [`parse_json`].
    fingerprint: [u8; 32],
}

pub async fn handle(app: &App, request: http::Request<Incoming>, peer: SocketAddr) -> Response {
    match create(app, request, peer).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn create(
    app: &App,
    request: http::Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response, ApiError> {
    require_json(request.headers())?;
    let key = idempotency_key(request.headers())?;
    let scope = app.client_ip(peer, request.headers()).get().to_string();
    let body = read_limited(request).await?;
    let (json, fingerprint) = parse_json(&body)?;
    // A retry is answered from the stored response before anything else is checked, so it
    // gets its first answer even if the link has expired or no id could be issued since.
    if let Some(key) = &key
        && let Some(stored) = app.db.stored_answer(&scope, key.as_str()).await?
    {
        return replay_or_refuse(stored, &fingerprint);
    }
    let now = now_micros();
    let valid = validate(app, json, fingerprint, now)?;

    for _ in 0..MAX_ID_ATTEMPTS {
        let id = app.ids.next_id().ok_or_else(|| {
            tracing::warn!("no worker id lease held; refusing creates");
            ApiError::Unavailable
        })?;
        let code = match &valid.alias {
            Some(alias) => alias.as_str().to_owned(),
            None => String::from_utf8_lossy(&app.codec.encode(id)).into_owned(),
        };
        let answer = ShortenResponse {
            short_url: format!("{}/{}", app.public_base_url, code),
            url: valid.target.as_str().to_owned(),
            created_at: rfc3339(now),
            expires_at: valid.expires_at.map(rfc3339),
            code,
        };
        let answer_json = serde_json::to_string(&answer).map_err(|_| ApiError::Internal)?;
        let link = NewLink {
            id,
            code: &answer.code,
            target_url: valid.target.as_str(),
            created_at: now,
            expires_at: valid.expires_at,
        };
        let idempotency = key.as_ref().map(|key| IdempotentRequest {
            scope: &scope,
            key: key.as_str(),
            fingerprint: &valid.fingerprint,
            status: StatusCode::CREATED.as_u16(),
            body: &answer_json,
        });
        match app.db.create_link(&link, idempotency.as_ref()).await? {
            CreateOutcome::Created => {
                return Ok(created(
                    StatusCode::CREATED,
                    answer_json,
                    &answer.short_url,
                    false,
                ));
            }
            CreateOutcome::Stored(stored) => return replay_or_refuse(stored, &valid.fingerprint),
            CreateOutcome::KeyInUse => return Err(ApiError::IdempotencyKeyInUse),
            CreateOutcome::CodeTaken if valid.alias.is_some() => {
                return Err(ApiError::AliasTaken(answer.code));
            }
            CreateOutcome::CodeTaken | CreateOutcome::IdTaken => {
                tracing::warn!(
                    id,
                    "generated id or code already in use; retrying with a fresh id"
                );
            }
        }
    }
    Err(ApiError::Internal)
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let media_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    match media_type {
        Some(media_type) if media_type.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::InvalidRequest(
            "send one Idempotency-Key header, not several".into(),
        ));
    }
    Ok(Some(IdempotencyKey::parse(value.as_bytes())?))
}

/// The body as JSON and its fingerprint: SHA-256 of its canonical form (serde_json's maps
/// are ordered by key, and it writes no white space).
fn parse_json(body: &Bytes) -> Result<(serde_json::Value, [u8; 32]), ApiError> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| ApiError::InvalidJson(error.to_string()))?;
    let canonical = serde_json::to_vec(&json).map_err(|_| ApiError::Internal)?;
    Ok((json, Sha256::digest(&canonical).into()))
}

fn replay_or_refuse(stored: StoredAnswer, fingerprint: &[u8; 32]) -> Result<Response, ApiError> {
    if stored.fingerprint != fingerprint {
        return Err(ApiError::IdempotencyKeyReused);
    }
    let status = StatusCode::from_u16(stored.status).map_err(|_| ApiError::Internal)?;
    let answer: ShortenResponse =
        serde_json::from_str(&stored.body).map_err(|_| ApiError::Internal)?;
    Ok(created(status, stored.body, &answer.short_url, true))
}

fn validate(
    app: &App,
    json: serde_json::Value,
    fingerprint: [u8; 32],
    now: OffsetDateTime,
) -> Result<ValidRequest, ApiError> {
    let request: ShortenRequest = serde_json::from_value(json)
        .map_err(|error| ApiError::InvalidRequest(format!("invalid request body: {error}")))?;
    Ok(ValidRequest {
        target: TargetUrl::parse(&request.url, &app.url_policy)?,
        alias: request.alias.as_deref().map(Alias::parse).transpose()?,
        expires_at: request
            .expires_at
            .as_deref()
            .map(|raw| ExpiresAt::parse(raw, now).map(ExpiresAt::get))
            .transpose()?,
        fingerprint,
    })
}

/// A 201 (or the stored status of a replay) with `Location: <short_url>`.
fn created(status: StatusCode, body: String, short_url: &str, replayed: bool) -> Response {
    let mut response = json_response(status, body);
    if let Ok(location) = HeaderValue::from_str(short_url) {
        response.headers_mut().insert(LOCATION, location);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}
