//! `…/tenants/{tenant}/tokens`: the admin makes, lists and revokes a
//! tenant's API tokens (see [`auth`](crate::auth)).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cameleer_runtime::TenantId;
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::handlers::json_body;
use crate::auth::{Auth, TokenId, TokenInfo};

/// The longest token name accepted.
pub const MAX_TOKEN_NAME: usize = 100;

/// `POST …/tokens` body: `{"name"}`, optional (an empty body is `{}`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    name: Option<String>,
}

/// A new token: its listed fields and, this once, the token itself.
#[derive(Debug, Serialize)]
pub(crate) struct CreatedToken {
    #[serde(flatten)]
    info: TokenInfo,
    /// The token, `cmr_<id>_<secret>`: shown only here.
    token: String,
}

/// `POST /api/v1/tenants/{tenant}/tokens` (admin): 201 with the new token,
/// shown once.
pub async fn create(
    State(auth): State<Auth>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let tenant: TenantId = tenant.parse()?;
    let request: CreateToken = json_body(&body)?;
    let name = match request.name {
        Some(name)
            if name.chars().count() > MAX_TOKEN_NAME || name.chars().any(char::is_control) =>
        {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_token_name",
                format!(
                    "a token name is at most {MAX_TOKEN_NAME} characters, none of them control characters"
                ),
            ));
        }
        Some(name) if name.trim().is_empty() => None,
        other => other,
    };
    let (info, secret) = auth.create_token(tenant, name).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            info,
            token: secret.expose().to_owned(),
        }),
    ))
}

/// `GET /api/v1/tenants/{tenant}/tokens` (admin): `{"tokens": [...]}`,
/// oldest first, without secrets.
pub async fn list(
    State(auth): State<Auth>,
    Path(tenant): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant: TenantId = tenant.parse()?;
    let tokens = auth.tokens(&tenant).await?;
    Ok(Json(serde_json::json!({ "tokens": tokens })))
}

/// `DELETE /api/v1/tenants/{tenant}/tokens/{id}` (admin): 204; the token
/// stops working at once. 404 `token_not_found` if the tenant has no such
/// token.
pub async fn revoke(
    State(auth): State<Auth>,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant: TenantId = tenant.parse()?;
    let id: TokenId = id.parse()?;
    if auth.revoke(&tenant, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "token_not_found",
            format!("tenant {tenant} has no token {id}"),
        ))
    }
}
