//! The backend's error type and its stable codes.
//!
//! Every failure of a Kubernetes call is a [`K8sError`] with a stable
//! [`code`](K8sError::code). At the [`RuntimeOrchestrator`] boundary it
//! becomes a [`cameleer_runtime::Error`]: `not_found` and `conflict` keep
//! their core variants, a rejected request is `invalid_config`, everything
//! else is [`Error::Backend`](cameleer_runtime::Error::Backend) whose source
//! is the [`K8sError`] (downcast it for the code, e.g. `forbidden`).
//!
//! [`RuntimeOrchestrator`]: cameleer_runtime::RuntimeOrchestrator

use std::fmt;

/// What the controller was doing when a call failed: the verb and resource
/// the API server authorizes, so that a `403` names the missing permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The RBAC verb: `get`, `list`, `watch`, `create`, `patch`, `delete`.
    pub verb: &'static str,
    /// The resource, with its API group: `deployments.apps`, `pods/log`,
    /// `namespaces`.
    pub resource: String,
    /// The namespace, for namespaced resources (`None`: cluster-wide).
    pub namespace: Option<String>,
    /// The object's name, when the call names one.
    pub name: Option<String>,
}

impl Call {
    /// A call of `verb` on `resource`.
    pub fn new(verb: &'static str, resource: impl Into<String>) -> Self {
        Self {
            verb,
            resource: resource.into(),
            namespace: None,
            name: None,
        }
    }

    /// The same call in `namespace`.
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The same call on the object `name`.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " in namespace {ns}"),
            None => f.write_str(" (cluster-wide)"),
        }
    }
}

/// Everything that can go wrong in the Kubernetes backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum K8sError {
    /// The API server refused the call (`403`): the controller's service
    /// account lacks the permission. The message names the verb and
    /// resource to grant (see the shipped RBAC in `rbac/`).
    #[error(
        "forbidden: the controller may not {call}; grant verb {verb:?} on {resource:?} (see cameleer-runtime-k8s/rbac): {message}",
        verb = call.verb,
        resource = call.resource
    )]
    Forbidden {
        /// The refused call.
        call: Call,
        /// The API server's message.
        message: String,
    },

    /// The object does not exist (`404`).
    #[error("not found: {call}")]
    NotFound {
        /// The call that found nothing.
        call: Call,
    },

    /// A write conflicted with the object's current state (`409`), e.g.
    /// another field manager owns the field.
    #[error("conflict: {call}: {message}")]
    Conflict {
        /// The conflicting call.
        call: Call,
        /// The API server's message.
        message: String,
    },

    /// The API server rejected the object (`422`, `400`): a bug in what the
    /// backend generates, or an admission webhook's refusal.
    #[error("rejected: {call}: {message}")]
    Rejected {
        /// The rejected call.
        call: Call,
        /// The API server's message.
        message: String,
    },

    /// Any other answer of the API server.
    #[error("the API server answered {status} to {call}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The call.
        call: Call,
        /// The API server's message.
        message: String,
    },

    /// The API server could not be reached, or its answer could not be read.
    #[error("cannot talk to the API server ({call}): {source}")]
    Unavailable {
        /// The call.
        call: Call,
        /// The client's error.
        #[source]
        source: Box<kube::Error>,
    },

    /// No kubeconfig or in-cluster config could be loaded.
    #[error("no Kubernetes client configuration: {0}")]
    Config(String),

    /// The request cannot be turned into Kubernetes objects (an image without
    /// a digest, a config the launch command refuses).
    #[error("invalid request: {field}: {reason}")]
    InvalidRequest {
        /// The offending field.
        field: String,
        /// Why.
        reason: String,
    },

    /// An in-cluster image build failed; the text is the builder's.
    #[error("image build failed: {0}")]
    BuildFailed(String),

    /// Something did not happen in time (a build, a rollout to settle).
    #[error("timed out: {0}")]
    Timeout(String),
}

