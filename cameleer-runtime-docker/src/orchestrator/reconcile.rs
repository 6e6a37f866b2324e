//! After a controller restart: adopt what runs, finish the steps a dead
//! controller cut short, and remove what nobody knows.
//!
//! The engine is the truth about what runs; the host's store is the truth
//! about what *should* run: `desired` carries its intent per deployment
//! ([`Intent::Run`] for what is active, [`Intent::KeepStopped`] for the
//! newest version of an app that FAILED or was STOPPED). Where the two
//! disagree the store wins: the `.stopped` name is only a cache of the
//! intent. Per app, newest version first:
//!
//! - **A container to run that is only stopped on request** (its name says
//!   so, but the store never recorded the stop, so it did not happen) is
//!   started again, as `restart_app` would.
//! - **A container to run that runs** is adopted. If it is still STARTING
//!   (the controller died while waiting for its health check), the wait is
//!   finished here, within what is left of its start timeout; one that was
//!   created but never started is started. So an interrupted deploy ends as
//!   it would have: RUNNING, or FAILED with the app's own reason. The
//!   serving container gets the app's name on the network if the switch was
//!   cut short (see [`switch`](super::switch)).
//! - **Older containers of an app whose newer known version serves** are
//!   retired, as the interrupted deploy would have done; the store's
//!   platform supersedes their deployments.
//! - **A newer known container that failed** next to an older serving one
//!   is removed (a failed redeploy leaves the old version alone) and
//!   reported missing with its reason.
//! - **A container to keep stopped** (its deployment FAILED or was STOPPED)
//!   is never adopted: it is stopped if it still runs (a controller died
//!   between its decision and the engine call) and kept, for the app's
//!   status and logs, unless an older version serves (as above). A FAILED
//!   one gets its reason back from the store, so a start given up on (which
//!   ends in a stop) still reads FAILED, and why.
//! - **Deployments to run with no container** are reported missing
//!   ("its container no longer exists"): a deploy cut short before its
//!   container existed cannot be finished by the backend, which has no
//!   image or config for it; the platform records it FAILED.
//! - **Containers the store does not want** are removed once older than
//!   [`orphan_grace`](super::DockerOrchestratorOptions::orphan_grace) (a
//!   deploy of another controller may be in flight). Containers a call of
//!   this orchestrator is starting are left alone.
//! - Networks of ours left without containers are removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::ContainerStateStatusEnum;
use bollard::query_parameters::StartContainerOptions;
use cameleer_runtime::{
    AppRef, AppStatus, Deployment, DeploymentId, DeploymentStatus, Desired, Intent,
    ReconcileReport, Result, StatusReason, TenantId,
};
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::lifecycle::StartFailure;
use super::{DockerRuntimeOrchestrator, Listed, started_at, stopped};
use crate::labels;
use crate::status::Phase;

/// How many apps are reconciled at once (each may wait for a health check).
const CONCURRENCY: usize = 8;

/// What reconciling one app found and did.
#[derive(Debug, Default)]
struct AppOutcome {
    adopted: Vec<DeploymentId>,
    removed_orphans: Vec<String>,
    missing: Vec<(DeploymentId, AppStatus)>,
    seen: Vec<DeploymentId>,
}

