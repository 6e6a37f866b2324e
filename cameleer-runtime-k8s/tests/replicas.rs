//! Replicas against the scripted in-memory API server: the config's
//! replicas become the Deployment's, rolled with `maxUnavailable: 0`, and
//! the status counts the ready pods.

use std::time::Duration;

use cameleer_runtime::{
    AppConfig, AppRef, DeployRequest, DeploymentId, DeploymentStatus, HealthCheck, ImageRef,
    RuntimeOrchestrator,
};
use cameleer_runtime_k8s::testing::{FakeCluster, PodScript};
use cameleer_runtime_k8s::{KubernetesOptions, KubernetesRuntimeOrchestrator};

const NS: &str = "cameleer-acme-dev";

fn request(version: u64, replicas: u32) -> DeployRequest {
    DeployRequest {
        app: AppRef::parse("acme", "orders", "dev").unwrap(),
        deployment: DeploymentId::new_random(),
        version,
        image: format!(
            "localhost:5001/cameleer/acme/orders@sha256:{}",
            format!("{version:02x}").repeat(32)
        )
        .parse::<ImageRef>()
        .unwrap(),
        config: AppConfig {
            health: HealthCheck::TcpPort(8080),
            start_timeout_secs: 5,
            replicas,
            ..AppConfig::default()
        },
    }
}

fn setup() -> (FakeCluster, KubernetesRuntimeOrchestrator) {
    let cluster = FakeCluster::new();
    let options = KubernetesOptions {
        progress_margin: Duration::from_secs(2),
        ..KubernetesOptions::default()
    };
    let orchestrator = KubernetesRuntimeOrchestrator::new(cluster.client(), options);
    (cluster, orchestrator)
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn three_replicas_become_the_deployments_and_all_three_ready_is_running() {
    let (cluster, k8s) = setup();
    let v1 = request(1, 3);
    cluster.script(v1.deployment, PodScript::Ready);
    let status = within(k8s.deploy_app(&v1)).await.unwrap();
    assert_eq!(
        (
            status.status,
            status.ready_instances,
            status.desired_instances
        ),
        (DeploymentStatus::Running, 3, 3)
    );
    let d = cluster.object("deployments.apps", NS, "orders").unwrap();
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0,
        "a rolling update never takes a ready pod away first"
    );
    assert_eq!(cluster.pods(NS).len(), 3);
    assert_eq!(
        d["metadata"]["annotations"]["cameleer.io/replicas"], "3",
        "the replicas are recorded with the rest of the metadata"
    );

    let s = k8s.app_status(&v1.app).await.unwrap();
    assert_eq!(
        (
            s.status,
            s.deployment,
            s.ready_instances,
            s.desired_instances
        ),
        (DeploymentStatus::Running, Some(v1.deployment), 3, 3)
    );
    let listed = k8s.list_apps(&v1.app.tenant).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].ready_instances, listed[0].desired_instances),
        (3, 3)
    );

    // A redeploy with 2 replicas: the Deployment follows the new config.
    let v2 = request(2, 2);
    cluster.script(v2.deployment, PodScript::Ready);
    let status = within(k8s.deploy_app(&v2)).await.unwrap();
    assert_eq!(
        (status.status, status.deployment, status.desired_instances),
        (DeploymentStatus::Running, Some(v2.deployment), 2)
    );
    let d = cluster.object("deployments.apps", NS, "orders").unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
}

#[tokio::test]
async fn the_options_replicas_are_a_floor() {
    let cluster = FakeCluster::new();
    let options = KubernetesOptions {
        replicas: 2,
        ..KubernetesOptions::default()
    };
    let k8s = KubernetesRuntimeOrchestrator::new(cluster.client(), options);
    let v1 = request(1, 1);
    cluster.script(v1.deployment, PodScript::Ready);
    let status = within(k8s.deploy_app(&v1)).await.unwrap();
    assert_eq!(status.desired_instances, 2);
    let d = cluster.object("deployments.apps", NS, "orders").unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
}
