//! What the cluster's view of an app means for its deployment: pure
//! functions from a [`Deployment`] and its [`Pod`]s to the core's
//! [`DeploymentStatus`] and typed [`StatusReason`].
//!
//! # The rules, in order
//!
//! 1. A Deployment stopped on request (annotation
//!    `cameleer.io/desired-state: stopped`, or 0 replicas) is
//!    STOPPED, [`StatusReason::StoppedOnRequest`] (FAILED with its reason
//!    when it had failed before it was stopped); one scaled to 0 by someone
//!    else is STOPPED, [`StatusReason::StoppedExternally`].
//! 2. The *current* pods are those of the Deployment's pod template: the
//!    same deployment id and the same rollout-restart stamp, not being
//!    deleted. Any current pod that failed makes the app FAILED:
//!    - image not pullable (`ErrImagePull`, `ImagePullBackOff`,
//!      `InvalidImageName`, `ErrImageNeverPull`):
//!      [`StatusReason::ImagePullFailed`];
//!    - refused by the runtime (`CreateContainerConfigError`,
//!      `CreateContainerError`, `RunContainerError`) or not schedulable
//!      (`PodScheduled=False`, `Unschedulable`):
//!      [`StatusReason::StartRefused`];
//!    - the app's container ended (now or in its last state): the kernel's
//!      OOM kill is [`StatusReason::OomKilled`], any other exit
//!      [`StatusReason::from_exit`] of its code and its termination message
//!      (the pod's last log lines, so the JVM's own `OutOfMemoryError` is
//!      told from an exit 3). Once the kubelet has restarted it
//!      [`CRASH_LOOP_RESTARTS`] times and backs off (`CrashLoopBackOff`) it
//!      is [`StatusReason::CrashLoop`] with that exit as `last`. So a pod in
//!      `CrashLoopBackOff` never reads RUNNING, and the first crash reads as
//!      what it was, as on Docker.
//!
//!    With several replicas, a crash (the container ended, now or before
//!    the kubelet restarted it) fails the app only when none of the current
//!    pods' containers runs: otherwise it is one instance down, counted in
//!    the restarts (rule 4), as on Docker. The other failures (image,
//!    runtime, scheduling) fail it whatever the other pods do.
//! 3. A Deployment whose rollout missed its deadline
//!    (`Progressing=False`, `ProgressDeadlineExceeded`) is FAILED,
//!    [`StatusReason::HealthTimeout`]; one whose pods cannot be created
//!    (`ReplicaFailure=True`: quota, admission) FAILED,
//!    [`StatusReason::StartRefused`].
//! 4. As many current pods ready (for `minReadySeconds`) as replicas wanted:
//!    RUNNING. Anything else: STARTING.
//!
//! That is [`observe`]: the status of the version of the Deployment's pod
//! template, which a deploy waits on and events report.
//! [`observe_serving`], what `app_status` and `list_apps` report, is the
//! version that serves: while the template's is not RUNNING and pods of an
//! older template are still ready, the older one.

use std::collections::BTreeMap;

use cameleer_runtime::identity::{DeploymentIdentity, IdentityKey};
use cameleer_runtime::{DeploymentStatus, StatusReason};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod, PodTemplateSpec};
use time::OffsetDateTime;

use crate::compat;
use crate::workload::{CONTAINER, DESIRED_STATE, FAILED_REASON, RESTARTED_AT, STOPPED};

/// After this many restarts in `CrashLoopBackOff`, a crash reads as
/// [`StatusReason::CrashLoop`] rather than as its last exit.
pub const CRASH_LOOP_RESTARTS: i32 = 3;

const IMAGE_PULL: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];
const START_REFUSED: &[&str] = &[
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "PreStartHookError",
    "PostStartHookError",
];

/// What an app's Deployment and pods say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Which version the Deployment runs (its template's labels).
    pub identity: DeploymentIdentity,
    /// STARTING, RUNNING, FAILED or STOPPED.
    pub status: DeploymentStatus,
    /// Why, for FAILED and STOPPED, and for STARTING while some of the
    /// wanted pods are not ready.
    pub reason: Option<StatusReason>,
    /// Pods of the app that are ready, of whichever version: the
    /// Deployment's `readyReplicas` (during a rolling update, the old and
    /// the new ReplicaSet's together).
    pub ready: u32,
    /// Pods the Deployment wants (`spec.replicas`).
    pub desired: u32,
    /// Restarts of the app's container in the current pods.
    pub restarts: u32,
}

