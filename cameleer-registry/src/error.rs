//! Why a push failed, in words an operator can act on.

use std::error::Error as StdError;
use std::io;

use cameleer_build::java::jre::JreError;
use cameleer_build::oci::OciError;
use serde::Deserialize;

/// Why talking to a registry, or building an image for one, failed.
///
/// Every variant has a stable, snake_case [`code`](RegistryError::code);
/// messages name the registry, the repository or blob, and what the
/// registry said.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry URL, a credentials file, a CA file, a repository or a
    /// tag is not acceptable.
    #[error("invalid registry configuration {field}: {reason}")]
    InvalidConfig {
        /// The offending field: `url`, `ca_file`, `repository`, …
        field: String,
        /// Why.
        reason: String,
    },
    /// Plain HTTP to a host that is not loopback: credentials and images
    /// would cross the network in clear.
    #[error(
        "refusing plain HTTP to {host}: only a loopback registry (127.0.0.0/8, ::1, localhost) may be reached without TLS"
    )]
    InsecureRegistry {
        /// The host of the URL.
        host: String,
    },
    /// The registry (or its token server) refused the credentials.
    #[error("authentication to {registry} failed: {message}")]
    AuthFailed {
        /// The registry (`host:port`).
        registry: String,
        /// What the server said.
        message: String,
    },
    /// The registry asks for credentials and none are configured.
    #[error("{registry} requires authentication ({scheme}) and no credentials are configured")]
    AuthRequired {
        /// The registry.
        registry: String,
        /// `Basic` or `Bearer`.
        scheme: String,
    },
    /// The credentials were accepted, but they may not do this.
    #[error("{registry} denied {operation}: {message}")]
    Denied {
        /// The registry.
        registry: String,
        /// What was being done.
        operation: String,
        /// What the registry said.
        message: String,
    },
    /// TLS failed: the certificate is not trusted (an unknown CA, another
    /// name, expired), or the server does not speak TLS.
    #[error("TLS with {registry} failed: {message}")]
    Tls {
        /// The registry (or token server).
        registry: String,
        /// rustls' words.
        message: String,
    },
    /// The registry is out of storage, or the repository is over its
    /// quota.
    #[error("{registry} has no room while {operation}: {message}")]
    QuotaExceeded {
        /// The registry.
        registry: String,
        /// What was being done.
        operation: String,
        /// What the registry said (a quota, `no space left on device`).
        message: String,
    },
    /// The registry refused the manifest.
    #[error("{registry} rejected the manifest {reference}: {message}")]
    ManifestRejected {
        /// The registry.
        registry: String,
        /// `repository:tag` or `repository@digest`.
        reference: String,
        /// The registry's error codes (`MANIFEST_INVALID`,
        /// `MANIFEST_BLOB_UNKNOWN`, …), when it gave any.
        codes: Vec<String>,
        /// What the registry said.
        message: String,
    },
    /// The registry refused a blob: its digest or size is not what was
    /// announced.
    #[error("{registry} rejected blob {digest}: {message}")]
    BlobRejected {
        /// The registry.
        registry: String,
        /// The blob's digest, `sha256:…`.
        digest: String,
        /// What the registry said.
        message: String,
    },
    /// The registry could not be reached, or the connection broke
    /// (refused, reset, closed mid-upload).
    #[error("{registry} is unreachable while {operation}: {message}")]
    Unreachable {
        /// The registry.
        registry: String,
        /// What was being done.
        operation: String,
        /// The transport's words.
        message: String,
    },
    /// The registry did not answer in time.
    #[error("{registry} did not answer in time while {operation}")]
    Timeout {
        /// The registry.
        registry: String,
        /// What was being done.
        operation: String,
    },
    /// Any other error answer.
    #[error("{registry} answered {status} while {operation}: {message}")]
    Registry {
        /// The registry.
        registry: String,
        /// What was being done.
        operation: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error codes, when it gave any.
        codes: Vec<String>,
        /// What the registry said.
        message: String,
    },
    /// The registry broke the distribution protocol: no `Location` for an
    /// upload, a manifest digest that is not the one sent.
    #[error("{registry} broke the distribution protocol while {operation}: {message}")]
    Protocol {
        /// The registry.
        registry: String,
        /// What was being done.
        operation: String,
        /// What was wrong.
        message: String,
    },
    /// A local blob no longer has the digest its manifest gives: the file
    /// changed while it was pushed. Nothing was committed under that
    /// digest.
    #[error("the blob {digest} at {path} changed while it was pushed: {reason}")]
    SourceChanged {
        /// The digest the manifest gives.
        digest: String,
        /// Where the blob was read from.
        path: String,
        /// What differs.
        reason: String,
    },
    /// Assembling the image (layers, config, manifest) failed.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// Making the JRE base layer failed.
    #[error(transparent)]
    Jre(#[from] JreError),
    /// Reading a local file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl RegistryError {
    /// The stable, snake_case error code (for [`Oci`](Self::Oci) and
    /// [`Jre`](Self::Jre), the inner error's own).
    ///
    /// ```
    /// use cameleer_registry::RegistryConfig;
    ///
    /// let err = RegistryConfig::new("http://registry.example.com").unwrap_err();
    /// assert_eq!(err.code(), "insecure_registry");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidConfig { .. } => "invalid_registry_config",
            Self::InsecureRegistry { .. } => "insecure_registry",
            Self::AuthFailed { .. } => "auth_failed",
            Self::AuthRequired { .. } => "auth_required",
            Self::Denied { .. } => "access_denied",
            Self::Tls { .. } => "tls_error",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::ManifestRejected { .. } => "manifest_rejected",
            Self::BlobRejected { .. } => "blob_rejected",
            Self::Unreachable { .. } => "registry_unreachable",
            Self::Timeout { .. } => "registry_timeout",
            Self::Registry { .. } => "registry_error",
            Self::Protocol { .. } => "protocol_error",
            Self::SourceChanged { .. } => "source_changed",
            Self::Oci(e) => e.code(),
            Self::Jre(e) => e.code(),
            Self::Io { .. } => "io_error",
        }
    }

    /// Every code [`code`](Self::code) returns for the registry's own
    /// variants (not counting the inner codes of `Oci` and `Jre`).
    pub const CODES: &'static [&'static str] = &[
        "invalid_registry_config",
        "insecure_registry",
        "auth_failed",
        "auth_required",
        "access_denied",
        "tls_error",
        "quota_exceeded",
        "manifest_rejected",
        "blob_rejected",
        "registry_unreachable",
        "registry_timeout",
        "registry_error",
        "protocol_error",
        "source_changed",
        "io_error",
    ];

    /// Whether trying again later may succeed without changing anything:
    /// the registry was unreachable, slow, or answered 5xx or 429. A push
    /// is idempotent, so a retry uploads only what is still missing.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } => true,
            Self::Registry { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// What a request was about, for classifying the answer.
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    /// A blob, `sha256:…`.
    Blob(String),
    /// A manifest, `repository:tag` or `repository@digest`.
    Manifest(String),
    /// Anything else.
    Other,
}

