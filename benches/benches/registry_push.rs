//! `cameleer-registry` side by side with `docker build` + `docker push` of
//! the same content to the same registry, in one run (figures in
//! `BENCHMARKS.md`).
//!
//! ```text
//! cargo bench -p cameleer-benches --bench registry_push
//! ```
//!
//! One registry (Debian's `docker-registry`, distribution 2.8) on loopback
//! serves both sides. Each side first pushes its base once (ours: the JRE
//! and agent layers to `cameleer/base`; theirs: the `cameleer/jre` image
//! the Docker backend builds, plus the agent layer of a first build), then
//! runs alternate (ours, theirs, theirs, ours, …), each a new version of a
//! ~20 MB runnable JAR:
//!
//! - ours: `RegistryImageBuilder::build` from the JAR's bytes in hand to a
//!   pushed, tagged image (app layer written while the JAR streams in,
//!   base and agent layers mounted, app layer, config and manifests put);
//! - theirs: the JAR written into a build context, `docker build` of
//!   `FROM cameleer/jre…`, `COPY` agent and JAR, the same `ENTRYPOINT`,
//!   then `docker push`.
//!
//! It prints the medians and their ratio (target ≤ 0.3), the bytes each
//! version added to the registry's storage (what was uploaded: blobs
//! already there or mounted add nothing), and the peak RSS of a process
//! that builds and pushes a 20 MB and a 200 MB JAR, measured by
//! `/usr/bin/time -v` (memory must stay flat).
//!
//! `RUNS=n` sets the number of measured runs per side (default 7). Every
//! image the docker side builds is removed at the end; the registry lives
//! in a temporary directory. Under `cargo test --all-targets` (no `--bench`
//! argument) nothing runs.
#![deny(missing_docs)]

#[allow(dead_code)]
#[path = "docker_vs_cli/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "docker_vs_cli/jar.rs"]
mod jar;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use cameleer_build::java::agent::agent_jar;
use cameleer_registry::testing::TestRegistry;
use cameleer_registry::{RegistryBuilderOptions, RegistryConfig, RegistryImageBuilder};
use cameleer_runtime::{AppRef, BuildSpec, DeploymentId, ImageBuilder, ProgressSink, Sha256Digest};
use cameleer_runtime_docker::base_image::{self, BaseImageConfig};
use common::{BenchError, Target, docker_cli, load, report, runs, timed};
use futures::StreamExt;

