//! A new version of a ~20 MB JAR, from bytes in hand to its first log line.
//!
//! Ours: SHA-256 of the bytes, `DockerImageBuilder::build` (the default
//! commit route), `deploy_app`, and `app_logs` following until the new
//! version's line. Theirs: write the JAR into a build context, `docker
//! build` of an equivalent plain Dockerfile (same base image, agent, JAR,
//! user and entrypoint), `docker run -d` with the same limits and
//! hardening on a network of its own, `docker logs -f` until the line.
//!
//! Every run is a new version with new JAR bytes (another filler seed), so
//! neither side is served a whole image from a cache; both keep what any
//! second build keeps (the base+agent image here, the `COPY agent` layer
//! there). The app prints `[app] started` and then `[app] args=[v<N>]`
//! right after it; the args line is waited for, as it names the version.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveImageOptionsBuilder};
use bytes::Bytes;
use cameleer_runtime::{
    AppConfig, AppRef, BuildSpec, DeployRequest, DeploymentId, HealthCheck, ImageBuilder,
    LogOptions, ProgressSink, Resources, RuntimeOrchestrator, Sha256Digest,
};
use cameleer_runtime_docker::{
    DockerImageBuilder, DockerImageBuilderOptions, DockerOrchestratorOptions,
    DockerRuntimeOrchestrator, labels,
};
use futures::StreamExt;
use tokio::io::AsyncBufReadExt;

use crate::common::{BenchError, Ctx, Target, docker_cli, report, runs};
use crate::jar::RunnableJar;

const ENTRYPOINT: &str = r#"["java", "-javaagent:/opt/cameleer/cameleer-agent.jar", "-XX:MaxRAMPercentage=75.0", "-XX:+ExitOnOutOfMemoryError", "-jar", "/app/app.jar"]"#;

pub async fn run(ctx: &Ctx) -> Result<(), BenchError> {
    let runs = runs(7);
    let jars = RunnableJar::compile()?;
    let ours = Ours::new(ctx);
    let theirs = Theirs::new(ctx).await?;
    println!(
        "load {}; {} MB JAR; {runs} alternating runs after one warm-up each",
        crate::common::load(),
        jars.build(0).len() / 1_000_000
    );
    let (mut our_times, mut their_times) = (Vec::new(), Vec::new());
    // Version 1 of each side warms up (the base+agent image, the network,
    // the CLI's layer cache for the agent) and is not counted.
    for round in 0..=runs {
        let version = round as u64 + 1;
        let our_jar = jars.build(1000 + version);
        let their_jar = jars.build(2000 + version);
        let (o, t) = if round % 2 == 0 {
            let o = ours.new_version(version, our_jar).await?;
            (o, theirs.new_version(version, their_jar).await?)
        } else {
            let t = theirs.new_version(version, their_jar).await?;
            (ours.new_version(version, our_jar).await?, t)
        };
        println!(
            "round {round}: ours {:.0} ms (build {:.0} ms), theirs {:.0} ms (build {:.0} ms){}",
            o.total.as_secs_f64() * 1e3,
            o.build.as_secs_f64() * 1e3,
            t.total.as_secs_f64() * 1e3,
            t.build.as_secs_f64() * 1e3,
            if round == 0 { " (warm-up)" } else { "" }
        );
        if round > 0 {
            our_times.push(o.total);
            their_times.push(t.total);
        }
    }
    report(
        "first log line of a new version",
        &our_times,
        &their_times,
        Target::TimeAtMost(0.7),
    );
    ours.finish().await?;
    theirs.finish().await;
    Ok(())
}

/// One measured run: the whole, and the image build part of it.
struct Times {
    total: Duration,
    build: Duration,
}

fn marker(version: u64) -> String {
    format!("[app] args=[v{version}]")
}

struct Ours<'c> {
    ctx: &'c Ctx,
    app: AppRef,
    builder: DockerImageBuilder,
    orchestrator: DockerRuntimeOrchestrator,
    previous_image: std::sync::Mutex<Option<String>>,
}

