//! End to end against the scripted in-memory API server: the orchestrator's
//! calls, the watches that drive status, and a test playing the kubelet.

use std::time::{Duration, SystemTime};

use cameleer_runtime::{
    AppConfig, AppRef, DeployRequest, DeploymentId, DeploymentStatus, Error, HealthCheck, ImageRef,
    LogOptions, RuntimeEventKind, RuntimeOrchestrator, StatusReason, TenantId,
};
use cameleer_runtime_k8s::testing::{FakeCluster, PodScript};
use cameleer_runtime_k8s::{K8sError, KubernetesOptions, KubernetesRuntimeOrchestrator};
use futures::StreamExt;
use http::Method;
use k8s_openapi::jiff::Timestamp;

const NS: &str = "cameleer-acme-dev";

fn image(n: u8) -> ImageRef {
    format!(
        "localhost:5001/cameleer/acme/orders@sha256:{}",
        format!("{n:02x}").repeat(32)
    )
    .parse()
    .unwrap()
}

fn request(app: &str, version: u64, health: HealthCheck) -> DeployRequest {
    DeployRequest {
        app: AppRef::parse("acme", app, "dev").unwrap(),
        deployment: DeploymentId::new_random(),
        version,
        image: image(version as u8),
        config: AppConfig {
            health,
            start_timeout_secs: 5,
            ..AppConfig::default()
        },
    }
}

fn tcp() -> HealthCheck {
    HealthCheck::TcpPort(8080)
}

