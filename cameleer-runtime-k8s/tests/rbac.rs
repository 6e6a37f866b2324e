//! Every API call the backend makes is covered by the shipped RBAC: a full
//! scenario runs against the in-memory API server, which records each
//! request with the verb and resource RBAC authorizes it as.

use std::time::Duration;

use cameleer_runtime::{
    AppConfig, AppRef, BuildSpec, DeployRequest, DeploymentId, Desired, HealthCheck, ImageBuilder,
    LogOptions, ProgressSink, RuntimeOrchestrator, Sha256Digest, TenantId,
};
use cameleer_runtime_k8s::rbac::{self, Rules};
use cameleer_runtime_k8s::testing::{FakeCluster, PodScript, Recorded};
use cameleer_runtime_k8s::{KubernetesOptions, KubernetesRuntimeOrchestrator};
use futures::StreamExt;

fn request(app: &str, version: u64) -> DeployRequest {
    DeployRequest {
        app: AppRef::parse("acme", app, "dev").unwrap(),
        deployment: DeploymentId::new_random(),
        version,
        image: format!("localhost:5001/{app}@sha256:{}", "ef".repeat(32))
            .parse()
            .unwrap(),
        config: AppConfig {
            health: HealthCheck::TcpPort(8080),
            start_timeout_secs: 5,
            ..AppConfig::default()
        },
    }
}

/// Fails listing every request `rules` do not allow.
pub fn assert_covered(requests: &[Recorded], rules: &[Rules]) {
    let uncovered: Vec<String> = requests
        .iter()
        .filter(|r| {
            let allowed = |verb: &str| {
                rules
                    .iter()
                    .any(|role| role.allows(verb, &r.resource, r.namespace.as_deref()))
            };
            // Server-side apply is a patch, and a create when the object is new.
            !allowed(&r.verb) || (r.verb == "patch" && !allowed("create"))
        })
        .map(|r| format!("{} {} ({} {})", r.method, r.path, r.verb, r.resource))
        .collect();
    assert!(
        uncovered.is_empty(),
        "not covered by the shipped RBAC:\n{}",
        uncovered.join("\n")
    );
}

#[tokio::test]
async fn every_call_of_the_orchestrator_is_covered_by_the_cluster_role() {
    let cluster = FakeCluster::new();
    let k8s = KubernetesRuntimeOrchestrator::new(
        cluster.client(),
        KubernetesOptions {
            progress_margin: Duration::from_secs(2),
            orphan_grace: Duration::ZERO,
            ..KubernetesOptions::default()
        },
    );
    let within = |d| tokio::time::timeout(Duration::from_secs(30), d);
    let mut events = k8s.events().await.unwrap();

    let v1 = request("orders", 1);
    cluster.script(v1.deployment, PodScript::Ready);
    within(k8s.deploy_app(&v1)).await.unwrap().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(30), events.next()).await;
    // A failed rollout goes back.
    let v2 = request("orders", 2);
    cluster.script(v2.deployment, PodScript::crash(1));
    within(k8s.deploy_app(&v2)).await.unwrap().unwrap_err();
    // A version without a port loses its Service.
    let mut v3 = request("orders", 3);
    v3.config.health = HealthCheck::None;
    cluster.script(v3.deployment, PodScript::Ready);
    within(k8s.deploy_app(&v3)).await.unwrap().unwrap();

    k8s.app_status(&v1.app).await.unwrap();
    k8s.list_apps(&TenantId::new("acme").unwrap())
        .await
        .unwrap();
    let _ = k8s
        .app_logs(
            &v1.app,
            &LogOptions {
                since: None,
                follow: true,
            },
        )
        .await
        .unwrap();
    k8s.stop_app(&v1.app).await.unwrap();
    within(k8s.restart_app(&v1.app)).await.unwrap().unwrap();

    let orphan = request("orphan", 1);
    cluster.script(orphan.deployment, PodScript::Ready);
    within(k8s.deploy_app(&orphan)).await.unwrap().unwrap();
    k8s.reconcile(&Desired::plan([])).await.unwrap();
    k8s.remove_app(&v1.app).await.unwrap();

    let requests = cluster.requests();
    for verb in ["get", "list", "watch", "patch", "delete"] {
        assert!(
            requests.iter().any(|r| r.verb == verb),
            "the scenario made no {verb}"
        );
    }
    assert_covered(&requests, &Rules::of(rbac::CONTROLLER));
}

#[tokio::test]
async fn every_call_of_a_kaniko_build_is_covered_by_the_build_role() {
    use cameleer_runtime_k8s::kaniko::{KanikoImageBuilder, KanikoOptions};
    let cluster = FakeCluster::new();
    let mut options = KanikoOptions::new(
        "localhost:5001/cameleer",
        "eclipse-temurin:17-jre".parse().unwrap(),
        b"agent".to_vec(),
    );
    options.push_secret = Some("registry-push".into());
    let builder = KanikoImageBuilder::new(cluster.client(), options);
    let spec = BuildSpec {
        app: AppRef::parse("acme", "orders", "dev").unwrap(),
        deployment: DeploymentId::new_random(),
        version: 1,
        artifact: Sha256Digest::of(b"jar"),
        artifact_size: 3,
    };
    let jar = futures::stream::iter([Ok(bytes::Bytes::from_static(b"jar"))]).boxed();
    let build = tokio::spawn(async move {
        builder
            .build(
                &spec,
                jar,
                ProgressSink::discard(DeploymentId::new_random()),
            )
            .await
    });
    let ns = rbac::BUILD_NAMESPACE;
    let pod = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(p) = cluster.pods(ns).first() {
                return p.metadata.name.clone().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    cluster.set_pod_status(
        ns,
        &pod,
        serde_json::json!({"phase": "Running", "containerStatuses": [{
        "name": "kaniko", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
        "state": {"running": {}}}]}),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    cluster.set_pod_status(
        ns,
        &pod,
        serde_json::json!({"phase": "Succeeded", "containerStatuses": [{
        "name": "kaniko", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "message": Sha256Digest::of(b"m").oci()}}}]}),
    );
    tokio::time::timeout(Duration::from_secs(10), build)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let requests = cluster.requests();
    assert!(requests.iter().any(|r| r.resource == "pods/log"));
    assert_covered(&requests, &Rules::of(rbac::KANIKO_BUILDS));
}
