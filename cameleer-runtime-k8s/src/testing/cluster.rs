//! [`FakeCluster`]: a scripted in-memory API server, so that watch-driven
//! status is tested end to end without a cluster.
//!
//! It keeps objects with resource versions and answers, over the same HTTP
//! API a real server speaks (the kube client cannot tell):
//!
//! - `get`, `list` (with label selectors), `watch` (replaying from a
//!   resource version, `410 Gone` once compacted), server-side `apply`
//!   (`PATCH`, `application/apply-patch+yaml`, `fieldManager` required) and
//!   `delete`, for namespaces, Deployments, pods, Services, NetworkPolicies,
//!   ResourceQuotas, LimitRanges, Jobs, Secrets and ConfigMaps;
//! - `pods/log` with `sinceTime`, `timestamps` and `follow`.
//!
//! It plays the controllers a test needs: a Deployment's pods follow its
//! template and replicas with the rolling update the backend renders (one
//! new pod at a time, an old one going once a new one is ready: see
//! `rollout`), its status follows its pods as the Deployment controller
//! writes it, a Job gets a pod. The test plays the kubelet:
//! [`FakeCluster::script`] sets what the pods of a deployment do
//! ([`PodScript`]: ready, crash-looping, OOM-killed, image not pullable…),
//! [`FakeCluster::log`] what they write, [`FakeCluster::kill_instance`]
//! crashes one pod's container, which the kubelet restarts. It can also break
//! things: fail the next matching calls with a status
//! ([`FakeCluster::fail`]), drop every watch ([`FakeCluster::drop_watches`])
//! or compact history so watches get `410 Gone`
//! ([`FakeCluster::expire_watches`]). Every request is recorded
//! ([`FakeCluster::requests`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::kubelet::PodScript;

mod crash;
mod rollout;

/// One request the fake API server answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// `GET`, `PATCH`, `DELETE`, …
    pub method: String,
    /// The path, e.g. `/apis/apps/v1/namespaces/cameleer-acme-dev/deployments/orders`.
    pub path: String,
    /// The query parameters, decoded.
    pub query: BTreeMap<String, String>,
    /// The request body, when it was JSON.
    pub body: Option<Value>,
    /// The RBAC verb the request needs (`get`, `list`, `watch`, `create`,
    /// `patch`, `delete`).
    pub verb: String,
    /// The RBAC resource: `plural[.group][/subresource]`.
    pub resource: String,
    /// The namespace, for namespaced requests.
    pub namespace: Option<String>,
}

/// A failure a test injects.
#[derive(Debug, Clone)]
struct Injected {
    method: Method,
    path_contains: String,
    status: u16,
    times: usize,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    group: String,
    version: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    sub: Option<String>,
}

impl Route {
    fn parse(path: &str) -> Option<Self> {
        let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match seg.as_slice() {
            ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
            ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
            _ => (None, rest),
        };
        let (resource, name, sub) = match rest {
            [r] => (r.to_string(), None, None),
            [r, n] => (r.to_string(), Some(n.to_string()), None),
            [r, n, s] => (r.to_string(), Some(n.to_string()), Some(s.to_string())),
            _ => return None,
        };
        Some(Self {
            group,
            version,
            namespace,
            resource,
            name,
            sub,
        })
    }

