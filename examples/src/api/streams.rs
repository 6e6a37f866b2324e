//! The streaming routes: logs (NDJSON or SSE) and platform events (SSE).

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cameleer_runtime::{AppRef, LogLine, LogOptions, Platform, PlatformEvent, TenantId};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ApiError;
use super::error::ErrorBody;
use super::extract::{ApiPath, ApiQuery};
use super::openapi::{EnvPath, EventStream, TenantPath};
use super::shutdown::endless;
use utoipa::IntoParams;

/// The query of `GET …/logs`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// Lines at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Keep the stream open for new lines (default false).
    #[serde(default)]
    #[param(value_type = Option<bool>)]
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
/// With a log store ([`LogsApi`](super::logs::LogsApi)), the history comes
/// from the store first ([`logs_with_store`](super::logs::logs_with_store)).
///
/// An error after the first line cannot change the status any more; it is
/// sent as a last line `{"error": {...}}` (or an SSE `error` event).
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/apps/{app}/envs/{env}/logs",
    tag = "logs",
    params(EnvPath, LogQuery),
    responses(
        (status = 200, description = "The lines: NDJSON `{ts, stream, line}`, or SSE `log` events with `Accept: text/event-stream`; an error after the first line is a last `{\"error\": ...}` line (an SSE `error` event)",
            content(
                (LogLine = "application/x-ndjson"),
                (EventStream = "text/event-stream"),
            )),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 404, description = "`not_found`: nothing runs here", body = ErrorBody),
        (status = 503, description = "`log_store_unavailable`", body = ErrorBody),
    )
)]
pub async fn logs(
    State(platform): State<Platform>,
    store: Option<Extension<super::logs::LogsApi>>,
    ApiPath((tenant, app, env)): ApiPath<(String, String, String)>,
    ApiQuery(query): ApiQuery<LogQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let app = AppRef::parse(&tenant, &app, &env)?;
    let options = parse_query(&query)?;
    let follow = options.follow;
    let response = if let Some(Extension(store)) = store {
        super::logs::logs_with_store(platform, store, app, options, wants_sse(&headers)).await?
    } else {
        let lines = platform.logs(&app, options).await?;
        respond(
            lines.map(|l| l.map_err(ApiError::from)),
            wants_sse(&headers),
        )
    };
    // A follow streams until the client leaves, or the server stops.
    Ok(if follow { endless(response) } else { response })
}

