//! Request handlers of the JSON routes.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use cameleer_runtime::{
    AppConfig, AppId, AppRef, AppView, Deployment, DeploymentStatus, EnvId, Error, Platform,
    Sha256Digest, TenantId,
};
use futures::TryStreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::error::ErrorBody;
use super::extract::{ApiPath, JsonBytes};
use super::openapi::{AppPath, EnvPath, JarBytes, TenantPath};
use utoipa::ToSchema;

type ApiResult<T> = Result<T, ApiError>;

/// The answer of `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `true`.
    ok: bool,
}

/// `{"ok": true}` for load balancers and the quickstart.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, description = "The server is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { ok: true })
}

fn app_ref((tenant, app, env): (String, String, String)) -> ApiResult<AppRef> {
    Ok(AppRef::parse(&tenant, &app, &env)?)
}

/// Parses a JSON body; an empty body, or `null`, reads as `{}` (every
/// body that may be left out is documented as nullable).
pub(super) fn json_body<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    let trimmed = body.trim_ascii();
    let text: &[u8] = if trimmed.is_empty() || trimmed == b"null" {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(text).map_err(|e| ApiError::from_json(&e))
}

/// What validation found in an upload.
#[derive(Serialize, ToSchema)]
pub(crate) struct UploadResponse {
    sha256: Sha256Digest,
    size: u64,
    main_class: String,
    runtime: cameleer_build::Runtime,
    findings: Vec<cameleer_build::Finding>,
}

/// `PUT …/envs/{env}/artifacts`: the raw JAR, streamed into validation and
/// storage. Stored by content: the upload can be deployed to any
/// environment of the app.
#[utoipa::path(
    put,
    path = "/api/v1/tenants/{tenant}/apps/{app}/envs/{env}/artifacts",
    tag = "apps",
    params(EnvPath, ("X-Checksum-Sha256" = Option<Sha256Digest>, Header, description = "The SHA-256 the upload must have")),
    request_body(content = JarBytes, content_type = "application/octet-stream", description = "The JAR, streamed"),
    responses(
        (status = 201, description = "Stored: what validation found", body = UploadResponse),
        (status = 400, description = "`invalid_digest`, or `upload_failed` (the body broke off)", body = ErrorBody),
        (status = 403, description = "`artifact_bytes_quota_exceeded`", body = ErrorBody),
        (status = 413, description = "`artifact_too_large`", body = ErrorBody),
        (status = 422, description = "The JAR was refused: the validator's code (e.g. `not_a_zip`, `zip_slip`) or `checksum_mismatch`", body = ErrorBody),
        (status = 507, description = "`insufficient_storage`", body = ErrorBody),
    )
)]
pub async fn upload(
    State(platform): State<Platform>,
    ApiPath(path): ApiPath<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<UploadResponse>)> {
    let app = app_ref(path)?;
    let expected = match headers.get("x-checksum-sha256") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<Sha256Digest>().ok())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_digest",
                        "X-Checksum-Sha256 must be 64 hex characters, optionally prefixed by sha256:",
                    )
                })?,
        ),
    };
    // Refuse a declared size over the limit before reading a byte.
    let limit = platform.options().validation.limits.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::ArtifactTooLarge { limit }.into());
    }
    let data = Box::pin(body.into_data_stream().map_err(std::io::Error::other));
    let uploaded = platform.upload_artifact(&app, data, expected).await?;
    Ok((
        StatusCode::CREATED,
        Json(UploadResponse {
            sha256: uploaded.sha256,
            size: uploaded.size,
            main_class: uploaded.jar.main_class,
            runtime: uploaded.jar.runtime,
            findings: uploaded.jar.findings,
        }),
    ))
}

/// `POST …/deployments`: what to deploy.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeployBody {
    /// The SHA-256 of a JAR this tenant uploaded.
    artifact: Sha256Digest,
    /// The environment's config (defaults for what is left out).
    #[serde(default)]
    config: AppConfig,
}

