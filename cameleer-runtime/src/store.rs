//! The contracts of the stores a host application provides.
//!
//! The host owns storage: it implements these traits over its own database
//! and blob store. [`crate::memory`] has in-memory implementations.

use async_trait::async_trait;
use bytes::Bytes;
use cameleer_build::{ImageRef, Sha256Digest};
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
pub struct ArtifactInfo {
    /// Its SHA-256, which is also its key.
    pub sha256: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Keeps JARs, addressed by their SHA-256.
///
/// Writes are all-or-nothing: [`put`](Self::put) commits only when its input
/// stream ends without error; an error in the stream (for instance a
/// validation failure injected by the [`Platform`](crate::Platform)) leaves
/// nothing behind, not even half a file.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Stores the bytes of `data` under their SHA-256. Storing content that
    /// is already there succeeds and keeps one copy.
    async fn put(&self, data: ByteStream) -> Result<ArtifactInfo>;

    /// The bytes of the artifact, or [`Error::NotFound`](crate::Error::NotFound).
    async fn get(&self, sha256: &Sha256Digest) -> Result<ByteStream>;

    /// The artifact's info, or `None` when it is not stored.
    async fn stat(&self, sha256: &Sha256Digest) -> Result<Option<ArtifactInfo>>;
}
