use std::collections::BTreeMap;

use cameleer_runtime::{AppConfig, AppRef, DeploymentId, HealthCheck, ImageRef, Resources};
use k8s_openapi::api::core::v1::Container;

use super::*;
use crate::testing::restricted;

fn digest_image() -> ImageRef {
    "registry.local:5000/cameleer/acme/orders@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        .parse()
        .unwrap()
}

fn request(config: AppConfig) -> DeployRequest {
    DeployRequest {
        app: AppRef::parse("acme", "orders", "dev").unwrap(),
        deployment: DeploymentId::new_random(),
        version: 3,
        image: digest_image(),
        config,
    }
}

fn container(d: &Deployment) -> &Container {
    &compat::deployment_spec(d)
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

#[test]
fn the_pod_meets_the_restricted_profile_field_by_field() {
    for health in [
        HealthCheck::None,
        HealthCheck::TcpPort(9092),
        HealthCheck::Http {
            port: 8080,
            path: "/health".into(),
        },
    ] {
        let d = deployment(
            &request(AppConfig {
                health,
                ..AppConfig::default()
            }),
            &KubernetesOptions::default(),
        )
        .unwrap();
        let spec = compat::deployment_spec(&d)
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap();
        assert_eq!(restricted::violations(spec), Vec::<String>::new());
        let psc = spec.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert!(psc.run_as_user.unwrap() >= 10000);
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        assert_eq!(spec.automount_service_account_token, Some(false));
        let sc = container(&d).security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        let tmp = &spec.volumes.as_ref().unwrap()[0];
        assert!(tmp.empty_dir.is_some());
        assert_eq!(
            container(&d).volume_mounts.as_ref().unwrap()[0].mount_path,
            "/tmp"
        );
    }
}

#[test]
fn the_checker_catches_each_breach() {
    let d = deployment(
        &request(AppConfig::default()),
        &KubernetesOptions::default(),
    )
    .unwrap();
    let good = compat::deployment_spec(&d)
        .unwrap()
        .template
        .spec
        .clone()
        .unwrap();
    type Breach = Box<dyn Fn(&mut PodSpec)>;
    let breaches: Vec<(&str, Breach)> = vec![
        ("hostNetwork", Box::new(|s| s.host_network = Some(true))),
        (
            "allowPrivilegeEscalation",
            Box::new(|s| {
                s.containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .allow_privilege_escalation = None
            }),
        ),
        (
            "runAsUser",
            Box::new(|s| {
                s.containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .run_as_user = Some(1000);
            }),
        ),
        (
            "capabilities",
            Box::new(|s| {
                s.containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .capabilities = None;
            }),
        ),
        (
            "seccomp",
            Box::new(|s| {
                s.containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .seccomp_profile = None;
                s.security_context.as_mut().unwrap().seccomp_profile = None;
            }),
        ),
        (
            "read-only",
            Box::new(|s| {
                s.containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .read_only_root_filesystem = Some(false);
            }),
        ),
        (
            "automountServiceAccountToken",
            Box::new(|s| s.automount_service_account_token = None),
        ),
        (
            "hostPath",
            Box::new(|s| {
                s.volumes.as_mut().unwrap()[0].host_path = Some(Default::default());
            }),
        ),
    ];
    for (what, breach) in breaches {
        let mut spec = good.clone();
        breach(&mut spec);
        assert!(
            !restricted::violations(&spec).is_empty(),
            "{what} went unnoticed"
        );
    }
}

#[test]
fn command_and_args_come_from_the_launch_command() {
    let config = AppConfig {
        jvm_options: vec!["-Xss1m".into(), "-Dgreeting=hello world".into()],
        args: vec!["--port=8080".into()],
        ..AppConfig::default()
    };
    let d = deployment(&request(config.clone()), &KubernetesOptions::default()).unwrap();
    let c = container(&d);
    let expected = cameleer_runtime::launch::insert_jvm_options(
        &cameleer_runtime::launch::JvmLaunch::default().entrypoint(),
        &config.jvm_options,
    )
    .unwrap();
    assert_eq!(c.command.as_ref().unwrap(), &expected);
    assert_eq!(c.command.as_ref().unwrap()[0], "java");
    let jar = expected.iter().position(|a| a == "-jar").unwrap();
    assert_eq!(expected[jar - 1], "-Dgreeting=hello world");
    assert_eq!(c.args.as_deref(), Some(&["--port=8080".to_string()][..]));

    // An option the launch command refuses is an invalid request.
    let err = deployment(
        &request(AppConfig {
            jvm_options: vec!["-javaagent:/evil.jar".into()],
            ..AppConfig::default()
        }),
        &KubernetesOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "invalid_request");
}

#[test]
fn the_image_is_pinned_by_digest() {
    let d = deployment(
        &request(AppConfig::default()),
        &KubernetesOptions::default(),
    )
    .unwrap();
    let image = container(&d).image.clone().unwrap();
    assert!(
        image.starts_with("registry.local:5000/cameleer/acme/orders@sha256:"),
        "{image}"
    );
    let mut tagged = request(AppConfig::default());
    tagged.image = "registry.local:5000/cameleer/acme/orders:1"
        .parse()
        .unwrap();
    let err = deployment(&tagged, &KubernetesOptions::default()).unwrap_err();
    assert!(err.to_string().contains("digest"), "{err}");
}

#[test]
fn requests_and_limits_come_from_the_config() {
    let config = AppConfig {
        resources: Resources {
            memory_mb: 768,
            cpu_millis: 250,
            cpu_shares: None,
        },
        ..AppConfig::default()
    };
    let d = deployment(&request(config), &KubernetesOptions::default()).unwrap();
    let r = container(&d).resources.clone().unwrap();
    let want = BTreeMap::from([
        ("cpu".to_string(), Quantity("250m".into())),
        ("memory".to_string(), Quantity("768Mi".into())),
    ]);
    assert_eq!(r.limits.unwrap(), want);
    assert_eq!(r.requests.unwrap(), want);
}

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

#[test]
fn probes_follow_the_health_check() {
    let tcp = probes(&HealthCheck::TcpPort(9092), 60);
    for p in [&tcp.startup, &tcp.readiness, &tcp.liveness] {
        assert_eq!(
            p.as_ref().unwrap().tcp_socket.as_ref().unwrap().port,
            IntOrString::Int(9092)
        );
    }
    // The startup probe allows the whole start timeout.
    let s = tcp.startup.unwrap();
    assert!(s.period_seconds.unwrap() * s.failure_threshold.unwrap() >= 60);

    let http = probes(
        &HealthCheck::Http {
            port: 8080,
            path: "/actuator/health".into(),
        },
        30,
    );
    let get = http.readiness.unwrap().http_get.unwrap();
    assert_eq!(get.path.as_deref(), Some("/actuator/health"));
    assert_eq!(get.port, IntOrString::Int(8080));

    assert_eq!(probes(&HealthCheck::None, 30), Probes::default());
    // Without a health check, a pod must stay up for the grace period.
    let d = deployment(
        &request(AppConfig::default()),
        &KubernetesOptions::default(),
    )
    .unwrap();
    assert_eq!(
        compat::deployment_spec(&d).unwrap().min_ready_seconds,
        Some(3)
    );
}

#[test]
fn the_rollout_keeps_old_pods_until_new_ones_are_ready() {
    let config = AppConfig {
        start_timeout_secs: 90,
        health: HealthCheck::TcpPort(8080),
        ..AppConfig::default()
    };
    let d = deployment(&request(config), &KubernetesOptions::default()).unwrap();
    let spec = compat::deployment_spec(&d).unwrap();
    let rolling = spec
        .strategy
        .as_ref()
        .unwrap()
        .rolling_update
        .as_ref()
        .unwrap();
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
    assert_eq!(spec.progress_deadline_seconds, Some(150));
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.min_ready_seconds, None);
}

