//! [`DockerRuntimeOrchestrator`]: the [`RuntimeOrchestrator`] of one Docker
//! Engine.
//!
//! Each deployment is one hardened container per instance
//! ([`AppConfig::replicas`](cameleer_runtime::AppConfig::replicas); see
//! [`crate::container`]) on
//! the bridge network of its tenant+env (see [`crate::network`]), labelled
//! with its tenant, app, env, version and deployment (see [`crate::labels`]).
//! The labels are the truth: every operation lists or inspects the engine
//! instead of trusting memory, so a controller that restarts, or that died
//! in the middle of a step, converges by running the step again.
//!
//! # Semantics
//!
//! - **deploy**: the new version starts next to the old one, on the tenant
//!   network but without the app's name; once its health check passes
//!   (within `start_timeout`) it takes the app's name, and every older
//!   container of the app leaves the network and is stopped and removed
//!   (see [`switch`] for what a client sees). With several replicas this
//!   happens one instance at a time, each new one health-gated before an
//!   old one leaves (see [`rollout`]). If it exits, is OOM killed or
//!   does not become healthy in time, the error is
//!   [`Error::StartFailed`] saying why
//!   (with its last lines of output) and: when an older version is running,
//!   the new container is removed and the old one keeps serving, untouched;
//!   when none is, the failed container is kept, stopped, as the app's
//!   newest, so `app_status` reports FAILED with the reason and `app_logs`
//!   shows what it wrote (older stopped versions go: only the newest
//!   container of an app is ever addressed). An engine that fails or stops
//!   answering is [`Error::Backend`],
//!   naming the engine, after
//!   [`DockerOrchestratorOptions::engine_patience`].
//!   The image is used when the engine has it (by id, or by
//!   `name@digest` for a registry image pulled before); otherwise it is
//!   pulled, by digest when the reference has a registry and a digest (the
//!   digest is what runs, whatever a tag says now), with the
//!   [`RegistryLogin`] of that registry. So images built by the commit
//!   route (local image ids) and images pushed to a registry by
//!   `cameleer-registry`'s builder (manifest digests) both deploy, and a
//!   promotion deploys the same digest on any engine that can reach the
//!   registry.
//! - **stop**: every running container of the app is marked stopped on
//!   request (see [`stopped`]), then stopped (SIGTERM, then SIGKILL after
//!   [`DockerOrchestratorOptions::stop_timeout`]) and *kept*, so its logs
//!   stay readable and `restart_app` can start it again; the status is then
//!   STOPPED, also for a controller restarted since (an app that had
//!   already failed stays FAILED, with its reason).
//!   [`DockerRuntimeOrchestrator::remove_app`] removes them (and the network
//!   with the last container of a tenant+env).
//! - **status**: the current deployment decides (the oldest whose containers
//!   run, else the newest; see [`instances`]), with its ready and desired
//!   instance counts and restarts. For one container: running is STARTING
//!   until the health check passes (a TCP or HTTP probe of the container's
//!   own address, or with no health check the process staying up through
//!   [`DockerOrchestratorOptions::health_grace`]), then RUNNING; an exit is
//!   FAILED with its code, an OOM kill FAILED naming it; a stop is STOPPED.
//! - **logs**: the current deployment's containers', stdout and stderr
//!   tagged, each line with its instance; several are merged (see
//!   [`instances`]). A stream of one container
//!   reads one container and never fails because a redeploy replaced it
//!   (no "No such container"): if the container went before the first line
//!   was read, the app's new newest container is read instead; if it goes
//!   later, the stream ends cleanly (as a followed stream does when its
//!   container stops), and the caller asks again for the new version's
//!   lines.
//! - **events**: followed from the engine, reconnecting and catching up
//!   from a full list when the stream drops; see [`follow`].
//! - **reconcile**: adopts what runs, finishes deploys a dead controller
//!   cut short, removes orphans after
//!   [`DockerOrchestratorOptions::orphan_grace`]; see [`reconcile`].
//!
//! # Examples
//!
//! ```no_run
//! use cameleer_runtime::{AppConfig, AppRef, DeployRequest, DeploymentId, RuntimeOrchestrator};
//! use cameleer_runtime_docker::{DockerOrchestratorOptions, DockerRuntimeOrchestrator};
//!
//! # async fn demo(image: cameleer_runtime::ImageRef) -> cameleer_runtime::Result<()> {
//! let orchestrator = DockerRuntimeOrchestrator::connect(DockerOrchestratorOptions::default()).await?;
//! let status = orchestrator
//!     .deploy_app(&DeployRequest {
//!         app: AppRef::parse("acme", "orders", "dev")?,
//!         deployment: DeploymentId::new_random(),
//!         version: 1,
//!         image,
//!         config: AppConfig::default(),
//!     })
//!     .await?;
//! println!("{}: {}", status.app, status.status);
//! # Ok(()) }
//! ```

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use cameleer_runtime::{
    AppRef, AppStatus, AppSummary, DeployRequest, DeploymentStatus, Desired, EnvId, Error,
    EventStream, LogOptions, LogStream, ReconcileReport, Result, RuntimeOrchestrator, StatusReason,
    TenantId,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::engine::{backend_at, is_not_found};
use crate::labels::{self, ContainerLabels};
use crate::network;
use crate::status::{self, Phase};

mod follow;
mod instances;
mod lifecycle;
mod memory;
mod observe;
mod reconcile;
mod rollout;
mod stopped;
mod switch;

use memory::Memory;

/// How the orchestrator runs containers. The defaults suit a typical Camel
/// or Spring Boot app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerOrchestratorOptions {
    /// `uid:gid` the app runs as; never root. Default `10001:10001`, the
    /// base image's `cameleer` user.
    pub user: String,
    /// The most processes and threads a container may have (`PidsLimit`).
    /// A JVM counts every thread. Default 1024.
    pub pids_limit: i64,
    /// Size of the tmpfs on `/tmp`, in MiB; it counts against the memory
    /// limit. Default 64.
    pub tmp_size_mb: u32,
    /// Whether `/tmp` allows executing files. Default `false` (`noexec`):
    /// the JVM only needs it for perf data; libraries that unpack native
    /// code there (Netty's epoll, snappy) then fall back or fail, so turn
    /// this on for apps that need them.
    pub tmp_exec: bool,
    /// json-file `max-size` of one log file. Default `10m`.
    pub log_max_size: String,
    /// json-file `max-file`: how many log files are kept. Default 3.
    pub log_max_files: u32,
    /// How long a stop waits after SIGTERM before SIGKILL. Default 10 s.
    pub stop_timeout: Duration,
    /// With no health check, how long the process must stay up to count as
    /// RUNNING. Default 3 s.
    pub health_grace: Duration,
    /// How often a starting container is checked. Default 200 ms.
    pub probe_interval: Duration,
    /// How long one probe may take. Default 1 s.
    pub probe_timeout: Duration,
    /// How long a container unknown to the store is left alone by
    /// `reconcile` after it was created (a deploy may be in flight).
    /// Default 60 s.
    pub orphan_grace: Duration,
    /// How many lines of a failed container's output its error carries.
    /// Default 10.
    pub failure_log_lines: usize,
    /// How long a deploy or restart waits for an engine that stopped
    /// answering before it fails, naming the engine. Default 5 s.
    pub engine_patience: Duration,
    /// The first pause before subscribing to the engine's events again
    /// after the stream dropped; it doubles up to
    /// [`event_reconnect_max`](Self::event_reconnect_max). Default 100 ms.
    pub event_reconnect_min: Duration,
    /// The longest pause between attempts to subscribe again. Default 5 s.
    pub event_reconnect_max: Duration,
    /// How often the engine restarts a crashed instance of an app that runs
    /// several (its `on-failure` restart policy), over the container's
    /// life; then it stays down and the others serve on. An app of one
    /// instance is never restarted: its crash is FAILED. Default 5.
    pub instance_restarts: i64,
    /// Credentials the engine pulls with, per registry. Images built by a
    /// registry builder (`cameleer-registry`) are `registry/repo:tag@digest`
    /// references: the engine pulls them by digest (see
    /// [`RuntimeOrchestrator::deploy_app`]), sending the login whose
    /// [`registry`](RegistryLogin::registry) is the image's. Default none.
    pub registry_logins: Vec<RegistryLogin>,
}

