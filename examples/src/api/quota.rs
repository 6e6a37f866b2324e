//! `GET` and `PUT /api/v1/tenants/{tenant}/quota`: a tenant's quota and
//! what it uses. Setting a quota is for the operator (admin), reading it for
//! the tenant too.

use axum::Json;
use axum::extract::State;
use cameleer_runtime::{Platform, Quota, QuotaUsage, TenantId};
use serde::Serialize;

use super::ApiError;
use super::extract::{ApiPath, JsonBytes};
use super::handlers::json_body;
use super::openapi::TenantPath;
use utoipa::ToSchema;

/// The quota of a tenant and its usage, in the same units.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QuotaResponse {
    /// The tenant.
    tenant: TenantId,
    /// Absent fields are unlimited.
    quota: Quota,
    /// What the tenant uses now.
    usage: QuotaUsage,
}

async fn respond(platform: &Platform, tenant: TenantId) -> Result<Json<QuotaResponse>, ApiError> {
    Ok(Json(QuotaResponse {
        quota: platform.quota(&tenant).await?,
        usage: platform.quota_usage(&tenant).await?,
        tenant,
    }))
}

/// `GET /api/v1/tenants/{tenant}/quota`: `{"tenant", "quota", "usage"}`.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/quota",
    tag = "quota",
    params(TenantPath),
    responses(
        (status = 200, description = "The quota and the usage", body = QuotaResponse),
    )
)]
pub async fn get_quota(
    State(platform): State<Platform>,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<QuotaResponse>, ApiError> {
    respond(&platform, tenant.parse()?).await
}

/// `PUT /api/v1/tenants/{tenant}/quota` with a [`Quota`] (every field
/// optional, absent = unlimited; `{}` lifts every limit): the quota as set,
/// with the usage. Lowering a quota below the usage removes nothing.
#[utoipa::path(
    put,
    path = "/api/v1/tenants/{tenant}/quota",
    tag = "quota",
    params(TenantPath),
    request_body(content = Option<Quota>, content_type = "application/json", description = "Left out or `{}`: no limit"),
    responses(
        (status = 200, description = "The quota as set, and the usage", body = QuotaResponse),
    )
)]
pub async fn put_quota(
    State(platform): State<Platform>,
    ApiPath(tenant): ApiPath<String>,
    JsonBytes(body): JsonBytes,
) -> Result<Json<QuotaResponse>, ApiError> {
    let tenant: TenantId = tenant.parse()?;
    let quota: Quota = json_body(&body)?;
    platform.set_quota(&tenant, quota).await?;
    respond(&platform, tenant).await
}