#[test]
fn labels_select_the_app_and_identify_the_version() {
    let req = request(AppConfig::default());
    let d = deployment(&req, &KubernetesOptions::default()).unwrap();
    let spec = compat::deployment_spec(&d).unwrap();
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    let selector = spec.selector.match_labels.clone().unwrap();
    for (k, v) in &selector {
        assert_eq!(template_labels.get(k), Some(v), "{k}");
    }
    assert!(!selector.contains_key("cameleer.io/version"));
    assert_eq!(template_labels["cameleer.io/version"], "3");
    assert_eq!(
        template_labels["cameleer.io/deployment"],
        req.deployment.to_string()
    );
    assert_eq!(d.metadata.labels.as_ref(), Some(&template_labels));
    assert_eq!(d.metadata.name.as_deref(), Some("orders"));
    assert_eq!(d.metadata.namespace.as_deref(), Some("cameleer-acme-dev"));
    assert_eq!(crate::status::deployment_identity(&d), Some(identity(&req)));
    let annotations = d.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["cameleer.io/health"], "none");
    assert_eq!(
        annotations["cameleer.io/config-sha256"],
        req.config.sha256().to_string()
    );
}

#[test]
fn a_stopped_deployment_has_no_replicas_and_says_why() {
    let req = request(AppConfig::default());
    let options = KubernetesOptions::default();
    let running = deployment(&req, &options).unwrap();
    let template = compat::deployment_spec(&running).unwrap().template.clone();
    let stopped = deployment_from_template(&req.app, template.clone(), true, &options);
    assert_eq!(compat::deployment_spec(&stopped).unwrap().replicas, Some(0));
    assert_eq!(
        stopped.metadata.annotations.as_ref().unwrap()[DESIRED_STATE],
        STOPPED
    );
    // Rebuilt from its own template, a running Deployment is unchanged.
    assert_eq!(
        deployment_from_template(&req.app, template, false, &options),
        running
    );
}

