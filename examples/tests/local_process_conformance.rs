//! The local-process backend passes the backend conformance suite, written
//! against the public API only; then what the suite does not cover.
//!
//! Needs a JDK 17+ (the fixture apps and the demo agent are compiled from
//! `fixtures/java` on first use), not Docker.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cameleer_build::java::agent::agent_jar;
use cameleer_build::java::fixtures::{self, FixtureApp as JavaApp};
use cameleer_examples::local_process::{
    LocalJarBuilder, LocalProcessOptions, LocalProcessOrchestrator,
};
use cameleer_runtime::testkit::{ConformanceFixture, FixtureApp};
use cameleer_runtime::{
    AppConfig, AppRef, BuildSpec, DeployRequest, DeploymentId, DeploymentStatus, Error,
    HealthCheck, ImageBuilder, ImageRef, LogLine, LogOptions, ProgressSink, Result,
    RuntimeEventKind, RuntimeOrchestrator, Sha256Digest, StatusReason, TenantId,
};
use futures::StreamExt;
use tokio::sync::Mutex;

/// A backend over a fresh directory, and the fixture apps built into it.
struct Local {
    orchestrator: LocalProcessOrchestrator,
    builder: LocalJarBuilder,
    images: Mutex<HashMap<JavaApp, ImageRef>>,
    root: tempfile::TempDir,
    /// A port of 127.0.0.1 nothing listened on when the fixture was made:
    /// the health check of [`FixtureApp::Unhealthy`].
    silent_port: u16,
}

impl Local {
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    async fn with(tune: impl FnOnce(&mut LocalProcessOptions)) -> Self {
        let root = tempfile::tempdir().unwrap();
        let agent = tokio::task::spawn_blocking(agent_jar)
            .await
            .unwrap()
            .expect("the demo agent compiles (this test needs a JDK 17+)");
        let mut options = LocalProcessOptions::new(root.path(), agent).unwrap();
        options.stop_timeout = Duration::from_secs(5);
        tune(&mut options);
        Self {
            orchestrator: LocalProcessOrchestrator::new(options),
            builder: LocalJarBuilder::new(root.path()),
            images: Mutex::default(),
            root,
            silent_port: free_port(),
        }
    }

    /// The fixture app's JAR, "built" by [`LocalJarBuilder`] from its bytes.
    async fn image_of(&self, app: JavaApp) -> Result<ImageRef> {
        let mut images = self.images.lock().await;
        if let Some(image) = images.get(&app) {
            return Ok(image.clone());
        }
        let jar = tokio::task::spawn_blocking(move || fixtures::app_jar(app))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| Error::BuildFailed(e.to_string()))?;
        let bytes = tokio::fs::read(&jar)
            .await
            .map_err(|e| Error::BuildFailed(e.to_string()))?;
        let spec = BuildSpec {
            app: AppRef::parse("fixtures", app.name(), "conf")?,
            deployment: DeploymentId::new_random(),
            version: 1,
            artifact: Sha256Digest::of(&bytes),
            artifact_size: bytes.len() as u64,
        };
        let file = tokio::fs::File::open(&jar)
            .await
            .map_err(|e| Error::BuildFailed(e.to_string()))?;
        let stream = tokio_util::io::ReaderStream::new(file).boxed();
        let progress = ProgressSink::discard(spec.deployment);
        let built = self.builder.build(&spec, stream, progress).await?;
        images.insert(app, built.image.clone());
        Ok(built.image)
    }

    async fn request(&self, app: &AppRef, kind: JavaApp, config: AppConfig) -> DeployRequest {
        DeployRequest {
            app: app.clone(),
            deployment: DeploymentId::new_random(),
            version: 1,
            image: self.image_of(kind).await.unwrap(),
            config,
        }
    }
}

#[async_trait]
impl ConformanceFixture for Local {
    fn orchestrator(&self) -> Arc<dyn RuntimeOrchestrator> {
        Arc::new(self.orchestrator.clone())
    }

