//! Helpers for tests against the real Docker Engine: containers that are
//! removed even when the test panics, and small run-and-wait utilities.
//!
//! Every container started through [`start`] carries the label
//! [`TEST_LABEL`]`=<`[`run_id`]`>`, so anything a killed test process left
//! behind can be found with `docker ps -a --filter label=io.cameleer.test`.
//!
//! A crate of its own, not published, so that the Docker backend exports
//! nothing that exists only for tests: the backend's tests, the examples'
//! end-to-end test and the benchmarks take it as a dev-dependency. The Java
//! apps and the demo agent those tests run are in `cameleer_build::java`.
//!
//! # Examples
//!
//! ```no_run
//! use cameleer_docker_testing::{self as testing, CleanupGuard, ContainerSpec};
//!
//! # async fn demo(docker: bollard::Docker, image: &str) -> Result<(), testing::TestError> {
//! let guard = CleanupGuard::new(&docker);
//! let id = testing::start(&docker, &guard, ContainerSpec::new(image, ["java", "-version"])).await?;
//! let exit = testing::wait_exit(&docker, &id, std::time::Duration::from_secs(30)).await?;
//! assert_eq!(exit.code, 0);
//! # Ok(()) }
//! // `guard` removes the container when dropped, also on panic.
//! ```
#![deny(missing_docs)]

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListImagesOptionsBuilder, ListNetworksOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures::StreamExt;

/// The label every test container carries; its value is the [`run_id`].
pub const TEST_LABEL: &str = "io.cameleer.test";

/// Why a test helper failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestError {
    /// An engine call failed.
    #[error("Docker Engine call failed while {operation}: {source}")]
    Docker {
        /// What was being done.
        operation: String,
        /// bollard's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long we waited.
        after: Duration,
    },
    /// Building the tar of files to copy in failed.
    #[error("packing {path} for the container: {source}")]
    Pack {
        /// The file's path in the container.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl TestError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            TestError::Docker { .. } => "docker_api_error",
            TestError::Timeout { .. } => "timeout",
            TestError::Pack { .. } => "pack_failed",
        }
    }

    fn docker(operation: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> TestError {
        let operation = operation.into();
        move |source| TestError::Docker { operation, source }
    }
}

/// This test process's run id: `<pid>-<random>`, the value of [`TEST_LABEL`].
pub fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let random = uuid::Uuid::new_v4().simple().to_string();
        format!("{}-{}", std::process::id(), &random[..8])
    })
}

#[derive(Debug, Default)]
struct Targets {
    containers: Vec<String>,
    networks: Vec<String>,
    images: Vec<String>,
    labels: Vec<(String, String)>,
}

/// Removes the containers and networks registered with it when dropped,
/// also when the test panics. Removal runs on a thread of its own with its
/// own runtime, so it works from `Drop` inside any async test.
#[derive(Debug)]
pub struct CleanupGuard {
    docker: Docker,
    targets: Mutex<Targets>,
}

impl CleanupGuard {
    /// A guard that cleans up through `docker`.
    pub fn new(docker: &Docker) -> CleanupGuard {
        CleanupGuard {
            docker: docker.clone(),
            targets: Mutex::new(Targets::default()),
        }
    }

    fn with_targets(&self, f: impl FnOnce(&mut Targets)) {
        let mut targets = self
            .targets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut targets);
    }

    /// Removes this container (forcibly, with its anonymous volumes).
    pub fn container(&self, id: &str) {
        self.with_targets(|t| t.containers.push(id.to_string()));
    }

    /// Removes this network (after the containers).
    pub fn network(&self, id: &str) {
        self.with_targets(|t| t.networks.push(id.to_string()));
    }

    /// Removes this image (after the containers), e.g. one staged by [`start`].
    pub fn image(&self, id: &str) {
        self.with_targets(|t| t.images.push(id.to_string()));
    }

    /// Removes every container, network and image labelled `key=value`,
    /// e.g. what an orchestrator or an image builder created for a test's
    /// unique tenant.
    pub fn label(&self, key: &str, value: &str) {
        self.with_targets(|t| t.labels.push((key.to_string(), value.to_string())));
    }

    /// Removes everything registered so far, now; returns how many objects
    /// were removed. Objects already gone are fine.
    pub async fn cleanup(&self) -> Result<usize, TestError> {
        let targets = {
            let mut guard = self
                .targets
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            std::mem::take(&mut *guard)
        };
        remove_targets(&self.docker, targets).await
    }
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        let targets = std::mem::take(
            self.targets
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if targets.containers.is_empty()
            && targets.networks.is_empty()
            && targets.images.is_empty()
            && targets.labels.is_empty()
        {
            return;
        }
        let docker = self.docker.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => {
                    if let Err(e) = rt.block_on(remove_targets(&docker, targets)) {
                        eprintln!("cleanup of test containers failed: {e}");
                    }
                }
                Err(e) => eprintln!("cleanup of test containers failed: no runtime: {e}"),
            }
        });
        if cleanup.join().is_err() {
            eprintln!("cleanup of test containers panicked");
        }
    }
}

