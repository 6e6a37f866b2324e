//! Deploy and restart: create what is absent, start, gate on health, and
//! swap versions only once the new one is up.

use std::fmt;
use std::time::Duration;

use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, LogsOptionsBuilder,
    RestartContainerOptionsBuilder,
};
use cameleer_runtime::{AppConfig, AppStatus, Error, ImageRef, Result, StatusReason};
use futures::StreamExt;
use tokio::time::Instant;

use super::{DockerRuntimeOrchestrator, probe_running, stopped};
use crate::engine::{backend, is_conflict, is_not_found, is_unreachable, is_unreachable_error};
use crate::labels::{self, ContainerLabels};
use crate::status::Phase;
use crate::{container, logs, network};

/// The most bytes of a failed container's output carried in its error.
const MAX_FAILURE_OUTPUT: usize = 2048;

/// Why a container did not come up.
#[derive(Debug)]
pub(super) enum StartFailure {
    /// It ended: exit code, OOM kill, the engine could not start it.
    Ended(StatusReason),
    /// Still not healthy at the deadline.
    TimedOut {
        after: Duration,
        last_probe: Option<String>,
    },
    /// The engine failed or went away: not the app's doing.
    Engine(Error),
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartFailure::Engine(e) => write!(f, "{e}"),
            failure => match failure.reason() {
                Some(reason) => write!(f, "{reason}"),
                None => Ok(()),
            },
        }
    }
}

impl StartFailure {
    /// The app's reason; `None` for the engine's failure.
    pub(super) fn reason(&self) -> Option<StatusReason> {
        match self {
            StartFailure::Ended(reason) => Some(reason.clone()),
            StartFailure::TimedOut { after, last_probe } => Some(StatusReason::HealthTimeout {
                after_secs: after.as_secs(),
                last_probe: last_probe.clone(),
            }),
            StartFailure::Engine(_) => None,
        }
    }

    /// The error a caller gets: the app's failure ([`Error::StartFailed`],
    /// with its last words, which also tell the JVM's own out-of-memory exit
    /// from the app's exit code 3) or the engine's ([`Error::Backend`]).
    pub(super) fn into_error(self, what: &str, output: &str) -> Error {
        match self {
            StartFailure::Engine(Error::Backend { message, source }) => Error::Backend {
                message: format!("starting {what}: {message}"),
                source,
            },
            StartFailure::Engine(other) => other,
            failure => {
                let reason = match failure.reason() {
                    Some(StatusReason::Exited {
                        exit_code: Some(code),
                    }) => StatusReason::from_exit(code, Some(output)),
                    Some(reason) => reason,
                    None => StatusReason::other(failure.to_string()),
                };
                Error::StartFailed {
                    reason,
                    output: (!output.is_empty()).then(|| output.to_string()),
                }
            }
        }
    }
}

