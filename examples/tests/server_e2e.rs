//! End to end: the server binary on the real Docker engine, driven over
//! HTTP the way the README's quickstart does.
//!
//! Upload a JAR compiled at test time, deploy, wait for RUNNING, read the
//! logs (the agent's line and the app's), promote dev → staging (the same
//! image id), stop, SIGKILL the server and start it again on the same data
//! dir: the same deployments, staging still RUNNING, no duplicate container.
//! With `--registry`: the same path, with images pushed to a registry on
//! loopback (htpasswd, credentials from the environment) and pulled by
//! digest; promotion pushes nothing.

mod support;

use std::time::{Duration, Instant};

use cameleer_build::java::agent::AGENT_LINE_PREFIX;
use cameleer_build::java::fixtures::{APP_STARTED_LINE, FixtureApp, app_jar};
use cameleer_docker_testing::containers_labelled;
use cameleer_runtime_docker::labels;
use serde_json::{Value, json};
use support::server::{Endpoint, Server, json_call, poll, read_response, send};

/// A minimal HTTP/1.1 exchange (`Connection: close`, chunked or not).
async fn http(addr: &Endpoint, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    read_response(send(addr, method, path, body).await).await
}

async fn wait_for_status(addr: &Endpoint, path: &str, want: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (code, view) = json_call(addr, "GET", path, Value::Null).await;
        if code == 200 && view["status"] == want && view["deployment"]["status"] == want {
            return view;
        }
        let failed = view["deployment"]["status"] == "FAILED";
        assert!(!failed || want == "FAILED", "deployment failed: {view}");
        assert!(
            start.elapsed() < limit,
            "not {want} after {limit:?}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn count_containers(docker: &bollard::Docker, tenant: &str) -> usize {
    containers_labelled(docker, labels::TENANT, tenant)
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_deploy_logs_promote_stop_and_survive_a_sigkill() {
    let (docker, tenant, guard) = support::server::isolated_tenant("e2e").await;
    let data = tempfile::tempdir().unwrap();
    let jar = std::fs::read(app_jar(FixtureApp::Logging).unwrap()).unwrap();
    let patience = Duration::from_secs(240);

    let server = Server::start(data.path());
    let addr = &server.endpoint();
    let (code, health) = json_call(addr, "GET", "/healthz", Value::Null).await;
    assert_eq!((code, health["ok"].clone()), (200, json!(true)));

    let app = format!("/api/v1/tenants/{tenant}/apps/orders");
    let (code, body) = http(addr, "PUT", &format!("{app}/envs/dev/artifacts"), &jar).await;
    let uploaded: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(code, 201, "{uploaded}");
    assert_eq!(uploaded["main_class"], FixtureApp::Logging.main_class());

    let config = json!({
        "env": {"LOG_INTERVAL_MS": "300"},
        "resources": {"memory_mb": 256, "cpu_millis": 500},
    });
    let (code, dep) = json_call(
        addr,
        "POST",
        &format!("{app}/envs/dev/deployments"),
        json!({"artifact": uploaded["sha256"], "config": config}),
    )
    .await;
    assert_eq!(code, 202, "{dep}");
    assert_eq!(dep["status"], "BUILDING");
    let dev = wait_for_status(addr, &format!("{app}/envs/dev"), "RUNNING", patience).await;
    let image = dev["deployment"]["image"].as_str().unwrap().to_owned();

    // The agent's line and the app's line, as NDJSON.
    let (code, logs) = http(addr, "GET", &format!("{app}/envs/dev/logs"), b"").await;
    assert_eq!(code, 200);
    let lines: Vec<Value> = String::from_utf8(logs)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts: Vec<&str> = lines.iter().map(|l| l["line"].as_str().unwrap()).collect();
    assert!(
        texts.iter().any(|l| l.starts_with(AGENT_LINE_PREFIX)),
        "{texts:?}"
    );
    assert!(texts.contains(&APP_STARTED_LINE), "{texts:?}");

    // Promote dev → staging: the same image, no build.
    let staging_config = json!({"env": {"LOG_INTERVAL_MS": "1000"}, "resources": {"memory_mb": 256, "cpu_millis": 250}});
    let (code, promoted) = json_call(
        addr,
        "POST",
        &format!("{app}/promote"),
        json!({"from": "dev", "to": "staging", "config": staging_config}),
    )
    .await;
    assert_eq!(code, 202, "{promoted}");
    assert_eq!(promoted["image"], image);
    let staging = wait_for_status(addr, &format!("{app}/envs/staging"), "RUNNING", patience).await;
    assert_eq!(staging["deployment"]["image"], image);
    assert_eq!(
        staging["deployment"]["config"]["resources"]["cpu_millis"],
        250
    );

    let (code, stopped) =
        json_call(addr, "POST", &format!("{app}/envs/dev/stop"), Value::Null).await;
    assert_eq!(code, 200, "{stopped}");
    wait_for_status(addr, &format!("{app}/envs/dev"), "STOPPED", patience).await;
    let containers_before = count_containers(&docker, &tenant).await;
    let (_, history_before) = json_call(
        addr,
        "GET",
        &format!("{app}/envs/staging/deployments"),
        Value::Null,
    )
    .await;

    // A crash of the server: SIGKILL, then start again on the same data.
    server.kill();
    let server = Server::start(data.path());
    let addr = &server.endpoint();
    let staging = wait_for_status(addr, &format!("{app}/envs/staging"), "RUNNING", patience).await;
    assert_eq!(staging["deployment"]["image"], image);
    let (_, history_after) = json_call(
        addr,
        "GET",
        &format!("{app}/envs/staging/deployments"),
        Value::Null,
    )
    .await;
    assert_eq!(history_after, history_before);
    let (_, dev) = json_call(addr, "GET", &format!("{app}/envs/dev"), Value::Null).await;
    assert_eq!(dev["deployment"]["status"], "STOPPED", "{dev}");
    assert_eq!(count_containers(&docker, &tenant).await, containers_before);
    let (code, list) = json_call(
        addr,
        "GET",
        &format!("/api/v1/tenants/{tenant}/apps"),
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(list["apps"].as_array().unwrap().len(), 2, "{list}");

    drop(server);
    support::server::clean_up(&docker, &tenant, guard).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_registry_uploads_end_as_pushed_images_and_promotion_pushes_nothing() {
    use cameleer_registry::testing::TestRegistry;
    use cameleer_registry::{PASSWORD_ENV, RegistryClient, USERNAME_ENV};

    let registry = TestRegistry::builder()
        .htpasswd("platform", "registry-secret")
        .start()
        .unwrap();
    let (docker, tenant, guard) = support::server::isolated_tenant("e2e").await;
    let data = tempfile::tempdir().unwrap();
    let jar = std::fs::read(app_jar(FixtureApp::Logging).unwrap()).unwrap();
    let patience = Duration::from_secs(240);

    let server = Server::start_with(
        data.path(),
        &["--registry", &registry.url()],
        &[
            (USERNAME_ENV, "platform"),
            (PASSWORD_ENV, "registry-secret"),
        ],
    );
    let addr = &server.endpoint();
    let app = format!("/api/v1/tenants/{tenant}/apps/orders");
    let (code, body) = http(addr, "PUT", &format!("{app}/envs/dev/artifacts"), &jar).await;
    let uploaded: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(code, 201, "{uploaded}");
    let config = json!({"env": {"LOG_INTERVAL_MS": "300"}, "resources": {"memory_mb": 256, "cpu_millis": 500}});
    let (code, dep) = json_call(
        addr,
        "POST",
        &format!("{app}/envs/dev/deployments"),
        json!({"artifact": uploaded["sha256"], "config": config}),
    )
    .await;
    assert_eq!(code, 202, "{dep}");
    let dev = wait_for_status(addr, &format!("{app}/envs/dev"), "RUNNING", patience).await;
    let image: cameleer_runtime::ImageRef = dev["deployment"]["image"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(image.registry(), Some(registry.host().as_str()), "{image}");
    let digest = *image.digest().expect("pinned");
    let client = RegistryClient::new(registry.client_config().unwrap()).unwrap();
    let repo = format!("cameleer/{tenant}/orders");
    assert_eq!(
        client.manifest_digest(&repo, "v1").await.unwrap(),
        Some(digest),
        "the upload ended as a pushed image"
    );
    let (_, logs) = http(addr, "GET", &format!("{app}/envs/dev/logs"), b"").await;
    let logs = String::from_utf8(logs).unwrap();
    assert!(logs.contains(AGENT_LINE_PREFIX), "{logs}");
    assert!(logs.contains(APP_STARTED_LINE), "{logs}");

    // Promotion: the same digest, nothing new on the registry.
    let blobs_before = registry.stored_blobs();
    let (code, promoted) = json_call(
        addr,
        "POST",
        &format!("{app}/promote"),
        json!({"from": "dev", "to": "staging"}),
    )
    .await;
    assert_eq!(code, 202, "{promoted}");
    let staging = wait_for_status(addr, &format!("{app}/envs/staging"), "RUNNING", patience).await;
    assert_eq!(staging["deployment"]["image"], dev["deployment"]["image"]);
    assert_eq!(
        registry.stored_blobs(),
        blobs_before,
        "promotion never rebuilds"
    );

    drop(server);
    support::server::clean_up(&docker, &tenant, guard).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_versions_logs_stay_searchable() {
    let (docker, tenant, guard) = support::server::isolated_tenant("e2e").await;
    let data = tempfile::tempdir().unwrap();
    let jar = std::fs::read(app_jar(FixtureApp::Logging).unwrap()).unwrap();
    let patience = Duration::from_secs(240);
    let server = Server::start(data.path());
    let addr = &server.endpoint();
    let app = format!("/api/v1/tenants/{tenant}/apps/orders");
    let (code, body) = http(addr, "PUT", &format!("{app}/envs/dev/artifacts"), &jar).await;
    assert_eq!(code, 201);
    let uploaded: Value = serde_json::from_slice(&body).unwrap();
    let deploy = json!({
        "artifact": uploaded["sha256"],
        "config": {"env": {"LOG_INTERVAL_MS": "200"}, "resources": {"memory_mb": 256, "cpu_millis": 500}},
    });
    let (code, _) = json_call(
        addr,
        "POST",
        &format!("{app}/envs/dev/deployments"),
        deploy.clone(),
    )
    .await;
    assert_eq!(code, 202);
    let v1 = wait_for_status(addr, &format!("{app}/envs/dev"), "RUNNING", patience).await;
    let v1_id = v1["deployment"]["id"].as_str().unwrap().to_owned();
    // The forwarder stores v1's lines while it runs.
    let search = format!("{app}/envs/dev/logs/search");
    let v1_page = poll(
        addr,
        &format!("{search}?version=1&limit=1000"),
        patience,
        |page| page["lines"].as_array().is_some_and(|l| l.len() >= 3),
    )
    .await;
    // Stored with the instance that wrote them (one replica: instance 0).
    let stored = v1_page["lines"].as_array().unwrap();
    assert!(!stored.is_empty());
    assert!(stored.iter().all(|l| l["instance"] == 0), "{v1_page}");

    // v2 replaces it: the engine removes v1's container.
    let (code, _) = json_call(addr, "POST", &format!("{app}/envs/dev/deployments"), deploy).await;
    assert_eq!(code, 202);
    poll(addr, &format!("{app}/envs/dev"), patience, |s| {
        s["deployment"]["version"] == 2 && s["status"] == "RUNNING"
    })
    .await;
    poll(
        addr,
        &format!("{search}?version=2&limit=5"),
        patience,
        |page| page["lines"].as_array().is_some_and(|l| !l.is_empty()),
    )
    .await;
    let start = Instant::now();
    while count_containers(&docker, &tenant).await > 1 {
        assert!(
            start.elapsed() < patience,
            "v1's container is never removed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // v1's lines are still there, searchable by text and paged.
    let started = format!(
        "{search}?version=1&q={}",
        APP_STARTED_LINE.replace(' ', "%20")
    );
    let (code, page) = json_call(addr, "GET", &started, Value::Null).await;
    assert_eq!(code, 200, "{page}");
    let lines = page["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{page}");
    assert_eq!(lines[0]["line"], APP_STARTED_LINE);
    assert_eq!(lines[0]["deployment"], v1_id.as_str());
    let (_, first) = json_call(
        addr,
        "GET",
        &format!("{search}?version=1&limit=2&order=oldest"),
        Value::Null,
    )
    .await;
    assert_eq!(first["lines"].as_array().unwrap().len(), 2, "{first}");
    let cursor = first["next"].as_str().expect("more than one page");
    let (_, second) = json_call(
        addr,
        "GET",
        &format!("{search}?version=1&limit=2&order=oldest&cursor={cursor}"),
        Value::Null,
    )
    .await;
    assert_ne!(second["lines"][0], first["lines"][0]);
    let (code, bad) = json_call(addr, "GET", &format!("{search}?cursor=nope"), Value::Null).await;
    assert_eq!(
        (code, bad["error"]["code"].as_str()),
        (400, Some("invalid_cursor"))
    );

    // The logs route serves the history of both versions from the store.
    let (code, logs) = http(addr, "GET", &format!("{app}/envs/dev/logs"), b"").await;
    assert_eq!(code, 200);
    let texts: Vec<String> = String::from_utf8(logs)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["line"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let started_lines = texts
        .iter()
        .filter(|t| t.as_str() == APP_STARTED_LINE)
        .count();
    assert_eq!(
        started_lines, 2,
        "v1's and v2's start, once each: {texts:?}"
    );

    let (code, stats) = json_call(addr, "GET", "/api/v1/log-forwarder", Value::Null).await;
    assert_eq!(code, 200);
    assert_eq!(stats["store"], "sqlite");
    assert_eq!(stats["lines_lost"], 0, "{stats}");
    assert!(stats["lines_stored"].as_u64().unwrap() > 3, "{stats}");
    drop(server);
    support::server::clean_up(&docker, &tenant, guard).await;
}