    async fn image(&self, app: FixtureApp) -> Result<ImageRef> {
        match app {
            FixtureApp::Logging | FixtureApp::Unhealthy => self.image_of(JavaApp::Logging).await,
            FixtureApp::Crashing | FixtureApp::CrashingAfterStart => {
                self.image_of(JavaApp::Crashing).await
            }
            _ => Err(Error::Unsupported("this fixture app on local processes")),
        }
    }

    fn config(&self, app: FixtureApp) -> AppConfig {
        let mut config = small();
        match app {
            // The logs check needs lines at least every second.
            FixtureApp::Logging => {
                config.env.insert("LOG_INTERVAL_MS".into(), "200".into());
            }
            // Well past the 1.5 s grace, so it is RUNNING first.
            FixtureApp::CrashingAfterStart => {
                config.env.insert("CRASH_DELAY_MS".into(), "3000".into());
            }
            // The logging app listens on no port, so a check of a port
            // nothing listens on never passes.
            FixtureApp::Unhealthy => {
                config.health = HealthCheck::TcpPort(self.silent_port);
                config.start_timeout_secs = 2;
            }
            _ => {}
        }
        config
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(30)
    }

    /// Stops every app of `tenant` and checks that its processes are gone.
    async fn cleanup(&self, tenant: &TenantId) {
        let apps = self.orchestrator.list_apps(tenant).await.unwrap();
        for summary in apps {
            let pids = self.orchestrator.pids(&summary.app);
            self.orchestrator.stop_app(&summary.app).await.unwrap();
            for pid in pids {
                assert!(
                    !alive(pid),
                    "process {pid} of {} outlived stop_app",
                    summary.app
                );
            }
            assert!(self.orchestrator.pids(&summary.app).is_empty());
        }
    }
}

// - no_oom: a local process has no cgroup; the kernel never OOM-kills it
//   for its memory limit.
// - no_reachable: local processes share the host's network, so two
//   versions of an app cannot listen on its port at once; a redeploy of a
//   listening app stops the old version first (see the module docs), and
//   there is no old version left to answer while the new one starts.
// - no_restart: the processes are the controller's children and end with
//   it; nothing outlives a controller restart to adopt.
cameleer_runtime::conformance_tests!(no_oom; no_reachable; no_restart; no_replicas; async { Local::new().await });

/// A port of 127.0.0.1 that nothing listens on (right now).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

fn small() -> AppConfig {
    let mut config = AppConfig::default();
    config.resources.memory_mb = 256;
    config.start_timeout_secs = 30;
    config
}

fn app(name: &str) -> AppRef {
    AppRef::new(
        cameleer_runtime::testkit::conformance::unique_tenant("local"),
        name.parse().unwrap(),
        "dev".parse().unwrap(),
    )
}

/// Whether `pid` is a process that has not been reaped.
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

async fn logs(backend: &LocalProcessOrchestrator, app: &AppRef) -> Vec<LogLine> {
    let stream = backend.app_logs(app, &LogOptions::default()).await.unwrap();
    stream.map(|l| l.unwrap()).collect().await
}

