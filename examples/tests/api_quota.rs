//! Quotas, retention and uploads that go wrong, through the HTTP API over
//! the fake backend and the real SQLite and file stores: a full disk (a
//! real tmpfs), a body cut off mid-stream (a real TCP connection), the same
//! JAR uploaded many times at once.

mod support;

use std::path::{Path, PathBuf};

use cameleer_runtime::ArtifactStore;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode};
use cameleer_build::testing::jars::{self, Rng};
use cameleer_build::testing::{Entry, ZipBuilder};
use cameleer_examples::storage::{FsArtifactStore, SqliteDeploymentStore, SqliteQuotaStore};
use cameleer_runtime::testkit::{FakeImageBuilder, FakeOrchestrator};
use cameleer_runtime::{Platform, PlatformOptions, RetentionOptions, TenantId};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;

const UPLOAD: &str = "/api/v1/tenants/acme/apps/orders/envs/dev/artifacts";

struct Api {
    router: Router,
    platform: Platform,
    store: Arc<FsArtifactStore>,
    artifacts: PathBuf,
    _dir: tempfile::TempDir,
}

/// The API with its artifacts under `artifacts` (default: in the temp dir).
async fn api_at(artifacts: Option<PathBuf>, keep_versions: usize) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite");
    let artifacts = artifacts.unwrap_or_else(|| dir.path().join("artifacts"));
    let options = PlatformOptions {
        retention: RetentionOptions {
            keep_versions,
            artifact_grace: Duration::ZERO,
            sweep_interval: None,
        },
        ..PlatformOptions::default()
    };
    let store = Arc::new(FsArtifactStore::open(&artifacts, 1 << 30).await.unwrap());
    let platform = Platform::builder()
        .orchestrator(Arc::new(FakeOrchestrator::new()))
        .image_builder(Arc::new(FakeImageBuilder::new()))
        .deployment_store(Arc::new(SqliteDeploymentStore::open(&db).unwrap()))
        .artifact_store(store.clone())
        .quota_store(Arc::new(SqliteQuotaStore::open(&db).unwrap()))
        .options(options)
        .build();
    platform.start().await.unwrap();
    Api {
        router: support::api::authed(platform.clone()).router,
        platform,
        store,
        artifacts,
        _dir: dir,
    }
}

