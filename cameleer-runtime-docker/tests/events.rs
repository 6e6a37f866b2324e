//! Events, not polling: the `Platform` over the Docker backend learns of a
//! crash or an OOM kill from the engine's event stream and records the
//! deployment FAILED with the reason within 2 s of the container's death;
//! when the stream is cut, the orchestrator reconnects by itself and
//! catches up from a full list.
//!
//! Latencies are measured from the engine's own `FinishedAt` of the
//! container to the time the platform recorded FAILED (one clock: the
//! engine runs on this machine).

mod support;

use std::time::Duration;

use cameleer_build::java::fixtures::FixtureApp;
use cameleer_runtime::{
    AppConfig, AppRef, Deployment, DeploymentStatus, HealthCheck, RuntimeOrchestrator, StatusReason,
};
use cameleer_runtime_docker::DockerRuntimeOrchestrator;
use cameleer_runtime_docker::labels;
use support::platform::{PlatformEnv, entered, finished_at, secs};
use support::proxy::EngineProxy;
use support::{TestEnv, config, fixture_image, test_options};
use time::OffsetDateTime;

/// The most a death may take to show as FAILED.
const PROMPT: Duration = Duration::from_secs(2);

/// Deploys `fixture` as `name` v1 through the platform and waits for RUNNING.
async fn running(
    env: &TestEnv,
    p: &PlatformEnv,
    name: &str,
    fixture: FixtureApp,
    cfg: AppConfig,
) -> (AppRef, Deployment) {
    let app = env.app(name, "dev");
    let image = fixture_image(&env.docker, fixture).await;
    let jar = p.upload(&app, fixture, image).await;
    let d = p.deploy_settled(&app, jar, cfg).await;
    assert_eq!(d.status, DeploymentStatus::Running, "{d:#?}");
    (app, d)
}

/// Waits for FAILED and returns it with the time from the container's
/// death to the platform's record of it.
async fn failed_after_death(
    env: &TestEnv,
    p: &PlatformEnv,
    app: &AppRef,
    d: &Deployment,
) -> (Deployment, time::Duration) {
    let failed = p
        .wait_for(&d.id, DeploymentStatus::Failed, Duration::from_secs(30))
        .await;
    let died = finished_at(&env.docker, &labels::container_name(app, d.version)).await;
    (failed.clone(), entered(&failed) - died)
}

/// Waits for FAILED, checks it came promptly and that its reason is
/// `because`.
async fn assert_failed_promptly(
    env: &TestEnv,
    p: &PlatformEnv,
    app: &AppRef,
    d: &Deployment,
    what: &str,
    because: StatusReason,
) {
    let (failed, latency) = failed_after_death(env, p, app, d).await;
    assert_prompt(what, latency);
    assert_eq!(failed.last_reason(), Some(&because));
}

fn exited(code: i64) -> StatusReason {
    StatusReason::Exited {
        exit_code: Some(code),
    }
}

