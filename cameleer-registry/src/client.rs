//! [`RegistryClient`]: the requests of the distribution API v2 a push
//! needs, each with its typed errors.
//!
//! | step | request | answer |
//! | --- | --- | --- |
//! | does the repository have the blob? | `HEAD /v2/<repo>/blobs/<digest>` | 200 / 404 |
//! | mount it from another repository | `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<repo>` | 201 mounted, or 202 and an upload session |
//! | start an upload | `POST /v2/<repo>/blobs/uploads/` | 202 and `Location` |
//! | send the bytes, streamed | `PATCH <location>` | 202 and the next `Location` |
//! | commit under the digest | `PUT <location>?digest=<digest>` | 201 |
//! | the manifest | `PUT /v2/<repo>/manifests/<tag or digest>` | 201 and `Docker-Content-Digest` |
//!
//! Every request goes through one function that adds the authorization
//! the registry asked for ([`crate::auth`]), retries once after a 401 that
//! names a new challenge (bodies are re-opened from their file, never
//! buffered), and turns errors into [`RegistryError`]s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cameleer_build::Sha256Digest;
use cameleer_build::oci::{BlobSource, MEDIA_TYPE_MANIFEST};
use futures::{Stream, StreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};
use sha2::{Digest as _, Sha256};

use crate::auth::{self, Challenge, Scopes, Token, TokenResponse};
use crate::error::{self, Subject};
use crate::{RegistryConfig, RegistryError};

/// The manifest media types a `HEAD`/`GET` of a manifest accepts.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// How many bytes of a file blob are read at a time while streaming it.
pub(crate) const STREAM_CHUNK: usize = 256 * 1024;

/// A client of one registry. Cheap to clone: clones share the connection
/// pool and the cached tokens.
///
/// # Examples
///
/// ```no_run
/// use cameleer_registry::{Credentials, PushOptions, RegistryClient, RegistryConfig};
///
/// # async fn demo(image: cameleer_build::oci::OciImage) -> Result<(), cameleer_registry::RegistryError> {
/// let config = RegistryConfig::new("https://registry.example.com")?
///     .with_ca_file("/etc/cameleer/registry-ca.pem")?
///     .with_credentials(Credentials::from_env()?.expect("credentials in the environment"));
/// let client = RegistryClient::new(config)?;
/// client.check().await?; // fails fast on a wrong password or an untrusted certificate
/// let options = PushOptions { mount_from: Some("cameleer/base".into()), ..PushOptions::default() };
/// let report = client.push_image("cameleer/acme/orders", &image, &["v1"], &options).await?;
/// println!("pushed {} ({} bytes uploaded)", report.manifest_digest.oci(), report.bytes_uploaded);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    config: Arc<RegistryConfig>,
    state: Arc<Mutex<AuthState>>,
}

#[derive(Debug, Default)]
struct AuthState {
    /// `None` until `GET /v2/` was asked; then `Some(None)` for a registry
    /// without auth, `Some(Some(challenge))` otherwise.
    challenge: Option<Option<Challenge>>,
    tokens: std::collections::HashMap<Scopes, Token>,
}

/// How a request is authorized.
#[derive(Debug, Clone)]
enum Authorization {
    Basic,
    Bearer(String),
}

/// What a blob upload found at the start.
#[derive(Debug)]
pub(crate) enum UploadStart {
    /// The registry mounted the blob from the other repository.
    Mounted,
    /// An upload session to send the bytes to.
    Session(Url),
}

/// A body that can be made again (for the retry after a 401).
type BodyFn<'a> = &'a (dyn Fn() -> Result<reqwest::Body, RegistryError> + Send + Sync);

/// One request.
struct Call<'a> {
    method: Method,
    url: Url,
    headers: Vec<(&'static str, String)>,
    body: Option<BodyFn<'a>>,
    operation: String,
    scopes: &'a Scopes,
}