/// The distribution error envelope: `{"errors": [{"code", "message", "detail"}]}`.
#[derive(Debug, Default, Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<EnvelopeError>,
}

#[derive(Debug, Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    detail: serde_json::Value,
}

/// The registry's error codes and a one-line message from an error body.
pub(crate) fn parse_body(body: &str) -> (Vec<String>, String) {
    let envelope: Envelope = serde_json::from_str(body).unwrap_or_default();
    if envelope.errors.is_empty() {
        let text = body.trim();
        let text: String = text.chars().take(500).collect();
        return (Vec::new(), text);
    }
    let codes = envelope.errors.iter().map(|e| e.code.clone()).collect();
    let message = envelope
        .errors
        .iter()
        .map(|e| {
            let mut m = format!("{}: {}", e.code, e.message);
            if !e.detail.is_null() {
                let detail = e.detail.to_string();
                let detail: String = detail.chars().take(300).collect();
                m.push_str(&format!(" ({detail})"));
            }
            m
        })
        .collect::<Vec<_>>()
        .join("; ");
    (codes, message)
}

/// The typed error of an error answer (not a 401: authentication is
/// handled before this).
pub(crate) fn classify(
    registry: &str,
    operation: &str,
    subject: &Subject,
    status: u16,
    body: &str,
) -> RegistryError {
    let (codes, message) = parse_body(body);
    let message = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        message
    };
    let lower = format!(
        "{} {}",
        message.to_ascii_lowercase(),
        codes.join(" ").to_ascii_lowercase()
    );
    let full = lower.contains("no space left")
        || lower.contains("quota")
        || lower.contains("insufficient storage")
        || lower.contains("disk full")
        || lower.contains("storage limit");
    let registry = registry.to_string();
    let operation = operation.to_string();
    if status == 413 || status == 507 || (status >= 400 && full) {
        return RegistryError::QuotaExceeded {
            registry,
            operation,
            message,
        };
    }
    if status == 403 {
        return RegistryError::Denied {
            registry,
            operation,
            message,
        };
    }
    match subject {
        Subject::Manifest(reference)
            if (400..500).contains(&status) && status != 404 && status != 429 =>
        {
            return RegistryError::ManifestRejected {
                registry,
                reference: reference.clone(),
                codes,
                message,
            };
        }
        Subject::Manifest(reference)
            if status == 404
                && codes
                    .iter()
                    .any(|c| c.starts_with("MANIFEST") || c == "BLOB_UNKNOWN") =>
        {
            return RegistryError::ManifestRejected {
                registry,
                reference: reference.clone(),
                codes,
                message,
            };
        }
        Subject::Blob(digest)
            if status == 400
                && codes.iter().any(|c| {
                    matches!(
                        c.as_str(),
                        "DIGEST_INVALID" | "SIZE_INVALID" | "BLOB_UPLOAD_INVALID"
                    )
                }) =>
        {
            return RegistryError::BlobRejected {
                registry,
                digest: digest.clone(),
                message,
            };
        }
        _ => {}
    }
    RegistryError::Registry {
        registry,
        operation,
        status,
        codes,
        message,
    }
}