fn assert_prompt(what: &str, latency: time::Duration) {
    eprintln!(
        "{what}: FAILED {:.0} ms after the container died",
        secs(latency) * 1000.0
    );
    assert!(
        latency < time::Duration::try_from(PROMPT).unwrap(),
        "{what}: {latency} is not within {PROMPT:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_app_that_is_killed_is_failed_within_two_seconds() {
    let env = TestEnv::new().await;
    let p = PlatformEnv::new(env.orchestrator.clone(), &env.tenant);
    p.platform.start().await.expect("start");
    let (app, d) = running(
        &env,
        &p,
        "killed",
        FixtureApp::Logging,
        config(HealthCheck::None, &[]),
    )
    .await;

    env.docker
        .kill_container(&labels::container_name(&app, 1), None)
        .await
        .expect("kill");
    assert_failed_promptly(&env, &p, &app, &d, "SIGKILL", exited(137)).await;
    p.platform.shutdown().await;
}

/// `docker stop` from outside the platform: the JVM ends on SIGTERM (143),
/// which the deployment records as a stop, as the container's status reads,
/// not as a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_stopped_outside_the_platform_is_stopped_not_failed() {
    let env = TestEnv::new().await;
    let p = PlatformEnv::new(env.orchestrator.clone(), &env.tenant);
    p.platform.start().await.expect("start");
    let (app, d) = running(
        &env,
        &p,
        "stopped",
        FixtureApp::Logging,
        config(HealthCheck::None, &[]),
    )
    .await;
    env.docker
        .stop_container(&labels::container_name(&app, 1), None)
        .await
        .expect("docker stop");
    let stopped = p
        .wait_for(&d.id, DeploymentStatus::Stopped, Duration::from_secs(30))
        .await;
    assert_eq!(
        stopped.last_reason(),
        Some(&StatusReason::StoppedExternally)
    );
    let status = p.backend.app_status(&app).await.unwrap();
    assert_eq!(
        (status.status, status.reason),
        (
            DeploymentStatus::Stopped,
            Some(StatusReason::StoppedExternally)
        )
    );
    p.platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_exits_on_its_own_is_failed_with_its_code_within_two_seconds() {
    let env = TestEnv::new().await;
    let p = PlatformEnv::new(env.orchestrator.clone(), &env.tenant);
    p.platform.start().await.expect("start");
    let cfg = config(
        HealthCheck::None,
        &[("CRASH_DELAY_MS", "4000"), ("CRASH_EXIT_CODE", "42")],
    );
    let (app, d) = running(&env, &p, "crashy", FixtureApp::Crashing, cfg).await;

    assert_failed_promptly(&env, &p, &app, &d, "exit 42", exited(42)).await;
    p.platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_failed_naming_it_within_two_seconds() {
    let env = TestEnv::new().await;
    let p = PlatformEnv::new(env.orchestrator.clone(), &env.tenant);
    p.platform.start().await.expect("start");
    let mut cfg = config(
        HealthCheck::None,
        &[("OOM_CHUNK_MB", "16"), ("OOM_PAUSE_MS", "400")],
    );
    cfg.resources.memory_mb = 128;
    let (app, d) = running(&env, &p, "hungry", FixtureApp::Oom, cfg).await;

    assert_failed_promptly(&env, &p, &app, &d, "OOM kill", StatusReason::OomKilled).await;
    p.platform.shutdown().await;
}

/// The orchestrator talks to the engine through a loopback proxy; cutting
/// the proxy breaks its event stream (and every other connection) for
/// real. A container that dies meanwhile is reported once the orchestrator
/// has reconnected on its own, from its catch-up list; the platform never
/// had to subscribe again, and later deaths arrive live again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_death_while_the_event_stream_is_cut_is_reported_after_it_reconnects() {
    let env = TestEnv::new().await;
    let proxy = EngineProxy::start().await;
    let orchestrator = DockerRuntimeOrchestrator::connect_to(&proxy.host(), test_options())
        .await
        .expect("through the proxy");
    let p = PlatformEnv::new(orchestrator, &env.tenant);
    p.platform.start().await.expect("start");
    let (app, d) = running(
        &env,
        &p,
        "cut",
        FixtureApp::Logging,
        config(HealthCheck::None, &[]),
    )
    .await;
    let container = labels::container_name(&app, 1);

    proxy.cut();
    env.docker
        .kill_container(&container, None)
        .await
        .expect("kill (directly, not through the proxy)");
    // Nobody can tell the platform while the stream is down.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = p.store_get(&d.id).await;
    assert_eq!(during.status, DeploymentStatus::Running, "{during:#?}");

    proxy.restore();
    let restored = OffsetDateTime::now_utc();
    let failed = p
        .wait_for(&d.id, DeploymentStatus::Failed, Duration::from_secs(10))
        .await;
    let caught_up = entered(&failed) - restored;
    eprintln!(
        "cut: {} connection attempts refused while cut; FAILED {:.0} ms after the proxy let them through",
        proxy.refused(),
        secs(caught_up) * 1000.0
    );
    assert!(proxy.refused() > 0, "the orchestrator tried to reconnect");
    assert!(
        caught_up < time::Duration::try_from(PROMPT).unwrap(),
        "{caught_up}"
    );
    assert_eq!(failed.last_reason(), Some(&exited(137)));
    assert_eq!(
        p.backend
            .subscriptions
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the orchestrator's stream reconnected; the platform did not resubscribe"
    );

    // Live again: a restart, then a death reported as it happens.
    let restarted = p.platform.restart(&app).await.expect("restart");
    assert_eq!(
        restarted.status,
        DeploymentStatus::Running,
        "{restarted:#?}"
    );
    env.docker
        .kill_container(&container, None)
        .await
        .expect("kill");
    let (_, latency) = failed_after_death(&env, &p, &app, &restarted).await;
    assert_prompt("after the reconnect", latency);
    p.platform.shutdown().await;
}
