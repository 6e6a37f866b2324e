use cameleer_runtime::{AppConfig, AppRef, DeployRequest, DeploymentId, HealthCheck, ImageRef};
use k8s_openapi::api::apps::v1::DeploymentStatus as K8sDeploymentStatus;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::options::KubernetesOptions;
use crate::testing::kubelet::{PodScript, pod_for};
use crate::workload;

fn image() -> ImageRef {
    "registry.local/acme/orders@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        .parse()
        .unwrap()
}

fn request(health: HealthCheck) -> DeployRequest {
    DeployRequest {
        app: AppRef::parse("acme", "orders", "dev").unwrap(),
        deployment: DeploymentId::new_random(),
        version: 1,
        image: image(),
        config: AppConfig {
            health,
            start_timeout_secs: 30,
            ..AppConfig::default()
        },
    }
}

fn tcp() -> Deployment {
    workload::deployment(
        &request(HealthCheck::TcpPort(8080)),
        &KubernetesOptions::default(),
    )
    .unwrap()
}

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_100).unwrap()
}

fn status_of(d: &Deployment, scripts: &[PodScript]) -> (DeploymentStatus, Option<StatusReason>) {
    let pods: Vec<Pod> = scripts
        .iter()
        .enumerate()
        .map(|(i, s)| pod_for(d, &format!("orders-{i}"), s, t0()))
        .collect();
    let o = observe(d, &pods, now()).unwrap();
    (o.status, o.reason)
}

#[test]
fn pod_states_table() {
    use DeploymentStatus::*;
    let d = tcp();
    let oom_loop = PodScript::Crashed {
        exit_code: 137,
        message: None,
        restarts: 5,
        backing_off: true,
    };
    let cases: Vec<(&str, Vec<PodScript>, DeploymentStatus, Option<StatusReason>)> = vec![
        ("no pod yet", vec![], Starting, None),
        ("pulling", vec![PodScript::Pending], Starting, None),
        (
            "running, not ready",
            vec![PodScript::Running],
            Starting,
            None,
        ),
        ("ready", vec![PodScript::Ready], Running, None),
        (
            "first crash",
            vec![PodScript::Crashed {
                exit_code: 3,
                message: Some("[app] bye".into()),
                restarts: 0,
                backing_off: false,
            }],
            Failed,
            Some(StatusReason::Exited { exit_code: Some(3) }),
        ),
        (
            "crash, backing off once",
            vec![PodScript::crash(3)],
            Failed,
            Some(StatusReason::Exited { exit_code: Some(3) }),
        ),
        (
            "crash loop",
            vec![oom_loop],
            Failed,
            Some(StatusReason::CrashLoop {
                restarts: Some(5),
                last: Some(Box::new(StatusReason::Exited {
                    exit_code: Some(137),
                })),
            }),
        ),
        (
            "JVM out of memory",
            vec![PodScript::Crashed {
                exit_code: 3,
                message: Some(
                    "Terminating due to java.lang.OutOfMemoryError: Java heap space".into(),
                ),
                restarts: 1,
                backing_off: true,
            }],
            Failed,
            Some(StatusReason::JvmOutOfMemory),
        ),
        (
            "OOM killed",
            vec![PodScript::OomKilled],
            Failed,
            Some(StatusReason::OomKilled),
        ),
        (
            "image not pullable",
            vec![PodScript::ImagePullBackOff],
            Failed,
            Some(StatusReason::ImagePullFailed {
                detail: "Back-off pulling image \"registry.invalid/app@sha256:…\": not found"
                    .into(),
            }),
        ),
        (
            "unschedulable",
            vec![PodScript::Unschedulable],
            Failed,
            Some(StatusReason::StartRefused {
                detail: "unschedulable: 0/1 nodes are available: 1 Insufficient memory.".into(),
            }),
        ),
        (
            "one of two replicas crashing",
            vec![PodScript::Ready, PodScript::crash(1)],
            Failed,
            Some(StatusReason::Exited { exit_code: Some(1) }),
        ),
    ];
    for (what, scripts, status, reason) in cases {
        assert_eq!(status_of(&d, &scripts), (status, reason), "{what}");
    }
}

#[test]
fn a_pod_in_crash_loop_back_off_never_reads_running() {
    let d = tcp();
    for restarts in 0..10 {
        for exit_code in [0, 1, 3, 137, 143] {
            let script = PodScript::Crashed {
                exit_code,
                message: None,
                restarts,
                backing_off: true,
            };
            let (status, reason) = status_of(&d, &[script]);
            assert_eq!(status, DeploymentStatus::Failed, "{restarts} {exit_code}");
            assert!(reason.is_some());
        }
    }
}