/// A user name and password the engine sends to one registry when it pulls
/// from it. `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    /// The registry as image references name it: `host[:port]`.
    pub registry: String,
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Default for DockerOrchestratorOptions {
    fn default() -> Self {
        Self {
            user: "10001:10001".into(),
            pids_limit: 1024,
            tmp_size_mb: 64,
            tmp_exec: false,
            log_max_size: "10m".into(),
            log_max_files: 3,
            stop_timeout: Duration::from_secs(10),
            health_grace: Duration::from_secs(3),
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_secs(1),
            orphan_grace: Duration::from_secs(60),
            failure_log_lines: 10,
            engine_patience: Duration::from_secs(5),
            event_reconnect_min: Duration::from_millis(100),
            event_reconnect_max: Duration::from_secs(5),
            instance_restarts: 5,
            registry_logins: Vec::new(),
        }
    }
}

/// Runs deployments as hardened containers on one Docker Engine.
///
/// Cheap to clone: clones share the engine connection and what the
/// orchestrator remembers (which containers passed their health check,
/// which it stopped itself). That memory is only a shortcut: losing it (a
/// controller restart) costs a re-probe, never a wrong answer.
#[derive(Debug, Clone)]
pub struct DockerRuntimeOrchestrator {
    docker: Docker,
    /// How errors name the engine: its address when known.
    engine: Arc<str>,
    options: Arc<DockerOrchestratorOptions>,
    memory: Arc<Memory>,
}

