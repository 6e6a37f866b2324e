//! Recovery after a controller restart, end to end: a new orchestrator
//! instance and a new `Platform` on the same stores adopt what runs, finish
//! a deploy the old controller was in the middle of, remove containers the
//! store does not know once they are older than the orphan grace, and keep
//! "stopped on request" a stop, even one that took a SIGKILL.
//!
//! Reconciliation is scoped to each test's tenant (other tests share the
//! engine).

mod support;

use std::time::{Duration, Instant};

use cameleer_build::java::fixtures::FixtureApp;
use cameleer_runtime::{
    DeploymentStatus, DeploymentStore, HealthCheck, LogOptions, RuntimeOrchestrator, StatusReason,
};
use cameleer_runtime_docker::{DockerOrchestratorOptions, DockerRuntimeOrchestrator, labels};
use futures::StreamExt;
use support::platform::{PlatformEnv, Stores, entered, finished_at, secs};
use support::{TestEnv, config, fixture_image, leftovers, test_options};

/// A fresh orchestrator instance on the test's engine: what a restarted
/// controller has.
fn controller(env: &TestEnv, options: DockerOrchestratorOptions) -> DockerRuntimeOrchestrator {
    DockerRuntimeOrchestrator::new(env.docker.clone(), options)
}

/// The names of the tenant's containers, sorted.
async fn container_names(env: &TestEnv) -> Vec<String> {
    support::container_names(&env.docker, labels::tenant_filter(&env.tenant)).await
}

/// The controller dies while v2 is STARTING (it takes 4 s to listen). By
/// design, the next controller finishes that deploy: it finds v2's
/// container, waits out the rest of its health check, gives it the app's
/// name, retires v1, and the platform records v2 RUNNING and v1
/// superseded. (A deploy cut short before its container existed ends
/// FAILED, "interrupted by a controller restart".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_cut_short_by_a_controller_restart_is_finished_by_the_next_controller() {
    let env = TestEnv::new().await;
    let stores = Stores::default();
    let app = env.app("web", "dev");
    let first = PlatformEnv::on(controller(&env, test_options()), &env.tenant, &stores);
    first.platform.start().await.expect("start");
    let image = fixture_image(&env.docker, FixtureApp::Listening).await;
    let jar = first.upload(&app, FixtureApp::Listening, image).await;
    let tcp = HealthCheck::TcpPort(8080);
    let v1 = first
        .deploy_settled(&app, jar, config(tcp.clone(), &[("APP_NAME", "v1")]))
        .await;
    assert_eq!(v1.status, DeploymentStatus::Running, "{v1:#?}");

    let slow = config(tcp, &[("APP_NAME", "v2"), ("LISTEN_DELAY_MS", "4000")]);
    let v2 = first
        .platform
        .deploy(&app, jar, slow)
        .await
        .expect("deploy");
    first
        .wait_for(&v2.id, DeploymentStatus::Starting, Duration::from_secs(20))
        .await;
    let v2_name = labels::container_name(&app, 2);
    support::wait_running(&env.docker, &v2_name, Duration::from_secs(20)).await;
    // The controller dies: its platform, its pipelines and its orchestrator.
    first.platform.shutdown().await;
    drop(first);
    assert_eq!(
        stores.deployments.get(&v2.id).await.unwrap().status,
        DeploymentStatus::Starting
    );
    assert_eq!(
        container_names(&env).await,
        [labels::container_name(&app, 1), v2_name.clone()]
    );

    // The next controller.
    let next = PlatformEnv::on(controller(&env, test_options()), &env.tenant, &stores);
    let began = Instant::now();
    let report = next.platform.start().await.expect("recover");
    eprintln!(
        "recovery took {:.2} s: {report:?}",
        began.elapsed().as_secs_f64()
    );
    assert_eq!(report.running, [v2.id]);
    assert_eq!(report.backend.adopted, [v2.id]);
    assert!(report.backend.removed_orphans.is_empty(), "{report:?}");
    let v2_now = next.store_get(&v2.id).await;
    assert_eq!(v2_now.status, DeploymentStatus::Running, "{v2_now:#?}");
    let v1_now = next.store_get(&v1.id).await;
    assert_eq!(v1_now.status, DeploymentStatus::Stopped, "{v1_now:#?}");
    assert_eq!(
        v1_now.last_reason(),
        Some(&StatusReason::Superseded { by_version: 2 })
    );

    // Nothing orphaned, nothing twice: v2's container alone, one network.
    assert_eq!(container_names(&env).await, std::slice::from_ref(&v2_name));
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (1, 1));
    let endpoint = support::inspect(&env.docker, &app, 2)
        .await
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.into_values().next())
        .expect("on its network");
    assert!(
        endpoint
            .aliases
            .unwrap_or_default()
            .contains(&"web".to_string()),
        "serves under the app's name"
    );

    // Status, logs and events, through the new controller.
    let status = next.backend.app_status(&app).await.unwrap();
    assert_eq!(
        (status.status, status.deployment),
        (DeploymentStatus::Running, Some(v2.id))
    );
    let lines: Vec<String> = next
        .platform
        .logs(&app, LogOptions::default())
        .await
        .expect("logs")
        .map(|l| l.expect("a line").line)
        .collect()
        .await;
    assert!(
        lines.iter().any(|l| l == "[app] listening on port 8080"),
        "{lines:#?}"
    );
    env.docker.kill_container(&v2_name, None).await.unwrap();
    let failed = next
        .wait_for(&v2.id, DeploymentStatus::Failed, Duration::from_secs(10))
        .await;
    let latency = entered(&failed) - finished_at(&env.docker, &v2_name).await;
    eprintln!(
        "events resumed: FAILED {:.0} ms after the kill",
        secs(latency) * 1000.0
    );
    assert!(latency < time::Duration::seconds(2), "{latency}");
    next.platform.shutdown().await;
    next.backend.inner.remove_app(&app).await.unwrap();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
}

