//! The base images against the real Docker Engine: the locally built JRE
//! runs Java (with the agent, under limits and hardening, as a non-root
//! user), the busybox image runs a shell, and a configured image that cannot
//! be had is a typed error. Every container is removed by a guard, also when
//! an assertion fails.

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::HostConfig;
use cameleer_build::java::agent::{AGENT_LINE_PREFIX, agent_jar};
use cameleer_build::java::fixtures::{self, APP_STARTED_LINE, FixtureApp};
use cameleer_docker_testing::{
    self as testing, CleanupGuard, ContainerExit, ContainerSpec, Logs, TEST_LABEL,
};
use cameleer_runtime_docker::base_image::{
    self, BaseImage, BaseImageConfig, BaseImageOrigin, RUNTIME_UID, ensure_base_image,
    ensure_busybox_image,
};
use cameleer_runtime_docker::connect::{self, MIN_API_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(60);

async fn docker() -> Docker {
    connect::connect()
        .await
        .expect("the local Docker Engine answers")
}

async fn jre(docker: &Docker) -> BaseImage {
    let started = Instant::now();
    let image = ensure_base_image(docker, &BaseImageConfig::default())
        .await
        .expect("the JRE base image can be provided");
    if image.origin == BaseImageOrigin::Built {
        eprintln!(
            "built {} ({}) in {:?}",
            image.reference,
            image.id,
            started.elapsed()
        );
    }
    image
}

async fn busybox(docker: &Docker) -> String {
    let image = ensure_busybox_image(docker).await.unwrap();
    image.reference.to_string()
}

/// `java -jar /app.jar` of a fixture in the JRE image.
async fn java_app(docker: &Docker, app: FixtureApp) -> ContainerSpec {
    let image = jre(docker).await.reference.to_string();
    let jar = std::fs::read(fixtures::app_jar(app).unwrap()).unwrap();
    ContainerSpec::new(&image, ["java", "-jar", "/app.jar"]).file("/app.jar", jar)
}

async fn run(docker: &Docker, guard: &CleanupGuard, spec: ContainerSpec) -> (ContainerExit, Logs) {
    testing::run_to_exit(docker, guard, spec, TIMEOUT)
        .await
        .unwrap()
}

/// The hardening the orchestrator applies, so the image is proven to work under it.
fn hardened(memory_mb: i64) -> HostConfig {
    HostConfig {
        memory: Some(memory_mb * 1024 * 1024),
        memory_swap: Some(memory_mb * 1024 * 1024),
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        tmpfs: Some([("/tmp".to_string(), "rw,noexec,nosuid,size=64m".to_string())].into()),
        pids_limit: Some(256),
        ..HostConfig::default()
    }
}

fn report_value<'a>(stdout: &'a str, key: &str) -> &'a str {
    let prefix = format!("[app] {key}=");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {stdout}"))
}

#[tokio::test]
async fn the_client_negotiates_down_to_the_engine_api() {
    let docker = docker().await;
    assert!(docker.client_version() >= MIN_API_VERSION);
    let version = docker
        .version()
        .await
        .expect("version() works after negotiation");
    let engine_api = version
        .api_version
        .expect("the engine names its API version");
    assert_eq!(docker.client_version().to_string(), engine_api);
    docker
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
        .expect("list_images works after negotiation");
}

#[tokio::test]
async fn the_jre_image_runs_java_as_the_runtime_user() {
    let docker = docker().await;
    let image = jre(&docker).await;
    let tag = image.reference.tag().unwrap();
    assert_eq!(
        image.reference.repository(),
        base_image::DEFAULT_JRE_REPOSITORY
    );
    assert!(tag.starts_with("17-") && tag.len() == 15, "{tag}");
    let inspect = docker
        .inspect_image(&image.reference.to_string())
        .await
        .unwrap();
    assert_eq!(inspect.id.as_deref(), Some(image.id.as_str()));
    let config = inspect.config.unwrap();
    assert_eq!(config.user.as_deref(), Some("10001:10001"));
    assert!(
        config
            .env
            .unwrap()
            .iter()
            .any(|e| e == "JAVA_HOME=/opt/java")
    );

    // A second call finds it.
    let again = jre(&docker).await;
    assert_eq!(
        (again.id.as_str(), again.origin),
        (image.id.as_str(), BaseImageOrigin::Present)
    );

    let guard = CleanupGuard::new(&docker);
    let spec = ContainerSpec::new(&image.reference.to_string(), ["java", "-version"]);
    let (exit, logs) = run(&docker, &guard, spec).await;
    assert_eq!(exit.code, 0, "{logs:?}");
    assert!(logs.stderr.contains("openjdk version \"17"), "{logs:?}");
}

