//! The contracts of the stores a host application provides.
//!
//! The host owns storage: it implements these traits over its own database
//! and blob store. [`crate::memory`] has in-memory implementations.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use cameleer_build::{ImageRef, Sha256Digest};
use futures::Stream;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::{AppConfig, AppRef, Deployment, DeploymentId, DeploymentSource, Result, TenantId};

/// A stream of bytes, as uploads and stored artifacts are read.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// What the caller decides about a new deployment; the store adds the id,
/// the version, the time and the initial status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment {
    /// SHA-256 of the JAR.
    pub artifact: Sha256Digest,
    /// The pinned image when it is already known (promotion, rollback).
    pub image: Option<ImageRef>,
    /// How the image is obtained.
    pub source: DeploymentSource,
    /// The environment's config.
    pub config: AppConfig,
}

/// Keeps deployments.
///
/// Implementations must make [`create`](Self::create) allocate versions
/// atomically (per [`AppRef`], monotonic, never reused, even after a delete
/// or a crash) and [`update`](Self::update) conditional, so two writers can
/// never clobber each other.
#[async_trait]
pub trait DeploymentStore: Send + Sync {
    /// Allocates the next version of `app` (1 for the first) and stores the
    /// new deployment built by [`Deployment::new`], in one atomic step.
    async fn create(&self, app: &AppRef, new: NewDeployment) -> Result<Deployment>;

    /// The deployment with this id, or [`Error::NotFound`](crate::Error::NotFound).
    async fn get(&self, id: &DeploymentId) -> Result<Deployment>;

    /// Writes `deployment` if the stored revision still equals
    /// `deployment.revision`, and returns it with the revision bumped.
    /// Otherwise nothing is written and the result is
    /// [`Error::Conflict`](crate::Error::Conflict): re-read and retry.
    async fn update(&self, deployment: &Deployment) -> Result<Deployment>;

    /// Every deployment of `app`, newest (highest version) first.
    async fn list(&self, app: &AppRef) -> Result<Vec<Deployment>>;

    /// The newest deployment of every app and environment of `tenant`,
    /// ordered by app then environment.
    async fn latest_per_app(&self, tenant: &TenantId) -> Result<Vec<Deployment>>;

    /// Every deployment in BUILDING, STARTING or RUNNING, across tenants:
    /// what a backend should be running (used after a controller restart).
    async fn active(&self) -> Result<Vec<Deployment>>;

    /// The newest deployment of every app and environment, across tenants.
    ///
    /// After a controller restart the backend is told to keep these besides
    /// the [`active`](Self::active) ones: a newest version that FAILED or was
    /// STOPPED keeps its container, so the app's status still says why and
    /// its logs stay readable. Required: without it a backend would remove
    /// such a container as one the store does not know.
    async fn latest_of_every_app(&self) -> Result<Vec<Deployment>>;
}

/// A stored artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactInfo {
    /// Its SHA-256, which is also its key.
    pub sha256: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// The bytes of an upload on their way into an [`ArtifactStore`], and their
/// SHA-256, which the one who streams them computes as they pass.
///
/// It is a [`Stream`] of chunks. Once it has ended without error,
/// [`sha256`](Self::sha256) is the digest of every byte it yielded; the
/// [`Platform`](crate::Platform) takes it from its validator, which hashes
/// the upload anyway, so an upload is hashed once. Before the end (and after
/// an error) the digest is not known yet.
///
/// # Examples
///
/// A digest known up front (an import of artifacts hashed elsewhere, a
/// test):
///
/// ```
/// use bytes::Bytes;
/// use cameleer_runtime::memory::MemoryArtifactStore;
/// use cameleer_runtime::{ArtifactStore, ArtifactUpload, Sha256Digest};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryArtifactStore::new();
/// let bytes = Bytes::from_static(b"PK\x03\x04");
/// let data = Box::pin(futures::stream::iter([Ok(bytes.clone())]));
/// let info = store.put(ArtifactUpload::new(data, Sha256Digest::of(&bytes))).await.unwrap();
/// assert_eq!((info.sha256, info.size), (Sha256Digest::of(&bytes), 4));
/// # });
/// ```
pub struct ArtifactUpload {
    data: ByteStream,
    sha256: Arc<OnceLock<Sha256Digest>>,
}

