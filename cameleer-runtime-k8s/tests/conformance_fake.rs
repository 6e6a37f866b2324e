//! The `cameleer-runtime` conformance suite, unchanged, against the
//! scripted in-memory API server: the kubelet is played by image (the
//! logging app becomes ready and logs every 200 ms, the crashing one exits
//! with 3, the OOM one is OOM-killed, the late crasher is ready and exits 3
//! seconds later, the unhealthy one never gets ready, the serving one gets
//! ready after half a second and answers with its version; a killed pod's
//! container is restarted by the fake kubelet), so every check
//! runs end to end through the orchestrator's real requests and watches,
//! with no cluster.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cameleer_runtime::testkit::conformance::{ConformanceFixture, FixtureApp};
use cameleer_runtime::{AppConfig, AppRef, HealthCheck, ImageRef, RuntimeOrchestrator, TenantId};
use cameleer_runtime_k8s::testing::{FakeCluster, PodScript};
use cameleer_runtime_k8s::{KubernetesOptions, KubernetesRuntimeOrchestrator};

struct FakeClusterFixture {
    cluster: FakeCluster,
    orchestrator: Arc<KubernetesRuntimeOrchestrator>,
    kubelet: tokio::task::JoinHandle<()>,
}

impl Drop for FakeClusterFixture {
    fn drop(&mut self) {
        self.kubelet.abort();
    }
}

fn crash(restarts: i32) -> PodScript {
    PodScript::Crashed {
        exit_code: 3,
        message: Some("[app] crashing now".into()),
        restarts,
        backing_off: true,
    }
}

fn options() -> KubernetesOptions {
    KubernetesOptions {
        progress_margin: Duration::from_secs(2),
        // The suite's orphans are young: remove them at once.
        orphan_grace: Duration::ZERO,
        ..KubernetesOptions::default()
    }
}

impl FakeClusterFixture {
    async fn new() -> Self {
        let cluster = FakeCluster::new();
        cluster.script_image("fx-logging", PodScript::Ready);
        cluster.script_image("fx-crash", crash(1));
        cluster.script_image("fx-oom", PodScript::OomKilled);
        cluster.script_image("fx-late-crash", PodScript::Ready);
        cluster.script_image_later("fx-late-crash", Duration::from_secs(3), crash(1));
        cluster.script_image("fx-unhealthy", PodScript::Running);
        cluster.script_image("fx-serving", PodScript::Running);
        cluster.script_image_later("fx-serving", Duration::from_millis(500), PodScript::Ready);
        let kubelet = tokio::spawn({
            let cluster = cluster.clone();
            async move {
                loop {
                    cluster.tick();
                    cluster.log_ready("fx-logging", "[app] line {n}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        let orchestrator = KubernetesRuntimeOrchestrator::new(cluster.client(), options());
        Self {
            cluster,
            orchestrator: Arc::new(orchestrator),
            kubelet,
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
            FixtureApp::Logging => "fx-logging",
            FixtureApp::Crashing => "fx-crash",
            FixtureApp::Oom => "fx-oom",
            FixtureApp::CrashingAfterStart => "fx-late-crash",
            FixtureApp::Unhealthy => "fx-unhealthy",
            FixtureApp::Serving => "fx-serving",
            other => panic!("no fixture image for {other:?}"),
        };
        Ok(
            format!("fake.invalid/fixtures/{name}@sha256:{}", "0f".repeat(32))
                .parse()
                .expect("a valid reference"),
        )
    }

    fn config(&self, app: FixtureApp) -> AppConfig {
        let health = match app {
            FixtureApp::CrashingAfterStart | FixtureApp::Unhealthy => HealthCheck::TcpPort(8080),
            FixtureApp::Serving => HealthCheck::Http {
                port: 8080,
                path: "/health".into(),
            },
            _ => HealthCheck::None,
        };
        AppConfig {
            health,
            start_timeout_secs: if app == FixtureApp::Unhealthy { 2 } else { 30 },
            ..AppConfig::default()
        }
    }

    async fn reachable(&self, app: &AppRef) -> cameleer_runtime::Result<Option<u64>> {
        Ok(self.cluster.serving_version(app))
    }

    fn supports_reachable(&self) -> bool {
        true
    }

    fn restarted(&self, _tenant: &TenantId) -> Option<Arc<dyn RuntimeOrchestrator>> {
        // Each test has a cluster of its own: no other tenant to spare.
        Some(Arc::new(KubernetesRuntimeOrchestrator::new(
            self.cluster.client(),
            options(),
        )))
    }

    fn supports_restart(&self) -> bool {
        true
    }

    fn supports_oom(&self) -> bool {
        true
    }

    fn supports_replicas(&self) -> bool {
        true
    }

    /// The pod's container ends with exit 137 and the (fake) kubelet
    /// restarts it: see `FakeCluster::kill_instance`.
    async fn kill_instance(&self, app: &AppRef, instance: u32) -> cameleer_runtime::Result<()> {
        if self.cluster.kill_instance(app, instance) {
            Ok(())
        } else {
            Err(cameleer_runtime::Error::not_found(
                "instance",
                format!("{app} #{instance}"),
            ))
        }
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(30)
    }
}

cameleer_runtime::conformance_tests!(async { FakeClusterFixture::new().await });
