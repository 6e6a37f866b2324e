//! Retention on the real engine: 30 versions built by `DockerImageBuilder`
//! (commit route), the platform's sweep removes exactly the images of the
//! versions it does not keep, and an image a container still uses stays.
//! Apps "run" on the fake backend: only images matter here.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, ListImagesOptionsBuilder};
use cameleer_build::java::agent::agent_jar;
use cameleer_build::java::fixtures::{FixtureApp, app_jar};
use cameleer_docker_testing::CleanupGuard;
use cameleer_runtime::memory::{MemoryArtifactStore, MemoryDeploymentStore};
use cameleer_runtime::testkit::FakeOrchestrator;
use cameleer_runtime::{
    AppConfig, AppRef, Deployment, DeploymentStatus, Platform, PlatformOptions, RetentionOptions,
};
use cameleer_runtime_docker::base_image::{BaseImageConfig, ensure_base_image};
use cameleer_runtime_docker::labels;
use cameleer_runtime_docker::{DockerImageBuilder, DockerImageBuilderOptions, connect::connect};

fn unique_tenant() -> String {
    format!("rt-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// The ids of the engine's images labelled with `tenant`.
async fn images_of(docker: &Docker, tenant: &str) -> BTreeSet<String> {
    let filters = labels::label_filters(vec![format!("{}={tenant}", labels::TENANT)]);
    let options = ListImagesOptionsBuilder::new().filters(&filters).build();
    docker
        .list_images(Some(options))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect()
}

fn image_id(d: &Deployment) -> String {
    format!("sha256:{}", d.image.as_ref().unwrap().digest().unwrap())
}

#[tokio::test]
async fn thirty_versions_on_the_engine_keep_exactly_the_newest_ten_and_the_promoted_one() {
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
    let platform = Platform::builder()
        .orchestrator(Arc::new(FakeOrchestrator::new()))
        .image_builder(Arc::new(builder))
        .deployment_store(Arc::new(MemoryDeploymentStore::new()))
        .artifact_store(Arc::new(MemoryArtifactStore::new()))
        .options(PlatformOptions {
            retention: RetentionOptions {
                keep_versions: 10,
                artifact_grace: Duration::ZERO,
                sweep_interval: None,
            },
            ..PlatformOptions::default()
        })
        .build();
    let dev = AppRef::parse(&tenant, "orders", "dev").unwrap();
    let jar = std::fs::read(app_jar(FixtureApp::Logging).unwrap()).unwrap();
    let artifact = platform
        .upload_artifact(
            &dev,
            Box::pin(futures::stream::iter([Ok(bytes::Bytes::from(jar))])),
            None,
        )
        .await
        .unwrap()
        .sha256;

    // One JAR, 30 versions: each version's image differs (its version label).
    let mut versions = Vec::new();
    for v in 1..=30u64 {
        let d = platform
            .deploy(&dev, artifact, AppConfig::default())
            .await
            .unwrap();
        let d = platform
            .wait_settled(&d.id, Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!(
            (d.version, d.status),
            (v, DeploymentStatus::Running),
            "{d:?}"
        );
        versions.push(d);
        if v == 5 {
            let staging = platform
                .promote(&dev, "staging".parse().unwrap(), None)
                .await
                .unwrap();
            platform
                .wait_settled(&staging.id, Duration::from_secs(60))
                .await
                .unwrap();
        }
    }
    let all: BTreeSet<String> = versions.iter().map(image_id).collect();
    assert_eq!(all.len(), 30, "one image per version");
    assert_eq!(images_of(&docker, &tenant).await, all);

    // A container of v3's image: the engine refuses to remove it.
    let in_use = image_id(&versions[2]);
    let container = docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::new()
                    .name(&format!("{tenant}-holder"))
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(in_use.clone()),
                labels: Some([(labels::TENANT.to_string(), tenant.clone())].into()),
                ..ContainerCreateBody::default()
            },
        )
        .await
        .unwrap();
    guard.container(&container.id);

    let plan = platform.retention_plan().await.unwrap();
    assert_eq!(plan.images.len(), 19);
    let report = platform.sweep().await.unwrap();
    assert_eq!(report.removed_images.len(), 18, "{report:?}");
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(report.skipped[0].code, "conflict");
    assert!(
        report.skipped[0]
            .item
            .contains(in_use.trim_start_matches("sha256:"))
    );

    let kept: BTreeSet<String> = versions
        .iter()
        .filter(|d| d.version > 20 || d.version == 5)
        .map(image_id)
        .chain([in_use])
        .collect();
    assert_eq!(kept.len(), 12);
    assert_eq!(images_of(&docker, &tenant).await, kept);
    // The JAR is used by the kept versions: it stays.
    assert!(report.removed_artifacts.is_empty());
}
