//! The state the [`Platform`](crate::Platform) handle and its background
//! tasks share, and the one way deployments are written.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::PlatformOptions;
use super::events::{PlatformEvent, StatusEvent};
use super::lanes::{Lanes, Turn};
use crate::{
    AppRef, ArtifactStore, Deployment, DeploymentEvent, DeploymentId, DeploymentStore, Error,
    ImageBuilder, NewDeployment, QuotaStore, Result, RuntimeOrchestrator, StatusReason, TenantId,
};

pub(crate) struct Core {
    pub(crate) orchestrator: Arc<dyn RuntimeOrchestrator>,
    pub(crate) builder: Arc<dyn ImageBuilder>,
    pub(crate) store: Arc<dyn DeploymentStore>,
    pub(crate) artifacts: Arc<dyn ArtifactStore>,
    pub(crate) quotas: Arc<dyn QuotaStore>,
    pub(crate) options: PlatformOptions,
    pub(crate) events: broadcast::Sender<PlatformEvent>,
    pub(crate) lanes: Lanes,
    pub(crate) tasks: TaskTracker,
    pub(crate) cancel: CancellationToken,
    /// Deployments a pipeline of this process is working on; recovery and
    /// reconciliation leave them alone.
    inflight: Mutex<HashSet<DeploymentId>>,
    /// The builds under way, by deployment: a stop cancels them.
    builds: Mutex<HashMap<DeploymentId, CancellationToken>>,
    /// One recovery at a time (written): a recovery queues in the lanes of
    /// many apps, and two doing so at once could each wait for the other's
    /// turn. Stops read it: they take no lane (a stop must not wait for a
    /// build it cancels), so without it a stop could land between the
    /// recovery's snapshot and the backend acting on it, and a backend that
    /// brings up what the snapshot says should run would undo it.
    pub(crate) recovering: tokio::sync::RwLock<()>,
    /// Bumped whenever a deployment stops being in flight.
    pub(crate) finished: watch::Sender<u64>,
    pub(crate) watching: AtomicBool,
    /// Whether the background retention sweep runs.
    pub(crate) sweeping: AtomicBool,
    /// Per tenant: quota checks and the creations they admit take turns.
    pub(crate) tenant_gates: Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
    /// Requests that reference stored artifacts and images (uploads,
    /// deploys, promotions, rollbacks) hold it shared; a retention sweep
    /// holds it alone, so it never removes what a request is about to use.
    pub(crate) sweep_gate: tokio::sync::RwLock<()>,
    /// Image digests this process's sweeps removed: deployment records
    /// keep naming them, and plans leave them out. (After a restart a plan
    /// lists them once more, and removing a gone image is a no-op.)
    pub(crate) swept_images: Mutex<HashSet<cameleer_build::Sha256Digest>>,
}

impl Core {
    pub(crate) fn new(
        orchestrator: Arc<dyn RuntimeOrchestrator>,
        builder: Arc<dyn ImageBuilder>,
        store: Arc<dyn DeploymentStore>,
        artifacts: Arc<dyn ArtifactStore>,
        quotas: Arc<dyn QuotaStore>,
        options: PlatformOptions,
    ) -> Self {
        let (events, _) = broadcast::channel(options.event_capacity.max(1));
        Self {
            orchestrator,
            builder,
            store,
            artifacts,
            quotas,
            options,
            events,
            lanes: Lanes::default(),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            inflight: Mutex::default(),
            builds: Mutex::default(),
            recovering: tokio::sync::RwLock::const_new(()),
            finished: watch::Sender::new(0),
            watching: AtomicBool::new(false),
            sweeping: AtomicBool::new(false),
            tenant_gates: Mutex::default(),
            sweep_gate: tokio::sync::RwLock::const_new(()),
            swept_images: Mutex::default(),
        }
    }

