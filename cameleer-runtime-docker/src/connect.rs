//! Connecting to the Docker Engine with a negotiated API version.
//!
//! bollard speaks a newer API than many engines in the field (Debian 12
//! ships Docker 20.10, API 1.41). An engine rejects requests for an API
//! version it does not know, so every client this crate hands out has asked
//! the engine for its version first and stepped down to it.
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> Result<(), cameleer_runtime_docker::connect::ConnectError> {
//! let docker = cameleer_runtime_docker::connect::connect().await?;
//! let version = docker.version().await.expect("engine answers");
//! println!("engine {:?} speaks API {:?}", version.version, version.api_version);
//! # Ok(()) }
//! ```

use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, ClientVersion, Docker};

/// The oldest engine API we support (Docker 20.10). Older engines lack
/// options the backend relies on.
pub const MIN_API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// The socket used when `DOCKER_HOST` is not set.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How long a request may wait for the engine's response headers, unless
/// configured otherwise. Streams (logs, pulls) are not cut by it once they
/// have started.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why no usable connection to the engine was made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The host address is malformed or of an unsupported scheme, or the
    /// socket does not exist.
    #[error("cannot connect to the Docker Engine at {host}: {source}")]
    Connect {
        /// The engine address.
        host: String,
        /// bollard's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine did not answer the version request.
    #[error("the Docker Engine at {host} does not answer: {source}")]
    Unreachable {
        /// The engine address.
        host: String,
        /// bollard's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine speaks an API older than [`MIN_API_VERSION`].
    #[error(
        "the Docker Engine at {host} speaks API {found}; at least {MIN_API_VERSION} is required"
    )]
    ApiTooOld {
        /// The engine address.
        host: String,
        /// The negotiated version.
        found: ClientVersion,
    },
}

impl ConnectError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectError::Connect { .. } => "docker_connect_failed",
            ConnectError::Unreachable { .. } => "docker_unreachable",
            ConnectError::ApiTooOld { .. } => "docker_api_too_old",
        }
    }
}

/// The engine address from `DOCKER_HOST`, or [`DEFAULT_HOST`].
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

/// Connects to the engine named by `DOCKER_HOST` (a unix socket by default)
/// and negotiates the API version.
pub async fn connect() -> Result<Docker, ConnectError> {
    connect_to(&docker_host(), DEFAULT_TIMEOUT).await
}

/// Connects to the engine at `host` (`unix://…`, `tcp://…` or `http://…`)
/// with the given request timeout, and negotiates the API version.
pub async fn connect_to(host: &str, timeout: Duration) -> Result<Docker, ConnectError> {
    let docker = open(host, timeout).map_err(|source| ConnectError::Connect {
        host: host.to_string(),
        source,
    })?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|source| ConnectError::Unreachable {
            host: host.to_string(),
            source,
        })?;
    let found = docker.client_version();
    if found < MIN_API_VERSION {
        return Err(ConnectError::ApiTooOld {
            host: host.to_string(),
            found,
        });
    }
    tracing::debug!(host, api = %found, "connected to the Docker Engine");
    Ok(docker)
}

fn open(host: &str, timeout: Duration) -> Result<Docker, bollard::errors::Error> {
    let secs = timeout.as_secs().max(1);
    if host.starts_with("unix://") {
        Docker::connect_with_unix(host, secs, API_DEFAULT_VERSION)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, secs, API_DEFAULT_VERSION)
    } else {
        // Anything else (npipe, ssh, https) as bollard's defaults handle it,
        // which also reports an unsupported scheme as a typed error.
        Docker::connect_with_host(host).map(|d| d.with_timeout(Duration::from_secs(secs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_is_a_connect_error() {
        let err = connect_to("unix:///nonexistent/docker.sock", DEFAULT_TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "docker_connect_failed");
        assert!(
            err.to_string().contains("/nonexistent/docker.sock"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_a_connect_error() {
        let err = connect_to("gopher://engine", DEFAULT_TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "docker_connect_failed");
    }

    #[tokio::test]
    async fn a_closed_tcp_port_is_unreachable() {
        let err = connect_to("tcp://127.0.0.1:1", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "docker_unreachable");
    }
}
