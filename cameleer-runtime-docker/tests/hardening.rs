//! Hardening and limits, as the engine reports them and as the JVM inside
//! sees them; and JVM options reaching the JVM intact as argv elements of
//! the container's entrypoint (never echoed into the logs, and overriding
//! the image's defaults).

mod support;

use std::time::Duration;

use cameleer_build::java::fixtures::FixtureApp;
use cameleer_build::java::{self, Jdk};
use cameleer_runtime::launch::insert_jvm_options;
use cameleer_runtime::{DeploymentStatus, HealthCheck, RuntimeOrchestrator};
use cameleer_runtime_docker::labels;
use support::{TestEnv, config};

/// A JVM option value with everything a shell or the launcher's splitting
/// of `JDK_JAVA_OPTIONS` could trip on: spaces, a tab, both quote kinds, a
/// backslash, an `@`.
const TRICKY_HOME: &str = "/tmp/my home\t'single' \"double\" back\\slash @file";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_hardened_and_limited_and_the_jvm_sees_the_limits() {
    let env = TestEnv::new().await;
    let mut cfg = config(HealthCheck::None, &[("STAY_UP", "true")]);
    cfg.resources.memory_mb = 256;
    cfg.resources.cpu_millis = 500;
    cfg.resources.cpu_shares = Some(512);
    cfg.jvm_options = vec![
        "-Xss512k".into(),
        format!("-Duser.home={TRICKY_HOME}"),
        // The image says 75; the app's own setting must win.
        "-XX:MaxRAMPercentage=50".into(),
    ];
    let (app, request) = env
        .first_version(FixtureApp::MemoryReport, "report", cfg)
        .await;
    let status = env.orchestrator.deploy_app(&request).await.expect("deploy");
    assert_eq!(status.status, DeploymentStatus::Running);

    let inspect = support::inspect(&env.docker, &app, 1).await;
    let host = inspect.host_config.expect("host config");
    let mib = 1024 * 1024;
    assert_eq!(host.cap_drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert!(host.cap_add.unwrap_or_default().is_empty());
    assert_eq!(
        host.security_opt.as_deref(),
        Some(&["no-new-privileges".to_string()][..])
    );
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.privileged, Some(false));
    let tmp = &host.tmpfs.expect("a tmpfs")["/tmp"];
    assert!(
        tmp.contains("size=64m") && tmp.contains("noexec") && tmp.contains("nosuid"),
        "{tmp}"
    );
    assert_eq!(host.pids_limit, Some(1024));
    assert_eq!(host.memory, Some(256 * mib));
    assert_eq!(
        host.memory_swap,
        Some(256 * mib),
        "no swap on top of the limit"
    );
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.cpu_shares, Some(512));
    let log = host.log_config.expect("log config");
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    let log_opts = log.config.unwrap_or_default();
    assert_eq!(
        (log_opts["max-size"].as_str(), log_opts["max-file"].as_str()),
        ("10m", "3")
    );
    assert!(
        host.port_bindings.unwrap_or_default().is_empty(),
        "no published ports"
    );
    assert!(host.binds.unwrap_or_default().is_empty(), "no host mounts");
    assert!(
        inspect.mounts.unwrap_or_default().is_empty(),
        "no mounts at all"
    );
    assert_eq!(host.ipc_mode.as_deref(), Some("private"));
    let config = inspect.config.expect("config");
    assert_eq!(config.user.as_deref(), Some("10001:10001"));
    // The options are argv elements just before `-jar`, not an env var.
    let argv = config.entrypoint.clone().expect("an entrypoint");
    let jar = argv.iter().position(|a| a == "-jar").expect("-jar");
    assert_eq!(
        argv[jar - 3..jar],
        request.config.jvm_options[..],
        "{argv:?}"
    );
    assert!(
        !config
            .env
            .unwrap_or_default()
            .iter()
            .any(|e| e.starts_with("JDK_JAVA_OPTIONS=")),
        "no JDK_JAVA_OPTIONS"
    );
    let container_labels = config.labels.unwrap_or_default();
    assert_eq!(container_labels[labels::TENANT], env.tenant.as_str());
    assert_eq!(container_labels[labels::APP], "report");
    assert_eq!(container_labels[labels::ENV], "dev");
    assert_eq!(container_labels[labels::VERSION], "1");
    assert_eq!(
        container_labels[labels::DEPLOYMENT],
        request.deployment.to_string()
    );
    assert_eq!(container_labels[labels::MANAGED], "true");
    let networks = inspect
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    assert_eq!(networks.len(), 1, "only the tenant network: {networks:?}");
    assert!(
        networks.contains_key(&format!("cameleer-{}-dev", env.tenant)),
        "{networks:?}"
    );

    // What the JVM inside sees.
    let lines = env
        .wait_for_line(&app, "[app] encoding=", Duration::from_secs(20))
        .await;
    let value = |key: &str| -> String {
        let prefix = format!("[app] {key}=");
        lines
            .iter()
            .find_map(|l| l.line.strip_prefix(&prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("no {key} in {lines:#?}"))
    };
    assert_eq!(
        value("total-memory-bytes"),
        (256 * mib).to_string(),
        "the container limit"
    );
    let heap: i64 = value("max-heap-bytes").parse().unwrap();
    assert!(
        heap > 96 * mib && heap <= 128 * mib,
        "the app's 50% of the limit, not the image's 75%: {heap}"
    );
    assert_eq!(
        value("available-processors"),
        "1",
        "half a core rounds up to one"
    );
    assert_eq!(value("user"), "cameleer", "uid 10001, not root");
    assert_eq!(value("home"), TRICKY_HOME, "the JVM option arrived intact");
    let echoed: Vec<_> = lines
        .iter()
        .filter(|l| l.line.contains("Picked up"))
        .collect();
    assert!(
        echoed.is_empty(),
        "the launcher echoed options into the logs: {echoed:#?}"
    );
    env.orchestrator.remove_app(&app).await.unwrap();
}

