//! A deploy: the new version's instances one at a time, each health-gated
//! before an old one leaves.
//!
//! For instance `i` of `replicas`:
//!
//! 1. its container is made (or found: a deploy is idempotent) on the tenant
//!    network without the app's name, started and health-gated;
//! 2. once healthy it takes the app's name (see [`switch`](super::switch));
//! 3. one container of the older version that serves *steps down*: off the
//!    network (out of the engine's DNS answers), stopped, and kept.
//!
//! So the app never has fewer healthy instances behind its name than it
//! had. When every new instance serves, the older containers are removed.
//!
//! When a new instance fails (it exits, is OOM killed, or is not healthy in
//! time) the rollout stops. With an older version serving, the containers
//! that stepped down take their places back (rejoined, started,
//! health-gated, named), then the new version's containers leave; the old
//! version serves on as it did, and the error says why the new one failed.
//! With none (a first deploy), the failed container is kept, stopped, as
//! the app's newest (its status says FAILED and why, its logs stay
//! readable), and the new instances that came up are stopped and kept with
//! it, so `restart_app` brings all of them back.

use bollard::models::{ContainerSummaryStateEnum, EndpointSettings, NetworkConnectRequest};
use bollard::query_parameters::StartContainerOptions;
use cameleer_runtime::{
    AppConfig, AppStatus, DeployRequest, DeploymentStatus, Error, Result, StatusReason,
};

use super::lifecycle::StartFailure;
use super::{DockerRuntimeOrchestrator, Listed};
use crate::engine::{backend, is_unreachable};
use crate::labels::{self, ContainerLabels};
use crate::network;

/// A new instance that came up and serves: `(id, name)`.
type Serving = (String, String);

impl DockerRuntimeOrchestrator {
    pub(super) async fn deploy(&self, request: &DeployRequest) -> Result<AppStatus> {
        request.config.validate()?;
        let app = &request.app;
        let lock = self.memory.app_lock(app);
        let _app = lock.lock().await;

        let image_id = self.resolve_image(&request.image).await?;
        let replicas = request.config.instances();
        let what = format!(
            "{app} version {} (deployment {})",
            request.version, request.deployment
        );
        // The older versions' containers that serve: each makes room for
        // one new instance.
        let mut serving: Vec<Listed> = self
            .list(labels::app_filter(app))
            .await?
            .into_iter()
            .filter(|c| {
                c.labels.app == *app
                    && c.labels.deployment != request.deployment
                    && c.state == Some(ContainerSummaryStateEnum::RUNNING)
            })
            .collect();
        let mut stepped_down: Vec<Listed> = Vec::new();
        let mut up: Vec<Serving> = Vec::new();
        for instance in 0..replicas {
            let labels = ContainerLabels::of(request, instance);
            let started = match self
                .start_instance(&labels, &image_id, &request.config)
                .await
            {
                Ok(Ok(started)) => started,
                Ok(Err((id, name, failure))) => {
                    tracing::warn!(app = %app, version = request.version, instance, %failure, "an instance failed to start; the rollout stops");
                    let older_serves = !serving.is_empty() || !stepped_down.is_empty();
                    return Err(self
                        .abort_rollout(
                            &what,
                            (&id, &name),
                            failure,
                            &up,
                            &stepped_down,
                            older_serves,
                        )
                        .await);
                }
                Err(e) => {
                    self.undo_rollout(&up, &stepped_down, !serving.is_empty())
                        .await;
                    return Err(e);
                }
            };
            // Serving under the app's name, then one old instance leaves.
            let mut step = self.publish_alias(&started.0, &labels).await;
            up.push(started);
            if step.is_ok()
                && let Some(old) = serving.pop()
            {
                step = self.step_down(&old).await;
                stepped_down.push(old);
            }
            if let Err(e) = step {
                tracing::warn!(app = %app, version = request.version, instance, error = %e, "the rollout stops");
                self.undo_rollout(&up, &stepped_down, !serving.is_empty())
                    .await;
                return Err(e);
            }
        }
        tracing::info!(app = %app, version = request.version, replicas, "deployment is up");
        for old in &stepped_down {
            self.remove_container(old).await?;
        }
        // Older versions that did not serve (stopped, failed) go too.
        for old in self.list(labels::app_filter(app)).await? {
            if old.labels.deployment != request.deployment && old.labels.version <= request.version
            {
                self.retire(&old).await?;
            }
        }
        Ok(AppStatus::new(
            app.clone(),
            DeploymentStatus::Running,
            Some(request.deployment),
            Some(request.version),
            None,
        )
        .with_instances(replicas, replicas))
    }

