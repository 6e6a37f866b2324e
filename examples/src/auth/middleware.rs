//! The axum middleware that checks every API request's token, and the
//! rule saying what each route needs.

use axum::RequestExt;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Auth, Principal};
use crate::api::ApiError;

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any token the server knows, a tenant's or the admin's: what every
    /// caller may read (the API's own document).
    AnyToken,
    /// The admin token, or a token of the tenant in the path.
    Tenant,
    /// The admin token only.
    Admin,
}

/// What the route `path` (the router's pattern, e.g.
/// `/api/v1/tenants/{tenant}/quota`) needs for `method`: tokens, quotas
/// (setting them), retention and the log forwarder are the admin's; every
/// other route is its tenant's. A route without a `{tenant}` is the
/// admin's, so a new platform-wide route is closed to tenants until
/// someone decides otherwise; the one exception is the API's document
/// ([`OPENAPI_PATH`](crate::api::openapi::OPENAPI_PATH)), which any token
/// may read.
pub fn access_of(method: &Method, path: &str) -> Access {
    if path == crate::api::openapi::OPENAPI_PATH {
        return Access::AnyToken;
    }
    let Some(rest) = path.strip_prefix("/api/v1/tenants/{tenant}") else {
        return Access::Admin;
    };
    let admin_only = rest.starts_with("/tokens") || (rest == "/quota" && method == Method::PUT);
    if admin_only {
        Access::Admin
    } else {
        Access::Tenant
    }
}

/// The middleware (a `route_layer`, so it sees the matched route): 401
/// without a known token, 404 for a tenant token on another tenant's route
/// (as if the route did not exist), 403 `admin_only` for a tenant token on
/// an admin route. The request then carries its [`Principal`] as an
/// extension.
pub async fn require_token(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    let Some(bearer) = bearer(&request) else {
        return unauthorized("an `Authorization: Bearer <token>` header is needed");
    };
    let principal = match auth.authenticate(&bearer).await {
        Ok(Some(p)) => p,
        Ok(None) => return unauthorized("the token is not valid (unknown or revoked)"),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let access = access_of(request.method(), &path);
    if let Principal::Tenant { tenant, .. } = &principal {
        let path_tenant = match request.extract_parts::<RawPathParams>().await {
            Ok(params) => params
                .iter()
                .find(|(name, _)| *name == "tenant")
                .map(|(_, value)| value.to_owned()),
            Err(_) => None,
        };
        // Another tenant's route does not exist for this token; a
        // platform-wide one does, and is the admin's.
        if path_tenant.is_some_and(|t| t != tenant.as_str()) {
            return ApiError::new(StatusCode::NOT_FOUND, "not_found", "not found").into_response();
        }
        if access == Access::Admin {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_only",
                "this route needs the admin token",
            )
            .into_response();
        }
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The token of an `Authorization: Bearer` header (scheme case-insensitive).
fn bearer(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"cameleer\""),
    );
    response
}
