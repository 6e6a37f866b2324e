//! Request handlers of the JSON routes.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use cameleer_runtime::{
    AppConfig, AppId, AppRef, AppView, Deployment, DeploymentStatus, EnvId, Error, Platform,
    Sha256Digest, TenantId,
};
use futures::TryStreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::ApiError;

type ApiResult<T> = Result<T, ApiError>;

/// `{"ok": true}` for load balancers and the quickstart.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "ok": true }))
}

fn app_ref((tenant, app, env): (String, String, String)) -> ApiResult<AppRef> {
    Ok(AppRef::parse(&tenant, &app, &env)?)
}

/// Parses a JSON body; an empty body reads as `{}`.
pub(super) fn json_body<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(text).map_err(|e| ApiError::from_json(&e))
}

#[derive(Serialize)]
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
pub async fn upload(
    State(platform): State<Platform>,
    Path(path): Path<(String, String, String)>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployBody {
    artifact: Sha256Digest,
    #[serde(default)]
    config: AppConfig,
}

/// `POST …/deployments`: 202 with the BUILDING deployment.
pub async fn deploy(
    State(platform): State<Platform>,
    Path(path): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Deployment>)> {
    let app = app_ref(path)?;
    let req: DeployBody = json_body(&body)?;
    let deployment = platform.deploy(&app, req.artifact, req.config).await?;
    Ok((StatusCode::ACCEPTED, Json(deployment)))
}

#[derive(Serialize)]
pub(crate) struct StatusResponse {
    status: Option<DeploymentStatus>,
    deployment: Option<Deployment>,
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
pub async fn status(
    State(platform): State<Platform>,
    Path(path): Path<(String, String, String)>,
) -> ApiResult<Json<StatusResponse>> {
    let app = app_ref(path)?;
    Ok(Json(platform.status(&app).await?.into()))
}

/// `GET …/deployments`: every version, newest first.
pub async fn history(
    State(platform): State<Platform>,
    Path(path): Path<(String, String, String)>,
) -> ApiResult<Json<Vec<Deployment>>> {
    let app = app_ref(path)?;
    Ok(Json(platform.history(&app).await?))
}

/// `POST …/stop`: the deployments that were stopped.
pub async fn stop(
    State(platform): State<Platform>,
    Path(path): Path<(String, String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let app = app_ref(path)?;
    let stopped = platform.stop(&app).await?;
    Ok(Json(serde_json::json!({ "stopped": stopped })))
}

/// `POST …/restart`: the deployment as the restart ends.
pub async fn restart(
    State(platform): State<Platform>,
    Path(path): Path<(String, String, String)>,
) -> ApiResult<Json<Deployment>> {
    let app = app_ref(path)?;
    Ok(Json(platform.restart(&app).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default)]
    version: Option<u64>,
}

/// `POST …/rollback`: 202 with the new deployment.
pub async fn rollback(
    State(platform): State<Platform>,
    Path(path): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Deployment>)> {
    let app = app_ref(path)?;
    let req: RollbackBody = json_body(&body)?;
    let deployment = platform.rollback(&app, req.version).await?;
    Ok((StatusCode::ACCEPTED, Json(deployment)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    from: EnvId,
    to: EnvId,
    #[serde(default)]
    config: Option<AppConfig>,
}

/// `POST …/promote`: 202 with the new deployment in `to`.
pub async fn promote(
    State(platform): State<Platform>,
    Path((tenant, app)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Deployment>)> {
    let tenant: TenantId = tenant.parse()?;
    let app: AppId = app.parse()?;
    let req: PromoteBody = json_body(&body)?;
    let from = AppRef::new(tenant, app, req.from);
    let deployment = platform.promote(&from, req.to, req.config).await?;
    Ok((StatusCode::ACCEPTED, Json(deployment)))
}

#[derive(Serialize)]
pub(crate) struct ListEntry {
    app: AppId,
    env: EnvId,
    status: Option<DeploymentStatus>,
    version: Option<u64>,
    deployment: Option<Deployment>,
}

/// `GET /api/v1/tenants/{tenant}/apps`: every app and environment.
pub async fn list(
    State(platform): State<Platform>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
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
    Ok(Json(serde_json::json!({ "apps": apps })))
}
