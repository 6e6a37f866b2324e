//! End to end on the real Docker engine: SIGTERM to the server binary.
//!
//! An app RUNNING, a log follow open and a second deploy just accepted;
//! then `kill -TERM`. The server must exit 0 within its grace period (the
//! follow ends with a last `shutting_down` line instead of holding the
//! shutdown forever), the app's container must still run, and a server
//! started again on the same data dir must adopt it (the same container,
//! RUNNING) and record the deploy it cut short as FAILED with the typed
//! reason `interrupted`.

mod support;

use std::time::{Duration, Instant};

use cameleer_build::java::fixtures::{FixtureApp, app_jar};
use cameleer_docker_testing::containers_labelled;
use cameleer_runtime_docker::labels;
use serde_json::{Value, json};
use support::server::{Server, json_call, poll, read_response, send, send_head};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The grace period the server is started with.
const GRACE: Duration = Duration::from_secs(20);

/// The ids of the tenant's containers that run now.
async fn running_containers(docker: &bollard::Docker, tenant: &str) -> Vec<String> {
    let mut running = Vec::new();
    for id in containers_labelled(docker, labels::TENANT, tenant)
        .await
        .unwrap()
    {
        let inspect = docker.inspect_container(&id, None).await.unwrap();
        if inspect.state.and_then(|s| s.running) == Some(true) {
            running.push(id);
        }
    }
    running
}

/// The code of the reason of a deployment's last status change.
fn last_reason(deployment: &Value) -> &Value {
    let history = deployment["history"].as_array().expect("a history");
    assert!(!history.is_empty(), "{deployment}");
    &history[history.len() - 1]["reason"]["code"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_keeps_the_apps_and_the_next_start_adopts_them() {
    let (docker, tenant, guard) = support::server::isolated_tenant("term").await;
    let data = tempfile::tempdir().unwrap();
    let jar = std::fs::read(app_jar(FixtureApp::Logging).unwrap()).unwrap();
    let patience = Duration::from_secs(240);
    let grace = GRACE.as_secs().to_string();
    let args = ["--shutdown-grace-secs", grace.as_str()];

    let mut server = Server::start_with(data.path(), &args, &[]);
    let addr = &server.endpoint();
    let app = format!("/api/v1/tenants/{tenant}/apps/orders");
    let env = format!("{app}/envs/dev");
    let upload = send(addr, "PUT", &format!("{env}/artifacts"), &jar).await;
    let (code, body) = read_response(upload).await;
    let uploaded: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(code, 201, "{uploaded}");
    let deploy = |interval: &str| {
        json!({
            "artifact": uploaded["sha256"],
            "config": {
                "env": {"LOG_INTERVAL_MS": interval},
                "resources": {"memory_mb": 256, "cpu_millis": 500},
            },
        })
    };
    let (code, first) = json_call(addr, "POST", &format!("{env}/deployments"), deploy("300")).await;
    assert_eq!(code, 202, "{first}");
    poll(addr, &env, patience, |v| {
        v["deployment"]["status"] == "RUNNING"
    })
    .await;
    let serving = running_containers(&docker, &tenant).await;
    assert_eq!(serving.len(), 1, "{serving:?}");

    // A request that never ends by itself: a follow of the logs, its
    // first lines read before the shutdown.
    let mut follow = send(addr, "GET", &format!("{env}/logs?follow=true"), b"").await;
    let mut first_bytes = vec![0; 64];
    let n = tokio::time::timeout(Duration::from_secs(30), follow.read(&mut first_bytes))
        .await
        .expect("the follow answers")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&first_bytes[..n]).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&first_bytes[..n])
    );
    let follow = tokio::spawn(async move {
        let mut rest = Vec::new();
        follow.read_to_end(&mut rest).await.unwrap();
        rest
    });

    // A second deploy, accepted and building when the signal comes.
    let (code, second) =
        json_call(addr, "POST", &format!("{env}/deployments"), deploy("500")).await;
    assert_eq!(code, 202, "{second}");
    assert_eq!(second["status"], "BUILDING");

    let (status, took) = server
        .terminate(GRACE + Duration::from_secs(15))
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(took < GRACE, "took {took:?}: the follow held the shutdown");
    let rest = tokio::time::timeout(Duration::from_secs(5), follow)
        .await
        .expect("the follow ended")
        .unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains(r#"{"error":{"code":"shutting_down""#),
        "the follow says why it ended: {rest}"
    );
    assert_eq!(
        running_containers(&docker, &tenant).await,
        serving,
        "the app was not stopped"
    );

    // Started again on the same data: the app adopted, the deploy cut
    // short recorded as interrupted.
    let server = Server::start_with(data.path(), &args, &[]);
    let addr = &server.endpoint();
    let view = poll(addr, &env, patience, |v| v["status"] == "RUNNING").await;
    assert_eq!(view["runtime"]["deployment"], first["id"], "{view}");
    let (code, history) = json_call(addr, "GET", &format!("{env}/deployments"), Value::Null).await;
    assert_eq!(code, 200, "{history}");
    let deployments = history.as_array().expect("a list");
    assert_eq!(deployments.len(), 2, "{history}");
    let (newest, oldest) = (&deployments[0], &deployments[1]);
    assert_eq!(newest["id"], second["id"], "{history}");
    assert_eq!(newest["status"], "FAILED", "{history}");
    assert_eq!(last_reason(newest), "interrupted", "{history}");
    assert_eq!(oldest["id"], first["id"], "{history}");
    assert_eq!(oldest["status"], "RUNNING", "{history}");
    assert_eq!(
        running_containers(&docker, &tenant).await,
        serving,
        "adopted: the same container, not a new one"
    );

    drop(server);
    support::server::clean_up(&docker, &tenant, guard).await;
}

