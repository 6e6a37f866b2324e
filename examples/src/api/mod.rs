//! The platform's HTTP API (JSON), as an axum [`Router`] over a [`Platform`].
//!
//! | method and path | what |
//! |---|---|
//! | `PUT /api/v1/tenants/{tenant}/apps/{app}/envs/{env}/artifacts` | upload a JAR for the app (raw body, streamed; optional `X-Checksum-Sha256`) → 201; deployable to any env |
//! | `POST …/apps/{app}/envs/{env}/deployments` | `{"artifact", "config"}` → 202, the BUILDING deployment |
//! | `GET …/apps/{app}/envs/{env}` | `{"status", "deployment"}` |
//! | `GET …/envs/{env}/deployments` | the history, newest first |
//! | `GET …/envs/{env}/logs?since=RFC3339&follow=bool` | NDJSON `{ts, stream, line}`, or SSE with `Accept: text/event-stream`; with a log store, its history first (from `since`, or the newest 1000 lines), then live lines |
//! | `GET …/envs/{env}/logs/search?q=&from=&to=&stream=&version=&cursor=&limit=&order=` | a JSON page `{lines, next}` of the stored lines, any version (with a log store) |
//! | `GET /api/v1/log-forwarder` | the log forwarder's stats (with a log store) |
//! | `GET …/envs/{env}/events` | SSE of status changes and build progress |
//! | `POST …/envs/{env}/stop`, `…/restart`, `…/rollback` (`{"version"}`) | lifecycle |
//! | `POST /api/v1/tenants/{tenant}/apps/{app}/promote` | `{"from", "to"}` → 202 |
//! | `GET /api/v1/tenants/{tenant}/apps` | every app and environment with its status |
//! | `GET /api/v1/tenants/{tenant}/events` | SSE of the events of every app and environment of the tenant |
//! | `GET /`, `GET /ui/{file}` | the [dashboard](crate::dashboard) |
//! | `GET`, `PUT /api/v1/tenants/{tenant}/quota` | the tenant's quota and usage; `PUT` (admin) sets it |
//! | `GET /api/v1/admin/retention?dry_run=true`, `POST /api/v1/admin/retention/sweep` | what a retention sweep would remove; sweep now (admin) |
//! | `POST`, `GET /api/v1/tenants/{tenant}/tokens`, `DELETE …/tokens/{id}` | (admin) make a tenant token (shown once), list them without secrets, revoke one |
//! | `GET /healthz` | liveness (no token needed) |
//! | `GET /api/v1/openapi.json` | the [OpenAPI 3 document](openapi) of every route above (any token) |
//!
//! Every route but `/healthz` (and the dashboard's static files) needs
//! `Authorization: Bearer <token>`: see [`auth`](crate::auth).
//!
//! # Errors
//!
//! Every error, the router's own included, is `{"error": {"code",
//! "message"}}` (`application/json`), with a stable code:
//!
//! | status | codes |
//! |---|---|
//! | 400 | `invalid_id`, `invalid_path` (a path that does not decode), `invalid_query`, `malformed_json`, `invalid_body`, `invalid_digest`, `upload_failed`, `invalid_cursor` |
//! | 401 | `unauthorized` (no token, or an unknown one) |
//! | 403 | `admin_only`; a quota's code (e.g. `memory_quota_exceeded`) |
//! | 404 | `not_found` (no such route, thing, or another tenant's route), `token_not_found`, `log_store_not_configured` |
//! | 405 | `method_not_allowed` (with `Allow`) |
//! | 409 | `conflict`, `illegal_transition` |
//! | 413 | `body_too_large` (a JSON body over [`MAX_JSON_BODY`]), `artifact_too_large` |
//! | 422 | `invalid_request` (JSON of the wrong shape), `invalid_config`, `invalid_token_name`, `checksum_mismatch`, the validator's codes |
//! | 502, 504 | `backend_error`, `build_failed`, `timeout` |
//! | 503 | `shutting_down` while the server stops, `log_store_unavailable` |
//! | 507 | `insufficient_storage` |
//!
//! JSON bodies are read whatever their `Content-Type` (an empty body is
//! `{}`), so no route answers 415.
//!
//! # Adding a route
//!
//! 1. Write the handler with [`extract`]'s extractors (`ApiPath`,
//!    `ApiQuery`, `JsonBytes`, whose rejections are the envelope) and a
//!    `#[utoipa::path(method, path = "...", params(...), request_body(...),
//!    responses(...))]` listing its own answers (errors with `body =
//!    ErrorBody`); derive `utoipa::ToSchema` on its body types. See
//!    `tokens::revoke`.
//! 2. Register it in [`router`] and list it in `paths(...)` of
//!    [`openapi::ApiDoc`]. The `bearer` requirement, 401, and 404 or 403
//!    are added from [`access_of`](crate::auth::access_of), the rule the
//!    middleware applies.
//! 3. `tests/api_openapi.rs` fails until the document has the route with
//!    exactly the methods the router answers.