impl Observed {
    /// As the core's [`AppStatus`](cameleer_runtime::AppStatus) of `app`.
    pub fn to_status(&self, app: &cameleer_runtime::AppRef) -> cameleer_runtime::AppStatus {
        cameleer_runtime::AppStatus::new(
            app.clone(),
            self.status,
            Some(self.identity.deployment),
            Some(self.identity.version),
            self.reason.clone(),
        )
        .with_instances(self.ready, self.desired)
        .with_restarts(self.restarts)
    }
}

/// The identity a pod template (or any object's labels) carries; `None`
/// when it is not ours.
pub fn identity_of(labels: Option<&BTreeMap<String, String>>) -> Option<DeploymentIdentity> {
    let labels = labels?;
    DeploymentIdentity::parse(|k: IdentityKey| labels.get(&k.kubernetes()).map(String::as_str))
}

/// The identity of the version `deployment` runs.
pub fn deployment_identity(deployment: &Deployment) -> Option<DeploymentIdentity> {
    let template = &compat::deployment_spec(deployment)?.template;
    identity_of(template.metadata.as_ref()?.labels.as_ref())
}

/// Whether the Deployment is stopped on request.
pub fn is_stopped(deployment: &Deployment) -> bool {
    let annotated = deployment
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESIRED_STATE))
        .is_some_and(|v| v == STOPPED);
    let no_replicas = compat::deployment_spec(deployment)
        .and_then(|s| s.replicas)
        .is_some_and(|r| r == 0);
    annotated || no_replicas
}

fn restarted_at(template: &PodTemplateSpec) -> Option<&String> {
    template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(RESTARTED_AT)
}

/// Whether `pod` belongs to `deployment`'s current pod template.
pub fn is_current(deployment: &Deployment, pod: &Pod) -> bool {
    let Some(spec) = compat::deployment_spec(deployment) else {
        return false;
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(want) = deployment_identity(deployment) else {
        return false;
    };
    let Some(have) = identity_of(pod.metadata.labels.as_ref()) else {
        return false;
    };
    let pod_restart = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RESTARTED_AT));
    have == want && pod_restart == restarted_at(&spec.template)
}

/// The reason a terminated container gives.
fn termination_reason(t: &ContainerStateTerminated) -> StatusReason {
    if t.reason.as_deref() == Some("OOMKilled") {
        return StatusReason::OomKilled;
    }
    StatusReason::from_exit(i64::from(t.exit_code), t.message.as_deref())
}

/// Why `pod` failed, if it did; see the [module docs](self).
pub fn pod_failure(pod: &Pod) -> Option<StatusReason> {
    pod_refusal(pod).or_else(|| pod_crash(pod))
}

/// Why `pod` never started its app, if so: it failed as a whole, is not
/// schedulable, or its container cannot be created (image, runtime). A
/// restart does not heal these.
fn pod_refusal(pod: &Pod) -> Option<StatusReason> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        return Some(StatusReason::StartRefused {
            detail: format!(
                "the pod failed: {}",
                status
                    .message
                    .as_deref()
                    .or(status.reason.as_deref())
                    .unwrap_or("no reason given")
            ),
        });
    }
    for c in status.conditions.iter().flatten() {
        if c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
        {
            return Some(StatusReason::StartRefused {
                detail: format!(
                    "unschedulable: {}",
                    c.message.as_deref().unwrap_or("no node fits")
                ),
            });
        }
    }
    let state = app_container(pod)?.state.as_ref();
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
        let reason = waiting.reason.as_deref().unwrap_or_default();
        let detail = || {
            waiting
                .message
                .clone()
                .unwrap_or_else(|| reason.to_string())
        };
        if IMAGE_PULL.contains(&reason) {
            return Some(StatusReason::ImagePullFailed { detail: detail() });
        }
        if START_REFUSED.contains(&reason) {
            return Some(StatusReason::StartRefused { detail: detail() });
        }
    }
    None
}

/// The app's container of `pod`.
fn app_container(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER)
}

/// Whether the app's container of `pod` runs now (restarted or not).
fn is_running(pod: &Pod) -> bool {
    app_container(pod)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

/// How the app's container of `pod` ended, now or before the kubelet
/// restarted it, if it did (see the [module docs](self)).
fn pod_crash(pod: &Pod) -> Option<StatusReason> {
    let container = app_container(pod)?;
    let state = container.state.as_ref();
    let terminated = state
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| container.last_state.as_ref()?.terminated.as_ref());
    let backing_off = state
        .and_then(|s| s.waiting.as_ref())
        .is_some_and(|w| w.reason.as_deref() == Some("CrashLoopBackOff"));
    let restarts = container.restart_count;
    match terminated {
        Some(t) if backing_off && restarts >= CRASH_LOOP_RESTARTS => {
            Some(StatusReason::CrashLoop {
                restarts: u32::try_from(restarts).ok(),
                last: Some(Box::new(termination_reason(t))),
            })
        }
        Some(t) => Some(termination_reason(t)),
        None if backing_off => Some(StatusReason::CrashLoop {
            restarts: u32::try_from(restarts).ok(),
            last: None,
        }),
        None => None,
    }
}

