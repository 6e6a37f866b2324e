//! Turning engine errors into the crate's typed errors.

use cameleer_runtime::Error;

/// The HTTP status the engine answered with, when the error is an answer.
pub(crate) fn status_code(err: &bollard::errors::Error) -> Option<u16> {
    match err {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// 404: the thing does not exist.
pub(crate) fn is_not_found(err: &bollard::errors::Error) -> bool {
    status_code(err) == Some(404)
}

/// 409: a name is taken, or the thing is in the wrong state for the request.
pub(crate) fn is_conflict(err: &bollard::errors::Error) -> bool {
    status_code(err) == Some(409)
}

/// A [`Error::Backend`] saying what we were doing, with the engine's error as
/// its source.
pub(crate) fn backend(doing: impl std::fmt::Display, err: bollard::errors::Error) -> Error {
    let message = match &err {
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            format!("{doing}: {message}")
        }
        other => format!("{doing}: {other}"),
    };
    Error::backend(message, err)
}
