//! `RegistryImageBuilder` against a real registry on loopback, with the
//! real JRE base (jlinked from the machine's JDK, cached) and the demo
//! agent: the image says what the launch command says, a new version
//! uploads only its app layer (plus config and manifest), the same JAR is
//! the same digest (a cache hit, whatever the version or the builder), and
//! a JAR that is not the spec's fails the build without a manifest.

use std::sync::Arc;

use bytes::Bytes;
use cameleer_build::java::agent::agent_jar;
use cameleer_build::java::fixtures::{self, FixtureApp};
use cameleer_build::launch::JvmLaunch;
use cameleer_build::oci::spec::{ImageConfiguration, ImageManifest};
use cameleer_build::{IMAGE_GID, IMAGE_UID, Sha256Digest};
use cameleer_registry::testing::TestRegistry;
use cameleer_registry::{RegistryBuilderOptions, RegistryClient, RegistryImageBuilder, labels};
use cameleer_runtime::{AppRef, BuildSpec, ByteStream, DeploymentId, ImageBuilder, ProgressSink};
use futures::StreamExt;

fn spec(app: &AppRef, version: u64, jar: &[u8]) -> BuildSpec {
    BuildSpec {
        app: app.clone(),
        deployment: DeploymentId::new_random(),
        version,
        artifact: Sha256Digest::of(jar),
        artifact_size: jar.len() as u64,
    }
}

/// The JAR as a stream of small chunks, as the artifact store gives it.
fn stream(jar: &[u8]) -> ByteStream {
    let chunks: Vec<std::io::Result<Bytes>> = jar
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(chunks).boxed()
}

fn builder(registry: &TestRegistry) -> RegistryImageBuilder {
    let mut options =
        RegistryBuilderOptions::new(registry.client_config().unwrap(), agent_jar().unwrap());
    options.agent_args = Some("tenant=acme".into());
    RegistryImageBuilder::new(options).unwrap()
}