/// A container under our labels that the store does not know is left
/// alone while younger than `orphan_grace` (a deploy may be in flight),
/// then removed; the known app is adopted both times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_containers_are_removed_once_older_than_the_orphan_grace() {
    let env = TestEnv::new().await;
    let options = DockerOrchestratorOptions {
        orphan_grace: Duration::from_secs(6),
        ..test_options()
    };
    let p = PlatformEnv::new(controller(&env, options), &env.tenant);
    let image = fixture_image(&env.docker, FixtureApp::Logging).await;
    let kept = env.app("kept", "dev");
    let jar = p.upload(&kept, FixtureApp::Logging, image.clone()).await;
    let d = p
        .deploy_settled(&kept, jar, config(HealthCheck::None, &[]))
        .await;
    assert_eq!(d.status, DeploymentStatus::Running, "{d:#?}");
    // Deployed behind the store's back.
    let ghost = env.app("ghost", "dev");
    let ghost_created = Instant::now();
    env.orchestrator
        .deploy_app(&env.request(&ghost, 1, image, config(HealthCheck::None, &[])))
        .await
        .expect("ghost");
    let ghost_name = labels::container_name(&ghost, 1);

    let report = p.platform.start().await.expect("start");
    assert_eq!(report.backend.adopted, [d.id]);
    assert!(report.backend.removed_orphans.is_empty(), "{report:?}");
    assert!(container_names(&env).await.contains(&ghost_name));

    // The engine counts a container's age in whole seconds.
    tokio::time::sleep_until((ghost_created + Duration::from_millis(7500)).into()).await;
    let report = p.platform.recover().await.expect("recover");
    assert_eq!(report.backend.adopted, [d.id]);
    assert_eq!(report.backend.removed_orphans, [ghost_name]);
    assert_eq!(
        container_names(&env).await,
        [labels::container_name(&kept, 1)]
    );
    p.platform.shutdown().await;
    env.orchestrator.remove_app(&kept).await.unwrap();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
}

