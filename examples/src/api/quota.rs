//! `GET` and `PUT /api/v1/tenants/{tenant}/quota`: a tenant's quota and
//! what it uses. Setting a quota is for the operator (admin), reading it for
//! the tenant too.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use cameleer_runtime::{Platform, Quota, QuotaUsage, TenantId};
use serde::Serialize;

use super::ApiError;
use super::handlers::json_body;

/// The quota of a tenant and its usage, in the same units.
#[derive(Debug, Serialize)]
pub(crate) struct QuotaResponse {
    tenant: TenantId,
    /// Absent fields are unlimited.
    quota: Quota,
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
pub async fn get_quota(
    State(platform): State<Platform>,
    Path(tenant): Path<String>,
) -> Result<Json<QuotaResponse>, ApiError> {
    respond(&platform, tenant.parse()?).await
}

/// `PUT /api/v1/tenants/{tenant}/quota` with a [`Quota`] (every field
/// optional, absent = unlimited; `{}` lifts every limit): the quota as set,
/// with the usage. Lowering a quota below the usage removes nothing.
pub async fn put_quota(
    State(platform): State<Platform>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Json<QuotaResponse>, ApiError> {
    let tenant: TenantId = tenant.parse()?;
    let quota: Quota = json_body(&body)?;
    platform.set_quota(&tenant, quota).await?;
    respond(&platform, tenant).await
}
