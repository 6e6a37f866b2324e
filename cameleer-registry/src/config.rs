//! Where the registry is, who we are to it, and which CA vouches for it.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use reqwest::Url;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::RegistryError;

/// The environment variable [`Credentials::from_env`] reads the user name from.
pub const USERNAME_ENV: &str = "CAMELEER_REGISTRY_USERNAME";
/// The environment variable [`Credentials::from_env`] reads the password from.
pub const PASSWORD_ENV: &str = "CAMELEER_REGISTRY_PASSWORD";

/// A user name and password (or token) for a registry: sent as HTTP basic
/// auth to a registry that asks for it, or to its token server to get a
/// bearer token. `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Credentials from a user name and a password. The user name may not
    /// contain `:` (basic auth could not carry it) nor control characters.
    pub fn new(
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<Self, RegistryError> {
        let username = username.into();
        let password = password.into();
        if username.is_empty() || username.contains(':') || username.chars().any(char::is_control) {
            return Err(RegistryError::config(
                "username",
                "must be non-empty, without ':' or control characters",
            ));
        }
        if password.is_empty() || password.contains(['\r', '\n', '\0']) {
            return Err(RegistryError::config(
                "password",
                "must be non-empty, on one line",
            ));
        }
        Ok(Self { username, password })
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Credentials from [`USERNAME_ENV`] and [`PASSWORD_ENV`]: `None` when
    /// neither is set, an error when only one is.
    pub fn from_env() -> Result<Option<Self>, RegistryError> {
        let get = |k| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (get(USERNAME_ENV), get(PASSWORD_ENV)) {
            (None, None) => Ok(None),
            (Some(u), Some(p)) => Self::new(u, p).map(Some),
            _ => Err(RegistryError::config(
                "credentials",
                format!("set both {USERNAME_ENV} and {PASSWORD_ENV}, or neither"),
            )),
        }
    }

    /// Credentials from a file whose first line is `username:password`
    /// (split at the first `:`; a trailing newline is ignored). The file
    /// should be readable by its owner only.
    ///
    /// ```
    /// use cameleer_registry::Credentials;
    ///
    /// let c = Credentials::parse("ci:s3cr:et\n").unwrap();
    /// assert_eq!((c.username(), c.password()), ("ci", "s3cr:et"));
    /// assert!(!format!("{c:?}").contains("s3cr"));
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, RegistryError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            RegistryError::config(
                "credentials_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Self::parse(&text).map_err(|e| match e {
            RegistryError::InvalidConfig { field, reason } => RegistryError::config(
                "credentials_file",
                format!("{}: {field}: {reason}", path.display()),
            ),
            other => other,
        })
    }

    /// Parses `username:password` (the first line of `text`).
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        let (user, password) = line.split_once(':').ok_or_else(|| {
            RegistryError::config("credentials", "expected one line username:password")
        })?;
        Self::new(user, password)
    }
}

/// How to reach a registry.
///
/// Plain `http://` is accepted only for a loopback host (`127.0.0.0/8`,
/// `::1`, `localhost`), as Docker does by default: anywhere else,
/// credentials and images would cross the network in clear. `https://`
/// trusts the system's roots and, when given, the operator's CA.
///
/// # Examples
///
/// ```
/// use cameleer_registry::{Credentials, RegistryConfig};
///
/// let config = RegistryConfig::new("https://registry.example.com:5000")?
///     .with_credentials(Credentials::new("ci", "secret")?);
/// assert_eq!(config.host(), "registry.example.com:5000");
/// assert!(RegistryConfig::new("http://127.0.0.1:5000").is_ok());
/// assert_eq!(RegistryConfig::new("http://10.0.0.5:5000").unwrap_err().code(), "insecure_registry");
/// # Ok::<(), cameleer_registry::RegistryError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    url: Url,
    host: String,
    credentials: Option<Credentials>,
    ca_certificates: Vec<CertificateDer<'static>>,
    /// How long connecting may take. Default 10 s.
    pub connect_timeout: Duration,
    /// How long a read may wait for the registry. Default 120 s.
    pub read_timeout: Duration,
    /// How many blobs are pushed at a time. Default 3.
    pub concurrency: usize,
}

