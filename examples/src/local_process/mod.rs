//! A custom backend: apps run as local `java` processes with the agent.
//!
//! This module is the proof that a host can write its own backend against
//! the public traits of `cameleer-runtime` alone: it uses nothing but
//! [`ImageBuilder`](cameleer_runtime::ImageBuilder),
//! [`RuntimeOrchestrator`](cameleer_runtime::RuntimeOrchestrator) and the
//! model types, and it passes the same conformance suite
//! (`cameleer_runtime::testkit::conformance`) as the Docker backend (see
//! `examples/tests/local_process_conformance.rs`).
//!
//! - [`LocalJarBuilder`] "builds an image" by storing the JAR under
//!   `<root>/images/<sha256>.jar`; the [`ImageRef`](cameleer_runtime::ImageRef)
//!   it returns is pinned to the JAR's SHA-256.
//! - [`LocalProcessOrchestrator`] runs
//!   `java -javaagent:<agent>[=<args>] -XX:MaxRAM=<memory>m
//!   -XX:ActiveProcessorCount=<cpus> -XX:+ExitOnOutOfMemoryError
//!   -Duser.home=<workdir> <jvm_options…> -jar <root>/images/<sha256>.jar
//!   <args…>`, one process per app and version, in a working directory of
//!   its own, with a clean environment
//!   (`PATH`, `HOME`, `LANG` and the config's env vars).
//!
//! # Examples
//!
//! ```no_run
//! use std::sync::Arc;
//! use cameleer_examples::local_process::{LocalJarBuilder, LocalProcessOptions, LocalProcessOrchestrator};
//! use cameleer_runtime::memory::{MemoryArtifactStore, MemoryDeploymentStore};
//! use cameleer_runtime::Platform;
//!
//! # fn demo() -> cameleer_runtime::Result<()> {
//! let options = LocalProcessOptions::new("/var/lib/cameleer-local", "/opt/cameleer/agent.jar")?;
//! let platform = Platform::builder()
//!     .orchestrator(Arc::new(LocalProcessOrchestrator::new(options.clone())))
//!     .image_builder(Arc::new(LocalJarBuilder::new(&options.root)))
//!     .deployment_store(Arc::new(MemoryDeploymentStore::new()))
//!     .artifact_store(Arc::new(MemoryArtifactStore::new()))
//!     .build();
//! # let _ = platform; Ok(()) }
//! ```
//!
//! `examples/examples/custom_backend.rs` runs a whole session.
//!
//! # What it does not do
//!
//! A local process is not a container, and this backend says so rather than
//! pretending:
//!
//! - **No isolation.** Every app runs as the controller's user, shares its
//!   network and filesystem, and can reach every other tenant's apps.
//!   Memory and CPU are hints to the JVM (`-XX:MaxRAM`,
//!   `-XX:ActiveProcessorCount`), not limits: there is no cgroup, so a
//!   process is never OOM-killed for its limit, and
//!   [`StatusReason::OomKilled`](cameleer_runtime::StatusReason::OomKilled)
//!   is never reported (the OOM conformance check is not run: `no_oom;`).
//!   A Java heap exhaustion ends the JVM (`-XX:+ExitOnOutOfMemoryError`)
//!   and reads
//!   [`StatusReason::JvmOutOfMemory`](cameleer_runtime::StatusReason::JvmOutOfMemory).
//! - **One port per host.** Health checks probe `127.0.0.1:<port>`, and
//!   apps of different tenants (or environments) that listen on the same
//!   port collide. For the same reason a redeploy whose old version's
//!   health check probes the same port as the new one's stops the old
//!   version *before* starting the new one (two versions cannot both listen
//!   on the port), so it has a gap and a failed redeploy leaves nothing
//!   running; otherwise (no port, or another one) the old version keeps
//!   serving until the new one is up, as the contract asks. The
//!   conformance check that watches a redeploy switch versions at the app's
//!   address is not run for this backend (`no_reachable;`).
//! - **Processes live with the controller.** They are the controller's
//!   children and are killed when the orchestrator is dropped, but a
//!   controller killed with SIGKILL leaves them running, unsupervised;
//!   [`reconcile`](cameleer_runtime::RuntimeOrchestrator::reconcile) keeps
//!   its default (nothing to adopt), so after a restart the platform marks
//!   their deployments FAILED. The conformance check of a controller restart
//!   is not run for this backend (`no_restart;`).
//! - **Logs are in memory**: the last [`LocalProcessOptions::log_lines`]
//!   lines (and [`LocalProcessOptions::log_bytes`] bytes) per app.

