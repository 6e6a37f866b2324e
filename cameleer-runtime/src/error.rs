//! The crate's error type and its stable codes.

use crate::deployment::{DeploymentEvent, DeploymentStatus};

/// A boxed error from a lower layer (a backend, a store, the validator).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of every fallible operation in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the model, the contracts and the pipeline.
///
/// Every variant has a stable [`code`](Error::code) that APIs return to
/// clients; the message names the offending part (the id, the config field,
/// the JAR entry).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An id (tenant, app, env, deployment) is not a valid name.
    #[error("invalid {kind} id {value:?}: {reason}")]
    InvalidId {
        /// Which id: `tenant`, `app`, `env` or `deployment`.
        kind: &'static str,
        /// The rejected value, cut to 100 characters.
        value: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// An [`AppConfig`](crate::AppConfig) field is invalid.
    #[error("invalid config: {field}: {reason}")]
    InvalidConfig {
        /// The path of the offending field, e.g. `env.MY-VAR` or `jvm_options[2]`.
        field: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// An uploaded artifact was rejected by validation.
    #[error("invalid artifact: {source}")]
    InvalidArtifact {
        /// The validator's stable code, e.g. `invalid_entry_name`.
        code: &'static str,
        /// The validator's error, naming the offending entry.
        #[source]
        source: BoxError,
    },

    /// A thing that was asked for does not exist.
    #[error("{what} not found: {id}")]
    NotFound {
        /// What kind of thing: `app`, `deployment`, `artifact`, `version`, …
        what: &'static str,
        /// Its id or a description of the lookup.
        id: String,
    },

    /// An event that the deployment state machine does not allow.
    #[error("illegal transition: {event} is not allowed in state {from}")]
    IllegalTransition {
        /// The current status.
        from: DeploymentStatus,
        /// The rejected event.
        event: Box<DeploymentEvent>,
    },

    /// A conditional update lost a race, or the request conflicts with the
    /// current state (e.g. promoting from an environment with nothing running).
    #[error("conflict: {0}")]
    Conflict(String),

    /// Building the image failed; the text is the builder's own.
    #[error("build failed: {0}")]
    BuildFailed(String),

    /// A backend (container engine, cluster) failed or is unreachable.
    #[error("backend error: {message}")]
    Backend {
        /// What the backend was doing and what it said.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// The storage of deployments or artifacts failed.
    #[error("storage error: {message}")]
    Storage {
        /// What the store was doing.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// The app itself did not come up: it exited (with its code), was
    /// OOM-killed, or never passed its health check. The backend is fine;
    /// the reason is the app's.
    #[error("app did not start: {reason}{}", output.as_deref().map(|o| format!("; last output: {o}")).unwrap_or_default())]
    StartFailed {
        /// What happened: an exit with its code, an OOM kill, a health
        /// check that timed out, …
        reason: crate::StatusReason,
        /// The app's last output, when the backend has it.
        output: Option<String>,
    },

    /// An operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),

    /// The backend does not implement an optional operation.
    #[error("unsupported by this backend: {0}")]
    Unsupported(&'static str),

    /// The SHA-256 of an upload differs from the one the client announced:
    /// the transfer was corrupted or the wrong file was sent.
    #[error("checksum mismatch: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch {
        /// The digest the client announced.
        expected: cameleer_build::Sha256Digest,
        /// The digest of the bytes received.
        actual: cameleer_build::Sha256Digest,
    },

    /// An upload or a stored artifact is larger than allowed.
    #[error("artifact too large: more than {limit} bytes")]
    ArtifactTooLarge {
        /// The limit in bytes.
        limit: u64,
    },

    /// Reading the upload failed (the client went away, the body was cut).
    #[error("reading the upload failed: {source}")]
    UploadFailed {
        /// The error of the upload stream.
        #[source]
        source: std::io::Error,
    },

    /// A tenant's quota does not allow the request; nothing was created.
    /// The code names the quota (see [`QuotaKind::code`](crate::QuotaKind::code)).
    #[error("{kind} quota of tenant {tenant} exceeded: {requested} {unit} needed, the quota is {limit}", unit = kind.unit())]
    QuotaExceeded {
        /// The tenant.
        tenant: crate::TenantId,
        /// Which quota.
        kind: crate::QuotaKind,
        /// The quota.
        limit: u64,
        /// What the tenant would use with the request.
        requested: u64,
    },

    /// The storage has no room left (a full disk: `ENOSPC`, or a file
    /// system quota): nothing was stored.
    #[error("insufficient storage: {0}")]
    InsufficientStorage(String),

    /// The platform is shutting down and takes no new work.
    #[error("the platform is shutting down")]
    ShuttingDown,

    /// A bug or a broken invariant inside the platform (a panicked task, a
    /// store that did not consume its input); the message says which.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The stable, snake_case code of this error, for APIs and logs.
    ///
    /// Codes never change meaning once published; new variants get new codes.
    ///
    /// # Examples
    ///
    /// ```
    /// use cameleer_runtime::{Error, TenantId};
    ///
    /// let err = "Not_A_Label".parse::<TenantId>().unwrap_err();
    /// assert_eq!(err.code(), "invalid_id");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidId { .. } => "invalid_id",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::InvalidArtifact { code, .. } => code,
            Error::NotFound { .. } => "not_found",
            Error::IllegalTransition { .. } => "illegal_transition",
            Error::Conflict(_) => "conflict",
            Error::BuildFailed(_) => "build_failed",
            Error::Backend { .. } => "backend_error",
            Error::Storage { .. } => "storage_error",
            Error::StartFailed { .. } => "start_failed",
            Error::Timeout(_) => "timeout",
            Error::Unsupported(_) => "unsupported",
            Error::ChecksumMismatch { .. } => "checksum_mismatch",
            Error::ArtifactTooLarge { .. } => "artifact_too_large",
            Error::UploadFailed { .. } => "upload_failed",
            Error::QuotaExceeded { kind, .. } => kind.code(),
            Error::InsufficientStorage(_) => "insufficient_storage",
            Error::ShuttingDown => "shutting_down",
            Error::Internal(_) => "internal",
        }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(what: &'static str, id: impl std::fmt::Display) -> Self {
        Error::NotFound {
            what,
            id: id.to_string(),
        }
    }

    /// Shorthand for [`Error::InvalidConfig`].
    pub fn invalid_config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for a [`Error::Backend`] with a source.
    pub fn backend(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// Shorthand for [`Error::StartFailed`] without output.
    pub fn start_failed(reason: crate::StatusReason) -> Self {
        Error::StartFailed {
            reason,
            output: None,
        }
    }

    /// Whether this is [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Shorthand for a [`Error::Storage`] with a source.
    pub fn storage(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Storage {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// An I/O error of a store, `what` saying what it was doing: a full
    /// disk or file system quota (`ENOSPC`, `EDQUOT`) is
    /// [`Error::InsufficientStorage`], anything else [`Error::Storage`].
    ///
    /// # Examples
    ///
    /// ```
    /// use cameleer_runtime::Error;
    ///
    /// let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
    /// assert_eq!(Error::from_io("writing the artifact", full).code(), "insufficient_storage");
    /// let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
    /// assert_eq!(Error::from_io("writing the artifact", other).code(), "storage_error");
    /// ```
    pub fn from_io(what: impl Into<String>, e: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
                Error::InsufficientStorage(format!("{}: {e}", what.into()))
            }
            _ => Error::storage(what, e),
        }
    }
}

/// Keeps the validator's stable code: a rejected JAR is
/// [`Error::InvalidArtifact`] with the [`ValidationError::code`]
/// (`invalid_entry_name`, `missing_main_class`, …), except for the three
/// rejections this crate has its own variants for (size, checksum, a broken
/// upload stream).
///
/// [`ValidationError::code`]: cameleer_build::ValidationError::code
impl From<cameleer_build::ValidationError> for Error {
    fn from(e: cameleer_build::ValidationError) -> Self {
        use cameleer_build::ValidationError as V;
        match e {
            V::ChecksumMismatch { expected, actual } => {
                Error::ChecksumMismatch { expected, actual }
            }
            V::TooLarge { limit } => Error::ArtifactTooLarge { limit },
            V::Io(source) => Error::UploadFailed { source },
            other => Error::InvalidArtifact {
                code: other.code(),
                source: Box::new(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use cameleer_build::{Sha256Digest, ValidationError};

    use super::*;

    #[test]
    fn validation_errors_keep_their_codes() {
        let e: Error = ValidationError::NotAZip("no PK header".into()).into();
        assert_eq!(e.code(), "not_a_zip");
        assert!(e.to_string().contains("no PK header"), "{e}");
        let e: Error = ValidationError::TooLarge { limit: 10 }.into();
        assert_eq!(e.code(), "artifact_too_large");
        let e: Error = ValidationError::ChecksumMismatch {
            expected: Sha256Digest::of(b"a"),
            actual: Sha256Digest::of(b"b"),
        }
        .into();
        assert_eq!(e.code(), "checksum_mismatch");
    }
}
