//! The log routes over a [`LogStore`]: an app's history from the store,
//! then its live lines; a search page; the forwarder's stats.
//!
//! They are served when the router carries a [`LogsApi`] (the server adds
//! one as an `Extension`); without it, `…/logs` reads the backend only,
//! and the other two answer 404 `log_store_not_configured`.

use std::sync::Arc;

use axum::Json;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::response::Response;
use cameleer_runtime::logs::{
    ForwarderStats, LogCursor, LogForwarder, LogOrder, LogQuery, LogStore, LogStoreError,
    StoredLine,
};
use cameleer_runtime::{AppRef, LogLine, LogOptions, LogSource, Platform};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ApiError;
use super::error::ErrorBody;
use super::extract::{ApiPath, ApiQuery};
use super::openapi::EnvPath;
use utoipa::{IntoParams, ToSchema};

/// Lines the history of `GET …/logs` holds without `since`: the newest.
pub const DEFAULT_TAIL: usize = 1000;

/// What the log routes need: the store and the forwarder that fills it.
#[derive(Clone)]
pub struct LogsApi {
    /// Where the lines are.
    pub store: Arc<dyn LogStore>,
    /// What fills it.
    pub forwarder: LogForwarder,
}

impl std::fmt::Debug for LogsApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogsApi")
            .field("store", &self.store.name())
            .finish_non_exhaustive()
    }
}

impl From<LogStoreError> for ApiError {
    fn from(e: LogStoreError) -> Self {
        let status = match &e {
            LogStoreError::InvalidQuery { .. } | LogStoreError::InvalidCursor(_) => {
                StatusCode::BAD_REQUEST
            }
            LogStoreError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

fn not_configured() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "log_store_not_configured",
        "this server keeps no log store (start it with --log-store)",
    )
}

fn bad(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        format!("{field}: {why}"),
    )
}

fn time_param(field: &str, v: &Option<String>) -> Result<Option<OffsetDateTime>, ApiError> {
    v.as_deref()
        .map(|s| {
            OffsetDateTime::parse(s, &Rfc3339)
                .map_err(|e| bad(field, format!("not an RFC 3339 time ({e})")))
        })
        .transpose()
}

/// The query of `GET …/logs/search`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Text the line contains (substring).
    q: Option<String>,
    /// Lines at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// Lines before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// `stdout` or `stderr`.
    #[param(value_type = Option<LogSource>, inline)]
    stream: Option<String>,
    /// Lines of this version only.
    #[param(value_type = Option<u64>)]
    version: Option<String>,
    /// The `next` of the previous page (empty: the first page).
    cursor: Option<String>,
    /// Lines per page, 1 to 10000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    limit: Option<String>,
    /// `newest` (the default) or `oldest` first.
    #[param(value_type = Option<SearchOrder>, inline)]
    order: Option<String>,
}

/// The order of a search page.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // a schema only: the query is parsed by hand
enum SearchOrder {
    /// Newest first.
    Newest,
    /// Oldest first.
    Oldest,
}

/// One line of a search page.
#[derive(Debug, Serialize, ToSchema)]
pub struct FoundLine {
    /// When it was written.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub ts: OffsetDateTime,
    /// stdout or stderr.
    pub stream: LogSource,
    /// The text.
    pub line: String,
    /// The version that wrote it.
    pub version: u64,
    /// Its deployment.
    pub deployment: String,
    /// The instance that wrote it, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
}

impl From<StoredLine> for FoundLine {
    fn from(l: StoredLine) -> Self {
        Self {
            ts: l.timestamp,
            stream: l.stream,
            line: l.line,
            version: l.version,
            deployment: l.deployment.to_string(),
            instance: l.instance,
        }
    }
}

/// A search page: `{"lines": [...], "next": "cursor" | null}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchPage {
    /// The lines, newest first unless `order=oldest`.
    pub lines: Vec<FoundLine>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next: Option<String>,
}