impl RegistryClient {
    /// A client for `config`.
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        Ok(Self {
            http: crate::tls::http_client(&config)?,
            config: Arc::new(config),
            state: Arc::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    fn registry(&self) -> &str {
        self.config.host()
    }

    fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.config
            .url()
            .join(path)
            .map_err(|e| RegistryError::config("repository", format!("{path:?}: {e}")))
    }

    /// Checks that the registry answers the API and takes our credentials:
    /// `GET /v2/`, authenticated as it asks. A wrong password is
    /// `auth_failed`, an untrusted certificate `tls_error`.
    pub async fn check(&self) -> Result<(), RegistryError> {
        let scopes = Scopes::none();
        let resp = self
            .send(Call {
                method: Method::GET,
                url: self.url("v2/")?,
                headers: Vec::new(),
                body: None,
                operation: "checking the API (GET /v2/)".into(),
                scopes: &scopes,
            })
            .await?;
        self.expect(
            resp,
            &[StatusCode::OK],
            "checking the API (GET /v2/)",
            &Subject::Other,
        )
        .await?;
        Ok(())
    }

    /// Whether `repo` has the blob `digest`.
    pub async fn blob_exists(
        &self,
        repo: &str,
        digest: &Sha256Digest,
    ) -> Result<bool, RegistryError> {
        self.blob_exists_as(repo, digest, &Scopes::pull(repo)).await
    }

    pub(crate) async fn blob_exists_as(
        &self,
        repo: &str,
        digest: &Sha256Digest,
        scopes: &Scopes,
    ) -> Result<bool, RegistryError> {
        let operation = format!("looking for blob {} in {repo}", digest.oci());
        let resp = self
            .send(Call {
                method: Method::HEAD,
                url: self.url(&format!("v2/{repo}/blobs/{}", digest.oci()))?,
                headers: Vec::new(),
                body: None,
                operation: operation.clone(),
                scopes,
            })
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self
                .error(resp, &operation, &Subject::Blob(digest.oci()))
                .await),
        }
    }

    /// The bytes of a small blob (an image config) of `repo`, checked
    /// against `digest`; `None` when the repository lacks it. Reads at most
    /// 16 MiB: layers are not for this.
    pub async fn blob(
        &self,
        repo: &str,
        digest: &Sha256Digest,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        const MAX: usize = 16 << 20;
        let scopes = Scopes::pull(repo);
        let subject = Subject::Blob(digest.oci());
        let operation = format!("reading blob {} of {repo}", digest.oci());
        let resp = self
            .send(Call {
                method: Method::GET,
                url: self.url(&format!("v2/{repo}/blobs/{}", digest.oci()))?,
                headers: Vec::new(),
                body: None,
                operation: operation.clone(),
                scopes: &scopes,
            })
            .await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(self.error(resp, &operation, &subject).await),
        }
        let mut out = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| error::transport(self.registry(), &operation, &e))?;
            out.extend_from_slice(&chunk);
            if out.len() > MAX {
                return Err(RegistryError::Protocol {
                    registry: self.registry().into(),
                    operation,
                    message: format!("the blob is larger than {MAX} bytes"),
                });
            }
        }
        if Sha256Digest::of(&out) != *digest {
            return Err(RegistryError::Protocol {
                registry: self.registry().into(),
                operation,
                message: "the blob's bytes do not hash to its digest".into(),
            });
        }
        Ok(Some(out))
    }

    /// Starts an upload to `repo`, mounting `digest` from `from` when
    /// given: the registry either mounts it (201) or opens a session to
    /// upload it (202), which is used rather than wasted.
    pub(crate) async fn start_upload(
        &self,
        repo: &str,
        mount: Option<(&Sha256Digest, &str)>,
        scopes: &Scopes,
    ) -> Result<UploadStart, RegistryError> {
        let mut url = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
        let (operation, subject) = match mount {
            Some((digest, from)) => {
                url.query_pairs_mut()
                    .append_pair("mount", &digest.oci())
                    .append_pair("from", from);
                (
                    format!("mounting blob {} from {from} into {repo}", digest.oci()),
                    Subject::Blob(digest.oci()),
                )
            }
            None => (format!("starting an upload to {repo}"), Subject::Other),
        };
        let resp = self
            .send(Call {
                method: Method::POST,
                url,
                headers: vec![("content-length", "0".into())],
                body: None,
                operation: operation.clone(),
                scopes,
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(UploadStart::Mounted),
            StatusCode::ACCEPTED => Ok(UploadStart::Session(self.location(&resp, &operation)?)),
            _ => Err(self.error(resp, &operation, &subject).await),
        }
    }

    /// Streams `source` (exactly `size` bytes with `digest`) to the upload
    /// session `session` with one `PATCH`, then commits it with
    /// `PUT ?digest=`. The bytes are hashed on the way: a file that no
    /// longer matches is `source_changed`, and nothing is committed.
    /// `on_bytes` is called with the running total as chunks go out.
    pub(crate) async fn upload(
        &self,
        session: Url,
        digest: &Sha256Digest,
        size: u64,
        source: &BlobSource,
        scopes: &Scopes,
        on_bytes: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    ) -> Result<(), RegistryError> {
        let subject = Subject::Blob(digest.oci());
        let operation = format!("uploading blob {} ({size} bytes)", digest.oci());
        let tracker = Arc::new(Tracker::default());
        let mut location = session;
        if size > 0 {
            let make_body = {
                let tracker = tracker.clone();
                let source = source.clone();
                move || -> Result<reqwest::Body, RegistryError> {
                    tracker.reset();
                    let stream = body_stream(&source, tracker.clone(), on_bytes.clone())?;
                    Ok(reqwest::Body::wrap_stream(stream))
                }
            };
            let resp = self
                .send(Call {
                    method: Method::PATCH,
                    url: location.clone(),
                    headers: vec![
                        ("content-type", "application/octet-stream".into()),
                        ("content-length", size.to_string()),
                    ],
                    body: Some(&make_body),
                    operation: operation.clone(),
                    scopes,
                })
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                let err = self.error(resp, &operation, &subject).await;
                self.cancel(&location, scopes).await;
                return Err(err);
            }
            let next = self.location(&resp, &operation)?;
            let (sent, actual) = tracker.result();
            if sent != size || actual != *digest {
                self.cancel(&next, scopes).await;
                return Err(RegistryError::SourceChanged {
                    digest: digest.oci(),
                    path: describe(source),
                    reason: format!(
                        "{sent} bytes with sha256 {actual} were read, the manifest says {size} bytes"
                    ),
                });
            }
            location = next;
        }
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", &digest.oci());
        let commit = format!("committing blob {}", digest.oci());
        let resp = self
            .send(Call {
                method: Method::PUT,
                url: url.clone(),
                headers: vec![("content-length", "0".into())],
                body: None,
                operation: commit.clone(),
                scopes,
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            let err = self.error(resp, &commit, &subject).await;
            self.cancel(&url, scopes).await;
            return Err(err);
        }
        Ok(())
    }

    /// Best effort: abandons an upload session (the registry would purge
    /// it later anyway).
    async fn cancel(&self, session: &Url, scopes: &Scopes) {
        let mut url = session.clone();
        url.set_query(None);
        let call = Call {
            method: Method::DELETE,
            url,
            headers: Vec::new(),
            body: None,
            operation: "cancelling an upload".into(),
            scopes,
        };
        if let Err(e) = self.send(call).await {
            tracing::debug!(error = %e, "could not cancel an upload session");
        }
    }

    /// The digest of the manifest `reference` (a tag or a digest) in
    /// `repo`, or `None` when there is none.
    pub async fn manifest_digest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Sha256Digest>, RegistryError> {
        self.manifest_digest_as(repo, reference, &Scopes::pull(repo))
            .await
    }

    pub(crate) async fn manifest_digest_as(
        &self,
        repo: &str,
        reference: &str,
        scopes: &Scopes,
    ) -> Result<Option<Sha256Digest>, RegistryError> {
        let subject = Subject::Manifest(manifest_name(repo, reference));
        let operation = format!("looking for manifest {}", manifest_name(repo, reference));
        let resp = self
            .send(Call {
                method: Method::HEAD,
                url: self.url(&format!("v2/{repo}/manifests/{reference}"))?,
                headers: vec![("accept", ACCEPT_MANIFESTS.into())],
                body: None,
                operation: operation.clone(),
                scopes,
            })
            .await?;
        match resp.status() {
            StatusCode::OK => match content_digest(&resp) {
                Some(d) => Ok(Some(d)),
                None => Ok(self
                    .manifest(repo, reference)
                    .await?
                    .map(|(_, bytes)| Sha256Digest::of(&bytes))),
            },
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.error(resp, &operation, &subject).await),
        }
    }

    /// The manifest `reference` of `repo`: its media type and bytes, or
    /// `None`.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<(String, Vec<u8>)>, RegistryError> {
        let scopes = Scopes::pull(repo);
        let subject = Subject::Manifest(manifest_name(repo, reference));
        let operation = format!("reading manifest {}", manifest_name(repo, reference));
        let resp = self
            .send(Call {
                method: Method::GET,
                url: self.url(&format!("v2/{repo}/manifests/{reference}"))?,
                headers: vec![("accept", ACCEPT_MANIFESTS.into())],
                body: None,
                operation: operation.clone(),
                scopes: &scopes,
            })
            .await?;
        match resp.status() {
            StatusCode::OK => {
                let media_type = resp
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| error::transport(self.registry(), &operation, &e))?;
                Ok(Some((media_type, bytes.to_vec())))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.error(resp, &operation, &subject).await),
        }
    }

    /// Puts `manifest` (an OCI image manifest) as `reference` (a tag, or
    /// its digest) in `repo`, and returns the digest the registry gives
    /// it, which must be the manifest's own.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &[u8],
    ) -> Result<Sha256Digest, RegistryError> {
        self.put_manifest_as(repo, reference, manifest, &Scopes::push(repo, &[]))
            .await
    }

    pub(crate) async fn put_manifest_as(
        &self,
        repo: &str,
        reference: &str,
        manifest: &[u8],
        scopes: &Scopes,
    ) -> Result<Sha256Digest, RegistryError> {
        let name = manifest_name(repo, reference);
        let subject = Subject::Manifest(name.clone());
        let operation = format!("putting manifest {name}");
        let body = Bytes::copy_from_slice(manifest);
        let make_body = move || -> Result<reqwest::Body, RegistryError> { Ok(body.clone().into()) };
        let resp = self
            .send(Call {
                method: Method::PUT,
                url: self.url(&format!("v2/{repo}/manifests/{reference}"))?,
                headers: vec![
                    ("content-type", MEDIA_TYPE_MANIFEST.into()),
                    ("content-length", manifest.len().to_string()),
                ],
                body: Some(&make_body),
                operation: operation.clone(),
                scopes,
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.error(resp, &operation, &subject).await);
        }
        let ours = Sha256Digest::of(manifest);
        match content_digest(&resp) {
            Some(theirs) if theirs != ours => Err(RegistryError::Protocol {
                registry: self.registry().into(),
                operation,
                message: format!(
                    "the registry stored the manifest as {} but its bytes hash to {}",
                    theirs.oci(),
                    ours.oci()
                ),
            }),
            _ => Ok(ours),
        }
    }

    // ------------------------------------------------------------ plumbing

    /// The absolute `Location` of an answer.
    fn location(&self, resp: &Response, operation: &str) -> Result<Url, RegistryError> {
        let value = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                registry: self.registry().into(),
                operation: operation.into(),
                message: format!("a {} answer without a Location header", resp.status()),
            })?;
        resp.url().join(value).map_err(|e| RegistryError::Protocol {
            registry: self.registry().into(),
            operation: operation.into(),
            message: format!("Location {value:?} is not a URL: {e}"),
        })
    }

    async fn expect(
        &self,
        resp: Response,
        ok: &[StatusCode],
        operation: &str,
        subject: &Subject,
    ) -> Result<Response, RegistryError> {
        if ok.contains(&resp.status()) {
            Ok(resp)
        } else {
            Err(self.error(resp, operation, subject).await)
        }
    }

    /// The typed error of an error answer.
    async fn error(&self, resp: Response, operation: &str, subject: &Subject) -> RegistryError {
        let status = resp.status().as_u16();
        let body = read_error_body(resp).await;
        error::classify(self.registry(), operation, subject, status, &body)
    }

    /// Sends `call`, authorized as the registry wants; after a 401 that
    /// brings a challenge, authorizes anew and sends once more.
    async fn send(&self, call: Call<'_>) -> Result<Response, RegistryError> {
        self.learn_challenge(&call.operation).await?;
        for attempt in 0..2 {
            let authorization = self.authorization(call.scopes, &call.operation).await?;
            let mut request = self.http.request(call.method.clone(), call.url.clone());
            for (name, value) in &call.headers {
                request = request.header(*name, value.as_str());
            }
            if let Some(body) = call.body {
                request = request.body(body()?);
            }
            // Credentials go to the registry's own origin only.
            if call.url.origin() == self.config.url().origin() {
                request = match (&authorization, self.config.credentials()) {
                    (Some(Authorization::Basic), Some(c)) => {
                        request.basic_auth(c.username(), Some(c.password()))
                    }
                    (Some(Authorization::Bearer(token)), _) => request.header(
                        AUTHORIZATION,
                        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                            RegistryError::Protocol {
                                registry: self.registry().into(),
                                operation: call.operation.clone(),
                                message: "the token server gave a token that is not a header value"
                                    .into(),
                            }
                        })?,
                    ),
                    _ => request,
                };
            }
            let resp = request
                .send()
                .await
                .map_err(|e| error::transport(self.registry(), &call.operation, &e))?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(auth::parse_challenge);
            let retry = {
                let mut state = self.lock();
                state.tokens.remove(call.scopes);
                let changed = challenge.is_some() && state.challenge != Some(challenge.clone());
                if challenge.is_some() {
                    state.challenge = Some(challenge.clone());
                }
                // A new scheme, or a bearer token to renew: one more try.
                attempt == 0
                    && (changed
                        || authorization.is_none()
                        || matches!(authorization, Some(Authorization::Bearer(_))))
            };
            if !retry {
                return Err(self.auth_error(resp, challenge.as_ref()).await);
            }
        }
        unreachable!("the second attempt returns")
    }

    async fn auth_error(&self, resp: Response, challenge: Option<&Challenge>) -> RegistryError {
        let scheme = match challenge {
            Some(Challenge::Basic) => "Basic",
            Some(Challenge::Bearer { .. }) => "Bearer",
            None => "unknown",
        };
        if self.config.credentials().is_none() {
            return RegistryError::AuthRequired {
                registry: self.registry().into(),
                scheme: scheme.into(),
            };
        }
        let (_, message) = error::parse_body(&read_error_body(resp).await);
        RegistryError::AuthFailed {
            registry: self.registry().into(),
            message: if message.is_empty() {
                "the registry answered 401 to our credentials".into()
            } else {
                message
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks `GET /v2/` once how the registry wants to be authenticated.
    async fn learn_challenge(&self, operation: &str) -> Result<(), RegistryError> {
        if self.lock().challenge.is_some() {
            return Ok(());
        }
        let url = self.url("v2/")?;
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| error::transport(self.registry(), operation, &e))?;
        let challenge = match resp.status() {
            StatusCode::UNAUTHORIZED => Some(
                resp.headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(auth::parse_challenge)
                    .unwrap_or(Challenge::Basic),
            ),
            s if s.is_success() => None,
            _ => {
                return Err(self
                    .error(resp, "checking the API (GET /v2/)", &Subject::Other)
                    .await);
            }
        };
        self.lock().challenge = Some(challenge);
        Ok(())
    }

    /// The authorization for `scopes` under the known challenge, fetching
    /// a bearer token when none is cached.
    async fn authorization(
        &self,
        scopes: &Scopes,
        operation: &str,
    ) -> Result<Option<Authorization>, RegistryError> {
        let (realm, service) = {
            let state = self.lock();
            match &state.challenge {
                None | Some(None) => return Ok(None),
                Some(Some(Challenge::Basic)) => {
                    return Ok(self.config.credentials().map(|_| Authorization::Basic));
                }
                Some(Some(Challenge::Bearer { realm, service })) => {
                    if let Some(t) = state.tokens.get(scopes)
                        && t.renew_at > std::time::Instant::now()
                    {
                        return Ok(Some(Authorization::Bearer(t.value.clone())));
                    }
                    (realm.clone(), service.clone())
                }
            }
        };
        let token = self
            .fetch_token(&realm, service.as_deref(), scopes, operation)
            .await?;
        let value = token.value.clone();
        self.lock().tokens.insert(scopes.clone(), token);
        Ok(Some(Authorization::Bearer(value)))
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &Scopes,
        operation: &str,
    ) -> Result<Token, RegistryError> {
        let credentials = self.config.credentials();
        let url = auth::token_url(realm, service, scopes, credentials.map(|c| c.username()))
            .map_err(|e| RegistryError::Protocol {
                registry: self.registry().into(),
                operation: operation.into(),
                message: format!("the token realm {realm:?} is not a URL: {e}"),
            })?;
        let realm_host = url.host_str().unwrap_or_default().to_string();
        if url.scheme() != "https" && !(url.scheme() == "http" && crate::config::is_loopback(&url))
        {
            return Err(RegistryError::InsecureRegistry { host: realm_host });
        }
        let what = format!("getting a token from {realm} for {operation}");
        let mut request = self.http.get(url);
        if let Some(c) = credentials {
            request = request.basic_auth(c.username(), Some(c.password()));
        }
        let resp = request
            .send()
            .await
            .map_err(|e| error::transport(&realm_host, &what, &e))?;
        match resp.status() {
            StatusCode::OK => {
                let text = resp
                    .text()
                    .await
                    .map_err(|e| error::transport(&realm_host, &what, &e))?;
                serde_json::from_str::<TokenResponse>(&text)
                    .ok()
                    .and_then(TokenResponse::into_token)
                    .ok_or_else(|| RegistryError::Protocol {
                        registry: realm_host,
                        operation: what,
                        message: "the token server's answer has no token".into(),
                    })
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if credentials.is_none() => {
                Err(RegistryError::AuthRequired {
                    registry: self.registry().into(),
                    scheme: "Bearer".into(),
                })
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let (_, message) = error::parse_body(&read_error_body(resp).await);
                Err(RegistryError::AuthFailed {
                    registry: self.registry().into(),
                    message: format!("the token server {realm} refused: {message}"),
                })
            }
            _ => {
                let status = resp.status().as_u16();
                let body = read_error_body(resp).await;
                Err(error::classify(
                    &realm_host,
                    &what,
                    &Subject::Other,
                    status,
                    &body,
                ))
            }
        }
    }
}

/// `repo:tag` or `repo@sha256:…`.
fn manifest_name(repo: &str, reference: &str) -> String {
    if reference.starts_with("sha256:") {
        format!("{repo}@{reference}")
    } else {
        format!("{repo}:{reference}")
    }
}

fn content_digest(resp: &Response) -> Option<Sha256Digest> {
    resp.headers()
        .get("docker-content-digest")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// At most 64 KiB of an error answer.
async fn read_error_body(resp: Response) -> String {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        out.extend_from_slice(&chunk);
        if out.len() > 64 * 1024 {
            out.truncate(64 * 1024);
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn describe(source: &BlobSource) -> String {
    match source {
        BlobSource::Memory(_) => "memory".into(),
        BlobSource::File(p) => p.display().to_string(),
    }
}

/// Counts and hashes the bytes of a body as they go out.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    sent: AtomicU64,
    hasher: Mutex<Sha256>,
}

impl Tracker {
    fn reset(&self) {
        self.sent.store(0, Ordering::Relaxed);
        *self.hasher.lock().unwrap_or_else(|p| p.into_inner()) = Sha256::new();
    }

    /// Adds `chunk`; returns the total so far.
    fn update(&self, chunk: &[u8]) -> u64 {
        self.hasher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(chunk);
        self.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64
    }

    fn result(&self) -> (u64, Sha256Digest) {
        let hasher = self
            .hasher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        (self.sent.load(Ordering::Relaxed), hasher.finalize().into())
    }
}

/// The bytes of `source` as a stream of chunks, counted and hashed by
/// `tracker`: a file is read [`STREAM_CHUNK`] bytes at a time, never whole.
fn body_stream(
    source: &BlobSource,
    tracker: Arc<Tracker>,
    on_bytes: Option<Arc<dyn Fn(u64) + Send + Sync>>,
) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static, RegistryError> {
    let inner: futures::stream::BoxStream<'static, std::io::Result<Bytes>> = match source {
        BlobSource::Memory(bytes) => {
            let bytes = Bytes::copy_from_slice(bytes);
            futures::stream::once(async move { Ok(bytes) }).boxed()
        }
        BlobSource::File(path) => {
            let file = std::fs::File::open(path)
                .map_err(RegistryError::io(format!("opening {}", path.display())))?;
            let file = tokio::fs::File::from_std(file);
            tokio_util::io::ReaderStream::with_capacity(file, STREAM_CHUNK).boxed()
        }
    };
    Ok(inner.map(move |chunk| {
        if let Ok(bytes) = &chunk {
            let total = tracker.update(bytes);
            if let Some(f) = &on_bytes {
                f(total);
            }
        }
        chunk
    }))
}
