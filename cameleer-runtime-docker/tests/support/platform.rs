//! The whole pipeline over the Docker backend: `Platform` with in-memory
//! stores, a builder that hands out pre-built fixture images, and the
//! orchestrator scoped to the test's tenant for reconciliation (the global
//! `reconcile` would remove other tests' containers as orphans).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cameleer_runtime::memory::{MemoryArtifactStore, MemoryDeploymentStore};
use cameleer_runtime::{
    AppConfig, AppRef, AppStatus, AppSummary, BuildSpec, BuiltImage, ByteStream, DeployRequest,
    Deployment, DeploymentId, DeploymentStatus, DeploymentStore, Desired, Error, EventStream,
    ImageBuilder, ImageRef, LogOptions, LogStream, Platform, PlatformOptions, ProgressSink,
    ReconcileReport, Result, RuntimeOrchestrator, Sha256Digest, TenantId,
};
use cameleer_runtime_docker::DockerRuntimeOrchestrator;
use futures::StreamExt;
use time::OffsetDateTime;

/// "Builds" by looking the JAR's SHA-256 up among registered images.
#[derive(Default)]
pub struct FixtureBuilder {
    images: Mutex<HashMap<Sha256Digest, ImageRef>>,
}

impl FixtureBuilder {
    pub fn register(&self, jar: Sha256Digest, image: ImageRef) {
        self.images.lock().unwrap().insert(jar, image);
    }
}

#[async_trait]
impl ImageBuilder for FixtureBuilder {
    async fn build(
        &self,
        spec: &BuildSpec,
        mut jar: ByteStream,
        _progress: ProgressSink,
    ) -> Result<BuiltImage> {
        while let Some(chunk) = jar.next().await {
            chunk.map_err(|e| Error::BuildFailed(format!("reading the JAR: {e}")))?;
        }
        let image = self.images.lock().unwrap().get(&spec.artifact).cloned();
        let image = image
            .ok_or_else(|| Error::BuildFailed(format!("no fixture image for {}", spec.artifact)))?;
        Ok(BuiltImage {
            image,
            cached: true,
        })
    }
}

/// The Docker orchestrator with `reconcile` limited to one tenant; counts
/// the platform's subscriptions to its events.
pub struct TenantScoped {
    pub inner: DockerRuntimeOrchestrator,
    pub tenant: TenantId,
    pub subscriptions: AtomicUsize,
}

#[async_trait]
impl RuntimeOrchestrator for TenantScoped {
    async fn deploy_app(&self, request: &DeployRequest) -> Result<AppStatus> {
        self.inner.deploy_app(request).await
    }
    async fn stop_app(&self, app: &AppRef) -> Result<()> {
        self.inner.stop_app(app).await
    }
    async fn restart_app(&self, app: &AppRef) -> Result<AppStatus> {
        self.inner.restart_app(app).await
    }
    async fn app_logs(&self, app: &AppRef, options: &LogOptions) -> Result<LogStream> {
        self.inner.app_logs(app, options).await
    }
    async fn app_status(&self, app: &AppRef) -> Result<AppStatus> {
        self.inner.app_status(app).await
    }
    async fn list_apps(&self, tenant: &TenantId) -> Result<Vec<AppSummary>> {
        self.inner.list_apps(tenant).await
    }
    async fn events(&self) -> Result<EventStream> {
        self.subscriptions.fetch_add(1, Ordering::SeqCst);
        self.inner.events().await
    }
    async fn reconcile(&self, desired: &[Desired]) -> Result<ReconcileReport> {
        self.inner.reconcile_tenant(&self.tenant, desired).await
    }
    fn deploy_grace(&self) -> Duration {
        Duration::from_secs(30)
    }
}

/// A platform over the Docker backend, and its parts.
pub struct PlatformEnv {
    pub platform: Platform,
    pub store: Arc<MemoryDeploymentStore>,
    pub artifacts: Arc<MemoryArtifactStore>,
    pub builder: Arc<FixtureBuilder>,
    pub backend: Arc<TenantScoped>,
}

/// The stores a controller keeps across restarts.
#[derive(Clone, Default)]
pub struct Stores {
    pub deployments: Arc<MemoryDeploymentStore>,
    pub artifacts: Arc<MemoryArtifactStore>,
    pub builder: Arc<FixtureBuilder>,
}

