//! `POST /shorten`: the request read into domain types, [`Creator::create`] called, its answer
//! rendered. The request and response JSON are this route's.
//!
//! [`Creator::create`]: crate::links::Creator::create

use std::num::NonZeroU64;

use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderValue, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::{json_response, rfc3339};
use crate::domain::{Alias, ExpiresAt, Fingerprint, IdempotencyKey, TargetUrl};
use crate::http::body::read_limited;
use crate::http::{ApiError, Response, State};
use crate::links::{Caller, Created, CreatedLink, Idempotency, NewLink, Reuse};
use crate::telemetry::Chain;

/// The request body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShortenRequest {
    url: String,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    max_visits: Option<NonZeroU64>,
    #[serde(default)]
    reuse: bool,
}

/// The 201 body, also stored with an Idempotency-Key and sent again to its retries.
#[derive(Serialize, Deserialize)]
struct ShortenResponse {
    code: String,
    short_url: String,
    url: String,
    created_at: String,
    expires_at: Option<String>,
}

pub async fn handle(state: &State, request: http::Request<Incoming>, caller: Caller) -> Response {
    match create(state, request, caller).await {
        Ok(created) => render(created),
        Err(error) => error.into_response(),
    }
}

async fn create(
    state: &State,
    request: http::Request<Incoming>,
    caller: Caller,
) -> Result<Created, ApiError> {
    require_json(request.headers())?;
    let key = idempotency_key(request.headers())?;
    let body = read_limited(request, state.settings.body_read_timeout).await?;
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|error| ApiError::InvalidJson(error.to_string()))?;
    let idempotency = key.map(|key| Idempotency {
        scope: caller.idempotency_scope(),
        key,
        fingerprint: Fingerprint::of_json(&json),
    });
    match new_link(json) {
        Ok(link) => Ok(state
            .creator
            .create(&caller, link, idempotency, answer_body)
            .await?),
        // A retry of a request that would no longer be read gets its first answer; another
        // body under a used key is refused as such.
        Err(invalid) => match &idempotency {
            Some(idempotency) => state.creator.replay(idempotency).await?.ok_or(invalid),
            None => Err(invalid),
        },
    }
}

/// The body read into the link it asks for.
pub(super) fn new_link(json: serde_json::Value) -> Result<NewLink, ApiError> {
    let request = ShortenRequest::deserialize(json)
        .map_err(|error| ApiError::InvalidRequest(format!("invalid request body: {error}")))?;
    Ok(NewLink {
        target: TargetUrl::parse(&request.url)?,
        alias: request.alias.as_deref().map(Alias::parse).transpose()?,
        expires_at: request
            .expires_at
            .as_deref()
            .map(ExpiresAt::parse)
            .transpose()?,
        max_visits: request.max_visits,
        reuse: if request.reuse {
            Reuse::Existing
        } else {
            Reuse::Never
        },
    })
}

pub(super) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
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

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
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

/// The 201 body of `link`.
fn answer_body(link: &CreatedLink) -> Result<String, serde_json::Error> {
    serde_json::to_string(&ShortenResponse {
        code: link.code.clone(),
        short_url: link.short_url.clone(),
        url: link.url.clone(),
        created_at: rfc3339(link.created_at),
        expires_at: link.expires_at.map(rfc3339),
    })
}

/// A 201 (or the stored status of a replay) with `Location: <short_url>`.
fn render(created: Created) -> Response {
    let (status, body, short_url, replayed) = match created {
        Created::New { link, body } => (StatusCode::CREATED, body, link.short_url, false),
        Created::Reused { link, body } => (StatusCode::OK, body, link.short_url, false),
        Created::Replayed { status, body } => {
            let stored = StatusCode::from_u16(status)
                .map_err(|error| Chain(&error).to_string())
                .and_then(|status| {
                    let answer = serde_json::from_str::<ShortenResponse>(&body)
                        .map_err(|error| Chain(&error).to_string())?;
                    Ok((status, answer.short_url))
                });
            match stored {
                Ok((status, short_url)) => (status, body, short_url, true),
                Err(error) => {
                    tracing::error!(%error, "create answered 500: its stored answer is unreadable");
                    return ApiError::Internal.into_response();
                }
            }
        }
    };
    let mut response = json_response(status, body);
    if let Ok(location) = HeaderValue::from_str(&short_url) {
        response.headers_mut().insert(LOCATION, location);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}
