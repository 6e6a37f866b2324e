//! An app's logs across a redeploy, against the real engine: the container
//! a log stream reads is replaced, and the caller never sees the engine's
//! "No such container".
//!
//! Every test works under a tenant of its own and removes what it created
//! through a cleanup guard, also when it fails.

mod support;

use std::time::Duration;

use cameleer_build::java::fixtures::FixtureApp;
use cameleer_runtime::{AppConfig, HealthCheck, LogOptions, RuntimeOrchestrator};
use cameleer_runtime_docker::{DockerRuntimeOrchestrator, labels};
use futures::StreamExt;
use support::proxy::EngineProxy;
use support::{TestEnv, config, fixture_image, leftovers, test_options};

const PATIENCE: Duration = Duration::from_secs(30);

/// The logging app, telling its version by its arguments.
fn version(v: &str) -> AppConfig {
    let mut cfg = config(HealthCheck::None, &[("LOG_INTERVAL_MS", "100")]);
    cfg.args = vec![v.to_string()];
    cfg
}

/// `app_logs` finds v1's container; before its request for v1's lines
/// reaches the engine, v2 replaces v1 and v1's container is removed (a
/// proxy holds the request meanwhile, which makes the race certain). The
/// engine answers "No such container"; the caller gets v2's lines instead,
/// and no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_asked_for_as_a_redeploy_removes_the_container_are_the_new_versions() {
    let env = TestEnv::new().await;
    let image = fixture_image(&env.docker, FixtureApp::Logging).await;
    let app = env.app("chatty", "dev");
    let deploy = |v: u64| env.request(&app, v, image.clone(), version(&format!("v{v}")));
    env.orchestrator.deploy_app(&deploy(1)).await.expect("v1");

    let proxy = EngineProxy::start().await;
    let reader = DockerRuntimeOrchestrator::connect_to(&proxy.host(), test_options())
        .await
        .expect("through the proxy");
    proxy.hold_next("/logs?");
    let lines = reader
        .app_logs(&app, &LogOptions::default())
        .await
        .expect("v1 is found");
    tokio::time::timeout(PATIENCE, proxy.held())
        .await
        .expect("the request for v1's lines is on its way");
    env.orchestrator.deploy_app(&deploy(2)).await.expect("v2");
    let v1 = labels::container_name(&app, 1);
    assert!(
        support::inspect_opt(&env.docker, &v1).await.is_none(),
        "v1's container is gone"
    );
    proxy.release();

    let got: Vec<_> = tokio::time::timeout(PATIENCE, lines.collect())
        .await
        .expect("the stream ends (not following)");
    let errors: Vec<String> = got
        .iter()
        .filter_map(|l| l.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let texts: Vec<&str> = got
        .iter()
        .filter_map(|l| l.as_ref().ok().map(|l| l.line.as_str()))
        .collect();
    assert!(texts.contains(&"[app] args=[v2]"), "v2's lines: {texts:#?}");
    env.orchestrator.remove_app(&app).await.unwrap();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
}

/// A followed stream reads one container: when a redeploy replaces it, the
/// stream ends cleanly (no error), and asking again follows the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_stream_ends_cleanly_when_a_redeploy_replaces_its_container() {
    let env = TestEnv::new().await;
    let image = fixture_image(&env.docker, FixtureApp::Logging).await;
    let app = env.app("chatty", "dev");
    let deploy = |v: u64| env.request(&app, v, image.clone(), version(&format!("v{v}")));
    env.orchestrator.deploy_app(&deploy(1)).await.expect("v1");
    let follow = LogOptions {
        since: None,
        follow: true,
    };
    let mut v1 = env.orchestrator.app_logs(&app, &follow).await.unwrap();
    let first = tokio::time::timeout(PATIENCE, v1.next()).await.unwrap();
    assert!(matches!(first, Some(Ok(_))), "{first:?}");

    env.orchestrator.deploy_app(&deploy(2)).await.expect("v2");
    let rest: Vec<_> = tokio::time::timeout(PATIENCE, v1.collect())
        .await
        .expect("the stream of v1 ends once v1 is replaced");
    let errors: Vec<String> = rest
        .iter()
        .filter_map(|l| l.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    let mut v2 = env.orchestrator.app_logs(&app, &follow).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let line = tokio::time::timeout_at(deadline, v2.next())
            .await
            .expect("v2's lines")
            .expect("still following")
            .expect("a line");
        if line.line == "[app] args=[v2]" {
            break;
        }
    }
    drop(v2);
    env.orchestrator.remove_app(&app).await.unwrap();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
}