/// Whether `pod` is ready, and since when.
fn ready_since(pod: &Pod) -> Option<Option<OffsetDateTime>> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        c.last_transition_time
            .as_ref()
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t.0.as_second()).ok()),
    )
}

/// What the readiness of `pod` says, for a health timeout.
fn not_ready_message(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "ContainersReady" || c.type_ == "Ready") && c.status == "False")
        .and_then(|c| c.message.clone())
}

/// The status of the app that `deployment` runs, given the pods that carry
/// its labels (current or not) at `now`; `None` when the Deployment is not
/// ours. See the [module docs](self).
pub fn observe(deployment: &Deployment, pods: &[Pod], now: OffsetDateTime) -> Option<Observed> {
    let identity = deployment_identity(deployment)?;
    let spec = compat::deployment_spec(deployment)?;
    let current: Vec<&Pod> = pods.iter().filter(|p| is_current(deployment, p)).collect();
    let to_u32 = |n: i32| u32::try_from(n.max(0)).unwrap_or(0);
    let ready_replicas = deployment
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .map_or(0, to_u32);
    let desired = to_u32(spec.replicas.unwrap_or(1));
    let restarts: u32 = current
        .iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter(|c| c.name == CONTAINER)
        .map(|c| to_u32(c.restart_count))
        .sum();
    let observed = |status, reason| Observed {
        identity: identity.clone(),
        status,
        reason,
        ready: ready_replicas,
        desired,
        restarts,
    };
    if is_stopped(deployment) {
        let failed = deployment
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(FAILED_REASON))
            .and_then(|json| serde_json::from_str::<StatusReason>(json).ok());
        let on_request = deployment
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DESIRED_STATE))
            .is_some_and(|v| v == STOPPED);
        return Some(match failed {
            Some(reason) => observed(DeploymentStatus::Failed, Some(reason)),
            None if on_request => observed(
                DeploymentStatus::Stopped,
                Some(StatusReason::StoppedOnRequest),
            ),
            // Scaled to 0 by someone else (`kubectl scale`).
            None => observed(
                DeploymentStatus::Stopped,
                Some(StatusReason::StoppedExternally),
            ),
        });
    }
    let failure = if desired <= 1 {
        current.iter().find_map(|p| pod_failure(p))
    } else {
        // Several replicas: the kubelet restarts a crashed container, so
        // while one of the current pods runs, a crash is one instance down
        // (and counted in restarts), not a failed app.
        let running = current.iter().any(|p| is_running(p));
        current
            .iter()
            .find_map(|p| pod_refusal(p).or_else(|| pod_crash(p).filter(|_| !running)))
    };
    if let Some(reason) = failure {
        return Some(observed(DeploymentStatus::Failed, Some(reason)));
    }
    let conditions = deployment
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref());
    let generation_seen = deployment
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        >= deployment.metadata.generation;
    for c in conditions.into_iter().flatten() {
        let (type_, status) = compat::condition(c);
        if type_ == "Progressing"
            && status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            && generation_seen
        {
            let after_secs = start_timeout(&spec.template).as_secs();
            let last_probe = current
                .iter()
                .find_map(|p| not_ready_message(p))
                .or_else(|| c.message.clone());
            return Some(observed(
                DeploymentStatus::Failed,
                Some(StatusReason::HealthTimeout {
                    after_secs,
                    last_probe,
                }),
            ));
        }
        if type_ == "ReplicaFailure" && status == "True" {
            return Some(observed(
                DeploymentStatus::Failed,
                Some(StatusReason::StartRefused {
                    detail: c
                        .message
                        .clone()
                        .unwrap_or_else(|| "the pods cannot be created".into()),
                }),
            ));
        }
    }
    let min_ready = time::Duration::seconds(i64::from(spec.min_ready_seconds.unwrap_or(0)));
    let ready = current
        .iter()
        .filter_map(|p| ready_since(p))
        .filter(|since| min_ready.is_zero() || since.is_some_and(|t| now - t >= min_ready))
        .count();
    let wanted = desired.max(1);
    let ready = u32::try_from(ready).unwrap_or(u32::MAX);
    let (status, reason) = match cameleer_runtime::instances_status(ready, wanted) {
        // One pod: STARTING says enough, as it always did.
        (status, _) if wanted == 1 => (status, None),
        other => other,
    };
    let mut o = observed(status, reason);
    // The informer may not have seen the Deployment's status catch up with
    // its pods yet; the pods are the fresher truth.
    o.ready = o.ready.max(ready);
    Some(o)
}

