//! The `cameleer-runtime` conformance suite, unchanged, against the
//! scripted in-memory API server: the kubelet is played by image (the
//! logging app becomes ready and logs every 200 ms, the crashing one exits
//! with 3, the OOM one is OOM-killed), so every check runs end to end
//! through the orchestrator's real requests and watches, with no cluster.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cameleer_runtime::testkit::conformance::{ConformanceFixture, FixtureApp};
use cameleer_runtime::{AppConfig, ImageRef, RuntimeOrchestrator};
use cameleer_runtime_k8s::testing::{FakeCluster, PodScript};
use cameleer_runtime_k8s::{KubernetesOptions, KubernetesRuntimeOrchestrator};

struct FakeClusterFixture {
    orchestrator: Arc<KubernetesRuntimeOrchestrator>,
    logger: tokio::task::JoinHandle<()>,
}

impl Drop for FakeClusterFixture {
    fn drop(&mut self) {
        self.logger.abort();
    }
}

impl FakeClusterFixture {
    async fn new() -> Self {
        let cluster = FakeCluster::new();
        cluster.script_image("fixtures/logging", PodScript::Ready);
        cluster.script_image(
            "fixtures/crashing",
            PodScript::Crashed {
                exit_code: 3,
                message: Some("[app] crashing now".into()),
                restarts: 1,
                backing_off: true,
            },
        );
        cluster.script_image("fixtures/oom", PodScript::OomKilled);
        let logger = tokio::spawn({
            let cluster = cluster.clone();
            async move {
                loop {
                    cluster.log_ready("fixtures/logging", "[app] line {n}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        let orchestrator = KubernetesRuntimeOrchestrator::new(
            cluster.client(),
            KubernetesOptions {
                progress_margin: Duration::from_secs(2),
                ..KubernetesOptions::default()
            },
        );
        Self {
            orchestrator: Arc::new(orchestrator),
            logger,
        }
    }
}

#[async_trait]
impl ConformanceFixture for FakeClusterFixture {
    fn orchestrator(&self) -> Arc<dyn RuntimeOrchestrator> {
        self.orchestrator.clone()
    }

    async fn image(&self, app: FixtureApp) -> cameleer_runtime::Result<ImageRef> {
        let name = match app {
            FixtureApp::Logging => "logging",
            FixtureApp::Crashing => "crashing",
            FixtureApp::Oom => "oom",
            other => panic!("no fixture image for {other:?}"),
        };
        Ok(
            format!("fake.invalid/fixtures/{name}@sha256:{}", "0f".repeat(32))
                .parse()
                .expect("a valid reference"),
        )
    }

    fn config(&self, _app: FixtureApp) -> AppConfig {
        AppConfig {
            start_timeout_secs: 30,
            ..AppConfig::default()
        }
    }

    fn supports_oom(&self) -> bool {
        true
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(30)
    }
}

cameleer_runtime::conformance_tests!(async { FakeClusterFixture::new().await });
