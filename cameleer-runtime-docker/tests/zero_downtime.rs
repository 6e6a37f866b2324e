//! Redeploy without downtime, seen from a client.
//!
//! A busybox client on the tenant network sends `GET /` to the app by its
//! name (`web`, which the engine's DNS resolves to whichever versions hold
//! the app's alias) in a loop — connect, request, close, 20 ms apart — and
//! prints one line per request: the host's uptime (the same clock in every
//! container) and the answer. Meanwhile the platform redeploys the app: a
//! version that takes 1.5 s to listen replaces the running one, then a
//! version that never becomes healthy fails while the running one keeps
//! serving.
//!
//! The bound: no request is ever refused, and nothing fails outside the
//! switch itself; at most one request fails, and only while the redeploy
//! is switching versions. (The engine drops the old version's DNS record
//! after its interface, as the last part of the disconnect: a client that
//! resolves the name in those few tens of milliseconds connects to an
//! address that no longer answers and times out. See `switch.rs`.)

mod support;

use std::time::Duration;

use cameleer_build::java::fixtures::FixtureApp;
use cameleer_docker_testing::{self as testing, ContainerSpec};
use cameleer_runtime::{AppConfig, DeploymentStatus, HealthCheck, StatusReason};
use cameleer_runtime_docker::base_image::ensure_busybox_image;
use cameleer_runtime_docker::labels;
use support::platform::PlatformEnv;
use support::{TestEnv, config, fixture_image, leftovers};

/// The longest the client loop may run (it is stopped earlier).
const CLIENT_SECONDS: u32 = 90;

fn web_config(app_name: &str, env: &[(&str, &str)]) -> AppConfig {
    let mut vars = vec![("APP_NAME", app_name)];
    vars.extend_from_slice(env);
    config(
        HealthCheck::Http {
            port: 8080,
            path: "/health".into(),
        },
        &vars,
    )
}

/// What the client saw.
#[derive(Debug, Default)]
struct Tally {
    answers: Vec<(f64, String)>,
    failures: Vec<(f64, String)>,
}

impl Tally {
    fn parse(stdout: &str) -> Tally {
        let mut t = Tally::default();
        for line in stdout.lines() {
            let (at, rest) = line.split_once(' ').unwrap_or((line, ""));
            let Ok(at) = at.parse::<f64>() else { continue };
            match rest.strip_prefix("hello from ") {
                Some(version) => t.answers.push((at, version.trim().to_string())),
                None => t.failures.push((at, rest.to_string())),
            }
        }
        t
    }

    fn count(&self, version: &str) -> usize {
        self.answers.iter().filter(|(_, v)| v == version).count()
    }

    fn last(&self, version: &str) -> Option<f64> {
        self.answers
            .iter()
            .filter(|(_, v)| v == version)
            .map(|(t, _)| *t)
            .reduce(f64::max)
    }

    fn first(&self, version: &str) -> Option<f64> {
        self.answers
            .iter()
            .filter(|(_, v)| v == version)
            .map(|(t, _)| *t)
            .reduce(f64::min)
    }
}

fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|u| u.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_under_load_refuses_no_connection() {
    let env = TestEnv::new().await;
    let p = PlatformEnv::new(env.orchestrator.clone(), &env.tenant);
    p.platform.start().await.expect("start");
    let app = env.app("web", "prod");
    let image = fixture_image(&env.docker, FixtureApp::Listening).await;
    let jar = p.upload(&app, FixtureApp::Listening, image).await;

    let v1 = p.deploy_settled(&app, jar, web_config("v1", &[])).await;
    assert_eq!(v1.status, DeploymentStatus::Running, "{v1:#?}");

    // The client, on the tenant network, by the app's name.
    let network = support::inspect(&env.docker, &app, 1)
        .await
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.into_values().next())
        .and_then(|e| e.network_id)
        .expect("the tenant network");
    let busybox = ensure_busybox_image(&env.docker).await.expect("busybox");
    let script = format!(
        "end=$(( $(cut -d. -f1 /proc/uptime) + {CLIENT_SECONDS} )); \
         while [ $(cut -d. -f1 /proc/uptime) -lt $end ]; do \
           t=$(cut -d' ' -f1 /proc/uptime); \
           r=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 web 8080 2>&1 | tail -n 1); \
           echo \"$t $r\"; usleep 20000; \
         done"
    );
    let mut spec = ContainerSpec::new(&busybox.reference.to_string(), ["sh", "-c", &script]);
    spec.host_config.network_mode = Some(network);
    let client = testing::start(&env.docker, &env.guard, spec)
        .await
        .expect("the client");
    testing::wait_for_log(
        &env.docker,
        &client,
        "hello from v1",
        Duration::from_secs(20),
    )
    .await
    .expect("the client reaches v1");

    // v2 takes 1.5 s to listen: v1 serves meanwhile.
    let switch_began = uptime();
    let v2 = p
        .deploy_settled(&app, jar, web_config("v2", &[("LISTEN_DELAY_MS", "1500")]))
        .await;
    let switch_ended = uptime();
    assert_eq!(v2.status, DeploymentStatus::Running, "{v2:#?}");
    let v1_after = p.store_get(&v1.id).await;
    assert_eq!(v1_after.status, DeploymentStatus::Stopped, "{v1_after:#?}");
    assert_eq!(
        v1_after.last_reason(),
        Some(&StatusReason::Superseded { by_version: 2 })
    );
    testing::wait_for_log(
        &env.docker,
        &client,
        "hello from v2",
        Duration::from_secs(10),
    )
    .await
    .expect("the client reaches v2");
    // Some time on v2 alone.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // v3 never becomes healthy: FAILED with the reason, v2 keeps serving.
    let mut bad = web_config("v3", &[("HEALTH_STATUS", "503")]);
    bad.start_timeout_secs = 3;
    let v3 = p.deploy_settled(&app, jar, bad).await;
    assert_eq!(v3.status, DeploymentStatus::Failed, "{v3:#?}");
    let reason = v3.last_reason().unwrap();
    assert_eq!(reason.code(), "health_timeout", "{reason}");
    assert!(reason.to_string().contains("503"), "{reason}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failed_over = uptime();

    env.docker
        .kill_container(&client, None)
        .await
        .expect("stopping the client");
    let seen = testing::logs(&env.docker, &client)
        .await
        .expect("client logs");
    let tally = Tally::parse(&seen.stdout);
    let total = tally.answers.len() + tally.failures.len();
    eprintln!(
        "client: {total} requests, {} by v1, {} by v2, {} by v3, {} failed {:?}",
        tally.count("v1"),
        tally.count("v2"),
        tally.count("v3"),
        tally.failures.len(),
        tally
            .failures
            .iter()
            .map(|(t, why)| format!(
                "{why} at {t} ({:+.2} s from the end of the switch)",
                t - switch_ended
            ))
            .collect::<Vec<_>>(),
    );
    let (last_v1, first_v2) = (tally.last("v1").unwrap(), tally.first("v2").unwrap());
    eprintln!(
        "switch: deploy of v2 took {:.2} s; v1 and v2 both answered for {:.2} s \
         (first v2 answer {:.2} s after the deploy began, last v1 answer {:.2} s before it returned); \
         {:.2} s of v2 alone before, during and after the failed v3",
        switch_ended - switch_began,
        (last_v1 - first_v2).max(0.0),
        first_v2 - switch_began,
        switch_ended - last_v1,
        failed_over - switch_ended,
    );
    assert!(total > 100, "the client kept asking: {total}");
    assert!(
        tally
            .failures
            .iter()
            .all(|(_, why)| why.contains("timed out")),
        "nothing is refused or reset: {:?}",
        tally.failures
    );
    assert!(tally.failures.len() <= 1, "{:?}", tally.failures);
    assert!(
        tally
            .failures
            .iter()
            .all(|(t, _)| *t >= switch_began && *t <= switch_ended),
        "failures only during the switch: {:?}",
        tally.failures
    );
    assert_eq!(tally.count("v3"), 0, "an unhealthy version never serves");
    assert!(
        first_v2 >= switch_began + 1.5,
        "v2 answered only once it was up"
    );
    assert!(
        tally
            .answers
            .iter()
            .all(|(t, v)| v != "v1" || *t <= switch_ended + 0.05),
        "v1 stops answering when the deploy returns"
    );

    // Only v2 is left, on one network, with the client gone.
    support::remove_now(&env.docker, &client).await;
    assert_eq!(
        support::container_names(&env.docker, labels::app_filter(&app)).await,
        [labels::container_name(&app, 2)]
    );
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (1, 1));
    p.platform.shutdown().await;
    env.orchestrator.remove_app(&app).await.unwrap();
}