    /// Makes (or finds) the container of one instance, starts it and waits
    /// until it is healthy: `Ok((id, name))`, or the failure with the
    /// container it happened to. An engine error before the container
    /// exists is the outer error.
    async fn start_instance(
        &self,
        labels: &ContainerLabels,
        image_id: &str,
        config: &AppConfig,
    ) -> Result<std::result::Result<Serving, (String, String, StartFailure)>> {
        let (id, name) = self.ensure_container(labels, image_id, config).await?;
        // Until this call returns, an exit of the container is its to report.
        let _starting = self.memory.starting(&id);
        let outcome = match self
            .docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
        {
            Ok(()) => self.wait_until_up(&id, labels).await,
            Err(e) if is_unreachable(&e) => Err(StartFailure::Engine(
                self.engine_error(format!("starting container {name}"), e),
            )),
            Err(e) => Err(StartFailure::Ended(StatusReason::StartRefused {
                detail: backend("starting", e).to_string(),
            })),
        };
        Ok(match outcome {
            Ok(()) => Ok((id, name)),
            Err(failure) => Err((id, name, failure)),
        })
    }

    /// After instance `failed` did not come up: puts back what the rollout
    /// changed (see the [module docs](self)) and returns the error.
    async fn abort_rollout(
        &self,
        what: &str,
        failed: (&str, &str),
        failure: StartFailure,
        up: &[Serving],
        stepped_down: &[Listed],
        older_serves: bool,
    ) -> Error {
        let (id, name) = failed;
        if let StartFailure::Engine(_) = failure {
            return failure.into_error(what, "");
        }
        let output = self.last_output(id).await;
        self.undo_rollout(up, stepped_down, older_serves).await;
        self.settle_failed_start(id, name, &failure).await;
        failure.into_error(what, &output)
    }

    /// Undoes a rollout that stopped: with an older version serving (or
    /// having served: `stepped_down`), its containers take their places
    /// back, then the new instances leave; with none, the new instances are
    /// stopped and kept. Best effort: what cannot be undone is logged, and
    /// `reconcile` or the next deploy finishes it.
    async fn undo_rollout(&self, up: &[Serving], stepped_down: &[Listed], older_serves: bool) {
        let older_serves = older_serves || !stepped_down.is_empty();
        let undone: Result<()> = async {
            if older_serves {
                for old in stepped_down {
                    self.step_up(old).await?;
                }
                for (new_id, new_name) in up {
                    self.memory.expect_exit(new_id);
                    self.leave_networks(new_id).await?;
                    self.force_remove(new_id, new_name).await?;
                }
            } else {
                for (new_id, _) in up {
                    self.stop_container(new_id).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = undone {
            tracing::warn!(error = %e, "could not undo the rollout");
        }
    }

    /// Takes a container of the older version out of service for a new
    /// instance: off the network, then stopped, and kept until the rollout
    /// ends.
    async fn step_down(&self, old: &Listed) -> Result<()> {
        self.memory.expect_exit(&old.id);
        self.leave_networks(&old.id).await?;
        self.stop_container(&old.id).await
    }

    /// Puts a container that stepped down back into service: on the
    /// network, started, health-gated, and named.
    async fn step_up(&self, old: &Listed) -> Result<()> {
        let app = &old.labels.app;
        let network = {
            let lock = self.memory.network_lock(&app.tenant, &app.env);
            let _net = lock.lock().await;
            network::ensure(&self.docker, &app.tenant, &app.env).await?
        };
        let connect = NetworkConnectRequest {
            container: old.id.clone(),
            endpoint_config: Some(EndpointSettings::default()),
        };
        if let Err(e) = self.docker.connect_network(&network.id, connect).await {
            tracing::debug!(container = %old.name, "joining the network again: {e}");
        }
        let _starting = self.memory.starting(&old.id);
        self.memory.expect_exits_until_now(&old.id);
        self.docker
            .start_container(&old.id, None::<StartContainerOptions>)
            .await
            .map_err(|e| self.engine_error(format!("starting container {} again", old.name), e))?;
        match self.wait_until_up(&old.id, &old.labels).await {
            Ok(()) => self.publish_alias(&old.id, &old.labels).await,
            Err(StartFailure::Engine(e)) => Err(e),
            Err(failure) => Err(failure.into_error(&old.name, "")),
        }
    }
}
