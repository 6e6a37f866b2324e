//! What every comparison shares: the engine, the base images, a tenant of
//! its own with a cleanup guard, the docker CLI, and medians.

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use cameleer_build::java::agent::agent_jar;
use cameleer_docker_testing::CleanupGuard;
use cameleer_runtime::identity::{DeploymentIdentity, DeploymentMetadata};
use cameleer_runtime::{AppRef, DeploymentId, HealthCheck, ImageRef};
use cameleer_runtime_docker::base_image::{self, BaseImageConfig};
use cameleer_runtime_docker::labels;

/// Any failure of a benchmark run.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// A run's shared state.
pub struct Ctx {
    pub docker: Docker,
    /// The JRE base image.
    pub jre: ImageRef,
    /// The busybox image.
    pub busybox: String,
    /// The demo agent.
    pub agent: std::path::PathBuf,
    /// This run's tenant (others are derived from it).
    pub tenant: String,
    /// Removes what the run made, also on panic.
    pub guard: CleanupGuard,
}

impl Ctx {
    pub async fn new() -> Result<Ctx, BenchError> {
        let docker = cameleer_runtime_docker::connect::connect().await?;
        let jre = base_image::ensure_base_image(&docker, &BaseImageConfig::default()).await?;
        let busybox = base_image::ensure_busybox_image(&docker).await?;
        let agent = agent_jar()?;
        let tenant = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let guard = CleanupGuard::new(&docker);
        guard.label(labels::TENANT, &tenant);
        Ok(Ctx {
            docker,
            jre: jre.reference,
            busybox: busybox.reference.to_string(),
            agent,
            tenant,
            guard,
        })
    }

    /// A further tenant of this run, cleaned up like the first.
    pub fn tenant(&self, n: usize) -> String {
        let tenant = format!("{}-{n}", self.tenant);
        self.guard.label(labels::TENANT, &tenant);
        tenant
    }

    pub async fn cleanup(&self) -> Result<(), BenchError> {
        let removed = self.guard.cleanup().await?;
        println!("cleanup: removed {removed} containers, networks and images");
        Ok(())
    }
}

/// Creates (does not start) a busybox container running `cmd`, labelled
/// as version 1 of `app` so the orchestrator takes it for one of its own,
/// with no network; registered with the cleanup guard. Returns its id.
pub async fn create_app_container(
    ctx: &Ctx,
    app: &AppRef,
    cmd: Vec<String>,
    host_config: HostConfig,
) -> Result<String, BenchError> {
    // The labels the backend writes: the core's identity and metadata.
    let identity = DeploymentIdentity {
        app: app.clone(),
        deployment: DeploymentId::new_random(),
        version: 1,
    };
    let metadata = DeploymentMetadata {
        health: HealthCheck::None,
        start_timeout: Duration::from_secs(30),
        config_sha256: None,
        replicas: 1,
    };
    let mut container_labels = identity.docker_labels();
    container_labels.extend(metadata.docker_labels());
    let body = ContainerCreateBody {
        image: Some(ctx.busybox.clone()),
        cmd: Some(cmd),
        labels: Some(container_labels),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            ..host_config
        }),
        ..ContainerCreateBody::default()
    };
    let name = labels::container_name(app, 1);
    let created = ctx
        .docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            body,
        )
        .await?;
    ctx.guard.container(&created.id);
    Ok(created.id)
}

/// Runs `docker args…`, returning its stdout; a failure carries its stderr.
pub async fn docker_cli(args: &[&str]) -> Result<String, BenchError> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Wall-clock seconds of `f`.
pub async fn timed<T, F: Future<Output = Result<T, BenchError>>>(
    f: F,
) -> Result<(Duration, T), BenchError> {
    let start = Instant::now();
    let value = f.await?;
    Ok((start.elapsed(), value))
}

/// The median of `times`.
pub fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

/// `RUNS` from the environment, or `default`.
pub fn runs(default: usize) -> usize {
    std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(default)
}

/// Prints both medians and the ratio of ours to theirs, with the verdict.
pub fn report(what: &str, ours: &[Duration], theirs: &[Duration], target: Target) {
    let (o, t) = (median(ours), median(theirs));
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let list = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("{what}: ours [{}] ms", list(ours));
    println!("{what}: theirs [{}] ms", list(theirs));
    let time_ratio = o.as_secs_f64() / t.as_secs_f64();
    let (shown, met) = match target {
        Target::TimeAtMost(max) => (
            format!("time ratio {time_ratio:.2} (target <= {max:.2})"),
            time_ratio <= max,
        ),
        Target::ThroughputAtLeast(min) => (
            format!(
                "throughput ratio {:.2} (target >= {min:.2})",
                1.0 / time_ratio
            ),
            1.0 / time_ratio >= min,
        ),
    };
    println!(
        "{what}: median ours {:.1} ms vs theirs {:.1} ms over {} alternating runs: {shown}, {}",
        ms(o),
        ms(t),
        ours.len(),
        if met { "met" } else { "MISSED" }
    );
}

/// What a comparison aims for.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// Our median time at most this share of theirs.
    TimeAtMost(f64),
    /// Our throughput at least this share of theirs.
    ThroughputAtLeast(f64),
}

/// The machine's load, for the record.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
