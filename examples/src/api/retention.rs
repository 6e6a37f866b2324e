//! `GET /api/v1/admin/retention?dry_run=true` (what a sweep would remove)
//! and `POST /api/v1/admin/retention/sweep` (sweep now): the operator's
//! view of retention, across tenants.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use cameleer_runtime::{Platform, RetentionPlan, SweepReport};
use serde::Deserialize;

use super::ApiError;

#[derive(Deserialize)]
pub(crate) struct RetentionQuery {
    dry_run: Option<String>,
}

/// `GET /api/v1/admin/retention?dry_run=true`: the images (with the
/// versions that used them) and artifacts a sweep would remove now. A GET
/// never removes anything: `dry_run=false` is refused with a pointer to the
/// sweep route.
pub async fn plan(
    State(platform): State<Platform>,
    Query(query): Query<RetentionQuery>,
) -> Result<Json<RetentionPlan>, ApiError> {
    match query.dry_run.as_deref() {
        None | Some("true") | Some("1") | Some("") => Ok(Json(platform.retention_plan().await?)),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!(
                "dry_run: a GET only lists (dry_run=true), got {other:?}; POST /api/v1/admin/retention/sweep removes"
            ),
        )),
    }
}

/// `POST /api/v1/admin/retention/sweep`: runs a sweep now and returns what
/// it removed and what it skipped.
pub async fn sweep(State(platform): State<Platform>) -> Result<Json<SweepReport>, ApiError> {
    Ok(Json(platform.sweep().await?))
}
