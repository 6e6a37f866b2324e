//! Several instances of one version on the real engine: their names and
//! labels, a rollout that stops midway, and a crashed instance that the
//! engine restarts while the others serve.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptionsBuilder;
use cameleer_build::java::fixtures::FixtureApp;
use cameleer_runtime::identity::{DeploymentIdentity, InstanceIdentity};
use cameleer_runtime::{
    AppConfig, DeploymentId, DeploymentStatus, HealthCheck, RuntimeEventKind, RuntimeOrchestrator,
};
use cameleer_runtime_docker::base_image::ensure_busybox_image;
use cameleer_runtime_docker::labels;
use support::TestEnv;

fn replicated(n: u32) -> AppConfig {
    let mut config = support::config(HealthCheck::None, &[("LOG_INTERVAL_MS", "200")]);
    config.replicas = n;
    config
}

/// The container of instance `instance` of `version`, inspected.
async fn instance(
    env: &TestEnv,
    app: &cameleer_runtime::AppRef,
    version: u64,
    instance: u32,
) -> Option<bollard::models::ContainerInspectResponse> {
    support::inspect_opt(
        &env.docker,
        &labels::instance_container_name(app, version, instance),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_that_stops_midway_puts_the_old_instances_back() {
    let env = TestEnv::new().await;
    let (app, v1) = env
        .first_version(FixtureApp::Logging, "rolled", replicated(3))
        .await;
    let status = env.orchestrator.deploy_app(&v1).await.unwrap();
    assert_eq!(
        (
            status.status,
            status.ready_instances,
            status.desired_instances
        ),
        (DeploymentStatus::Running, 3, 3)
    );
    // One container per instance, each labelled with its index.
    for i in 0..3 {
        let c = instance(&env, &app, 1, i)
            .await
            .unwrap_or_else(|| panic!("instance {i} of version 1"));
        let l = c.config.and_then(|c| c.labels).unwrap();
        assert_eq!(l[labels::INSTANCE], i.to_string());
        assert_eq!(l[labels::REPLICAS], "3");
    }

    // Someone else's container holds the name of version 2's instance 1:
    // the rollout gets one instance up, then cannot go on.
    let squatter = InstanceIdentity {
        deployment: DeploymentIdentity {
            app: app.clone(),
            deployment: DeploymentId::new_random(),
            version: 2,
        },
        index: 1,
    };
    let busybox = ensure_busybox_image(&env.docker).await.unwrap();
    env.docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::new()
                    .name(&labels::instance_container_name(&app, 2, 1))
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(busybox.reference.to_string()),
                cmd: Some(vec!["true".into()]),
                labels: Some(
                    squatter
                        .docker_labels()
                        .into_iter()
                        .collect::<HashMap<_, _>>(),
                ),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let v2 = env.request(&app, 2, v1.image.clone(), replicated(3));
    let err = env.orchestrator.deploy_app(&v2).await.unwrap_err();
    assert_eq!(err.code(), "conflict", "{err}");

    // Version 1 serves as before, all three back; version 2's first
    // instance is gone.
    let status = env.orchestrator.app_status(&app).await.unwrap();
    assert_eq!(
        (
            status.status,
            status.deployment,
            status.ready_instances,
            status.desired_instances
        ),
        (DeploymentStatus::Running, Some(v1.deployment), 3, 3),
        "{status:?}"
    );
    for i in 0..3 {
        let c = instance(&env, &app, 1, i).await.unwrap();
        assert_eq!(c.state.and_then(|s| s.running), Some(true), "instance {i}");
        let networks = c
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        assert!(
            networks
                .values()
                .any(|e| e.aliases.iter().flatten().any(|a| a == "rolled")),
            "instance {i} of version 1 serves under the app's name again: {networks:?}"
        );
    }
    assert!(instance(&env, &app, 2, 0).await.is_none());
    env.guard.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_instance_is_restarted_while_the_others_serve() {
    let env = TestEnv::new().await;
    let mut events = env.orchestrator.events().await.unwrap();
    let (app, v1) = env
        .first_version(FixtureApp::Logging, "restarted", replicated(2))
        .await;
    env.orchestrator.deploy_app(&v1).await.unwrap();
    let pid = instance(&env, &app, 1, 1)
        .await
        .and_then(|c| c.state?.pid)
        .unwrap();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    // Not a failure of the deployment: the engine restarts the instance.
    let event = support::next_event_of(&mut events, &app, Duration::from_secs(30)).await;
    assert_eq!(event.deployment, v1.deployment);
    match &event.kind {
        RuntimeEventKind::Unhealthy { reason } => {
            assert!(reason.contains("instance 1"), "{reason}");
            assert!(reason.contains("restarts it"), "{reason}");
        }
        other => panic!("the crash of one of two instances arrived as {other:?}"),
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = env.orchestrator.app_status(&app).await.unwrap();
        assert_ne!(s.status, DeploymentStatus::Failed, "{s:?}");
        if s.status == DeploymentStatus::Running && s.restarts == 1 && s.ready_instances == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed = env.orchestrator.list_apps(&env.tenant).await.unwrap();
    assert_eq!(
        (
            listed.len(),
            listed[0].ready_instances,
            listed[0].desired_instances
        ),
        (1, 2, 2)
    );
    env.guard.cleanup().await.unwrap();
}