mod builder;
mod health;
mod logs;
mod orchestrator;
mod process;
mod state;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cameleer_runtime::{Error, Result, Sha256Digest};

pub use self::builder::LocalJarBuilder;
pub use self::logs::MAX_LINE_BYTES;
pub use self::orchestrator::LocalProcessOrchestrator;

/// How [`LocalProcessOrchestrator`] runs apps.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use cameleer_examples::local_process::LocalProcessOptions;
///
/// let mut options = LocalProcessOptions::new("/tmp/cameleer-local", "/opt/agent.jar")?;
/// options.agent_args = Some("tenant-labels=true".into());
/// options.stop_timeout = Duration::from_secs(5);
/// # Ok::<(), cameleer_runtime::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LocalProcessOptions {
    /// The directory the backend owns: JARs in `images/` (shared with
    /// [`LocalJarBuilder`]) and each app's working directory and `HOME` in
    /// `work/<tenant>/<env>/<app>/`.
    pub root: PathBuf,
    /// The `java` launcher.
    pub java: PathBuf,
    /// The Cameleer agent JAR, attached with `-javaagent`.
    pub agent_jar: PathBuf,
    /// The agent's arguments (`-javaagent:<jar>=<args>`), if any.
    pub agent_args: Option<String>,
    /// With no health check, how long a process must stay up to count as
    /// RUNNING. Default 1.5 s.
    pub grace: Duration,
    /// How long a stopped process may take to exit after SIGTERM before it
    /// is killed. Default 10 s.
    pub stop_timeout: Duration,
    /// Log lines kept per app. Default 10,000.
    pub log_lines: usize,
    /// Log bytes kept per app. Default 16 MiB.
    pub log_bytes: usize,
    /// What [`deploy_grace`](cameleer_runtime::RuntimeOrchestrator::deploy_grace)
    /// reports: time a deploy may need beyond the app's start timeout
    /// (stopping the previous version). Default 15 s.
    pub deploy_grace: Duration,
}

impl LocalProcessOptions {
    /// Options with the defaults and the `java` that [`find_java`] finds.
    pub fn new(root: impl Into<PathBuf>, agent_jar: impl Into<PathBuf>) -> Result<Self> {
        Ok(Self {
            root: root.into(),
            java: find_java()?,
            agent_jar: agent_jar.into(),
            agent_args: None,
            grace: Duration::from_millis(1500),
            stop_timeout: Duration::from_secs(10),
            log_lines: 10_000,
            log_bytes: 16 << 20,
            deploy_grace: Duration::from_secs(15),
        })
    }
}

/// The `java` launcher: `$JAVA_HOME/bin/java` when `JAVA_HOME` is set, else
/// the first `java` on `PATH`. A typed `backend_error` when there is none.
pub fn find_java() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("JAVA_HOME").filter(|h| !h.is_empty()) {
        let java = Path::new(&home).join("bin").join("java");
        if java.is_file() {
            return Ok(java);
        }
        return Err(no_java(format!("{} does not exist", java.display())));
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("java"))
                .find(|java| java.is_file())
        })
        .ok_or_else(|| no_java("JAVA_HOME is unset and there is no java on PATH".into()))
}

fn no_java(why: String) -> Error {
    Error::Backend {
        message: format!("no java launcher: {why}"),
        source: None,
    }
}

/// Where the JAR of the image pinned to `digest` lives under `root`.
fn jar_path(root: &Path, digest: &Sha256Digest) -> PathBuf {
    root.join("images").join(format!("{digest}.jar"))
}
