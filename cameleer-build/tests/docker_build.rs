//! The rendered Dockerfile and context, built by a real Docker engine: the
//! image's entrypoint, user, working directory and labels are exactly the
//! spec's values, adversarial ones included. Ignored by default: it needs a
//! running Docker daemon (`cargo test -p cameleer-build --test docker_build
//! -- --ignored`); it builds `FROM scratch`, so nothing is pulled.

use std::io::Write;
use std::process::{Command, Stdio};

use cameleer_build::{BuildContext, ContextFile, DockerfileSpec};

#[test]
#[ignore = "needs a Docker daemon"]
fn docker_reads_back_exactly_the_spec() {
    let mut spec = DockerfileSpec::new("scratch".parse().unwrap());
    spec.agent_args = Some(r#"a"],"RUN","x $HOME"#.into());
    spec.jvm_options = vec![r#"-Dq="] \ ${PATH}"#.into()];
    spec.app_args = vec!["\\".into(), "$(id)".into(), "'\"".into()];
    spec.labels.insert(
        "io.cameleer.test".into(),
        r#"v$HOME ${X:-y} \$ "q" \"#.into(),
    );
    spec.labels.insert(r#"odd" key"#.into(), "ünïcode".into());
    let dockerfile = spec.render().unwrap();
    let (agent, app) = (b"agent".to_vec(), b"app".to_vec());
    let mut tar = Vec::new();
    BuildContext {
        dockerfile,
        agent: ContextFile::new(&agent[..], agent.len() as u64),
        app: ContextFile::new(&app[..], app.len() as u64),
    }
    .write_to(&mut tar)
    .unwrap();

    let tag = format!("cameleer-build-test:{}", std::process::id());
    let mut build = Command::new("docker")
        .args(["build", "-q", "-t", &tag, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker");
    build.stdin.take().unwrap().write_all(&tar).unwrap();
    let out = build.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let inspect = Command::new("docker")
        .args(["image", "inspect", "--format", "{{json .Config}}", &tag])
        .output()
        .unwrap();
    let _ = Command::new("docker")
        .args(["image", "rm", "-f", &tag])
        .output();
    assert!(inspect.status.success());
    let config: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let entrypoint: Vec<String> = serde_json::from_value(config["Entrypoint"].clone()).unwrap();
    assert_eq!(entrypoint, spec.command().unwrap());
    assert_eq!(config["User"], "10001:10001");
    assert_eq!(config["WorkingDir"], "/app");
    for (k, v) in &spec.labels {
        assert_eq!(config["Labels"][k], serde_json::json!(v), "label {k:?}");
    }
}
