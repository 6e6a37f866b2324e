//! `DockerImageBuilder` against the real engine, on every route: an
//! immutable, labelled image pinned to its id whose config and content are
//! exactly the recipe; the same context twice from cache; the engine's
//! error text when a build fails; nothing tagged or left behind when the
//! JAR is not what was announced.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bytes::Bytes;
use cameleer_build::Sha256Digest;
use cameleer_build::java::agent::{AGENT_LINE_PREFIX, agent_jar};
use cameleer_build::java::fixtures::{APP_STARTED_LINE, FixtureApp, app_jar};
use cameleer_docker_testing::{self as testing, CleanupGuard, ContainerSpec, run_id};
use cameleer_runtime::{AppRef, BuildSpec, ByteStream, DeploymentId, ImageBuilder, ProgressSink};
use cameleer_runtime_docker::base_image::{BaseImageConfig, ensure_base_image};
use cameleer_runtime_docker::labels;
use cameleer_runtime_docker::{
    BuildRoute, DockerImageBuilder, DockerImageBuilderOptions, connect::connect,
};
use futures::StreamExt;

mod support;

const ROUTES: [BuildRoute; 3] = [BuildRoute::Load, BuildRoute::Commit, BuildRoute::Dockerfile];

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

/// A builder on the local JRE image, and a guard that removes everything
/// labelled with the test's tenant (images included).
async fn setup(route: BuildRoute) -> (Docker, String, CleanupGuard, DockerImageBuilder) {
    let docker = connect().await.unwrap();
    let tenant = unique_tenant();
    let guard = CleanupGuard::new(&docker);
    guard.label(labels::TENANT, &tenant);
    let base = ensure_base_image(&docker, &BaseImageConfig::default())
        .await
        .unwrap();
    let mut options = DockerImageBuilderOptions::new(base.reference.clone(), agent_jar().unwrap());
    options.route = route;
    let builder = DockerImageBuilder::new(docker.clone(), options);
    (docker, tenant, guard, builder)
}

/// The containers labelled with `tenant` (a build container left behind
/// would be one).
async fn containers_of(docker: &Docker, tenant: &str) -> usize {
    let tenant = cameleer_runtime::TenantId::new(tenant).unwrap();
    support::leftovers(docker, &tenant).await.0
}