#[test]
fn pods_of_another_version_or_restart_do_not_count() {
    let d = tcp();
    let other = workload::deployment(
        &request(HealthCheck::TcpPort(8080)),
        &KubernetesOptions::default(),
    )
    .unwrap();
    // A crashing pod of the old version does not fail the new one, and its
    // ready pod does not make the new one RUNNING.
    let old_pods = [
        pod_for(&other, "old-0", &PodScript::crash(3), t0()),
        pod_for(&other, "old-1", &PodScript::Ready, t0()),
    ];
    let o = observe(&d, &old_pods, now()).unwrap();
    assert_eq!(o.status, DeploymentStatus::Starting);

    // After a rollout restart, the pods of before the restart are old.
    let mut restarted = d.clone();
    let template = &mut crate::compat::deployment_spec_mut(&mut restarted)
        .unwrap()
        .template;
    template
        .metadata
        .as_mut()
        .unwrap()
        .annotations
        .as_mut()
        .unwrap()
        .insert(RESTARTED_AT.into(), "2027-01-01T00:00:00Z".into());
    let before = [pod_for(&d, "orders-0", &PodScript::Ready, t0())];
    assert_eq!(
        observe(&restarted, &before, now()).unwrap().status,
        DeploymentStatus::Starting
    );
    let after = [pod_for(&restarted, "orders-1", &PodScript::Ready, t0())];
    assert_eq!(
        observe(&restarted, &after, now()).unwrap().status,
        DeploymentStatus::Running
    );

    // A pod being deleted is not current.
    let mut deleting = pod_for(&d, "orders-0", &PodScript::Ready, t0());
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t0()));
    assert_eq!(
        observe(&d, &[deleting], now()).unwrap().status,
        DeploymentStatus::Starting
    );
}

#[test]
fn deployment_conditions() {
    let mut d = tcp();
    d.metadata.generation = Some(2);
    let mut progress = crate::compat::new_condition("Progressing", "False");
    progress.reason = Some("ProgressDeadlineExceeded".into());
    progress.message = Some("ReplicaSet \"orders-1\" has timed out progressing.".into());
    d.status = Some(K8sDeploymentStatus {
        observed_generation: Some(2),
        conditions: Some(vec![progress]),
        ..K8sDeploymentStatus::default()
    });
    let (status, reason) = status_of(&d, &[PodScript::Running]);
    assert_eq!(status, DeploymentStatus::Failed);
    assert_eq!(
        reason,
        Some(StatusReason::HealthTimeout {
            after_secs: 30,
            last_probe: Some("containers with unready status: [app]".into()),
        })
    );
    // A condition of an older generation says nothing about this one.
    d.metadata.generation = Some(3);
    assert_eq!(
        status_of(&d, &[PodScript::Running]).0,
        DeploymentStatus::Starting
    );

    let mut d = tcp();
    let mut failure = crate::compat::new_condition("ReplicaFailure", "True");
    failure.message = Some("pods \"orders-x\" is forbidden: exceeded quota".into());
    d.status = Some(K8sDeploymentStatus {
        conditions: Some(vec![failure]),
        ..K8sDeploymentStatus::default()
    });
    assert_eq!(
        status_of(&d, &[]),
        (
            DeploymentStatus::Failed,
            Some(StatusReason::StartRefused {
                detail: "pods \"orders-x\" is forbidden: exceeded quota".into()
            })
        )
    );
}

#[test]
fn stopped_on_request() {
    let d = tcp();
    let template = crate::compat::deployment_spec(&d).unwrap().template.clone();
    let stopped = workload::deployment_from_template(
        &AppRef::parse("acme", "orders", "dev").unwrap(),
        template,
        true,
        &KubernetesOptions::default(),
    );
    assert_eq!(
        status_of(&stopped, &[PodScript::Ready]),
        (
            DeploymentStatus::Stopped,
            Some(StatusReason::StoppedOnRequest)
        )
    );
}

#[test]
fn without_a_health_check_a_pod_must_stay_ready_for_the_grace_period() {
    let d =
        workload::deployment(&request(HealthCheck::None), &KubernetesOptions::default()).unwrap();
    let ready_at = Timestamp::from_second(now().unix_timestamp() - 1).unwrap();
    let pods = [pod_for(&d, "orders-0", &PodScript::Ready, ready_at)];
    assert_eq!(
        observe(&d, &pods, now()).unwrap().status,
        DeploymentStatus::Starting
    );
    let later = now() + time::Duration::seconds(3);
    assert_eq!(
        next_readiness_deadline(&d, &pods, now()).map(|t| t.unix_timestamp()),
        Some(later.unix_timestamp() - 1)
    );
    assert_eq!(
        observe(&d, &pods, later).unwrap().status,
        DeploymentStatus::Running
    );
}

