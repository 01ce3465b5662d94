//! `GET|HEAD /{code}/stats`: totals and the daily series of a link's clicks.

use http::StatusCode;
use serde::Serialize;

use super::{json_response, rfc3339};
use crate::domain::Code;
use crate::http::{ApiError, Response, State};
use crate::links::{Caller, LinkStats};

/// Days of the daily series returned: the most recent year. Totals cover every day.
const SERIES_DAYS: usize = 366;

#[derive(Serialize)]
struct StatsBody<'a> {
    code: &'a str,
    /// Left out for a link with a visit limit, but for its owner or an admin.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    created_at: String,
    expires_at: Option<String>,
    clicks: i64,
    bot_clicks: i64,
    last_click_at: Option<String>,
    daily: Vec<Day>,
}

#[derive(Serialize)]
struct Day {
    date: String,
    clicks: i64,
    bot_clicks: i64,
}

pub async fn handle(state: &State, code: &Code, caller: Caller) -> Response {
    match state.resolver.stats(code, caller.holder()).await {
        Ok(stats) => render(code.as_str(), &stats),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// `code` is the path's: a lookup matches the stored code exactly.
fn render(code: &str, stats: &LinkStats) -> Response {
    let (link, days) = (&stats.link, &stats.days);
    let body = StatsBody {
        code,
        url: stats.url_shown.then(|| link.target_url()),
        created_at: rfc3339(link.created_at),
        expires_at: link.expires_at.map(rfc3339),
        clicks: stats.clicks,
        bot_clicks: stats.bot_clicks,
        last_click_at: stats.last_click_at.map(rfc3339),
        daily: days
            .iter()
            .skip(days.len().saturating_sub(SERIES_DAYS))
            .map(|day| Day {
                date: day.day.to_string(),
                clicks: day.clicks,
                bot_clicks: day.bot_clicks,
            })
            .collect(),
    };
    match serde_json::to_vec(&body) {
        Ok(json) => json_response(StatusCode::OK, json),
        Err(error) => {
            tracing::error!(error = %crate::telemetry::Chain(&error), "stats answered 500: the body could not be written");
            ApiError::Internal.into_response()
        }
    }
}
