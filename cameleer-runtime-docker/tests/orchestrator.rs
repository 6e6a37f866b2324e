//! The Docker orchestrator's lifecycle against the real engine: deploy,
//! logs, status, stop, restart, crashes, OOM kills, redeploys.
//!
//! Every test works under a tenant of its own and removes what it created
//! through a cleanup guard, also when it fails.

mod support;

use std::time::{Duration, Instant, SystemTime};

use cameleer_build::java::agent::AGENT_LINE_PREFIX;
use cameleer_build::java::fixtures::{APP_STARTED_LINE, FixtureApp};
use cameleer_runtime::{
    DeploymentStatus, Desired, HealthCheck, LogOptions, LogSource, RuntimeOrchestrator,
    StatusReason,
};
use futures::StreamExt;
use support::{TestEnv, config, fixture_image, leftovers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_app_runs_logs_stops_restarts_and_is_removed() {
    let env = TestEnv::new().await;
    let mut cfg = config(
        HealthCheck::None,
        &[("LOG_INTERVAL_MS", "100"), ("STDERR_EVERY", "2")],
    );
    cfg.args = vec!["--mode".into(), "two words".into()];
    let (app, request) = env.first_version(FixtureApp::Logging, "orders", cfg).await;

    let status = env.orchestrator.deploy_app(&request).await.expect("deploy");
    assert_eq!(status.status, DeploymentStatus::Running);
    assert_eq!(status.deployment, Some(request.deployment));
    assert_eq!(status.version, Some(1));
    let status = env.orchestrator.app_status(&app).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Running, "{status:?}");

    // The agent's line and the app's, stdout and stderr tagged.
    let lines = env
        .wait_for_line(&app, "stderr line 4", Duration::from_secs(20))
        .await;
    let agent = lines
        .iter()
        .position(|l| l.line.starts_with(AGENT_LINE_PREFIX))
        .expect("agent line");
    let started = lines
        .iter()
        .position(|l| l.line == APP_STARTED_LINE)
        .expect("app line");
    assert!(agent < started, "the agent runs before main: {lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.line == "[app] args=[--mode, two words]"),
        "{lines:#?}"
    );
    for l in &lines {
        let expected = if l.line.contains("stderr line") || l.line.starts_with("NOTE: Picked up") {
            LogSource::Stderr
        } else {
            LogSource::Stdout
        };
        assert_eq!(l.stream, expected, "{l:?}");
    }
    assert!(
        lines
            .windows(2)
            .all(|w| w[0].ts <= w[1].ts || w[0].stream != w[1].stream)
    );

    // `since` to the nanosecond: from the time of one line on.
    let pivot = lines
        .iter()
        .find(|l| l.line == "[app] line 3")
        .expect("line 3");
    let since = SystemTime::from(pivot.ts);
    let later = env
        .logs(
            &app,
            LogOptions {
                since: Some(since),
                follow: false,
            },
        )
        .await;
    assert_eq!(
        later.first().map(|l| l.line.as_str()),
        Some("[app] line 3"),
        "{later:#?}"
    );
    assert!(later.iter().all(|l| l.ts >= pivot.ts));

    // Follow: new lines arrive on an open stream.
    let mut follow = env
        .orchestrator
        .app_logs(
            &app,
            &LogOptions {
                since: Some(SystemTime::now()),
                follow: true,
            },
        )
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), follow.next())
        .await
        .expect("a new line within 5 s")
        .expect("the stream stays open")
        .unwrap();
    assert!(next.line.starts_with("[app]"), "{next:?}");
    drop(follow);

    // Stop keeps the container (and its logs); STOPPED.
    env.orchestrator.stop_app(&app).await.unwrap();
    let status = env.orchestrator.app_status(&app).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Stopped, "{status:?}");
    env.orchestrator
        .stop_app(&app)
        .await
        .expect("stopping again is a no-op");
    let after_stop = env.logs(&app, LogOptions::default()).await;
    assert!(
        after_stop.iter().any(|l| l.line == "[app] stopping"),
        "graceful stop"
    );

    // Restart: RUNNING again, same deployment.
    let status = env.orchestrator.restart_app(&app).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Running);
    assert_eq!(status.deployment, Some(request.deployment));

    // Remove: nothing left, network included.
    env.orchestrator.remove_app(&app).await.unwrap();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
    assert_eq!(
        env.orchestrator.app_status(&app).await.unwrap_err().code(),
        "not_found"
    );
    assert_eq!(
        env.orchestrator.stop_app(&app).await.unwrap_err().code(),
        "not_found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_the_first_start_fails_the_deploy_and_keeps_the_container_for_its_logs() {
    let env = TestEnv::new().await;
    let (app, request) = env
        .first_version(
            FixtureApp::Crashing,
            "crashy",
            config(HealthCheck::None, &[("CRASH_DELAY_MS", "100")]),
        )
        .await;
    let err = env.orchestrator.deploy_app(&request).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("exited with code 3"), "{message}");
    assert!(
        message.contains("crashing with exit code 3"),
        "the app's last output: {message}"
    );

    // Nothing else runs, so the failed container stays as the app's newest.
    let status = env.orchestrator.app_status(&app).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Failed);
    assert_eq!(status.deployment, Some(request.deployment));
    assert_eq!(
        status.reason,
        Some(StatusReason::Exited { exit_code: Some(3) })
    );
    let lines = env.logs(&app, LogOptions::default()).await;
    assert!(
        lines
            .iter()
            .any(|l| l.line.contains("crashing") && l.stream == LogSource::Stderr)
    );
    let apps = env.orchestrator.list_apps(&env.tenant).await.unwrap();
    assert_eq!(apps[0].status, DeploymentStatus::Failed);
    // Stopping a failed app keeps it FAILED, with its reason.
    env.orchestrator.stop_app(&app).await.unwrap();
    let status = env.orchestrator.app_status(&app).await.unwrap();
    assert_eq!(
        status.reason,
        Some(StatusReason::Exited { exit_code: Some(3) })
    );
    // Restarting it runs it again, and it fails again, saying why.
    let err = env.orchestrator.restart_app(&app).await.unwrap_err();
    assert!(err.to_string().contains("exited with code 3"), "{err}");

    // Re-running the deploy tries again from scratch, and fails the same way.
    env.orchestrator.deploy_app(&request).await.unwrap_err();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (1, 1));
    env.orchestrator.remove_app(&app).await.unwrap();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_start_is_failed_with_the_exit_code() {
    let env = TestEnv::new().await;
    let (app, request) = env
        .first_version(
            FixtureApp::Crashing,
            "crashy",
            config(
                HealthCheck::None,
                &[("CRASH_DELAY_MS", "2500"), ("CRASH_EXIT_CODE", "42")],
            ),
        )
        .await;
    let mut events = env.orchestrator.events().await.unwrap();
    let status = env
        .orchestrator
        .deploy_app(&request)
        .await
        .expect("up through the grace period");
    assert_eq!(status.status, DeploymentStatus::Running);
    let event = support::next_event_of(&mut events, &app, Duration::from_secs(10)).await;
    assert_eq!(event.deployment, request.deployment);
    assert_eq!(
        event.kind,
        cameleer_runtime::RuntimeEventKind::Failed {
            reason: StatusReason::Exited {
                exit_code: Some(42)
            }
        }
    );
    let status = env.orchestrator.app_status(&app).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Failed);
    assert_eq!(
        status.reason,
        Some(StatusReason::Exited {
            exit_code: Some(42)
        })
    );
    env.orchestrator.remove_app(&app).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_failed_naming_the_oom_kill() {
    let env = TestEnv::new().await;
    let mut cfg = config(
        HealthCheck::None,
        &[("OOM_CHUNK_MB", "16"), ("OOM_PAUSE_MS", "500")],
    );
    cfg.resources.memory_mb = 128;
    let (app, request) = env
        .first_version(FixtureApp::Oom, "hungry", cfg.clone())
        .await;
    let mut events = env.orchestrator.events().await.unwrap();
    // It survives the grace period, then the kernel kills it.
    let status = env
        .orchestrator
        .deploy_app(&request)
        .await
        .expect("up before the kill");
    assert_eq!(status.status, DeploymentStatus::Running);
    let event = support::next_event_of(&mut events, &app, Duration::from_secs(20)).await;
    assert_eq!(
        event.kind,
        cameleer_runtime::RuntimeEventKind::Failed {
            reason: StatusReason::OomKilled
        }
    );
    let status = env.orchestrator.app_status(&app).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Failed);
    assert_eq!(status.reason, Some(StatusReason::OomKilled));

    // Killed while starting (it never listens on the health port, so the
    // deploy is still waiting when the kernel kills it): the deploy fails
    // and names the OOM kill.
    cfg.env.insert("OOM_PAUSE_MS".into(), "10".into());
    cfg.health = HealthCheck::TcpPort(8080);
    let err = env
        .orchestrator
        .deploy_app(&env.request(&app, 2, request.image.clone(), cfg))
        .await
        .unwrap_err();
    match err {
        cameleer_runtime::Error::StartFailed { reason, .. } => {
            assert_eq!(reason, StatusReason::OomKilled)
        }
        other => panic!("{other:?}"),
    }
    env.orchestrator.remove_app(&app).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heap_exhaustion_is_the_jvms_out_of_memory_not_an_exit_or_a_kernel_kill() {
    let env = TestEnv::new().await;
    let heap = |pause_ms: &str| {
        let mut cfg = config(
            HealthCheck::None,
            &[
                ("OOM_MODE", "heap"),
                ("OOM_CHUNK_MB", "8"),
                ("OOM_PAUSE_MS", pause_ms),
            ],
        );
        cfg.resources.memory_mb = 256;
        cfg.jvm_options = vec!["-Xmx32m".into()];
        cfg
    };
    // While starting: the deploy fails with the JVM's reason, not "exited
    // with code 3" (the JVM's exit code under -XX:+ExitOnOutOfMemoryError).
    let (app, request) = env
        .first_version(FixtureApp::Oom, "heapy", heap("10"))
        .await;
    match env.orchestrator.deploy_app(&request).await.unwrap_err() {
        cameleer_runtime::Error::StartFailed { reason, output } => {
            assert_eq!(reason, StatusReason::JvmOutOfMemory);
            assert!(output.unwrap_or_default().contains("OutOfMemoryError"));
        }
        other => panic!("{other:?}"),
    }
    let status = env.orchestrator.app_status(&app).await.unwrap();
    assert_eq!(status.reason, Some(StatusReason::JvmOutOfMemory));

    // After it was up: the event says so too.
    let mut events = env.orchestrator.events().await.unwrap();
    let v2 = env.request(&app, 2, request.image.clone(), heap("1000"));
    let status = env
        .orchestrator
        .deploy_app(&v2)
        .await
        .expect("up before the heap fills");
    assert_eq!(status.status, DeploymentStatus::Running);
    let event = support::next_event_of(&mut events, &app, Duration::from_secs(30)).await;
    assert_eq!(
        event.kind,
        cameleer_runtime::RuntimeEventKind::Failed {
            reason: StatusReason::JvmOutOfMemory
        }
    );
    let status = env.orchestrator.app_status(&app).await.unwrap();
    assert_eq!(status.reason, Some(StatusReason::JvmOutOfMemory));
    env.orchestrator.remove_app(&app).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_keeps_the_old_version_until_the_new_one_is_healthy() {
    let env = TestEnv::new().await;
    let image = fixture_image(&env.docker, FixtureApp::Listening).await;
    let app = env.app("web", "prod");
    let http = HealthCheck::Http {
        port: 8080,
        path: "/health".into(),
    };

    // v1, health-gated on HTTP, slow to listen: RUNNING only once it answers.
    let v1 = env.request(
        &app,
        1,
        image.clone(),
        config(http.clone(), &[("LISTEN_DELAY_MS", "1500")]),
    );
    let t = Instant::now();
    env.orchestrator.deploy_app(&v1).await.expect("v1");
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "gated on the listener"
    );

    // v2 never becomes healthy: removed, v1 untouched.
    let mut bad = config(http.clone(), &[("HEALTH_STATUS", "503")]);
    bad.start_timeout_secs = 3;
    let v2 = env.request(&app, 2, image.clone(), bad);
    let err = env.orchestrator.deploy_app(&v2).await.unwrap_err();
    assert_eq!(err.code(), "start_failed", "{err}");
    assert!(err.to_string().contains("health check timed out"), "{err}");
    assert!(
        err.to_string().contains("503"),
        "the last probe says why: {err}"
    );
    let status = env.orchestrator.app_status(&app).await.unwrap();
    assert_eq!(
        (status.status, status.version),
        (DeploymentStatus::Running, Some(1))
    );

    // v3 is healthy: it replaces v1.
    let v3 = env.request(&app, 3, image, config(HealthCheck::TcpPort(8080), &[]));
    let status = env.orchestrator.deploy_app(&v3).await.expect("v3");
    assert_eq!(status.version, Some(3));
    let apps = env.orchestrator.list_apps(&env.tenant).await.unwrap();
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!(
        (apps[0].version, apps[0].status),
        (Some(3), DeploymentStatus::Running)
    );
    let (containers, networks) = leftovers(&env.docker, &env.tenant).await;
    assert_eq!((containers, networks), (1, 1), "v1 removed, one network");

    // Deploying the same request again converges on the same container.
    let before = support::inspect(&env.docker, &app, 3).await.id;
    env.orchestrator.deploy_app(&v3).await.expect("re-run");
    assert_eq!(support::inspect(&env.docker, &app, 3).await.id, before);
    env.orchestrator.remove_app(&app).await.unwrap();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_is_rejected_before_anything_is_created() {
    let env = TestEnv::new().await;
    let image = fixture_image(&env.docker, FixtureApp::Logging).await;
    let app = env.app("bad", "dev");
    for (cfg, field) in [
        {
            let mut c = config(HealthCheck::None, &[]);
            c.jvm_options = vec!["-Xmx64m".into(), "-jar".into()];
            (c, "jvm_options[1]")
        },
        {
            let mut c = config(HealthCheck::None, &[]);
            c.resources.memory_mb = 8;
            (c, "resources.memory_mb")
        },
    ] {
        let err = env
            .orchestrator
            .deploy_app(&env.request(&app, 1, image.clone(), cfg))
            .await
            .unwrap_err();
        match err {
            cameleer_runtime::Error::InvalidConfig { field: f, .. } => assert_eq!(f, field),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_version_that_never_becomes_healthy_is_stopped_and_failed() {
    let env = TestEnv::new().await;
    let health = HealthCheck::Http {
        port: 8080,
        path: "/health".into(),
    };
    let mut cfg = config(health, &[("HEALTH_STATUS", "500")]);
    cfg.start_timeout_secs = 2;
    let (app, request) = env.first_version(FixtureApp::Listening, "sick", cfg).await;
    let err = env.orchestrator.deploy_app(&request).await.unwrap_err();
    assert_eq!(err.code(), "start_failed", "{err}");
    let status = env.orchestrator.app_status(&app).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Failed, "{status:?}");
    let reason = status.reason.unwrap();
    assert!(
        matches!(
            &reason,
            StatusReason::HealthTimeout {
                after_secs: 2,
                last_probe: Some(probe)
            } if probe.contains("answered 500")
        ),
        "{reason:?}"
    );
    env.orchestrator.remove_app(&app).await.unwrap();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
}

/// The production path end to end: JAR bytes through `DockerImageBuilder`,
/// the pinned image deployed, then promoted by digest to another env with
/// that env's config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_from_the_builder_runs_and_is_promoted_by_digest() {
    use cameleer_build::java::{agent::agent_jar, fixtures};
    use cameleer_runtime::{BuildSpec, ImageBuilder, ProgressSink, Sha256Digest};
    use cameleer_runtime_docker::base_image::{BaseImageConfig, ensure_base_image};
    use cameleer_runtime_docker::{DockerImageBuilder, DockerImageBuilderOptions};

    let env = TestEnv::new().await;
    let base = ensure_base_image(&env.docker, &BaseImageConfig::default())
        .await
        .unwrap();
    let builder = DockerImageBuilder::new(
        env.docker.clone(),
        DockerImageBuilderOptions::new(base.reference, agent_jar().unwrap()),
    );
    let jar = std::fs::read(fixtures::app_jar(FixtureApp::Logging).unwrap()).unwrap();
    let dev = env.app("orders", "dev");
    let spec = BuildSpec {
        app: dev.clone(),
        deployment: cameleer_runtime::DeploymentId::new_random(),
        version: 1,
        artifact: Sha256Digest::of(&jar),
        artifact_size: jar.len() as u64,
    };
    let body = futures::stream::iter([Ok(bytes::Bytes::from(jar))]).boxed();
    let built = builder
        .build(&spec, body, ProgressSink::discard(spec.deployment))
        .await
        .expect("build");
    let image = built.image;
    assert!(image.digest().is_some(), "pinned: {image}");

    let cfg = |interval: &str| config(HealthCheck::None, &[("LOG_INTERVAL_MS", interval)]);
    let mut request = env.request(&dev, 1, image.clone(), cfg("100"));
    request.deployment = spec.deployment;
    env.orchestrator.deploy_app(&request).await.expect("deploy");
    let lines = env
        .wait_for_line(&dev, APP_STARTED_LINE, Duration::from_secs(20))
        .await;
    assert!(
        lines.iter().any(|l| l.line.starts_with(AGENT_LINE_PREFIX)),
        "{lines:#?}"
    );

    // Promotion: the same digest, prod's config, its own network.
    let prod = env.app("orders", "prod");
    let promoted = env.request(&prod, 1, image.clone(), cfg("300"));
    env.orchestrator
        .deploy_app(&promoted)
        .await
        .expect("promote");
    let dev_image = support::inspect(&env.docker, &dev, 1).await.image;
    let prod_image = support::inspect(&env.docker, &prod, 1).await.image;
    assert_eq!(dev_image, prod_image);
    assert_eq!(dev_image, image.digest().map(|d| d.oci()));
    let apps = env.orchestrator.list_apps(&env.tenant).await.unwrap();
    let places: Vec<String> = apps.iter().map(|a| a.app.to_string()).collect();
    assert_eq!(places, [dev.to_string(), prod.to_string()]);

    env.orchestrator.remove_app(&dev).await.unwrap();
    env.orchestrator.remove_app(&prod).await.unwrap();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
    // The guard removes the image (labelled with the tenant) when dropped.
}

/// A controller restart: a new orchestrator instance adopts what the store
/// knows, removes what it does not, and reports what should run but does not.
/// (Scoped to the test's tenant: other tests share the engine.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_after_a_controller_restart_adopts_known_and_removes_unknown_containers() {
    use cameleer_runtime::{Deployment, DeploymentSource, Sha256Digest};

    let env = TestEnv::new().await;
    let image = fixture_image(&env.docker, FixtureApp::Logging).await;
    let keep = env.app("keep", "dev");
    let orphan = env.app("orphan", "dev");
    let kept = env.request(&keep, 1, image.clone(), config(HealthCheck::None, &[]));
    let lost = env.request(&orphan, 1, image.clone(), config(HealthCheck::None, &[]));
    let (a, b) = tokio::join!(
        env.orchestrator.deploy_app(&kept),
        env.orchestrator.deploy_app(&lost)
    );
    a.unwrap();
    b.unwrap();

    let record = |request: &cameleer_runtime::DeployRequest| {
        let mut d = Deployment::new(
            request.app.clone(),
            request.version,
            Sha256Digest::of(b"jar"),
            Some(request.image.clone()),
            DeploymentSource::Build,
            request.config.clone(),
            time::OffsetDateTime::now_utc(),
        );
        d.id = request.deployment;
        d.status = DeploymentStatus::Running;
        d
    };
    let ghost = env.request(
        &env.app("ghost", "dev"),
        4,
        image,
        config(HealthCheck::None, &[]),
    );
    let known = Desired::plan([record(&kept), record(&ghost)]);

    let restarted = cameleer_runtime_docker::DockerRuntimeOrchestrator::new(
        env.docker.clone(),
        support::test_options(),
    );
    let report = restarted
        .reconcile_tenant(&env.tenant, &known)
        .await
        .unwrap();
    assert_eq!(report.adopted, [kept.deployment]);
    assert_eq!(
        report.removed_orphans,
        [cameleer_runtime_docker::labels::container_name(&orphan, 1)]
    );
    assert_eq!(report.missing.len(), 1, "{report:?}");
    assert_eq!(report.missing[0].0, ghost.deployment);
    assert_eq!(report.missing[0].1.status, DeploymentStatus::Failed);

    let status = restarted.app_status(&keep).await.unwrap();
    assert_eq!(
        (status.status, status.deployment),
        (DeploymentStatus::Running, Some(kept.deployment))
    );
    assert_eq!(
        restarted.app_status(&orphan).await.unwrap_err().code(),
        "not_found"
    );
    // Reconciling again changes nothing.
    let again = restarted
        .reconcile_tenant(&env.tenant, &known)
        .await
        .unwrap();
    assert!(again.removed_orphans.is_empty());
    assert_eq!(again.adopted, [kept.deployment]);
    restarted.remove_app(&keep).await.unwrap();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
}
