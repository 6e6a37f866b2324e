//! Request-level tests with kube's `tower_test::mock` pattern: the method,
//! path, query and body of each request the backend sends, and what it
//! makes of the answers (404, 409, 403, 410 Gone on a watch, a dropped
//! watch).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cameleer_runtime::{
    AppConfig, AppRef, DeployRequest, DeploymentId, HealthCheck, LogOptions, RuntimeOrchestrator,
};
use cameleer_runtime_k8s::watch::Informer;
use cameleer_runtime_k8s::{K8sError, KubernetesOptions, KubernetesRuntimeOrchestrator, workload};
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

const NS: &str = "cameleer-acme-dev";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/cameleer-acme-dev/deployments/orders";

/// One request as the mock saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: BTreeMap<String, String>,
    content_type: Option<String>,
    body: Option<Value>,
}

fn query_of(uri: &http::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                k.to_string(),
                v.replace("%2F", "/")
                    .replace("%3D", "=")
                    .replace("%2C", ","),
            )
        })
        .collect()
}

fn json_response(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "reason": reason, "message": message, "code": code}),
    )
}

/// The answer to a request; `None` keeps it waiting (an open watch with
/// nothing to say).
type Answer = Box<dyn FnMut(&Seen) -> Option<Response<Body>> + Send>;

/// A kube client on `tower_test::mock`, answering with `answer` and
/// recording every request.
fn mock_waiting(mut answer: Answer) -> (kube::Client, Arc<Mutex<Vec<Seen>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut waiting = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = http_body_util::BodyExt::collect(body)
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let s = Seen {
                method: parts.method.clone(),
                path: parts.uri.path().to_string(),
                query: query_of(&parts.uri),
                content_type: parts
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                body: serde_json::from_slice(&bytes).ok(),
            };
            log.lock().unwrap().push(s.clone());
            match answer(&s) {
                Some(response) => send.send_response(response),
                None => waiting.push(send),
            }
        }
    });
    (kube::Client::new(service, "default"), seen)
}

/// [`mock_waiting`] for answers that never wait.
fn mock(
    mut answer: impl FnMut(&Seen) -> Response<Body> + Send + 'static,
) -> (kube::Client, Arc<Mutex<Vec<Seen>>>) {
    mock_waiting(Box::new(move |s| Some(answer(s))))
}

fn app() -> AppRef {
    AppRef::parse("acme", "orders", "dev").unwrap()
}

fn request() -> DeployRequest {
    DeployRequest {
        app: app(),
        deployment: DeploymentId::new_random(),
        version: 1,
        image: format!("localhost:5001/orders@sha256:{}", "cd".repeat(32))
            .parse()
            .unwrap(),
        config: AppConfig {
            health: HealthCheck::TcpPort(8080),
            ..AppConfig::default()
        },
    }
}

fn running_deployment() -> Value {
    serde_json::to_value(workload::deployment(&request(), &KubernetesOptions::default()).unwrap())
        .unwrap()
}

fn empty_list(kind: &str) -> Value {
    json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "1"}, "items": []})
}

fn orchestrator(client: kube::Client) -> KubernetesRuntimeOrchestrator {
    KubernetesRuntimeOrchestrator::new(client, KubernetesOptions::default())
}

#[tokio::test]
async fn status_gets_the_deployment_and_404_is_not_found() {
    let (client, seen) = mock(|_| status(404, "NotFound", "deployments.apps \"orders\" not found"));
    let err = orchestrator(client).app_status(&app()).await.unwrap_err();
    assert_eq!(err.code(), "not_found");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.clone(), seen[0].path.as_str()),
        (Method::GET, DEPLOYMENT)
    );
}

