//! Keeping the store truthful: runtime events, recovery after a controller
//! restart, and reconciling what the store says with what the backend sees.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::core::Core;
use super::events::{PlatformEvent, PlatformEvents, UnhealthyEvent};
use super::lanes::{Lane, LaneGuard};
use crate::{
    AppRef, AppStatus, Deployment, DeploymentEvent, DeploymentId, DeploymentStatus, Desired, Error,
    EventStream, ReconcileReport, Result, RuntimeEvent, RuntimeEventKind, StatusReason, TenantId,
};

/// One app as the platform sees it: the newest deployment in the store,
/// reconciled with what the backend reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppView {
    /// Which app.
    pub app: AppRef,
    /// The status to show: the backend's when it knows the app (it may be
    /// an older version that keeps serving after a failed redeploy), else
    /// the newest deployment's.
    pub status: Option<DeploymentStatus>,
    /// The newest deployment, if the store has one.
    pub deployment: Option<Deployment>,
    /// What the backend reports, if it knows the app.
    pub runtime: Option<AppStatus>,
}

impl AppView {
    fn new(app: AppRef, deployment: Option<Deployment>, runtime: Option<AppStatus>) -> Self {
        let status = runtime
            .as_ref()
            .map(|r| r.status)
            .or(deployment.as_ref().map(|d| d.status));
        Self {
            app,
            status,
            deployment,
            runtime,
        }
    }
}

/// What [`Platform::recover`](crate::Platform::recover) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// What the backend's [`reconcile`](crate::RuntimeOrchestrator::reconcile) reported.
    pub backend: ReconcileReport,
    /// Deployments marked FAILED: interrupted builds and starts, and
    /// RUNNING ones the backend no longer runs.
    pub failed: Vec<DeploymentId>,
    /// STARTING deployments the backend turned out to run, marked RUNNING.
    pub running: Vec<DeploymentId>,
}

impl Core {
    /// Subscribes to the backend's events (once), then recovers.
    pub(crate) async fn start(self: &Arc<Self>) -> Result<RecoveryReport> {
        if !self.watching.swap(true, Ordering::SeqCst) {
            // Subscribed before recovering, so nothing that happens during
            // recovery is missed.
            let stream = match self.orchestrator.events().await {
                Ok(s) => s,
                Err(e) => {
                    self.watching.store(false, Ordering::SeqCst);
                    return Err(e);
                }
            };
            let core = self.clone();
            let cancel = self.cancel.clone();
            self.tasks.spawn(
                async move { cancel.run_until_cancelled(core.watch(stream)).await }
                    .instrument(tracing::info_span!("runtime_events")),
            );
        }
        self.recover().await
    }

    async fn watch(self: Arc<Self>, mut stream: EventStream) {
        loop {
            while let Some(event) = stream.next().await {
                self.on_runtime_event(event).await;
            }
            tracing::warn!("the backend's event stream ended; subscribing again");
            stream = loop {
                tokio::time::sleep(self.options.watcher_retry).await;
                match self.orchestrator.events().await {
                    Ok(s) => break s,
                    Err(e) => tracing::warn!("cannot subscribe to the backend's events: {e}"),
                }
            };
        }
    }

    pub(crate) async fn on_runtime_event(&self, event: RuntimeEvent) {
        let d = match self.store.get(&event.deployment).await {
            Ok(d) if d.app == event.app => d,
            Ok(d) => {
                tracing::warn!(deployment = %d.id, "event for {} names a deployment of {}", event.app, d.app);
                return;
            }
            Err(e) => {
                tracing::debug!(deployment = %event.deployment, "event for an unknown deployment: {e}");
                return;
            }
        };
        let transition = match event.kind {
            RuntimeEventKind::Failed { reason } => DeploymentEvent::Crashed { reason },
            RuntimeEventKind::Stopped { reason } => DeploymentEvent::Stopped { reason },
            RuntimeEventKind::Unhealthy { reason } => {
                tracing::warn!(deployment = %d.id, "unhealthy: {reason}");
                if d.status == DeploymentStatus::Running {
                    self.publish(PlatformEvent::Unhealthy(UnhealthyEvent {
                        deployment: d.id,
                        app: d.app,
                        version: d.version,
                        reason,
                        at: event.at,
                    }));
                }
                return;
            }
            // Healthy: the pipeline that started it records that. Removed:
            // backends remove what they replace or stop, which the store
            // already says; a real loss shows up in status reconciliation.
            RuntimeEventKind::Healthy | RuntimeEventKind::Removed => return,
        };
        self.apply_logged(&d.id, &transition).await;
    }

