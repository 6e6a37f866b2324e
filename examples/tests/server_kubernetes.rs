//! End to end: the server binary with `--backend kubernetes`, as an
//! operator starts it, against the scripted in-memory API server served on
//! loopback (found through `KUBECONFIG`, as a real cluster would be) and a
//! real registry on loopback. The test plays the kubelet.
//!
//! Upload a JAR: it is built without any engine and pushed to the registry
//! (the default image builder); deploy: the namespace and a Deployment
//! pinned to the pushed digest are applied; the pods get ready: RUNNING;
//! the pods log: the logs route serves the line; stop: replicas 0, STOPPED.
#![cfg(feature = "kubernetes")]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use cameleer_build::java::fixtures::{FixtureApp, app_jar};
use cameleer_registry::RegistryClient;
use cameleer_registry::testing::TestRegistry;
use cameleer_runtime_k8s::namespace::namespace_name;
use cameleer_runtime_k8s::testing::{FakeCluster, PodScript};
use serde_json::{Value, json};
use support::server::Server;

/// The server in Kubernetes mode, and an HTTP client for it.
struct Client {
    _server: Server,
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    fn start(data_dir: &Path, kubeconfig: &Path, registry: &str) -> Client {
        let kubeconfig = kubeconfig.to_str().unwrap();
        let server = Server::start_with(
            data_dir,
            &["--backend", "kubernetes", "--registry", registry],
            &[("KUBECONFIG", kubeconfig)],
        );
        Client {
            base: format!("http://{}", server.addr),
            token: server.token.clone(),
            _server: server,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .bearer_auth(&self.token)
            .body(body);
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let payload = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let (status, bytes) = self.call(method, path, payload).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// Waits for the env's status to read `want`, playing the kubelet meanwhile.
async fn wait_for(server: &Client, cluster: &FakeCluster, path: &str, want: &str) -> Value {
    let start = Instant::now();
    loop {
        cluster.tick();
        let (code, view) = server.json(reqwest::Method::GET, path, Value::Null).await;
        if code == 200 && view["status"] == want && view["deployment"]["status"] == want {
            return view;
        }
        assert!(
            view["deployment"]["status"] != "FAILED" || want == "FAILED",
            "deployment failed: {view}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "not {want}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_mode_pushes_with_the_registry_builder_and_runs_the_digest() {
    // The test's own HTTP client speaks plain HTTP only, but reqwest's
    // rustls build wants a crypto provider chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = TestRegistry::start().unwrap();
    let cluster = FakeCluster::new();
    let tenant = format!("k8s-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let repository = format!("cameleer/{tenant}/orders");
    cluster.script_image(&repository, PodScript::Ready);
    let served = cluster.serve().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    served.write_kubeconfig(&kubeconfig).unwrap();
    let data = dir.path().join("data");
    let server = Client::start(&data, &kubeconfig, &registry.url());

    let jar = std::fs::read(app_jar(FixtureApp::Logging).unwrap()).unwrap();
    let app = format!("/api/v1/tenants/{tenant}/apps/orders");
    let (code, body) = server
        .call(
            reqwest::Method::PUT,
            &format!("{app}/envs/dev/artifacts"),
            jar,
        )
        .await;
    let uploaded: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(code, 201, "{uploaded}");
    let (code, dep) = server
        .json(
            reqwest::Method::POST,
            &format!("{app}/envs/dev/deployments"),
            json!({"artifact": uploaded["sha256"], "config": {"resources": {"memory_mb": 256, "cpu_millis": 500}}}),
        )
        .await;
    assert_eq!(code, 202, "{dep}");
    let dev = wait_for(&server, &cluster, &format!("{app}/envs/dev"), "RUNNING").await;

    // The image: pushed to the registry by the daemonless builder, pinned.
    let image: cameleer_runtime::ImageRef = dev["deployment"]["image"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(image.registry(), Some(registry.host().as_str()), "{image}");
    let digest = *image.digest().expect("pinned by digest");
    let client = RegistryClient::new(registry.client_config().unwrap()).unwrap();
    assert_eq!(
        client.manifest_digest(&repository, "v1").await.unwrap(),
        Some(digest),
        "the upload ended as a pushed image"
    );

    // What the cluster was told: the tenant's namespace under the
    // restricted profile, a Deployment running exactly that digest.
    let ns = namespace_name(&tenant.parse().unwrap(), &"dev".parse().unwrap());
    let namespace = cluster
        .object("namespaces", "", &ns)
        .expect("the namespace was applied");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let deployment = cluster
        .object("deployments.apps", &ns, "orders")
        .expect("the Deployment was applied");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{}/{repository}@sha256:{digest}", registry.host()),
        "pinned by digest alone"
    );

    // The pods' lines reach the logs route.
    let pods = cluster.pods(&ns);
    assert!(!pods.is_empty(), "the Deployment has pods");
    cluster.log_ready(&repository, "[app] hello from the cluster");
    let (code, logs) = server
        .call(
            reqwest::Method::GET,
            &format!("{app}/envs/dev/logs"),
            Vec::new(),
        )
        .await;
    assert_eq!(code, 200);
    let logs = String::from_utf8(logs).unwrap();
    assert!(logs.contains("hello from the cluster"), "{logs}");

    // Stop: scaled to zero, STOPPED.
    let (code, stopped) = server
        .json(
            reqwest::Method::POST,
            &format!("{app}/envs/dev/stop"),
            Value::Null,
        )
        .await;
    assert!(code == 200 || code == 202, "{code} {stopped}");
    wait_for(&server, &cluster, &format!("{app}/envs/dev"), "STOPPED").await;
    let deployment = cluster.object("deployments.apps", &ns, "orders").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 0);
}
