//! What a kubelet would write into a pod's status, scripted.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::workload::CONTAINER;

/// A state of the app's pod, as a test plays the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodScript {
    /// Scheduled, the image being pulled.
    Pending,
    /// No node fits it.
    Unschedulable,
    /// The process runs; its readiness probe has not passed (yet).
    Running,
    /// The process runs and is ready.
    Ready,
    /// The process ended with this code and wrote this termination message;
    /// the kubelet restarted it `restarts` times and now backs off when
    /// `backing_off`.
    Crashed {
        /// The exit code.
        exit_code: i32,
        /// The termination message (the last log lines).
        message: Option<String>,
        /// How often it was restarted.
        restarts: i32,
        /// Whether the kubelet now waits in `CrashLoopBackOff`.
        backing_off: bool,
    },
    /// The kernel OOM-killed it, and it waits to be restarted.
    OomKilled,
    /// The image cannot be pulled (`ErrImagePull`, then `ImagePullBackOff`).
    ImagePullBackOff,
}

impl PodScript {
    /// An exit with `code`, restarted once, backing off.
    pub fn crash(code: i32) -> Self {
        Self::Crashed {
            exit_code: code,
            message: None,
            restarts: 1,
            backing_off: true,
        }
    }

    /// The pod status the kubelet would report, stamped `at`.
    pub fn status(&self, at: Timestamp) -> PodStatus {
        let time = Some(Time(at));
        let condition =
            |type_: &str, ok: bool, reason: Option<&str>, message: Option<&str>| PodCondition {
                type_: type_.to_string(),
                status: if ok { "True" } else { "False" }.to_string(),
                reason: reason.map(str::to_string),
                message: message.map(str::to_string),
                last_transition_time: time.clone(),
                ..PodCondition::default()
            };
        let waiting = |reason: &str, message: &str| ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
            }),
            ..ContainerState::default()
        };
        let running = ContainerState {
            running: Some(ContainerStateRunning {
                started_at: time.clone(),
            }),
            ..ContainerState::default()
        };
        let terminated = |code: i32, reason: &str, message: Option<&String>| ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                reason: Some(reason.to_string()),
                message: message.cloned(),
                finished_at: time.clone(),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        };
        let container = |state: ContainerState,
                         last: Option<ContainerState>,
                         ready: bool,
                         restarts: i32| ContainerStatus {
            name: CONTAINER.to_string(),
            image: "registry.invalid/app".to_string(),
            image_id: String::new(),
            ready,
            restart_count: restarts,
            started: Some(ready),
            state: Some(state),
            last_state: last,
            ..ContainerStatus::default()
        };
        let not_ready = "containers with unready status: [app]";
        let (phase, conditions, containers) = match self {
            Self::Pending => (
                "Pending",
                vec![
                    condition("PodScheduled", true, None, None),
                    condition("Ready", false, Some("ContainersNotReady"), Some(not_ready)),
                ],
                vec![container(
                    waiting("ContainerCreating", "pulling the image"),
                    None,
                    false,
                    0,
                )],
            ),
            Self::Unschedulable => (
                "Pending",
                vec![condition(
                    "PodScheduled",
                    false,
                    Some("Unschedulable"),
                    Some("0/1 nodes are available: 1 Insufficient memory."),
                )],
                vec![],
            ),
            Self::Running => (
                "Running",
                vec![
                    condition("PodScheduled", true, None, None),
                    condition(
                        "ContainersReady",
                        false,
                        Some("ContainersNotReady"),
                        Some(not_ready),
                    ),
                    condition("Ready", false, Some("ContainersNotReady"), Some(not_ready)),
                ],
                vec![container(running, None, false, 0)],
            ),
            Self::Ready => (
                "Running",
                vec![
                    condition("PodScheduled", true, None, None),
                    condition("ContainersReady", true, None, None),
                    condition("Ready", true, None, None),
                ],
                vec![container(running, None, true, 0)],
            ),
            Self::Crashed {
                exit_code,
                message,
                restarts,
                backing_off,
            } => {
                let last = terminated(*exit_code, "Error", message.as_ref());
                let (state, last) = if *backing_off {
                    (
                        waiting(
                            "CrashLoopBackOff",
                            "back-off restarting failed container app",
                        ),
                        Some(last),
                    )
                } else {
                    (last, None)
                };
                (
                    "Running",
                    vec![condition(
                        "Ready",
                        false,
                        Some("ContainersNotReady"),
                        Some(not_ready),
                    )],
                    vec![container(state, last, false, *restarts)],
                )
            }
            Self::OomKilled => (
                "Running",
                vec![condition(
                    "Ready",
                    false,
                    Some("ContainersNotReady"),
                    Some(not_ready),
                )],
                vec![container(
                    waiting(
                        "CrashLoopBackOff",
                        "back-off restarting failed container app",
                    ),
                    Some(terminated(137, "OOMKilled", None)),
                    false,
                    1,
                )],
            ),
            Self::ImagePullBackOff => (
                "Pending",
                vec![condition(
                    "Ready",
                    false,
                    Some("ContainersNotReady"),
                    Some(not_ready),
                )],
                vec![container(
                    waiting(
                        "ImagePullBackOff",
                        "Back-off pulling image \"registry.invalid/app@sha256:…\": not found",
                    ),
                    None,
                    false,
                    0,
                )],
            ),
        };
        PodStatus {
            phase: Some(phase.to_string()),
            conditions: Some(conditions),
            container_statuses: (!containers.is_empty()).then_some(containers),
            start_time: time,
            ..PodStatus::default()
        }
    }
}

/// A pod of `deployment`'s current template, named `name`, in the state
/// `script` describes at `at` (what the ReplicaSet controller and the
/// kubelet would make of it).
pub fn pod_for(
    deployment: &k8s_openapi::api::apps::v1::Deployment,
    name: &str,
    script: &PodScript,
    at: Timestamp,
) -> k8s_openapi::api::core::v1::Pod {
    let template = crate::compat::deployment_spec(deployment)
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    k8s_openapi::api::core::v1::Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_string()),
            namespace: deployment.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            ..Default::default()
        },
        spec: template.spec,
        status: Some(script.status(at)),
    }
}
