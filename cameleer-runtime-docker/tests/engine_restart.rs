//! An engine that goes away in the middle of a deploy, and comes back.
//!
//! The test starts an engine of its own (see `support::engine`), so killing
//! it disturbs no other test. The app is busybox's `httpd` from the busybox
//! image built on that engine (it has no other images, and nothing can be
//! pulled): `sleep 30` first, so the deploy is STARTING when the engine is
//! killed. The deployment must end FAILED, naming the engine, well before
//! its start timeout; after the engine is started again, the *same*
//! platform and orchestrator deploy a new version and follow its events.

mod support;

use std::time::{Duration, Instant};

use cameleer_docker_testing::CleanupGuard;
use cameleer_runtime::{AppConfig, DeploymentStatus, HealthCheck, ImageRef, Resources};
use cameleer_runtime_docker::base_image::ensure_busybox_image;
use cameleer_runtime_docker::labels;
use cameleer_runtime_docker::{DockerOrchestratorOptions, DockerRuntimeOrchestrator};
use support::engine::SecondEngine;
use support::platform::{PlatformEnv, entered, finished_at, secs};
use support::{test_options, unique_tenant};

fn httpd(command: &str, start_timeout_secs: u32) -> AppConfig {
    AppConfig {
        args: vec!["sh".into(), "-c".into(), command.into()],
        resources: Resources {
            memory_mb: 64,
            cpu_millis: 500,
            cpu_shares: None,
        },
        health: HealthCheck::TcpPort(8080),
        start_timeout_secs,
        ..AppConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_fails_naming_the_engine_when_it_dies_and_the_same_orchestrator_works_once_it_is_back()
 {
    let mut engine = match SecondEngine::start().await {
        Ok(e) => e,
        Err(why) => panic!("a second Docker Engine could not be started here: {why}"),
    };
    let docker = engine.connect().await.expect("the second engine answers");
    let guard = CleanupGuard::new(&docker);
    let tenant = unique_tenant();
    guard.label(labels::TENANT, tenant.as_str());

    let busybox = ensure_busybox_image(&docker).await.expect("busybox image");
    let image: ImageRef = busybox
        .reference
        .with_digest(busybox.id.parse().expect("an image id"));
    let options = DockerOrchestratorOptions {
        engine_patience: Duration::from_secs(2),
        ..test_options()
    };
    let orchestrator = DockerRuntimeOrchestrator::connect_to(&engine.host, options)
        .await
        .expect("an orchestrator on the second engine");
    let p = PlatformEnv::new(orchestrator, &tenant);
    p.platform.start().await.expect("start");
    let app = cameleer_runtime::AppRef::parse(tenant.as_str(), "web", "dev").unwrap();
    // Any bytes that pass as a JAR will do: the builder hands out busybox.
    let jar = std::fs::read(
        cameleer_build::java::fixtures::app_jar(
            cameleer_build::java::fixtures::FixtureApp::Listening,
        )
        .unwrap(),
    )
    .unwrap();
    let artifact = p.upload_bytes(&app, jar, image).await;

    // v1 sleeps before it listens: the engine dies while it is STARTING.
    let v1 = p
        .platform
        .deploy(&app, artifact, httpd("sleep 30; exec httpd -f -p 8080", 60))
        .await
        .expect("deploy");
    p.wait_for(&v1.id, DeploymentStatus::Starting, Duration::from_secs(20))
        .await;
    let container = labels::container_name(&app, 1);
    support::wait_running(&docker, &container, Duration::from_secs(20)).await;
    let killed = time::OffsetDateTime::now_utc();
    engine.kill();
    let failed = p
        .wait_for(&v1.id, DeploymentStatus::Failed, Duration::from_secs(20))
        .await;
    let reason = failed
        .last_reason()
        .map(ToString::to_string)
        .unwrap_or_default();
    eprintln!(
        "engine killed: FAILED {:.2} s later: {reason}",
        secs(entered(&failed) - killed)
    );
    assert!(
        reason.contains(&format!(
            "the Docker Engine at {} did not answer",
            engine.host
        )),
        "{reason}"
    );
    assert!(
        entered(&failed) - killed < time::Duration::seconds(10),
        "long before the start timeout"
    );

    // The engine comes back; the same platform and orchestrator carry on.
    let down_for = Instant::now();
    engine.run().await.expect("the engine starts again");
    eprintln!(
        "engine back after {:.2} s",
        down_for.elapsed().as_secs_f64()
    );
    let v2 = p
        .deploy_settled(&app, artifact, httpd("exec httpd -f -p 8080", 30))
        .await;
    assert_eq!(v2.status, DeploymentStatus::Running, "{v2:#?}");
    assert_eq!(
        p.backend
            .subscriptions
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the orchestrator resubscribed on its own"
    );
    // Events flow again: a kill is FAILED promptly.
    let v2_name = labels::container_name(&app, 2);
    docker
        .kill_container(&v2_name, None)
        .await
        .expect("kill v2");
    let failed = p
        .wait_for(&v2.id, DeploymentStatus::Failed, Duration::from_secs(10))
        .await;
    let latency = entered(&failed) - finished_at(&docker, &v2_name).await;
    eprintln!(
        "after the restart: FAILED {:.0} ms after the kill",
        secs(latency) * 1000.0
    );
    assert!(latency < time::Duration::seconds(2), "{latency}");
    // Only v2's container is left: v1's went when v2 took over.
    let left = support::leftovers(&docker, &tenant).await;
    assert_eq!(left, (1, 1), "{left:?}");

    p.platform.shutdown().await;
    drop(p);
    guard.cleanup().await.expect("cleanup");
    // `engine` stops the engine and removes its directory when dropped.
}
