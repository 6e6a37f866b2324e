//! The Deployment and ReplicaSet controllers, as the fake plays them: a
//! Deployment's pods follow its template and replicas with the rolling
//! update the backend renders (`maxSurge: 1`, `maxUnavailable: 0`), and its
//! status follows its pods, field by field as the Deployment controller
//! writes it (`pkg/controller/deployment`: `rolling.go`, `sync.go`,
//! `progress.go`).
//!
//! The pods of one template are told by their `pod-template-hash` label, as
//! the ReplicaSet of that template would own them. Each step:
//!
//! 1. scales the new ReplicaSet up, never past `replicas + maxSurge` pods in
//!    all (`reconcileNewReplicaSet`);
//! 2. scales the old ones down by as many pods as may go while `replicas`
//!    stay available, the unavailable ones first
//!    (`reconcileOldReplicaSets`: `allPods - minAvailable -
//!    newUnavailable`); pods go at once (no graceful termination);
//! 3. writes the status: `observedGeneration`, `replicas`,
//!    `updatedReplicas`, `readyReplicas`, `availableReplicas` (ready for
//!    `minReadySeconds`), `unavailableReplicas`, and the `Available` and
//!    `Progressing` conditions (`NewReplicaSetAvailable` once complete,
//!    `ReplicaSetUpdated` while rolling, `ProgressDeadlineExceeded` once
//!    [`FakeCluster::tick`](super::FakeCluster::tick) saw the deadline pass).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::{Key, State, image_of, matches};
use crate::testing::kubelet::PodScript;

/// Extra pods a rolling update may run (`maxSurge`, as rendered).
const MAX_SURGE: usize = 1;

