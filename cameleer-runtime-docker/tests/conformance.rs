//! The `cameleer-runtime` conformance suite against the Docker backend and
//! the real engine: one test per check, each under tenants of its own that
//! the fixture removes afterwards, pass or fail (and, through a cleanup
//! guard, even when the test panics).

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use cameleer_build::java::fixtures;
use cameleer_docker_testing::CleanupGuard;
use cameleer_runtime::testkit::conformance::{self, ConformanceFixture, FixtureApp};
use cameleer_runtime::{AppConfig, HealthCheck, ImageRef, RuntimeOrchestrator, TenantId};
use cameleer_runtime_docker::DockerRuntimeOrchestrator;
use cameleer_runtime_docker::labels;

struct DockerFixture {
    docker: Docker,
    orchestrator: Arc<DockerRuntimeOrchestrator>,
    /// Removes every tenant handed out, if the test panics before the
    /// suite's own cleanup runs.
    guard: CleanupGuard,
}

impl DockerFixture {
    async fn new() -> Self {
        let docker = cameleer_runtime_docker::connect::connect()
            .await
            .expect("a Docker Engine answers");
        let orchestrator = Arc::new(DockerRuntimeOrchestrator::new(
            docker.clone(),
            support::test_options(),
        ));
        let guard = CleanupGuard::new(&docker);
        Self {
            docker,
            orchestrator,
            guard,
        }
    }
}

#[async_trait]
impl ConformanceFixture for DockerFixture {
    fn orchestrator(&self) -> Arc<dyn RuntimeOrchestrator> {
        self.orchestrator.clone()
    }

    async fn image(&self, app: FixtureApp) -> cameleer_runtime::Result<ImageRef> {
        let app = match app {
            FixtureApp::Logging => fixtures::FixtureApp::Logging,
            FixtureApp::Crashing => fixtures::FixtureApp::Crashing,
            FixtureApp::Oom => fixtures::FixtureApp::Oom,
            other => panic!("no Java fixture for {other:?}"),
        };
        Ok(support::fixture_image(&self.docker, app).await)
    }

    fn config(&self, app: FixtureApp) -> AppConfig {
        match app {
            FixtureApp::Logging => {
                support::config(HealthCheck::None, &[("LOG_INTERVAL_MS", "200")])
            }
            FixtureApp::Crashing => {
                support::config(HealthCheck::None, &[("CRASH_DELAY_MS", "200")])
            }
            _ => {
                let mut c = support::config(HealthCheck::None, &[("OOM_PAUSE_MS", "10")]);
                c.resources.memory_mb = 128;
                c
            }
        }
    }

    fn unique_tenant(&self) -> TenantId {
        let tenant = conformance::unique_tenant("conformance");
        self.guard.label(labels::TENANT, tenant.as_str());
        tenant
    }

    fn supports_oom(&self) -> bool {
        true
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(60)
    }

    async fn cleanup(&self, tenant: &TenantId) {
        let guard = CleanupGuard::new(&self.docker);
        guard.label(labels::TENANT, tenant.as_str());
        if let Err(e) = guard.cleanup().await {
            eprintln!("cleaning up tenant {tenant}: {e}");
        }
    }
}

cameleer_runtime::conformance_tests!(async { DockerFixture::new().await });