impl DockerRuntimeOrchestrator {
    /// Reconciles every app in `scope` (all when `None`); see the
    /// [module docs](self).
    pub(super) async fn reconcile_with(
        &self,
        desired: &[Desired],
        scope: Option<&TenantId>,
    ) -> Result<ReconcileReport> {
        let by_id: HashMap<DeploymentId, (&Deployment, Intent)> = desired
            .iter()
            .map(|d| (d.deployment.id, (&d.deployment, d.intent)))
            .collect();
        let filter = match scope {
            Some(tenant) => labels::tenant_filter(tenant),
            None => labels::managed_filter(),
        };
        let mut apps: BTreeMap<AppRef, Vec<Listed>> = BTreeMap::new();
        let mut places = BTreeSet::new();
        // Newest version first within each app.
        for c in self.list(filter).await? {
            places.insert((c.labels.app.tenant.clone(), c.labels.app.env.clone()));
            apps.entry(c.labels.app.clone()).or_default().push(c);
        }
        let outcomes: Vec<Result<AppOutcome>> = futures::stream::iter(apps)
            .map(|(app, containers)| self.reconcile_app(app, containers, &by_id))
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut report = ReconcileReport::default();
        let mut seen = BTreeSet::new();
        for outcome in outcomes {
            let outcome = outcome?;
            report.adopted.extend(outcome.adopted);
            report.removed_orphans.extend(outcome.removed_orphans);
            report.missing.extend(outcome.missing);
            seen.extend(outcome.seen);
        }
        for d in desired
            .iter()
            .filter(|d| scope.is_none_or(|s| *s == d.deployment.app.tenant))
        {
            let d = &d.deployment;
            // BUILDING ones have no container yet: the platform settles them.
            let active = matches!(
                d.status,
                DeploymentStatus::Starting | DeploymentStatus::Running
            );
            if active && !seen.contains(&d.id) {
                report.missing.push((
                    d.id,
                    status_of(d, DeploymentStatus::Failed, StatusReason::Gone),
                ));
            }
        }
        places.extend(
            crate::network::managed_places(&self.docker)
                .await?
                .into_iter()
                .filter(|(tenant, _)| scope.is_none_or(|s| s == tenant)),
        );
        for (tenant, env) in places {
            self.remove_network_if_unused(&tenant, &env).await?;
        }
        Ok(report)
    }

