//! After a controller restart, against the scripted in-memory API server.

use std::time::Duration;

use cameleer_runtime::{
    AppConfig, AppRef, DeployRequest, Deployment, DeploymentId, DeploymentSource, DeploymentStatus,
    Desired, HealthCheck, ImageRef, Intent, RuntimeOrchestrator, Sha256Digest, StatusChange,
    StatusReason,
};
use cameleer_runtime_k8s::testing::{FakeCluster, PodScript};
use cameleer_runtime_k8s::{KubernetesOptions, KubernetesRuntimeOrchestrator};
use time::OffsetDateTime;

const NS: &str = "cameleer-acme-dev";

fn request(app: &str, version: u64) -> DeployRequest {
    DeployRequest {
        app: AppRef::parse("acme", app, "dev").unwrap(),
        deployment: DeploymentId::new_random(),
        version,
        image: format!(
            "localhost:5001/cameleer/acme/{app}@sha256:{}",
            "ab".repeat(32)
        )
        .parse::<ImageRef>()
        .unwrap(),
        config: AppConfig {
            health: HealthCheck::TcpPort(8080),
            start_timeout_secs: 5,
            ..AppConfig::default()
        },
    }
}

/// The store's record of `req`, in `status` (with `reason`).
fn record(
    req: &DeployRequest,
    status: DeploymentStatus,
    reason: Option<StatusReason>,
) -> Deployment {
    let mut d = Deployment::new(
        req.app.clone(),
        req.version,
        Sha256Digest::of(b"jar"),
        Some(req.image.clone()),
        DeploymentSource::Build,
        req.config.clone(),
        OffsetDateTime::now_utc(),
    );
    d.id = req.deployment;
    d.status = status;
    d.history.push(StatusChange {
        status,
        at: OffsetDateTime::now_utc(),
        reason,
        output: None,
    });
    d
}

fn controller(cluster: &FakeCluster, orphan_grace: Duration) -> KubernetesRuntimeOrchestrator {
    KubernetesRuntimeOrchestrator::new(
        cluster.client(),
        KubernetesOptions {
            progress_margin: Duration::from_secs(2),
            orphan_grace,
            ..KubernetesOptions::default()
        },
    )
}

async fn deployed(cluster: &FakeCluster, req: &DeployRequest) {
    cluster.script(req.deployment, PodScript::Ready);
    tokio::time::timeout(
        Duration::from_secs(30),
        controller(cluster, Duration::ZERO).deploy_app(req),
    )
    .await
    .unwrap()
    .unwrap();
}

#[tokio::test]
async fn adopts_what_runs_and_removes_orphans() {
    let cluster = FakeCluster::new();
    let orders = request("orders", 1);
    let old = request("old", 1);
    deployed(&cluster, &orders).await;
    deployed(&cluster, &old).await;

    // A new controller: the store knows orders only.
    let k8s = controller(&cluster, Duration::ZERO);
    let desired = Desired::plan([record(&orders, DeploymentStatus::Running, None)]);
    let report = k8s.reconcile(&desired).await.unwrap();
    assert_eq!(report.adopted, [orders.deployment]);
    assert!(report.missing.is_empty(), "{:?}", report.missing);
    assert_eq!(
        report.removed_orphans,
        ["deployment cameleer-acme-dev/old".to_string(),]
    );
    assert!(cluster.object("deployments.apps", NS, "old").is_none());
    assert!(cluster.object("services", NS, "old").is_none());
    assert!(cluster.object("deployments.apps", NS, "orders").is_some());
}

#[tokio::test]
async fn young_orphans_are_left_alone() {
    let cluster = FakeCluster::new();
    let old = request("old", 1);
    deployed(&cluster, &old).await;
    let k8s = controller(&cluster, Duration::from_secs(600));
    let report = k8s.reconcile(&[]).await.unwrap();
    assert!(report.removed_orphans.is_empty());
    assert!(cluster.object("deployments.apps", NS, "old").is_some());
}

