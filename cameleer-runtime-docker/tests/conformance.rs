//! The `cameleer-runtime` conformance suite against the Docker backend and
//! the real engine: one test per check, each under tenants of its own that
//! the fixture removes afterwards, pass or fail (and, through a cleanup
//! guard, even when the test panics).
//!
//! - Which version of an app answers is asked the way its clients ask: a
//!   busybox client container on the tenant+env network sends `GET /` to
//!   the app's name (the Java `Listening` fixture answers `hello from
//!   $APP_NAME`, and `APP_NAME` is `v<version>`).
//! - A controller restart is a new [`DockerRuntimeOrchestrator`] on the same
//!   engine, whose `reconcile` is limited to the check's tenant: other
//!   tests share the engine, and their containers are not orphans.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::{ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder};
use cameleer_build::java::fixtures;
use cameleer_docker_testing::{self as testing, CleanupGuard, ContainerSpec};
use cameleer_runtime::testkit::conformance::{self, ConformanceFixture, FixtureApp};
use cameleer_runtime::{
    AppConfig, AppRef, AppStatus, AppSummary, DeployRequest, Desired, Error, EventStream,
    HealthCheck, ImageRef, LogOptions, LogStream, ReconcileReport, RuntimeOrchestrator, TenantId,
};
use cameleer_runtime_docker::DockerRuntimeOrchestrator;
use cameleer_runtime_docker::base_image::ensure_busybox_image;
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
            FixtureApp::Logging | FixtureApp::Unhealthy => fixtures::FixtureApp::Logging,
            FixtureApp::Crashing | FixtureApp::CrashingAfterStart => fixtures::FixtureApp::Crashing,
            FixtureApp::Oom => fixtures::FixtureApp::Oom,
            FixtureApp::Serving => fixtures::FixtureApp::Listening,
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
            // Well past the 1.5 s health grace of the test options.
            FixtureApp::CrashingAfterStart => {
                support::config(HealthCheck::None, &[("CRASH_DELAY_MS", "3000")])
            }
            // The logging app never listens on 8080.
            FixtureApp::Unhealthy => {
                let mut c = support::config(HealthCheck::TcpPort(8080), &[]);
                c.start_timeout_secs = 2;
                c
            }
            FixtureApp::Serving => support::config(
                HealthCheck::Http {
                    port: SERVING_PORT,
                    path: "/health".into(),
                },
                &[("LISTEN_DELAY_MS", "500")],
            ),
            _ => {
                let mut c = support::config(HealthCheck::None, &[("OOM_PAUSE_MS", "10")]);
                c.resources.memory_mb = 128;
                c
            }
        }
    }

    fn config_of_version(&self, app: FixtureApp, version: u64) -> AppConfig {
        let mut config = self.config(app);
        if app == FixtureApp::Serving {
            config.env.insert("APP_NAME".into(), format!("v{version}"));
        }
        config
    }

    /// `GET /` of the app's name from a busybox container on the tenant+env
    /// network, as the app's clients send it.
    async fn reachable(&self, app: &AppRef) -> cameleer_runtime::Result<Option<u64>> {
        let filters = labels::label_filters(labels::tenant_env_filter(&app.tenant, &app.env));
        let networks = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(|e| Error::backend("listing the tenant's networks", e))?;
        let Some(network) = networks.into_iter().find_map(|n| n.id) else {
            return Ok(None);
        };
        let busybox = ensure_busybox_image(&self.docker)
            .await
            .map_err(|e| Error::backend("the busybox image", e))?;
        // busybox's static wget crashes in these minimal images; nc does
        // not. A client tries again after a failed connection (the engine
        // drops an old version's DNS record a moment after its address).
        let script = format!(
            "for i in 1 2 3; do \
               r=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 1 {name} {SERVING_PORT} 2>/dev/null | tail -n 1); \
               case \"$r\" in 'hello from '*) echo \"$r\"; exit 0;; esac; \
               usleep 200000; \
             done; exit 1",
            name = app.app
        );
        let mut spec = ContainerSpec::new(&busybox.reference.to_string(), ["sh", "-c", &script]);
        spec.host_config.network_mode = Some(network);
        // The tenant's label, so the tenant's cleanup removes it too; not
        // the backend's own labels, so the backend never takes it for an app.
        spec.labels = HashMap::from([(labels::TENANT.to_string(), app.tenant.to_string())]);
        let id = testing::start(&self.docker, &self.guard, spec)
            .await
            .map_err(|e| Error::backend("starting the client", e))?;
        let asked = async {
            let exit = testing::wait_exit(&self.docker, &id, Duration::from_secs(30)).await?;
            let logs = testing::logs(&self.docker, &id).await?;
            Ok::<_, testing::TestError>((exit, logs))
        }
        .await;
        // Off the network at once, so the backend can remove the network.
        let removed = self
            .docker
            .remove_container(
                &id,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
        let (exit, logs) = asked.map_err(|e| Error::backend("asking the app", e))?;
        removed.map_err(|e| Error::backend("removing the client", e))?;
        Ok(parse_answer(exit.code, &logs.stdout))
    }

    fn supports_reachable(&self) -> bool {
        true
    }

    fn restarted(&self, tenant: &TenantId) -> Option<Arc<dyn RuntimeOrchestrator>> {
        Some(Arc::new(TenantScoped {
            inner: DockerRuntimeOrchestrator::new(self.docker.clone(), support::test_options()),
            tenant: tenant.clone(),
        }))
    }

    fn supports_restart(&self) -> bool {
        true
    }

    fn unique_tenant(&self) -> TenantId {
        let tenant = conformance::unique_tenant("conformance");
        self.guard.label(labels::TENANT, tenant.as_str());
        tenant
    }

    fn supports_oom(&self) -> bool {
        true
    }

    fn supports_replicas(&self) -> bool {
        true
    }

    /// `kill -9` of the instance's process from the host, by its pid: a
    /// crash the engine sees, not a stop through its API.
    async fn kill_instance(&self, app: &AppRef, instance: u32) -> cameleer_runtime::Result<()> {
        let mut filter = labels::app_filter(app);
        filter.push(format!("{}={instance}", labels::INSTANCE));
        let found = self
            .docker
            .list_containers(Some(
                bollard::query_parameters::ListContainersOptionsBuilder::new()
                    .filters(&labels::label_filters(filter))
                    .build(),
            ))
            .await
            .map_err(|e| Error::backend("listing the app's containers", e))?;
        let id = found
            .into_iter()
            .find_map(|c| c.id)
            .ok_or_else(|| Error::not_found("running instance", format!("{instance} of {app}")))?;
        let pid = self
            .docker
            .inspect_container(&id, None)
            .await
            .map_err(|e| Error::backend("inspecting the instance", e))?
            .state
            .and_then(|s| s.pid)
            .filter(|pid| *pid > 0)
            .ok_or_else(|| {
                Error::not_found("process of instance", format!("{instance} of {app}"))
            })?;
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .map_err(|e| Error::backend("running kill", e))?;
        if !killed.success() {
            return Err(Error::Backend {
                message: format!("kill -9 {pid} failed: {killed}"),
                source: None,
            });
        }
        Ok(())
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

/// The port the [`FixtureApp::Serving`] app (the Java `Listening` fixture)
/// listens on.
const SERVING_PORT: u16 = 8080;

/// The version in the client's output (`hello from v<version>`), if it got
/// an answer.
fn parse_answer(exit_code: i64, stdout: &str) -> Option<u64> {
    if exit_code != 0 {
        return None;
    }
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("hello from v"))
        .and_then(|v| v.parse().ok())
}

/// The Docker backend, with `reconcile` limited to one tenant
/// ([`DockerRuntimeOrchestrator::reconcile_tenant`]): the suite's other
/// tests, and other test binaries, share the engine.
struct TenantScoped {
    inner: DockerRuntimeOrchestrator,
    tenant: TenantId,
}

#[async_trait]
impl RuntimeOrchestrator for TenantScoped {
    async fn deploy_app(&self, request: &DeployRequest) -> cameleer_runtime::Result<AppStatus> {
        self.inner.deploy_app(request).await
    }
    async fn stop_app(&self, app: &AppRef) -> cameleer_runtime::Result<()> {
        self.inner.stop_app(app).await
    }
    async fn restart_app(&self, app: &AppRef) -> cameleer_runtime::Result<AppStatus> {
        self.inner.restart_app(app).await
    }
    async fn app_logs(
        &self,
        app: &AppRef,
        options: &LogOptions,
    ) -> cameleer_runtime::Result<LogStream> {
        self.inner.app_logs(app, options).await
    }
    async fn app_status(&self, app: &AppRef) -> cameleer_runtime::Result<AppStatus> {
        self.inner.app_status(app).await
    }
    async fn list_apps(&self, tenant: &TenantId) -> cameleer_runtime::Result<Vec<AppSummary>> {
        self.inner.list_apps(tenant).await
    }
    async fn events(&self) -> cameleer_runtime::Result<EventStream> {
        self.inner.events().await
    }
    async fn reconcile(&self, desired: &[Desired]) -> cameleer_runtime::Result<ReconcileReport> {
        self.inner.reconcile_tenant(&self.tenant, desired).await
    }
    fn deploy_grace(&self) -> Duration {
        self.inner.deploy_grace()
    }
}

cameleer_runtime::conformance_tests!(async { DockerFixture::new().await });

#[test]
fn answers_parse() {
    assert_eq!(parse_answer(0, "hello from v12\n"), Some(12));
    assert_eq!(parse_answer(1, "hello from v12\n"), None);
    assert_eq!(parse_answer(0, ""), None);
}