fn setup() -> (FakeCluster, KubernetesRuntimeOrchestrator) {
    let cluster = FakeCluster::new();
    let options = KubernetesOptions {
        progress_margin: Duration::from_secs(2),
        orphan_grace: Duration::ZERO,
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

/// Waits until the cluster has the app's Deployment at its newest template.
async fn deployment_applied(cluster: &FakeCluster, app: &str, id: DeploymentId) {
    within(async {
        loop {
            let d = cluster.object("deployments.apps", NS, app);
            if d.as_ref()
                .and_then(|d| d.pointer("/spec/template/metadata/labels/cameleer.io~1deployment"))
                .and_then(|v| v.as_str())
                == Some(id.to_string().as_str())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn deploy_applies_the_namespace_and_the_app_and_reaches_running() {
    let (cluster, k8s) = setup();
    let req = request("orders", 1, tcp());
    cluster.script(req.deployment, PodScript::Ready);
    let status = within(k8s.deploy_app(&req)).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Running);
    assert_eq!(status.deployment, Some(req.deployment));

    let ns = cluster.object("namespaces", "", NS).unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    for name in [
        "cameleer-default-deny",
        "cameleer-allow-same-namespace",
        "cameleer-allow-dns",
    ] {
        assert!(
            cluster
                .object("networkpolicies.networking.k8s.io", NS, name)
                .is_some(),
            "{name}"
        );
    }
    assert!(
        cluster
            .object("resourcequotas", NS, "cameleer-quota")
            .is_some()
    );
    assert!(
        cluster
            .object("limitranges", NS, "cameleer-limits")
            .is_some()
    );
    assert!(cluster.object("services", NS, "orders").is_some());

    // Every write is a server-side apply under one field manager, forced.
    let writes: Vec<_> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(!writes.is_empty());
    for w in writes.iter().filter(|w| w.method == "PATCH") {
        assert_eq!(
            w.query.get("fieldManager").map(String::as_str),
            Some("cameleer-runtime"),
            "{w:?}"
        );
        assert_eq!(
            w.query.get("force").map(String::as_str),
            Some("true"),
            "{w:?}"
        );
    }

    let s = k8s.app_status(&req.app).await.unwrap();
    assert_eq!(
        (s.status, s.deployment, s.version),
        (DeploymentStatus::Running, Some(req.deployment), Some(1))
    );

    // Deploying the same request again is idempotent: one pod, RUNNING.
    let again = within(k8s.deploy_app(&req)).await.unwrap();
    assert_eq!(again.status, DeploymentStatus::Running);
    assert_eq!(cluster.pods(NS).len(), 1);
}

async fn failure_of(script: PodScript) -> (StatusReason, Option<String>, DeploymentStatus) {
    let (cluster, k8s) = setup();
    let req = request("orders", 1, tcp());
    cluster.script(req.deployment, script);
    let err = within(k8s.deploy_app(&req)).await.unwrap_err();
    let Error::StartFailed { reason, output } = err else {
        panic!("not a start failure: {err}")
    };
    let status = k8s.app_status(&req.app).await.unwrap();
    assert_eq!(status.reason.as_ref(), Some(&reason));
    (reason, output, status.status)
}

#[tokio::test]
async fn a_crash_is_failed_with_its_exit_code_and_last_output() {
    let (reason, output, status) = failure_of(PodScript::Crashed {
        exit_code: 3,
        message: Some("[app] giving up".into()),
        restarts: 1,
        backing_off: true,
    })
    .await;
    assert_eq!(reason, StatusReason::Exited { exit_code: Some(3) });
    assert_eq!(output.as_deref(), Some("[app] giving up"));
    assert_eq!(status, DeploymentStatus::Failed);
}

#[tokio::test]
async fn a_crash_loop_never_reads_running() {
    let (reason, _, status) = failure_of(PodScript::Crashed {
        exit_code: 1,
        message: None,
        restarts: 4,
        backing_off: true,
    })
    .await;
    assert_eq!(status, DeploymentStatus::Failed);
    assert!(
        matches!(
            reason,
            StatusReason::CrashLoop {
                restarts: Some(4),
                ..
            }
        ),
        "{reason:?}"
    );
}

#[tokio::test]
async fn oom_kills_and_image_pulls_and_scheduling_are_typed() {
    assert_eq!(
        failure_of(PodScript::OomKilled).await.0,
        StatusReason::OomKilled
    );
    assert!(matches!(
        failure_of(PodScript::ImagePullBackOff).await.0,
        StatusReason::ImagePullFailed { .. }
    ));
    let (reason, _, _) = failure_of(PodScript::Unschedulable).await;
    assert!(
        matches!(&reason, StatusReason::StartRefused { detail } if detail.contains("Insufficient memory")),
        "{reason:?}"
    );
}

#[tokio::test]
async fn a_missed_progress_deadline_is_a_health_timeout() {
    let (cluster, k8s) = setup();
    let req = request("orders", 1, tcp());
    cluster.script(req.deployment, PodScript::Running);
    let deploy = tokio::spawn({
        let k8s = k8s.clone();
        let req = req.clone();
        async move { k8s.deploy_app(&req).await }
    });
    deployment_applied(&cluster, "orders", req.deployment).await;
    cluster.exceed_progress_deadline(NS, "orders");
    let err = within(deploy).await.unwrap().unwrap_err();
    assert!(
        matches!(
            &err,
            Error::StartFailed {
                reason: StatusReason::HealthTimeout {
                    after_secs: 5,
                    last_probe: Some(_)
                },
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_failed_rollout_leaves_the_old_version_running() {
    let (cluster, k8s) = setup();
    let v1 = request("orders", 1, tcp());
    cluster.script(v1.deployment, PodScript::Ready);
    within(k8s.deploy_app(&v1)).await.unwrap();
    let old_pods: Vec<String> = cluster
        .pods(NS)
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();

    let v2 = request("orders", 2, tcp());
    cluster.script(v2.deployment, PodScript::crash(3));
    let err = within(k8s.deploy_app(&v2)).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::StartFailed {
                reason: StatusReason::Exited { exit_code: Some(3) },
                ..
            }
        ),
        "{err}"
    );
    // The old pod served throughout and still does; the Deployment is back
    // at version 1.
    let status = k8s.app_status(&v1.app).await.unwrap();
    assert_eq!(
        (status.status, status.version),
        (DeploymentStatus::Running, Some(1))
    );
    let pods: Vec<String> = cluster
        .pods(NS)
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(pods, old_pods);

    // A good v3 replaces v1 once ready.
    let v3 = request("orders", 3, tcp());
    cluster.script(v3.deployment, PodScript::Ready);
    let status = within(k8s.deploy_app(&v3)).await.unwrap();
    assert_eq!(status.version, Some(3));
    let pods = cluster.pods(NS);
    assert_eq!(pods.len(), 1);
    assert_eq!(
        pods[0].metadata.labels.as_ref().unwrap()["cameleer.io/version"],
        "3"
    );
}

#[tokio::test]
async fn stop_restart_and_unknown_apps() {
    let (cluster, k8s) = setup();
    let req = request("orders", 1, HealthCheck::None);
    cluster.script(req.deployment, PodScript::Ready);
    // No health check: ready pods must stay up for the grace period.
    let started = std::time::Instant::now();
    within(k8s.deploy_app(&req)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    k8s.stop_app(&req.app).await.unwrap();
    let s = k8s.app_status(&req.app).await.unwrap();
    assert_eq!(
        (s.status, s.reason),
        (
            DeploymentStatus::Stopped,
            Some(StatusReason::StoppedOnRequest)
        )
    );
    assert!(cluster.pods(NS).is_empty());
    k8s.stop_app(&req.app).await.unwrap();

    let restarted = within(k8s.restart_app(&req.app)).await.unwrap();
    assert_eq!(restarted.status, DeploymentStatus::Running);
    assert_eq!(cluster.pods(NS).len(), 1);
    let d = cluster.object("deployments.apps", NS, "orders").unwrap();
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );

    let unknown = AppRef::parse("acme", "nope", "dev").unwrap();
    assert_eq!(
        k8s.app_status(&unknown).await.unwrap_err().code(),
        "not_found"
    );
    assert_eq!(
        k8s.stop_app(&unknown).await.unwrap_err().code(),
        "not_found"
    );
    assert_eq!(
        k8s.restart_app(&unknown).await.unwrap_err().code(),
        "not_found"
    );
    assert_eq!(
        k8s.app_logs(&unknown, &LogOptions::default())
            .await
            .err()
            .unwrap()
            .code(),
        "not_found"
    );
}

#[tokio::test]
async fn a_failed_app_stays_failed_when_stopped() {
    let (cluster, k8s) = setup();
    let req = request("orders", 1, tcp());
    cluster.script(req.deployment, PodScript::OomKilled);
    within(k8s.deploy_app(&req)).await.unwrap_err();
    k8s.stop_app(&req.app).await.unwrap();
    let s = k8s.app_status(&req.app).await.unwrap();
    assert_eq!(
        (s.status, s.reason),
        (DeploymentStatus::Failed, Some(StatusReason::OomKilled))
    );
    assert!(cluster.pods(NS).is_empty());
}

#[tokio::test]
async fn list_is_per_tenant() {
    let (cluster, k8s) = setup();
    let a = request("orders", 1, tcp());
    let mut b = request("billing", 1, tcp());
    b.app = AppRef::parse("other", "billing", "dev").unwrap();
    for r in [&a, &b] {
        cluster.script(r.deployment, PodScript::Ready);
        within(k8s.deploy_app(r)).await.unwrap();
    }
    let acme = k8s
        .list_apps(&TenantId::new("acme").unwrap())
        .await
        .unwrap();
    assert_eq!(acme.len(), 1);
    assert_eq!(acme[0].app, a.app);
    assert_eq!(acme[0].status, DeploymentStatus::Running);
    let other = k8s
        .list_apps(&TenantId::new("other").unwrap())
        .await
        .unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].app, b.app);
    // Listed by label selector across namespaces.
    let lists: Vec<_> = cluster
        .requests()
        .into_iter()
        .filter(|r| r.verb == "list" && r.namespace.is_none() && r.resource == "deployments.apps")
        .filter(|r| !r.query.contains_key("watch"))
        .collect();
    assert!(
        lists
            .iter()
            .any(|r| r.query["labelSelector"].contains("cameleer.io/tenant=acme"))
    );
}

#[tokio::test]
async fn logs_of_every_replica_since_a_time_and_following() {
    let (cluster, _) = setup();
    let k8s = KubernetesRuntimeOrchestrator::new(
        cluster.client(),
        KubernetesOptions {
            replicas: 2,
            progress_margin: Duration::from_secs(2),
            ..KubernetesOptions::default()
        },
    );
    let req = request("orders", 1, tcp());
    cluster.script(req.deployment, PodScript::Ready);
    within(k8s.deploy_app(&req)).await.unwrap();
    let pods: Vec<String> = cluster
        .pods(NS)
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(pods.len(), 2);
    let t = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
    cluster.log(NS, &pods[0], t(0), "[app] line 1");
    cluster.log(NS, &pods[0], t(10), "[app] line 2");
    cluster.log(NS, &pods[1], t(11), "[app] line 3");

    let since = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_005);
    let lines: Vec<String> = k8s
        .app_logs(
            &req.app,
            &LogOptions {
                since: Some(since),
                follow: false,
            },
        )
        .await
        .unwrap()
        .map(|l| l.unwrap().line)
        .collect()
        .await;
    assert_eq!(
        lines,
        [
            format!("[{}] [app] line 2", pods[0]),
            format!("[{}] [app] line 3", pods[1])
        ]
    );

    let mut follow = k8s
        .app_logs(
            &req.app,
            &LogOptions {
                since: Some(since),
                follow: true,
            },
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(within(follow.next()).await.unwrap().unwrap().line);
    }
    cluster.log(NS, &pods[1], t(20), "[app] line 4");
    got.push(within(follow.next()).await.unwrap().unwrap().line);
    got.sort();
    assert_eq!(got.len(), 3);
    assert!(got[2].ends_with("[app] line 4") || got.iter().any(|l| l.ends_with("line 4")));
}

#[tokio::test]
async fn a_crash_after_running_is_an_event_even_across_a_dropped_or_expired_watch() {
    type Break = fn(&FakeCluster);
    let breaks: [(Break, bool); 2] = [
        (FakeCluster::drop_watches, false),
        (FakeCluster::expire_watches, true),
    ];
    for (break_watch, expires) in breaks {
        let (cluster, k8s) = setup();
        let req = request("orders", 1, tcp());
        cluster.script(req.deployment, PodScript::Ready);
        let mut events = k8s.events().await.unwrap();
        within(k8s.deploy_app(&req)).await.unwrap();
        let first = within(events.next()).await.unwrap();
        assert_eq!(first.kind, RuntimeEventKind::Healthy);

        // The watch goes away, the app crashes meanwhile.
        let count = |verb: &str| {
            cluster
                .requests()
                .iter()
                .filter(|r| r.verb == verb && r.resource == "pods" && r.namespace.is_none())
                .count()
        };
        let (lists, watches) = (count("list"), count("watch"));
        break_watch(&cluster);
        cluster.script(req.deployment, PodScript::crash(3));
        let event = within(events.next()).await.unwrap();
        assert_eq!(event.deployment, req.deployment);
        assert_eq!(
            event.kind,
            RuntimeEventKind::Failed {
                reason: StatusReason::Exited { exit_code: Some(3) }
            }
        );
        // The watches came back.
        within(async {
            while cluster.open_watches() < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        // A dropped watch is re-watched from where it was; an expired one
        // (410 Gone) is listed again.
        assert!(count("watch") > watches);
        let relisted = count("list") > lists;
        assert_eq!(relisted, expires);
        // Reported once.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), events.next())
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn forbidden_names_the_missing_permission() {
    let (cluster, k8s) = setup();
    cluster.fail(Method::PATCH, "/deployments/orders", 403, 1);
    let req = request("orders", 1, tcp());
    let err = within(k8s.deploy_app(&req)).await.unwrap_err();
    assert_eq!(err.code(), "backend_error");
    let k8s_err = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<K8sError>())
        .unwrap();
    assert_eq!(k8s_err.code(), "forbidden");
    let text = err.to_string();
    assert!(text.contains("\"patch\" on \"deployments.apps\""), "{text}");
    assert!(text.contains(NS), "{text}");
}

#[tokio::test]
async fn a_conflict_is_a_conflict() {
    let (cluster, k8s) = setup();
    cluster.fail(Method::PATCH, "/deployments/orders", 409, 1);
    let err = within(k8s.deploy_app(&request("orders", 1, tcp())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "conflict");
}