#[tokio::test]
async fn builds_a_labelled_pinned_image_and_serves_the_same_context_from_cache() {
    for route in ROUTES {
        let (docker, tenant, guard, builder) = setup(route).await;
        let jar = app_jar(FixtureApp::Logging).unwrap();

        let (stream, digest, size) = jar_stream(&jar);
        let spec1 = spec(&tenant, 1, digest, size);
        let (sink, mut rx) = ProgressSink::channel(spec1.deployment, 1024);
        let first = builder.build(&spec1, stream, sink).await.unwrap();
        assert!(!first.cached, "{route:?}");
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
        let route_line = match route {
            BuildRoute::Commit => "committing",
            BuildRoute::Load => "loading",
            _ => "Step",
        };
        assert!(
            lines.iter().any(|l| l.contains(route_line)),
            "{route:?}: no build output: {lines:?}"
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
        assert_eq!(
            containers_of(&docker, &tenant).await,
            0,
            "{route:?}: no build container left"
        );

        // The same context again: the same image, from cache, in no time.
        let (stream, _, _) = jar_stream(&jar);
        let (sink, mut rx) = ProgressSink::channel(spec1.deployment, 1024);
        let again = builder.build(&spec1, stream, sink).await.unwrap();
        assert!(again.cached, "{route:?}");
        assert_eq!(again.image, first.image);
        let mut lines = Vec::new();
        while let Ok(p) = rx.try_recv() {
            lines.push(p.message);
        }
        assert!(
            lines.iter().any(|l| l.contains("from cache")),
            "{route:?}: {lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains(route_line)),
            "{route:?}: built again: {lines:?}"
        );

        // Another version of the same JAR is another image (its labels say
        // its version).
        let (stream, _, _) = jar_stream(&jar);
        let spec2 = spec(&tenant, 2, digest, size);
        let second = builder
            .build(&spec2, stream, ProgressSink::discard(spec2.deployment))
            .await
            .unwrap();
        assert!(!second.cached);
        assert_ne!(second.image.digest(), first.image.digest());

        drop(guard);
        assert!(
            docker.inspect_image(&image_id).await.is_err(),
            "cleanup left {image_id} ({})",
            run_id()
        );
    }
}

/// What one layer of an exported image holds at `path`: its SHA-256, mode
/// and owner.
#[derive(Debug, PartialEq, Eq)]
struct FileInLayer {
    sha256: Sha256Digest,
    mode: u32,
    uid: u64,
    gid: u64,
}

/// `docker save` of `image` into a temporary file, then every layer's
/// entry at `path` (relative, e.g. `app/app.jar`).
async fn files_in_layers(
    docker: &Docker,
    image: &str,
    paths: &[&str],
) -> Vec<(String, FileInLayer)> {
    let mut export = tempfile::tempfile().unwrap();
    let mut stream = docker.export_image(image);
    while let Some(chunk) = stream.next().await {
        export.write_all(&chunk.unwrap()).unwrap();
    }
    let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        use std::io::Seek;
        export.rewind().unwrap();
        let mut found = Vec::new();
        let mut outer = tar::Archive::new(export);
        for layer in outer.entries().unwrap() {
            let layer = layer.unwrap();
            let name = layer.path().unwrap().to_string_lossy().into_owned();
            if !name.ends_with("layer.tar") {
                continue;
            }
            let mut inner = tar::Archive::new(layer);
            for entry in inner.entries().unwrap() {
                let mut entry = entry.unwrap();
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                if !paths.contains(&path) {
                    continue;
                }
                let header = entry.header().clone();
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                found.push((
                    path,
                    FileInLayer {
                        sha256: Sha256Digest::of(&bytes),
                        mode: header.mode().unwrap() & 0o7777,
                        uid: header.uid().unwrap(),
                        gid: header.gid().unwrap(),
                    },
                ));
            }
        }
        found
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_image_is_exactly_the_recipe_holds_the_jar_and_runs() {
    for route in ROUTES {
        let (docker, tenant, guard, builder) = setup(route).await;
        let jar = app_jar(FixtureApp::Logging).unwrap();
        let (stream, digest, size) = jar_stream(&jar);
        let spec = spec(&tenant, 3, digest, size);
        let built = builder
            .build(&spec, stream, ProgressSink::discard(spec.deployment))
            .await
            .unwrap();
        let id = built.image.digest().unwrap().oci();
        let config = docker.inspect_image(&id).await.unwrap().config.unwrap();

        assert_eq!(
            config.entrypoint,
            Some(builder.entrypoint().unwrap()),
            "{route:?}"
        );
        assert_eq!(
            builder.entrypoint().unwrap(),
            [
                "java",
                "-javaagent:/opt/cameleer/cameleer-agent.jar",
                "-XX:MaxRAMPercentage=75.0",
                "-XX:+ExitOnOutOfMemoryError",
                "-jar",
                "/app/app.jar"
            ]
        );
        assert!(
            config.cmd.unwrap_or_default().is_empty(),
            "{route:?}: no command from the base image"
        );
        assert_eq!(config.user.as_deref(), Some("10001:10001"));
        assert_eq!(config.working_dir.as_deref(), Some("/app"));
        let image_labels: BTreeMap<String, String> =
            config.labels.unwrap_or_default().into_iter().collect();
        let mut expected = builder.image_labels(&spec);
        expected.insert(
            labels::CONTEXT.into(),
            image_labels
                .get(labels::CONTEXT)
                .cloned()
                .unwrap_or_else(|| panic!("{route:?}: no cache key label")),
        );
        if route != BuildRoute::Dockerfile {
            let agent = Sha256Digest::of(&std::fs::read(agent_jar().unwrap()).unwrap());
            expected.insert(labels::AGENT_SHA256.into(), agent.to_string());
            let base = docker
                .inspect_image(&builder.options().base_image.to_string())
                .await
                .unwrap();
            expected.insert(labels::BASE_IMAGE.into(), base.id.unwrap());
        }
        assert_eq!(image_labels, expected, "{route:?}");
        assert!(
            config
                .env
                .unwrap_or_default()
                .iter()
                .any(|e| e.starts_with("JAVA_HOME=")),
            "{route:?}: the base image's environment"
        );

        // The content: the JAR byte for byte in exactly one layer, owned by
        // root and read-only for the app; the agent likewise.
        let files = files_in_layers(
            &docker,
            &id,
            &["app/app.jar", "opt/cameleer/cameleer-agent.jar"],
        )
        .await;
        let agent = Sha256Digest::of(&std::fs::read(agent_jar().unwrap()).unwrap());
        for (path, sha256) in [
            ("app/app.jar", digest),
            ("opt/cameleer/cameleer-agent.jar", agent),
        ] {
            let copies: Vec<&FileInLayer> = files
                .iter()
                .filter(|(p, _)| p == path)
                .map(|(_, f)| f)
                .collect();
            assert_eq!(
                copies,
                [&FileInLayer {
                    sha256,
                    mode: 0o644,
                    uid: 0,
                    gid: 0
                }],
                "{route:?}: {path}"
            );
        }

        // And it runs: the agent's line, then the app's.
        let mut run = ContainerSpec::new(&id, Vec::<String>::new())
            .env("LOG_LINES", "1")
            .env("LOG_INTERVAL_MS", "1");
        run.host_config.network_mode = Some("none".into());
        let (exit, logs) = testing::run_to_exit(&docker, &guard, run, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(exit.code, 0, "{route:?}: {logs:?}");
        let lines: Vec<&str> = logs.stdout.lines().collect();
        assert!(
            lines[0].starts_with(AGENT_LINE_PREFIX),
            "{route:?}: {lines:?}"
        );
        assert_eq!(lines[1], APP_STARTED_LINE, "{route:?}");
        drop(guard);
    }
}

#[tokio::test]
async fn a_failed_build_carries_the_engines_error_text() {
    for route in ROUTES {
        let docker = connect().await.unwrap();
        let tenant = unique_tenant();
        let guard = CleanupGuard::new(&docker);
        guard.label(labels::TENANT, &tenant);
        let missing = format!("cameleer/no-such-base-{tenant}:1");
        let mut options =
            DockerImageBuilderOptions::new(missing.parse().unwrap(), agent_jar().unwrap());
        options.route = route;
        let builder = DockerImageBuilder::new(docker.clone(), options);
        let jar = app_jar(FixtureApp::Logging).unwrap();
        let (stream, digest, size) = jar_stream(&jar);
        let spec = spec(&tenant, 1, digest, size);
        let err = builder
            .build(&spec, stream, ProgressSink::discard(spec.deployment))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "build_failed", "{route:?}: {err}");
        let text = err.to_string();
        assert!(text.contains(&format!("no-such-base-{tenant}")), "{text}");
        assert!(text.contains("No such image"), "the engine's words: {text}");
    }
}

#[tokio::test]
async fn a_jar_that_is_not_what_was_announced_fails_the_build_and_tags_nothing() {
    for route in ROUTES {
        let (docker, tenant, _guard, builder) = setup(route).await;
        let jar = app_jar(FixtureApp::Logging).unwrap();
        let (_, digest, size) = jar_stream(&jar);
        let mut cases = vec![(spec(&tenant, 1, digest, size + 10), "short")];
        if route != BuildRoute::Dockerfile {
            // The commit and load routes check the digest as they stream
            // (the Dockerfile route hands the bytes to the engine's builder).
            cases.push((
                spec(&tenant, 2, Sha256Digest::of(b"another jar"), size),
                "SHA-256",
            ));
        }
        for (spec, needle) in cases {
            let (stream, _, _) = jar_stream(&jar);
            let err = builder
                .build(&spec, stream, ProgressSink::discard(spec.deployment))
                .await
                .unwrap_err();
            assert_eq!(err.code(), "build_failed", "{route:?}: {err}");
            assert!(err.to_string().contains(needle), "{route:?}: {err}");
            let tag = format!("cameleer/{tenant}/orders:v{}", spec.version);
            assert!(
                docker.inspect_image(&tag).await.is_err(),
                "{route:?}: a half-built image was tagged"
            );
        }
        assert_eq!(
            containers_of(&docker, &tenant).await,
            0,
            "{route:?}: no build container left"
        );
    }
}

#[tokio::test]
async fn the_load_route_makes_the_same_image_again_and_keeps_the_history() {
    let (docker, tenant, _guard, builder) = setup(BuildRoute::Load).await;
    let jar = app_jar(FixtureApp::Logging).unwrap();
    let (stream, digest, size) = jar_stream(&jar);
    let spec = spec(&tenant, 1, digest, size);
    let first = builder
        .build(&spec, stream, ProgressSink::discard(spec.deployment))
        .await
        .unwrap();
    let id = first.image.digest().unwrap().oci();

    // One history entry per layer of the parent, plus the JAR's.
    let inspect = docker.inspect_image(&id).await.unwrap();
    let layers = inspect.root_fs.unwrap().layers.unwrap();
    let history = docker.image_history(&id).await.unwrap();
    assert!(!history.is_empty());
    assert!(
        history[0].created_by.contains("/app/app.jar"),
        "{:?}",
        history[0]
    );
    let with_size = history.iter().filter(|h| h.size > 0).count();
    assert_eq!(with_size, layers.len(), "{history:?}");

    // The image id is a function of the inputs: removed and built again,
    // the same id.
    builder.remove_image(&first.image).await.unwrap();
    assert!(docker.inspect_image(&id).await.is_err(), "not removed");
    let (stream, _, _) = jar_stream(&jar);
    let again = builder
        .build(&spec, stream, ProgressSink::discard(spec.deployment))
        .await
        .unwrap();
    assert!(!again.cached);
    assert_eq!(again.image, first.image);
}