/// A JVM started with `-Xrs` ignores SIGTERM (it runs as PID 1 without a
/// handler), so the stop ends in a SIGKILL and exit code 137: what a crash
/// looks like. The stop is recorded in the container's name before it is
/// sent, so a controller restarted since still reads STOPPED, keeps the
/// container (for its logs and a restart), and can restart it, after which
/// a death is news again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_needed_sigkill_is_still_a_stop_after_a_controller_restart() {
    let env = TestEnv::new().await;
    let stores = Stores::default();
    let options = DockerOrchestratorOptions {
        stop_timeout: Duration::from_secs(1),
        ..test_options()
    };
    let app = env.app("stubborn", "dev");
    let first = PlatformEnv::on(controller(&env, options.clone()), &env.tenant, &stores);
    first.platform.start().await.expect("start");
    let image = fixture_image(&env.docker, FixtureApp::Logging).await;
    let jar = first.upload(&app, FixtureApp::Logging, image).await;
    let mut cfg = config(HealthCheck::None, &[]);
    cfg.jvm_options = vec!["-Xrs".into()];
    let d = first.deploy_settled(&app, jar, cfg).await;
    assert_eq!(d.status, DeploymentStatus::Running, "{d:#?}");

    let stopped = first.platform.stop(&app).await.expect("stop");
    assert_eq!(stopped.len(), 1);
    let marked = format!("{}.stopped", labels::container_name(&app, 1));
    let inspect = support::inspect_opt(&env.docker, &marked)
        .await
        .expect("kept, under its stopped name");
    let state = inspect.state.unwrap();
    assert_eq!(state.exit_code, Some(137), "the stop needed a SIGKILL");
    assert_eq!(state.oom_killed, Some(false));
    first.platform.shutdown().await;
    drop(first);

    let next = PlatformEnv::on(controller(&env, options), &env.tenant, &stores);
    let report = next.platform.start().await.expect("recover");
    assert!(report.backend.removed_orphans.is_empty(), "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let status = next.backend.app_status(&app).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Stopped, "{status:?}");
    assert_eq!(status.reason, Some(StatusReason::StoppedOnRequest));
    let listed = next.backend.list_apps(&env.tenant).await.unwrap();
    assert_eq!(listed[0].status, DeploymentStatus::Stopped, "{listed:?}");
    let view = next.platform.status(&app).await.unwrap();
    assert_eq!(view.status, Some(DeploymentStatus::Stopped), "{view:#?}");

    // Started again, under its plain name; its next death is a crash.
    let restarted = next.platform.restart(&app).await.expect("restart");
    assert_eq!(
        restarted.status,
        DeploymentStatus::Running,
        "{restarted:#?}"
    );
    let name = labels::container_name(&app, 1);
    assert!(support::inspect_opt(&env.docker, &name).await.is_some());
    env.docker.kill_container(&name, None).await.unwrap();
    let failed = next
        .wait_for(&d.id, DeploymentStatus::Failed, Duration::from_secs(10))
        .await;
    assert_eq!(
        failed.last_reason(),
        Some(&StatusReason::Exited {
            exit_code: Some(137)
        })
    );
    next.platform.shutdown().await;
    next.backend.inner.remove_app(&app).await.unwrap();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
}