/// The typed error of a request that got no answer: TLS, timeout or a
/// broken connection.
pub(crate) fn transport(registry: &str, operation: &str, e: &reqwest::Error) -> RegistryError {
    let message = chain(e);
    if let Some(tls) = tls_error(e) {
        return RegistryError::Tls {
            registry: registry.to_string(),
            message: tls,
        };
    }
    if e.is_timeout() {
        return RegistryError::Timeout {
            registry: registry.to_string(),
            operation: operation.to_string(),
        };
    }
    RegistryError::Unreachable {
        registry: registry.to_string(),
        operation: operation.to_string(),
        message,
    }
}

/// The error and its sources, joined with `: `.
pub(crate) fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// rustls' error somewhere in the chain (hyper-rustls wraps it in an
/// `io::Error`, sometimes in two).
fn tls_error(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(describe_tls(tls));
        }
        let mut io_err = err.downcast_ref::<io::Error>();
        while let Some(io) = io_err {
            let Some(inner) = io.get_ref() else { break };
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(describe_tls(tls));
            }
            io_err = inner.downcast_ref::<io::Error>();
        }
        current = err.source();
    }
    None
}

fn describe_tls(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(cert) => format!(
            "the registry's certificate is not trusted ({cert:?}); pass the CA that signed it"
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!("the server does not speak TLS here ({e})")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG: &str = "registry.example.com";

    fn code(status: u16, subject: Subject, body: &str) -> &'static str {
        classify(REG, "pushing", &subject, status, body).code()
    }

    #[test]
    fn answers_map_to_typed_errors() {
        let manifest = || Subject::Manifest("app:v1".into());
        let blob = || Subject::Blob("sha256:00".into());
        let env = |code: &str, msg: &str| {
            format!(r#"{{"errors":[{{"code":"{code}","message":"{msg}"}}]}}"#)
        };
        assert_eq!(code(413, blob(), ""), "quota_exceeded");
        assert_eq!(code(507, blob(), ""), "quota_exceeded");
        assert_eq!(
            code(403, blob(), &env("DENIED", "repository quota exceeded")),
            "quota_exceeded"
        );
        assert_eq!(
            code(
                500,
                blob(),
                &env("UNKNOWN", "unknown error").replace(
                    "}]}",
                    r#","detail":"write /var/lib/x: no space left on device"}]}"#
                )
            ),
            "quota_exceeded"
        );
        assert_eq!(
            code(
                403,
                blob(),
                &env("DENIED", "requested access to the resource is denied")
            ),
            "access_denied"
        );
        assert_eq!(
            code(
                400,
                manifest(),
                &env("MANIFEST_INVALID", "manifest invalid")
            ),
            "manifest_rejected"
        );
        assert_eq!(
            code(
                404,
                manifest(),
                &env("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry")
            ),
            "manifest_rejected"
        );
        assert_eq!(
            code(
                400,
                blob(),
                &env(
                    "DIGEST_INVALID",
                    "provided digest did not match uploaded content"
                )
            ),
            "blob_rejected"
        );
        assert_eq!(
            code(
                404,
                blob(),
                &env("BLOB_UPLOAD_UNKNOWN", "blob upload unknown")
            ),
            "registry_error"
        );
        assert_eq!(
            code(503, Subject::Other, "<html>bad gateway</html>"),
            "registry_error"
        );
        let e = classify(
            REG,
            "pushing",
            &manifest(),
            400,
            &env("MANIFEST_INVALID", "manifest invalid"),
        );
        let RegistryError::ManifestRejected {
            codes, reference, ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(codes, &["MANIFEST_INVALID"]);
        assert_eq!(reference, "app:v1");
        assert!(
            e.to_string().contains("MANIFEST_INVALID: manifest invalid"),
            "{e}"
        );
        assert!(!e.is_retryable());
        assert!(classify(REG, "x", &Subject::Other, 502, "").is_retryable());
    }

    #[test]
    fn codes_are_listed() {
        for e in [
            RegistryError::config("url", "x"),
            RegistryError::InsecureRegistry { host: "h".into() },
            RegistryError::Unreachable {
                registry: REG.into(),
                operation: "x".into(),
                message: "m".into(),
            },
        ] {
            assert!(RegistryError::CODES.contains(&e.code()), "{}", e.code());
        }
    }
}