#[test]
fn a_deployment_without_our_labels_is_not_observed() {
    let mut d = tcp();
    crate::compat::deployment_spec_mut(&mut d)
        .unwrap()
        .template
        .metadata
        .as_mut()
        .unwrap()
        .labels = None;
    assert!(observe(&d, &[], now()).is_none());
}

#[test]
fn scaled_to_zero_by_someone_else_is_stopped_externally() {
    let mut d = tcp();
    crate::compat::deployment_spec_mut(&mut d).unwrap().replicas = Some(0);
    assert_eq!(
        status_of(&d, &[]),
        (
            DeploymentStatus::Stopped,
            Some(StatusReason::StoppedExternally)
        )
    );
}

#[test]
fn three_replicas_are_running_only_when_all_three_are_ready() {
    use DeploymentStatus::*;
    let mut req = request(HealthCheck::TcpPort(8080));
    req.config.replicas = 3;
    let mut d = workload::deployment(&req, &KubernetesOptions::default()).unwrap();
    let spec = crate::compat::deployment_spec(&d).unwrap();
    assert_eq!(spec.replicas, Some(3));
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .unwrap();
    assert_eq!(
        rolling.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0))
    );
    let pods = |d: &Deployment, scripts: &[PodScript]| -> Vec<Pod> {
        scripts
            .iter()
            .enumerate()
            .map(|(i, s)| pod_for(d, &format!("orders-{i}"), s, t0()))
            .collect()
    };
    let two = pods(
        &d,
        &[PodScript::Ready, PodScript::Ready, PodScript::Running],
    );
    let o = observe(&d, &two, now()).unwrap();
    assert_eq!(
        (o.status, o.reason, o.ready, o.desired),
        (
            Starting,
            Some(StatusReason::InstancesNotReady {
                ready: 2,
                desired: 3
            }),
            2,
            3
        )
    );
    let three = pods(&d, &[PodScript::Ready, PodScript::Ready, PodScript::Ready]);
    let o = observe(&d, &three, now()).unwrap();
    assert_eq!(
        (o.status, o.reason, o.ready, o.desired),
        (Running, None, 3, 3)
    );
    // Mid-rollout the Deployment's readyReplicas also counts the old
    // version's ready pods: the app serves with them.
    d.status = Some(K8sDeploymentStatus {
        ready_replicas: Some(4),
        ..K8sDeploymentStatus::default()
    });
    let o = observe(&d, &two, now()).unwrap();
    assert_eq!((o.status, o.ready, o.desired), (Starting, 4, 3));
}

/// A deployment of `version` with 3 replicas.
fn replicated(version: u64) -> Deployment {
    let mut req = request(HealthCheck::TcpPort(8080));
    req.version = version;
    req.config.replicas = 3;
    workload::deployment(&req, &KubernetesOptions::default()).unwrap()
}

/// `pod` after its app's container was killed (exit 137): ended now when
/// not `restarted`, else running again (restart count 1), ready or not.
fn killed(mut pod: Pod, restarted: bool, ready: bool) -> Pod {
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated};
    let status = pod.status.as_mut().unwrap();
    for c in status.conditions.iter_mut().flatten() {
        if c.type_ == "Ready" || c.type_ == "ContainersReady" {
            c.status = if ready { "True" } else { "False" }.into();
        }
    }
    let c = &mut status.container_statuses.as_mut().unwrap()[0];
    let ended = ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 137,
            reason: Some("Error".into()),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    };
    c.ready = ready;
    if restarted {
        c.last_state = Some(ended);
        c.restart_count = 1;
    } else {
        c.state = Some(ended);
    }
    pod
}