#[test]
fn a_service_only_when_the_app_declares_a_port() {
    assert!(service(&request(AppConfig::default())).is_none());
    let svc = service(&request(AppConfig {
        health: HealthCheck::Http {
            port: 8080,
            path: "/h".into(),
        },
        ..AppConfig::default()
    }))
    .unwrap();
    let spec = svc.spec.unwrap();
    assert_eq!(spec.ports.as_ref().unwrap()[0].port, 8080);
    assert_eq!(
        spec.ports.as_ref().unwrap()[0].target_port,
        Some(IntOrString::String("app".into()))
    );
    assert_eq!(
        spec.selector.unwrap(),
        selector_labels(&AppRef::parse("acme", "orders", "dev").unwrap())
    );
}

#[test]
fn pull_secrets_and_env_come_from_config() {
    let options = KubernetesOptions {
        image_pull_secrets: vec!["registry-creds".into()],
        ..KubernetesOptions::default()
    };
    let config = AppConfig {
        env: BTreeMap::from([("CAMEL_PROFILE".to_string(), "dev".to_string())]),
        ..AppConfig::default()
    };
    let d = deployment(&request(config), &options).unwrap();
    let spec = compat::deployment_spec(&d)
        .unwrap()
        .template
        .spec
        .clone()
        .unwrap();
    assert_eq!(spec.image_pull_secrets.unwrap()[0].name, "registry-creds");
    let env = spec.containers[0].env.clone().unwrap();
    assert_eq!(env[0].name, "CAMEL_PROFILE");
    assert_eq!(env[0].value.as_deref(), Some("dev"));
}

#[test]
fn a_uid_below_10000_is_refused() {
    let options = KubernetesOptions {
        run_as_user: 1000,
        ..KubernetesOptions::default()
    };
    assert_eq!(
        deployment(&request(AppConfig::default()), &options)
            .unwrap_err()
            .code(),
        "invalid_request"
    );
}