#[tokio::test]
async fn keeps_stopped_apps_stopped_and_failed_ones_failed() {
    let cluster = FakeCluster::new();
    let stopped = request("stopped", 1);
    let failed = request("failed", 1);
    deployed(&cluster, &stopped).await;
    deployed(&cluster, &failed).await;

    let k8s = controller(&cluster, Duration::ZERO);
    let desired = Desired::plan([
        record(
            &stopped,
            DeploymentStatus::Stopped,
            Some(StatusReason::StoppedOnRequest),
        ),
        record(
            &failed,
            DeploymentStatus::Failed,
            Some(StatusReason::OomKilled),
        ),
    ]);
    assert!(desired.iter().all(|d| d.intent == Intent::KeepStopped));
    let report = k8s.reconcile(&desired).await.unwrap();
    assert!(report.adopted.is_empty() && report.removed_orphans.is_empty());
    let s = k8s.app_status(&stopped.app).await.unwrap();
    assert_eq!(s.status, DeploymentStatus::Stopped);
    let f = k8s.app_status(&failed.app).await.unwrap();
    assert_eq!(
        (f.status, f.reason),
        (DeploymentStatus::Failed, Some(StatusReason::OomKilled))
    );
    assert!(cluster.pods(NS).is_empty());
}

#[tokio::test]
async fn a_stop_the_store_never_recorded_is_undone_and_a_vanished_app_is_missing() {
    let cluster = FakeCluster::new();
    let orders = request("orders", 1);
    deployed(&cluster, &orders).await;
    controller(&cluster, Duration::ZERO)
        .stop_app(&orders.app)
        .await
        .unwrap();
    let gone = request("gone", 1);

    let k8s = controller(&cluster, Duration::ZERO);
    let desired = Desired::plan([
        record(&orders, DeploymentStatus::Running, None),
        record(&gone, DeploymentStatus::Running, None),
    ]);
    let report = tokio::time::timeout(Duration::from_secs(30), k8s.reconcile(&desired))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.adopted, [orders.deployment]);
    assert_eq!(
        k8s.app_status(&orders.app).await.unwrap().status,
        DeploymentStatus::Running
    );
    assert_eq!(report.missing.len(), 1);
    let (id, status) = &report.missing[0];
    assert_eq!(*id, gone.deployment);
    assert_eq!(status.reason, Some(StatusReason::Gone));
}

#[tokio::test]
async fn a_failed_deployment_to_run_is_reported_with_its_reason() {
    let cluster = FakeCluster::new();
    let orders = request("orders", 1);
    deployed(&cluster, &orders).await;
    cluster.script(orders.deployment, PodScript::crash(3));
    let k8s = controller(&cluster, Duration::ZERO);
    let report = k8s
        .reconcile(&Desired::plan([record(
            &orders,
            DeploymentStatus::Running,
            None,
        )]))
        .await
        .unwrap();
    assert!(report.adopted.is_empty());
    assert_eq!(
        report.missing[0].1.reason,
        Some(StatusReason::Exited { exit_code: Some(3) })
    );
}

#[tokio::test]
async fn a_scoped_reconcile_leaves_other_tenants_alone() {
    let cluster = FakeCluster::new();
    let ours = request("orders", 1);
    let mut theirs = request("billing", 1);
    theirs.app = AppRef::parse("other", "billing", "dev").unwrap();
    deployed(&cluster, &ours).await;
    deployed(&cluster, &theirs).await;
    let k8s = KubernetesRuntimeOrchestrator::new(
        cluster.client(),
        KubernetesOptions {
            orphan_grace: Duration::ZERO,
            reconcile_scope: Some(ours.app.tenant.clone()),
            ..KubernetesOptions::default()
        },
    );
    // The store knows neither, and says other's billing should run.
    let report = k8s
        .reconcile(&Desired::plan([record(
            &theirs,
            DeploymentStatus::Running,
            None,
        )]))
        .await
        .unwrap();
    assert_eq!(
        report.removed_orphans,
        ["deployment cameleer-acme-dev/orders".to_string()]
    );
    assert!(report.missing.is_empty() && report.adopted.is_empty());
    assert!(
        cluster
            .object("deployments.apps", "cameleer-other-dev", "billing")
            .is_some()
    );
}
