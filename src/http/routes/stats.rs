//! `GET|HEAD /{code}/stats`: totals and the daily series of a link's clicks.

use http::StatusCode;
use serde::Serialize;

use super::{find_link, json_response, rfc3339};
use crate::app::App;
use crate::http::{ApiError, Response};

/// Days of the daily series returned: the most recent year. Totals cover every day.
const SERIES_DAYS: usize = 366;

#[derive(Serialize)]
struct StatsBody {
    code: String,
    url: String,
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

pub async fn handle(app: &App, code: &str) -> Response {
    match stats(app, code).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn stats(app: &App, code: &str) -> Result<Response, ApiError> {
    let link = find_link(app, code).await?;
    let days = app.db.daily_clicks(link.id).await?;
    let body = StatsBody {
        clicks: days.iter().map(|day| day.clicks).sum(),
        bot_clicks: days.iter().map(|day| day.bot_clicks).sum(),
        last_click_at: days.iter().map(|day| day.last_click_at).max().map(rfc3339),
        daily: days
            .iter()
            .skip(days.len().saturating_sub(SERIES_DAYS))
            .map(|day| Day {
                date: day.day.to_string(),
                clicks: day.clicks,
                bot_clicks: day.bot_clicks,
            })
            .collect(),
        code: link.code,
        url: link.target_url,
        created_at: rfc3339(link.created_at),
        expires_at: link.expires_at.map(rfc3339),
    };
    let json = serde_json::to_vec(&body).map_err(|_| ApiError::Internal)?;
    Ok(json_response(StatusCode::OK, json))
}