    /// After a controller restart: lets the backend adopt what the store
    /// says is active (and keep the newest version of every app), then
    /// settles whatever no pipeline will finish.
    ///
    /// Everything happens under the turn of every app in the store (see
    /// [`lanes`](super::lanes)): the recovery waits for the deploys and
    /// restarts under way, reads the store only then, and holds the turns
    /// until it has applied what the backend reported, so a restart never
    /// lands between the snapshot and the backend acting on it (the backend
    /// would stop it again, acting on a stale "stopped"). What is asked
    /// meanwhile waits for it.
    pub(crate) async fn recover(&self) -> Result<RecoveryReport> {
        let _one_at_a_time = self.recovering.write().await;
        // The apps to settle, from a first look at the store.
        let mut apps: BTreeSet<AppRef> = self
            .store
            .active()
            .await?
            .into_iter()
            .map(|d| d.app)
            .collect();
        apps.extend(
            self.store
                .latest_of_every_app()
                .await?
                .into_iter()
                .map(|d| d.app),
        );
        let lanes: Vec<Arc<Lane>> = apps.iter().map(|app| self.lanes.lane(app)).collect();
        // Queue in every lane first, so each turn comes after what was asked
        // of the app before the recovery and before what is asked after.
        let mut turns = Vec::with_capacity(lanes.len());
        for lane in &lanes {
            let _admission = lane.admission.lock().await;
            turns.push(lane.queue().await);
        }
        let mut held: Vec<LaneGuard> = Vec::with_capacity(turns.len());
        for turn in turns {
            held.push(turn.wait().await);
        }
        // Read while no deployment of these apps is being created either,
        // so one created by this process is always seen in flight.
        let all = {
            let mut admissions = Vec::with_capacity(lanes.len());
            for lane in &lanes {
                admissions.push(lane.admission.lock().await);
            }
            self.snapshot(&apps).await?
        };
        let desired = Desired::plan(all);
        let backend = self.orchestrator.reconcile(&desired).await?;
        let known: Vec<Deployment> = desired.into_iter().map(|d| d.deployment).collect();
        let missing: HashMap<DeploymentId, &AppStatus> =
            backend.missing.iter().map(|(id, s)| (*id, s)).collect();
        let mut report = RecoveryReport::default();
        for d in &known {
            let gone = missing.get(&d.id).copied();
            let event = match d.status {
                DeploymentStatus::Building => Some(DeploymentEvent::BuildFailed {
                    reason: StatusReason::Interrupted { detail: None },
                }),
                DeploymentStatus::Starting => Some(self.settle_interrupted_start(d, gone).await),
                DeploymentStatus::Running => gone.and_then(missing_event),
                _ => None,
            };
            let Some(event) = event else { continue };
            let Some(after) = self.apply(&d.id, &event).await? else {
                continue;
            };
            match after.status {
                DeploymentStatus::Failed => report.failed.push(after.id),
                DeploymentStatus::Running => {
                    self.supersede_others(&after).await;
                    report.running.push(after.id);
                }
                _ => {}
            }
        }
        report.backend = backend;
        drop(held);
        tracing::info!(
            failed = report.failed.len(),
            running = report.running.len(),
            adopted = report.backend.adopted.len(),
            "recovered"
        );
        Ok(report)
    }

    /// The deployments of `apps` a recovery settles and tells the backend
    /// about, none of them in flight.
    ///
    /// The active deployments, and the newest of every app whatever its
    /// status: a newest version that FAILED or was STOPPED keeps its
    /// container (its status and logs), which the backend would otherwise
    /// remove as unknown. When the newest never had one (its build failed,
    /// it never ran) or is this process's to settle, the app's older
    /// versions too: the one whose container is kept may be older (see
    /// [`Desired::plan`]). The store's intent, not what the backend cached,
    /// decides.
    async fn snapshot(&self, apps: &BTreeSet<AppRef>) -> Result<Vec<Deployment>> {
        let mut all: Vec<Deployment> = self.store.active().await?;
        for newest in self.store.latest_of_every_app().await? {
            if !apps.contains(&newest.app) {
                // A first deployment created since the first look, by a
                // request that came after the recovery: not ours to settle.
                continue;
            }
            if self.is_inflight(&newest.id) || Desired::needs_older(&newest) {
                all.extend(self.store.list(&newest.app).await?);
            } else {
                all.push(newest);
            }
        }
        all.retain(|d| apps.contains(&d.app) && !self.is_inflight(&d.id));
        Ok(all)
    }

    /// A STARTING deployment nobody is starting any more: RUNNING if the
    /// backend runs it, else FAILED.
    async fn settle_interrupted_start(
        &self,
        d: &Deployment,
        gone: Option<&AppStatus>,
    ) -> DeploymentEvent {
        if gone.is_none()
            && let Ok(s) = self.orchestrator.app_status(&d.app).await
            && s.deployment == Some(d.id)
            && s.status == DeploymentStatus::Running
        {
            return DeploymentEvent::Healthy;
        }
        DeploymentEvent::StartFailed {
            reason: StatusReason::Interrupted {
                detail: gone.and_then(|s| s.reason.as_ref()).map(|r| r.to_string()),
            },
            output: None,
        }
    }