/// The same argv against the real JDK launcher on this machine: every
/// option arrives as exactly one argument, byte for byte, after the image's
/// defaults, and nothing is echoed to stderr.
#[test]
fn jvm_options_survive_the_jdk_launcher() {
    let jar = java::compile_jar(
        "print-properties",
        &[(
            "demo/PrintProperties.java",
            "package demo; public class PrintProperties { public static void main(String[] a) { \
             for (String k : a) System.out.println(k + \"=[\" + System.getProperty(k) + \"]\"); } }",
        )],
        &[("Main-Class", "demo.PrintProperties")],
    )
    .expect("compiling the probe");
    let values = [
        "plain",
        "two words",
        "\t tabs and  spaces ",
        "'single'",
        "\"double\"",
        "it's \"both\"",
        "back\\slash\\\\",
        "@/etc/passwd",
        "",
        "ünïcödé ✓",
    ];
    let options: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("-Dp{i}={v}"))
        .chain(["-Dp0=overridden".to_string()])
        .collect();
    let java = Jdk::locate().expect("a JDK").tool("java");
    let image = [
        java.to_string_lossy().into_owned(),
        "-Dp0=image-default".into(),
        "-jar".into(),
        jar.to_string_lossy().into_owned(),
    ];
    let argv = insert_jvm_options(&image, &options).unwrap();
    let out = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .args((0..values.len()).map(|i| format!("p{i}")))
        .env_remove("JDK_JAVA_OPTIONS")
        .env_remove("JAVA_TOOL_OPTIONS")
        .output()
        .expect("running java");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "nothing echoed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let got: Vec<&str> = stdout.lines().collect();
    let mut expected: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("p{i}=[{v}]"))
        .collect();
    expected[0] = "p0=[overridden]".into();
    assert_eq!(got, expected, "{argv:?}");
}
