//! The streaming routes: logs (NDJSON or SSE) and platform events (SSE).

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cameleer_runtime::{AppRef, LogOptions, Platform, PlatformEvent};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::broadcast::error::RecvError;

use super::ApiError;

#[derive(Deserialize)]
pub(crate) struct LogQuery {
    since: Option<String>,
    #[serde(default)]
    follow: Option<String>,
}

fn wants_sse(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

fn parse_query(q: &LogQuery) -> Result<LogOptions, ApiError> {
    let bad = |field: &str, why: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("{field}: {why}"),
        )
    };
    let since = match &q.since {
        None => None,
        Some(s) => {
            let t = OffsetDateTime::parse(s, &Rfc3339)
                .map_err(|e| bad("since", format!("not an RFC 3339 time ({e})")))?;
            Some(SystemTime::from(t))
        }
    };
    let follow = match q.follow.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => {
            return Err(bad(
                "follow",
                format!("expected true or false, got {other:?}"),
            ));
        }
    };
    Ok(LogOptions { since, follow })
}

/// `GET …/logs`: NDJSON lines `{ts, stream, line}`, or SSE when asked.
///
/// An error after the first line cannot change the status any more; it is
/// sent as a last line `{"error": {...}}` (or an SSE `error` event).
pub async fn logs(
    State(platform): State<Platform>,
    Path((tenant, app, env)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let app = AppRef::parse(&tenant, &app, &env)?;
    let options = parse_query(&query)?;
    let lines = platform.logs(&app, options).await?;
    if wants_sse(&headers) {
        let events = lines.map(|item| {
            Ok::<_, Infallible>(match item {
                Ok(line) => Event::default()
                    .event("log")
                    .json_data(&line)
                    .unwrap_or_default(),
                Err(e) => Event::default()
                    .event("error")
                    .json_data(ApiError::from(e).body())
                    .unwrap_or_default(),
            })
        });
        return Ok(Sse::new(events)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response());
    }
    let body = lines.map(|item| {
        let mut buf = match item {
            Ok(line) => serde_json::to_vec(&line),
            Err(e) => serde_json::to_vec(&ApiError::from(e).body()),
        }
        .unwrap_or_default();
        buf.push(b'\n');
        Ok::<_, Infallible>(buf)
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
}

fn sse_of(event: &PlatformEvent) -> Event {
    let name = match event {
        PlatformEvent::Status(_) => "status",
        PlatformEvent::BuildProgress(_) => "build_progress",
        PlatformEvent::Unhealthy(_) => "unhealthy",
    };
    Event::default()
        .event(name)
        .json_data(event)
        .unwrap_or_default()
}

/// `GET …/events`: SSE of the app's status changes, build progress and
/// health warnings. A client that falls behind gets a `lagged` event and
/// should re-read the status.
pub async fn events(
    State(platform): State<Platform>,
    Path((tenant, app, env)): Path<(String, String, String)>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let app = AppRef::parse(&tenant, &app, &env)?;
    let rx = platform.subscribe();
    let stream = futures::stream::unfold((rx, app), |(mut rx, app)| async move {
        loop {
            match rx.recv().await {
                Ok(event) if event.app() == &app => return Some((Ok(sse_of(&event)), (rx, app))),
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => {
                    let ev = Event::default().event("lagged").data(n.to_string());
                    return Some((Ok(ev), (rx, app)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