/// One of our containers, as a list call shows it.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub id: String,
    pub name: String,
    pub labels: ContainerLabels,
    pub state: Option<bollard::models::ContainerSummaryStateEnum>,
    /// Unix seconds.
    pub created: i64,
}

impl DockerRuntimeOrchestrator {
    /// An orchestrator on an engine connection, which should have its API
    /// version negotiated (see [`crate::connect`]).
    ///
    /// Errors name the engine as "the local engine" until
    /// [`with_engine_name`](Self::with_engine_name) says which it is
    /// ([`connect`](Self::connect) and [`connect_to`](Self::connect_to) do).
    pub fn new(docker: Docker, options: DockerOrchestratorOptions) -> Self {
        Self {
            docker,
            engine: Arc::from("the local engine"),
            options: Arc::new(options),
            memory: Arc::default(),
        }
    }

    /// The same orchestrator, naming the engine `name` (its address, e.g.
    /// `unix:///var/run/docker.sock`) in errors and deployment reasons.
    pub fn with_engine_name(mut self, name: impl Into<String>) -> Self {
        self.engine = Arc::from(name.into());
        self
    }

    /// Connects to the engine named by `DOCKER_HOST` (or the local socket),
    /// negotiating the API version.
    pub async fn connect(options: DockerOrchestratorOptions) -> Result<Self> {
        Self::connect_to(&crate::connect::docker_host(), options).await
    }

    /// Connects to the engine at `host` (`unix://…`, `tcp://…`),
    /// negotiating the API version.
    pub async fn connect_to(host: &str, options: DockerOrchestratorOptions) -> Result<Self> {
        let docker = crate::connect::connect_to(host, crate::connect::DEFAULT_TIMEOUT)
            .await
            .map_err(|e| Error::backend(e.to_string(), e))?;
        Ok(Self::new(docker, options).with_engine_name(host))
    }

    /// The engine's name in errors.
    pub fn engine_name(&self) -> &str {
        &self.engine
    }

    /// A backend error for an engine call, naming the engine when it did
    /// not answer.
    pub(crate) fn engine_error(
        &self,
        doing: impl std::fmt::Display,
        err: bollard::errors::Error,
    ) -> Error {
        backend_at(&self.engine, doing, err)
    }

    /// The engine connection.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The options.
    pub fn options(&self) -> &DockerOrchestratorOptions {
        &self.options
    }

    /// Removes every container of `app` (running or not) and, with the last
    /// container of its tenant+env, the network. Removing an app that has no
    /// containers is a no-op.
    pub async fn remove_app(&self, app: &AppRef) -> Result<()> {
        let lock = self.memory.app_lock(app);
        let _app = lock.lock().await;
        for c in self.list(labels::app_filter(app)).await? {
            self.remove_container(&c).await?;
        }
        self.remove_network_if_unused(&app.tenant, &app.env).await
    }