fn search_query(app: AppRef, p: &SearchParams) -> Result<LogQuery, ApiError> {
    let mut q = LogQuery::new(app);
    q.text = p.q.clone().filter(|t| !t.is_empty());
    q.from = time_param("from", &p.from)?;
    q.to = time_param("to", &p.to)?;
    q.stream = match p.stream.as_deref() {
        None | Some("") => None,
        Some("stdout") => Some(LogSource::Stdout),
        Some("stderr") => Some(LogSource::Stderr),
        Some(o) => return Err(bad("stream", format!("stdout or stderr, got {o:?}"))),
    };
    q.version = p
        .version
        .as_deref()
        .map(|v| {
            v.parse()
                .map_err(|_| bad("version", format!("not a version number: {v:?}")))
        })
        .transpose()?;
    if let Some(l) = p.limit.as_deref() {
        q.limit = l
            .parse()
            .map_err(|_| bad("limit", format!("not a number: {l:?}")))?;
    }
    // An empty cursor (a form's empty field) is the first page.
    q.cursor = p
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(str::parse::<LogCursor>)
        .transpose()?;
    q.order = match p.order.as_deref() {
        None | Some("newest") => LogOrder::NewestFirst,
        Some("oldest") => LogOrder::OldestFirst,
        Some(o) => return Err(bad("order", format!("newest or oldest, got {o:?}"))),
    };
    q.validate()?;
    Ok(q)
}

/// `GET …/envs/{env}/logs/search?q=&from=&to=&stream=&version=&cursor=&limit=&order=`:
/// one page of the app's stored lines, of every version, running or not.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/apps/{app}/envs/{env}/logs/search",
    tag = "logs",
    params(EnvPath, SearchParams),
    responses(
        (status = 200, description = "One page of the stored lines", body = SearchPage),
        (status = 400, description = "`invalid_query` or `invalid_cursor`", body = ErrorBody),
        (status = 404, description = "`log_store_not_configured`", body = ErrorBody),
        (status = 503, description = "`log_store_unavailable`", body = ErrorBody),
    )
)]
pub async fn search(
    logs: Option<Extension<LogsApi>>,
    ApiPath((tenant, app, env)): ApiPath<(String, String, String)>,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<Json<SearchPage>, ApiError> {
    let Extension(logs) = logs.ok_or_else(not_configured)?;
    let app = AppRef::parse(&tenant, &app, &env)?;
    let query = search_query(app, &params)?;
    let page = logs.store.query(&query).await?;
    Ok(Json(SearchPage {
        lines: page.lines.into_iter().map(FoundLine::from).collect(),
        next: page.next.map(|c| c.to_string()),
    }))
}

/// `GET /api/v1/log-forwarder`: what the forwarder stored, holds and lost.
#[utoipa::path(
    get,
    path = "/api/v1/log-forwarder",
    tag = "logs",
    responses(
        (status = 200, description = "What the forwarder stored, holds and lost", body = ForwarderStats),
        (status = 404, description = "`log_store_not_configured`", body = ErrorBody),
    )
)]
pub async fn forwarder_stats(
    logs: Option<Extension<LogsApi>>,
) -> Result<Json<ForwarderStats>, ApiError> {
    let Extension(logs) = logs.ok_or_else(not_configured)?;
    Ok(Json(logs.forwarder.stats()))
}

