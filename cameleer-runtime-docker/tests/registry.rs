//! Images from a registry, end to end: `cameleer-registry`'s builder (no
//! engine involved) pushes a fixture app to a real registry on loopback
//! with htpasswd auth; the orchestrator deploys the `registry/repo@digest`
//! reference, the engine pulls it by digest with the configured login, and
//! the container prints the agent's line and then the app's first line.
//! Promotion deploys the same digest without building. Containers,
//! networks and the pulled image carry the test's tenant label and are
//! removed by the guard, also when the test fails.

mod support;

use std::time::Duration;

use bytes::Bytes;
use cameleer_build::java::agent::{AGENT_LINE_PREFIX, agent_jar};
use cameleer_build::java::fixtures::{self, APP_STARTED_LINE, FixtureApp};
use cameleer_registry::testing::TestRegistry;
use cameleer_registry::{RegistryBuilderOptions, RegistryImageBuilder};
use cameleer_runtime::{
    BuildSpec, DeploymentId, DeploymentStatus, Error, HealthCheck, ImageBuilder, ProgressSink,
    RuntimeOrchestrator, Sha256Digest, StatusReason,
};
use cameleer_runtime_docker::RegistryLogin;
use futures::StreamExt;
use support::{TestEnv, config, leftovers, test_options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_pushed_to_a_registry_is_pulled_by_digest_and_runs_with_the_agent() {
    let registry = TestRegistry::builder()
        .htpasswd("deployer", "pull-secret")
        .start()
        .unwrap();
    let mut options = test_options();
    options.registry_logins = vec![RegistryLogin {
        registry: registry.host(),
        username: "deployer".into(),
        password: "pull-secret".into(),
    }];
    let env = TestEnv::with_options(options).await;
    let mut builder_options =
        RegistryBuilderOptions::new(registry.client_config().unwrap(), agent_jar().unwrap());
    builder_options.agent_args = Some(format!("tenant={}", env.tenant));
    let builder = RegistryImageBuilder::new(builder_options).unwrap();

    let jar = std::fs::read(fixtures::app_jar(FixtureApp::Logging).unwrap()).unwrap();
    let dev = env.app("orders", "dev");
    let spec = BuildSpec {
        app: dev.clone(),
        deployment: DeploymentId::new_random(),
        version: 1,
        artifact: Sha256Digest::of(&jar),
        artifact_size: jar.len() as u64,
    };
    let body = futures::stream::iter([Ok(Bytes::from(jar))]).boxed();
    let built = builder
        .build(&spec, body, ProgressSink::discard(spec.deployment))
        .await
        .expect("build and push");
    let image = built.image;
    let digest = *image.digest().expect("pinned to the manifest digest");
    assert_eq!(image.registry(), Some(registry.host().as_str()));
    assert!(
        env.docker
            .inspect_image(&format!("{}@{}", image.name(), digest.oci()))
            .await
            .is_err(),
        "the engine does not have it before the deploy"
    );

    let cfg = |interval: &str| config(HealthCheck::None, &[("LOG_INTERVAL_MS", interval)]);
    let mut request = env.request(&dev, 1, image.clone(), cfg("100"));
    request.deployment = spec.deployment;
    let status = env
        .orchestrator
        .deploy_app(&request)
        .await
        .unwrap_or_else(|e| panic!("deploy: {e}\n--- registry log ---\n{}", registry.log()));
    assert_eq!(status.status, DeploymentStatus::Running);
    let lines = env
        .wait_for_line(&dev, APP_STARTED_LINE, Duration::from_secs(30))
        .await;
    let agent = lines
        .iter()
        .position(|l| l.line.starts_with(AGENT_LINE_PREFIX))
        .unwrap_or_else(|| panic!("no agent line: {lines:#?}"));
    let started = lines
        .iter()
        .position(|l| l.line == APP_STARTED_LINE)
        .unwrap();
    assert!(agent < started, "the agent runs before main: {lines:#?}");
    assert_eq!(
        lines[agent].line,
        format!("{AGENT_LINE_PREFIX}tenant={}", env.tenant)
    );

    // The engine pulled exactly that digest.
    let pulled = env
        .docker
        .inspect_image(&format!("{}@{}", image.name(), digest.oci()))
        .await
        .expect("the engine has the image by digest");
    let repo_digests = pulled.repo_digests.unwrap_or_default();
    assert!(
        repo_digests.contains(&format!("{}@{}", image.name(), digest.oci())),
        "{repo_digests:?}"
    );
    let container = support::inspect(&env.docker, &dev, 1).await;
    assert_eq!(container.image, pulled.id);

    // Promotion: the same digest to another environment, no build.
    let prod = env.app("orders", "prod");
    env.orchestrator
        .deploy_app(&env.request(&prod, 1, image.clone(), cfg("300")))
        .await
        .expect("promote");
    let prod_container = support::inspect(&env.docker, &prod, 1).await;
    assert_eq!(prod_container.image, pulled.id);

    env.orchestrator.remove_app(&dev).await.unwrap();
    env.orchestrator.remove_app(&prod).await.unwrap();
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
    // The guard removes the pulled image: it carries the tenant's label.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_login_the_pull_fails_and_names_the_image() {
    let registry = TestRegistry::builder()
        .htpasswd("deployer", "pull-secret")
        .start()
        .unwrap();
    let env = TestEnv::new().await;
    let builder = RegistryImageBuilder::new(RegistryBuilderOptions::new(
        registry.client_config().unwrap(),
        agent_jar().unwrap(),
    ))
    .unwrap();
    let jar = std::fs::read(fixtures::app_jar(FixtureApp::Crashing).unwrap()).unwrap();
    let app = env.app("nologin", "dev");
    let spec = BuildSpec {
        app: app.clone(),
        deployment: DeploymentId::new_random(),
        version: 1,
        artifact: Sha256Digest::of(&jar),
        artifact_size: jar.len() as u64,
    };
    let body = futures::stream::iter([Ok(Bytes::from(jar))]).boxed();
    let image = builder
        .build(&spec, body, ProgressSink::discard(spec.deployment))
        .await
        .unwrap()
        .image;
    let err = env
        .orchestrator
        .deploy_app(&env.request(&app, 1, image.clone(), config(HealthCheck::None, &[])))
        .await
        .unwrap_err();
    // The registry refused: the app's deployment failed, typed, naming
    // the image; the platform is not broken.
    assert_eq!(err.code(), "start_failed", "{err}");
    match &err {
        Error::StartFailed {
            reason: StatusReason::ImagePullFailed { detail },
            ..
        } => assert!(detail.contains(&image.name()), "{detail}"),
        other => panic!("not an image pull failure: {other}"),
    }
    assert_eq!(leftovers(&env.docker, &env.tenant).await, (0, 0));
}