impl RegistryConfig {
    /// A registry at `url`: `https://host[:port]` or, on loopback only,
    /// `http://host[:port]`. A path, query, fragment or user info is
    /// refused (credentials go in [`with_credentials`](Self::with_credentials)).
    pub fn new(url: &str) -> Result<Self, RegistryError> {
        let parsed = Url::parse(url)
            .map_err(|e| RegistryError::config("url", format!("{url:?} is not a URL: {e}")))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(RegistryError::config(
                "url",
                "must not carry credentials; pass them separately",
            ));
        }
        if !matches!(parsed.path(), "" | "/")
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(RegistryError::config(
                "url",
                format!("{url:?} must be scheme://host[:port] only"),
            ));
        }
        let host_str = parsed
            .host_str()
            .ok_or_else(|| RegistryError::config("url", format!("{url:?} has no host")))?
            .to_string();
        match parsed.scheme() {
            "https" => {}
            "http" if is_loopback(&parsed) => {}
            "http" => return Err(RegistryError::InsecureRegistry { host: host_str }),
            other => {
                return Err(RegistryError::config(
                    "url",
                    format!("scheme {other:?}: use https (or http on loopback)"),
                ));
            }
        }
        let host = match parsed.port() {
            Some(port) => format!("{host_str}:{port}"),
            None => host_str,
        };
        Ok(Self {
            url: parsed,
            host,
            credentials: None,
            ca_certificates: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            concurrency: 3,
        })
    }

    /// Sends `credentials` when the registry asks for them.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Also trusts the CA certificates in `pem` (one or more PEM
    /// `CERTIFICATE` blocks), next to the system's roots.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Self, RegistryError> {
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert
                .map_err(|e| RegistryError::config("ca", format!("not a PEM certificate: {e}")))?;
            self.ca_certificates.push(cert);
            found += 1;
        }
        if found == 0 {
            return Err(RegistryError::config(
                "ca",
                "no PEM CERTIFICATE block found",
            ));
        }
        Ok(self)
    }

    /// [`with_ca_pem`](Self::with_ca_pem) with the contents of `path`.
    pub fn with_ca_file(self, path: impl AsRef<Path>) -> Result<Self, RegistryError> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|e| {
            RegistryError::config("ca_file", format!("cannot read {}: {e}", path.display()))
        })?;
        self.with_ca_pem(&pem).map_err(|e| match e {
            RegistryError::InvalidConfig { reason, .. } => {
                RegistryError::config("ca_file", format!("{}: {reason}", path.display()))
            }
            other => other,
        })
    }

    /// The base URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `host[:port]`, as image references name the registry.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The credentials, if any.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The operator's CA certificates (DER).
    pub fn ca_certificates(&self) -> &[CertificateDer<'static>] {
        &self.ca_certificates
    }
}

/// Whether `url`'s host is loopback: `127.0.0.0/8`, `::1` or `localhost`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        for ok in [
            "https://r.example.com",
            "https://r.example.com:5000/",
            "http://127.0.0.1:5000",
            "http://127.5.6.7",
            "http://[::1]:5000",
            "http://localhost:5000",
        ] {
            RegistryConfig::new(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, code) in [
            ("http://10.1.2.3:5000", "insecure_registry"),
            ("http://registry.local", "insecure_registry"),
            ("http://localhost.evil.com", "insecure_registry"),
            ("ftp://127.0.0.1", "invalid_registry_config"),
            ("https://u:p@r.example.com", "invalid_registry_config"),
            ("https://r.example.com/v2/", "invalid_registry_config"),
            ("not a url", "invalid_registry_config"),
        ] {
            assert_eq!(RegistryConfig::new(bad).unwrap_err().code(), code, "{bad}");
        }
        assert_eq!(
            RegistryConfig::new("https://r.example.com").unwrap().host(),
            "r.example.com"
        );
        assert_eq!(
            RegistryConfig::new("http://[::1]:5000").unwrap().host(),
            "[::1]:5000"
        );
    }

    #[test]
    fn credentials_parse_and_stay_secret() {
        let c = Credentials::parse("user:pa:ss\r\nignored").unwrap();
        assert_eq!(c.username(), "user");
        assert_eq!(c.password(), "pa:ss");
        assert!(!format!("{c:?}").contains("pa:ss"));
        for bad in ["nocolon", ":pw", "user:", ""] {
            assert!(Credentials::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_ca_must_be_a_pem_certificate() {
        let c = RegistryConfig::new("https://r.example.com").unwrap();
        assert_eq!(
            c.clone().with_ca_pem(b"junk").unwrap_err().code(),
            "invalid_registry_config"
        );
        let err = c.with_ca_file("/nonexistent/ca.pem").unwrap_err();
        assert!(err.to_string().contains("ca_file"), "{err}");
    }
}