/// Set in the child process that builds and pushes one JAR (for its
/// peak RSS): the registry URL.
const CHILD_REGISTRY: &str = "CAMELEER_BENCH_PUSH_REGISTRY";
/// In the child: the JAR to push.
const CHILD_JAR: &str = "CAMELEER_BENCH_PUSH_JAR";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("registry_push: skipped (run it with cargo bench)");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match (std::env::var(CHILD_REGISTRY), std::env::var(CHILD_JAR)) {
        (Ok(url), Ok(jar)) => runtime.block_on(child(&url, Path::new(&jar))),
        _ => runtime.block_on(run()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("registry_push failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The images the docker side built, removed when dropped (also on error).
#[derive(Default)]
struct DockerImages(Vec<String>);

impl Drop for DockerImages {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let out = std::process::Command::new("docker")
            .args(["image", "rm", "-f"])
            .args(&self.0)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                println!("cleanup: removed {} docker images", self.0.len())
            }
            Ok(o) => eprintln!(
                "cleanup: docker image rm: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("cleanup: docker image rm: {e}"),
        }
    }
}

/// Bytes of blobs in the registry's storage.
fn stored_bytes(registry: &TestRegistry) -> u64 {
    let root = registry.storage().join("docker/registry/v2/blobs/sha256");
    registry
        .stored_blobs()
        .iter()
        .filter_map(|b| {
            let hex = b.trim_start_matches("sha256:");
            std::fs::metadata(root.join(&hex[..2]).join(hex).join("data")).ok()
        })
        .map(|m| m.len())
        .sum()
}

fn spec(app: &AppRef, version: u64, jar: &[u8]) -> BuildSpec {
    BuildSpec {
        app: app.clone(),
        deployment: DeploymentId::new_random(),
        version,
        artifact: Sha256Digest::of(jar),
        artifact_size: jar.len() as u64,
    }
}

async fn run() -> Result<(), BenchError> {
    let runs = runs(7);
    let registry = TestRegistry::start()?;
    println!(
        "registry {} (docker-registry, storage {}); load {}",
        registry.url(),
        registry.storage().display(),
        load()
    );
    let agent = agent_jar()?;
    let docker = cameleer_runtime_docker::connect::connect().await?;
    let jre = base_image::ensure_base_image(&docker, &BaseImageConfig::default()).await?;

    // Ours: the base once.
    let builder = RegistryImageBuilder::new(RegistryBuilderOptions::new(
        registry.client_config()?,
        &agent,
    ))?;
    let (took, base) = timed(async { Ok(builder.prepare().await?) }).await?;
    println!(
        "ours: base {base} prepared and pushed in {:.0} ms (JRE layer from the content cache after the first run on a machine)",
        took.as_secs_f64() * 1e3
    );

    // Theirs: a build context with the same agent and entrypoint.
    let context = tempfile::tempdir()?;
    std::fs::copy(&agent, context.path().join("agent.jar"))?;
    let entrypoint = serde_json_array(&builder.entrypoint());
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM {}\nCOPY agent.jar {}\nWORKDIR /app\nCOPY app.jar {}\nUSER {}:{}\nENV LANG=C.UTF-8\nENTRYPOINT {entrypoint}\n",
            jre.reference,
            cameleer_build::IMAGE_AGENT_PATH,
            cameleer_build::IMAGE_APP_PATH,
            cameleer_build::IMAGE_UID,
            cameleer_build::IMAGE_GID,
        ),
    )?;
    let mut built = DockerImages::default();
    let repo = format!("{}/bench/docker-app", registry.host());

    let jars = jar::RunnableJar::compile()?;
    let app = AppRef::parse("bench", "pushed-app", "dev")?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut ours_bytes, mut theirs_bytes) = (Vec::new(), Vec::new());
    let mut jar_size = 0;
    for round in 0..=runs {
        let mut order = ["ours", "theirs"];
        if round % 2 == 1 {
            order.reverse();
        }
        for side in order {
            let version = (round * 2 + usize::from(side == "theirs")) as u64 + 1;
            let jar = Bytes::from(jars.build(5000 + version));
            jar_size = jar.len();
            let before = stored_bytes(&registry);
            let before_blobs = registry.stored_blobs();
            let took = if side == "ours" {
                let spec = spec(&app, version, &jar);
                let stream = futures::stream::iter([Ok(jar)]).boxed();
                let (took, built) = timed(async {
                    Ok(builder
                        .build(&spec, stream, ProgressSink::discard(spec.deployment))
                        .await?)
                })
                .await?;
                if round == runs {
                    what_was_uploaded(&registry, &builder, &built.image, &before_blobs).await?;
                }
                took
            } else {
                let tag = format!("{repo}:v{version}");
                let dir = context.path().to_str().ok_or("a non-UTF-8 temp dir")?;
                let (took, _) = timed(async {
                    tokio::fs::write(context.path().join("app.jar"), &jar).await?;
                    docker_cli(&["build", "-q", "-t", &tag, dir]).await?;
                    docker_cli(&["push", &tag]).await?;
                    Ok(())
                })
                .await?;
                built.0.push(tag);
                took
            };
            let added = stored_bytes(&registry) - before;
            println!(
                "round {round}: {side} {:.0} ms, {added} bytes added to the registry{}",
                took.as_secs_f64() * 1e3,
                if round == 0 { " (warm-up)" } else { "" }
            );
            if round > 0 {
                match side {
                    "ours" => {
                        ours.push(took);
                        ours_bytes.push(added);
                    }
                    _ => {
                        theirs.push(took);
                        theirs_bytes.push(added);
                    }
                }
            }
        }
    }
    println!("JAR: {jar_size} bytes per version (a runnable app with 20 MiB of stored resources)");
    report(
        "a new version's JAR to a pushed image (RegistryImageBuilder vs docker build + docker push)",
        &ours,
        &theirs,
        Target::TimeAtMost(0.3),
    );
    let med = |v: &[u64]| {
        let mut s = v.to_vec();
        s.sort();
        s.get(s.len() / 2).copied().unwrap_or(0)
    };
    println!(
        "bytes added to the registry per new version: ours {} (median; app layer + config + manifest), theirs {}",
        med(&ours_bytes),
        med(&theirs_bytes)
    );

    // Peak RSS of a process that builds and pushes one JAR.
    let scratch = tempfile::tempdir()?;
    for mb in [20usize, 200] {
        let path = scratch.path().join(format!("app-{mb}mb.jar"));
        write_noise(&path, mb << 20, mb as u64)?;
        let (rss, took) = child_peak_rss(&registry.url(), &path)?;
        println!(
            "peak RSS building and pushing a {mb} MB JAR in a fresh process: {} MiB ({:.1} s, /usr/bin/time -v)",
            rss >> 20,
            took.as_secs_f64()
        );
    }
    Ok(())
}