    /// [`reconcile`](RuntimeOrchestrator::reconcile) limited to `tenant`:
    /// the containers and networks of other tenants are left alone, and
    /// `desired` deployments of other tenants are not reported missing. For
    /// hosts that shard tenants across controllers sharing one engine, and
    /// for tests that share an engine.
    pub async fn reconcile_tenant(
        &self,
        tenant: &TenantId,
        desired: &[Desired],
    ) -> Result<ReconcileReport> {
        self.reconcile_with(desired, Some(tenant)).await
    }

    /// Our containers matching the label filter values, newest version first.
    pub(crate) async fn list(&self, filter: Vec<String>) -> Result<Vec<Listed>> {
        let filters = labels::label_filters(filter);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.engine_error("listing containers", e))?;
        let mut found: Vec<Listed> = summaries
            .into_iter()
            .filter_map(|s| {
                let labels = ContainerLabels::parse(s.labels.as_ref()?)?;
                Some(Listed {
                    id: s.id?,
                    name: s
                        .names
                        .and_then(|n| n.into_iter().next())
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    labels,
                    state: s.state,
                    created: s.created.unwrap_or(0),
                })
            })
            .collect();
        found.sort_by_key(|c| std::cmp::Reverse((c.labels.version, c.created)));
        Ok(found)
    }

    /// The newest container of `app`, or [`Error::NotFound`].
    pub(crate) async fn newest(&self, app: &AppRef) -> Result<Listed> {
        self.list(labels::app_filter(app))
            .await?
            .into_iter()
            // The filter already matched; the labels must say so too.
            .find(|c| c.labels.app == *app)
            .ok_or_else(|| Error::not_found("app", app))
    }

    /// Inspects a container; `None` when it is gone.
    pub(crate) async fn inspect(&self, id: &str) -> Result<Option<ContainerInspectResponse>> {
        match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.engine_error(format!("inspecting container {id}"), e)),
        }
    }

    /// Stops a container, remembering that its exit is expected.
    pub(crate) async fn stop_container(&self, id: &str) -> Result<()> {
        self.memory.expect_exit(id);
        let t = i32::try_from(self.options.stop_timeout.as_secs()).unwrap_or(i32::MAX);
        match self
            .docker
            .stop_container(id, Some(StopContainerOptionsBuilder::new().t(t).build()))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.engine_error(format!("stopping container {id}"), e)),
        }
    }

    /// Stops (gracefully, when running) and removes a container.
    pub(crate) async fn remove_container(&self, c: &Listed) -> Result<()> {
        if c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING) {
            self.stop_container(&c.id).await?;
        }
        self.force_remove(&c.id, &c.name).await
    }

    pub(crate) async fn force_remove(&self, id: &str, name: &str) -> Result<()> {
        self.memory.expect_exit(id);
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => {
                tracing::info!(container = %name, "removed container");
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            // 409: a removal is already in progress.
            Err(e) if crate::engine::is_conflict(&e) => Ok(()),
            Err(e) => Err(self.engine_error(format!("removing container {name}"), e)),
        }
    }

    pub(crate) async fn remove_network_if_unused(
        &self,
        tenant: &TenantId,
        env: &EnvId,
    ) -> Result<()> {
        let lock = self.memory.network_lock(tenant, env);
        let _net = lock.lock().await;
        network::remove_if_unused(&self.docker, tenant, env)
            .await
            .map(drop)
    }
}

/// The container's address on its network, from inspect.
pub(crate) fn container_ip(inspect: &ContainerInspectResponse) -> Option<IpAddr> {
    inspect
        .network_settings
        .as_ref()?
        .networks
        .as_ref()?
        .values()
        .filter_map(|ep| ep.ip_address.as_deref())
        .find_map(|ip| ip.parse().ok())
}

/// When the container's current start began.
pub(crate) fn started_at(started_at: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(started_at, &Rfc3339).ok()
}

#[async_trait]
impl RuntimeOrchestrator for DockerRuntimeOrchestrator {
    async fn deploy_app(&self, request: &DeployRequest) -> Result<AppStatus> {
        self.deploy(request).await
    }

