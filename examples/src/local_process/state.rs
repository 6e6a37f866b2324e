//! What the orchestrator remembers of each app: its runs (one per start of
//! a version) and its logs.

use std::sync::Arc;

use cameleer_runtime::{
    AppStatus, DeployRequest, DeploymentId, DeploymentStatus, RuntimeEvent, RuntimeEventKind,
    StatusReason,
};
use time::OffsetDateTime;

use super::LocalProcessOptions;
use super::logs::LogBuffer;
use super::process::{Exit, Proc};

/// Ended runs kept per app, for status and restart.
const KEPT_RUNS: usize = 8;

/// One app in one environment.
#[derive(Debug)]
pub(super) struct App {
    /// Starts (deploys and restarts) of one app take turns.
    pub(super) turn: Arc<tokio::sync::Mutex<()>>,
    /// Oldest first.
    pub(super) runs: Vec<Run>,
    pub(super) logs: Arc<LogBuffer>,
}

/// One start of one version.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) id: u64,
    pub(super) request: DeployRequest,
    pub(super) status: DeploymentStatus,
    pub(super) reason: Option<StatusReason>,
    /// Until the process has ended.
    pub(super) proc: Option<Arc<Proc>>,
}

impl Run {
    pub(super) fn status(&self) -> AppStatus {
        // One process per app: it is its one instance.
        AppStatus::new(
            self.request.app.clone(),
            self.status,
            Some(self.request.deployment),
            Some(self.request.version),
            self.reason.clone(),
        )
    }

    pub(super) fn is_live(&self) -> bool {
        matches!(
            self.status,
            DeploymentStatus::Starting | DeploymentStatus::Running
        )
    }

    /// Marks a live run STOPPED; returns its process, if it has not ended.
    pub(super) fn stop(&mut self, reason: &StatusReason) -> Option<Arc<Proc>> {
        if self.is_live() {
            self.status = DeploymentStatus::Stopped;
            self.reason = Some(reason.clone());
        }
        self.proc.clone().filter(|p| p.exit().is_none())
    }
}

impl App {
    pub(super) fn new(options: &LocalProcessOptions) -> Self {
        Self {
            turn: Arc::default(),
            runs: Vec::new(),
            logs: Arc::new(LogBuffer::new(options.log_lines, options.log_bytes)),
        }
    }

    /// What `app_status` shows: the newest RUNNING run, else the newest.
    pub(super) fn current(&self) -> Option<&Run> {
        self.runs
            .iter()
            .rev()
            .find(|r| r.status == DeploymentStatus::Running)
            .or(self.runs.last())
    }

    /// The RUNNING run of `deployment`, if there is one.
    pub(super) fn running(&self, deployment: DeploymentId) -> Option<&Run> {
        self.runs
            .iter()
            .rev()
            .find(|r| r.request.deployment == deployment && r.status == DeploymentStatus::Running)
    }

    pub(super) fn run_mut(&mut self, id: u64) -> Option<&mut Run> {
        self.runs.iter_mut().find(|r| r.id == id)
    }

    /// Processes that have not ended.
    pub(super) fn procs(&self) -> impl Iterator<Item = &Arc<Proc>> {
        let procs = self.runs.iter().filter_map(|r| r.proc.as_ref());
        procs.filter(|p| p.exit().is_none())
    }

    /// Marks every live run but `except` STOPPED; returns their processes.
    pub(super) fn stop_all(
        &mut self,
        reason: &StatusReason,
        except: Option<u64>,
    ) -> Vec<Arc<Proc>> {
        let others = self.runs.iter_mut().filter(|r| Some(r.id) != except);
        others.filter_map(|r| r.stop(reason)).collect()
    }

    /// Records a new run, forgetting the oldest ended ones.
    pub(super) fn record(&mut self, run: Run) {
        self.runs.push(run);
        while self.runs.len() > KEPT_RUNS {
            let Some(i) = self.runs.iter().position(|r| r.proc.is_none()) else {
                return;
            };
            self.runs.remove(i);
        }
    }

    /// The process of run `id` ended: a live run becomes FAILED, and a
    /// RUNNING one is a crash to report.
    pub(super) fn exited(&mut self, id: u64, exit: &Exit) -> Option<RuntimeEvent> {
        let run = self.run_mut(id)?;
        run.proc = None;
        if !run.is_live() {
            return None;
        }
        let was_running = run.status == DeploymentStatus::Running;
        run.status = DeploymentStatus::Failed;
        let reason = exit.reason();
        run.reason = Some(reason.clone());
        was_running.then(|| RuntimeEvent {
            app: run.request.app.clone(),
            deployment: run.request.deployment,
            kind: RuntimeEventKind::Failed { reason },
            at: OffsetDateTime::now_utc(),
        })
    }
}