impl ArtifactUpload {
    /// An upload of `data`, whose SHA-256 the caller already knows.
    pub fn new(data: ByteStream, sha256: Sha256Digest) -> Self {
        Self {
            data,
            sha256: Arc::new(OnceLock::from(sha256)),
        }
    }

    /// An upload whose digest is set through `sha256` before its stream
    /// yields its end.
    pub(crate) fn with_digest_from(data: ByteStream, sha256: Arc<OnceLock<Sha256Digest>>) -> Self {
        Self { data, sha256 }
    }

    /// The SHA-256 of the whole upload: known once the stream has ended
    /// without error (or from the start, for [`new`](Self::new)).
    pub fn sha256(&self) -> Option<Sha256Digest> {
        self.sha256.get().copied()
    }

    /// The digest after the stream's clean end;
    /// [`Error::Internal`](crate::Error::Internal) when the one who streamed
    /// the upload did not set it (a bug, not bad input).
    pub fn finished_sha256(&self) -> Result<Sha256Digest> {
        self.sha256()
            .ok_or_else(|| crate::Error::Internal("the upload ended without its SHA-256".into()))
    }
}

impl std::fmt::Debug for ArtifactUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactUpload")
            .field("sha256", &self.sha256())
            .finish_non_exhaustive()
    }
}

impl Stream for ArtifactUpload {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.data.as_mut().poll_next(cx)
    }
}

/// Keeps JARs, addressed by their SHA-256.
///
/// Writes are all-or-nothing: [`put`](Self::put) commits only when its input
/// stream ends without error; an error in the stream (for instance a
/// validation failure injected by the [`Platform`](crate::Platform)) leaves
/// nothing behind, not even half a file.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Stores the bytes of `upload` under its SHA-256
    /// ([`ArtifactUpload::sha256`], known once the stream has ended without
    /// error). Storing content that is already there succeeds and keeps one
    /// copy.
    ///
    /// The digest comes from whoever streamed the bytes (the platform's
    /// validator hashed them on the way), so a store need not hash them
    /// again. A store *may* verify it (hash while it writes, compare at the
    /// end); on a mismatch it must store nothing and fail with
    /// [`Error::ChecksumMismatch`](crate::Error::ChecksumMismatch)
    /// (`expected` the upload's digest, `actual` its own).
    async fn put(&self, upload: ArtifactUpload) -> Result<ArtifactInfo>;

    /// The bytes of the artifact, or [`Error::NotFound`](crate::Error::NotFound).
    async fn get(&self, sha256: &Sha256Digest) -> Result<ByteStream>;

    /// The artifact's info, or `None` when it is not stored.
    async fn stat(&self, sha256: &Sha256Digest) -> Result<Option<ArtifactInfo>>;

    /// Every stored artifact with when it was stored (or last stored
    /// again): what the retention sweep looks through. Provided: a store
    /// that cannot list answers [`Error::Unsupported`](crate::Error::Unsupported),
    /// and the sweep then removes no artifact.
    async fn list(&self) -> Result<Vec<StoredArtifact>> {
        Err(crate::Error::Unsupported("listing artifacts"))
    }

    /// Removes the artifact; `Ok(false)` when it was not stored. A reader
    /// that has it open may finish reading. Provided: a store that cannot
    /// delete answers [`Error::Unsupported`](crate::Error::Unsupported).
    async fn delete(&self, sha256: &Sha256Digest) -> Result<bool> {
        let _ = sha256;
        Err(crate::Error::Unsupported("deleting artifacts"))
    }
}

/// A stored artifact and when it was stored; see [`ArtifactStore::list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredArtifact {
    /// Its SHA-256 and size.
    #[serde(flatten)]
    pub info: ArtifactInfo,
    /// When it was stored, or stored again by a later upload of the same
    /// bytes: the retention sweep spares artifacts younger than its grace,
    /// which a deploy may be about to use.
    #[serde(with = "time::serde::rfc3339")]
    pub stored_at: time::OffsetDateTime,
}