#[test]
fn a_crashed_replica_is_one_instance_down_while_others_run() {
    use DeploymentStatus::*;
    let d = replicated(1);
    let pod = |i: usize, s: &PodScript| pod_for(&d, &format!("orders-{i}"), s, t0());
    let with = |third: Pod| vec![pod(0, &PodScript::Ready), pod(1, &PodScript::Ready), third];
    let not_ready = Some(StatusReason::InstancesNotReady {
        ready: 2,
        desired: 3,
    });

    // Ended, not restarted yet: not ready, no restart counted yet.
    let o = observe(
        &d,
        &with(killed(pod(2, &PodScript::Ready), false, false)),
        now(),
    )
    .unwrap();
    assert_eq!(
        (o.status, o.reason, o.restarts),
        (Starting, not_ready.clone(), 0)
    );
    // Restarted, its probe not passed yet.
    let o = observe(
        &d,
        &with(killed(pod(2, &PodScript::Ready), true, false)),
        now(),
    )
    .unwrap();
    assert_eq!((o.status, o.reason, o.restarts), (Starting, not_ready, 1));
    // Ready again: RUNNING, the restart counted.
    let o = observe(
        &d,
        &with(killed(pod(2, &PodScript::Ready), true, true)),
        now(),
    )
    .unwrap();
    assert_eq!((o.status, o.ready, o.restarts), (Running, 3, 1));

    // A pod that cannot start is no crash: FAILED whatever the others do.
    let o = observe(&d, &with(pod(2, &PodScript::ImagePullBackOff)), now()).unwrap();
    assert!(matches!(
        o.reason,
        Some(StatusReason::ImagePullFailed { .. })
    ));
    // When none runs, the crash is the app's.
    let all = [0, 1, 2].map(|i| pod(i, &PodScript::crash(3)));
    let o = observe(&d, &all, now()).unwrap();
    assert_eq!(o.status, Failed);
    assert!(o.reason.is_some());

    // One replica: its crash reads FAILED, restarted or not, as it did.
    let one = tcp();
    for restarted in [false, true] {
        let p = killed(
            pod_for(&one, "orders-0", &PodScript::Ready, t0()),
            restarted,
            restarted,
        );
        let o = observe(&one, &[p], now()).unwrap();
        assert_eq!(
            (o.status, o.reason),
            (Failed, Some(StatusReason::from_exit(137, None))),
            "restarted: {restarted}"
        );
    }
}

#[test]
fn while_a_new_version_rolls_out_the_old_one_serves() {
    use DeploymentStatus::*;
    let v1 = replicated(1);
    let v2 = replicated(2);
    let old = |i: usize| pod_for(&v1, &format!("old-{i}"), &PodScript::Ready, t0());
    let new = |i: usize, s: &PodScript| pod_for(&v2, &format!("new-{i}"), s, t0());
    let v1_id = deployment_identity(&v1).unwrap();
    let v2_id = deployment_identity(&v2).unwrap();

    // A surge pod starting: the template's version is STARTING, v1 serves.
    let pods = vec![old(0), old(1), old(2), new(0, &PodScript::Running)];
    assert_eq!(observe(&v2, &pods, now()).unwrap().status, Starting);
    let o = observe_serving(&v2, &pods, now()).unwrap();
    assert_eq!(
        (o.identity.clone(), o.status, o.reason, o.ready, o.desired),
        (v1_id.clone(), Running, None, 3, 3)
    );
    assert!(!rollout_done(&v2, &pods));

    // One new ready, one old gone: still v1, counting every ready pod.
    let pods = vec![
        old(1),
        old(2),
        new(0, &PodScript::Ready),
        new(1, &PodScript::Running),
    ];
    let o = observe_serving(&v2, &pods, now()).unwrap();
    assert_eq!(
        (o.identity.clone(), o.status, o.ready),
        (v1_id.clone(), Running, 3)
    );

    // A pod of another app in the namespace serves nothing of this one.
    let mut billing = request(HealthCheck::TcpPort(8080));
    billing.app = AppRef::parse("acme", "billing", "dev").unwrap();
    let billing = workload::deployment(&billing, &KubernetesOptions::default()).unwrap();
    let other = pod_for(&billing, "billing-0", &PodScript::Ready, t0());
    let pods = vec![other.clone(), new(0, &PodScript::Running)];
    let o = observe_serving(&v2, &pods, now()).unwrap();
    assert_eq!(
        (o.identity.clone(), o.status, o.ready),
        (v2_id.clone(), Starting, 0)
    );
    assert!(rollout_done(&v2, &pods));

    // The rollout missed its deadline: v2 FAILED, v1 still serves.
    let mut failed = v2.clone();
    failed.status = Some(K8sDeploymentStatus {
        conditions: Some(vec![k8s_openapi::api::apps::v1::DeploymentCondition {
            reason: Some("ProgressDeadlineExceeded".into()),
            ..crate::compat::new_condition("Progressing", "False")
        }]),
        ..K8sDeploymentStatus::default()
    });
    let pods = vec![old(0), old(1), old(2), new(0, &PodScript::Running)];
    assert_eq!(observe(&failed, &pods, now()).unwrap().status, Failed);
    let o = observe_serving(&failed, &pods, now()).unwrap();
    assert_eq!((o.identity.clone(), o.status, o.ready), (v1_id, Running, 3));

    // All new ones ready: v2, whatever is left of v1.
    let pods = vec![
        old(0),
        new(0, &PodScript::Ready),
        new(1, &PodScript::Ready),
        new(2, &PodScript::Ready),
    ];
    let o = observe_serving(&v2, &pods, now()).unwrap();
    assert_eq!((o.identity, o.status), (v2_id, Running));
    assert!(!rollout_done(&v2, &pods));
}