/// Polls the logs until every one of `needles` is in some line.
async fn wait_for_lines(
    backend: &LocalProcessOrchestrator,
    app: &AppRef,
    needles: &[&str],
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let lines: Vec<String> = logs(backend, app)
            .await
            .into_iter()
            .map(|l| l.line)
            .collect();
        let missing: Vec<&&str> = needles
            .iter()
            .filter(|n| !lines.iter().any(|l| l.contains(**n)))
            .collect();
        if missing.is_empty() {
            return lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log line with {missing:?} in {lines:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_its_args_the_jvm_options_and_the_app_args_reach_the_jvm() {
    let local = Local::with(|o| o.agent_args = Some("tenant=acme,mode=demo".into())).await;
    let app = app("cmdline");
    let mut config = small();
    config.jvm_options = vec![
        "-XshowSettings:properties".into(),
        "-Dcameleer.greeting=say \"hi\" to 'me'".into(),
    ];
    config.args = vec!["one".into(), "two words".into()];
    config.env.insert("LOG_INTERVAL_MS".into(), "100".into());
    let request = local.request(&app, JavaApp::Logging, config).await;
    let status = local.orchestrator.deploy_app(&request).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Running);
    wait_for_lines(
        &local.orchestrator,
        &app,
        &[
            "[cameleer-agent] attached args=tenant=acme,mode=demo",
            "[app] args=[one, two words]",
            "cameleer.greeting = say \"hi\" to 'me'",
            "[app] line 3",
        ],
    )
    .await;
    local.orchestrator.stop_app(&app).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_jvm_sees_the_resource_hints_and_its_own_home() {
    let local = Local::new().await;
    let app = app("report");
    let mut config = small();
    config.resources.memory_mb = 128;
    config.resources.cpu_millis = 500;
    config.env.insert("STAY_UP".into(), "true".into());
    let request = local.request(&app, JavaApp::MemoryReport, config).await;
    local.orchestrator.deploy_app(&request).await.unwrap();
    let lines = wait_for_lines(&local.orchestrator, &app, &["[app] home="]).await;
    let value = |key: &str| -> String {
        let prefix = format!("[app] {key}=");
        let line = lines.iter().find(|l| l.starts_with(&prefix)).unwrap();
        line[prefix.len()..].to_string()
    };
    // -XX:MaxRAM=128m: the JVM sizes its default heap (half, for so little
    // memory) from 128 MiB, not from the machine's memory.
    let heap: u64 = value("max-heap-bytes").parse().unwrap();
    assert!(heap <= 64 << 20, "max heap {heap} for 128 MiB");
    assert_eq!(value("available-processors"), "1");
    let home = local
        .root
        .path()
        .join("work")
        .join(app.tenant.as_str())
        .join("dev/report");
    assert_eq!(Path::new(&value("home")), home);
    local.orchestrator.stop_app(&app).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_running_is_a_failed_status_and_an_exited_event() {
    let local = Local::new().await;
    let mut events = local.orchestrator.events().await.unwrap();
    let app = app("crash-later");
    let mut config = small();
    // Well past the 1.5 s grace, so the app is RUNNING first.
    config.env.insert("CRASH_DELAY_MS".into(), "3000".into());
    config.env.insert("CRASH_EXIT_CODE".into(), "42".into());
    let request = local.request(&app, JavaApp::Crashing, config).await;
    let status = local.orchestrator.deploy_app(&request).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Running);
    let event = tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("an event within 20 s")
        .unwrap();
    assert_eq!((&event.app, event.deployment), (&app, request.deployment));
    assert_eq!(
        event.kind,
        RuntimeEventKind::Failed {
            reason: StatusReason::Exited {
                exit_code: Some(42)
            }
        }
    );
    let status = local.orchestrator.app_status(&app).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Failed);
    assert_eq!(
        status.reason,
        Some(StatusReason::Exited {
            exit_code: Some(42)
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_redeploy_keeps_the_old_version_and_a_good_one_replaces_it() {
    let local = Local::new().await;
    let backend = &local.orchestrator;
    let app = app("redeploy");
    let v1 = local.request(&app, JavaApp::Logging, small()).await;
    backend.deploy_app(&v1).await.unwrap();
    let v1_pids = backend.pids(&app);
    assert_eq!(v1_pids.len(), 1);

    let mut crashing = small();
    crashing.env.insert("CRASH_DELAY_MS".into(), "100".into());
    let mut v2 = local.request(&app, JavaApp::Crashing, crashing).await;
    v2.version = 2;
    let err = backend.deploy_app(&v2).await.unwrap_err();
    assert!(err.to_string().contains("exited with code 3"), "{err}");
    let status = backend.app_status(&app).await.unwrap();
    assert_eq!(
        (status.status, status.deployment),
        (DeploymentStatus::Running, Some(v1.deployment))
    );
    assert_eq!(backend.pids(&app), v1_pids, "v1 still serves");

    let mut v3 = local.request(&app, JavaApp::Logging, small()).await;
    v3.version = 3;
    backend.deploy_app(&v3).await.unwrap();
    let status = backend.app_status(&app).await.unwrap();
    assert_eq!(status.deployment, Some(v3.deployment));
    let v3_pids = backend.pids(&app);
    assert_eq!(v3_pids.len(), 1);
    assert_ne!(v3_pids, v1_pids);
    assert!(!alive(v1_pids[0]), "v1 was stopped once v3 was up");
    assert_eq!(backend.list_apps(&app.tenant).await.unwrap().len(), 1);
    backend.stop_app(&app).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_sees_the_graceful_stop_and_dropping_the_backend_kills_its_apps() {
    let local = Local::new().await;
    let backend = local.orchestrator.clone();
    let app = app("follow");
    let mut config = small();
    config.env.insert("LOG_INTERVAL_MS".into(), "100".into());
    let request = local.request(&app, JavaApp::Logging, config).await;
    backend.deploy_app(&request).await.unwrap();
    let options = LogOptions {
        since: None,
        follow: true,
    };
    let mut follow = backend.app_logs(&app, &options).await.unwrap();
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l == "[app] line 3") {
        let next = tokio::time::timeout(Duration::from_secs(10), follow.next()).await;
        seen.push(next.expect("a line within 10 s").unwrap().unwrap().line);
    }
    backend.stop_app(&app).await.unwrap();
    let rest: Vec<String> = tokio::time::timeout(
        Duration::from_secs(10),
        follow.map(|l| l.unwrap().line).collect::<Vec<_>>(),
    )
    .await
    .expect("the follower ends once the app has stopped");
    assert!(
        rest.iter().any(|l| l == "[app] stopping"),
        "SIGTERM ran the shutdown hook: {rest:?}"
    );

    let status = backend.restart_app(&app).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Running);
    let pids = backend.pids(&app);
    assert_eq!(pids.len(), 1);
    drop(backend);
    drop(local);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while alive(pids[0]) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "process {} outlived its backend",
            pids[0]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn running_out_of_heap_is_a_failure_that_says_so() {
    let local = Local::new().await;
    let app = app("heap");
    let mut config = small();
    config.resources.memory_mb = 64;
    config.env.insert("OOM_MODE".into(), "heap".into());
    let request = local.request(&app, JavaApp::Oom, config).await;
    let _ = local.orchestrator.deploy_app(&request).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = local.orchestrator.app_status(&app).await.unwrap();
        if status.status == DeploymentStatus::Failed {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.reason, Some(StatusReason::JvmOutOfMemory));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_typed_errors_and_start_nothing() {
    let local = Local::new().await;
    let backend = &local.orchestrator;
    let app = app("bad");
    let mut request = local.request(&app, JavaApp::Logging, small()).await;

    request.config.jvm_options = vec!["-javaagent:/evil.jar".into()];
    let err = backend.deploy_app(&request).await.unwrap_err();
    assert_eq!(err.code(), "invalid_config");

    request.config = small();
    let unknown = request.image.with_digest(Sha256Digest::of(b"never built"));
    let err = backend
        .deploy_app(&DeployRequest {
            image: unknown,
            ..request.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "not_found");

    // Another process holds the health check's port.
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    request.config.health = HealthCheck::TcpPort(port);
    let err = backend.deploy_app(&request).await.unwrap_err();
    assert_eq!(err.code(), "conflict", "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");

    assert!(backend.pids(&app).is_empty());
    assert!(backend.list_apps(&app.tenant).await.unwrap().is_empty());
    assert_eq!(
        backend.app_status(&app).await.unwrap_err().code(),
        "not_found"
    );
}