/// The status of the app `deployment` runs as its clients see it: the
/// version that serves. [`observe`] is about the Deployment's pod template,
/// the version being rolled out; while that one is not RUNNING (still
/// rolling out, or its rollout failed) and pods of an older template are
/// still ready, those serve (the rolling update with `maxUnavailable: 0`
/// keeps them until the new pods are ready), so the status is theirs: their
/// version, RUNNING when as many pods of any version are ready as the
/// Deployment wants, and the restarts of their pods. Otherwise (the
/// template's version is RUNNING or STOPPED, or nothing older serves) it is
/// [`observe`]'s.
pub fn observe_serving(
    deployment: &Deployment,
    pods: &[Pod],
    now: OffsetDateTime,
) -> Option<Observed> {
    let rollout = observe(deployment, pods, now)?;
    if matches!(
        rollout.status,
        DeploymentStatus::Running | DeploymentStatus::Stopped
    ) {
        return Some(rollout);
    }
    let live = || {
        pods.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && selects(deployment, p))
    };
    let mut older: Vec<(DeploymentIdentity, usize)> = Vec::new();
    for pod in live().filter(|p| !is_current(deployment, p) && ready_since(p).is_some()) {
        let Some(id) = identity_of(pod.metadata.labels.as_ref()) else {
            continue;
        };
        match older.iter_mut().find(|(known, _)| *known == id) {
            Some((_, n)) => *n += 1,
            None => older.push((id, 1)),
        }
    }
    // Of several older versions (redeploys in a row), the one with the
    // most ready pods.
    let Some((identity, _)) = older.into_iter().max_by_key(|(_, n)| *n) else {
        return Some(rollout);
    };
    let ready = live().filter(|p| ready_since(p).is_some()).count();
    let ready = u32::try_from(ready).unwrap_or(u32::MAX).max(rollout.ready);
    let restarts = live()
        .filter(|p| identity_of(p.metadata.labels.as_ref()).as_ref() == Some(&identity))
        .filter_map(app_container)
        .map(|c| u32::try_from(c.restart_count.max(0)).unwrap_or(0))
        .sum();
    let (status, reason) = match cameleer_runtime::instances_status(ready, rollout.desired) {
        (status, _) if rollout.desired <= 1 => (status, None),
        other => other,
    };
    Some(Observed {
        identity,
        status,
        reason,
        ready,
        desired: rollout.desired,
        restarts,
    })
}

/// Whether `pod` carries the labels `deployment` selects its pods by (of
/// whichever template): `pods` may hold a whole namespace's.
fn selects(deployment: &Deployment, pod: &Pod) -> bool {
    let Some(wanted) =
        compat::deployment_spec(deployment).and_then(|s| s.selector.match_labels.as_ref())
    else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    wanted
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the rollout of `deployment`'s template is over: no pod of it
/// of another template is left that is not being deleted.
pub fn rollout_done(deployment: &Deployment, pods: &[Pod]) -> bool {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && selects(deployment, p))
        .all(|p| is_current(deployment, p))
}

/// The start timeout a pod template's annotations record (120 s when they
/// do not).
pub fn start_timeout(template: &PodTemplateSpec) -> std::time::Duration {
    crate::workload::template_metadata(template)
        .map_or(std::time::Duration::from_secs(120), |m| m.start_timeout)
}

/// The last lines the app wrote before its container of a current pod
/// ended (its termination message, which `FallbackToLogsOnError` fills
/// from the log).
pub fn last_output(deployment: &Deployment, pods: &[Pod]) -> Option<String> {
    pods.iter()
        .filter(|p| is_current(deployment, p))
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter(|c| c.name == CONTAINER)
        .find_map(|c| {
            let t = c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .or_else(|| c.last_state.as_ref()?.terminated.as_ref())?;
            t.message.clone().filter(|m| !m.trim().is_empty())
        })
}

/// When the next pod of `deployment` becomes available by `minReadySeconds`
/// alone (no event announces it), so a waiter knows when to look again.
pub fn next_readiness_deadline(
    deployment: &Deployment,
    pods: &[Pod],
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let min_ready = compat::deployment_spec(deployment)?
        .min_ready_seconds
        .unwrap_or(0);
    if min_ready == 0 {
        return None;
    }
    let min_ready = time::Duration::seconds(i64::from(min_ready));
    pods.iter()
        .filter(|p| is_current(deployment, p))
        .filter_map(|p| ready_since(p).flatten())
        .map(|since| since + min_ready)
        .filter(|at| *at > now)
        .min()
}

#[cfg(test)]
mod tests;
