//! `GET /api/v1/admin/retention?dry_run=true` (what a sweep would remove)
//! and `POST /api/v1/admin/retention/sweep` (sweep now): the operator's
//! view of retention, across tenants.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use cameleer_runtime::{Platform, RetentionPlan, SweepReport};
use serde::Deserialize;

use super::ApiError;
use super::error::ErrorBody;
use super::extract::ApiQuery;
use utoipa::{IntoParams, ToSchema};

/// The query of `GET /api/v1/admin/retention`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RetentionQuery {
    /// Must be `true` (the default): a GET only lists.
    #[param(value_type = Option<DryRun>, inline)]
    dry_run: Option<String>,
}

/// The values `dry_run` takes: each means true (so does an empty one, which
/// a schema cannot name).
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: the query is parsed by hand
enum DryRun {
    /// List only.
    #[schema(rename = "true")]
    True,
    /// The same.
    #[schema(rename = "1")]
    One,
}

/// `GET /api/v1/admin/retention?dry_run=true`: the images (with the
/// versions that used them) and artifacts a sweep would remove now. A GET
/// never removes anything: `dry_run=false` is refused with a pointer to the
/// sweep route.
#[utoipa::path(
    get,
    path = "/api/v1/admin/retention",
    tag = "admin",
    params(RetentionQuery),
    responses(
        (status = 200, description = "What a sweep would remove now", body = RetentionPlan),
        (status = 400, description = "`invalid_query`: `dry_run` other than true", body = ErrorBody),
    )
)]
pub async fn plan(
    State(platform): State<Platform>,
    ApiQuery(query): ApiQuery<RetentionQuery>,
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
#[utoipa::path(
    post,
    path = "/api/v1/admin/retention/sweep",
    tag = "admin",
    responses((status = 200, description = "What the sweep removed and skipped", body = SweepReport))
)]
pub async fn sweep(State(platform): State<Platform>) -> Result<Json<SweepReport>, ApiError> {
    Ok(Json(platform.sweep().await?))
}