/// The history of `app` from the store, oldest first, as a stream of
/// pages: from `since`, or the newest [`DEFAULT_TAIL`] lines.
async fn history(
    store: Arc<dyn LogStore>,
    app: AppRef,
    since: Option<OffsetDateTime>,
) -> Result<impl Stream<Item = Result<StoredLine, LogStoreError>>, ApiError> {
    let mut first = LogQuery::new(app.clone());
    first.order = LogOrder::OldestFirst;
    first.limit = DEFAULT_TAIL;
    match since {
        Some(s) => first.from = Some(s),
        None => {
            // The start of the tail: the oldest of the newest lines.
            let mut tail = LogQuery::new(app);
            tail.limit = DEFAULT_TAIL;
            let newest = store.query(&tail).await?;
            if let Some(oldest) = newest.lines.last() {
                first.from = Some(oldest.timestamp);
            }
        }
    }
    // The first page is read now, so a dead store is an error status.
    let page = store.query(&first).await?;
    let pages = futures::stream::unfold(
        (Some(page), first, store),
        |(page, mut q, store)| async move {
            let page = match page {
                Some(p) => p,
                None => return None,
            };
            let lines: Vec<Result<StoredLine, LogStoreError>> =
                page.lines.into_iter().map(Ok).collect();
            let next = match page.next {
                None => None,
                Some(c) => {
                    q.cursor = Some(c);
                    match store.query(&q).await {
                        Ok(p) => Some(p),
                        Err(e) => {
                            let mut lines = lines;
                            lines.push(Err(e));
                            return Some((futures::stream::iter(lines), (None, q, store)));
                        }
                    }
                }
            };
            Some((futures::stream::iter(lines), (next, q, store)))
        },
    );
    Ok(pages.flatten())
}

/// A line as `GET …/logs` sends it: `{ts, stream, line}`.
fn log_line(l: StoredLine) -> LogLine {
    LogLine {
        ts: l.timestamp,
        stream: l.stream,
        line: l.line,
        instance: l.instance,
    }
}

/// `GET …/logs` with a store: the app's history from the store (every
/// version: from `since`, or the newest [`DEFAULT_TAIL`] lines), then, with
/// `follow`, the live lines the backend writes after the last one of the
/// history (without `follow`, those the backend holds now). Same formats
/// as without a store (NDJSON or SSE).
pub(crate) async fn logs_with_store(
    platform: Platform,
    logs: LogsApi,
    app: AppRef,
    options: LogOptions,
    sse: bool,
) -> Result<Response, ApiError> {
    let since = options.since.map(OffsetDateTime::from);
    let history = history(logs.store.clone(), app.clone(), since).await?;
    let live_from = std::sync::Arc::new(std::sync::Mutex::new(since));
    let seen = live_from.clone();
    let history = history.map(move |item| {
        item.map(|l| {
            *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(l.timestamp);
            log_line(l)
        })
        .map_err(ApiError::from)
    });
    // Then what the backend has beyond the store (the forwarder stores in
    // batches, a second or so behind), following it when asked.
    let live = futures::stream::once(async move {
        let after = *live_from.lock().unwrap_or_else(|p| p.into_inner());
        let read = LogOptions {
            since: after.map(Into::into),
            follow: options.follow,
        };
        match platform.logs(&app, read).await {
            // Lines up to the history's last time were in the history.
            Ok(lines) => lines
                .filter(move |l| {
                    let keep = match (l, after) {
                        (Ok(l), Some(a)) => l.ts > a,
                        _ => true,
                    };
                    std::future::ready(keep)
                })
                .map(|l| l.map_err(ApiError::from))
                .boxed(),
            // Nothing runs: the history was all there is.
            Err(e) if e.is_not_found() => futures::stream::empty().boxed(),
            Err(e) => futures::stream::iter([Err(ApiError::from(e))]).boxed(),
        }
    })
    .flatten();
    let lines = history.chain(live);
    Ok(super::streams::respond(lines, sse))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(cursor: &str) -> SearchParams {
        SearchParams {
            q: None,
            from: None,
            to: None,
            stream: None,
            version: None,
            cursor: Some(cursor.to_owned()),
            limit: None,
            order: None,
        }
    }

    // Found by schemathesis: `cursor=` (documented as any string) was 400.
    #[test]
    fn an_empty_cursor_is_the_first_page_and_a_bad_one_is_400() {
        let app = AppRef::parse("acme", "orders", "dev").unwrap();
        let q = search_query(app.clone(), &params("")).unwrap();
        assert!(q.cursor.is_none());
        let e = search_query(app, &params("not-a-cursor")).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