impl PlatformEnv {
    /// A platform on fresh stores.
    pub fn new(orchestrator: DockerRuntimeOrchestrator, tenant: &TenantId) -> PlatformEnv {
        Self::on(orchestrator, tenant, &Stores::default())
    }

    /// A platform on existing stores: what a restarted controller builds.
    pub fn on(
        orchestrator: DockerRuntimeOrchestrator,
        tenant: &TenantId,
        stores: &Stores,
    ) -> PlatformEnv {
        let backend = Arc::new(TenantScoped {
            inner: orchestrator,
            tenant: tenant.clone(),
            subscriptions: AtomicUsize::new(0),
        });
        let options = PlatformOptions {
            watcher_retry: Duration::from_millis(200),
            ..PlatformOptions::default()
        };
        let platform = Platform::builder()
            .orchestrator(backend.clone())
            .image_builder(stores.builder.clone())
            .deployment_store(stores.deployments.clone())
            .artifact_store(stores.artifacts.clone())
            .options(options)
            .build();
        PlatformEnv {
            platform,
            store: stores.deployments.clone(),
            artifacts: stores.artifacts.clone(),
            builder: stores.builder.clone(),
            backend,
        }
    }

    pub fn stores(&self) -> Stores {
        Stores {
            deployments: self.store.clone(),
            artifacts: self.artifacts.clone(),
            builder: self.builder.clone(),
        }
    }

    /// Uploads the JAR of `fixture` (as `app`) and lets the builder hand out
    /// `image` for it; returns the artifact's digest.
    pub async fn upload(
        &self,
        app: &AppRef,
        fixture: cameleer_build::java::fixtures::FixtureApp,
        image: ImageRef,
    ) -> Sha256Digest {
        let jar = std::fs::read(cameleer_build::java::fixtures::app_jar(fixture).unwrap())
            .expect("fixture jar");
        self.upload_bytes(app, jar, image).await
    }

    /// Uploads `jar` and lets the builder hand out `image` for it.
    pub async fn upload_bytes(&self, app: &AppRef, jar: Vec<u8>, image: ImageRef) -> Sha256Digest {
        let body = futures::stream::iter([Ok(bytes::Bytes::from(jar))]).boxed();
        let uploaded = self
            .platform
            .upload_artifact(app, body, None)
            .await
            .expect("upload");
        self.builder.register(uploaded.sha256, image);
        uploaded.sha256
    }

    /// Deploys and waits until the deployment settles.
    pub async fn deploy_settled(
        &self,
        app: &AppRef,
        artifact: Sha256Digest,
        config: AppConfig,
    ) -> Deployment {
        let d = self
            .platform
            .deploy(app, artifact, config)
            .await
            .expect("deploy");
        self.platform
            .wait_settled(&d.id, Duration::from_secs(90))
            .await
            .expect("settles")
    }

    /// The stored deployment.
    pub async fn store_get(&self, id: &DeploymentId) -> Deployment {
        self.store.get(id).await.expect("the deployment")
    }

    /// Waits until the stored deployment is `status`.
    pub async fn wait_for(
        &self,
        id: &DeploymentId,
        status: DeploymentStatus,
        limit: Duration,
    ) -> Deployment {
        wait_for(self.store.as_ref(), id, status, limit).await
    }
}

/// Waits until the stored deployment `id` is `status`, polling every 10 ms.
pub async fn wait_for(
    store: &dyn DeploymentStore,
    id: &DeploymentId,
    status: DeploymentStatus,
    limit: Duration,
) -> Deployment {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let d = store.get(id).await.expect("the deployment");
        if d.status == status {
            return d;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "deployment {id} is {} after {limit:?}, not {status}: {d:#?}",
                d.status
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// When the deployment entered its current status.
pub fn entered(d: &Deployment) -> OffsetDateTime {
    d.history.last().expect("a history").at
}

/// When the container's process ended, from inspect (the engine's clock,
/// which is this machine's).
pub async fn finished_at(docker: &bollard::Docker, container: &str) -> OffsetDateTime {
    let inspect = docker
        .inspect_container(container, None)
        .await
        .expect("the container");
    let finished = inspect
        .state
        .and_then(|s| s.finished_at)
        .expect("FinishedAt");
    OffsetDateTime::parse(&finished, &time::format_description::well_known::Rfc3339)
        .expect("an RFC 3339 time")
}

/// Seconds between two times, for printing.
pub fn secs(d: time::Duration) -> f64 {
    d.as_seconds_f64()
}
