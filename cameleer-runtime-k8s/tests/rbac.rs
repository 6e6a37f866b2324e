//! Every API call the backend makes is covered by the shipped RBAC: a full
//! scenario runs against the in-memory API server, which records each
//! request with the verb and resource RBAC authorizes it as.

use std::time::Duration;

use cameleer_runtime::{
    AppConfig, AppRef, DeployRequest, DeploymentId, Desired, HealthCheck, LogOptions,
    RuntimeOrchestrator, TenantId,
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
