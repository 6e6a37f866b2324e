//! Tenant isolation on the real engine: a container of one tenant cannot
//! open a TCP connection to another tenant's app, while one on the same
//! tenant+env network can; `list_apps` never shows another tenant's apps;
//! and tenant+env pairs whose derived names collide still get networks and
//! containers of their own.

mod support;

use std::time::Duration;

use bollard::Docker;
use cameleer_build::java::fixtures::FixtureApp;
use cameleer_docker_testing::{self as testing, ContainerSpec};
use cameleer_runtime::{AppRef, DeploymentStatus, HealthCheck, RuntimeOrchestrator, TenantId};
use cameleer_runtime_docker::base_image::ensure_busybox_image;
use support::{TestEnv, config, fixture_image};

/// The network id and address of `app`'s version-1 container, from inspect.
async fn placement(docker: &Docker, app: &AppRef) -> (String, String, String) {
    let inspect = support::inspect(docker, app, 1).await;
    let name = inspect
        .name
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let networks = inspect
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    assert_eq!(networks.len(), 1, "{networks:?}");
    let endpoint = networks.into_values().next().unwrap();
    (
        endpoint.network_id.unwrap(),
        endpoint.ip_address.unwrap(),
        name,
    )
}

/// Sends `GET http://{host}:8080/` from a busybox container on `network`:
/// the body on success, `None` when no connection could be made.
async fn fetch_from(env: &TestEnv, network: &str, host: &str) -> Option<String> {
    let busybox = ensure_busybox_image(&env.docker)
        .await
        .expect("busybox image");
    // busybox's static wget crashes in these minimal images; nc does not.
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} 8080");
    let mut spec = ContainerSpec::new(
        &busybox.reference.to_string(),
        ["sh", "-c", script.as_str()],
    );
    spec.host_config.network_mode = Some(network.to_string());
    let id = testing::start(&env.docker, &env.guard, spec)
        .await
        .expect("client container");
    let exit = testing::wait_exit(&env.docker, &id, Duration::from_secs(30))
        .await
        .expect("the client ends");
    let logs = testing::logs(&env.docker, &id).await.expect("client logs");
    // Off the network now, so the orchestrator can remove the network later.
    env.docker
        .remove_container(
            &id,
            Some(
                bollard::query_parameters::RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .build(),
            ),
        )
        .await
        .expect("removing the client");
    eprintln!(
        "GET http://{host}:8080/ on {network}: exit {}, {:?} {:?}",
        exit.code, logs.stdout, logs.stderr
    );
    // The body, after the headers.
    (exit.code == 0 && logs.stdout.starts_with("HTTP/1.1 200")).then(|| {
        logs.stdout
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string()
    })
}

