//! Shared helpers of the tests against the real Docker Engine: a unique
//! tenant per test, an orchestrator with fast timings, a cleanup guard that
//! removes everything under the test's tenant even when the test panics,
//! and the fixture apps as images.
#![allow(dead_code)]

pub mod engine;
pub mod platform;
pub mod proxy;

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use cameleer_build::java::agent::agent_jar;
use cameleer_build::java::fixtures::{self, FixtureApp};
use cameleer_docker_testing::CleanupGuard;
use cameleer_runtime::{
    AppConfig, AppRef, DeployRequest, DeploymentId, ImageRef, LogLine, LogOptions, Resources,
    RuntimeOrchestrator, Sha256Digest, TenantId,
};
use cameleer_runtime_docker::base_image::{self, BaseImageConfig};
use cameleer_runtime_docker::labels;
use cameleer_runtime_docker::{DockerOrchestratorOptions, DockerRuntimeOrchestrator};
use futures::StreamExt;
use sha2::{Digest, Sha256};

/// Where the agent lives in fixture images.
pub const AGENT_PATH: &str = "/opt/cameleer/agent.jar";

/// A test's own tenant, orchestrator and cleanup guard.
pub struct TestEnv {
    pub docker: Docker,
    pub orchestrator: DockerRuntimeOrchestrator,
    pub tenant: TenantId,
    /// Removes every container and network of `tenant` when dropped.
    pub guard: CleanupGuard,
}

impl TestEnv {
    /// A fresh tenant `t<random>` and an orchestrator with test timings.
    pub async fn new() -> TestEnv {
        Self::with_options(test_options()).await
    }

    pub async fn with_options(options: DockerOrchestratorOptions) -> TestEnv {
        Self::build(unique_tenant(), options).await
    }

    /// An env for a given tenant (e.g. one derived from another test env's).
    pub async fn with_tenant(tenant: TenantId) -> TestEnv {
        Self::build(tenant, test_options()).await
    }

    async fn build(tenant: TenantId, options: DockerOrchestratorOptions) -> TestEnv {
        let docker = cameleer_runtime_docker::connect::connect()
            .await
            .expect("a Docker Engine answers");
        let guard = CleanupGuard::new(&docker);
        guard.label(labels::TENANT, tenant.as_str());
        let orchestrator = DockerRuntimeOrchestrator::new(docker.clone(), options);
        TestEnv {
            docker,
            orchestrator,
            tenant,
            guard,
        }
    }

    /// `app` of this test's tenant in `env`.
    pub fn app(&self, app: &str, env: &str) -> AppRef {
        AppRef::parse(self.tenant.as_str(), app, env).unwrap()
    }

    /// A request to deploy `version` of `app` from `image`.
    pub fn request(
        &self,
        app: &AppRef,
        version: u64,
        image: ImageRef,
        config: AppConfig,
    ) -> DeployRequest {
        DeployRequest {
            app: app.clone(),
            deployment: DeploymentId::new_random(),
            version,
            image,
            config,
        }
    }

    /// Version 1 of the `fixture` app, named `name`, in env `dev`.
    pub async fn first_version(
        &self,
        fixture: FixtureApp,
        name: &str,
        config: AppConfig,
    ) -> (AppRef, DeployRequest) {
        let image = fixture_image(&self.docker, fixture).await;
        let app = self.app(name, "dev");
        let request = self.request(&app, 1, image, config);
        (app, request)
    }

