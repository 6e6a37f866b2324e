//! The steps that change what runs: build, start, restart, stop, and the
//! requests made of them (deploy, promote, rollback).
//!
//! Every step re-reads the deployment and moves it with a conditional
//! update; when the move is no longer allowed (the user stopped the
//! deployment while it was building) the step ends quietly.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::timeout;

use super::core::{Core, error_text, reason_of};
use super::events::{BuildProgressEvent, PlatformEvent};
use crate::{
    AppConfig, AppRef, AppStatus, BuildSpec, Deployment, DeploymentEvent, DeploymentSource,
    DeploymentStatus, Error, NewDeployment, ProgressSink, Result, Sha256Digest, StatusReason,
};

impl Core {
    /// Creates a BUILDING deployment and builds and starts it in the
    /// background; returns it at once.
    pub(crate) async fn deploy(
        self: &Arc<Self>,
        app: &AppRef,
        artifact: Sha256Digest,
        config: AppConfig,
    ) -> Result<Deployment> {
        config.validate()?;
        // Stored once for everyone, deployable only by who uploaded it: to
        // another tenant the artifact does not exist.
        if !self.quotas.artifact_charged(&app.tenant, &artifact).await? {
            return Err(Error::not_found("artifact", artifact));
        }
        let info = self
            .artifacts
            .stat(&artifact)
            .await?
            .ok_or_else(|| Error::not_found("artifact", artifact))?;
        let new = NewDeployment {
            artifact,
            image: None,
            source: DeploymentSource::Build,
            config,
        };
        let (d, turn, inflight) = self.admit_and_create(app, new).await?;
        let core = self.clone();
        let id = d.id;
        self.spawn_for(inflight, turn, async move {
            if let Some(d) = core.build(&id, info.size).await {
                core.bring_up(d).await;
            }
        });
        Ok(d)
    }

    /// Creates a STARTING deployment of an existing image and starts it in
    /// the background; returns it at once.
    pub(crate) async fn deploy_image(
        self: &Arc<Self>,
        app: &AppRef,
        new: NewDeployment,
    ) -> Result<Deployment> {
        debug_assert!(new.image.is_some());
        new.config.validate()?;
        let (d, turn, inflight) = self.admit_and_create(app, new).await?;
        let core = self.clone();
        let started = d.clone();
        self.spawn_for(inflight, turn, async move { core.bring_up(started).await });
        Ok(d)
    }

    /// Checks the tenant's quotas for `new` and creates it, behind the
    /// tenant's gate: nothing is created when a quota refuses it.
    async fn admit_and_create(
        self: &Arc<Self>,
        app: &AppRef,
        new: NewDeployment,
    ) -> Result<(Deployment, super::lanes::Turn, super::core::InflightGuard)> {
        let _gate = self.tenant_gate(&app.tenant).await;
        self.admit(app, &new.config).await?;
        self.create_queued(app, new).await
    }