async fn deploy_web(env: &TestEnv, app: &AppRef, name: &str) {
    let image = fixture_image(&env.docker, FixtureApp::Listening).await;
    let request = env.request(
        app,
        1,
        image,
        config(HealthCheck::TcpPort(8080), &[("APP_NAME", name)]),
    );
    let status = env.orchestrator.deploy_app(&request).await.expect("deploy");
    assert_eq!(status.status, DeploymentStatus::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_reach_each_other_while_a_tenant_env_reaches_its_own_apps() {
    let (a, b) = tokio::join!(TestEnv::new(), TestEnv::new());
    let a_web = a.app("web", "dev");
    let b_web = b.app("web", "dev");
    tokio::join!(
        deploy_web(&a, &a_web, "a-web"),
        deploy_web(&b, &b_web, "b-web")
    );
    let (a_net, a_ip, _) = placement(&a.docker, &a_web).await;
    let (b_net, b_ip, _) = placement(&b.docker, &b_web).await;
    assert_ne!(a_net, b_net);

    let (own_ip, own_name, a_to_b, b_to_a) = tokio::join!(
        fetch_from(&a, &a_net, &a_ip),
        fetch_from(&a, &a_net, "web"),
        fetch_from(&a, &a_net, &b_ip),
        fetch_from(&b, &b_net, &a_ip),
    );
    // Same tenant+env: by address and by app name.
    assert_eq!(own_ip.as_deref(), Some("hello from a-web\n"));
    assert_eq!(own_name.as_deref(), Some("hello from a-web\n"));
    // Across tenants, either way: no connection.
    assert_eq!(a_to_b, None, "A reached B");
    assert_eq!(b_to_a, None, "B reached A");
    // The same holds for the engine's view of who is where.
    for (env, mine) in [(&a, &a_web), (&b, &b_web)] {
        let listed = env.orchestrator.list_apps(&env.tenant).await.unwrap();
        let apps: Vec<&AppRef> = listed.iter().map(|s| &s.app).collect();
        assert_eq!(apps, [mine]);
    }

    a.orchestrator.remove_app(&a_web).await.unwrap();
    b.orchestrator.remove_app(&b_web).await.unwrap();
    assert_eq!(support::leftovers(&a.docker, &a.tenant).await, (0, 0));
    assert_eq!(support::leftovers(&b.docker, &b.tenant).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_env_pairs_with_colliding_names_still_get_their_own_network_and_container() {
    // `x`/`b-c` and `x-b`/`c` both derive `cameleer-x-b-c` (and the same
    // container name for the same app and version).
    let x = TestEnv::new().await;
    let y = TestEnv::with_tenant(TenantId::new(format!("{}-b", x.tenant)).unwrap()).await;
    let x_web = x.app("web", "b-c");
    let y_web = y.app("web", "c");
    deploy_web(&x, &x_web, "x-web").await;
    deploy_web(&y, &y_web, "y-web").await;
    let (x_net, x_ip, x_name) = placement(&x.docker, &x_web).await;
    // The derived container name is x's; y's has its deployment appended.
    let derived = cameleer_runtime_docker::labels::container_name(&y_web, 1);
    assert_eq!(derived, x_name);
    let listed = y.orchestrator.list_apps(&y.tenant).await.unwrap();
    let y_name = format!(
        "{derived}-{}",
        &listed[0].deployment.unwrap().to_string()[..8]
    );
    let inspect = y
        .docker
        .inspect_container(&y_name, None)
        .await
        .expect("y's container");
    let networks = inspect
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    let (y_net_name, endpoint) = networks.into_iter().next().expect("one network");
    let (y_net, y_ip) = (endpoint.network_id.unwrap(), endpoint.ip_address.unwrap());
    assert!(
        y_net_name.starts_with(&format!("cameleer-{}-c-", y.tenant)),
        "{y_net_name}"
    );
    assert_ne!(x_name, y_name);
    assert_ne!(
        x_net, y_net,
        "one network per tenant+env, whatever the names"
    );
    let (own, x_to_y, y_to_x) = tokio::join!(
        fetch_from(&x, &x_net, &x_ip),
        fetch_from(&x, &x_net, &y_ip),
        fetch_from(&y, &y_net, &x_ip),
    );
    assert_eq!(own.as_deref(), Some("hello from x-web\n"));
    assert_eq!(x_to_y, None, "x reached y");
    assert_eq!(y_to_x, None, "y reached x");
    let status = y.orchestrator.app_status(&y_web).await.unwrap();
    assert_eq!(status.status, DeploymentStatus::Running);
    let listed = x.orchestrator.list_apps(&x.tenant).await.unwrap();
    assert_eq!(listed.iter().map(|s| &s.app).collect::<Vec<_>>(), [&x_web]);

    x.orchestrator.remove_app(&x_web).await.unwrap();
    y.orchestrator.remove_app(&y_web).await.unwrap();
    assert_eq!(support::leftovers(&x.docker, &x.tenant).await, (0, 0));
    assert_eq!(support::leftovers(&y.docker, &y.tenant).await, (0, 0));
}