#[test]
fn with_log_format_json_every_log_line_is_an_object_and_an_idle_server_exits_at_once() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};

    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("CAMELEER_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening on http://127.0.0.1:"), "{line}");
    let start = Instant::now();
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(start.elapsed() < GRACE, "idle, it waits for nothing");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 2, "{stderr}");
    for l in &lines {
        assert!(l["level"].is_string() && l["timestamp"].is_string(), "{l}");
    }
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert!(messages.contains(&"recovered state"), "{messages:?}");
    assert_eq!(messages.last(), Some(&"shut down"), "{messages:?}");
    assert!(
        !stderr.contains(
            std::fs::read_to_string(data.path().join("admin-token"))
                .unwrap()
                .trim()
        ),
        "the admin token is never logged"
    );
}

/// Files under `dir`, recursively (0 if it does not exist).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_in_flight_finishes_within_the_grace_and_one_past_it_leaves_nothing() {
    let tenant = format!("term-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let data = tempfile::tempdir().unwrap();
    let short = Duration::from_secs(3);
    let grace = short.as_secs().to_string();
    let args = ["--shutdown-grace-secs", grace.as_str()];
    let logging = std::fs::read(app_jar(FixtureApp::Logging).unwrap()).unwrap();
    let crashing = std::fs::read(app_jar(FixtureApp::Crashing).unwrap()).unwrap();
    let half = |jar: &[u8]| jar.len() / 2;

    let mut server = Server::start_with(data.path(), &args, &[]);
    let addr = &server.endpoint();
    let path = |app: &str| format!("/api/v1/tenants/{tenant}/apps/{app}/envs/dev/artifacts");
    // Two uploads, half sent each: the head says how much is to come.
    let mut finishing = send_head(addr, "PUT", &path("orders"), logging.len()).await;
    finishing
        .write_all(&logging[..half(&logging)])
        .await
        .unwrap();
    let mut stalled = send_head(addr, "PUT", &path("billing"), crashing.len()).await;
    stalled
        .write_all(&crashing[..half(&crashing)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let term = tokio::task::spawn_blocking(move || {
        let exited = server.terminate(short + Duration::from_secs(15));
        (server, exited)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    finishing
        .write_all(&logging[half(&logging)..])
        .await
        .unwrap();
    let (code, body) = read_response(finishing).await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let uploaded: Value = serde_json::from_slice(&body).unwrap();

    let (server, exited) = term.await.unwrap();
    let (status, took) = exited.expect("the server exits after its grace");
    assert!(status.success(), "{status:?}");
    assert!(
        took >= short,
        "took {took:?}: the stalled upload got its grace"
    );
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        !rest.contains(" 201 "),
        "the cut upload was not stored: {rest}"
    );
    drop(server);

    // Started again: the finished upload stored, nothing of the cut one.
    let server = Server::start_with(data.path(), &args, &[]);
    let stored = files_under(&data.path().join("artifacts"));
    let sha = uploaded["sha256"].as_str().unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].ends_with(sha), "{stored:?}");
    drop(server);
}