    /// BUILDING → STARTING with the image recorded, or FAILED with the
    /// builder's text. `None` when the pipeline should not go on.
    ///
    /// A stop of the deployment cancels the build: the builder's future is
    /// dropped, and the deployment stays STOPPED.
    async fn build(self: &Arc<Self>, id: &crate::DeploymentId, size: u64) -> Option<Deployment> {
        // Registered before the status is read, so a stop that lands after
        // the read finds the build to cancel.
        let registration = self.register_build(*id);
        let d = match self.store.get(id).await {
            Ok(d) if d.status == DeploymentStatus::Building => d,
            Ok(d) => {
                tracing::debug!(status = %d.status, "no longer building; not building");
                return None;
            }
            Err(e) => {
                tracing::error!("cannot read the deployment: {e}");
                return None;
            }
        };
        let spec = BuildSpec {
            app: d.app.clone(),
            deployment: d.id,
            version: d.version,
            artifact: d.artifact,
            artifact_size: size,
        };
        let (sink, mut progress) = ProgressSink::channel(d.id, self.options.progress_capacity);
        {
            // Detached: it ends when the builder drops the last sink clone.
            let core = self.clone();
            let (app, version) = (d.app.clone(), d.version);
            let forward = async move {
                while let Some(p) = progress.recv().await {
                    core.publish(PlatformEvent::BuildProgress(BuildProgressEvent::new(
                        &app, version, p,
                    )));
                }
            };
            let cancel = self.cancel.clone();
            self.tasks
                .spawn(async move { cancel.run_until_cancelled(forward).await });
        }
        let build = async {
            match self.artifacts.get(&d.artifact).await {
                Ok(jar) => self.builder.build(&spec, jar, sink).await,
                Err(e) => Err(Error::BuildFailed(format!("cannot read the artifact: {e}"))),
            }
        };
        let Some(built) = registration.token.run_until_cancelled(build).await else {
            // Dropping the future cancelled the build; the stop that asked
            // for it recorded STOPPED (on shutdown it stays BUILDING, for
            // the next recovery).
            tracing::info!("build cancelled");
            return None;
        };
        drop(registration);
        let built = built.and_then(|b| match b.image.digest() {
            Some(_) => Ok(b),
            None => Err(Error::BuildFailed(format!(
                "the builder returned {}, which is not pinned to a digest",
                b.image
            ))),
        });
        match built {
            Ok(b) => {
                let image = b.image;
                if let Some(digest) = image.digest() {
                    // Built again after a sweep removed it: plans list it again.
                    self.swept_images
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(digest);
                }
                let done = self
                    .apply_with(id, &DeploymentEvent::BuildSucceeded, |d| {
                        d.image = Some(image.clone())
                    })
                    .await;
                done.unwrap_or_else(|e| {
                    tracing::error!("could not record the build: {e}");
                    None
                })
            }
            Err(e) => {
                let reason = match e {
                    Error::StartFailed { reason, .. } => reason,
                    e => StatusReason::BuildFailed {
                        detail: error_text(&e),
                    },
                };
                self.apply_logged(id, &DeploymentEvent::BuildFailed { reason })
                    .await;
                None
            }
        }
    }

    /// STARTING → RUNNING (superseding the previous RUNNING version) or
    /// FAILED with the backend's reason.
    async fn bring_up(self: &Arc<Self>, d: Deployment) {
        let Some(request) = crate::DeployRequest::for_deployment(&d) else {
            let reason = StatusReason::StartRefused {
                detail: "the deployment has no image".into(),
            };
            let event = DeploymentEvent::StartFailed {
                reason,
                output: None,
            };
            self.apply_logged(&d.id, &event).await;
            return;
        };
        match self.store.get(&d.id).await {
            Ok(now) if now.status == DeploymentStatus::Starting => {}
            Ok(now) => {
                tracing::debug!(status = %now.status, "no longer starting; not starting");
                return;
            }
            Err(e) => {
                tracing::error!("cannot read the deployment: {e}");
                return;
            }
        }
        let orchestrator = self.orchestrator.clone();
        let outcome = self
            .health_gated(&d.config, orchestrator.deploy_app(&request))
            .await;
        self.settle_start(&d, outcome).await;
    }

    /// Waits for a deploy or restart, giving up after the app's start
    /// timeout plus the backend's grace.
    async fn health_gated(
        &self,
        config: &AppConfig,
        step: impl Future<Output = Result<AppStatus>>,
    ) -> DeploymentEvent {
        let grace = self.orchestrator.deploy_grace();
        let limit = config.start_timeout() + grace;
        match timeout(limit, step).await {
            Ok(Ok(status)) if status.status == DeploymentStatus::Running => {
                DeploymentEvent::Healthy
            }
            Ok(Ok(status)) => DeploymentEvent::StartFailed {
                reason: status.reason.unwrap_or_else(|| {
                    StatusReason::other(format!("the backend reported {}", status.status))
                }),
                output: None,
            },
            Ok(Err(e)) => {
                let (reason, output) = reason_of(&e);
                DeploymentEvent::StartFailed { reason, output }
            }
            Err(_) => DeploymentEvent::StartFailed {
                reason: StatusReason::HealthTimeout {
                    after_secs: limit.as_secs(),
                    last_probe: Some(format!(
                        "not RUNNING within {} (start timeout {}s + backend grace {})",
                        secs(limit),
                        config.start_timeout_secs,
                        secs(grace)
                    )),
                },
                output: None,
            },
        }
    }

