//! [`PlatformBuilder`]: a [`Platform`] from its four parts and its options.

use std::sync::Arc;

use super::{Platform, PlatformOptions};
use crate::{ArtifactStore, DeploymentStore, ImageBuilder, QuotaStore, RuntimeOrchestrator};

/// A required part of a [`PlatformBuilder`] that has not been given yet.
///
/// [`PlatformBuilder::build`] exists only once the four required parts are
/// given, so a platform with a part missing does not compile (the compiler
/// then reports that `build` is not found for a `PlatformBuilder<…, Unset,
/// …>`, naming the missing part by its place).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unset;

/// Builds a [`Platform`]; start with [`Platform::builder`].
///
/// The backend ([`orchestrator`](Self::orchestrator)), the
/// [`image_builder`](Self::image_builder), the
/// [`deployment_store`](Self::deployment_store) and the
/// [`artifact_store`](Self::artifact_store) are required, in any order;
/// [`options`](Self::options) defaults to [`PlatformOptions::default`],
/// and [`quota_store`](Self::quota_store) to a
/// [`MemoryQuotaStore`](crate::memory::MemoryQuotaStore) (every tenant
/// unlimited until a quota is set, nothing kept across restarts).
/// Giving a part again replaces it.
///
/// The type parameters record which required parts are given ([`Unset`]
/// until they are); hosts never name them.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use cameleer_runtime::memory::{MemoryArtifactStore, MemoryDeploymentStore};
/// use cameleer_runtime::{ImageBuilder, Platform, PlatformOptions, RuntimeOrchestrator};
///
/// fn platform(backend: Arc<dyn RuntimeOrchestrator>, builder: Arc<dyn ImageBuilder>) -> Platform {
///     let mut options = PlatformOptions::default();
///     options.validation.limits.max_upload_bytes = 64 << 20;
///     Platform::builder()
///         .orchestrator(backend)
///         .image_builder(builder)
///         .deployment_store(Arc::new(MemoryDeploymentStore::new()))
///         .artifact_store(Arc::new(MemoryArtifactStore::new()))
///         .options(options)
///         .build()
/// }
/// ```
///
/// A part missing is a compile error:
///
/// ```compile_fail
/// use std::sync::Arc;
/// use cameleer_runtime::memory::{MemoryArtifactStore, MemoryDeploymentStore};
/// use cameleer_runtime::{Platform, RuntimeOrchestrator};
///
/// fn platform(backend: Arc<dyn RuntimeOrchestrator>) -> Platform {
///     Platform::builder()
///         .orchestrator(backend)
///         // no image builder
///         .deployment_store(Arc::new(MemoryDeploymentStore::new()))
///         .artifact_store(Arc::new(MemoryArtifactStore::new()))
///         .build()
/// }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct PlatformBuilder<O = Unset, B = Unset, D = Unset, A = Unset> {
    orchestrator: O,
    image_builder: B,
    deployment_store: D,
    artifact_store: A,
    quota_store: Option<Arc<dyn QuotaStore>>,
    options: PlatformOptions,
}

impl<O, B, D, A> std::fmt::Debug for PlatformBuilder<O, B, D, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformBuilder")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PlatformBuilder {
    pub(super) fn new() -> Self {
        Self {
            orchestrator: Unset,
            image_builder: Unset,
            deployment_store: Unset,
            artifact_store: Unset,
            quota_store: None,
            options: PlatformOptions::default(),
        }
    }
}

impl<O, B, D, A> PlatformBuilder<O, B, D, A> {
    /// The backend that runs apps (required).
    pub fn orchestrator(
        self,
        orchestrator: Arc<dyn RuntimeOrchestrator>,
    ) -> PlatformBuilder<Arc<dyn RuntimeOrchestrator>, B, D, A> {
        PlatformBuilder {
            orchestrator,
            image_builder: self.image_builder,
            deployment_store: self.deployment_store,
            artifact_store: self.artifact_store,
            quota_store: self.quota_store,
            options: self.options,
        }
    }

    /// The builder that turns JARs into images (required).
    pub fn image_builder(
        self,
        image_builder: Arc<dyn ImageBuilder>,
    ) -> PlatformBuilder<O, Arc<dyn ImageBuilder>, D, A> {
        PlatformBuilder {
            orchestrator: self.orchestrator,
            image_builder,
            deployment_store: self.deployment_store,
            artifact_store: self.artifact_store,
            quota_store: self.quota_store,
            options: self.options,
        }
    }

    /// Where deployments are kept (required).
    pub fn deployment_store(
        self,
        deployment_store: Arc<dyn DeploymentStore>,
    ) -> PlatformBuilder<O, B, Arc<dyn DeploymentStore>, A> {
        PlatformBuilder {
            orchestrator: self.orchestrator,
            image_builder: self.image_builder,
            deployment_store,
            artifact_store: self.artifact_store,
            quota_store: self.quota_store,
            options: self.options,
        }
    }

    /// Where uploaded JARs are kept (required).
    pub fn artifact_store(
        self,
        artifact_store: Arc<dyn ArtifactStore>,
    ) -> PlatformBuilder<O, B, D, Arc<dyn ArtifactStore>> {
        PlatformBuilder {
            orchestrator: self.orchestrator,
            image_builder: self.image_builder,
            deployment_store: self.deployment_store,
            artifact_store,
            quota_store: self.quota_store,
            options: self.options,
        }
    }

    /// Where tenants' quotas and artifact charges are kept; default an
    /// in-memory store.
    pub fn quota_store(mut self, quota_store: Arc<dyn QuotaStore>) -> Self {
        self.quota_store = Some(quota_store);
        self
    }

    /// Limits, validation policy and tuning; default
    /// [`PlatformOptions::default`].
    pub fn options(mut self, options: PlatformOptions) -> Self {
        self.options = options;
        self
    }
}

impl
    PlatformBuilder<
        Arc<dyn RuntimeOrchestrator>,
        Arc<dyn ImageBuilder>,
        Arc<dyn DeploymentStore>,
        Arc<dyn ArtifactStore>,
    >
{
    /// The platform. Nothing runs until [`Platform::start`]; needs a tokio
    /// runtime from then on.
    pub fn build(self) -> Platform {
        Platform::from_parts(
            self.orchestrator,
            self.image_builder,
            self.deployment_store,
            self.artifact_store,
            self.quota_store
                .unwrap_or_else(|| Arc::new(crate::memory::MemoryQuotaStore::new())),
            self.options,
        )
    }
}