/// `POST …/deployments`: 202 with the BUILDING deployment.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/apps/{app}/envs/{env}/deployments",
    tag = "apps",
    params(EnvPath),
    request_body(content = DeployBody, content_type = "application/json"),
    responses(
        (status = 202, description = "The new deployment, BUILDING", body = Deployment),
        (status = 403, description = "A quota's code, e.g. `memory_quota_exceeded`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such artifact for this tenant", body = ErrorBody),
        (status = 409, description = "`conflict`: another deployment is in progress", body = ErrorBody),
        (status = 422, description = "`invalid_config`", body = ErrorBody),
    )
)]
pub async fn deploy(
    State(platform): State<Platform>,
    ApiPath(path): ApiPath<(String, String, String)>,
    JsonBytes(body): JsonBytes,
) -> ApiResult<(StatusCode, Json<Deployment>)> {
    let app = app_ref(path)?;
    let req: DeployBody = json_body(&body)?;
    let deployment = platform.deploy(&app, req.artifact, req.config).await?;
    Ok((StatusCode::ACCEPTED, Json(deployment)))
}

/// An app's state in one environment.
#[derive(Serialize, ToSchema)]
pub(crate) struct StatusResponse {
    /// The newest deployment's status.
    status: Option<DeploymentStatus>,
    /// The newest deployment.
    deployment: Option<Deployment>,
    /// What the backend sees now, when it runs something.
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime: Option<cameleer_runtime::AppStatus>,
}

impl From<AppView> for StatusResponse {
    fn from(v: AppView) -> Self {
        Self {
            status: v.status,
            deployment: v.deployment,
            runtime: v.runtime,
        }
    }
}

/// `GET …/envs/{env}`: the status and the newest deployment.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/apps/{app}/envs/{env}",
    tag = "apps",
    params(EnvPath),
    responses(
        (status = 200, description = "The status and the newest deployment", body = StatusResponse),
        (status = 404, description = "`not_found`: the app has no deployment here", body = ErrorBody),
    )
)]
pub async fn status(
    State(platform): State<Platform>,
    ApiPath(path): ApiPath<(String, String, String)>,
) -> ApiResult<Json<StatusResponse>> {
    let app = app_ref(path)?;
    Ok(Json(platform.status(&app).await?.into()))
}

/// `GET …/deployments`: every version, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/apps/{app}/envs/{env}/deployments",
    tag = "apps",
    params(EnvPath),
    responses(
        (status = 200, description = "Every version, newest first", body = Vec<Deployment>),
        (status = 404, description = "`not_found`: the app has no deployment here", body = ErrorBody),
    )
)]
pub async fn history(
    State(platform): State<Platform>,
    ApiPath(path): ApiPath<(String, String, String)>,
) -> ApiResult<Json<Vec<Deployment>>> {
    let app = app_ref(path)?;
    Ok(Json(platform.history(&app).await?))
}

/// The answer of `POST …/stop`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Stopped {
    /// The deployments that were stopped.
    stopped: Vec<Deployment>,
}

/// `POST …/stop`: the deployments that were stopped.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/apps/{app}/envs/{env}/stop",
    tag = "apps",
    params(EnvPath),
    responses(
        (status = 200, description = "The deployments that were stopped", body = Stopped),
        (status = 404, description = "`not_found`: nothing deployed here", body = ErrorBody),
        (status = 409, description = "`illegal_transition` or `conflict`", body = ErrorBody),
    )
)]
pub async fn stop(
    State(platform): State<Platform>,
    ApiPath(path): ApiPath<(String, String, String)>,
) -> ApiResult<Json<Stopped>> {
    let app = app_ref(path)?;
    let stopped = platform.stop(&app).await?;
    Ok(Json(Stopped { stopped }))
}

/// `POST …/restart`: the deployment as the restart ends.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/apps/{app}/envs/{env}/restart",
    tag = "apps",
    params(EnvPath),
    responses(
        (status = 200, description = "The deployment as the restart ends", body = Deployment),
        (status = 403, description = "A quota's code", body = ErrorBody),
        (status = 404, description = "`not_found`: nothing deployed here", body = ErrorBody),
        (status = 409, description = "`illegal_transition` or `conflict`", body = ErrorBody),
    )
)]
pub async fn restart(
    State(platform): State<Platform>,
    ApiPath(path): ApiPath<(String, String, String)>,
) -> ApiResult<Json<Deployment>> {
    let app = app_ref(path)?;
    Ok(Json(platform.restart(&app).await?))
}

