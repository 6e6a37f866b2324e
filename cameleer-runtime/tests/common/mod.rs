//! The platform over the fakes and the in-memory stores.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cameleer_runtime::memory::{MemoryArtifactStore, MemoryDeploymentStore};
use cameleer_runtime::testkit::{FakeImageBuilder, FakeOrchestrator};
use cameleer_runtime::{
    AppConfig, AppRef, ByteStream, Deployment, DeploymentId, DeploymentStatus, Platform,
    PlatformOptions, RuntimeOrchestrator, Sha256Digest,
};

pub struct Harness {
    pub platform: Platform,
    pub fake: FakeOrchestrator,
    pub builder: FakeImageBuilder,
    pub store: Arc<MemoryDeploymentStore>,
    pub artifacts: Arc<MemoryArtifactStore>,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(PlatformOptions::default())
    }

    pub fn with(options: PlatformOptions) -> Self {
        let fake = FakeOrchestrator::new();
        Self::over(Arc::new(fake.clone()), fake, options)
    }

    /// A harness whose platform talks to `backend` (which wraps `fake`).
    pub fn over(
        backend: Arc<dyn RuntimeOrchestrator>,
        fake: FakeOrchestrator,
        options: PlatformOptions,
    ) -> Self {
        let builder = FakeImageBuilder::new();
        let store = Arc::new(MemoryDeploymentStore::new());
        let artifacts = Arc::new(MemoryArtifactStore::new());
        let platform = Platform::builder()
            .orchestrator(backend)
            .image_builder(Arc::new(builder.clone()))
            .deployment_store(store.clone())
            .artifact_store(artifacts.clone())
            .options(options)
            .build();
        Self {
            platform,
            fake,
            builder,
            store,
            artifacts,
        }
    }

    /// A second platform over the same fakes and stores: a restarted
    /// controller.
    pub fn restarted(&self) -> Platform {
        Platform::builder()
            .orchestrator(Arc::new(self.fake.clone()))
            .image_builder(Arc::new(self.builder.clone()))
            .deployment_store(self.store.clone())
            .artifact_store(self.artifacts.clone())
            .build()
    }

    /// Uploads a valid JAR whose main class is `main`.
    pub async fn upload(&self, main: &str) -> Sha256Digest {
        self.upload_to(&app("orders"), main).await
    }

    /// Uploads a JAR as `app`'s tenant (only its tenant may deploy it).
    pub async fn upload_to(&self, app: &AppRef, main: &str) -> Sha256Digest {
        self.platform
            .upload_artifact(app, chunked(jar(main), 1000), None)
            .await
            .expect("a valid JAR is accepted")
            .sha256
    }

    /// Uploads a JAR and deploys it to `app`; returns the BUILDING
    /// deployment.
    pub async fn deploy(&self, app: &AppRef) -> Deployment {
        let artifact = self.upload_to(app, "com.example.Main").await;
        self.platform.deploy(app, artifact, config()).await.unwrap()
    }

    /// [`deploy`](Self::deploy) and wait until it settles.
    pub async fn deploy_settled(&self, app: &AppRef) -> Deployment {
        let d = self.deploy(app).await;
        self.settled(&d.id).await
    }

    pub async fn settled(&self, id: &DeploymentId) -> Deployment {
        self.platform
            .wait_settled(id, Duration::from_secs(600))
            .await
            .unwrap()
    }

    /// Polls the store until the deployment has `status`.
    pub async fn wait_for(&self, id: &DeploymentId, status: DeploymentStatus) -> Deployment {
        for _ in 0..10_000 {
            let d = self.platform.deployment(id).await.unwrap();
            if d.status == status {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{id} never became {status}");
    }
}

pub fn app(name: &str) -> AppRef {
    AppRef::parse("acme", name, "dev").unwrap()
}

pub fn config() -> AppConfig {
    AppConfig {
        start_timeout_secs: 30,
        ..AppConfig::default()
    }
}

pub fn jar(main: &str) -> Vec<u8> {
    cameleer_build::testing::jars::plain_jar(main)
}

/// `data` as a stream of `size`-byte chunks.
pub fn chunked(data: Vec<u8>, size: usize) -> ByteStream {
    let data = Bytes::from(data);
    let chunks: Vec<std::io::Result<Bytes>> = (0..data.len())
        .step_by(size)
        .map(|at| Ok(data.slice(at..data.len().min(at + size))))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

pub fn statuses(d: &Deployment) -> Vec<DeploymentStatus> {
    d.history.iter().map(|c| c.status).collect()
}
