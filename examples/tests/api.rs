//! The HTTP API against the fake backend and the real SQLite/file stores:
//! every bad input gets a clear 4xx with a stable code, and nothing is
//! stored. (The end-to-end test against Docker is `tests/server_e2e.rs`.)

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode};
use cameleer_build::testing::{Entry, ZipBuilder, jars};
use cameleer_examples::storage::{FsArtifactStore, SqliteDeploymentStore};
use cameleer_runtime::testkit::{FakeImageBuilder, FakeOrchestrator};
use cameleer_runtime::{DeploymentStore, Platform, PlatformOptions, Sha256Digest};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Api {
    router: Router,
    platform: Platform,
    store: Arc<SqliteDeploymentStore>,
    dir: tempfile::TempDir,
}

async fn api_with(options: PlatformOptions) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteDeploymentStore::open(&dir.path().join("db.sqlite")).unwrap());
    let artifacts = FsArtifactStore::open(dir.path().join("artifacts"), 1 << 30)
        .await
        .unwrap();
    let platform = Platform::builder()
        .orchestrator(Arc::new(FakeOrchestrator::new()))
        .image_builder(Arc::new(FakeImageBuilder::new()))
        .deployment_store(store.clone())
        .artifact_store(Arc::new(artifacts))
        .options(options)
        .build();
    platform.start().await.unwrap();
    Api {
        router: support::api::authed(platform.clone()).router,
        platform,
        store,
        dir,
    }
}

async fn api() -> Api {
    api_with(PlatformOptions::default()).await
}

impl Api {
    async fn call(&self, method: Method, uri: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        self.call_with(Request::builder().method(method).uri(uri), body)
            .await
    }