    /// Records how a start ended; on success the other RUNNING versions
    /// are superseded (the backend has replaced them).
    async fn settle_start(&self, d: &Deployment, outcome: DeploymentEvent) -> Option<Deployment> {
        let healthy = outcome == DeploymentEvent::Healthy;
        let Some(settled) = self.apply_logged(&d.id, &outcome).await else {
            if healthy {
                self.converge_after_stop(&d.app, &d.id).await;
            }
            return None;
        };
        if healthy {
            self.supersede_others(&settled).await;
        }
        Some(settled)
    }

    /// The backend brought a version up that was stopped meanwhile: honour
    /// the stop.
    async fn converge_after_stop(&self, app: &AppRef, id: &crate::DeploymentId) {
        if let Ok(d) = self.store.get(id).await
            && d.status == DeploymentStatus::Stopped
        {
            tracing::debug!("stopped while starting; stopping what the backend started");
            if let Err(e) = self.orchestrator.stop_app(app).await {
                tracing::warn!("could not stop {app}: {e}");
            }
        }
    }

    pub(crate) async fn supersede_others(&self, current: &Deployment) {
        let others = match self.store.list(&current.app).await {
            Ok(all) => all,
            Err(e) => {
                tracing::error!("cannot list deployments to supersede: {e}");
                return;
            }
        };
        let event = DeploymentEvent::Superseded {
            by_version: current.version,
        };
        for old in others {
            if old.id != current.id && old.status == DeploymentStatus::Running {
                self.apply_logged(&old.id, &event).await;
            }
        }
    }

    /// Restarts the version the backend runs (or the newest with an image)
    /// after any deploy of the app in progress; waits for the outcome.
    pub(crate) async fn restart(self: &Arc<Self>, app: &AppRef) -> Result<Deployment> {
        let lane = self.lanes.lane(app);
        let turn = {
            let _admission = lane.admission.lock().await;
            lane.queue().await
        };
        let _lane = turn.wait().await;
        let target = self.restart_target(app).await?;
        crate::transition(target.status, &DeploymentEvent::Restarted)?;
        let restarted = {
            // A stopped or failed version claims its resources again.
            let _gate = self.tenant_gate(&app.tenant).await;
            self.admit(app, &target.config).await?;
            self.apply(&target.id, &DeploymentEvent::Restarted).await?
        };
        let Some(d) = restarted else {
            return Err(Error::Conflict(format!(
                "deployment {} changed while restarting",
                target.id
            )));
        };
        let orchestrator = self.orchestrator.clone();
        let outcome = self
            .health_gated(&d.config, orchestrator.restart_app(app))
            .await;
        self.settle_start(&d, outcome).await;
        self.store.get(&d.id).await
    }