#[tokio::test]
async fn the_jvm_sees_the_container_memory_limit() {
    let docker = docker().await;
    let image = jre(&docker).await.reference.to_string();
    let guard = CleanupGuard::new(&docker);

    let spec =
        ContainerSpec::new(&image, ["java", "-XshowSettings:system", "-version"]).memory_mb(256);
    let (exit, logs) = run(&docker, &guard, spec).await;
    assert_eq!(exit.code, 0, "{logs:?}");
    assert!(logs.stderr.contains("Memory Limit: 256.00M"), "{logs:?}");

    let spec = java_app(&docker, FixtureApp::MemoryReport)
        .await
        .memory_mb(256);
    let (exit, logs) = run(&docker, &guard, spec).await;
    assert_eq!(exit.code, 0, "{logs:?}");
    assert_eq!(
        report_value(&logs.stdout, "total-memory-bytes"),
        (256u64 << 20).to_string()
    );
    // The default heap is derived from the limit (at 256 MiB, HotSpot's
    // MinRAMPercentage: half of it), not from the host's memory.
    let heap: u64 = report_value(&logs.stdout, "max-heap-bytes")
        .parse()
        .unwrap();
    assert!(heap <= 128 << 20, "{logs:?}");
}

#[tokio::test]
async fn the_agent_and_the_app_both_run_in_a_hardened_container() {
    let docker = docker().await;
    let guard = CleanupGuard::new(&docker);
    let agent = std::fs::read(agent_jar().unwrap()).unwrap();
    let mut spec = java_app(&docker, FixtureApp::Logging)
        .await
        .file("/agent.jar", agent)
        .env("LOG_LINES", "3")
        .env("LOG_INTERVAL_MS", "50")
        .env("STDERR_EVERY", "3");
    spec.cmd = [
        "java",
        "-javaagent:/agent.jar=tenant=acme",
        "-jar",
        "/app.jar",
        "x",
    ]
    .map(String::from)
    .to_vec();
    spec.host_config = hardened(256);
    let (exit, logs) = run(&docker, &guard, spec).await;
    assert_eq!(exit.code, 0, "{logs:?}");
    let lines: Vec<&str> = logs.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("{AGENT_LINE_PREFIX}tenant=acme"),
        "{logs:?}"
    );
    assert_eq!(lines[1], APP_STARTED_LINE, "{logs:?}");
    assert_eq!(lines[2], "[app] args=[x]", "{logs:?}");
    assert!(lines.contains(&"[app] line 3"), "{logs:?}");
    assert_eq!(logs.stderr.trim(), "[app] stderr line 3", "{logs:?}");
}

#[tokio::test]
async fn the_hardened_jvm_runs_as_cameleer_with_utf8() {
    let docker = docker().await;
    let guard = CleanupGuard::new(&docker);
    let mut spec = java_app(&docker, FixtureApp::MemoryReport).await;
    spec.host_config = hardened(192);
    let (exit, logs) = run(&docker, &guard, spec).await;
    assert_eq!(exit.code, 0, "{logs:?}");
    assert_eq!(report_value(&logs.stdout, "user"), "cameleer");
    assert_eq!(report_value(&logs.stdout, "home"), "/home/cameleer");
    assert_eq!(report_value(&logs.stdout, "encoding"), "UTF-8 native=UTF-8");
    assert_eq!(
        report_value(&logs.stdout, "total-memory-bytes"),
        (192u64 << 20).to_string()
    );
    assert!(logs.stderr.is_empty(), "the JVM complains: {}", logs.stderr);
}

#[tokio::test]
async fn the_crashing_app_exits_with_its_code() {
    let docker = docker().await;
    let guard = CleanupGuard::new(&docker);
    let spec = java_app(&docker, FixtureApp::Crashing)
        .await
        .env("CRASH_DELAY_MS", "100");
    let (exit, logs) = run(&docker, &guard, spec).await;
    assert_eq!((exit.code, exit.oom_killed), (3, false), "{logs:?}");
    assert!(logs.stdout.contains(APP_STARTED_LINE), "{logs:?}");
    assert!(
        logs.stderr.contains("crashing with exit code 3"),
        "{logs:?}"
    );
}

#[tokio::test]
async fn the_oom_app_is_killed_by_the_kernel_at_the_memory_limit() {
    let docker = docker().await;
    let guard = CleanupGuard::new(&docker);
    let mut spec = java_app(&docker, FixtureApp::Oom).await.memory_mb(128);
    // Even with the flag that turns a Java OutOfMemoryError into exit code 3,
    // the off-heap allocation ends in the kernel's OOM kill.
    spec.cmd.insert(1, "-XX:+ExitOnOutOfMemoryError".into());
    let (exit, logs) = run(&docker, &guard, spec).await;
    assert_eq!((exit.code, exit.oom_killed), (137, true), "{logs:?}");
    assert!(logs.stdout.contains("[app] allocated"), "{logs:?}");
}