    async fn call_with(
        &self,
        req: axum::http::request::Builder,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = to_bytes(resp.into_body(), 16 << 20).await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    fn stored_artifacts(&self) -> usize {
        walk(&self.dir.path().join("artifacts/sha256"))
    }

    async fn upload(&self, jar: Vec<u8>) -> Value {
        let (status, body) = self
            .call(
                Method::PUT,
                "/api/v1/tenants/acme/apps/orders/envs/dev/artifacts",
                jar,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }
}

fn walk(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

fn zip_slip_jar() -> Vec<u8> {
    let mut zip = ZipBuilder::new();
    zip.add(Entry::deflated(
        "META-INF/MANIFEST.MF",
        jars::manifest(&[("Main-Class", "a.Main")]),
    ));
    zip.add(Entry::deflated(
        "../../etc/cron.d/evil",
        b"* * * * * root sh",
    ));
    zip.finish()
}

#[tokio::test]
async fn upload_returns_what_validation_found() {
    let api = api().await;
    let jar = jars::plain_jar("com.acme.Main");
    let body = api.upload(jar.clone()).await;
    assert_eq!(body["sha256"], Sha256Digest::of(&jar).to_string());
    assert_eq!(body["size"], jar.len());
    assert_eq!(body["main_class"], "com.acme.Main");
    assert_eq!(body["runtime"], "plain");
    assert_eq!(api.stored_artifacts(), 1);
}

#[tokio::test]
async fn bad_uploads_are_4xx_and_store_nothing() {
    let api = api_with({
        let mut o = PlatformOptions::default();
        o.validation.limits.max_upload_bytes = 64 * 1024;
        o
    })
    .await;
    let jar = jars::plain_jar("com.acme.Main");
    let uri = "/api/v1/tenants/acme/apps/orders/envs/dev/artifacts";

    // A zip-slip entry: 422 naming the entry.
    let (status, body) = api.call(Method::PUT, uri, zip_slip_jar()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(code(&body), "invalid_entry_name");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("../../etc/cron.d/evil"),
        "{body}"
    );

    // A wrong checksum: 422, and a malformed one: 400.
    let req = Request::builder()
        .method(Method::PUT)
        .uri(uri)
        .header("X-Checksum-Sha256", Sha256Digest::of(b"other").to_string());
    let (status, body) = api.call_with(req, jar.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(code(&body), "checksum_mismatch");
    let req = Request::builder()
        .method(Method::PUT)
        .uri(uri)
        .header("X-Checksum-Sha256", "xyz");
    let (status, body) = api.call_with(req, jar.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(code(&body), "invalid_digest");

    // Not a JAR at all.
    let (status, body) = api.call(Method::PUT, uri, b"hello, world".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(code(&body), "not_a_zip");

    // Over the limit: declared, and streamed without a length.
    let big = vec![0u8; 100 * 1024];
    let (status, body) = api.call(Method::PUT, uri, big.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(code(&body), "artifact_too_large");
    let chunks = futures::stream::iter(
        big.chunks(8192)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let (status, body) = api.call(Method::PUT, uri, Body::from_stream(chunks)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    // Invalid ids: 400 naming the id.
    let (status, body) = api
        .call(
            Method::PUT,
            "/api/v1/tenants/ACME/apps/orders/envs/dev/artifacts",
            jar.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(code(&body), "invalid_id");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tenant")
    );

    assert_eq!(api.stored_artifacts(), 0);
}

#[tokio::test]
async fn bad_deploy_requests_are_4xx_and_store_nothing() {
    let api = api().await;
    let sha = api.upload(jars::plain_jar("com.acme.Main")).await["sha256"].clone();
    let uri = "/api/v1/tenants/acme/apps/orders/envs/dev/deployments";
    let cases: Vec<(Vec<u8>, StatusCode, &str)> =
        vec![
        (b"{not json".to_vec(), StatusCode::BAD_REQUEST, "malformed_json"),
        (
            json!({"artifact": "nothex"}).to_string().into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"artifact": Sha256Digest::of(b"unknown").to_string()}).to_string().into(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"artifact": sha, "config": {"resources": {"memory_mb": 16, "cpu_millis": 500}}})
                .to_string()
                .into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
        ),
        (
            json!({"artifact": sha, "config": {"jvm_options": ["-javaagent:/x.jar"]}})
                .to_string()
                .into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
        ),
        (
            json!({"artifact": sha, "config": {"memory": 5}}).to_string().into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
    ];
    for (body, want_status, want_code) in cases {
        let (status, resp) = api.call(Method::POST, uri, body.clone()).await;
        assert_eq!(
            status,
            want_status,
            "{} -> {resp}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(code(&resp), want_code, "{resp}");
    }
    let (status, resp) = api
        .call(
            Method::POST,
            "/api/v1/tenants/acme/apps/Orders!/envs/dev/deployments",
            "{}",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert_eq!(code(&resp), "invalid_id");
    let app = cameleer_runtime::AppRef::parse("acme", "orders", "dev").unwrap();
    assert!(api.store.list(&app).await.unwrap().is_empty());
    let (status, resp) = api
        .call(
            Method::GET,
            "/api/v1/tenants/acme/apps/orders/envs/dev",
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{resp}");
}

#[tokio::test]
async fn deploy_status_history_promote_stop_and_list() {
    let api = api().await;
    let sha = api.upload(jars::plain_jar("com.acme.Main")).await["sha256"].clone();
    let (status, dep) = api
        .call(
            Method::POST,
            "/api/v1/tenants/acme/apps/orders/envs/dev/deployments",
            json!({"artifact": sha, "config": {"resources": {"memory_mb": 256, "cpu_millis": 500}}})
                .to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{dep}");
    assert_eq!(dep["status"], "BUILDING");
    assert_eq!(dep["version"], 1);
    let id = dep["id"].as_str().unwrap().parse().unwrap();
    let done = api
        .platform
        .wait_settled(&id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(done.status.as_str(), "RUNNING");

    let (status, view) = api
        .call(
            Method::GET,
            "/api/v1/tenants/acme/apps/orders/envs/dev",
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["status"], "RUNNING");
    let image = view["deployment"]["image"].clone();
    assert!(image.as_str().unwrap().contains("@sha256:"), "{view}");

    // Promote dev -> staging: the same image, no build.
    let (status, promoted) = api
        .call(
            Method::POST,
            "/api/v1/tenants/acme/apps/orders/promote",
            json!({"from": "dev", "to": "staging", "config": {}}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{promoted}");
    assert_eq!(promoted["image"], image);
    assert_eq!(promoted["source"]["kind"], "promotion");

    // Promoting from an env with nothing running is a conflict.
    let (status, body) = api
        .call(
            Method::POST,
            "/api/v1/tenants/acme/apps/orders/promote",
            json!({"from": "prod", "to": "staging"}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (status, history) = api
        .call(
            Method::GET,
            "/api/v1/tenants/acme/apps/orders/envs/dev/deployments",
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let statuses: Vec<_> = history[0]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["BUILDING", "STARTING", "RUNNING"]);

    let (status, stopped) = api
        .call(
            Method::POST,
            "/api/v1/tenants/acme/apps/orders/envs/dev/stop",
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    assert_eq!(stopped["stopped"][0]["status"], "STOPPED");

    let (status, list) = api
        .call(Method::GET, "/api/v1/tenants/acme/apps", Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK);
    let envs: Vec<_> = list["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["env"].as_str().unwrap().to_owned(), a["status"].clone()))
        .collect();
    assert_eq!(envs.len(), 2, "{list}");
    assert_eq!(envs[0].0, "dev");
    assert_eq!(envs[0].1, "STOPPED");
    assert_eq!(envs[1].0, "staging");
    let (_, other) = api
        .call(Method::GET, "/api/v1/tenants/globex/apps", Body::empty())
        .await;
    assert_eq!(other["apps"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn logs_are_ndjson_and_bad_queries_are_400() {
    let api = api().await;
    let sha = api.upload(jars::plain_jar("com.acme.Main")).await["sha256"].clone();
    let (_, dep) = api
        .call(
            Method::POST,
            "/api/v1/tenants/acme/apps/orders/envs/dev/deployments",
            json!({"artifact": sha}).to_string(),
        )
        .await;
    let id = dep["id"].as_str().unwrap().parse().unwrap();
    api.platform
        .wait_settled(&id, Duration::from_secs(10))
        .await
        .unwrap();
    let (status, body) = api
        .call(
            Method::GET,
            "/api/v1/tenants/acme/apps/orders/envs/dev/logs?since=yesterday",
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(code(&body), "invalid_query");
    let resp = api
        .router
        .clone()
        .oneshot(
            Request::get("/api/v1/tenants/acme/apps/orders/envs/dev/logs?follow=false")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text =
        String::from_utf8(to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(
            v["ts"].is_string() && v["stream"].is_string() && v["line"].is_string(),
            "{v}"
        );
    }
}

#[tokio::test]
async fn events_and_logs_stream_as_server_sent_events() {
    use futures::StreamExt;
    let api = api().await;
    let sha = api.upload(jars::plain_jar("com.acme.Main")).await["sha256"].clone();
    let events = api
        .router
        .clone()
        .oneshot(
            Request::get("/api/v1/tenants/acme/apps/orders/envs/dev/events")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut events = events.into_body().into_data_stream();

    // Another app's deploy must not show up in this app's stream.
    let other = "/api/v1/tenants/acme/apps/billing/envs/dev/deployments";
    let (status, _) = api
        .call(Method::POST, other, json!({"artifact": sha}).to_string())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, dep) = api
        .call(
            Method::POST,
            "/api/v1/tenants/acme/apps/orders/envs/dev/deployments",
            json!({"artifact": sha}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{dep}");

    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = events.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if text.contains("\"status\":\"RUNNING\"") {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no RUNNING event; got {text}"));
    let statuses: Vec<&str> = ["BUILDING", "STARTING", "RUNNING"]
        .into_iter()
        .filter(|s| text.contains(&format!("\"status\":\"{s}\"")))
        .collect();
    assert_eq!(statuses, ["BUILDING", "STARTING", "RUNNING"], "{text}");
    assert!(text.contains("event: status"), "{text}");
    assert!(
        !text.contains("billing"),
        "another app's events leaked: {text}"
    );

    // Logs as SSE when asked for them.
    let logs = api
        .router
        .clone()
        .oneshot(
            Request::get("/api/v1/tenants/acme/apps/orders/envs/dev/logs?follow=false")
                .header("accept", "text/event-stream")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(logs.status(), StatusCode::OK);
    assert_eq!(logs.headers()["content-type"], "text/event-stream");
    let body = to_bytes(logs.into_body(), 1 << 20).await.unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.contains("[app] started"), "{body}");
    for event in body.split("\n\n").filter(|e| !e.trim().is_empty()) {
        assert!(event.starts_with("event: log\ndata: {"), "{event:?}");
    }
}

#[tokio::test]
async fn a_shutting_down_platform_answers_503_shutting_down() {
    let api = api().await;
    let sha = api.upload(jars::plain_jar("com.acme.Main")).await["sha256"].clone();
    api.platform.shutdown().await;
    let (status, body) = api
        .call(
            Method::POST,
            "/api/v1/tenants/acme/apps/orders/envs/dev/deployments",
            json!({"artifact": sha}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(code(&body), "shutting_down");
    assert!(
        api.store
            .active()
            .await
            .unwrap()
            .iter()
            .all(|d| d.app.app.as_str() != "orders"),
        "nothing was created"
    );
}

#[tokio::test]
async fn an_events_client_that_falls_behind_gets_a_lagged_event() {
    let api = api_with(PlatformOptions {
        event_capacity: 2,
        ..PlatformOptions::default()
    })
    .await;
    let sha = api.upload(jars::plain_jar("com.acme.Main")).await["sha256"].clone();
    // Subscribed, but not read while the deploy publishes its events.
    let events = api
        .router
        .clone()
        .oneshot(
            Request::get("/api/v1/tenants/acme/apps/orders/envs/dev/events")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let (_, dep) = api
        .call(
            Method::POST,
            "/api/v1/tenants/acme/apps/orders/envs/dev/deployments",
            json!({"artifact": sha}).to_string(),
        )
        .await;
    let id = dep["id"].as_str().unwrap().parse().unwrap();
    api.platform
        .wait_settled(&id, Duration::from_secs(10))
        .await
        .unwrap();

    use futures::StreamExt;
    let mut body = events.into_body().into_data_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("an event")
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(
        first.starts_with("event: lagged\ndata: {\"type\":\"lagged\",\"missed\":"),
        "{first:?}"
    );
}
