//! `POST /shorten/batch`: up to 1000 creates in one request, each answered on its own, in
//! order, under one Idempotency-Key. The request takes one create token per item: a client
//! with fewer tokens than its batch needs is refused whole (429).

use std::num::NonZeroU32;

use http::StatusCode;
use http::header::HeaderValue;
use hyper::body::Incoming;
use serde::Serialize;

use super::json_response;
use super::manage::LinkBody;
use super::shorten::{idempotency_key, new_link, require_json};
use crate::domain::Fingerprint;
use crate::http::body::read_at_most;
use crate::http::problem::ProblemBody;
use crate::http::{ApiError, Response, State};
use crate::limits::{Decision, RateSpec};
use crate::links::{
    BatchCreated, BatchItem, Caller, Created, Idempotency, MAX_BATCH_ITEMS, NewLink,
};

/// The create limit's decision for the batch, for the answer's RateLimit fields.
pub type Limited = Option<(RateSpec, Decision)>;

#[derive(Serialize)]
struct BatchBody<'a> {
    results: Vec<ItemBody<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ItemBody<'a> {
    Link {
        status: u16,
        link: LinkBody<'a>,
    },
    Problem {
        status: u16,
        problem: ProblemBody<'static>,
    },
}

pub async fn handle(
    state: &State,
    request: http::Request<Incoming>,
    caller: Caller,
) -> (Response, Limited) {
    let mut limited = None;
    let answer = create(state, request, &caller, &mut limited).await;
    (answer.unwrap_or_else(ApiError::into_response), limited)
}

async fn create(
    state: &State,
    request: http::Request<Incoming>,
    caller: &Caller,
    limited: &mut Limited,
) -> Result<Response, ApiError> {
    require_json(request.headers())?;
    let key = idempotency_key(request.headers())?;
    let body = read_at_most(
        request,
        state.settings.body_read_timeout,
        state.settings.batch_body_limit,
    )
    .await?;
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|error| ApiError::InvalidJson(error.to_string()))?;
    let idempotency = key.map(|key| Idempotency {
        scope: caller.idempotency_scope(),
        key,
        fingerprint: Fingerprint::of_json(&json),
    });
    let items = match items(json) {
        Ok(items) => items,
        // A retry of a request that would no longer be read gets its first answer.
        Err(invalid) => {
            return match &idempotency {
                Some(idempotency) => match state.creator.replay(idempotency).await? {
                    Some(Created::Replayed { status, body }) => Ok(replayed(status, body)),
                    _ => Err(invalid),
                },
                None => Err(invalid),
            };
        }
    };
    let cost = NonZeroU32::new(items.len() as u32).unwrap_or(NonZeroU32::MIN);
    *limited = state.limits.check_create(caller.limit_key(), cost).await;
    if let Some((_, decision)) = limited
        && !decision.allowed
    {
        return Err(ApiError::RateLimited(decision.retry_after_seconds));
    }
    // Items the edge could not read keep their place: the use case makes the others, and the
    // answer (written in its transaction) weaves both back together.
    let (valid, refused): (Vec<_>, Vec<_>) = items
        .into_iter()
        .enumerate()
        .partition(|(_, item)| item.is_ok());
    let valid: Vec<NewLink> = valid
        .into_iter()
        .filter_map(|(_, item)| item.ok())
        .collect();
    let refused: Vec<(usize, ApiError)> = refused
        .into_iter()
        .filter_map(|(at, item)| item.err().map(|error| (at, error)))
        .collect();
    let render = |made: &[BatchItem]| render(made, &refused);
    match state
        .creator
        .create_batch(caller, valid, idempotency, &render)
        .await?
    {
        BatchCreated::Answered { body, .. } => Ok(json_response(StatusCode::OK, body)),
        BatchCreated::Replayed { status, body } => Ok(replayed(status, body)),
    }
}

/// The body read into its items: each a link to make, or why it cannot be read.
fn items(json: serde_json::Value) -> Result<Vec<Result<NewLink, ApiError>>, ApiError> {
    let serde_json::Value::Object(mut fields) = json else {
        return Err(invalid("the body must be a JSON object with `items`"));
    };
    let Some(serde_json::Value::Array(items)) = fields.remove("items") else {
        return Err(invalid("`items` must be an array of create bodies"));
    };
    if let Some(other) = fields.keys().next() {
        return Err(invalid(&format!(
            "unknown field `{other}`; expected `items`"
        )));
    }
    if items.is_empty() || items.len() > MAX_BATCH_ITEMS {
        return Err(invalid(&format!(
            "`items` must hold 1 to {MAX_BATCH_ITEMS} create bodies, not {}",
            items.len()
        )));
    }
    Ok(items.into_iter().map(new_link).collect())
}

fn invalid(detail: &str) -> ApiError {
    ApiError::InvalidRequest(format!("invalid request body: {detail}"))
}

/// The answer: the items made (or not) by the use case, and those refused at the edge, in
/// the request's order.
fn render(made: &[BatchItem], refused: &[(usize, ApiError)]) -> Result<String, serde_json::Error> {
    let mut made = made.iter();
    let mut refused = refused.iter().peekable();
    let mut results = Vec::with_capacity(made.len() + refused.len());
    loop {
        let at = results.len();
        let item = match refused.next_if(|(place, _)| *place == at) {
            Some((_, error)) => problem(error),
            None => match made.next() {
                Some(BatchItem::Created(link)) => ItemBody::Link {
                    status: StatusCode::CREATED.as_u16(),
                    link: LinkBody::of(link),
                },
                Some(BatchItem::Reused(link)) => ItemBody::Link {
                    status: StatusCode::OK.as_u16(),
                    link: LinkBody::of(link),
                },
                Some(BatchItem::Refused(error)) => problem(&ApiError::of_item(error)),
                None => break,
            },
        };
        results.push(item);
    }
    serde_json::to_string(&BatchBody { results })
}

fn problem(error: &ApiError) -> ItemBody<'static> {
    let problem = error.problem(None);
    ItemBody::Problem {
        status: problem.status,
        problem,
    }
}

/// A batch's stored answer, sent again.
fn replayed(status: u16, body: String) -> Response {
    let mut response = json_response(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body);
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}