/// The response of a log route: SSE `log` events (an `error` event for an
/// error), or NDJSON lines (a last `{"error": {...}}` line for an error).
pub(crate) fn respond(
    lines: impl Stream<Item = Result<LogLine, ApiError>> + Send + 'static,
    sse: bool,
) -> Response {
    if sse {
        let events = lines.map(|item| {
            Ok::<_, Infallible>(match item {
                Ok(line) => Event::default()
                    .event("log")
                    .json_data(&line)
                    .unwrap_or_default(),
                Err(e) => Event::default()
                    .event("error")
                    .json_data(e.body())
                    .unwrap_or_default(),
            })
        });
        return sse_response(events);
    }
    let body = lines.map(|item| {
        let mut buf = match item {
            Ok(line) => serde_json::to_vec(&line),
            Err(e) => serde_json::to_vec(&e.body()),
        }
        .unwrap_or_default();
        buf.push(b'\n');
        Ok::<_, Infallible>(buf)
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response()
}

/// An SSE response of `events`, kept alive with a comment every 15 s.
fn sse_response(
    events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Response {
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// An events route's response: `events` as SSE, cut at shutdown (see
/// [`endless`]).
fn event_stream(events: impl Stream<Item = PlatformEvent> + Send + 'static) -> Response {
    endless(sse_response(events.map(|event| Ok(sse_of(&event)))))
}

/// The SSE event of a platform event: named by its `type`, the JSON of the
/// event as data (`lagged` carries `{"type": "lagged", "missed": N}`).
pub(crate) fn sse_of(event: &PlatformEvent) -> Event {
    let name = match event {
        PlatformEvent::Status(_) => "status",
        PlatformEvent::BuildProgress(_) => "build_progress",
        PlatformEvent::Unhealthy(_) => "unhealthy",
        PlatformEvent::Lagged { .. } => "lagged",
    };
    Event::default()
        .event(name)
        .json_data(event)
        .unwrap_or_default()
}

/// The events a client of `app`'s event route gets: the app's own, and
/// every `lagged` marker (the missed events may have been the app's).
pub(crate) fn events_of(
    events: impl Stream<Item = PlatformEvent>,
    app: AppRef,
) -> impl Stream<Item = PlatformEvent> {
    events.filter(move |event| {
        let keep = event.app().is_none_or(|a| a == &app);
        std::future::ready(keep)
    })
}

/// The events of every app and environment of `tenant`, and every
/// `lagged` marker.
pub(crate) fn events_of_tenant(
    events: impl Stream<Item = PlatformEvent>,
    tenant: TenantId,
) -> impl Stream<Item = PlatformEvent> {
    events.filter(move |event| {
        let keep = event.app().is_none_or(|a| a.tenant == tenant);
        std::future::ready(keep)
    })
}

/// `GET /api/v1/tenants/{tenant}/events`: the events of the app route below
/// for every app and environment of the tenant, on one connection (a
/// dashboard's overview; browsers allow few connections per server).
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/events",
    tag = "apps",
    params(TenantPath),
    responses(
        (status = 200, description = "SSE of every app and environment of the tenant", content_type = "text/event-stream", body = EventStream),
    )
)]
pub async fn tenant_events(
    State(platform): State<Platform>,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Response, ApiError> {
    let tenant: TenantId = tenant.parse()?;
    Ok(event_stream(events_of_tenant(platform.subscribe(), tenant)))
}

/// `GET …/events`: SSE of the app's status changes, build progress and
/// health warnings. A client that falls behind gets a `lagged` event
/// (`{"type": "lagged", "missed": N}`) in place of the events it missed, and
/// should re-read the status.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/apps/{app}/envs/{env}/events",
    tag = "apps",
    params(EnvPath),
    responses(
        (status = 200, description = "SSE of the app's status changes, build progress and health warnings", content_type = "text/event-stream", body = EventStream),
    )
)]
pub async fn events(
    State(platform): State<Platform>,
    ApiPath((tenant, app, env)): ApiPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    let app = AppRef::parse(&tenant, &app, &env)?;
    Ok(event_stream(events_of(platform.subscribe(), app)))
}

#[cfg(test)]
mod tests {
    use cameleer_runtime::{BuildProgressEvent, DeploymentId};

    use super::*;

    fn progress(app: &str) -> PlatformEvent {
        PlatformEvent::BuildProgress(BuildProgressEvent {
            deployment: DeploymentId::new_random(),
            app: AppRef::parse("acme", app, "dev").unwrap(),
            version: 1,
            message: "step".into(),
            at: OffsetDateTime::UNIX_EPOCH,
        })
    }

    #[tokio::test]
    async fn an_apps_stream_keeps_its_events_and_every_lagged_marker() {
        let all = futures::stream::iter([
            progress("billing"),
            PlatformEvent::Lagged { missed: 3 },
            progress("orders"),
        ]);
        let orders = AppRef::parse("acme", "orders", "dev").unwrap();
        let kept: Vec<_> = events_of(all, orders.clone()).collect().await;
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!(kept[0], PlatformEvent::Lagged { missed: 3 });
        assert_eq!(kept[1].app(), Some(&orders));
    }

    #[tokio::test]
    async fn a_tenants_stream_keeps_every_app_of_the_tenant_and_no_other() {
        let other = PlatformEvent::BuildProgress(BuildProgressEvent {
            app: AppRef::parse("globex", "orders", "dev").unwrap(),
            ..match progress("orders") {
                PlatformEvent::BuildProgress(p) => p,
                _ => unreachable!(),
            }
        });
        let all = futures::stream::iter([
            progress("billing"),
            other,
            PlatformEvent::Lagged { missed: 1 },
            progress("orders"),
        ]);
        let kept: Vec<_> = events_of_tenant(all, "acme".parse().unwrap())
            .collect()
            .await;
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert_eq!(kept[0].app().unwrap().app.as_str(), "billing");
        assert_eq!(kept[1], PlatformEvent::Lagged { missed: 1 });
        assert_eq!(kept[2].app().unwrap().app.as_str(), "orders");
    }
}
