//! One instance of an app crashes, and the kubelet restarts it, as under
//! the pod's `restartPolicy: Always`: the app's container ends (exit 137,
//! as a `SIGKILL` ends it; the pod is not ready, its log stream ends); on
//! the next [`tick`](super::FakeCluster::tick) the kubelet starts it again
//! at once (the first restart has no back-off): `restartCount` one up, the
//! ended run in `lastState`; [`READY_AGAIN_AFTER`] later it passes its
//! readiness probe again, if it had before.

use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::{FakeCluster, Key, State, meta_str, rollout::is_ready};
use crate::workload::CONTAINER;

/// How long a restarted container takes to pass its readiness probe.
const READY_AGAIN_AFTER: Duration = Duration::from_millis(500);

/// Where a killed pod is in its restart.
#[derive(Debug, Clone, Copy)]
pub(super) enum Restart {
    /// Its container ended; the kubelet restarts it on the next tick.
    Ended {
        /// Whether it was ready before.
        was_ready: bool,
    },
    /// Restarted at this instant; ready again [`READY_AGAIN_AFTER`] later.
    Started(Instant),
}

/// The app's container status of `pod`, to change.
fn app_container(pod: &mut Value) -> Option<&mut Value> {
    pod.pointer_mut("/status/containerStatuses")?
        .as_array_mut()?
        .iter_mut()
        .find(|c| c["name"] == CONTAINER)
}

/// Sets the `Ready` and `ContainersReady` conditions of `pod`.
fn set_ready(pod: &mut Value, ready: bool, now: &str) {
    let mut conditions: Vec<Value> = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != "Ready" && c["type"] != "ContainersReady");
    for type_ in ["ContainersReady", "Ready"] {
        conditions.push(if ready {
            json!({"type": type_, "status": "True", "lastTransitionTime": now})
        } else {
            json!({"type": type_, "status": "False", "reason": "ContainersNotReady",
                   "message": "containers with unready status: [app]",
                   "lastTransitionTime": now})
        });
    }
    pod["status"]["conditions"] = json!(conditions);
    if let Some(c) = app_container(pod) {
        c["ready"] = json!(ready);
    }
}

impl State {
    /// Moves the killed pods on: restarted, then ready again.
    pub(super) fn restart_killed(&mut self, now: Instant) {
        let stamp = Timestamp::now().to_string();
        let killed: Vec<(Key, Restart)> = self
            .restarting
            .iter()
            .map(|(k, r)| (k.clone(), *r))
            .collect();
        for (key, restart) in killed {
            let Some(mut pod) = self.objects.get(&key).cloned() else {
                self.restarting.remove(&key);
                continue;
            };
            match restart {
                Restart::Ended { was_ready } => {
                    if let Some(c) = app_container(&mut pod) {
                        let ended = c["state"].clone();
                        c["lastState"] = ended;
                        c["state"] = json!({"running": {"startedAt": stamp}});
                        c["started"] = json!(true);
                        let count = c["restartCount"].as_i64().unwrap_or(0);
                        c["restartCount"] = json!(count + 1);
                    }
                    if was_ready {
                        self.restarting.insert(key.clone(), Restart::Started(now));
                    } else {
                        self.restarting.remove(&key);
                    }
                }
                Restart::Started(at) if now - at >= READY_AGAIN_AFTER => {
                    set_ready(&mut pod, true, &stamp);
                    self.restarting.remove(&key);
                }
                Restart::Started(_) => continue,
            }
            self.put(key, pod);
        }
    }
}

impl FakeCluster {
    /// Kills instance `instance` of `app`: the app's container of its
    /// `instance`-th pod, oldest first (the order its logs number
    /// instances in), ends with exit 137 as a `SIGKILL` ends it, and the
    /// kubelet restarts it under `restartPolicy: Always`: on the next
    /// [`tick`](Self::tick) its container runs again (`restartCount` one
    /// up, the ended run in `lastState`), and half a second later it is
    /// ready again if it was. Whether there was such a pod.
    pub fn kill_instance(&self, app: &cameleer_runtime::AppRef, instance: u32) -> bool {
        let ns = crate::namespace::namespace_name(&app.tenant, &app.env);
        let selector = vec![("cameleer.io/app".to_string(), app.app.to_string())];
        let mut s = self.state();
        let mut pods: Vec<Value> = s
            .list("pods", Some(&ns), &selector)
            .into_iter()
            .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
            .collect();
        pods.sort_by(|a, b| {
            let order = |p: &Value| {
                (
                    meta_str(p, "creationTimestamp").and_then(|t| t.parse::<Timestamp>().ok()),
                    meta_str(p, "name").map(str::to_string),
                )
            };
            order(a).cmp(&order(b))
        });
        let Some(mut pod) = usize::try_from(instance)
            .ok()
            .and_then(|i| pods.get(i).cloned())
        else {
            return false;
        };
        let name = meta_str(&pod, "name").unwrap_or_default().to_string();
        let was_ready = is_ready(&pod);
        let stamp = Timestamp::now().to_string();
        let Some(c) = app_container(&mut pod) else {
            return false;
        };
        let started = c.pointer("/state/running/startedAt").cloned();
        c["state"] = json!({"terminated": {
            "exitCode": 137,
            "reason": "Error",
            "startedAt": started,
            "finishedAt": stamp,
        }});
        c["started"] = json!(false);
        set_ready(&mut pod, false, &stamp);
        // The container's log stream ends with it.
        s.followers
            .retain(|f| !(f.namespace == ns && f.pod == name));
        let key = ("pods".to_string(), ns, name);
        s.restarting
            .insert(key.clone(), Restart::Ended { was_ready });
        s.put(key, pod);
        s.settle();
        drop(s);
        self.requeue();
        true
    }
}