    /// `plural[.group]`.
    fn full(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// `apiVersion` and `kind` of a resource.
fn kind_of(full: &str) -> (&'static str, &'static str) {
    match full {
        "namespaces" => ("v1", "Namespace"),
        "pods" => ("v1", "Pod"),
        "services" => ("v1", "Service"),
        "resourcequotas" => ("v1", "ResourceQuota"),
        "limitranges" => ("v1", "LimitRange"),
        "secrets" => ("v1", "Secret"),
        "configmaps" => ("v1", "ConfigMap"),
        "deployments.apps" => ("apps/v1", "Deployment"),
        "networkpolicies.networking.k8s.io" => ("networking.k8s.io/v1", "NetworkPolicy"),
        "jobs.batch" => ("batch/v1", "Job"),
        _ => ("v1", "Unknown"),
    }
}

type Key = (String, String, String);

/// An open watch.
struct Watcher {
    resource: String,
    namespace: Option<String>,
    selector: Vec<(String, String)>,
    tx: mpsc::UnboundedSender<Bytes>,
}

/// An open `follow` log stream.
struct LogFollower {
    namespace: String,
    pod: String,
    tx: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    /// Every change: (resource version, type, object).
    history: Vec<(u64, &'static str, Value)>,
    /// Watches from before this resource version get `410 Gone`.
    compacted: u64,
    watchers: Vec<Watcher>,
    followers: Vec<LogFollower>,
    /// What the pods of each deployment id do.
    scripts: BTreeMap<String, PodScript>,
    /// Deployment (ns, name) → generations whose progress deadline passed.
    deadlines: BTreeMap<(String, String), i64>,
    logs: BTreeMap<(String, String), Vec<(Timestamp, String)>>,
    injected: Vec<Injected>,
    requests: Vec<Recorded>,
    pod_counter: u64,
    /// Pods whose image contains the key start as the script says (when
    /// their deployment has no script of its own).
    by_image: Vec<(String, PodScript)>,
    /// Pods whose image contains the key change to the script this long
    /// after they were created.
    later_by_image: Vec<(String, std::time::Duration, PodScript)>,
    /// When each pod was created.
    born: BTreeMap<(String, String), std::time::Instant>,
    /// Pods that took their later script already.
    moved_on: std::collections::BTreeSet<(String, String)>,
    /// When a ready pod becomes available by `minReadySeconds`, for
    /// [`FakeCluster::requeue`].
    wake_at: Option<std::time::Instant>,
    /// Pods killed with [`FakeCluster::kill_instance`], being restarted.
    restarting: BTreeMap<Key, crash::Restart>,
    /// When each Deployment's current generation was applied.
    applied_at: BTreeMap<(String, String), (i64, std::time::Instant)>,
}

fn meta_str<'a>(o: &'a Value, field: &str) -> Option<&'a str> {
    o.get("metadata")?.get(field)?.as_str()
}

/// The image of the first container of pod `o`.
fn image_of(o: &Value) -> String {
    o.pointer("/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn labels_of(o: &Value) -> BTreeMap<String, String> {
    o.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn parse_selector(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn matches(o: &Value, selector: &[(String, String)]) -> bool {
    let labels = labels_of(o);
    selector
        .iter()
        .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn reason_of(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        _ => "InternalError",
    }
}

impl State {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Stores `object` (new or changed) and tells the watches.
    fn put(&mut self, key: Key, mut object: Value) {
        let rv = self.next_rv();
        let existed = self.objects.contains_key(&key);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key.clone(), object.clone());
        let kind = if existed { "MODIFIED" } else { "ADDED" };
        self.emit(&key.0, rv, kind, object);
    }

    fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.emit(&key.0, rv, "DELETED", object.clone());
        if key.0 == "pods" {
            let pod = (key.1.clone(), key.2.clone());
            self.followers
                .retain(|f| (f.namespace.clone(), f.pod.clone()) != pod);
        }
        Some(object)
    }

    fn emit(&mut self, resource: &str, rv: u64, kind: &'static str, object: Value) {
        self.history.push((rv, kind, object.clone()));
        let ns = meta_str(&object, "namespace").map(str::to_string);
        let line = watch_line(kind, &object);
        self.watchers.retain(|w| {
            if w.resource != resource
                || (w.namespace.is_some() && w.namespace != ns)
                || !matches(&object, &w.selector)
            {
                return !w.tx.is_closed();
            }
            w.tx.send(line.clone()).is_ok()
        });
    }

    fn list(&self, resource: &str, ns: Option<&str>, selector: &[(String, String)]) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, n, _), o)| {
                r == resource && ns.is_none_or(|ns| ns == n) && matches(o, selector)
            })
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Plays the Deployment, ReplicaSet and Job controllers until nothing
    /// changes.
    fn settle(&mut self) {
        for _ in 0..8 {
            if !self.step() {
                return;
            }
        }
    }

    fn step(&mut self) -> bool {
        let mut changed = false;
        let deployments: Vec<(Key, Value)> = self
            .objects
            .iter()
            .filter(|((r, _, _), _)| r == "deployments.apps")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, object) in deployments {
            changed |= self.step_deployment(&key, &object);
        }
        let jobs: Vec<(Key, Value)> = self
            .objects
            .iter()
            .filter(|((r, _, _), _)| r == "jobs.batch")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, object) in jobs {
            changed |= self.step_job(&key, &object);
        }
        changed
    }

    fn new_pod_name(&mut self, base: &str, hash: &str) -> String {
        self.pod_counter += 1;
        format!("{base}-{hash}-{:05x}", self.pod_counter)
    }

    fn step_job(&mut self, key: &Key, object: &Value) -> bool {
        let ns = key.1.clone();
        let selector = vec![("job-name".to_string(), key.2.clone())];
        let pods = self.list("pods", Some(&ns), &selector);
        if pods.is_empty() && object.pointer("/status/conditions").is_none() {
            let name = self.new_pod_name(&key.2, "job");
            let template = object
                .pointer("/spec/template")
                .cloned()
                .unwrap_or(json!({}));
            let mut pod = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": template.get("metadata").cloned().unwrap_or(json!({})),
                "spec": template.get("spec").cloned().unwrap_or(json!({})),
                "status": {"phase": "Pending"},
            });
            pod["metadata"]["name"] = json!(name);
            pod["metadata"]["namespace"] = json!(ns);
            pod["metadata"]["labels"]["job-name"] = json!(key.2);
            pod["metadata"]["labels"]["batch.kubernetes.io/job-name"] = json!(key.2);
            pod["metadata"]["creationTimestamp"] = json!(Timestamp::now().to_string());
            self.put(("pods".into(), ns, name), pod);
            return true;
        }
        let phase = pods.iter().find_map(|p| {
            p.pointer("/status/phase")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        let condition = match phase.as_deref() {
            Some("Succeeded") => Some(json!({"type": "Complete", "status": "True"})),
            Some("Failed") => Some(json!({
                "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            })),
            _ => None,
        };
        if let Some(c) = condition
            && object.pointer("/status/conditions/0") != Some(&c)
            && let Some(mut current) = self.objects.get(key).cloned()
        {
            current["status"] = json!({"conditions": [c]});
            self.put(key.clone(), current);
            return true;
        }
        false
    }
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

pub(super) type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

fn full(code: StatusCode, value: &Value) -> Response<Body> {
    let body = http_body_util::Full::new(Bytes::from(value.to_string()));
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(body.boxed_unsync())
        .unwrap_or_default()
}

fn text(code: StatusCode, text: String) -> Response<Body> {
    let body = http_body_util::Full::new(Bytes::from(text));
    Response::builder()
        .status(code)
        .body(body.boxed_unsync())
        .unwrap_or_default()
}

fn streaming(rx: mpsc::UnboundedReceiver<Bytes>, first: Vec<Bytes>) -> Response<Body> {
    let stream = futures::stream::iter(first)
        .chain(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (b, rx))
        }))
        .map(|b| Ok::<_, Infallible>(http_body::Frame::data(b)));
    Response::builder()
        .status(StatusCode::OK)
        .body(BodyExt::boxed_unsync(StreamBody::new(stream)))
        .unwrap_or_default()
}

fn error(code: u16, message: &str) -> Response<Body> {
    full(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &status_body(code, reason_of(code), message),
    )
}

/// The scripted in-memory API server. Cheap to clone: clones share it.
#[derive(Clone, Default)]
pub struct FakeCluster {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCluster").finish_non_exhaustive()
    }
}