impl Api {
    async fn call(&self, method: Method, uri: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(body.into())
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = to_bytes(resp.into_body(), 16 << 20).await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn deploy(&self, app: &str, sha256: &Value, config: Value) -> (StatusCode, Value) {
        let body = json!({"artifact": sha256, "config": config});
        self.call(
            Method::POST,
            &format!("/api/v1/tenants/acme/apps/{app}/envs/dev/deployments"),
            body.to_string(),
        )
        .await
    }

    async fn settle(&self, deployment: &Value) {
        let id = deployment["id"].as_str().unwrap().parse().unwrap();
        self.platform
            .wait_settled(&id, Duration::from_secs(30))
            .await
            .unwrap();
    }

    /// Artifacts stored where readers look.
    async fn stored(&self) -> usize {
        self.store.list().await.unwrap().len()
    }

    /// Temporary files of uploads under way (or left behind).
    fn temp_files(&self) -> usize {
        std::fs::read_dir(self.artifacts.join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

/// An executable JAR of about `len` bytes: one big stored class.
fn big_jar(main: &str, len: usize) -> Vec<u8> {
    let mut zip = ZipBuilder::new();
    zip.add(Entry::deflated(
        "META-INF/MANIFEST.MF",
        jars::manifest(&[("Main-Class", main)]),
    ));
    let class = jars::class_file(61, len, &mut Rng::new(7));
    zip.add(Entry::stored(
        format!("{}.class", main.replace('.', "/")),
        class,
    ));
    zip.finish()
}

#[tokio::test]
async fn quota_routes_set_and_report_and_deploys_over_quota_are_403_with_the_quotas_code() {
    let api = api_at(None, 10).await;
    let (status, body) = api
        .call(Method::GET, "/api/v1/tenants/acme/quota", Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["quota"], json!({}));
    assert_eq!(body["usage"]["apps"], 0);

    let (status, body) = api
        .call(
            Method::PUT,
            "/api/v1/tenants/acme/quota",
            json!({"apps": 1, "memory_mb": 512}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["quota"], json!({"apps": 1, "memory_mb": 512}));

    let jar = jars::plain_jar("com.acme.Main");
    let (status, up) = api.call(Method::PUT, UPLOAD, jar.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{up}");
    let (status, d) = api
        .deploy(
            "orders",
            &up["sha256"],
            json!({"resources": {"memory_mb": 256}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{d}");
    assert_eq!(d["config"]["resources"]["cpu_millis"], 1000, "the default");
    api.settle(&d).await;

    for (app, memory_mb, want) in [
        ("billing", 128, "apps_quota_exceeded"),
        ("orders", 1024, "memory_quota_exceeded"),
    ] {
        let config = json!({"resources": {"memory_mb": memory_mb}});
        let (status, body) = api.deploy(app, &up["sha256"], config).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, want),
            "{body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("quota of tenant acme"), "{body}");
    }
    let (_, body) = api
        .call(Method::GET, "/api/v1/tenants/acme/quota", Body::empty())
        .await;
    assert_eq!(
        body["usage"],
        json!({"artifact_bytes": jar.len(), "apps": 1, "instances": 1, "memory_mb": 256, "cpu_millis": 1000})
    );
    // History shows the one deployment: the refused ones created nothing.
    let (_, history) = api
        .call(
            Method::GET,
            "/api/v1/tenants/acme/apps/orders/envs/dev/deployments",
            Body::empty(),
        )
        .await;
    assert_eq!(history.as_array().unwrap().len(), 1);

    for (body, want) in [
        ("{\"apps\": -1}", StatusCode::UNPROCESSABLE_ENTITY),
        ("{\"app\": 1}", StatusCode::UNPROCESSABLE_ENTITY),
        ("not json", StatusCode::BAD_REQUEST),
    ] {
        let (status, resp) = api
            .call(Method::PUT, "/api/v1/tenants/acme/quota", body)
            .await;
        assert_eq!(status, want, "{body}: {resp}");
    }
    let (status, body) = api
        .call(
            Method::GET,
            "/api/v1/tenants/Not_A_Tenant/quota",
            Body::empty(),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_id")
    );
}

#[tokio::test]
async fn the_retention_dry_run_lists_what_a_sweep_removes() {
    let api = api_at(None, 2).await;
    let mut versions = Vec::new();
    for v in 1..=4 {
        let (_, up) = api
            .call(
                Method::PUT,
                UPLOAD,
                jars::plain_jar(&format!("com.acme.Main{v}")),
            )
            .await;
        let (status, d) = api.deploy("orders", &up["sha256"], json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{d}");
        api.settle(&d).await;
        versions.push(up["sha256"].clone());
    }
    let (status, plan) = api
        .call(
            Method::GET,
            "/api/v1/admin/retention?dry_run=true",
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["keep_versions"], 2);
    let used: Vec<u64> = plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["used_by"][0]["version"].as_u64().unwrap())
        .collect();
    assert_eq!(used, [1, 2]);
    let artifacts: Vec<&Value> = plan["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["sha256"])
        .collect();
    assert_eq!(artifacts.len(), 2);
    assert!(artifacts.contains(&&versions[0]) && artifacts.contains(&&versions[1]));
    assert_eq!(api.stored().await, 4, "a dry run removes nothing");

    let (status, body) = api
        .call(
            Method::GET,
            "/api/v1/admin/retention?dry_run=false",
            Body::empty(),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_query")
    );

    let (status, report) = api
        .call(Method::POST, "/api/v1/admin/retention/sweep", Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["removed_images"].as_array().unwrap().len(), 2);
    assert_eq!(report["removed_artifacts"].as_array().unwrap().len(), 2);
    assert_eq!(api.stored().await, 2);
    // The tenant is no longer charged for what was removed.
    let usage = api
        .platform
        .quota_usage(&"acme".parse::<TenantId>().unwrap())
        .await
        .unwrap();
    let kept: u64 = [3, 4]
        .iter()
        .map(|v| jars::plain_jar(&format!("com.acme.Main{v}")).len() as u64)
        .sum();
    assert_eq!(usage.artifact_bytes, kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_jar_uploaded_at_once_is_stored_and_charged_once() {
    let api = api_at(None, 10).await;
    let jar = big_jar("com.acme.Main", 300_000);
    let uploads: Vec<_> = (0..6)
        .map(|_| {
            let (router, jar) = (api.router.clone(), jar.clone());
            tokio::spawn(async move {
                let req = Request::put(UPLOAD).body(Body::from(jar)).unwrap();
                router.oneshot(req).await.unwrap().status()
            })
        })
        .collect();
    for u in uploads {
        assert_eq!(u.await.unwrap(), StatusCode::CREATED);
    }
    assert_eq!(api.stored().await, 1);
    assert_eq!(api.temp_files(), 0);
    let usage = api
        .platform
        .quota_usage(&"acme".parse::<TenantId>().unwrap())
        .await
        .unwrap();
    assert_eq!(usage.artifact_bytes, jar.len() as u64);
}

#[tokio::test]
async fn a_body_cut_off_mid_stream_leaves_no_file_and_no_charge() {
    let api = api_at(None, 10).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, api.router.clone()).into_future());

    let jar = big_jar("com.acme.Main", 2 << 20);
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {UPLOAD} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
        jar.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&jar[..jar.len() / 2]).await.unwrap();
    conn.flush().await.unwrap();
    // The store has started writing: the upload is under way.
    let mut started = false;
    for _ in 0..1000 {
        if api.temp_files() > 0 {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(started, "the upload never reached the store");
    drop(conn);
    let mut cleaned = false;
    for _ in 0..1000 {
        if api.temp_files() == 0 {
            cleaned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cleaned, "the temporary file was left behind");
    assert_eq!(api.stored().await, 0);
    let tenant: TenantId = "acme".parse().unwrap();
    assert_eq!(
        api.platform
            .quota_usage(&tenant)
            .await
            .unwrap()
            .artifact_bytes,
        0
    );
    // The same JAR, whole, is then accepted.
    let (status, body) = api.call(Method::PUT, UPLOAD, jar).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    server.abort();
}

/// A tmpfs of `size` mounted on a new directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` when this process may not mount (not root): the caller says
    /// so and skips.
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(Self { dir }),
            _ => None,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn a_full_disk_is_507_insufficient_storage_and_leaves_nothing() {
    let Some(disk) = Tmpfs::mount("1m") else {
        assert!(!is_root(), "root could not mount a tmpfs");
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let api = api_at(Some(disk.path().join("artifacts")), 10).await;
    let (status, body) = api
        .call(Method::PUT, UPLOAD, big_jar("com.acme.Big", 2 << 20))
        .await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert_eq!(code(&body), "insufficient_storage");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("artifact store"),
        "{body}"
    );
    assert_eq!(api.temp_files(), 0);
    assert_eq!(api.stored().await, 0);
    let tenant: TenantId = "acme".parse().unwrap();
    assert_eq!(
        api.platform
            .quota_usage(&tenant)
            .await
            .unwrap()
            .artifact_bytes,
        0
    );
    // The disk is usable again: a JAR that fits is stored.
    let (status, body) = api
        .call(Method::PUT, UPLOAD, jars::plain_jar("com.acme.Small"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(api.stored().await, 1);
}
