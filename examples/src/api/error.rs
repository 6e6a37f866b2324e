//! Errors as the API returns them: `{"error": {"code", "message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cameleer_runtime::Error;
use serde::Serialize;

/// An error response: an HTTP status and a stable code with a message.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code, e.g. `invalid_id`.
    pub code: &'static str,
    /// What went wrong, naming the offending part.
    pub message: String,
}

/// The JSON body of an error: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail<'a> {
    /// A stable code, e.g. `not_found`, `invalid_id`, `unauthorized`.
    code: &'a str,
    /// What went wrong, for people.
    message: &'a str,
}

impl ApiError {
    /// An error with an explicit status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        }
    }

    /// A request body that is not the JSON the route takes: 400 when it is
    /// not JSON at all, 422 when it is JSON of the wrong shape.
    pub fn from_json(e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!("invalid request body: {e}"),
            ),
            _ => Self::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("request body is not valid JSON: {e}"),
            ),
        }
    }
}

/// The HTTP status for a platform error code.
///
/// Validation failures of an artifact (any code the validator produces) are
/// 422; ids and headers are 400; sizes 413; missing things 404; races and
/// wrong states 409; backend trouble 502 or 504; a platform that is shutting
/// down 503 (`shutting_down`: retry against another instance or later); a
/// quota 403 (its code names it, e.g. `memory_quota_exceeded`); a full disk
/// 507 (`insufficient_storage`).
pub fn status_for(err: &Error) -> StatusCode {
    match err {
        Error::InvalidId { .. } => StatusCode::BAD_REQUEST,
        Error::InvalidConfig { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::InvalidArtifact { .. } | Error::ChecksumMismatch { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        Error::ArtifactTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::IllegalTransition { .. } | Error::Conflict(_) => StatusCode::CONFLICT,
        Error::UploadFailed { .. } => StatusCode::BAD_REQUEST,
        Error::Backend { .. } | Error::BuildFailed(_) => StatusCode::BAD_GATEWAY,
        Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        Error::StartFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
        Error::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        // Retrying will not help until usage falls or the quota is raised.
        Error::QuotaExceeded { .. } => StatusCode::FORBIDDEN,
        Error::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let status = status_for(&err);
        let message = match &err {
            // The validator's own message names the offending entry.
            Error::InvalidArtifact { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        Self {
            status,
            code: err.code(),
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, "{}", self.message);
        }
        (self.status, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutting_down_is_503_with_its_own_code() {
        let e = ApiError::from(Error::ShuttingDown);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "shutting_down");
        // Not a conflict: nothing is wrong with the request.
        assert_ne!(status_for(&Error::ShuttingDown), StatusCode::CONFLICT);
    }
}
