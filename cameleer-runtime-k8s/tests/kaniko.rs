//! The Kaniko build Job against the in-memory API server: the objects, the
//! progress from the build pod's log, the pinned result, failures,
//! timeouts and cleanup.

use std::time::Duration;

use bytes::Bytes;
use cameleer_runtime::{
    AppRef, BuildSpec, DeploymentId, Error, ImageBuilder, ProgressSink, Sha256Digest,
};
use cameleer_runtime_k8s::kaniko::{self, KanikoImageBuilder, KanikoOptions};
use cameleer_runtime_k8s::testing::FakeCluster;
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

const NS: &str = "cameleer-builds";

fn options() -> KanikoOptions {
    let mut o = KanikoOptions::new(
        "registry.local:5000/cameleer",
        "eclipse-temurin:17-jre".parse().unwrap(),
        b"PK agent".to_vec(),
    );
    o.push_secret = Some("registry-push".into());
    o
}

fn spec() -> BuildSpec {
    BuildSpec {
        app: AppRef::parse("acme", "orders", "dev").unwrap(),
        deployment: DeploymentId::new_random(),
        version: 4,
        artifact: Sha256Digest::of(b"PK app"),
        artifact_size: 6,
    }
}

fn jar() -> cameleer_runtime::ByteStream {
    futures::stream::iter([Ok(Bytes::from_static(b"PK app"))]).boxed()
}

async fn build_pod(cluster: &FakeCluster) -> String {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(p) = cluster.pods(NS).first() {
                return p.metadata.name.clone().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("no build pod")
}

fn running() -> serde_json::Value {
    json!({"phase": "Running", "containerStatuses": [{"name": "kaniko", "image": "x", "imageID": "",
        "ready": true, "restartCount": 0, "state": {"running": {}}}]})
}

fn ended(phase: &str, code: i32, message: &str) -> serde_json::Value {
    json!({"phase": phase, "containerStatuses": [{"name": "kaniko", "image": "x", "imageID": "",
        "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }, "message": message}}}]})
}

fn nothing_left(cluster: &FakeCluster) {
    assert!(cluster.objects("jobs.batch").is_empty(), "a Job is left");
    assert!(
        cluster.objects("configmaps").is_empty(),
        "a ConfigMap is left"
    );
    assert!(cluster.pods(NS).is_empty(), "a pod is left");
}

#[tokio::test]
async fn a_build_reports_progress_and_is_pinned_to_the_pushed_digest() {
    let cluster = FakeCluster::new();
    let builder = KanikoImageBuilder::new(cluster.client(), options());
    let spec = spec();
    let (progress, mut lines) = ProgressSink::channel(spec.deployment, 100);
    let build = tokio::spawn({
        let builder = builder.clone();
        let spec = spec.clone();
        async move { builder.build(&spec, jar(), progress).await }
    });
    let pod = build_pod(&cluster).await;
    // The Job is the one we expect.
    let job = &cluster.objects("jobs.batch")[0];
    let args: Vec<String> =
        serde_json::from_value(job["spec"]["template"]["spec"]["containers"][0]["args"].clone())
            .unwrap();
    assert!(
        args.contains(&"--destination=registry.local:5000/cameleer/acme/orders:v4".to_string()),
        "{args:?}"
    );
    assert!(args.contains(&"--digest-file=/dev/termination-log".to_string()));
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 600);
    let cm = &cluster.objects("configmaps")[0];
    assert!(cm["binaryData"]["context.tar.gz"].is_string());

    cluster.set_pod_status(NS, &pod, running());
    cluster.log(
        NS,
        &pod,
        Timestamp::now(),
        "INFO[0001] Retrieving image manifest eclipse-temurin:17-jre",
    );
    cluster.log(
        NS,
        &pod,
        Timestamp::now(),
        "INFO[0002] Pushing image to registry.local:5000/cameleer/acme/orders:v4",
    );
    let digest = Sha256Digest::of(b"manifest");
    // Give the builder time to follow the log before the pod ends.
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.set_pod_status(NS, &pod, ended("Succeeded", 0, &digest.oci()));

    let built = tokio::time::timeout(Duration::from_secs(10), build)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        built.image.to_string(),
        format!(
            "registry.local:5000/cameleer/acme/orders:v4@{}",
            digest.oci()
        )
    );
    let mut messages = Vec::new();
    while let Ok(p) = lines.try_recv() {
        messages.push(p.message);
    }
    assert!(
        messages.iter().any(|m| m.contains("Pushing image")),
        "{messages:?}"
    );
    nothing_left(&cluster);
}

#[tokio::test]
async fn a_failed_build_says_why_and_cleans_up() {
    let cluster = FakeCluster::new();
    let builder = KanikoImageBuilder::new(cluster.client(), options());
    let build = tokio::spawn({
        let builder = builder.clone();
        async move {
            builder
                .build(
                    &spec(),
                    jar(),
                    ProgressSink::discard(DeploymentId::new_random()),
                )
                .await
        }
    });
    let pod = build_pod(&cluster).await;
    cluster.set_pod_status(NS, &pod, running());
    cluster.log(
        NS,
        &pod,
        Timestamp::now(),
        "error pushing image: 401 Unauthorized",
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.set_pod_status(
        NS,
        &pod,
        ended("Failed", 1, "error pushing image: UNAUTHORIZED"),
    );
    let err = tokio::time::timeout(Duration::from_secs(10), build)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    let Error::BuildFailed(text) = &err else {
        panic!("{err}")
    };
    assert!(text.contains("UNAUTHORIZED"), "{text}");
    assert!(text.contains("401 Unauthorized"), "{text}");
    nothing_left(&cluster);
}

#[tokio::test]
async fn a_build_that_takes_too_long_fails_and_cleans_up() {
    let cluster = FakeCluster::new();
    let mut o = options();
    o.timeout = Duration::from_millis(500);
    let builder = KanikoImageBuilder::new(cluster.client(), o);
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        builder.build(
            &spec(),
            jar(),
            ProgressSink::discard(DeploymentId::new_random()),
        ),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(
        matches!(&err, Error::BuildFailed(t) if t.contains("did not finish")),
        "{err}"
    );
    nothing_left(&cluster);
}

#[tokio::test]
async fn the_context_is_deterministic_and_bounded() {
    let builder = KanikoImageBuilder::new(FakeCluster::new().client(), options());
    let (d1, gz1) = builder.context(b"PK app").unwrap();
    let (d2, gz2) = builder.context(b"PK app").unwrap();
    assert_eq!((d1, &gz1), (d2, &gz2));
    assert_ne!(builder.context(b"PK app2").unwrap().0, d1);
    assert_eq!(kaniko::job_name(&d1).len(), 26);

    let err = kaniko::build_objects(
        &options(),
        &spec(),
        &d1,
        vec![0; kaniko::MAX_CONFIGMAP_CONTEXT + 1],
    )
    .unwrap_err();
    assert!(err.to_string().contains("context_too_large"), "{err}");
}