/// A first version that crashed is FAILED, and its container is kept for
/// its status and logs. A restarted controller must keep it too, however
/// old: the store knows it (it is the app's newest deployment), even though
/// it is not active. So too one whose health check timed out, which the
/// engine sees as stopped: it still reads FAILED, with the store's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_newest_version_keeps_its_container_across_a_controller_restart() {
    let env = TestEnv::new().await;
    let stores = Stores::default();
    let options = DockerOrchestratorOptions {
        orphan_grace: Duration::from_secs(1),
        ..test_options()
    };
    let app = env.app("crashy", "dev");
    let first = PlatformEnv::on(controller(&env, options.clone()), &env.tenant, &stores);
    first.platform.start().await.expect("start");
    let image = fixture_image(&env.docker, FixtureApp::Crashing).await;
    let jar = first.upload(&app, FixtureApp::Crashing, image).await;
    let d = first
        .deploy_settled(
            &app,
            jar,
            config(HealthCheck::None, &[("CRASH_DELAY_MS", "100")]),
        )
        .await;
    assert_eq!(d.status, DeploymentStatus::Failed, "{d:#?}");
    let sick = env.app("sick", "dev");
    let image = fixture_image(&env.docker, FixtureApp::Listening).await;
    let jar = first.upload(&sick, FixtureApp::Listening, image).await;
    let health = HealthCheck::Http {
        port: 8080,
        path: "/health".into(),
    };
    let mut cfg = config(health, &[("HEALTH_STATUS", "500")]);
    cfg.start_timeout_secs = 2;
    let timed_out = first.deploy_settled(&sick, jar, cfg).await;
    assert_eq!(timed_out.status, DeploymentStatus::Failed, "{timed_out:#?}");
    let sick_reason = timed_out.last_reason().cloned().unwrap();
    assert_eq!(sick_reason.code(), "health_timeout", "{sick_reason}");
    first.platform.shutdown().await;
    drop(first);
    let name = labels::container_name(&app, 1);
    let names = [name.clone(), labels::container_name(&sick, 1)];
    assert_eq!(container_names(&env).await, names);
    // Older than the orphan grace, in the engine's whole seconds.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let next = PlatformEnv::on(controller(&env, options), &env.tenant, &stores);
    let report = next.platform.start().await.expect("recover");
    assert!(report.backend.removed_orphans.is_empty(), "{report:?}");
    assert!(report.backend.adopted.is_empty(), "{report:?}");
    assert_eq!(container_names(&env).await, names);
    let status = next.backend.app_status(&app).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Failed, "{status:?}");
    assert_eq!(
        status.reason,
        Some(StatusReason::Exited { exit_code: Some(3) })
    );
    let mut lines = next
        .backend
        .app_logs(&app, &LogOptions::default())
        .await
        .expect("its logs are still there");
    assert!(lines.next().await.is_some(), "the crashed app's output");
    let view = next.platform.status(&app).await.unwrap();
    assert_eq!(view.status, Some(DeploymentStatus::Failed), "{view:#?}");
    let status = next.backend.app_status(&sick).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Failed, "{status:?}");
    assert_eq!(status.reason, Some(sick_reason));
    let listed = next.backend.list_apps(&env.tenant).await.unwrap();
    assert!(
        listed.iter().all(|a| a.status == DeploymentStatus::Failed),
        "{listed:?}"
    );
    next.platform.shutdown().await;
    next.backend.inner.remove_app(&app).await.unwrap();
    next.backend.inner.remove_app(&sick).await.unwrap();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
}

/// The store is the truth about intent; the `.stopped` name is only a
/// cache of it. A controller that stopped the app in the engine and died
/// before the store recorded the stop never finished the stop: the store
/// still says RUNNING, so the next controller starts the app again instead
/// of reading the cached "stopped" as the truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stores_intent_wins_over_a_stop_that_never_reached_the_store() {
    let env = TestEnv::new().await;
    let stores = Stores::default();
    let app = env.app("steady", "dev");
    let first = PlatformEnv::on(controller(&env, test_options()), &env.tenant, &stores);
    first.platform.start().await.expect("start");
    let image = fixture_image(&env.docker, FixtureApp::Logging).await;
    let jar = first.upload(&app, FixtureApp::Logging, image).await;
    let d = first
        .deploy_settled(&app, jar, config(HealthCheck::None, &[]))
        .await;
    assert_eq!(d.status, DeploymentStatus::Running, "{d:#?}");
    // The engine half of a stop, then the controller dies.
    first
        .backend
        .stop_app(&app)
        .await
        .expect("stop in the engine");
    first.platform.shutdown().await;
    drop(first);
    let marked = format!("{}.stopped", labels::container_name(&app, 1));
    assert!(support::inspect_opt(&env.docker, &marked).await.is_some());
    assert_eq!(
        stores.deployments.get(&d.id).await.unwrap().status,
        DeploymentStatus::Running
    );

    let next = PlatformEnv::on(controller(&env, test_options()), &env.tenant, &stores);
    let report = next.platform.start().await.expect("recover");
    assert_eq!(report.backend.adopted, [d.id], "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let status = next.backend.app_status(&app).await.unwrap();
    assert_eq!(
        (status.status, status.deployment),
        (DeploymentStatus::Running, Some(d.id))
    );
    assert!(
        support::inspect_opt(&env.docker, &labels::container_name(&app, 1))
            .await
            .is_some(),
        "running again under its plain name"
    );
    assert_eq!(
        stores.deployments.get(&d.id).await.unwrap().status,
        DeploymentStatus::Running
    );
    next.platform.shutdown().await;
    next.backend.inner.remove_app(&app).await.unwrap();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
}

