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

/// Whether a [`backend`] error says the container is gone: removed (404,
/// "No such container") or being removed (409, "dead or marked for
/// removal").
pub(crate) fn is_gone_error(err: &Error) -> bool {
    match err {
        Error::Backend {
            source: Some(source),
            ..
        } => source
            .downcast_ref::<bollard::errors::Error>()
            .is_some_and(|e| is_not_found(e) || is_conflict(e)),
        _ => false,
    }
}

/// Whether the engine did not answer at all (its socket is gone, the
/// connection broke, the request timed out), as opposed to answering with
/// an error.
pub(crate) fn is_unreachable(err: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    matches!(
        err,
        E::RequestTimeoutError
            | E::IOError { .. }
            | E::HyperResponseError { .. }
            | E::HyperLegacyError { .. }
            | E::HttpClientError { .. }
            | E::SocketNotFoundError(_)
    )
}

/// Whether `err` is a [`Error::Backend`] made by [`backend`] from an engine
/// that did not answer.
pub(crate) fn is_unreachable_error(err: &Error) -> bool {
    match err {
        Error::Backend {
            source: Some(source),
            ..
        } => source
            .downcast_ref::<bollard::errors::Error>()
            .is_some_and(is_unreachable),
        _ => false,
    }
}

/// A [`Error::Backend`] saying what we were doing, with the engine's error as
/// its source.
pub(crate) fn backend(doing: impl std::fmt::Display, err: bollard::errors::Error) -> Error {
    Error::backend(format!("{doing}: {}", message(&err)), err)
}

/// What the engine said: its message alone for an error it answered with.
pub(crate) fn message(err: &bollard::errors::Error) -> String {
    match err {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

/// Like [`backend`], naming the engine when it did not answer, so that the
/// reason a deployment records says which engine went away. The transport
/// error is then the source only (the platform's reasons append it).
pub(crate) fn backend_at(
    engine: &str,
    doing: impl std::fmt::Display,
    err: bollard::errors::Error,
) -> Error {
    if is_unreachable(&err) {
        Error::backend(
            format!("the Docker Engine at {engine} did not answer while {doing}"),
            err,
        )
    } else {
        backend(doing, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_that_does_not_answer_is_named() {
        let err = backend_at(
            "unix:///run/x.sock",
            "inspecting container c",
            bollard::errors::Error::RequestTimeoutError,
        );
        assert!(is_unreachable_error(&err));
        assert!(
            err.to_string()
                .contains("the Docker Engine at unix:///run/x.sock did not answer"),
            "{err}"
        );
        let answered = backend_at(
            "unix:///run/x.sock",
            "inspecting container c",
            bollard::errors::Error::DockerResponseServerError {
                status_code: 500,
                message: "boom".into(),
            },
        );
        assert!(!is_unreachable_error(&answered));
        assert_eq!(
            answered.to_string(),
            "backend error: inspecting container c: boom"
        );
    }
}