/// `POST …/rollback`: to which version (an empty body: the previous one).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollbackBody {
    /// The version to go back to; default the one before the newest.
    #[serde(default)]
    version: Option<u64>,
}

/// `POST …/rollback`: 202 with the new deployment.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/apps/{app}/envs/{env}/rollback",
    tag = "apps",
    params(EnvPath),
    request_body(content = Option<RollbackBody>, content_type = "application/json"),
    responses(
        (status = 202, description = "The new deployment, on the old version's image", body = Deployment),
        (status = 403, description = "A quota's code", body = ErrorBody),
        (status = 404, description = "`not_found`: no such version", body = ErrorBody),
        (status = 409, description = "`conflict` or `illegal_transition`", body = ErrorBody),
    )
)]
pub async fn rollback(
    State(platform): State<Platform>,
    ApiPath(path): ApiPath<(String, String, String)>,
    JsonBytes(body): JsonBytes,
) -> ApiResult<(StatusCode, Json<Deployment>)> {
    let app = app_ref(path)?;
    let req: RollbackBody = json_body(&body)?;
    let deployment = platform.rollback(&app, req.version).await?;
    Ok((StatusCode::ACCEPTED, Json(deployment)))
}

/// `POST …/promote`: from which environment to which.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PromoteBody {
    /// The environment whose image is promoted.
    from: EnvId,
    /// The environment it goes to.
    to: EnvId,
    /// The config in `to`; default the one `to` has, or `from`'s.
    #[serde(default)]
    config: Option<AppConfig>,
}

/// `POST …/promote`: 202 with the new deployment in `to`.
#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant}/apps/{app}/promote",
    tag = "apps",
    params(AppPath),
    request_body(content = PromoteBody, content_type = "application/json"),
    responses(
        (status = 202, description = "The new deployment in `to`, on the same image", body = Deployment),
        (status = 403, description = "A quota's code", body = ErrorBody),
        (status = 404, description = "`not_found`: nothing to promote in `from`", body = ErrorBody),
        (status = 409, description = "`conflict` or `illegal_transition`", body = ErrorBody),
        (status = 422, description = "`invalid_config`", body = ErrorBody),
    )
)]
pub async fn promote(
    State(platform): State<Platform>,
    ApiPath((tenant, app)): ApiPath<(String, String)>,
    JsonBytes(body): JsonBytes,
) -> ApiResult<(StatusCode, Json<Deployment>)> {
    let tenant: TenantId = tenant.parse()?;
    let app: AppId = app.parse()?;
    let req: PromoteBody = json_body(&body)?;
    let from = AppRef::new(tenant, app, req.from);
    let deployment = platform.promote(&from, req.to, req.config).await?;
    Ok((StatusCode::ACCEPTED, Json(deployment)))
}

/// One app in one environment.
#[derive(Serialize, ToSchema)]
pub(crate) struct ListEntry {
    /// The app.
    app: AppId,
    /// The environment.
    env: EnvId,
    /// The newest deployment's status.
    status: Option<DeploymentStatus>,
    /// The version running (or the newest).
    version: Option<u64>,
    /// The newest deployment.
    deployment: Option<Deployment>,
}

/// The answer of `GET /api/v1/tenants/{tenant}/apps`.
#[derive(Serialize, ToSchema)]
pub(crate) struct AppList {
    /// Every app and environment of the tenant.
    apps: Vec<ListEntry>,
}

/// `GET /api/v1/tenants/{tenant}/apps`: every app and environment.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant}/apps",
    tag = "apps",
    params(TenantPath),
    responses(
        (status = 200, description = "Every app and environment with its status", body = AppList),
    )
)]
pub async fn list(
    State(platform): State<Platform>,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<AppList>> {
    let tenant: TenantId = tenant.parse()?;
    let apps: Vec<ListEntry> = platform
        .list(&tenant)
        .await?
        .into_iter()
        .map(|v| ListEntry {
            app: v.app.app.clone(),
            env: v.app.env.clone(),
            status: v.status,
            version: v
                .runtime
                .as_ref()
                .and_then(|r| r.version)
                .or(v.deployment.as_ref().map(|d| d.version)),
            deployment: v.deployment,
        })
        .collect();
    Ok(Json(AppList { apps }))
}