/// The ids of every container (running or not) labelled `key=value`.
pub async fn containers_labelled(
    docker: &Docker,
    key: &str,
    value: &str,
) -> Result<Vec<String>, TestError> {
    let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
    let listed = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(TestError::docker(format!(
            "listing containers labelled {key}={value}"
        )))?;
    Ok(listed.into_iter().filter_map(|c| c.id).collect())
}

async fn remove_targets(docker: &Docker, targets: Targets) -> Result<usize, TestError> {
    let mut containers = targets.containers;
    let mut networks = targets.networks;
    let mut images = targets.images;
    for (key, value) in &targets.labels {
        let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
        containers.extend(containers_labelled(docker, key, value).await?);
        let listed = docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(TestError::docker(format!(
                "listing networks labelled {key}={value}"
            )))?;
        networks.extend(listed.into_iter().filter_map(|n| n.id));
        let listed = docker
            .list_images(Some(
                ListImagesOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(TestError::docker(format!(
                "listing images labelled {key}={value}"
            )))?;
        images.extend(listed.into_iter().map(|i| i.id));
    }
    let mut removed = 0;
    let mut first_error = None;
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    for id in containers {
        match docker.remove_container(&id, Some(options.clone())).await {
            Ok(()) => removed += 1,
            Err(e) if is_gone(&e) => {}
            Err(e) => {
                first_error.get_or_insert(TestError::docker(format!("removing container {id}"))(e));
            }
        }
    }
    for id in networks {
        match docker.remove_network(&id).await {
            Ok(()) => removed += 1,
            Err(e) if is_gone(&e) => {}
            Err(e) => {
                first_error.get_or_insert(TestError::docker(format!("removing network {id}"))(e));
            }
        }
    }
    let options = RemoveImageOptionsBuilder::new().force(true).build();
    images.dedup();
    for id in images {
        match docker.remove_image(&id, Some(options.clone()), None).await {
            Ok(_) => removed += 1,
            Err(e) if is_gone(&e) => {}
            Err(e) => {
                first_error.get_or_insert(TestError::docker(format!("removing image {id}"))(e));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

fn is_gone(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
        // Removal already in progress (another guard, or auto-remove).
        || matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 409, message } if message.contains("in progress"))
}

/// A container to run in a test.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// The image.
    pub image: String,
    /// The command (the image's `CMD` is replaced).
    pub cmd: Vec<String>,
    /// `KEY=value` environment entries.
    pub env: Vec<String>,
    /// Files to copy in before start: absolute path and content (mode 0644, root-owned).
    pub files: Vec<(String, Vec<u8>)>,
    /// The user to run as; the image's when `None`.
    pub user: Option<String>,
    /// Extra labels (the test label is always added).
    pub labels: HashMap<String, String>,
    /// Limits, hardening, network.
    pub host_config: HostConfig,
}

impl ContainerSpec {
    /// `image` running `cmd`.
    pub fn new<I, S>(image: &str, cmd: I) -> ContainerSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ContainerSpec {
            image: image.to_string(),
            cmd: cmd.into_iter().map(Into::into).collect(),
            ..ContainerSpec::default()
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> ContainerSpec {
        self.env.push(format!("{key}={value}"));
        self
    }

    /// Copies `content` to `path` in the container before it starts.
    pub fn file(mut self, path: &str, content: Vec<u8>) -> ContainerSpec {
        self.files.push((path.to_string(), content));
        self
    }

    /// Limits memory to `mb` MiB, without swap.
    pub fn memory_mb(mut self, mb: i64) -> ContainerSpec {
        self.host_config.memory = Some(mb * 1024 * 1024);
        self.host_config.memory_swap = Some(mb * 1024 * 1024);
        self
    }
}

/// Creates, fills and starts a container labelled for this test run; it is
/// registered with `guard` before anything can fail. Returns its id.
///
/// The engine refuses to copy files into a container with a read-only root
/// filesystem, so for one the files go into a staged image first (a
/// never-started container, committed), which `guard` removes too.
pub async fn start(
    docker: &Docker,
    guard: &CleanupGuard,
    mut spec: ContainerSpec,
) -> Result<String, TestError> {
    let mut labels = std::mem::take(&mut spec.labels);
    labels.insert(TEST_LABEL.to_string(), run_id().to_string());
    let files = std::mem::take(&mut spec.files);
    let read_only = spec.host_config.readonly_rootfs == Some(true);
    let image = if !files.is_empty() && read_only {
        stage(docker, guard, &spec.image, &labels, &files).await?
    } else {
        spec.image.clone()
    };
    let body = ContainerCreateBody {
        image: Some(image),
        cmd: (!spec.cmd.is_empty()).then_some(spec.cmd),
        env: Some(spec.env),
        user: spec.user,
        labels: Some(labels),
        host_config: Some(spec.host_config),
        ..ContainerCreateBody::default()
    };
    let id = create(docker, guard, &spec.image, body).await?;
    if !read_only {
        upload(docker, &id, &files).await?;
    }
    docker
        .start_container(
            &id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(TestError::docker(format!("starting {id}")))?;
    Ok(id)
}

async fn create(
    docker: &Docker,
    guard: &CleanupGuard,
    image: &str,
    body: ContainerCreateBody,
) -> Result<String, TestError> {
    let name = format!(
        "cameleer-test-{}-{}",
        run_id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let created = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            body,
        )
        .await
        .map_err(TestError::docker(format!(
            "creating a container from {image}"
        )))?;
    guard.container(&created.id);
    Ok(created.id)
}

async fn upload(docker: &Docker, id: &str, files: &[(String, Vec<u8>)]) -> Result<(), TestError> {
    if files.is_empty() {
        return Ok(());
    }
    let tar = pack(files)?;
    let options = UploadToContainerOptionsBuilder::new().path("/").build();
    docker
        .upload_to_container(id, Some(options), bollard::body_full(tar.into()))
        .await
        .map_err(TestError::docker(format!("copying files into {id}")))
}

/// `image` plus `files`, as an untagged image registered with `guard`.
async fn stage(
    docker: &Docker,
    guard: &CleanupGuard,
    image: &str,
    labels: &HashMap<String, String>,
    files: &[(String, Vec<u8>)],
) -> Result<String, TestError> {
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        labels: Some(labels.clone()),
        ..ContainerCreateBody::default()
    };
    let staging = create(docker, guard, image, body).await?;
    upload(docker, &staging, files).await?;
    let committed = docker
        .commit_container(
            CommitContainerOptionsBuilder::new()
                .container(&staging)
                .pause(false)
                .build(),
            bollard::models::ContainerConfig::default(),
        )
        .await
        .map_err(TestError::docker(format!("committing {staging}")))?;
    guard.image(&committed.id);
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    docker
        .remove_container(&staging, Some(options))
        .await
        .map_err(TestError::docker(format!("removing {staging}")))?;
    Ok(committed.id)
}

fn pack(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, TestError> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        let relative = path.trim_start_matches('/');
        tar.append_data(&mut header, relative, content.as_slice())
            .map_err(|source| TestError::Pack {
                path: path.clone(),
                source,
            })?;
    }
    tar.into_inner().map_err(|source| TestError::Pack {
        path: "the end of the archive".into(),
        source,
    })
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerExit {
    /// The exit code (137 for a kill).
    pub code: i64,
    /// Whether the kernel's OOM killer ended it.
    pub oom_killed: bool,
}

/// Waits until the container has stopped and reports how.
pub async fn wait_exit(
    docker: &Docker,
    id: &str,
    timeout: Duration,
) -> Result<ContainerExit, TestError> {
    let deadline = Instant::now() + timeout;
    loop {
        let inspect = docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(TestError::docker(format!("inspecting {id}")))?;
        let state = inspect.state.unwrap_or_default();
        if state.running == Some(false)
            && state
                .finished_at
                .as_deref()
                .is_some_and(|f| !f.starts_with("0001"))
        {
            return Ok(ContainerExit {
                code: state.exit_code.unwrap_or(-1),
                oom_killed: state.oom_killed.unwrap_or(false),
            });
        }
        if Instant::now() >= deadline {
            return Err(TestError::Timeout {
                what: format!("container {id} to exit"),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the container, waits for it to exit and returns how it ended and
/// what it wrote.
pub async fn run_to_exit(
    docker: &Docker,
    guard: &CleanupGuard,
    spec: ContainerSpec,
    timeout: Duration,
) -> Result<(ContainerExit, Logs), TestError> {
    let id = start(docker, guard, spec).await?;
    let exit = wait_exit(docker, &id, timeout).await?;
    Ok((exit, logs(docker, &id).await?))
}

/// Whether the engine still has the container.
pub async fn container_exists(docker: &Docker, id: &str) -> Result<bool, TestError> {
    match docker
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(TestError::docker(format!("inspecting {id}"))(e)),
    }
}

/// A container's output so far, split by stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logs {
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

/// Reads the container's logs as they are now.
pub async fn logs(docker: &Docker, id: &str) -> Result<Logs, TestError> {
    let options = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
    let mut stream = docker.logs(id, Some(options));
    let mut logs = Logs::default();
    while let Some(item) = stream.next().await {
        match item.map_err(TestError::docker(format!("reading the logs of {id}")))? {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                logs.stdout.push_str(&String::from_utf8_lossy(&message));
            }
            LogOutput::StdErr { message } => {
                logs.stderr.push_str(&String::from_utf8_lossy(&message))
            }
            LogOutput::StdIn { .. } => {}
        }
    }
    Ok(logs)
}

/// Waits until `needle` appears in the container's stdout or stderr.
pub async fn wait_for_log(
    docker: &Docker,
    id: &str,
    needle: &str,
    timeout: Duration,
) -> Result<Logs, TestError> {
    let deadline = Instant::now() + timeout;
    loop {
        let current = logs(docker, id).await?;
        if current.stdout.contains(needle) || current.stderr.contains(needle) {
            return Ok(current);
        }
        if Instant::now() >= deadline {
            return Err(TestError::Timeout {
                what: format!(
                    "{needle:?} in the logs of {id} (stdout so far: {:?})",
                    current.stdout
                ),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
