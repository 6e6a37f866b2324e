//! `…/tenants/{tenant}/tokens`: the admin makes, lists and revokes a
//! tenant's API tokens (see [`auth`](crate::auth)).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use cameleer_runtime::TenantId;
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::error::ErrorBody;
use super::extract::{ApiPath, JsonBytes};
use super::handlers::json_body;
use super::openapi::TenantPath;
use crate::auth::{Auth, TokenId, TokenInfo};
use utoipa::ToSchema;

/// The longest token name accepted.
pub const MAX_TOKEN_NAME: usize = 100;

/// The most tokens a tenant may hold at once (revoke one to make another).
pub const MAX_TOKENS_PER_TENANT: usize = 100;

/// The shortest and longest lifetimes a token may be given, in seconds
/// (a minute; ten years).
pub const TOKEN_LIFETIME_SECS: std::ops::RangeInclusive<u64> = 60..=10 * 366 * 24 * 3600;

/// `POST …/tokens` body: `{"name", "expires_in_secs"}`, both optional (an
/// empty body is `{}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    /// What to call it (e.g. `ci`); at most 100 characters, no control
    /// characters.
    #[schema(max_length = 100, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    name: Option<String>,
    /// Seconds until the token stops working (60 to ten years); left out,
    /// it works until revoked.
    #[schema(minimum = 60, maximum = 316_224_000)]
    expires_in_secs: Option<u64>,
}

/// A new token: its listed fields and, this once, the token itself.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedToken {
    #[serde(flatten)]
    info: TokenInfo,
    /// The token, `cmr_<id>_<secret>`: shown only here.
    token: String,
}

/// `POST /api/v1/tenants/{tenant}/tokens` (admin): 201 with the new token,
/// shown once.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/tokens",
    tag = "tokens",
    params(TenantPath),
    request_body(content = Option<CreateToken>, content_type = "application/json"),
    responses(
        (status = 201, description = "The new token, shown this once", body = CreatedToken),
        (status = 409, description = "`token_limit_reached`: the tenant holds 100 tokens already", body = ErrorBody),
        (status = 422, description = "`invalid_token_name`, `invalid_token_expiry`", body = ErrorBody),
    )
)]
pub async fn create(
    State(auth): State<Auth>,
    ApiPath(tenant): ApiPath<String>,
    JsonBytes(body): JsonBytes,
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
    let expires_in = match request.expires_in_secs {
        Some(secs) if !TOKEN_LIFETIME_SECS.contains(&secs) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_token_expiry",
                format!(
                    "expires_in_secs is {secs}: from {} (a minute) to {} (ten years)",
                    TOKEN_LIFETIME_SECS.start(),
                    TOKEN_LIFETIME_SECS.end()
                ),
            ));
        }
        secs => secs.map(std::time::Duration::from_secs),
    };
    // Admin requests, one at a time in practice: a race past the limit
    // costs one token, not an unbounded table.
    if auth.tokens(&tenant).await?.len() >= MAX_TOKENS_PER_TENANT {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "token_limit_reached",
            format!(
                "tenant {tenant} holds {MAX_TOKENS_PER_TENANT} tokens already: revoke one first"
            ),
        ));
    }
    let (info, secret) = auth.create_token_expiring(tenant, name, expires_in).await?;
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
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/tokens",
    tag = "tokens",
    params(TenantPath),
    responses(
        (status = 200, description = "The tenant's tokens, without secrets", body = TokenList),
    )
)]
pub async fn list(
    State(auth): State<Auth>,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<TokenList>, ApiError> {
    let tenant: TenantId = tenant.parse()?;
    let tokens = auth.tokens(&tenant).await?;
    Ok(Json(TokenList { tokens }))
}

/// The answer of `GET …/tokens`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenList {
    /// Oldest first.
    tokens: Vec<TokenInfo>,
}

/// `DELETE /api/v1/tenants/{tenant}/tokens/{id}` (admin): 204; the token
/// stops working at once. 404 `token_not_found` if the tenant has no such
/// token.
#[utoipa::path(
    delete,
    path = "/api/v1/tenants/{tenant}/tokens/{id}",
    tag = "tokens",
    params(TenantPath, ("id" = String, Path, description = "The token's id: 16 hex digits", pattern = "^[0-9a-f]{16}$")),
    responses(
        (status = 204, description = "Revoked: the token stops working at once"),
        (status = 404, description = "`token_not_found`", body = ErrorBody),
    )
)]
pub async fn revoke(
    State(auth): State<Auth>,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
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