/// Which blobs the last push of ours added: the manifest's app layer, its
/// config and the manifest itself, with their sizes.
async fn what_was_uploaded(
    registry: &TestRegistry,
    builder: &RegistryImageBuilder,
    image: &cameleer_runtime::ImageRef,
    before: &[String],
) -> Result<(), BenchError> {
    let digest = image.digest().ok_or("an unpinned image")?;
    let (_, bytes) = builder
        .client()
        .manifest(image.repository(), &digest.oci())
        .await?
        .ok_or("no manifest")?;
    let manifest: cameleer_build::oci::spec::ImageManifest = serde_json::from_slice(&bytes)?;
    let new: Vec<String> = registry
        .stored_blobs()
        .into_iter()
        .filter(|b| !before.contains(b))
        .collect();
    let layers: Vec<String> = manifest
        .layers()
        .iter()
        .map(|l| format!("{} bytes", l.size()))
        .collect();
    let app = &manifest.layers()[2];
    let mut expected = vec![
        app.digest().to_string(),
        manifest.config().digest().to_string(),
        digest.oci(),
    ];
    expected.sort();
    println!(
        "last version: layers [{}] (JRE base, agent, app); new on the registry: {} blobs, {}",
        layers.join(", "),
        new.len(),
        if new == expected {
            format!(
                "exactly the app layer ({} bytes), the config ({} bytes) and the manifest ({} bytes)",
                app.size(),
                manifest.config().size(),
                bytes.len()
            )
        } else {
            format!("UNEXPECTED: {new:?}, expected {expected:?}")
        }
    );
    Ok(())
}

/// `["a","b"]`, for a Dockerfile's exec form.
fn serde_json_array(argv: &[String]) -> String {
    let quoted: Vec<String> = argv
        .iter()
        .map(|a| format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// `len` bytes of xorshift noise, written a MiB at a time.
fn write_noise(path: &Path, len: usize, seed: u64) -> Result<(), BenchError> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        let n = left.min(chunk.len());
        out.write_all(&chunk[..n])?;
        left -= n;
    }
    out.flush()?;
    Ok(())
}

/// Runs this binary as a child under `/usr/bin/time -v` to build and push
/// `jar`; its peak RSS in bytes and its wall time.
fn child_peak_rss(url: &str, jar: &Path) -> Result<(u64, Duration), BenchError> {
    let exe = std::env::current_exe()?;
    let start = std::time::Instant::now();
    let out = std::process::Command::new("/usr/bin/time")
        .arg("-v")
        .arg(exe)
        .arg("--bench")
        .env(CHILD_REGISTRY, url)
        .env(CHILD_JAR, jar)
        .output()?;
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("the push child failed: {stderr}").into());
    }
    let kb: u64 = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("no peak RSS in /usr/bin/time's output")?;
    Ok((kb * 1024, took))
}

/// The child: builds and pushes the JAR at `jar`, streamed from its file.
async fn child(url: &str, jar: &Path) -> Result<(), BenchError> {
    let builder = RegistryImageBuilder::new(RegistryBuilderOptions::new(
        RegistryConfig::new(url)?,
        agent_jar()?,
    ))?;
    let size = std::fs::metadata(jar)?.len();
    let digest = {
        let mut file = std::fs::File::open(jar)?;
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        std::io::copy(&mut file, &mut h)?;
        Sha256Digest::from(sha2::Digest::finalize(h))
    };
    let spec = BuildSpec {
        app: AppRef::parse("bench", "big-app", "dev")?,
        deployment: DeploymentId::new_random(),
        version: size,
        artifact: digest,
        artifact_size: size,
    };
    let file = tokio::fs::File::open(jar).await?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).boxed();
    let built = builder
        .build(&spec, stream, ProgressSink::discard(spec.deployment))
        .await?;
    println!("pushed {}", built.image);
    Ok(())
}