    /// One app's containers, newest first, under the app's lock, one
    /// deployment (all its instances) at a time.
    async fn reconcile_app(
        &self,
        app: AppRef,
        containers: Vec<Listed>,
        by_id: &HashMap<DeploymentId, (&Deployment, Intent)>,
    ) -> Result<AppOutcome> {
        let lock = self.memory.app_lock(&app);
        let _app = lock.lock().await;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let grace = i64::try_from(self.options.orphan_grace.as_secs()).unwrap_or(i64::MAX);
        let mut out = AppOutcome::default();
        let mut serving = false;
        let mut failed_newer: Vec<&Listed> = Vec::new();
        // Newest version first, as listed.
        let mut groups: Vec<(DeploymentId, Vec<&Listed>)> = Vec::new();
        for c in &containers {
            match groups.iter_mut().find(|(d, _)| *d == c.labels.deployment) {
                Some((_, group)) => group.push(c),
                None => groups.push((c.labels.deployment, vec![c])),
            }
        }
        for (i, (deployment, group)) in groups.iter().enumerate() {
            // A deploy or restart of this orchestrator is on these.
            let group: Vec<&Listed> = group
                .iter()
                .copied()
                .filter(|c| !self.memory.is_starting(&c.id))
                .collect();
            if group.is_empty() {
                continue;
            }
            let Some(&(d, intent)) = by_id.get(deployment).filter(|(d, _)| d.app == app) else {
                for c in group {
                    if now.saturating_sub(c.created) < grace {
                        continue;
                    }
                    self.remove_container(c).await?;
                    out.removed_orphans.push(c.name.clone());
                }
                continue;
            };
            out.seen.push(d.id);
            if serving {
                // A newer version serves: the deploy that started it died
                // before it retired this one.
                for c in group {
                    self.retire(c).await?;
                }
                continue;
            }
            if intent == Intent::KeepStopped {
                for c in &group {
                    self.keep_stopped(c, d).await?;
                }
                failed_newer.extend(group);
                continue;
            }
            if i == 0 && group.iter().any(|c| stopped::is_marked(&c.name)) {
                // The store wants it running: the stop never reached it.
                tracing::info!(app = %app, version = d.version, "starting again what the store says runs");
                match self.restart(&app).await {
                    Ok(_) => {
                        out.adopted.push(d.id);
                        serving = true;
                    }
                    Err(cameleer_runtime::Error::StartFailed { reason, .. }) => {
                        out.missing
                            .push((d.id, status_of(d, DeploymentStatus::Failed, reason)));
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            let mut running = false;
            let mut starting = false;
            let mut ended = None;
            for c in &group {
                match self.settle(c).await? {
                    (DeploymentStatus::Running, _) => {
                        self.publish_alias(&c.id, &c.labels).await?;
                        running = true;
                    }
                    (DeploymentStatus::Starting, _) => starting = true,
                    (status, reason) => {
                        if ended.is_none() {
                            ended = Some((*c, status, reason));
                        }
                    }
                }
            }
            if running {
                out.adopted.push(d.id);
                serving = true;
                for newer in failed_newer.drain(..) {
                    self.remove_container(newer).await?;
                }
            } else if starting {
                out.adopted.push(d.id);
            } else if let Some((c, status, reason)) = ended {
                let why = match reason {
                    Some(r) => self.refine(&c.id, r).await,
                    None => StatusReason::other("it is not running"),
                };
                out.missing.push((d.id, status_of(d, status, why)));
                failed_newer.extend(group);
            }
        }
        Ok(out)
    }

    /// A container whose deployment the store settled (FAILED or STOPPED):
    /// kept for its status and logs, never adopted; gone if an older
    /// version turns out to serve.
    async fn keep_stopped(&self, c: &Listed, d: &Deployment) -> Result<()> {
        use bollard::models::ContainerSummaryStateEnum as S;
        if matches!(
            c.state,
            Some(S::RUNNING | S::RESTARTING | S::CREATED | S::PAUSED)
        ) {
            if d.status == DeploymentStatus::Stopped {
                // As `stop_app` would have: the intent first.
                self.mark_stopped(&c.id, &c.name).await?;
            }
            self.stop_container(&c.id).await?;
        }
        if d.status == DeploymentStatus::Failed {
            // A start given up on (health check timed out) is a stop the
            // engine cannot tell from one on request; the reason lived in
            // the old controller's memory, and the store kept it.
            let reason = d
                .last_reason()
                .cloned()
                .unwrap_or_else(|| StatusReason::other("failed before a controller restart"));
            self.memory.set_start_failure(&c.id, &reason);
        }
        Ok(())
    }

    /// The status of a known container, after finishing the start a dead
    /// controller left unfinished.
    async fn settle(&self, c: &Listed) -> Result<(DeploymentStatus, Option<StatusReason>)> {
        let Some(inspect) = self.inspect(&c.id).await? else {
            return Ok((DeploymentStatus::Failed, Some(StatusReason::Gone)));
        };
        if let Phase::Ended { status, reason } = self.phase_of(&c.id, &inspect) {
            return Ok((status, Some(reason)));
        }
        let state = inspect.state.unwrap_or_default();
        if state.status == Some(ContainerStateStatusEnum::CREATED) {
            tracing::info!(container = %c.name, "starting a container whose deploy was cut short");
            self.docker
                .start_container(&c.id, None::<StartContainerOptions>)
                .await
                .map_err(|e| self.engine_error(format!("starting container {}", c.name), e))?;
        }
        let (status, reason) = self.observe(&c.id, &c.labels).await?;
        if status != DeploymentStatus::Starting {
            return Ok((status, reason));
        }
        // Within what is left of its start timeout (at least one more look).
        let began = state
            .started_at
            .as_deref()
            .and_then(started_at)
            .unwrap_or_else(OffsetDateTime::now_utc);
        let left = (began + c.labels.start_timeout - OffsetDateTime::now_utc())
            .max(time::Duration::ZERO)
            .unsigned_abs()
            .max(self.options.health_grace + self.options.probe_interval);
        tracing::info!(container = %c.name, ?left, "finishing a health check a restart cut short");
        match self
            .wait_until_up_by(
                &c.id,
                &c.labels,
                Instant::now() + left,
                c.labels.start_timeout,
            )
            .await
        {
            Ok(()) => Ok((DeploymentStatus::Running, None)),
            Err(StartFailure::Engine(e)) => Err(e),
            Err(failure @ StartFailure::TimedOut { .. }) => {
                let reason = failure.reason();
                if let Some(reason) = &reason {
                    self.memory.set_start_failure(&c.id, reason);
                }
                self.stop_container(&c.id).await?;
                Ok((DeploymentStatus::Failed, reason))
            }
            Err(StartFailure::Ended(reason)) => Ok((DeploymentStatus::Failed, Some(reason))),
        }
    }
}

fn status_of(d: &Deployment, status: DeploymentStatus, reason: StatusReason) -> AppStatus {
    AppStatus::new(
        d.app.clone(),
        status,
        Some(d.id),
        Some(d.version),
        Some(reason),
    )
    .with_instances(0, d.config.instances())
}