impl FakeCluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A kube client talking to this server.
    pub fn client(&self) -> kube::Client {
        let me = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let me = me.clone();
            async move { Ok::<_, Infallible>(me.handle(req).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// Fails the next `times` requests of `method` whose path contains
    /// `path_contains` with `status` (a `Status` body with the usual
    /// reason, as the real server sends).
    pub fn fail(&self, method: Method, path_contains: &str, status: u16, times: usize) {
        self.state().injected.push(Injected {
            method,
            path_contains: path_contains.to_string(),
            status,
            times,
        });
    }

    /// Ends every open watch, as a dropped connection would.
    pub fn drop_watches(&self) {
        self.state().watchers.clear();
    }

    /// Compacts history (watches from before now get `410 Gone`) and ends
    /// every open watch.
    pub fn expire_watches(&self) {
        let mut s = self.state();
        s.compacted = s.rv + 1;
        s.history.clear();
        s.watchers.clear();
    }

    /// How many watches are open.
    pub fn open_watches(&self) -> usize {
        let mut s = self.state();
        s.watchers.retain(|w| !w.tx.is_closed());
        s.watchers.len()
    }

    /// What the pods of deployment `deployment` (its id) do from now on:
    /// those that exist change, new ones start so.
    pub fn script(&self, deployment: impl ToString, script: PodScript) {
        let id = deployment.to_string();
        let mut s = self.state();
        s.scripts.insert(id.clone(), script.clone());
        let pods: Vec<(Key, Value)> = s
            .objects
            .iter()
            .filter(|((r, _, _), o)| {
                r == "pods"
                    && o.pointer("/metadata/labels/cameleer.io~1deployment")
                        .and_then(Value::as_str)
                        == Some(id.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, mut pod) in pods {
            pod["status"] =
                serde_json::to_value(script.status(Timestamp::now())).unwrap_or_default();
            s.put(k, pod);
        }
        s.settle();
        drop(s);
        self.requeue();
    }

    /// Plays the kubelet by image: every new pod whose image contains
    /// `image_contains`, of a deployment without a [`script`](Self::script)
    /// of its own, starts as `script` says. For suites that deploy without
    /// knowing the cluster is scripted (the conformance suite).
    pub fn script_image(&self, image_contains: &str, script: PodScript) {
        self.state()
            .by_image
            .push((image_contains.to_string(), script));
    }

    /// Plays the kubelet by image, over time: a pod whose image contains
    /// `image_contains` turns to `script` once it is `after` old (see
    /// [`tick`](Self::tick)), e.g. ready, then crashing.
    pub fn script_image_later(
        &self,
        image_contains: &str,
        after: std::time::Duration,
        script: PodScript,
    ) {
        self.state()
            .later_by_image
            .push((image_contains.to_string(), after, script));
    }

    /// Lets time act: pods take their later scripts
    /// ([`script_image_later`](Self::script_image_later)), and a Deployment
    /// whose current pods are not all ready `progressDeadlineSeconds` after
    /// its generation was applied reports `ProgressDeadlineExceeded`, as the
    /// Deployment controller would. A test calls it in a loop.
    pub fn tick(&self) {
        let mut s = self.state();
        let now = std::time::Instant::now();
        let pods: Vec<(Key, Value)> = s
            .objects
            .iter()
            .filter(|((r, _, _), _)| r == "pods")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, mut pod) in pods {
            let id = (key.1.clone(), key.2.clone());
            if s.moved_on.contains(&id) {
                continue;
            }
            let Some(born) = s.born.get(&id).copied() else {
                continue;
            };
            let image = image_of(&pod);
            let later = s
                .later_by_image
                .iter()
                .find(|(k, after, _)| image.contains(k.as_str()) && now - born >= *after)
                .map(|(_, _, script)| script.clone());
            if let Some(script) = later {
                pod["status"] =
                    serde_json::to_value(script.status(Timestamp::now())).unwrap_or_default();
                s.moved_on.insert(id);
                s.put(key, pod);
            }
        }
        s.restart_killed(now);
        let late: Vec<((String, String), i64)> = s
            .applied_at
            .iter()
            .filter_map(|((ns, name), (generation, at))| {
                let d =
                    s.objects
                        .get(&("deployments.apps".to_string(), ns.clone(), name.clone()))?;
                let deadline = d
                    .pointer("/spec/progressDeadlineSeconds")
                    .and_then(Value::as_u64)
                    .unwrap_or(600);
                let complete = d
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Progressing" && c["reason"] == "NewReplicaSetAvailable");
                (!complete && now - *at >= std::time::Duration::from_secs(deadline))
                    .then(|| ((ns.clone(), name.clone()), *generation))
            })
            .collect();
        for (key, generation) in late {
            s.deadlines.insert(key, generation);
        }
        s.settle();
        drop(s);
        self.requeue();
    }

    /// The version that answers a client of `app` now: the newest of its
    /// ready pods (what its Service sends traffic to), if any.
    pub fn serving_version(&self, app: &cameleer_runtime::AppRef) -> Option<u64> {
        let ns = crate::namespace::namespace_name(&app.tenant, &app.env);
        let selector = vec![("cameleer.io/app".to_string(), app.app.to_string())];
        self.state()
            .list("pods", Some(&ns), &selector)
            .iter()
            .filter(|p| {
                p.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
            .filter_map(|p| {
                p.pointer("/metadata/labels/cameleer.io~1version")?
                    .as_str()?
                    .parse()
                    .ok()
            })
            .max()
    }

    /// Every pod that is ready and whose image contains `image_contains`
    /// writes `line` now (`{n}` in it is replaced by a counter). A test calls
    /// it in a loop to have apps that log steadily.
    pub fn log_ready(&self, image_contains: &str, line: &str) {
        let pods: Vec<(String, String)> = {
            let s = self.state();
            s.list("pods", None, &[])
                .into_iter()
                .filter(|p| {
                    p.pointer("/spec/containers/0/image")
                        .and_then(Value::as_str)
                        .is_some_and(|i| i.contains(image_contains))
                        && p.pointer("/status/conditions")
                            .and_then(Value::as_array)
                            .is_some_and(|cs| {
                                cs.iter()
                                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
                            })
                })
                .map(|p| {
                    (
                        meta_str(&p, "namespace").unwrap_or_default().to_string(),
                        meta_str(&p, "name").unwrap_or_default().to_string(),
                    )
                })
                .collect()
        };
        for (ns, pod) in pods {
            let n = self
                .state()
                .logs
                .get(&(ns.clone(), pod.clone()))
                .map_or(0, Vec::len);
            self.log(
                &ns,
                &pod,
                Timestamp::now(),
                &line.replace("{n}", &(n + 1).to_string()),
            );
        }
    }

    /// Sets the status of pod `ns/name` (a Job's, say).
    pub fn set_pod_status(&self, ns: &str, name: &str, status: Value) {
        let mut s = self.state();
        let key = ("pods".to_string(), ns.to_string(), name.to_string());
        if let Some(mut pod) = s.objects.get(&key).cloned() {
            // A container that ended ends the logs that follow it.
            if matches!(status["phase"].as_str(), Some("Succeeded" | "Failed")) {
                s.followers
                    .retain(|f| !(f.namespace == ns && f.pod == name));
            }
            pod["status"] = status;
            s.put(key, pod);
        }
        s.settle();
        drop(s);
        self.requeue();
    }

    /// Lets the progress deadline of Deployment `ns/name`'s current
    /// generation pass.
    pub fn exceed_progress_deadline(&self, ns: &str, name: &str) {
        let mut s = self.state();
        let key = (
            "deployments.apps".to_string(),
            ns.to_string(),
            name.to_string(),
        );
        if let Some(g) = s
            .objects
            .get(&key)
            .and_then(|o| o.pointer("/metadata/generation"))
            .and_then(Value::as_i64)
        {
            s.deadlines.insert((ns.to_string(), name.to_string()), g);
        }
        s.settle();
        drop(s);
        self.requeue();
    }

    /// Pod `ns/pod` writes `line` at `at`.
    pub fn log(&self, ns: &str, pod: &str, at: Timestamp, line: &str) {
        let mut s = self.state();
        s.logs
            .entry((ns.to_string(), pod.to_string()))
            .or_default()
            .push((at, line.to_string()));
        let out = Bytes::from(format!("{at} {line}\n"));
        s.followers.retain(|f| {
            if f.namespace == ns && f.pod == pod {
                f.tx.send(out.clone()).is_ok()
            } else {
                !f.tx.is_closed()
            }
        });
    }

    /// The object `resource` (`plural[.group]`) `ns/name` (`ns` empty for
    /// cluster-scoped ones), as stored.
    pub fn object(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        self.state()
            .objects
            .get(&(resource.to_string(), ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Every object of `resource`, as stored.
    pub fn objects(&self, resource: &str) -> Vec<Value> {
        self.state().list(resource, None, &[])
    }

    /// The pods of namespace `ns`.
    pub fn pods(&self, ns: &str) -> Vec<Pod> {
        self.state()
            .list("pods", Some(ns), &[])
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    }

    /// Stores `object` as if someone else had created it.
    pub fn insert(&self, resource: &str, object: Value) {
        let ns = meta_str(&object, "namespace")
            .unwrap_or_default()
            .to_string();
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        let mut s = self.state();
        s.put((resource.to_string(), ns, name), object);
        s.settle();
        drop(s);
        self.requeue();
    }

    /// Answers one request: the kube client's in process, or one read off
    /// a socket ([`FakeCluster::serve`]).
    pub(super) async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
    {
        let (parts, body) = req.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let path = parts.uri.path().to_string();
        let query: BTreeMap<String, String> = parts
            .uri
            .query()
            .map(form_urlencoded_pairs)
            .unwrap_or_default();
        let Some(route) = Route::parse(&path) else {
            return error(404, &format!("no route for {path}"));
        };
        let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
        let verb = match (parts.method.clone(), route.name.is_some()) {
            (Method::GET, _) if watch => "watch",
            (Method::GET, true) => "get",
            (Method::GET, false) => "list",
            (Method::POST, _) => "create",
            (Method::PATCH, _) => "patch",
            (Method::PUT, _) => "update",
            (Method::DELETE, true) => "delete",
            (Method::DELETE, false) => "deletecollection",
            _ => "unknown",
        };
        let resource = match &route.sub {
            Some(sub) => format!("{}/{sub}", route.full()),
            None => route.full(),
        };
        let body_json: Option<Value> = serde_json::from_slice(&bytes).ok();
        {
            let mut s = self.state();
            s.requests.push(Recorded {
                method: parts.method.to_string(),
                path: path.clone(),
                query: query.clone(),
                body: body_json.clone(),
                verb: verb.to_string(),
                resource: resource.clone(),
                namespace: route.namespace.clone(),
            });
            if let Some(i) = s
                .injected
                .iter()
                .position(|f| f.method == parts.method && path.contains(&f.path_contains))
            {
                let status = s.injected[i].status;
                s.injected[i].times -= 1;
                if s.injected[i].times == 0 {
                    s.injected.remove(i);
                }
                let message = match status {
                    403 => format!(
                        "{} \"{}\" is forbidden: User \"system:serviceaccount:cameleer:controller\" cannot {verb} resource \"{}\" in API group \"{}\"{}",
                        route.full(),
                        route.name.clone().unwrap_or_default(),
                        route.resource,
                        route.group,
                        route.namespace.as_ref().map(|n| format!(" in the namespace \"{n}\"")).unwrap_or_default(),
                    ),
                    409 => "the object has been modified; please apply your changes to the latest version".to_string(),
                    code => format!("injected failure {code}"),
                };
                return error(status, &message);
            }
        }
        let response = match (parts.method.clone(), route.sub.as_deref()) {
            (Method::GET, Some("log")) => self.pod_log(&route, &query),
            (Method::GET, None) if watch => self.watch(&route, &query),
            (Method::GET, None) => self.get_or_list(&route, &query),
            (Method::PATCH, None) => self.apply(&route, &query, &parts.headers, body_json),
            (Method::DELETE, None) => self.delete(&route),
            _ => error(405, "not supported by the fake API server"),
        };
        self.requeue();
        response
    }

    /// Has the controllers look again when a pod becomes available by
    /// `minReadySeconds` alone (no change announces it), as the Deployment
    /// controller requeues a Deployment: on the current tokio runtime, if
    /// there is one.
    fn requeue(&self) {
        let Some(at) = self.state().wake_at.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cluster = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            cluster.state().settle();
            cluster.requeue();
        });
    }

    fn get_or_list(&self, route: &Route, query: &BTreeMap<String, String>) -> Response<Body> {
        let s = self.state();
        let full_name = route.full();
        match &route.name {
            Some(name) => {
                let key = (
                    full_name.clone(),
                    route.namespace.clone().unwrap_or_default(),
                    name.clone(),
                );
                match s.objects.get(&key) {
                    Some(o) => full(StatusCode::OK, o),
                    None => error(404, &format!("{full_name} \"{name}\" not found")),
                }
            }
            None => {
                let selector =
                    parse_selector(query.get("labelSelector").map_or("", String::as_str));
                let items = s.list(&full_name, route.namespace.as_deref(), &selector);
                let (api_version, kind) = kind_of(&full_name);
                full(
                    StatusCode::OK,
                    &json!({
                        "apiVersion": api_version,
                        "kind": format!("{kind}List"),
                        "metadata": {"resourceVersion": s.rv.to_string()},
                        "items": items,
                    }),
                )
            }
        }
    }

    fn watch(&self, route: &Route, query: &BTreeMap<String, String>) -> Response<Body> {
        let mut s = self.state();
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let resource = route.full();
        let selector = parse_selector(query.get("labelSelector").map_or("", String::as_str));
        if from != 0 && from < s.compacted {
            let gone = status_body(410, "Expired", "too old resource version");
            let line = watch_line("ERROR", &gone);
            let (_tx, rx) = mpsc::unbounded_channel();
            return streaming(rx, vec![line]);
        }
        let replay: Vec<Bytes> = s
            .history
            .iter()
            .filter(|(rv, _, o)| {
                *rv > from
                    && o.get("kind").and_then(Value::as_str) == Some(kind_of(&resource).1)
                    && route
                        .namespace
                        .as_deref()
                        .is_none_or(|ns| meta_str(o, "namespace") == Some(ns))
                    && matches(o, &selector)
            })
            .map(|(_, kind, o)| watch_line(kind, o))
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        s.watchers.push(Watcher {
            resource,
            namespace: route.namespace.clone(),
            selector,
            tx,
        });
        streaming(rx, replay)
    }

    fn apply(
        &self,
        route: &Route,
        query: &BTreeMap<String, String>,
        headers: &http::HeaderMap,
        body: Option<Value>,
    ) -> Response<Body> {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if content_type != "application/apply-patch+yaml" {
            return error(415, "only server-side apply is supported");
        }
        let Some(manager) = query.get("fieldManager") else {
            return error(422, "fieldManager is required for apply patch");
        };
        let Some(name) = route.name.clone() else {
            return error(405, "apply needs a name");
        };
        let Some(mut object) = body else {
            return error(400, "the body is not JSON");
        };
        let full_name = route.full();
        let ns = route.namespace.clone().unwrap_or_default();
        if meta_str(&object, "name") != Some(name.as_str()) {
            return error(400, "the name in the body does not match the URL");
        }
        let (api_version, kind) = kind_of(&full_name);
        if object.get("apiVersion").and_then(Value::as_str) != Some(api_version)
            || object.get("kind").and_then(Value::as_str) != Some(kind)
        {
            return error(400, "apiVersion and kind must be set");
        }
        let mut s = self.state();
        let key = (full_name.clone(), ns.clone(), name.clone());
        let now = Timestamp::now().to_string();
        let existing = s.objects.get(&key).cloned();
        let generation = match &existing {
            Some(old) => {
                let g = old
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                if old.get("spec") != object.get("spec") {
                    g + 1
                } else {
                    g
                }
            }
            None => 1,
        };
        let meta = &mut object["metadata"];
        if !ns.is_empty() {
            meta["namespace"] = json!(ns);
        }
        meta["generation"] = json!(generation);
        meta["uid"] = existing
            .as_ref()
            .and_then(|o| o.pointer("/metadata/uid").cloned())
            .unwrap_or_else(|| json!(format!("uid-{}-{name}", s.rv + 1)));
        meta["creationTimestamp"] = existing
            .as_ref()
            .and_then(|o| o.pointer("/metadata/creationTimestamp").cloned())
            .unwrap_or_else(|| json!(now));
        meta["managedFields"] = json!([{
            "manager": manager,
            "operation": "Apply",
            "apiVersion": api_version,
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": {},
        }]);
        if let Some(status) = existing.as_ref().and_then(|o| o.get("status")) {
            object["status"] = status.clone();
        }
        if full_name == "deployments.apps"
            && s.applied_at
                .get(&(ns.clone(), name.clone()))
                .map(|(g, _)| *g)
                != Some(generation)
        {
            s.applied_at.insert(
                (ns.clone(), name.clone()),
                (generation, std::time::Instant::now()),
            );
        }
        if existing.as_ref().map(strip_volatile) != Some(strip_volatile(&object)) {
            s.put(key.clone(), object);
            s.settle();
        }
        let stored = s.objects.get(&key).cloned().unwrap_or(Value::Null);
        full(StatusCode::OK, &stored)
    }

    fn delete(&self, route: &Route) -> Response<Body> {
        let mut s = self.state();
        let full_name = route.full();
        let ns = route.namespace.clone().unwrap_or_default();
        let Some(name) = route.name.clone() else {
            return error(405, "deletecollection is not supported");
        };
        let key = (full_name.clone(), ns.clone(), name.clone());
        let Some(object) = s.remove(&key) else {
            return error(404, &format!("{full_name} \"{name}\" not found"));
        };
        // Garbage collection: a Deployment's or Job's pods go with it.
        let owned: Vec<(String, String)> = match full_name.as_str() {
            "deployments.apps" => object
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
            "jobs.batch" => vec![("job-name".into(), name.clone())],
            _ => Vec::new(),
        };
        if !owned.is_empty() {
            let pods: Vec<Key> = s
                .list("pods", Some(&ns), &owned)
                .iter()
                .map(|p| {
                    (
                        "pods".into(),
                        ns.clone(),
                        meta_str(p, "name").unwrap_or_default().to_string(),
                    )
                })
                .collect();
            for k in pods {
                s.remove(&k);
            }
        }
        s.settle();
        full(
            StatusCode::OK,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
        )
    }

    fn pod_log(&self, route: &Route, query: &BTreeMap<String, String>) -> Response<Body> {
        let mut s = self.state();
        let ns = route.namespace.clone().unwrap_or_default();
        let pod = route.name.clone().unwrap_or_default();
        if !s
            .objects
            .contains_key(&("pods".into(), ns.clone(), pod.clone()))
        {
            return error(404, &format!("pods \"{pod}\" not found"));
        }
        let since: Option<Timestamp> = query.get("sinceTime").and_then(|t| t.parse().ok());
        let stamps = query.get("timestamps").is_some_and(|v| v == "true");
        let lines: Vec<Bytes> = s
            .logs
            .get(&(ns.clone(), pod.clone()))
            .into_iter()
            .flatten()
            .filter(|(at, _)| since.is_none_or(|since| *at >= since))
            .map(|(at, line)| {
                if stamps {
                    Bytes::from(format!("{at} {line}\n"))
                } else {
                    Bytes::from(format!("{line}\n"))
                }
            })
            .collect();
        if query.get("follow").is_some_and(|v| v == "true") {
            let (tx, rx) = mpsc::unbounded_channel();
            s.followers.push(LogFollower {
                namespace: ns,
                pod,
                tx,
            });
            return streaming(rx, lines);
        }
        let text_body: String = lines
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        text(StatusCode::OK, text_body)
    }
}

/// The object without what every write changes.
fn strip_volatile(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["resourceVersion", "managedFields", "generation"] {
            meta.remove(field);
        }
    }
    o
}

/// Decodes `a=b&c=d` (percent-encoding and `+` included).
fn form_urlencoded_pairs(q: &str) -> BTreeMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = Route::parse("/apis/apps/v1/namespaces/ns/deployments/orders").unwrap();
        assert_eq!(r.full(), "deployments.apps");
        assert_eq!(r.namespace.as_deref(), Some("ns"));
        assert_eq!(r.name.as_deref(), Some("orders"));
        let r = Route::parse("/api/v1/namespaces/cameleer-acme-dev").unwrap();
        assert_eq!(r.full(), "namespaces");
        assert_eq!(r.namespace, None);
        assert_eq!(r.name.as_deref(), Some("cameleer-acme-dev"));
        let r = Route::parse("/api/v1/namespaces/ns/pods/p/log").unwrap();
        assert_eq!(
            (r.full(), r.sub.as_deref()),
            ("pods".to_string(), Some("log"))
        );
        let r = Route::parse("/api/v1/pods").unwrap();
        assert_eq!((r.full(), r.namespace), ("pods".to_string(), None));
    }

    #[test]
    fn queries_decode() {
        let q =
            form_urlencoded_pairs("labelSelector=cameleer.io%2Fmanaged%3Dtrue&watch=true&x=a+b");
        assert_eq!(q["labelSelector"], "cameleer.io/managed=true");
        assert_eq!(q["watch"], "true");
        assert_eq!(q["x"], "a b");
    }
}