    pub(crate) fn publish(&self, event: PlatformEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    pub(crate) fn is_inflight(&self, id: &DeploymentId) -> bool {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    /// Registers the build of deployment `id`: the returned token is
    /// cancelled when the deployment is stopped (or the platform shuts
    /// down), and the registration ends with the guard.
    pub(crate) fn register_build(self: &Arc<Self>, id: DeploymentId) -> BuildGuard {
        let token = self.cancel.child_token();
        self.builds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, token.clone());
        BuildGuard {
            core: self.clone(),
            id,
            token,
        }
    }

    /// Cancels the build of deployment `id`, if one is under way.
    pub(crate) fn cancel_build(&self, id: &DeploymentId) {
        let token = self
            .builds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        if let Some(token) = token {
            tracing::info!(deployment = %id, "cancelling its build");
            token.cancel();
        }
    }

    /// Allocates the next version of `app` and queues it in the app's lane,
    /// in one step, so that lane order is version order. The deployment
    /// counts as in flight before the app's admission is released (so
    /// [`recover`](Self::recover), which reads under it, never takes it for
    /// one a dead controller left), until the guard is dropped.
    pub(crate) async fn create_queued(
        self: &Arc<Self>,
        app: &AppRef,
        new: NewDeployment,
    ) -> Result<(Deployment, Turn, InflightGuard)> {
        let lane = self.lanes.lane(app);
        let _admission = lane.admission.lock().await;
        let turn = lane.queue().await;
        let d = self.store.create(app, new).await?;
        let inflight = self.mark_inflight(d.id);
        tracing::info!(deployment = %d.id, version = d.version, status = %d.status, "deployment created");
        self.publish(PlatformEvent::Status(StatusEvent::latest(&d)));
        Ok((d, turn, inflight))
    }

    fn mark_inflight(self: &Arc<Self>, id: DeploymentId) -> InflightGuard {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        InflightGuard {
            core: self.clone(),
            id,
        }
    }

    /// Runs `work` for the deployment `guard` holds in flight, in the
    /// background: after its lane turn, until done or until the platform
    /// shuts down. It stays in flight until then.
    pub(crate) fn spawn_for(
        self: &Arc<Self>,
        guard: InflightGuard,
        turn: Turn,
        work: impl Future<Output = ()> + Send + 'static,
    ) {
        let cancel = self.cancel.clone();
        self.tasks.spawn(
            async move {
                let _inflight = guard;
                cancel
                    .run_until_cancelled(async move {
                        let _lane = turn.wait().await;
                        work.await;
                    })
                    .await;
            }
            .in_current_span(),
        );
    }

    /// Applies `event` to the stored deployment `id` and writes it back with
    /// a conditional update, re-reading and retrying when another writer got
    /// there first; `edit` adjusts the record before it is written.
    ///
    /// `Ok(None)` means the event is not (or no longer) allowed: someone else
    /// moved the deployment on (a stop while building, a crash while
    /// starting), and the caller's step is moot. Nothing is overwritten.
    pub(crate) async fn apply_with(
        &self,
        id: &DeploymentId,
        event: &DeploymentEvent,
        edit: impl Fn(&mut Deployment) + Send + Sync,
    ) -> Result<Option<Deployment>> {
        for _ in 0..=self.options.conflict_retries {
            let mut d = self.store.get(id).await?;
            if let Err(e) = d.apply(event, OffsetDateTime::now_utc()) {
                tracing::debug!(deployment = %id, "not applied: {e}");
                return Ok(None);
            }
            edit(&mut d);
            match self.store.update(&d).await {
                Ok(d) => {
                    tracing::info!(
                        deployment = %d.id,
                        version = d.version,
                        status = %d.status,
                        reason = d.last_reason().map(tracing::field::display),
                        "status changed"
                    );
                    self.publish(PlatformEvent::Status(StatusEvent::latest(&d)));
                    return Ok(Some(d));
                }
                Err(Error::Conflict(why)) => tracing::debug!(deployment = %id, "retrying: {why}"),
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!(
            "deployment {id}: gave up after {} conflicting writes",
            self.options.conflict_retries + 1
        )))
    }

    /// [`apply_with`](Self::apply_with) without an edit.
    pub(crate) async fn apply(
        &self,
        id: &DeploymentId,
        event: &DeploymentEvent,
    ) -> Result<Option<Deployment>> {
        self.apply_with(id, event, |_| {}).await
    }

    /// Like [`apply`](Self::apply), for background tasks that have nobody to
    /// return an error to: a failing store is logged.
    pub(crate) async fn apply_logged(
        &self,
        id: &DeploymentId,
        event: &DeploymentEvent,
    ) -> Option<Deployment> {
        match self.apply(id, event).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(deployment = %id, %event, "could not record the event: {e}");
                None
            }
        }
    }
}

/// A build under way; see [`Core::register_build`].
pub(crate) struct BuildGuard {
    core: Arc<Core>,
    id: DeploymentId,
    pub(crate) token: CancellationToken,
}

impl Drop for BuildGuard {
    fn drop(&mut self) {
        self.core
            .builds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// Keeps a deployment in flight; see [`Core::create_queued`].
pub(crate) struct InflightGuard {
    core: Arc<Core>,
    id: DeploymentId,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.core
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        self.core.finished.send_modify(|n| *n += 1);
    }
}

/// The text to record for a failed step: the builder's or backend's own
/// words, without our prefixes.
pub(crate) fn reason_of(e: &Error) -> (StatusReason, Option<String>) {
    match e {
        Error::StartFailed { reason, output } => (reason.clone(), output.clone()),
        Error::BuildFailed(text) => (
            StatusReason::BuildFailed {
                detail: text.clone(),
            },
            None,
        ),
        Error::Backend { .. } | Error::Timeout(_) => (
            StatusReason::BackendUnavailable {
                detail: error_text(e),
            },
            None,
        ),
        other => (StatusReason::other(error_text(other)), None),
    }
}

/// The text of an error for a reason's detail: a backend error with its
/// source, the builder's own text, or the error's message.
pub(crate) fn error_text(e: &Error) -> String {
    match e {
        Error::BuildFailed(text) => text.clone(),
        Error::Backend {
            message,
            source: Some(source),
        } => format!("{message}: {source}"),
        Error::Backend {
            message,
            source: None,
        } => message.clone(),
        other => other.to_string(),
    }
}