impl K8sError {
    /// The stable, snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::Rejected { .. } => "rejected",
            Self::Api { .. } => "api_error",
            Self::Unavailable { .. } => "unavailable",
            Self::Config(_) => "config",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::BuildFailed(_) => "build_failed",
            Self::Timeout(_) => "timeout",
        }
    }

    /// Every code, for API documentation and tests.
    pub const CODES: &'static [&'static str] = &[
        "forbidden",
        "not_found",
        "conflict",
        "rejected",
        "api_error",
        "unavailable",
        "config",
        "invalid_request",
        "build_failed",
        "timeout",
    ];

    /// Classifies an error of the kube client for `call`.
    pub fn from_kube(call: Call, err: kube::Error) -> Self {
        match err {
            kube::Error::Api(status) => {
                let message = status.message.clone();
                match status.code {
                    403 => Self::Forbidden { call, message },
                    404 => Self::NotFound { call },
                    409 => Self::Conflict { call, message },
                    400 | 422 => Self::Rejected { call, message },
                    code => Self::Api {
                        status: code,
                        call,
                        message,
                    },
                }
            }
            other => Self::Unavailable {
                call,
                source: Box::new(other),
            },
        }
    }

    /// Whether this is [`K8sError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// An [`K8sError::InvalidRequest`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidRequest {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<K8sError> for cameleer_runtime::Error {
    fn from(e: K8sError) -> Self {
        use cameleer_runtime::Error;
        match e {
            K8sError::NotFound { call } => Error::NotFound {
                what: resource_kind(&call.resource),
                id: call
                    .name
                    .clone()
                    .unwrap_or_else(|| call.namespace.clone().unwrap_or_default()),
            },
            K8sError::Conflict { call, message } => Error::Conflict(format!("{call}: {message}")),
            K8sError::InvalidRequest { field, reason } => Error::InvalidConfig { field, reason },
            K8sError::BuildFailed(text) => Error::BuildFailed(text),
            K8sError::Timeout(what) => Error::Timeout(what),
            other => Error::Backend {
                message: other.to_string(),
                source: Some(Box::new(other)),
            },
        }
    }
}

/// The core's word for a resource in a `not_found`.
fn resource_kind(resource: &str) -> &'static str {
    match resource {
        "namespaces" => "namespace",
        "deployments.apps" => "app",
        "services" => "service",
        "pods" | "pods/log" => "pod",
        "jobs.batch" => "job",
        _ => "resource",
    }
}

/// The result type of this crate's fallible functions.
pub type K8sResult<T> = std::result::Result<T, K8sError>;

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(Status::failure("nope", "Reason").with_code(code)))
    }

    #[test]
    fn answers_become_typed_errors_with_stable_codes() {
        let call = Call::new("patch", "deployments.apps")
            .in_namespace("cameleer-acme-dev")
            .named("orders");
        for (code, expected) in [
            (403, "forbidden"),
            (404, "not_found"),
            (409, "conflict"),
            (422, "rejected"),
            (500, "api_error"),
        ] {
            let e = K8sError::from_kube(call.clone(), api(code));
            assert_eq!(e.code(), expected, "{code}");
            assert!(K8sError::CODES.contains(&e.code()));
        }
    }

    #[test]
    fn forbidden_names_the_missing_permission() {
        let e = K8sError::from_kube(
            Call::new("create", "namespaces").named("cameleer-acme-dev"),
            api(403),
        );
        let text = e.to_string();
        assert!(text.contains("verb \"create\" on \"namespaces\""), "{text}");
        let core: cameleer_runtime::Error = e.into();
        assert_eq!(core.code(), "backend_error");
        let source = std::error::Error::source(&core).unwrap();
        let k8s = source.downcast_ref::<K8sError>().unwrap();
        assert_eq!(k8s.code(), "forbidden");
    }

    #[test]
    fn not_found_and_conflict_keep_the_core_variants() {
        let call = Call::new("get", "deployments.apps")
            .in_namespace("ns")
            .named("orders");
        let e: cameleer_runtime::Error = K8sError::from_kube(call.clone(), api(404)).into();
        assert_eq!(e.code(), "not_found");
        let e: cameleer_runtime::Error = K8sError::from_kube(call, api(409)).into();
        assert_eq!(e.code(), "conflict");
        let e: cameleer_runtime::Error = K8sError::invalid("image", "no digest").into();
        assert_eq!(e.code(), "invalid_config");
    }
}
