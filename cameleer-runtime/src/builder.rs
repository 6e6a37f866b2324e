//! The contract of image builders.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use cameleer_build::{ImageRef, Sha256Digest};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::{AppRef, ByteStream, DeploymentId, Result};

/// What to build: the image of one deployment's JAR.
///
/// The image holds the JRE, the Cameleer agent and the JAR, and nothing that
/// depends on the environment: JVM options, args and env vars come from the
/// [`AppConfig`](crate::AppConfig) at run time, so the same image can be
/// promoted from dev to prod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSpec {
    /// Which app (the environment is where the build was asked from).
    pub app: AppRef,
    /// The deployment the image is built for.
    pub deployment: DeploymentId,
    /// Its version, used in the image tag.
    pub version: u64,
    /// SHA-256 of the JAR.
    pub artifact: Sha256Digest,
    /// Size of the JAR in bytes.
    pub artifact_size: u64,
}

/// A built image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltImage {
    /// The image, pinned to its digest (or, for a local engine, its image id).
    pub image: ImageRef,
    /// Whether it was served from the build cache.
    pub cached: bool,
}

/// One line of build progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildProgress {
    /// The deployment being built.
    pub deployment: DeploymentId,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What the builder said.
    pub message: String,
}

/// Where a builder sends its progress.
///
/// Progress is advisory: when the receiver is slow and the bounded channel is
/// full, lines are dropped (and counted) rather than stalling the build or
/// growing memory.
#[derive(Debug, Clone)]
pub struct ProgressSink {
    deployment: DeploymentId,
    tx: Option<mpsc::Sender<BuildProgress>>,
    dropped: Arc<AtomicU64>,
}

impl ProgressSink {
    /// A sink that discards everything.
    pub fn discard(deployment: DeploymentId) -> Self {
        Self {
            deployment,
            tx: None,
            dropped: Arc::default(),
        }
    }

    /// A sink and the receiving end of its channel of `capacity` lines.
    pub fn channel(
        deployment: DeploymentId,
        capacity: usize,
    ) -> (Self, mpsc::Receiver<BuildProgress>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                deployment,
                tx: Some(tx),
                dropped: Arc::default(),
            },
            rx,
        )
    }

    /// Sends one line, dropping it if the receiver is gone or full.
    pub fn emit(&self, message: impl Into<String>) {
        let Some(tx) = &self.tx else { return };
        let progress = BuildProgress {
            deployment: self.deployment,
            at: OffsetDateTime::now_utc(),
            message: message.into(),
        };
        if tx.try_send(progress).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many lines were dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Turns a JAR into an immutable image.
#[async_trait]
pub trait ImageBuilder: Send + Sync {
    /// Builds the image of `spec` from the JAR bytes in `jar` and returns it
    /// pinned to its digest. The same inputs give the same image, served from
    /// cache the second time. A failed build is
    /// [`Error::BuildFailed`](crate::Error::BuildFailed) carrying the
    /// builder's own error text.
    async fn build(
        &self,
        spec: &BuildSpec,
        jar: ByteStream,
        progress: ProgressSink,
    ) -> Result<BuiltImage>;

    /// Removes an image this builder built (the retention sweep's way to
    /// free what old versions took). `image` is pinned to its digest, and
    /// every image with that digest goes: all the tags the builder gave it.
    ///
    /// An image that is gone already is `Ok`. One still in use (a container
    /// of it exists) must not be removed: the answer is
    /// [`Error::Conflict`](crate::Error::Conflict), and the sweep tries
    /// again next time. Provided: a builder that cannot remove images
    /// answers [`Error::Unsupported`](crate::Error::Unsupported), and the
    /// sweep leaves images alone.
    ///
    /// It is the builder's, not the backend's: the builder decided where
    /// images live (an engine's cache, a registry) and knows how to remove
    /// them there, while a backend only pulls them.
    async fn remove_image(&self, image: &ImageRef) -> Result<()> {
        let _ = image;
        Err(crate::Error::Unsupported("removing images"))
    }
}