    /// The app's newest deployment, after applying what the backend knows
    /// that the store does not (a crash missed while no one watched).
    pub(crate) async fn status(&self, app: &AppRef) -> Result<AppView> {
        let runtime = match self.orchestrator.app_status(app).await {
            Ok(s) => Some(s),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let all = self.store.list(app).await?;
        if all.is_empty() {
            return match runtime {
                Some(rt) => Ok(AppView::new(app.clone(), None, Some(rt))),
                None => Err(Error::not_found("app", app)),
            };
        }
        if let Some((id, event)) = self.drift(&all, runtime.as_ref()) {
            self.apply(&id, &event).await?;
        }
        let latest = self.store.get(&all[0].id).await?;
        Ok(AppView::new(app.clone(), Some(latest), runtime))
    }

    /// Where the store disagrees with the backend about a deployment no
    /// pipeline is working on, the event that makes it agree.
    fn drift(
        &self,
        all: &[Deployment],
        runtime: Option<&AppStatus>,
    ) -> Option<(DeploymentId, DeploymentEvent)> {
        let (d, event) = match runtime {
            Some(rt) => {
                let d = match rt.deployment {
                    Some(id) => all.iter().find(|d| d.id == id)?,
                    None => all.first()?,
                };
                (d, drift_event(d, rt)?)
            }
            None => {
                // The backend knows nothing of the app: what the store
                // thinks runs is gone.
                let d = all.iter().find(|d| d.status == DeploymentStatus::Running)?;
                let event = DeploymentEvent::Crashed {
                    reason: StatusReason::Gone,
                };
                (d, event)
            }
        };
        (!self.is_inflight(&d.id)).then_some((d.id, event))
    }

    /// Every app of `tenant`: the store's newest deployments joined with the
    /// backend's list, and the apps only the backend knows.
    pub(crate) async fn list(&self, tenant: &TenantId) -> Result<Vec<AppView>> {
        let mut runtime: BTreeMap<AppRef, AppStatus> = self
            .orchestrator
            .list_apps(tenant)
            .await?
            .into_iter()
            .filter(|s| &s.app.tenant == tenant)
            .map(|s| {
                let status = AppStatus::new(s.app.clone(), s.status, s.deployment, s.version, None)
                    .with_instances(s.ready_instances, s.desired_instances);
                (s.app, status)
            })
            .collect();
        let mut views = Vec::new();
        for d in self.store.latest_per_app(tenant).await? {
            let rt = runtime.remove(&d.app);
            let agrees = match &rt {
                None => d.status != DeploymentStatus::Running,
                Some(rt) => rt.deployment == Some(d.id) && drift_event(&d, rt).is_none(),
            };
            if agrees {
                views.push(AppView::new(d.app.clone(), Some(d), rt));
            } else {
                // The full status call reconciles, with the backend's reason.
                views.push(self.status(&d.app).await?);
            }
        }
        views.extend(
            runtime
                .into_iter()
                .map(|(app, rt)| AppView::new(app, None, Some(rt))),
        );
        views.sort_by(|a, b| a.app.cmp(&b.app));
        Ok(views)
    }

    /// Waits until deployment `id` is neither BUILDING nor STARTING and no
    /// pipeline works on it any more.
    pub(crate) async fn wait_settled(
        &self,
        id: &DeploymentId,
        limit: Duration,
    ) -> Result<Deployment> {
        let mut events = PlatformEvents::new(self.events.subscribe());
        let mut finished = self.finished.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let d = self.store.get(id).await?;
            if !d.status.is_in_progress() && !self.is_inflight(id) {
                return Ok(d);
            }
            let changed = async {
                tokio::select! {
                    () = next_status_of(&mut events, id) => {}
                    _ = finished.changed() => {}
                }
            };
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(Error::Timeout(format!(
                    "deployment {id} is still {} after {:?}",
                    d.status, limit
                )));
            }
        }
    }
}

/// The event that brings a deployment the store has as `d` in line with
/// the backend's `rt`, if they disagree in a way the table can express.
fn drift_event(d: &Deployment, rt: &AppStatus) -> Option<DeploymentEvent> {
    use DeploymentStatus as S;
    match (d.status, rt.status) {
        (S::Running | S::Starting, S::Failed) => Some(DeploymentEvent::Crashed {
            reason: rt
                .reason
                .clone()
                .unwrap_or_else(|| StatusReason::other("the backend reports it FAILED")),
        }),
        (S::Running, S::Stopped) => Some(DeploymentEvent::Stopped {
            reason: rt.reason.clone().unwrap_or(StatusReason::StoppedExternally),
        }),
        _ => None,
    }
}

/// A RUNNING deployment the backend reported missing after a restart.
fn missing_event(rt: &AppStatus) -> Option<DeploymentEvent> {
    (rt.status != DeploymentStatus::Running).then(|| DeploymentEvent::Crashed {
        reason: rt.reason.clone().unwrap_or(StatusReason::Gone),
    })
}

/// Returns when a status event for `id` arrives (or events were missed).
async fn next_status_of(events: &mut PlatformEvents, id: &DeploymentId) {
    loop {
        match events.next().await {
            Some(PlatformEvent::Status(s)) if &s.deployment == id => return,
            Some(PlatformEvent::Lagged { .. }) => return,
            Some(_) => {}
            None => std::future::pending().await,
        }
    }
}