async fn config_of(
    client: &RegistryClient,
    repo: &str,
    reference: &str,
) -> (ImageManifest, ImageConfiguration) {
    let (_, bytes) = client.manifest(repo, reference).await.unwrap().unwrap();
    let manifest: ImageManifest = serde_json::from_slice(&bytes).unwrap();
    let digest: Sha256Digest = manifest.config().digest().to_string().parse().unwrap();
    let bytes = client.blob(repo, &digest).await.unwrap().unwrap();
    let config = serde_json::from_slice(&bytes).unwrap();
    (manifest, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn builds_pushes_and_a_new_version_uploads_only_its_app_layer() {
    let registry = TestRegistry::start().unwrap();
    let builder = builder(&registry);
    let app = AppRef::parse("acme", "orders", "dev").unwrap();
    let v1 = std::fs::read(fixtures::app_jar(FixtureApp::Logging).unwrap()).unwrap();
    let (sink, mut progress) = ProgressSink::channel(DeploymentId::new_random(), 256);
    let spec1 = spec(&app, 1, &v1);
    let built = builder.build(&spec1, stream(&v1), sink).await.unwrap();
    assert!(!built.cached);
    let image = built.image.to_string();
    assert!(
        image.starts_with(&format!(
            "{}/cameleer/acme/orders:v1@sha256:",
            registry.host()
        )),
        "{image}"
    );
    let digest = *built.image.digest().unwrap();
    let mut said = Vec::new();
    while let Ok(p) = progress.try_recv() {
        said.push(p.message);
    }
    assert!(said.iter().any(|m| m.contains("mounted")), "{said:#?}");

    let client = builder.client();
    let (manifest, config) = config_of(client, "cameleer/acme/orders", "v1").await;
    assert_eq!(manifest.layers().len(), 3, "JRE base, agent, app");
    let run = config.config().as_ref().unwrap();
    let expected = JvmLaunch {
        agent_args: Some("tenant=acme".into()),
        ..JvmLaunch::default()
    }
    .entrypoint();
    assert_eq!(
        run.entrypoint().as_ref().unwrap(),
        &expected,
        "the core's launch command"
    );
    assert_eq!(
        run.user().as_deref(),
        Some(format!("{IMAGE_UID}:{IMAGE_GID}").as_str())
    );
    let image_labels = run.labels().as_ref().unwrap();
    assert_eq!(image_labels[labels::TENANT], "acme");
    assert_eq!(
        image_labels[labels::ARTIFACT_SHA256],
        spec1.artifact.to_string()
    );
    assert!(
        run.env()
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e == "JAVA_HOME=/opt/java")
    );
    assert_eq!(
        client
            .manifest_digest("cameleer/acme/orders", "dev-v1")
            .await
            .unwrap(),
        Some(digest)
    );

    // A new version: only its app layer, config and manifest are new on
    // the registry's disk.
    let before = registry.stored_blobs();
    let v2 = std::fs::read(fixtures::app_jar(FixtureApp::Listening).unwrap()).unwrap();
    let built2 = builder
        .build(
            &spec(&app, 2, &v2),
            stream(&v2),
            ProgressSink::discard(DeploymentId::new_random()),
        )
        .await
        .unwrap();
    let (manifest2, _) = config_of(client, "cameleer/acme/orders", "v2").await;
    let new: Vec<String> = registry
        .stored_blobs()
        .into_iter()
        .filter(|b| !before.contains(b))
        .collect();
    let mut expected_new = vec![
        manifest2.layers()[2].digest().to_string(),
        manifest2.config().digest().to_string(),
        built2.image.digest().unwrap().oci(),
    ];
    expected_new.sort();
    assert_eq!(new, expected_new, "only the app layer, config and manifest");
    assert_eq!(
        manifest2.layers()[..2],
        manifest.layers()[..2],
        "same base and agent"
    );

    // The same JAR again, as another version in another environment, from
    // another builder: the same digest, served from the registry.
    let staging = AppRef::parse("acme", "orders", "staging").unwrap();
    let again = self::builder(&registry)
        .build(
            &spec(&staging, 7, &v1),
            stream(&v1),
            ProgressSink::discard(DeploymentId::new_random()),
        )
        .await
        .unwrap();
    assert!(again.cached);
    assert_eq!(
        again.image.digest(),
        Some(&digest),
        "a pure function of the inputs"
    );
    assert_eq!(
        client
            .manifest_digest("cameleer/acme/orders", "staging-v7")
            .await
            .unwrap(),
        Some(digest)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jar_that_is_not_the_specs_fails_the_build_and_pushes_no_manifest() {
    let registry = TestRegistry::start().unwrap();
    let builder = Arc::new(builder(&registry));
    let app = AppRef::parse("acme", "orders", "dev").unwrap();
    let jar = std::fs::read(fixtures::app_jar(FixtureApp::Logging).unwrap()).unwrap();
    let mut wrong = spec(&app, 1, &jar);
    wrong.artifact = Sha256Digest::of(b"another jar");
    let err = builder
        .build(
            &wrong,
            stream(&jar),
            ProgressSink::discard(wrong.deployment),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "build_failed");
    assert!(err.to_string().contains("the spec says"), "{err}");
    let mut short = spec(&app, 2, &jar);
    short.artifact_size += 10;
    let err = builder
        .build(
            &short,
            stream(&jar),
            ProgressSink::discard(short.deployment),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "build_failed", "{err}");
    for tag in ["v1", "v2"] {
        assert_eq!(
            builder
                .client()
                .manifest_digest("cameleer/acme/orders", tag)
                .await
                .unwrap(),
            None
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_registry_fails_the_build_with_its_code() {
    let registry = TestRegistry::start().unwrap();
    let config = registry.client_config().unwrap();
    drop(registry);
    let builder =
        RegistryImageBuilder::new(RegistryBuilderOptions::new(config, agent_jar().unwrap()))
            .unwrap();
    let app = AppRef::parse("acme", "orders", "dev").unwrap();
    let jar = std::fs::read(fixtures::app_jar(FixtureApp::Logging).unwrap()).unwrap();
    let s = spec(&app, 1, &jar);
    let err = builder
        .build(&s, stream(&jar), ProgressSink::discard(s.deployment))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "build_failed");
    assert!(err.to_string().contains("registry_unreachable"), "{err}");
}