impl DockerRuntimeOrchestrator {
    /// After a failed start: with an older version still serving, the new
    /// container goes and the old one keeps running, untouched. With none,
    /// the failed container is kept (stopped) as the app's newest, so its
    /// status says FAILED and why, and its logs stay readable; the older,
    /// not running containers go, since only the newest is ever addressed
    /// (the other instances of its own version stay, stopped).
    pub(super) async fn settle_failed_start(&self, id: &str, name: &str, failure: &StartFailure) {
        let app_containers = match self.containers_of_container(id).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(container = %name, error = %e, "cannot list the app's containers");
                Vec::new()
            }
        };
        let serving = app_containers.iter().any(|c| {
            c.id != id && c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
        });
        let result = if serving {
            self.force_remove(id, name).await
        } else {
            let mut result = Ok(());
            if let StartFailure::TimedOut { .. } = failure {
                if let Some(reason) = failure.reason() {
                    self.memory.set_start_failure(id, &reason);
                }
                result = self.stop_container(id).await;
            }
            let own = app_containers
                .iter()
                .find(|c| c.id == id)
                .map(|c| c.labels.deployment);
            for old in app_containers
                .iter()
                .filter(|c| c.id != id && Some(c.labels.deployment) != own)
            {
                if let Err(e) = self.remove_container(old).await {
                    result = Err(e);
                }
            }
            result
        };
        if let Err(e) = result {
            tracing::warn!(container = %name, error = %e, "could not clean up after a failed start");
        }
    }

    /// The containers of the app `id` belongs to.
    async fn containers_of_container(&self, id: &str) -> Result<Vec<super::Listed>> {
        let Some(inspect) = self.inspect(id).await? else {
            return Ok(Vec::new());
        };
        let Some(labels) = inspect
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(ContainerLabels::parse)
        else {
            return Ok(Vec::new());
        };
        self.list(labels::app_filter(&labels.app)).await
    }

    /// Restarts every instance of the app's current deployment, one after
    /// the other, each health-gated; then the app's status.
    pub(super) async fn restart(&self, app: &cameleer_runtime::AppRef) -> Result<AppStatus> {
        let instances = self.current_instances(app).await?;
        for c in &instances {
            self.restart_instance(c).await?;
        }
        if let Some(first) = instances.first() {
            self.take_over(&first.id, &first.labels).await?;
        }
        let containers = self.containers_of(app).await?;
        self.status_of_containers(app, &containers).await
    }

    /// Restarts one container and waits until it is healthy and named.
    async fn restart_instance(&self, c: &super::Listed) -> Result<()> {
        let app = &c.labels.app;
        // Started again: its next exit is news, also to a later controller.
        let name = self.unmark(&c.id, &c.name).await?;
        let _starting = self.memory.starting(&c.id);
        self.memory.expect_exit(&c.id);
        let t = i32::try_from(self.options.stop_timeout.as_secs()).unwrap_or(i32::MAX);
        self.docker
            .restart_container(
                &c.id,
                Some(RestartContainerOptionsBuilder::new().t(t).build()),
            )
            .await
            .map_err(|e| self.engine_error(format!("restarting container {name}"), e))?;
        // The exit of the run before the restart was ours; any later one is news.
        self.memory.expect_exits_until_now(&c.id);
        let what = format!(
            "{app} version {} (deployment {})",
            c.labels.version, c.labels.deployment
        );
        match self.wait_until_up(&c.id, &c.labels).await {
            Ok(()) => self.publish_alias(&c.id, &c.labels).await,
            Err(failure @ StartFailure::Engine(_)) => Err(failure.into_error(&what, "")),
            // The container stays: it is the app's current version, and its
            // logs say why it failed.
            Err(failure) => Err(failure.into_error(&what, &self.last_output(&c.id).await)),
        }
    }

    /// The container of this deployment, as `(id, name)`: the existing one
    /// when it is alive, else a new one. Idempotent: a deploy re-run after a
    /// crash of the controller finds what the first run made.
    ///
    /// The name is `cameleer-{tenant}-{env}-{app}-v{version}`. Two tenants
    /// can derive the same name (`a`/`b-c` and `a-b`/`c`); the labels say
    /// whose a container is, and when the name is another's, this
    /// deployment's container is named with its deployment id appended.
    pub(super) async fn ensure_container(
        &self,
        labels: &ContainerLabels,
        image_id: &str,
        config: &AppConfig,
    ) -> Result<(String, String)> {
        let primary = labels.container_name();
        let deployment = labels.deployment.to_string();
        let names = [primary.clone(), format!("{primary}-{}", &deployment[..8])];
        for _ in 0..3 {
            let mut free = None;
            for name in &names {
                // A container of this deployment that was stopped on request
                // ended: start afresh, under the plain name.
                if let Some(stopped) = self.inspect(&stopped::marked(name)).await?
                    && owned_by(&stopped, labels)
                {
                    let id = stopped.id.clone().unwrap_or_default();
                    self.force_remove(&id, &stopped::marked(name)).await?;
                }
                let Some(existing) = self.inspect(name).await? else {
                    free = Some(name);
                    break;
                };
                let id = existing.id.clone().unwrap_or_else(|| name.clone());
                let owner = existing
                    .config
                    .as_ref()
                    .and_then(|c| c.labels.as_ref())
                    .and_then(ContainerLabels::parse);
                match owner {
                    Some(l)
                        if l.app == labels.app
                            && l.deployment == labels.deployment
                            && l.instance == labels.instance =>
                    {
                        if let Phase::Ended { .. } = self.phase_of(&id, &existing) {
                            // A previous attempt ran and ended: start afresh.
                            self.force_remove(&id, name).await?;
                            free = Some(name);
                            break;
                        }
                        return Ok((id, name.clone()));
                    }
                    Some(l) if l.app == labels.app => {
                        return Err(Error::Conflict(format!(
                            "container {name} runs deployment {} of {}, not {}",
                            l.deployment, l.app, labels.deployment
                        )));
                    }
                    // Another tenant's (or not ours): try the next name.
                    _ => continue,
                }
            }
            let Some(name) = free else {
                return Err(Error::Conflict(format!(
                    "the names {names:?} are taken by containers of others"
                )));
            };
            let lock = self
                .memory
                .network_lock(&labels.app.tenant, &labels.app.env);
            let _net = lock.lock().await;
            let network =
                network::ensure(&self.docker, &labels.app.tenant, &labels.app.env).await?;
            let entrypoint = container::image_entrypoint(&self.docker, image_id).await?;
            let mut body = container::create_body(
                labels,
                image_id,
                entrypoint.as_deref(),
                config,
                &network,
                &self.options,
            )?;
            // The app's name comes once it is healthy (see `switch`): with it
            // from the start, DNS would send clients to a JVM still starting.
            for endpoint in body
                .networking_config
                .iter_mut()
                .flat_map(|n| n.endpoints_config.iter_mut())
                .flat_map(|e| e.values_mut())
            {
                endpoint.aliases = None;
            }
            let options = CreateContainerOptionsBuilder::new().name(name).build();
            match self.docker.create_container(Some(options), body).await {
                Ok(created) => {
                    for warning in &created.warnings {
                        tracing::warn!(container = %name, %warning, "engine warning");
                    }
                    self.memory.forget(&created.id);
                    return Ok((created.id, name.clone()));
                }
                // Someone created it in between: look again.
                Err(e) if is_conflict(&e) => continue,
                Err(e) => {
                    return Err(self.engine_error(format!("creating container {name}"), e));
                }
            }
        }
        Err(Error::Conflict(format!(
            "container {primary} keeps changing under us; try again"
        )))
    }

    /// Waits until the container is up (health check passed), has ended,
    /// or its start timeout passed.
    pub(super) async fn wait_until_up(
        &self,
        id: &str,
        labels: &ContainerLabels,
    ) -> std::result::Result<(), StartFailure> {
        let timeout = labels
            .start_timeout
            .max(self.options.health_grace + self.options.probe_interval);
        self.wait_until_up_by(id, labels, Instant::now() + timeout, timeout)
            .await
    }

    /// [`wait_until_up`](Self::wait_until_up) with a given deadline;
    /// `timeout` is what a timeout reports.
    ///
    /// An engine that does not answer is given
    /// [`engine_patience`](super::DockerOrchestratorOptions::engine_patience)
    /// to come back before the wait ends with [`StartFailure::Engine`].
    pub(super) async fn wait_until_up_by(
        &self,
        id: &str,
        labels: &ContainerLabels,
        deadline: Instant,
        timeout: Duration,
    ) -> std::result::Result<(), StartFailure> {
        let mut last_probe = None;
        let mut unreachable_since: Option<Instant> = None;
        loop {
            match self.inspect(id).await {
                Ok(Some(inspect)) => {
                    unreachable_since = None;
                    match self.phase_of(id, &inspect) {
                        Phase::Running { started_at } => {
                            match probe_running(&self.options, labels, &inspect, &started_at).await
                            {
                                Ok(()) => {
                                    self.memory.set_healthy(id, &started_at);
                                    return Ok(());
                                }
                                Err(why) => last_probe = Some(why),
                            }
                        }
                        Phase::Starting => {}
                        Phase::Ended { reason, .. } => return Err(StartFailure::Ended(reason)),
                    }
                }
                Ok(None) => return Err(StartFailure::Ended(StatusReason::Gone)),
                Err(e) if is_unreachable_error(&e) => {
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.options.engine_patience {
                        return Err(StartFailure::Engine(e));
                    }
                    tracing::debug!(container = %id, "the engine does not answer: {e}");
                }
                Err(e) => return Err(StartFailure::Engine(e)),
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::TimedOut {
                    after: timeout,
                    last_probe,
                });
            }
            tokio::time::sleep(self.options.probe_interval).await;
        }
    }

    /// `reason` with an exit of the JVM's out-of-memory code told apart
    /// from the app's own exit by the container's last output.
    pub(crate) async fn refine(&self, id: &str, reason: StatusReason) -> StatusReason {
        match reason {
            StatusReason::Exited {
                exit_code: Some(code),
            } if code == cameleer_runtime::launch::JVM_OOM_EXIT_CODE => {
                let output = self.last_output(id).await;
                StatusReason::from_exit(code, Some(&output))
            }
            reason => reason,
        }
    }

    /// The last lines a container wrote, joined, for an error message.
    pub(super) async fn last_output(&self, id: &str) -> String {
        let n = self.options.failure_log_lines;
        if n == 0 {
            return String::new();
        }
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .tail(&n.to_string())
            .build();
        let lines: Vec<String> = logs::lines(
            logs::engine_frames(&self.docker, id, options),
            None,
            MAX_FAILURE_OUTPUT,
        )
        .take(n)
        .filter_map(|l| async move { l.ok().map(|l| l.line) })
        .collect()
        .await;
        let mut joined = lines.join(" | ");
        if joined.len() > MAX_FAILURE_OUTPUT {
            let mut cut = joined.len() - MAX_FAILURE_OUTPUT;
            while !joined.is_char_boundary(cut) {
                cut += 1;
            }
            joined = format!("…{}", &joined[cut..]);
        }
        joined
    }

    /// The image to run, as the engine's image id: the reference pinned to
    /// an image id is used as is, anything else is looked up (and pulled
    /// once when absent), so the container runs exactly the content asked
    /// for even if a tag moves later.
    pub(super) async fn resolve_image(&self, image: &ImageRef) -> Result<String> {
        // A registry image pinned to a digest is pulled by that digest: it
        // is what runs, whatever a tag says now.
        let by_digest = match (image.registry(), image.digest()) {
            (Some(_), Some(digest)) => Some(format!("{}@{}", image.name(), digest.oci())),
            _ => None,
        };
        let mut candidates = Vec::new();
        if let Some(digest) = image.digest() {
            // A local engine's image id (what DockerImageBuilder returns).
            candidates.push(digest.oci());
        }
        candidates.extend(by_digest.clone());
        candidates.push(image.to_string());
        for candidate in &candidates {
            if let Some(id) = self.inspect_image_id(candidate).await? {
                return Ok(id);
            }
        }
        let reference = by_digest.unwrap_or_else(|| image.to_string());
        let options = match (image.registry(), image.digest()) {
            (Some(_), Some(digest)) => CreateImageOptionsBuilder::new()
                .from_image(&image.name())
                .tag(&digest.oci())
                .build(),
            _ => CreateImageOptionsBuilder::new()
                .from_image(&reference)
                .build(),
        };
        let credentials = image.registry().and_then(|registry| {
            self.options
                .registry_logins
                .iter()
                .find(|l| l.registry == registry)
                .map(|l| bollard::auth::DockerCredentials {
                    username: Some(l.username.clone()),
                    password: Some(l.password.clone()),
                    serveraddress: Some(l.registry.clone()),
                    ..Default::default()
                })
        });
        tracing::info!(image = %reference, "pulling");
        let mut pull = self.docker.create_image(Some(options), None, credentials);
        while let Some(progress) = pull.next().await {
            match progress {
                // The engine answered: the registry refused or has no such
                // image. The app's deployment fails with a typed reason,
                // as on a cluster; the platform itself is not broken.
                Err(e) if !is_unreachable(&e) => {
                    return Err(Error::StartFailed {
                        reason: StatusReason::ImagePullFailed {
                            detail: format!("{reference}: {}", crate::engine::message(&e)),
                        },
                        output: None,
                    });
                }
                Err(e) => {
                    return Err(backend(
                        format!("image {reference} is not on the engine and pulling it failed"),
                        e,
                    ));
                }
                Ok(_) => {}
            }
        }
        self.inspect_image_id(&reference)
            .await?
            .ok_or_else(|| Error::not_found("image", &reference))
    }

    /// The engine's id of `reference`, `None` when it has no such image.
    async fn inspect_image_id(&self, reference: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(found) => Ok(found.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend(format!("inspecting image {reference}"), e)),
        }
    }
}

/// Whether an inspected container carries the labels of this deployment.
fn owned_by(inspect: &bollard::models::ContainerInspectResponse, labels: &ContainerLabels) -> bool {
    inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(ContainerLabels::parse)
        .is_some_and(|l| {
            l.app == labels.app
                && l.deployment == labels.deployment
                && l.instance == labels.instance
        })
}