    async fn restart_target(&self, app: &AppRef) -> Result<Deployment> {
        let all = self.store.list(app).await?;
        if all.is_empty() {
            return Err(Error::not_found("app", app));
        }
        let running = match self.orchestrator.app_status(app).await {
            Ok(status) => status.deployment,
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        running
            .and_then(|id| all.iter().find(|d| d.id == id && d.image.is_some()))
            .or_else(|| all.iter().find(|d| d.image.is_some()))
            .cloned()
            .ok_or_else(|| Error::Conflict(format!("{app} has no built version to restart")))
    }

    /// Stops the app in the backend, then every deployment of it that is
    /// BUILDING, STARTING or RUNNING.
    pub(crate) async fn stop(&self, app: &AppRef) -> Result<Vec<Deployment>> {
        // After any recovery under way, never between its snapshot and the
        // backend acting on it (see `recovering`).
        let _after_recovery = self.recovering.read().await;
        let all = self.store.list(app).await?;
        if all.is_empty() {
            return Err(Error::not_found("app", app));
        }
        match self.orchestrator.stop_app(app).await {
            Ok(()) => {}
            // Nothing ever ran (the first version is still building).
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let event = DeploymentEvent::Stopped {
            reason: StatusReason::StoppedOnRequest,
        };
        let mut stopped = Vec::new();
        for d in all {
            if d.status.is_in_progress() || d.status == DeploymentStatus::Running {
                let now = self.apply(&d.id, &event).await?;
                // After the write: the pipeline, cancelled, finds it STOPPED.
                self.cancel_build(&d.id);
                stopped.extend(now);
            }
        }
        Ok(stopped)
    }

    /// Deploys the image of the RUNNING deployment of `from` into `to`.
    pub(crate) async fn promote(
        self: &Arc<Self>,
        from: &AppRef,
        to: &AppRef,
        config: Option<AppConfig>,
    ) -> Result<Deployment> {
        if from == to {
            return Err(Error::Conflict(format!(
                "cannot promote {from} into its own environment"
            )));
        }
        let source = self
            .store
            .list(from)
            .await?
            .into_iter()
            .find(|d| d.status == DeploymentStatus::Running && d.image.is_some())
            .ok_or_else(|| Error::Conflict(format!("nothing is RUNNING in {from} to promote")))?;
        // The target environment's own config wins; a first promotion into
        // an environment that has never had one starts from the source's.
        let config = match config {
            Some(c) => c,
            None => match self.store.list(to).await?.into_iter().next() {
                Some(latest) => latest.config,
                None => source.config.clone(),
            },
        };
        let new = NewDeployment {
            artifact: source.artifact,
            image: source.image,
            source: DeploymentSource::Promotion { from: source.id },
            config,
        };
        self.deploy_image(to, new).await
    }

    /// Deploys the image (and config) of an earlier version as a new one.
    pub(crate) async fn rollback(
        self: &Arc<Self>,
        app: &AppRef,
        version: Option<u64>,
    ) -> Result<Deployment> {
        let all = self.store.list(app).await?;
        if all.is_empty() {
            return Err(Error::not_found("app", app));
        }
        let target = match version {
            Some(v) => {
                let d = all
                    .iter()
                    .find(|d| d.version == v)
                    .ok_or_else(|| Error::not_found("version", format!("{app} v{v}")))?;
                if d.image.is_none() {
                    return Err(Error::Conflict(format!(
                        "{app} v{v} has no image to roll back to (its build did not succeed)"
                    )));
                }
                self.check_retained(&all, d)?;
                d
            }
            None => {
                // Before the version that serves now, or the newest if none does.
                let current = all
                    .iter()
                    .find(|d| d.status == DeploymentStatus::Running)
                    .unwrap_or(&all[0]);
                let d = all
                    .iter()
                    .find(|d| {
                        d.version < current.version
                            && d.image.is_some()
                            && d.history
                                .iter()
                                .any(|c| c.status == DeploymentStatus::Running)
                    })
                    .ok_or_else(|| {
                        Error::Conflict(format!(
                            "{app} has no version before v{} that ran",
                            current.version
                        ))
                    })?;
                self.check_retained(&all, d)?;
                d
            }
        };
        let new = NewDeployment {
            artifact: target.artifact,
            image: target.image.clone(),
            source: DeploymentSource::Rollback {
                to_version: target.version,
            },
            config: target.config.clone(),
        };
        self.deploy_image(app, new).await
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}