async fn http_get(ip: &str, port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect((ip, port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

#[tokio::test]
async fn the_listening_app_serves_health_after_its_delay() {
    let docker = docker().await;
    let guard = CleanupGuard::new(&docker);
    let spec = java_app(&docker, FixtureApp::Listening)
        .await
        .env("PORT", "9090")
        .env("LISTEN_DELAY_MS", "3000");
    let id = testing::start(&docker, &guard, spec).await.unwrap();
    let inspect = docker
        .inspect_container(
            &id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    let ip = inspect
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get("bridge").and_then(|b| b.ip_address.clone()))
        .expect("the container has an address on the default bridge");

    testing::wait_for_log(&docker, &id, "[app] waiting", TIMEOUT)
        .await
        .unwrap();
    assert!(
        http_get(&ip, 9090, "/health").await.is_err(),
        "answers before it listens"
    );

    testing::wait_for_log(&docker, &id, "[app] listening on port 9090", TIMEOUT)
        .await
        .unwrap();
    let health = http_get(&ip, 9090, "/health").await.unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
    let other = http_get(&ip, 9090, "/orders").await.unwrap();
    assert!(other.contains("hello from listening-app"), "{other}");
}

#[tokio::test]
async fn the_busybox_image_runs_a_shell_as_the_runtime_user() {
    let docker = docker().await;
    let image = busybox(&docker).await;
    assert!(
        image.starts_with(&format!("{}:", base_image::BUSYBOX_REPOSITORY)),
        "{image}"
    );
    let guard = CleanupGuard::new(&docker);
    let spec = ContainerSpec::new(&image, ["sh", "-c", "id -u; echo hello from busybox"]);
    let (exit, logs) = run(&docker, &guard, spec).await;
    assert_eq!(exit.code, 0, "{logs:?}");
    assert_eq!(logs.stdout, format!("{RUNTIME_UID}\nhello from busybox\n"));
}

#[tokio::test]
async fn concurrent_callers_get_the_same_image() {
    let docker = docker().await;
    let config = BaseImageConfig::default();
    let results =
        futures::future::join_all((0..3).map(|_| ensure_base_image(&docker, &config))).await;
    let ids: Vec<String> = results.into_iter().map(|r| r.unwrap().id).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
}

#[tokio::test]
async fn a_configured_image_that_cannot_be_pulled_is_base_image_unavailable() {
    let docker = docker().await;
    let reference = "cameleer-test.invalid/no-such-jre:17".parse().unwrap();
    let err = ensure_base_image(&docker, &BaseImageConfig::Reference(reference))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "base_image_unavailable");
    assert!(
        err.to_string()
            .contains("cameleer-test.invalid/no-such-jre:17"),
        "{err}"
    );
}

#[tokio::test]
async fn a_configured_image_that_is_present_is_used_as_is() {
    let docker = docker().await;
    let built = jre(&docker).await;
    let configured = ensure_base_image(
        &docker,
        &BaseImageConfig::Reference(built.reference.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        (configured.id, configured.origin),
        (built.id, BaseImageOrigin::Present)
    );
}

#[tokio::test]
async fn the_guard_removes_its_containers_even_when_the_test_panics() {
    let docker = docker().await;
    let image = busybox(&docker).await;
    let (tx, rx) = std::sync::mpsc::channel();
    let panicking = {
        let docker = docker.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let guard = CleanupGuard::new(&docker);
                let spec = ContainerSpec::new(&image, ["sleep", "300"]);
                tx.send(testing::start(&docker, &guard, spec).await.unwrap())
                    .unwrap();
                panic!("a test failing while its container runs");
            })
        })
    };
    assert!(panicking.join().is_err());
    let id = rx.recv().unwrap();
    assert!(!testing::container_exists(&docker, &id).await.unwrap());
}

#[tokio::test]
async fn the_guard_sweeps_what_carries_its_label() {
    let docker = docker().await;
    let image = busybox(&docker).await;
    let value = format!("sweep-{}", testing::run_id());
    let body = bollard::models::ContainerCreateBody {
        image: Some(image),
        cmd: Some(vec!["sleep".into(), "300".into()]),
        labels: Some([(TEST_LABEL.to_string(), value.clone())].into()),
        ..Default::default()
    };
    let id = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            body,
        )
        .await
        .unwrap()
        .id;
    let guard = CleanupGuard::new(&docker);
    guard.label(TEST_LABEL, &value);
    assert_eq!(guard.cleanup().await.unwrap(), 1);
    assert!(!testing::container_exists(&docker, &id).await.unwrap());
}
