//! `DockerImageBuilder` against the real engine: an immutable, labelled
//! image pinned to its id; the same context twice from cache; the engine's
//! error text when a build fails.

use std::path::Path;

use bytes::Bytes;
use cameleer_build::Sha256Digest;
use cameleer_runtime::{AppRef, BuildSpec, ByteStream, DeploymentId, ImageBuilder, ProgressSink};
use cameleer_runtime_docker::base_image::{BaseImageConfig, ensure_base_image};
use cameleer_runtime_docker::fixtures::{FixtureApp, agent_jar, app_jar};
use cameleer_runtime_docker::labels;
use cameleer_runtime_docker::testing::{CleanupGuard, run_id};
use cameleer_runtime_docker::{DockerImageBuilder, DockerImageBuilderOptions, connect::connect};
use futures::StreamExt;

fn unique_tenant() -> String {
    format!("ib-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// The JAR as a stream of small chunks, like an artifact store's.
fn jar_stream(path: &Path) -> (ByteStream, Sha256Digest, u64) {
    let bytes = std::fs::read(path).unwrap();
    let digest = Sha256Digest::of(&bytes);
    let size = bytes.len() as u64;
    let chunks: Vec<std::io::Result<Bytes>> = bytes
        .chunks(16 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    (futures::stream::iter(chunks).boxed(), digest, size)
}

fn spec(tenant: &str, version: u64, artifact: Sha256Digest, size: u64) -> BuildSpec {
    BuildSpec {
        app: AppRef::parse(tenant, "orders", "dev").unwrap(),
        deployment: DeploymentId::new_random(),
        version,
        artifact,
        artifact_size: size,
    }
}

#[tokio::test]
async fn builds_a_labelled_pinned_image_and_serves_the_same_context_from_cache() {
    let docker = connect().await.unwrap();
    let tenant = unique_tenant();
    let guard = CleanupGuard::new(&docker);
    guard.label(labels::TENANT, &tenant);
    let base = ensure_base_image(&docker, &BaseImageConfig::default())
        .await
        .unwrap();
    let builder = DockerImageBuilder::new(
        docker.clone(),
        DockerImageBuilderOptions::new(base.reference.clone(), agent_jar().unwrap()),
    );
    let jar = app_jar(FixtureApp::Logging).unwrap();

    let (stream, digest, size) = jar_stream(&jar);
    let spec1 = spec(&tenant, 1, digest, size);
    let (sink, mut rx) = ProgressSink::channel(spec1.deployment, 1024);
    let first = builder.build(&spec1, stream, sink).await.unwrap();
    let image_id = first.image.digest().unwrap().oci();
    assert_eq!(
        first.image.repository(),
        format!("cameleer/{tenant}/orders")
    );
    assert_eq!(first.image.tag(), Some("v1"));
    let mut lines = Vec::new();
    while let Ok(p) = rx.try_recv() {
        lines.push(p.message);
    }
    assert!(
        lines.iter().any(|l| l.contains("Step")),
        "no build output: {lines:?}"
    );

    let inspect = docker.inspect_image(&image_id).await.unwrap();
    let image_labels = inspect.config.unwrap().labels.unwrap();
    assert_eq!(image_labels[labels::TENANT], tenant);
    assert_eq!(image_labels[labels::APP], "orders");
    assert_eq!(image_labels[labels::VERSION], "1");
    assert_eq!(image_labels[labels::ARTIFACT_SHA256], digest.to_string());
    let tags = inspect.repo_tags.unwrap();
    assert!(
        tags.contains(&format!("cameleer/{tenant}/orders:v1")),
        "{tags:?}"
    );
    assert!(
        tags.contains(&format!("cameleer/{tenant}/orders:dev-v1")),
        "{tags:?}"
    );

    // The same context again: the same image, from cache.
    let (stream, _, _) = jar_stream(&jar);
    let again = builder
        .build(&spec1, stream, ProgressSink::discard(spec1.deployment))
        .await
        .unwrap();
    assert!(again.cached);
    assert_eq!(again.image, first.image);
    assert!(!first.cached || again.cached);
    drop(guard);
    assert!(
        docker.inspect_image(&image_id).await.is_err(),
        "cleanup left {image_id} ({})",
        run_id()
    );
}

#[tokio::test]
async fn a_failed_build_carries_the_engines_error_text() {
    let docker = connect().await.unwrap();
    let tenant = unique_tenant();
    let guard = CleanupGuard::new(&docker);
    guard.label(labels::TENANT, &tenant);
    let missing = format!("cameleer/no-such-base-{tenant}:1");
    let builder = DockerImageBuilder::new(
        docker.clone(),
        DockerImageBuilderOptions::new(missing.parse().unwrap(), agent_jar().unwrap()),
    );
    let jar = app_jar(FixtureApp::Logging).unwrap();
    let (stream, digest, size) = jar_stream(&jar);
    let spec = spec(&tenant, 1, digest, size);
    let err = builder
        .build(&spec, stream, ProgressSink::discard(spec.deployment))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "build_failed", "{err}");
    assert!(
        err.to_string().contains(&format!("no-such-base-{tenant}")),
        "{err}"
    );
}

#[tokio::test]
async fn a_jar_shorter_than_announced_fails_the_build() {
    let docker = connect().await.unwrap();
    let tenant = unique_tenant();
    let guard = CleanupGuard::new(&docker);
    guard.label(labels::TENANT, &tenant);
    let base = ensure_base_image(&docker, &BaseImageConfig::default())
        .await
        .unwrap();
    let builder = DockerImageBuilder::new(
        docker.clone(),
        DockerImageBuilderOptions::new(base.reference.clone(), agent_jar().unwrap()),
    );
    let jar = app_jar(FixtureApp::Logging).unwrap();
    let (stream, digest, size) = jar_stream(&jar);
    let spec = spec(&tenant, 1, digest, size + 10);
    let err = builder
        .build(&spec, stream, ProgressSink::discard(spec.deployment))
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), "build_failed" | "backend_error"),
        "{err}"
    );
    let tag = format!("cameleer/{tenant}/orders:v1");
    assert!(
        docker.inspect_image(&tag).await.is_err(),
        "a half-built image was tagged"
    );
}