mod error;
pub mod extract;
mod handlers;
pub mod logs;
pub mod openapi;
mod quota;
mod retention;
pub mod shutdown;
mod streams;
mod tokens;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post, put};
use cameleer_runtime::Platform;

use crate::auth::{Auth, require_token};

pub use error::{ApiError, status_for};

/// The largest JSON request body accepted (deploy, promote, rollback).
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// The API's routes over `platform`, every one but `/healthz` behind
/// `auth` (see [`auth`](crate::auth) for who may call what).
///
/// Uploads are limited by the platform's own upload limit
/// (`PlatformOptions::validation.limits.max_upload_bytes`), enforced while
/// streaming; JSON bodies by [`MAX_JSON_BODY`].
pub fn router(platform: Platform, auth: Auth) -> Router {
    let app = "/api/v1/tenants/{tenant}/apps/{app}";
    let env = "/api/v1/tenants/{tenant}/apps/{app}/envs/{env}";
    let tokens = Router::new()
        .route(
            "/api/v1/tenants/{tenant}/tokens",
            post(tokens::create).get(tokens::list),
        )
        .route(
            "/api/v1/tenants/{tenant}/tokens/{id}",
            delete(tokens::revoke),
        )
        .with_state(auth.clone());
    Router::new()
        .route(
            &format!("{env}/artifacts"),
            put(handlers::upload).layer(DefaultBodyLimit::disable()),
        )
        .route(
            &format!("{env}/deployments"),
            post(handlers::deploy).get(handlers::history),
        )
        .route(env, get(handlers::status))
        .route(&format!("{env}/logs"), get(streams::logs))
        .route(&format!("{env}/logs/search"), get(logs::search))
        .route("/api/v1/log-forwarder", get(logs::forwarder_stats))
        .route(&format!("{env}/events"), get(streams::events))
        .route(&format!("{env}/stop"), post(handlers::stop))
        .route(&format!("{env}/restart"), post(handlers::restart))
        .route(&format!("{env}/rollback"), post(handlers::rollback))
        .route(&format!("{app}/promote"), post(handlers::promote))
        .route("/api/v1/tenants/{tenant}/apps", get(handlers::list))
        .route(
            "/api/v1/tenants/{tenant}/events",
            get(streams::tenant_events),
        )
        .route(
            "/api/v1/tenants/{tenant}/quota",
            get(quota::get_quota).put(quota::put_quota),
        )
        .route("/api/v1/admin/retention", get(retention::plan))
        .route("/api/v1/admin/retention/sweep", post(retention::sweep))
        .with_state(platform)
        .merge(tokens)
        .route(openapi::OPENAPI_PATH, get(openapi::serve))
        // Only the routes above: `/healthz` and the dashboard's assets are
        // public.
        .route_layer(from_fn_with_state(auth, require_token))
        .route("/healthz", get(handlers::healthz))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .merge(crate::dashboard::router())
        // Last, so that they cover every route above.
        .fallback(extract::not_found)
        .method_not_allowed_fallback(extract::method_not_allowed)
}