/// Whether pod `o` is ready.
pub(super) fn is_ready(o: &Value) -> bool {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Since when pod `o` has been ready, if it is.
fn ready_since(o: &Value) -> Option<Timestamp> {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")?["lastTransitionTime"]
        .as_str()?
        .parse()
        .ok()
}

/// Whether pod `o` has been ready for `min_ready` seconds at `now`
/// (available, in the controller's words).
fn is_available(o: &Value, min_ready: i64, now: Timestamp) -> bool {
    if !is_ready(o) {
        return false;
    }
    min_ready == 0 || ready_since(o).is_some_and(|t| now.as_second() - t.as_second() >= min_ready)
}

impl State {
    /// One step of the controllers for Deployment `key`; whether anything
    /// changed.
    pub(super) fn step_deployment(&mut self, key: &Key, object: &Value) -> bool {
        let ns = key.1.clone();
        let Ok(d) = serde_json::from_value::<Deployment>(object.clone()) else {
            return false;
        };
        let Some(spec) = crate::compat::deployment_spec(&d) else {
            return false;
        };
        let replicas = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
        let min_ready = i64::from(spec.min_ready_seconds.unwrap_or(0));
        let selector: Vec<(String, String)> = spec
            .selector
            .match_labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let template = serde_json::to_value(&spec.template).unwrap_or_default();
        let hash = {
            let digest = cameleer_build::Sha256Digest::of(template.to_string().as_bytes());
            digest.to_string()[..10].to_string()
        };
        let is_new = |o: &Value| {
            o.pointer("/metadata/labels/pod-template-hash")
                .and_then(Value::as_str)
                == Some(hash.as_str())
        };
        let pods_now = |s: &Self| -> Vec<(Key, Value)> {
            s.objects
                .iter()
                .filter(|((r, n, _), o)| r == "pods" && *n == ns && matches(o, &selector))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let mut changed = false;
        let pods = pods_now(self);
        let (new, old): (Vec<_>, Vec<_>) = pods.into_iter().partition(|(_, o)| is_new(o));

        // 1. The new ReplicaSet: up to replicas, within the surge; down to
        // replicas (not ready ones first) when there are fewer wanted.
        let room = (replicas + MAX_SURGE).saturating_sub(new.len() + old.len());
        let up = room.min(replicas.saturating_sub(new.len()));
        for _ in 0..up {
            self.create_pod(key, &template, &hash);
            changed = true;
        }
        let mut extra: Vec<&(Key, Value)> = new.iter().collect();
        extra.sort_by_key(|(_, o)| is_ready(o));
        for (k, _) in extra.into_iter().take(new.len().saturating_sub(replicas)) {
            self.remove(k);
            changed = true;
        }

        // 2. The old ones: as many as may go while `replicas` stay
        // available (maxUnavailable 0), the unavailable ones first.
        let now = Timestamp::now();
        let new_count = (new.len() + up).min(replicas);
        let new_available = new
            .iter()
            .filter(|(_, o)| is_available(o, min_ready, now))
            .count()
            .min(new_count);
        let all = new_count + old.len();
        let may_go = all.saturating_sub(replicas + (new_count - new_available));
        let mut old: Vec<&(Key, Value)> = old.iter().collect();
        old.sort_by_key(|(_, o)| is_available(o, min_ready, now));
        for (k, _) in old.into_iter().take(may_go) {
            self.remove(k);
            changed = true;
        }

        // 3. The status follows the pods.
        let pods: Vec<Value> = pods_now(self).into_iter().map(|(_, v)| v).collect();
        // A pod ready but not yet available becomes so with no change to
        // announce it: look again then.
        if let Some(wait) = pods
            .iter()
            .filter(|o| is_ready(o) && !is_available(o, min_ready, now))
            .filter_map(ready_since)
            .map(|t| ((t.as_second() + min_ready) * 1000 - now.as_millisecond() + 50).max(0))
            .min()
        {
            let at = std::time::Instant::now()
                + std::time::Duration::from_millis(u64::try_from(wait).unwrap_or(0));
            self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
        }
        let generation = object
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let status = self.deployment_status(key, &pods, replicas, generation, &hash, |o| {
            (is_new(o), is_available(o, min_ready, now))
        });
        if object.get("status") != Some(&status)
            && let Some(mut current) = self.objects.get(key).cloned()
        {
            current["status"] = status;
            self.put(key.clone(), current);
            changed = true;
        }
        changed
    }

    /// The status the Deployment controller writes for Deployment `key`
    /// with `pods`; `classify` tells of a pod whether it is of the new
    /// template and available.
    fn deployment_status(
        &self,
        key: &Key,
        pods: &[Value],
        replicas: usize,
        generation: i64,
        hash: &str,
        classify: impl Fn(&Value) -> (bool, bool),
    ) -> Value {
        let updated = pods.iter().filter(|o| classify(o).0).count();
        let ready = pods.iter().filter(|o| is_ready(o)).count();
        let available = pods.iter().filter(|o| classify(o).1).count();
        let new_available = pods.iter().filter(|o| classify(o) == (true, true)).count();
        let deadline = self.deadlines.get(&(key.1.clone(), key.2.clone())) == Some(&generation);
        let complete = updated == replicas && pods.len() == replicas && new_available == replicas;
        let rs = format!("{}-{hash}", key.2);
        let progressing = if complete {
            json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                   "message": format!("ReplicaSet \"{rs}\" has successfully progressed.")})
        } else if deadline {
            json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                   "message": format!("ReplicaSet \"{rs}\" has timed out progressing.")})
        } else {
            json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                   "message": format!("ReplicaSet \"{rs}\" is progressing.")})
        };
        // maxUnavailable 0: available means all `replicas` available.
        let available_condition = if available >= replicas {
            json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                   "message": "Deployment has minimum availability."})
        } else {
            json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                   "message": "Deployment does not have minimum availability."})
        };
        let mut status = json!({
            "observedGeneration": generation,
            "replicas": pods.len(),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "conditions": [available_condition, progressing],
        });
        let unavailable = pods.len().max(replicas).saturating_sub(available);
        if unavailable > 0 {
            status["unavailableReplicas"] = json!(unavailable);
        }
        status
    }

    /// A pod of Deployment `key`'s `template` (hash `hash`), as the
    /// ReplicaSet controller creates it and the kubelet starts it (its
    /// script, by deployment id or image).
    fn create_pod(&mut self, key: &Key, template: &Value, hash: &str) {
        let ns = key.1.clone();
        let name = self.new_pod_name(&key.2, hash);
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": template.get("metadata").cloned().unwrap_or(json!({})),
            "spec": template.get("spec").cloned().unwrap_or(json!({})),
        });
        pod["metadata"]["name"] = json!(name);
        pod["metadata"]["namespace"] = json!(ns);
        pod["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        pod["metadata"]["creationTimestamp"] = json!(Timestamp::now().to_string());
        pod["metadata"]["uid"] = json!(format!("uid-{name}"));
        let id = pod
            .pointer("/metadata/labels/cameleer.io~1deployment")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let image = image_of(&pod);
        let script = self
            .scripts
            .get(&id)
            .or_else(|| {
                self.by_image
                    .iter()
                    .find(|(key, _)| image.contains(key.as_str()))
                    .map(|(_, script)| script)
            })
            .cloned()
            .unwrap_or(PodScript::Pending);
        pod["status"] = serde_json::to_value(script.status(Timestamp::now())).unwrap_or_default();
        self.born
            .insert((ns.clone(), name.clone()), std::time::Instant::now());
        self.put(("pods".into(), ns, name), pod);
    }
}
