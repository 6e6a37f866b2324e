//! The dashboard: a browser UI over the [`api`](crate::api), served at `/`.
//!
//! Plain HTML, CSS and JavaScript (ES modules, no build step, no CDN),
//! embedded in the binary with `include_bytes!` and served with their
//! content types under `/ui/…`. Every response carries a strict
//! Content-Security-Policy: scripts and styles only from the server itself
//! (no inline script, no `eval`), requests only to the server itself, no
//! frames, no forms posting elsewhere.
//!
//! The page signs in with a tenant and a token (kept in `sessionStorage`,
//! sent as `Authorization: Bearer` on every request) and then shows the
//! tenant's apps, each environment's status, version and instance counts,
//! live from `GET /api/v1/tenants/{tenant}/events`; a deployment's history
//! with its typed reasons; a live log tail with search; upload (with a
//! progress bar), deploy, promote, roll back, restart and stop, each shown
//! as the equivalent `curl` command and each asking before it acts on an
//! environment named `prod`.
//!
//! The assets are public (the sign-in page needs them before any token);
//! everything they show comes from the API, which is where access is
//! checked.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::ApiError;

/// The Content-Security-Policy of every dashboard response: nothing inline,
/// nothing from elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// One embedded file: its name under `/ui/`, content type and bytes.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The file name, as requested under `/ui/`.
    pub name: &'static str,
    /// The `Content-Type` it is served with.
    pub content_type: &'static str,
    /// The file's bytes.
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("assets/", $name)),
        }
    };
}

/// Every file of the dashboard. `index.html` is also served at `/`.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("streams.js", "text/javascript; charset=utf-8"),
    asset!("curl.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("apps.js", "text/javascript; charset=utf-8"),
    asset!("detail.js", "text/javascript; charset=utf-8"),
    asset!("logs.js", "text/javascript; charset=utf-8"),
    asset!("actions.js", "text/javascript; charset=utf-8"),
];

/// The asset named `name`, if there is one.
///
/// # Examples
///
/// ```
/// use cameleer_examples::dashboard::asset;
///
/// assert_eq!(asset("style.css").unwrap().content_type, "text/css; charset=utf-8");
/// assert!(asset("../Cargo.toml").is_none());
/// ```
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The dashboard's routes: `GET /` and `GET /ui/{file}`. Stateless, so it
/// merges into any router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{file}", get(file))
}

async fn index() -> Response {
    // `index.html` is always in ASSETS (a unit test checks it).
    asset("index.html").map_or_else(not_found, serve)
}

async fn file(Path(name): Path<String>) -> Response {
    asset(&name).map_or_else(not_found, serve)
}

fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such dashboard file").into_response()
}

fn serve(asset: &'static Asset) -> Response {
    let mut response = asset.bytes.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, asset.content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        // The assets change only with the binary; revalidating is cheap.
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests;
