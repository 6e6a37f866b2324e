//! The HTTP client: HTTP/1.1 over rustls with the ring provider, trusting
//! the system's roots and the operator's CA.

use std::sync::Arc;

use rustls::RootCertStore;

use crate::{RegistryConfig, RegistryError};

/// The `User-Agent` of every request.
const USER_AGENT: &str = concat!("cameleer-registry/", env!("CARGO_PKG_VERSION"));

/// A client for `config`. The crypto provider is passed explicitly (ring),
/// so nothing process-wide is installed and a host application's own
/// rustls setup is left alone. Redirects are not followed: a registry
/// that redirects an upload elsewhere is refused rather than handed our
/// credentials.
pub(crate) fn http_client(config: &RegistryConfig) -> Result<reqwest::Client, RegistryError> {
    let mut roots = RootCertStore::empty();
    // Missing or unreadable system roots are not fatal: the operator's CA
    // may be all that is needed.
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "a system CA certificate could not be loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system CA certificates");
    for (i, cert) in config.ca_certificates().iter().enumerate() {
        roots.add(cert.clone()).map_err(|e| {
            RegistryError::config(
                format!("ca[{i}]"),
                format!("not a usable CA certificate: {e}"),
            )
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::config("tls", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .user_agent(USER_AGENT)
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| RegistryError::config("http_client", crate::error::chain(&e)))
}