#[tokio::test]
async fn stop_applies_zero_replicas_under_the_field_manager() {
    let (client, seen) = mock(|s| match (s.method.clone(), s.path.as_str()) {
        (Method::GET, DEPLOYMENT) => json_response(200, &running_deployment()),
        (Method::GET, "/api/v1/namespaces/cameleer-acme-dev/pods") => {
            json_response(200, &empty_list("Pod"))
        }
        (Method::PATCH, DEPLOYMENT) => json_response(200, s.body.as_ref().unwrap()),
        _ => status(404, "NotFound", "unexpected"),
    });
    orchestrator(client).stop_app(&app()).await.unwrap();
    let seen = seen.lock().unwrap();
    let methods: Vec<_> = seen
        .iter()
        .map(|s| (s.method.to_string(), s.path.clone()))
        .collect();
    assert_eq!(
        methods,
        [
            ("GET".to_string(), DEPLOYMENT.to_string()),
            ("GET".to_string(), format!("/api/v1/namespaces/{NS}/pods")),
            ("PATCH".to_string(), DEPLOYMENT.to_string()),
        ]
    );
    assert_eq!(
        seen[1].query["labelSelector"],
        "cameleer.io/app=orders,cameleer.io/env=dev,cameleer.io/managed=true,cameleer.io/tenant=acme"
    );
    let patch = &seen[2];
    assert_eq!(patch.query["fieldManager"], "cameleer-runtime");
    assert_eq!(patch.query["force"], "true");
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    let body = patch.body.as_ref().unwrap();
    assert_eq!(body["apiVersion"], "apps/v1");
    assert_eq!(body["kind"], "Deployment");
    assert_eq!(body["spec"]["replicas"], 0);
    assert_eq!(
        body["metadata"]["annotations"]["cameleer.io/desired-state"],
        "stopped"
    );
    // The whole object, so server-side apply keeps every field we own.
    assert!(body["spec"]["template"]["spec"]["containers"][0]["image"].is_string());
}

#[tokio::test]
async fn a_forbidden_apply_names_verb_resource_and_namespace() {
    let (client, _) = mock(|s| match s.method {
        Method::GET if s.path == DEPLOYMENT => json_response(200, &running_deployment()),
        Method::GET => json_response(200, &empty_list("Pod")),
        _ => status(
            403,
            "Forbidden",
            "deployments.apps \"orders\" is forbidden: User \"system:serviceaccount:cameleer:controller\" cannot patch resource \"deployments\"",
        ),
    });
    let err = orchestrator(client).stop_app(&app()).await.unwrap_err();
    let k8s = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<K8sError>())
        .unwrap();
    let K8sError::Forbidden { call, .. } = k8s else {
        panic!("{k8s:?}")
    };
    assert_eq!(
        (call.verb, call.resource.as_str()),
        ("patch", "deployments.apps")
    );
    assert_eq!(call.namespace.as_deref(), Some(NS));
    assert_eq!(call.name.as_deref(), Some("orders"));
}

#[tokio::test]
async fn the_namespace_and_its_policies_are_applied_in_order_and_409_is_a_conflict() {
    let (client, seen) = mock(|s| json_response(200, s.body.as_ref().unwrap()));
    let k8s = orchestrator(client);
    k8s.ensure_namespace(&app().tenant, &app().env)
        .await
        .unwrap();
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(
        paths,
        [
            format!("/api/v1/namespaces/{NS}"),
            format!(
                "/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/cameleer-default-deny"
            ),
            format!(
                "/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/cameleer-allow-same-namespace"
            ),
            format!(
                "/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/cameleer-allow-dns"
            ),
            format!("/api/v1/namespaces/{NS}/resourcequotas/cameleer-quota"),
            format!("/api/v1/namespaces/{NS}/limitranges/cameleer-limits"),
        ]
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|s| s.method == Method::PATCH
                && s.query["fieldManager"] == "cameleer-runtime"
                && s.query["force"] == "true")
    );
    // Once per process.
    k8s.ensure_namespace(&app().tenant, &app().env)
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().len(), 6);

    let (client, _) = mock(|_| status(409, "Conflict", "conflict with \"kubectl\""));
    let err = orchestrator(client)
        .ensure_namespace(&app().tenant, &app().env)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "conflict");
}

#[tokio::test]
async fn removing_an_app_twice_is_fine() {
    let (client, seen) = mock(|_| status(404, "NotFound", "gone"));
    orchestrator(client).remove_app(&app()).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].method, Method::DELETE);
    assert_eq!(seen[0].path, DEPLOYMENT);
    assert_eq!(
        seen[1].path,
        format!("/api/v1/namespaces/{NS}/services/orders")
    );
}

