//! Every object the backend generates, validated strictly against the real
//! Kubernetes OpenAPI schemas of two versions (PyPI `kubernetes-validate`,
//! installed by `.ci/run`), read back by a YAML 1.1 parser (PyYAML, as
//! `kubectl` reads 1.1-style YAML), and checked against the restricted Pod
//! Security profile.

use std::path::{Path, PathBuf};
use std::process::Command;

use cameleer_runtime::{AppConfig, AppRef, DeployRequest, DeploymentId, HealthCheck, ImageRef};
use cameleer_runtime_k8s::testing::restricted;
use cameleer_runtime_k8s::{KubernetesOptions, render};

/// The oldest and newest Kubernetes versions k8s-openapi 0.29 supports.
const VERSIONS: [&str; 2] = ["1.33.0", "1.37.0"];

fn image() -> ImageRef {
    "localhost:5001/cameleer/acme/orders@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        .parse()
        .unwrap()
}

fn requests() -> Vec<DeployRequest> {
    let base = |health, config: AppConfig| DeployRequest {
        app: AppRef::parse("acme", "orders", "dev").unwrap(),
        deployment: DeploymentId::new_random(),
        version: 7,
        image: image(),
        config: AppConfig { health, ..config },
    };
    vec![
        base(HealthCheck::None, AppConfig::default()),
        base(HealthCheck::TcpPort(9092), AppConfig::default()),
        base(
            HealthCheck::Http {
                port: 8080,
                path: "/actuator/health".into(),
            },
            AppConfig {
                env: [
                    ("CAMEL_PROFILE".to_string(), "yes".to_string()),
                    ("NUMBERISH".to_string(), "0755".to_string()),
                    ("EMPTY".to_string(), String::new()),
                ]
                .into(),
                jvm_options: vec!["-Xmx128m".into(), "-Dquote=\"x: y\" #z".into()],
                args: vec!["--port=8080".into(), "on".into(), "null".into()],
                ..AppConfig::default()
            },
        ),
    ]
}

/// `kubernetes-validate`, or a failure that says how to install it.
fn validator() -> String {
    let name = "kubernetes-validate".to_string();
    match Command::new(&name).arg("--version").output() {
        Ok(o) if o.status.success() => name,
        _ => {
            panic!("kubernetes-validate is missing: pip install kubernetes-validate (.ci/run does)")
        }
    }
}

fn validate(files: &[PathBuf]) {
    let validator = validator();
    for version in VERSIONS {
        let out = Command::new(&validator)
            .args(["--strict", "--kubernetes-version", version])
            .args(files)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "against {version}:\n{text}");
        assert!(!text.contains("ERROR"), "against {version}:\n{text}");
        // Every document was checked against a schema.
        let passed = text.matches(" passed ").count();
        assert!(passed > 0, "{text}");
    }
}

/// The documents of `path`, read by PyYAML.
fn pyyaml(path: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn write(dir: &Path, name: &str, objects: &[serde_json::Value]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, render::to_yaml(objects).unwrap()).unwrap();
    path
}

#[test]
fn every_deployment_object_validates_against_two_kubernetes_versions() {
    let dir = tempfile::tempdir().unwrap();
    let options = KubernetesOptions {
        image_pull_secrets: vec!["registry-creds".into()],
        ..KubernetesOptions::default()
    };
    let mut files = Vec::new();
    for (i, request) in requests().iter().enumerate() {
        let objects = render::deployment_objects(request, &options).unwrap();
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        let mut expected = vec![
            "Namespace",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "ResourceQuota",
            "LimitRange",
            "Deployment",
        ];
        if request.config.health != HealthCheck::None {
            expected.push("Service");
        }
        assert_eq!(kinds, expected);
        let path = write(dir.path(), &format!("deploy-{i}.yaml"), &objects);
        // What kubectl reads is what we send.
        assert_eq!(pyyaml(&path), objects, "{}", path.display());
        // And the pod meets the restricted profile.
        let deployment: k8s_openapi::api::apps::v1::Deployment =
            serde_json::from_value(objects[6].clone()).unwrap();
        let spec: serde_json::Value =
            serde_json::to_value(&deployment).unwrap()["spec"]["template"]["spec"].clone();
        let spec: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(spec).unwrap();
        assert_eq!(restricted::violations(&spec), Vec::<String>::new());
        files.push(path);
    }
    validate(&files);
}

#[test]
fn a_broken_object_is_caught() {
    // The check is not vacuous: an unknown field fails strict validation.
    let dir = tempfile::tempdir().unwrap();
    let mut objects =
        render::deployment_objects(&requests()[0], &KubernetesOptions::default()).unwrap();
    objects[6]["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsRoot"] =
        serde_json::json!(true);
    let path = write(dir.path(), "broken.yaml", &objects[6..7]);
    let out = Command::new(validator())
        .args(["--strict", "--kubernetes-version", VERSIONS[1]])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn the_shipped_rbac_validates_against_two_kubernetes_versions() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, yaml) in [
        ("controller.yaml", cameleer_runtime_k8s::rbac::CONTROLLER),
        (
            "kaniko-builds.yaml",
            cameleer_runtime_k8s::rbac::KANIKO_BUILDS,
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        assert_eq!(pyyaml(&path), cameleer_runtime_k8s::rbac::documents(yaml));
        files.push(path);
    }
    validate(&files);
}

#[test]
fn the_kaniko_job_and_context_validate_against_two_kubernetes_versions() {
    use cameleer_runtime_k8s::kaniko::{KanikoOptions, build_objects};
    let mut options = KanikoOptions::new(
        "localhost:5001/cameleer",
        "eclipse-temurin:17-jre".parse().unwrap(),
        b"agent".to_vec(),
    );
    options.push_secret = Some("registry-push".into());
    options.insecure_registry = true;
    let spec = cameleer_runtime::BuildSpec {
        app: AppRef::parse("acme", "orders", "dev").unwrap(),
        deployment: DeploymentId::new_random(),
        version: 2,
        artifact: cameleer_runtime::Sha256Digest::of(b"jar"),
        artifact_size: 3,
    };
    let objects = build_objects(
        &options,
        &spec,
        &cameleer_runtime::Sha256Digest::of(b"context"),
        vec![1, 2, 3],
    )
    .unwrap();
    let values = vec![
        render::to_value(&objects.context).unwrap(),
        render::to_value(&objects.job).unwrap(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "kaniko.yaml", &values);
    assert_eq!(pyyaml(&path), values);
    validate(&[path]);
}