/// v1 crashed (FAILED, its container kept for its status and logs), then
/// v2's build failed: v2 never had a container, so the app's container is
/// still v1's. A restarted controller must keep it: a newest version
/// without an image says nothing about the one before it, which is neither
/// active nor the newest but is what the app's status and logs show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newest_version_whose_build_failed_does_not_make_the_one_before_it_an_orphan() {
    let env = TestEnv::new().await;
    let stores = Stores::default();
    let options = DockerOrchestratorOptions {
        orphan_grace: Duration::from_secs(1),
        ..test_options()
    };
    let app = env.app("unlucky", "dev");
    let first = PlatformEnv::on(controller(&env, options.clone()), &env.tenant, &stores);
    first.platform.start().await.expect("start");
    let image = fixture_image(&env.docker, FixtureApp::Crashing).await;
    let jar = first.upload(&app, FixtureApp::Crashing, image).await;
    let v1 = first
        .deploy_settled(
            &app,
            jar,
            config(HealthCheck::None, &[("CRASH_DELAY_MS", "100")]),
        )
        .await;
    assert_eq!(v1.status, DeploymentStatus::Failed, "{v1:#?}");
    // A JAR the builder has no image for: its build fails.
    let other = std::fs::read(
        cameleer_build::java::fixtures::app_jar(FixtureApp::Logging).expect("fixture jar"),
    )
    .unwrap();
    let body = futures::stream::iter([Ok(bytes::Bytes::from(other))]).boxed();
    let unbuildable = first
        .platform
        .upload_artifact(&app, body, None)
        .await
        .expect("upload")
        .sha256;
    let v2 = first
        .deploy_settled(&app, unbuildable, config(HealthCheck::None, &[]))
        .await;
    assert_eq!(v2.status, DeploymentStatus::Failed, "{v2:#?}");
    assert!(v2.image.is_none(), "{v2:#?}");
    first.platform.shutdown().await;
    drop(first);
    let name = labels::container_name(&app, 1);
    assert_eq!(container_names(&env).await, std::slice::from_ref(&name));
    // Older than the orphan grace, in the engine's whole seconds.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let next = PlatformEnv::on(controller(&env, options), &env.tenant, &stores);
    let report = next.platform.start().await.expect("recover");
    assert!(report.backend.removed_orphans.is_empty(), "{report:?}");
    assert_eq!(container_names(&env).await, std::slice::from_ref(&name));
    let status = next.backend.app_status(&app).await.expect("v1's container");
    assert_eq!(
        (status.status, status.deployment),
        (DeploymentStatus::Failed, Some(v1.id)),
        "{status:?}"
    );
    assert_eq!(
        status.reason,
        Some(StatusReason::Exited { exit_code: Some(3) })
    );
    let mut lines = next
        .backend
        .app_logs(&app, &LogOptions::default())
        .await
        .expect("v1's logs are still there");
    assert!(lines.next().await.is_some(), "the crashed app's output");
    next.platform.shutdown().await;
    next.backend.inner.remove_app(&app).await.unwrap();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
}
