//! Replicas against the scripted in-memory API server: the config's
//! replicas become the Deployment's, rolled with `maxUnavailable: 0`, and
//! the status counts the ready pods; the fake plays the rolling update and
//! the kubelet's restart of a killed pod as the cluster would.

use std::time::Duration;

use cameleer_runtime::{
    AppConfig, AppRef, DeployRequest, DeploymentId, DeploymentStatus, HealthCheck, ImageRef,
    RuntimeOrchestrator,
};
use cameleer_runtime_k8s::testing::{FakeCluster, PodScript};
use cameleer_runtime_k8s::{KubernetesOptions, KubernetesRuntimeOrchestrator};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

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

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn of(p: &Pod, req: &DeployRequest) -> bool {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("cameleer.io/deployment"))
        == Some(&req.deployment.to_string())
}

fn condition(d: &serde_json::Value, type_: &str) -> serde_json::Value {
    d["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition in {}", d["status"]))
}

/// Version 1 of the app deployed with 3 replicas, all ready.
async fn three_ready() -> (FakeCluster, KubernetesRuntimeOrchestrator, DeployRequest) {
    let (cluster, k8s) = setup();
    let v1 = request(1, 3);
    cluster.script(v1.deployment, PodScript::Ready);
    within(k8s.deploy_app(&v1)).await.unwrap();
    (cluster, k8s, v1)
}

#[tokio::test]
async fn a_rolling_update_surges_one_pod_at_a_time_and_the_old_version_serves() {
    let (cluster, k8s, v1) = three_ready().await;
    let v2 = request(2, 3);
    cluster.script(v2.deployment, PodScript::Running);
    let deploy = tokio::spawn({
        let (k8s, v2) = (k8s.clone(), v2.clone());
        async move { k8s.deploy_app(&v2).await }
    });
    within(async {
        while !cluster.pods(NS).iter().any(|p| of(p, &v2)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    for step in 1..=3 {
        let pods = cluster.pods(NS);
        assert_eq!(pods.len(), 4, "step {step}: 3 ready pods and one surge pod");
        assert_eq!(pods.iter().filter(|p| is_ready(p)).count(), 3);
        let starting: Vec<&Pod> = pods.iter().filter(|p| of(p, &v2) && !is_ready(p)).collect();
        assert_eq!(starting.len(), 1, "step {step}: one new pod at a time");
        let d = cluster.object("deployments.apps", NS, "orders").unwrap();
        let s = &d["status"];
        assert_eq!(s["observedGeneration"], d["metadata"]["generation"]);
        assert_eq!(
            (
                &s["replicas"],
                &s["updatedReplicas"],
                &s["readyReplicas"],
                &s["availableReplicas"]
            ),
            (&4.into(), &step.into(), &3.into(), &3.into()),
            "step {step}: {s}"
        );
        assert_eq!(condition(&d, "Progressing")["reason"], "ReplicaSetUpdated");
        assert_eq!(condition(&d, "Available")["status"], "True");
        // What serves is v1 until v2 has all three ready.
        let status = k8s.app_status(&v1.app).await.unwrap();
        assert_eq!(
            (status.status, status.deployment, status.ready_instances),
            (DeploymentStatus::Running, Some(v1.deployment), 3),
            "step {step}"
        );
        let name = starting[0].metadata.name.clone().unwrap();
        let ready = serde_json::to_value(PodScript::Ready.status(Timestamp::now())).unwrap();
        cluster.set_pod_status(NS, &name, ready);
    }
    let status = within(deploy).await.unwrap().unwrap();
    assert_eq!(
        (
            status.status,
            status.deployment,
            status.ready_instances,
            status.desired_instances
        ),
        (DeploymentStatus::Running, Some(v2.deployment), 3, 3)
    );
    let pods = cluster.pods(NS);
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| of(p, &v2) && is_ready(p)));
    let d = cluster.object("deployments.apps", NS, "orders").unwrap();
    let s = &d["status"];
    assert_eq!(
        (
            &s["replicas"],
            &s["updatedReplicas"],
            &s["readyReplicas"],
            &s["availableReplicas"]
        ),
        (&3.into(), &3.into(), &3.into(), &3.into()),
    );
    assert!(s.get("unavailableReplicas").is_none(), "{s}");
    assert_eq!(
        condition(&d, "Progressing")["reason"],
        "NewReplicaSetAvailable"
    );
}

#[tokio::test]
async fn a_killed_pod_is_restarted_by_the_kubelet_and_counted() {
    let (cluster, k8s, v1) = three_ready().await;
    assert!(!cluster.kill_instance(&v1.app, 3), "there is no fourth pod");
    assert!(cluster.kill_instance(&v1.app, 1));
    let app_container = || {
        let pods = cluster.pods(NS);
        assert_eq!(
            pods.len(),
            3,
            "the kubelet restarts the container, in the same pod"
        );
        let killed: Vec<_> = pods
            .iter()
            .filter_map(|p| {
                p.status
                    .as_ref()?
                    .container_statuses
                    .as_ref()?
                    .first()
                    .cloned()
            })
            .filter(|c| {
                c.state.as_ref().is_some_and(|s| s.terminated.is_some())
                    || c.last_state
                        .as_ref()
                        .is_some_and(|s| s.terminated.is_some())
            })
            .collect();
        assert_eq!(killed.len(), 1, "{pods:?}");
        killed[0].clone()
    };
    let c = app_container();
    let ended = c.state.unwrap().terminated.unwrap();
    assert_eq!((ended.exit_code, c.restart_count, c.ready), (137, 0, false));
    let not_ready = Some(cameleer_runtime::StatusReason::InstancesNotReady {
        ready: 2,
        desired: 3,
    });
    let s = k8s.app_status(&v1.app).await.unwrap();
    assert_eq!(
        (s.status, s.deployment, s.reason.clone(), s.restarts),
        (
            DeploymentStatus::Starting,
            Some(v1.deployment),
            not_ready.clone(),
            0
        )
    );

    cluster.tick();
    let c = app_container();
    assert!(c.state.unwrap().running.is_some());
    assert_eq!(c.last_state.unwrap().terminated.unwrap().exit_code, 137);
    assert_eq!((c.restart_count, c.ready), (1, false));
    let s = k8s.app_status(&v1.app).await.unwrap();
    assert_eq!(
        (s.status, s.reason, s.restarts),
        (DeploymentStatus::Starting, not_ready, 1)
    );

    tokio::time::sleep(Duration::from_millis(600)).await;
    cluster.tick();
    let s = k8s.app_status(&v1.app).await.unwrap();
    assert_eq!(
        (s.status, s.ready_instances, s.restarts),
        (DeploymentStatus::Running, 3, 1)
    );
}