impl<'c> Ours<'c> {
    fn new(ctx: &'c Ctx) -> Ours<'c> {
        let builder = DockerImageBuilder::new(
            ctx.docker.clone(),
            DockerImageBuilderOptions::new(ctx.jre.clone(), &ctx.agent),
        );
        let orchestrator = DockerRuntimeOrchestrator::new(
            ctx.docker.clone(),
            DockerOrchestratorOptions {
                stop_timeout: Duration::from_secs(2),
                ..DockerOrchestratorOptions::default()
            },
        );
        Ours {
            ctx,
            app: AppRef::parse(&ctx.tenant, "orders", "dev").expect("a valid app"),
            builder,
            orchestrator,
            previous_image: std::sync::Mutex::new(None),
        }
    }

    async fn new_version(&self, version: u64, jar: Vec<u8>) -> Result<Times, BenchError> {
        let start = Instant::now();
        let jar = Bytes::from(jar);
        let spec = BuildSpec {
            app: self.app.clone(),
            deployment: DeploymentId::new_random(),
            version,
            artifact: Sha256Digest::of(&jar),
            artifact_size: jar.len() as u64,
        };
        // As an artifact store streams it: 64 KiB chunks.
        let chunks: Vec<std::io::Result<Bytes>> = (0..jar.len())
            .step_by(64 << 10)
            .map(|at| Ok(jar.slice(at..jar.len().min(at + (64 << 10)))))
            .collect();
        let built = self
            .builder
            .build(
                &spec,
                futures::stream::iter(chunks).boxed(),
                ProgressSink::discard(spec.deployment),
            )
            .await?;
        let build = start.elapsed();
        let request = DeployRequest {
            app: self.app.clone(),
            deployment: spec.deployment,
            version,
            image: built.image.clone(),
            config: AppConfig {
                env: BTreeMap::new(),
                args: vec![format!("v{version}")],
                resources: Resources {
                    memory_mb: 256,
                    cpu_millis: 1000,
                    cpu_shares: None,
                },
                health: HealthCheck::None,
                start_timeout_secs: 30,
                ..AppConfig::default()
            },
        };
        let orchestrator = self.orchestrator.clone();
        let deploy = tokio::spawn(async move { orchestrator.deploy_app(&request).await });
        self.wait_for_line(version).await?;
        let total = start.elapsed();
        // Not timed: the deploy finishes (health grace, the old version
        // goes), and the old image goes.
        deploy.await??;
        let id = built
            .image
            .digest()
            .map(|d| d.oci())
            .ok_or("an unpinned image")?;
        let previous = self
            .previous_image
            .lock()
            .map_err(|_| "poisoned")?
            .replace(id);
        if let Some(old) = previous {
            remove_image(self.ctx, &old).await;
        }
        Ok(Times { total, build })
    }

    /// Follows the app's logs once version `version` has a container,
    /// until its line.
    async fn wait_for_line(&self, version: u64) -> Result<(), BenchError> {
        let needle = marker(version);
        let mut filter = labels::app_filter(&self.app);
        filter.push(format!("{}={version}", labels::VERSION));
        let filters = labels::label_filters(filter);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if Instant::now() > deadline {
                return Err(format!("no {needle:?} within 60 s").into());
            }
            let exists = !self
                .ctx
                .docker
                .list_containers(Some(
                    ListContainersOptionsBuilder::new()
                        .all(true)
                        .filters(&filters)
                        .build(),
                ))
                .await?
                .is_empty();
            if exists {
                let options = LogOptions {
                    since: None,
                    follow: true,
                };
                // A container that is not running yet ends the stream at
                // once, and one the deploy replaces ends it in an error;
                // either way, look again.
                match self.orchestrator.app_logs(&self.app, &options).await {
                    Ok(mut lines) => {
                        while let Some(line) = lines.next().await {
                            match line {
                                Ok(line) if line.line == needle => return Ok(()),
                                Ok(_) => {}
                                Err(e) => {
                                    eprintln!("v{version}: {e}; looking again");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => eprintln!("v{version}: {e}; looking again"),
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(&self) -> Result<(), BenchError> {
        self.orchestrator.remove_app(&self.app).await?;
        let last = self.previous_image.lock().map_err(|_| "poisoned")?.take();
        if let Some(id) = last {
            remove_image(self.ctx, &id).await;
        }
        Ok(())
    }
}

async fn remove_image(ctx: &Ctx, id: &str) {
    let options = RemoveImageOptionsBuilder::new().force(true).build();
    if let Err(e) = ctx.docker.remove_image(id, Some(options), None).await {
        eprintln!("could not remove image {id}: {e}");
    }
}

struct Theirs<'c> {
    ctx: &'c Ctx,
    dir: tempfile::TempDir,
    network: String,
    repository: String,
    previous: std::sync::Mutex<Option<(String, String)>>,
}

impl<'c> Theirs<'c> {
    async fn new(ctx: &'c Ctx) -> Result<Theirs<'c>, BenchError> {
        // tmpfs when there is one, so disk speed is not measured.
        let dir = tempfile::Builder::new()
            .prefix("cameleer-bench-cli")
            .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
                "/dev/shm"
            } else {
                "/tmp"
            })?;
        std::fs::copy(&ctx.agent, dir.path().join("agent.jar"))?;
        let dockerfile = format!(
            "FROM {}\nCOPY agent.jar /opt/cameleer/cameleer-agent.jar\nCOPY app.jar /app/app.jar\n\
             WORKDIR /app\nUSER 10001:10001\nENTRYPOINT {ENTRYPOINT}\n",
            ctx.jre
        );
        std::fs::write(dir.path().join("Dockerfile"), dockerfile)?;
        let network = format!("{}-cli", ctx.tenant);
        let label = format!("{}={}", labels::TENANT, ctx.tenant);
        docker_cli(&["network", "create", "--label", &label, &network]).await?;
        Ok(Theirs {
            ctx,
            dir,
            network,
            repository: format!("cameleer-bench-cli/{}", ctx.tenant),
            previous: std::sync::Mutex::new(None),
        })
    }

    async fn new_version(&self, version: u64, jar: Vec<u8>) -> Result<Times, BenchError> {
        let tag = format!("{}:v{version}", self.repository);
        self.ctx.guard.image(&tag);
        let start = Instant::now();
        tokio::fs::write(self.dir.path().join("app.jar"), &jar).await?;
        let dir = self
            .dir
            .path()
            .to_str()
            .ok_or("a temp dir that is not UTF-8")?;
        let image = docker_cli(&["build", "-q", "-t", &tag, dir]).await?;
        let build = start.elapsed();
        let image = image.trim().to_string();
        let label = format!("{}={}", labels::TENANT, self.ctx.tenant);
        let arg = format!("v{version}");
        let id = docker_cli(&[
            "run",
            "-d",
            "--label",
            &label,
            "--network",
            &self.network,
            "--user",
            "10001:10001",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--read-only",
            "--tmpfs",
            "/tmp:rw,nosuid,nodev,size=64m,mode=1777,noexec",
            "--ipc",
            "private",
            "--pids-limit",
            "1024",
            "--memory",
            "256m",
            "--memory-swap",
            "256m",
            "--cpus",
            "1",
            "--restart",
            "no",
            "--log-driver",
            "json-file",
            "--log-opt",
            "max-size=10m",
            "--log-opt",
            "max-file=3",
            &image,
            &arg,
        ])
        .await?
        .trim()
        .to_string();
        self.ctx.guard.container(&id);
        follow_until(&id, &marker(version)).await?;
        let total = start.elapsed();
        let previous = self
            .previous
            .lock()
            .map_err(|_| "poisoned")?
            .replace((id, tag));
        if let Some((old_id, old_tag)) = previous {
            docker_cli(&["rm", "-f", &old_id]).await?;
            docker_cli(&["rmi", &old_tag]).await?;
        }
        Ok(Times { total, build })
    }

    async fn finish(&self) {
        let last = self.previous.lock().ok().and_then(|mut p| p.take());
        if let Some((id, tag)) = last {
            let _ = docker_cli(&["rm", "-f", &id]).await;
            let _ = docker_cli(&["rmi", &tag]).await;
        }
        let _ = docker_cli(&["network", "rm", &self.network]).await;
    }
}

/// `docker logs -f <id>` until a line equal to `needle`.
async fn follow_until(id: &str, needle: &str) -> Result<(), BenchError> {
    let mut child = tokio::process::Command::new("docker")
        .args(["logs", "-f", id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if line == needle {
                return Ok::<bool, std::io::Error>(true);
            }
        }
        Ok(false)
    })
    .await;
    let _ = child.start_kill();
    match found {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(format!("docker logs -f {id} ended without {needle:?}").into()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(format!("no {needle:?} from {id} within 60 s").into()),
    }
}