    async fn stop_app(&self, app: &AppRef) -> Result<()> {
        let lock = self.memory.app_lock(app);
        let _app = lock.lock().await;
        let containers = self.list(labels::app_filter(app)).await?;
        if containers.is_empty() {
            return Err(Error::not_found("app", app));
        }
        // Only what runs: an app that already ended (crashed, OOM killed)
        // keeps its FAILED status and reason.
        use bollard::models::ContainerSummaryStateEnum as S;
        for c in &containers {
            if matches!(
                c.state,
                Some(S::RUNNING | S::RESTARTING | S::CREATED | S::PAUSED)
            ) {
                // The intent first, where a controller restart keeps it.
                self.mark_stopped(&c.id, &c.name).await?;
                self.stop_container(&c.id).await?;
            }
        }
        Ok(())
    }

    async fn restart_app(&self, app: &AppRef) -> Result<AppStatus> {
        let lock = self.memory.app_lock(app);
        let _app = lock.lock().await;
        self.restart(app).await
    }

    async fn app_logs(&self, app: &AppRef, options: &LogOptions) -> Result<LogStream> {
        self.instance_logs(app, options).await
    }

    async fn deployment_logs(
        &self,
        app: &AppRef,
        deployment: &cameleer_runtime::DeploymentId,
        options: &LogOptions,
    ) -> Result<LogStream> {
        self.deployment_log_stream(app, deployment, options).await
    }

    async fn app_status(&self, app: &AppRef) -> Result<AppStatus> {
        let containers = self.containers_of(app).await?;
        self.status_of_containers(app, &containers).await
    }

    async fn list_apps(&self, tenant: &TenantId) -> Result<Vec<AppSummary>> {
        self.summaries(tenant).await
    }

    async fn events(&self) -> Result<EventStream> {
        Ok(self.event_stream())
    }

    async fn reconcile(&self, desired: &[Desired]) -> Result<ReconcileReport> {
        self.reconcile_with(desired, None).await
    }
}

/// Phase and probe together: the status of a container right now.
pub(crate) fn phase_status(phase: &Phase) -> Option<(DeploymentStatus, Option<StatusReason>)> {
    match phase {
        Phase::Starting => Some((DeploymentStatus::Starting, None)),
        Phase::Ended { status, reason } => Some((*status, Some(reason.clone()))),
        Phase::Running { .. } => None,
    }
}

/// Probes a running container; `Ok` when it is up.
pub(crate) async fn probe_running(
    options: &DockerOrchestratorOptions,
    labels: &ContainerLabels,
    inspect: &ContainerInspectResponse,
    started: &str,
) -> std::result::Result<(), String> {
    if labels.health == cameleer_runtime::HealthCheck::None {
        let up_for = started_at(started)
            .map(|at| OffsetDateTime::now_utc() - at)
            .unwrap_or(time::Duration::ZERO);
        return if up_for >= options.health_grace {
            Ok(())
        } else {
            Err(format!(
                "up for {:.1} s of the {:?} grace period",
                up_for.as_seconds_f64().max(0.0),
                options.health_grace
            ))
        };
    }
    let Some(ip) = container_ip(inspect) else {
        return Err("the container has no address on its network".into());
    };
    // Only containers that carry our labels are ever probed: the address
    // comes from inspecting a container found by our label filters, and the
    // port from our own health label. Bridge addresses are routable from
    // the host on Linux.
    cameleer_runtime::health::probe(&labels.health, ip, options.probe_timeout).await
}

impl DockerRuntimeOrchestrator {
    /// Where an inspected container is, with what this orchestrator knows
    /// of its stops and given-up starts; no probing.
    pub(crate) fn phase_of(&self, id: &str, inspect: &ContainerInspectResponse) -> Phase {
        let on_request = self.memory.stopped_on_request(id)
            || inspect.name.as_deref().is_some_and(stopped::is_marked);
        let phase = match inspect.state.as_ref() {
            Some(state) => status::phase(state, on_request),
            None => Phase::Starting,
        };
        match (phase, self.memory.start_failure(id)) {
            (
                Phase::Ended {
                    status: DeploymentStatus::Stopped,
                    ..
                },
                Some(reason),
            ) => Phase::Ended {
                status: DeploymentStatus::Failed,
                reason,
            },
            (phase, _) => phase,
        }
    }
}
