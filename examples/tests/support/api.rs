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
