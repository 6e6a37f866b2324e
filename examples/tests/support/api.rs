//! The API router in process, behind its real authentication.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use cameleer_examples::api::router;
use cameleer_examples::auth::{AdminToken, Auth};
use cameleer_examples::storage::SqliteTokenStore;
use cameleer_runtime::Platform;

/// The router over a platform with an admin token and an in-memory token
/// store.
pub struct Authed {
    /// The router; a request without an `Authorization` header is sent with
    /// the admin's (for tests of everything but authentication).
    pub router: Router,
    /// The router as clients meet it: no header added.
    pub bare: Router,
    /// The token checker behind both.
    pub auth: Auth,
    /// The admin token.
    pub admin: String,
    _dir: tempfile::TempDir,
}

/// [`Authed`] over `platform`.
pub fn authed(platform: Platform) -> Authed {
    let dir = tempfile::tempdir().unwrap();
    let admin = AdminToken::read_or_create(&dir.path().join("admin-token")).unwrap();
    let auth = Auth::new(&admin, Arc::new(SqliteTokenStore::in_memory().unwrap()));
    let bare = router(platform, auth.clone());
    let header = HeaderValue::from_str(&format!("Bearer {}", admin.expose())).unwrap();
    let router = bare
        .clone()
        .layer(axum::middleware::map_request(move |mut req: Request| {
            let header = header.clone();
            async move {
                req.headers_mut()
                    .entry(header::AUTHORIZATION)
                    .or_insert(header);
                req
            }
        }));
    Authed {
        router,
        bare,
        auth,
        admin: admin.expose().to_owned(),
        _dir: dir,
    }
}

/// A response as the API tests read it.
pub struct Reply {
    /// The status.
    pub status: axum::http::StatusCode,
    /// The headers.
    pub headers: axum::http::HeaderMap,
    /// The JSON body; `Null` for a body that is not JSON, or a stream.
    pub body: serde_json::Value,
}

impl Reply {
    /// A header's value, as text.
    pub fn header(&self, name: axum::http::HeaderName) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

/// Sends `request` through `router`. Streams (SSE) never end: their bodies
/// are not read; any other body must end within 10 s.
pub async fn send(router: &Router, request: axum::http::Request<axum::body::Body>) -> Reply {
    use tower::ServiceExt;
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let streaming = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let body = if streaming {
        serde_json::Value::Null
    } else {
        let bytes = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            axum::body::to_bytes(response.into_body(), 16 << 20),
        )
        .await
        .expect("a body that is not a stream ends")
        .unwrap();
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
    };
    Reply {
        status,
        headers,
        body,
    }
}