#[tokio::test]
async fn logs_ask_for_the_app_container_with_timestamps_since_a_second() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orders-1", "namespace": NS},
        "status": {"containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": true,
            "restartCount": 0, "state": {"running": {}}}]}});
    let (client, seen) = mock(move |s| match s.path.as_str() {
        DEPLOYMENT => json_response(200, &running_deployment()),
        p if p.ends_with("/log") => Response::builder()
            .status(200)
            .body(Body::from(b"2026-01-01T00:00:01.5Z [app] hello\n".to_vec()))
            .unwrap(),
        _ => json_response(
            200,
            &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [pod.clone()]}),
        ),
    });
    let since = SystemTime::UNIX_EPOCH + Duration::from_millis(1_767_225_601_200);
    let lines: Vec<_> = orchestrator(client)
        .app_logs(
            &app(),
            &LogOptions {
                since: Some(since),
                follow: false,
            },
        )
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].as_ref().unwrap().line, "[app] hello");
    let seen = seen.lock().unwrap();
    let log = seen.iter().find(|s| s.path.ends_with("/log")).unwrap();
    assert_eq!(
        log.path,
        format!("/api/v1/namespaces/{NS}/pods/orders-1/log")
    );
    assert_eq!(log.query["container"], "app");
    assert_eq!(log.query["timestamps"], "true");
    assert_eq!(
        log.query["sinceTime"].replace("%3A", ":"),
        "2026-01-01T00:00:01Z"
    );
    assert!(!log.query.contains_key("follow"));
}

/// A watch answer: these events, then the stream ends (a dropped watch).
fn watch_events(events: &[Value]) -> Response<Body> {
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(e).unwrap());
        body.push(b'\n');
    }
    Response::builder()
        .status(200)
        .body(Body::from(body))
        .unwrap()
}

fn with_rv(mut object: Value, rv: &str) -> Value {
    object["metadata"]["resourceVersion"] = json!(rv);
    object
}

#[tokio::test]
async fn a_watch_that_gets_410_gone_lists_again() {
    let lists = Arc::new(Mutex::new(0));
    let counter = lists.clone();
    let (client, seen) = mock_waiting(Box::new(move |s| {
        let watch = s.query.get("watch").is_some_and(|w| w == "true");
        let deployments = s.path == "/apis/apps/v1/deployments";
        Some(match (deployments, watch) {
            (true, false) => {
                *counter.lock().unwrap() += 1;
                json_response(
                    200,
                    &json!({"apiVersion": "apps/v1", "kind": "DeploymentList",
                    "metadata": {"resourceVersion": "5"}, "items": [with_rv(running_deployment(), "5")]}),
                )
            }
            (true, true)
                if s.query.get("resourceVersion").map(String::as_str) == Some("5")
                    && *counter.lock().unwrap() == 1 =>
            {
                watch_events(&[
                    json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                    "metadata": {}, "status": "Failure", "reason": "Expired",
                    "message": "too old resource version: 5 (9)", "code": 410}}),
                ])
            }
            (false, false) => json_response(200, &empty_list("Pod")),
            // Later watches stay open with nothing to say.
            _ => return None,
        })
    }));
    let informer = Informer::start(client);
    tokio::time::timeout(Duration::from_secs(10), async {
        while *lists.lock().unwrap() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the watcher did not list again after 410 Gone");
    informer.wait_synced().await;
    assert!(informer.deployment(NS, "orders").is_some());
    let seen = seen.lock().unwrap();
    let watch = seen
        .iter()
        .find(|s| s.path == "/apis/apps/v1/deployments" && s.query.contains_key("watch"))
        .unwrap();
    assert_eq!(watch.query["labelSelector"], "cameleer.io/managed=true");
}

#[tokio::test]
async fn a_dropped_watch_resumes_from_its_last_resource_version() {
    let (client, seen) = mock_waiting(Box::new(move |s| {
        let watch = s.query.get("watch").is_some_and(|w| w == "true");
        let from = s.query.get("resourceVersion").cloned().unwrap_or_default();
        Some(match (s.path.as_str(), watch, from.as_str()) {
            ("/apis/apps/v1/deployments", false, _) => json_response(
                200,
                &json!({"apiVersion": "apps/v1",
                "kind": "DeploymentList", "metadata": {"resourceVersion": "5"}, "items": []}),
            ),
            // The first watch delivers the Deployment, then drops.
            ("/apis/apps/v1/deployments", true, "5") => watch_events(&[
                json!({"type": "ADDED", "object": with_rv(running_deployment(), "7")}),
            ]),
            ("/api/v1/pods", false, _) => json_response(200, &empty_list("Pod")),
            _ => return None,
        })
    }));
    let informer = Informer::start(client);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let resumed = seen.lock().unwrap().iter().any(|s| {
                s.path == "/apis/apps/v1/deployments"
                    && s.query.contains_key("watch")
                    && s.query.get("resourceVersion").map(String::as_str) == Some("7")
            });
            if resumed {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the watcher did not resume from resource version 7");
    // Not listed again: nothing was missed.
    let lists = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path == "/apis/apps/v1/deployments" && !s.query.contains_key("watch"))
        .count();
    assert_eq!(lists, 1);
    assert!(informer.deployment(NS, "orders").is_some());
}