    /// Reads the app's logs (not following) until `needle` shows up or
    /// `timeout` passes; all lines read.
    pub async fn wait_for_line(
        &self,
        app: &AppRef,
        needle: &str,
        timeout: Duration,
    ) -> Vec<LogLine> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let lines = self.logs(app, LogOptions::default()).await;
            if lines.iter().any(|l| l.line.contains(needle)) {
                return lines;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("{needle:?} not in the logs of {app} after {timeout:?}: {lines:#?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every log line so far.
    pub async fn logs(&self, app: &AppRef, options: LogOptions) -> Vec<LogLine> {
        self.orchestrator
            .app_logs(app, &options)
            .await
            .expect("logs")
            .map(|l| l.expect("log line"))
            .collect()
            .await
    }
}

/// Orchestrator options for tests: quick stops, a short grace period, and
/// quick reconnection of the event stream.
pub fn test_options() -> DockerOrchestratorOptions {
    DockerOrchestratorOptions {
        stop_timeout: Duration::from_secs(2),
        health_grace: Duration::from_millis(1500),
        probe_interval: Duration::from_millis(100),
        orphan_grace: Duration::ZERO,
        engine_patience: Duration::from_secs(1),
        event_reconnect_min: Duration::from_millis(50),
        event_reconnect_max: Duration::from_millis(500),
        ..DockerOrchestratorOptions::default()
    }
}

/// A tenant id no other test (or run) uses.
pub fn unique_tenant() -> TenantId {
    let random = uuid::Uuid::new_v4().simple().to_string();
    TenantId::new(format!("t{}", &random[..10])).unwrap()
}

/// A small config: 256 MiB, half a core, the given health check and env.
pub fn config(health: cameleer_runtime::HealthCheck, env: &[(&str, &str)]) -> AppConfig {
    AppConfig {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        resources: Resources {
            memory_mb: 256,
            cpu_millis: 1000,
            cpu_shares: None,
        },
        health,
        start_timeout_secs: 30,
        ..AppConfig::default()
    }
}

/// The image of a fixture app: the base JRE, the demo agent and the app
/// JAR, with the entrypoint the image builder writes. Content-keyed
/// (`cameleer/fixture-<app>:<hash>`), so it is built once per machine, like
/// the base image; returned pinned to its image id.
pub async fn fixture_image(docker: &Docker, app: FixtureApp) -> ImageRef {
    // One build at a time in this process: two concurrent builds of one tag
    // would leave the first image untagged and dangling.
    static BUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _build = BUILD.lock().await;
    let base = base_image::ensure_base_image(docker, &BaseImageConfig::default())
        .await
        .expect("the base image");
    let agent = std::fs::read(agent_jar().expect("agent jar")).unwrap();
    let jar = std::fs::read(fixtures::app_jar(app).expect("app jar")).unwrap();
    let dockerfile = format!(
        "FROM {}\nCOPY agent.jar {AGENT_PATH}\nCOPY app.jar /app/app.jar\nWORKDIR /app\n\
         ENTRYPOINT [\"java\", \"-javaagent:{AGENT_PATH}\", \"-XX:MaxRAMPercentage=75\", \
         \"-XX:+ExitOnOutOfMemoryError\", \"-jar\", \"/app/app.jar\"]\n",
        base.reference
    );
    let mut hasher = Sha256::new();
    for part in [base.id.as_bytes(), &agent, &jar, dockerfile.as_bytes()] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let key = Sha256Digest::from(hasher.finalize()).short(16);
    let repository = format!("cameleer/fixture-{}", app.name());
    let tag = format!("{repository}:{key}");
    if let Ok(found) = docker.inspect_image(&tag).await {
        return pinned(&repository, &key, &found.id.unwrap());
    }
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("Dockerfile", dockerfile.as_bytes()),
        ("agent.jar", &agent),
        ("app.jar", &jar),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        tar.append_data(&mut header, name, bytes).unwrap();
    }
    let context = tar.into_inner().unwrap();
    let options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(&tag)
        .rm(true)
        .forcerm(true)
        .labels(&HashMap::from([("io.cameleer.fixture", app.name())]))
        .build();
    let mut build = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(step) = build.next().await {
        step.unwrap_or_else(|e| panic!("building {tag}: {e}"));
    }
    let found = docker.inspect_image(&tag).await.expect("the built image");
    pinned(&repository, &key, &found.id.unwrap())
}

fn pinned(repository: &str, tag: &str, id: &str) -> ImageRef {
    ImageRef::new(None, repository, Some(tag), Some(id.parse().unwrap())).unwrap()
}

/// The container of `app` version `version`, inspected.
pub async fn inspect(
    docker: &Docker,
    app: &AppRef,
    version: u64,
) -> bollard::models::ContainerInspectResponse {
    docker
        .inspect_container(&labels::container_name(app, version), None)
        .await
        .expect("the container exists")
}

/// A container by name or id, inspected; `None` when there is none.
pub async fn inspect_opt(
    docker: &Docker,
    name: &str,
) -> Option<bollard::models::ContainerInspectResponse> {
    docker.inspect_container(name, None).await.ok()
}

/// Waits until the container `name` runs (its process has started).
pub async fn wait_running(docker: &Docker, name: &str, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let running = inspect_opt(docker, name)
            .await
            .and_then(|c| c.state?.running)
            .unwrap_or(false);
        if running {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} did not run within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every container (running or not) matching the label filter values.
async fn containers(
    docker: &Docker,
    filter: Vec<String>,
) -> Vec<bollard::models::ContainerSummary> {
    let filters = HashMap::from([("label", filter)]);
    docker
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap()
}

/// The names of the containers matching the label filter values (e.g.
/// [`labels::app_filter`]), sorted, without the leading `/`.
pub async fn container_names(docker: &Docker, filter: Vec<String>) -> Vec<String> {
    let mut names: Vec<String> = containers(docker, filter)
        .await
        .into_iter()
        .flat_map(|c| c.names.unwrap_or_default())
        .map(|n| n.trim_start_matches('/').to_string())
        .collect();
    names.sort();
    names
}

/// Removes a container now, running or not.
pub async fn remove_now(docker: &Docker, id: &str) {
    let options = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
        .force(true)
        .build();
    docker
        .remove_container(id, Some(options))
        .await
        .unwrap_or_else(|e| panic!("removing {id}: {e}"));
}

/// The containers and networks of `tenant` left on the engine.
pub async fn leftovers(docker: &Docker, tenant: &TenantId) -> (usize, usize) {
    let filter = vec![format!("{}={tenant}", labels::TENANT)];
    let containers = containers(docker, filter.clone()).await;
    let filters = HashMap::from([("label", filter)]);
    let networks = docker
        .list_networks(Some(
            bollard::query_parameters::ListNetworksOptionsBuilder::new()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap();
    (containers.len(), networks.len())
}

/// The next runtime event about `app` (the engine's stream carries every
/// test's containers).
pub async fn next_event_of(
    events: &mut cameleer_runtime::EventStream,
    app: &AppRef,
    timeout: Duration,
) -> cameleer_runtime::RuntimeEvent {
    let wait = async {
        loop {
            let event = events.next().await.expect("the event stream stays open");
            if event.app == *app {
                return event;
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .unwrap_or_else(|_| panic!("no event about {app} within {timeout:?}"))
}
