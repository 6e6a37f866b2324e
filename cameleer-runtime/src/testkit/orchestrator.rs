//! [`FakeOrchestrator`]: an in-memory backend with fault injection.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::sync::broadcast;

use super::program::FakeProgram;
use crate::{
    AppConfig, AppRef, AppStatus, AppSummary, DeployRequest, DeploymentId, DeploymentStatus,
    Desired, Error, EventStream, ImageRef, Intent, LogLine, LogOptions, LogSource, LogStream,
    ReconcileReport, Result, RuntimeEvent, RuntimeEventKind, RuntimeOrchestrator, StatusReason,
    TenantId,
};

/// Instances kept per app (older ones are forgotten).
const KEPT_INSTANCES: usize = 16;

/// An in-memory [`RuntimeOrchestrator`] for tests.
///
/// - Per-[`AppRef`] state; a new version replaces the RUNNING one only once
///   it is up, and a failed start leaves the previous one running.
/// - [`AppConfig::replicas`] instances per version: a redeploy brings them
///   up one at a time, each taking the place of one old instance, so the
///   app never has fewer ready; [`kill_instance`](Self::kill_instance)
///   kills one, which is replaced and counted in
///   [`AppStatus::restarts`]; logs are tagged with their instance.
/// - Logs with timestamps, `since` honoured, follow mode (a following
///   stream ends when the instance stops).
/// - Runtime events ([`RuntimeEventKind::Failed`], with the exit code or
///   the OOM kill) for crashes.
/// - Images run a [`FakeProgram`] ([`register_image`](Self::register_image);
///   unknown images are [`FakeProgram::Idle`]), which also says how long
///   the image takes to pass its health check ([`FakeProgram::SlowToStart`],
///   [`FakeProgram::NeverHealthy`]).
/// - Fault injection for the next start (deploy or restart):
///   [`crash_after_start`](Self::crash_after_start),
///   [`oom_kill`](Self::oom_kill), [`slow_health`](Self::slow_health),
///   [`fail_start`](Self::fail_start).
/// - [`reconcile`](RuntimeOrchestrator::reconcile) adopts what it runs,
///   stops what the store wants stopped, removes what the store does not
///   know, and [`wipe`](Self::wipe) loses everything, to test controller
///   restarts. The fake keeps nothing on the controller's side, so a clone
///   is what a restarted controller sees.
///
/// Clones share one fake. Needs a tokio runtime.
#[derive(Clone)]
pub struct FakeOrchestrator {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) state: Mutex<State>,
    events: broadcast::Sender<RuntimeEvent>,
    deploy_grace: Duration,
    log_capacity: usize,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) apps: BTreeMap<AppRef, FakeApp>,
    pub(super) pending: Faults,
    pub(super) programs: HashMap<String, FakeProgram>,
    next_run: u64,
    deploys: u64,
    /// Whether a killed instance of several is left dead (a broken
    /// backend, for the conformance suite's own tests).
    pub(super) keeps_killed_instances_dead: bool,
}

#[derive(Default)]
pub(super) struct Faults {
    pub(super) crash: Option<i64>,
    pub(super) oom: bool,
    pub(super) slow: Option<Duration>,
    pub(super) fail: Option<String>,
}

#[derive(Default)]
pub(super) struct FakeApp {
    /// One entry per run of a version (a deploy or a restart), each with
    /// its `replicas` instances.
    pub(super) instances: Vec<Instance>,
    /// Every instance's lines, oldest first, with the deployment that
    /// wrote them.
    logs: VecDeque<(DeploymentId, LogLine)>,
}

pub(super) struct Instance {
    pub(super) run: u64,
    pub(super) deployment: DeploymentId,
    pub(super) version: u64,
    pub(super) image: ImageRef,
    config: AppConfig,
    pub(super) status: DeploymentStatus,
    pub(super) reason: Option<StatusReason>,
    pub(super) follow: Option<broadcast::Sender<LogLine>>,
    /// How many of its instances run it.
    pub(super) replicas: u32,
    /// How many of them are up and serve.
    pub(super) ready: u32,
    /// How many of them were replaced after a crash.
    pub(super) restarts: u32,
}

impl Default for FakeOrchestrator {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FakeOrchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOrchestrator").finish_non_exhaustive()
    }
}

impl FakeOrchestrator {
    /// A fake with a 5 s deploy grace and 10,000 log lines kept per app.
    pub fn new() -> Self {
        Self::with_deploy_grace(Duration::from_secs(5))
    }

    /// A fake whose [`deploy_grace`](RuntimeOrchestrator::deploy_grace) is
    /// `grace`.
    pub fn with_deploy_grace(grace: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::default(),
                events: broadcast::channel(1024).0,
                deploy_grace: grace,
                log_capacity: 10_000,
            }),
        }
    }

    /// Makes `image` run `program`.
    pub fn register_image(&self, image: &ImageRef, program: FakeProgram) {
        self.inner
            .lock()
            .programs
            .insert(image.to_string(), program);
    }

    /// The next app started crashes with `exit_code` right after it is up.
    pub fn crash_after_start(&self, exit_code: i64) {
        self.inner.lock().pending.crash = Some(exit_code);
    }

    /// The next app started is OOM-killed right after it is up.
    pub fn oom_kill(&self) {
        self.inner.lock().pending.oom = true;
    }

    /// The next app started takes `delay` to pass its health check; beyond
    /// its start timeout, the start fails with `timeout`.
    pub fn slow_health(&self, delay: Duration) {
        self.inner.lock().pending.slow = Some(delay);
    }

    /// The next start fails with a backend error saying `reason`.
    pub fn fail_start(&self, reason: impl Into<String>) {
        self.inner.lock().pending.fail = Some(reason.into());
    }

    /// The deployment RUNNING for `app`, if any.
    pub fn running(&self, app: &AppRef) -> Option<DeploymentId> {
        let st = self.inner.lock();
        st.apps
            .get(app)?
            .instances
            .iter()
            .rev()
            .find(|i| i.status == DeploymentStatus::Running)
            .map(|i| i.deployment)
    }

    /// The version RUNNING for `app`, if any: what answers the app's
    /// clients.
    pub fn running_version(&self, app: &AppRef) -> Option<u64> {
        let st = self.inner.lock();
        st.apps
            .get(app)?
            .instances
            .iter()
            .rev()
            .find(|i| i.status == DeploymentStatus::Running)
            .map(|i| i.version)
    }

    /// How many times [`deploy_app`](RuntimeOrchestrator::deploy_app) was
    /// called.
    pub fn deploys(&self) -> u64 {
        self.inner.lock().deploys
    }

    /// Sends `event` to [`events`](RuntimeOrchestrator::events) subscribers,
    /// as if the backend had observed it.
    pub fn emit(&self, event: RuntimeEvent) {
        let _ = self.inner.events.send(event);
    }

    /// Forgets every app, as if the machine had been replaced.
    pub fn wipe(&self) {
        self.inner.lock().apps.clear();
    }
}

impl FakeOrchestrator {
    /// The lines of `app` (of one deployment when `only` is set) from
    /// `options.since`, then, when following, the live lines of its current
    /// instance (of that deployment's newest instance).
    fn read_logs(
        &self,
        app: &AppRef,
        only: Option<DeploymentId>,
        options: &LogOptions,
    ) -> Result<LogStream> {
        let since = options.since.map(OffsetDateTime::from);
        let keep = move |l: &LogLine| since.is_none_or(|s| l.ts >= s);
        let (past, live) = {
            let st = self.inner.lock();
            let entry = st.apps.get(app).ok_or_else(|| gone(app))?;
            let instance = match only {
                None => entry.current(),
                Some(d) => entry.instances.iter().rev().find(|i| i.deployment == d),
            };
            if let (Some(d), None) = (only, instance) {
                return Err(Error::not_found("deployment", d));
            }
            let past: Vec<Result<LogLine>> = entry
                .logs
                .iter()
                .filter(|(d, l)| only.is_none_or(|o| o == *d) && keep(l))
                .map(|(_, l)| Ok(l.clone()))
                .collect();
            let live = options
                .follow
                .then(|| instance.and_then(|i| i.follow.as_ref()))
                .flatten()
                .map(broadcast::Sender::subscribe);
            (past, live)
        };
        let past = futures::stream::iter(past);
        let Some(live) = live else {
            return Ok(Box::pin(past));
        };
        let live = futures::stream::unfold(live, move |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(line) if keep(&line) => return Some((Ok(line), rx)),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Box::pin(past.chain(live)))
    }
}

pub(super) fn gone(app: &AppRef) -> Error {
    Error::not_found("app", app)
}

impl Inner {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn push_log(
        &self,
        app: &mut FakeApp,
        run: u64,
        instance: u32,
        stream: LogSource,
        line: String,
    ) {
        let line = LogLine {
            ts: OffsetDateTime::now_utc(),
            stream,
            line,
            instance: Some(instance),
        };
        let Some(instance) = app.instances.iter().find(|i| i.run == run) else {
            return;
        };
        if let Some(tx) = instance.follow.as_ref() {
            let _ = tx.send(line.clone());
        }
        let deployment = instance.deployment;
        if app.logs.len() >= self.log_capacity {
            app.logs.pop_front();
        }
        app.logs.push_back((deployment, line));
    }

    /// Writes line `n` of run `run` if it is still up, from one of its
    /// instances in turn; false when it is not up.
    pub(super) fn log_if_running(
        &self,
        app: &AppRef,
        run: u64,
        n: u64,
        stream: LogSource,
        line: String,
    ) -> bool {
        let mut st = self.lock();
        let Some(entry) = st.apps.get_mut(app) else {
            return false;
        };
        let Some(replicas) = entry
            .instances
            .iter()
            .find(|i| i.run == run && i.status == DeploymentStatus::Running)
            .map(|i| i.replicas.max(1))
        else {
            return false;
        };
        let instance = u32::try_from(n % u64::from(replicas)).unwrap_or(0);
        self.push_log(entry, run, instance, stream, line);
        true
    }

    /// After run `failed` of `app` did not come up: the instances of the
    /// version that serves, which made room for it, are back.
    pub(super) fn bring_old_back(&self, app: &AppRef, failed: u64) {
        let mut st = self.lock();
        if let Some(entry) = st.apps.get_mut(app) {
            for old in &mut entry.instances {
                if old.run != failed && old.status == DeploymentStatus::Running {
                    old.ready = old.replicas;
                }
            }
        }
    }

    /// Ends instance `run` (if it is still starting or up) and reports it.
    pub(super) fn end(
        &self,
        app: &AppRef,
        run: u64,
        status: DeploymentStatus,
        reason: StatusReason,
        event: Option<RuntimeEventKind>,
    ) {
        let mut st = self.lock();
        let Some(entry) = st.apps.get_mut(app) else {
            return;
        };
        let Some(inst) = entry.instances.iter_mut().find(|i| {
            i.run == run
                && matches!(
                    i.status,
                    DeploymentStatus::Starting | DeploymentStatus::Running
                )
        }) else {
            return;
        };
        let deployment = inst.deployment;
        if event.is_some() {
            self.push_log(entry, run, 0, LogSource::Stderr, format!("[app] {reason}"));
        }
        let inst = entry
            .instances
            .iter_mut()
            .find(|i| i.run == run)
            .expect("found above");
        inst.status = status;
        inst.reason = Some(reason);
        inst.follow = None;
        inst.ready = 0;
        if let Some(kind) = event {
            let _ = self.events.send(RuntimeEvent {
                app: app.clone(),
                deployment,
                kind,
                at: OffsetDateTime::now_utc(),
            });
        }
    }
}

impl Instance {
    pub(super) fn stop(&mut self, reason: StatusReason) {
        if matches!(
            self.status,
            DeploymentStatus::Starting | DeploymentStatus::Running
        ) {
            self.status = DeploymentStatus::Stopped;
            self.reason = Some(reason);
            self.follow = None;
            self.ready = 0;
        }
    }
}

impl FakeApp {
    /// The status of run `run`: a RUNNING run is RUNNING only while every
    /// instance it asks for is ready, counting the instances of every run
    /// that serves (during a rollout, the old and the new ones).
    pub(super) fn status_of(&self, app: &AppRef, run: u64) -> AppStatus {
        let ready: u32 = self
            .instances
            .iter()
            .filter(|i| i.status.is_in_progress() || i.status == DeploymentStatus::Running)
            .map(|i| i.ready)
            .sum();
        let Some(inst) = self.instances.iter().find(|i| i.run == run) else {
            return AppStatus::new(
                app.clone(),
                DeploymentStatus::Stopped,
                None,
                None,
                Some(StatusReason::Gone),
            )
            .with_instances(ready, 0);
        };
        let (status, reason) = match inst.status {
            DeploymentStatus::Running => crate::instances_status(ready, inst.replicas),
            other => (other, inst.reason.clone()),
        };
        AppStatus::new(
            app.clone(),
            status,
            Some(inst.deployment),
            Some(inst.version),
            reason,
        )
        .with_instances(ready, inst.replicas)
        .with_restarts(inst.restarts)
    }

    /// What `app_status` reports: the newest RUNNING instance, else the
    /// newest one.
    fn current(&self) -> Option<&Instance> {
        self.instances
            .iter()
            .rev()
            .find(|i| i.status == DeploymentStatus::Running)
            .or(self.instances.last())
    }

    fn add(&mut self, inst: Instance) {
        self.instances.push(inst);
        if self.instances.len() > KEPT_INSTANCES {
            self.instances.remove(0);
        }
    }
}

#[async_trait]
impl RuntimeOrchestrator for FakeOrchestrator {
    async fn deploy_app(&self, request: &DeployRequest) -> Result<AppStatus> {
        request.config.validate()?;
        let (run, faults) = {
            let mut st = self.inner.lock();
            st.deploys += 1;
            let faults = std::mem::take(&mut st.pending);
            st.next_run += 1;
            let run = st.next_run;
            let entry = st.apps.entry(request.app.clone()).or_default();
            if let Some(up) = entry.instances.iter().find(|i| {
                i.deployment == request.deployment && i.status == DeploymentStatus::Running
            }) {
                // Idempotent: it already runs.
                return Ok(entry.status_of(&request.app, up.run));
            }
            entry.add(Instance {
                run,
                deployment: request.deployment,
                version: request.version,
                image: request.image.clone(),
                config: request.config.clone(),
                status: DeploymentStatus::Starting,
                reason: None,
                follow: None,
                replicas: request.config.instances(),
                ready: 0,
                restarts: 0,
            });
            (run, faults)
        };
        self.bring_up(&request.app, run, faults, &request.config)
            .await
    }

    async fn stop_app(&self, app: &AppRef) -> Result<()> {
        let mut st = self.inner.lock();
        let entry = st.apps.get_mut(app).ok_or_else(|| gone(app))?;
        let runs: Vec<u64> = entry
            .instances
            .iter()
            .filter(|i| i.status == DeploymentStatus::Running)
            .map(|i| i.run)
            .collect();
        for run in runs {
            self.inner
                .push_log(entry, run, 0, LogSource::Stdout, "[app] stopping".into());
        }
        for inst in &mut entry.instances {
            inst.stop(StatusReason::StoppedOnRequest);
        }
        Ok(())
    }

    async fn restart_app(&self, app: &AppRef) -> Result<AppStatus> {
        let (run, faults, config) = {
            let mut st = self.inner.lock();
            let faults = std::mem::take(&mut st.pending);
            st.next_run += 1;
            let run = st.next_run;
            let entry = st.apps.get_mut(app).ok_or_else(|| gone(app))?;
            let current = entry.current().ok_or_else(|| gone(app))?;
            let (deployment, version, image, config) = (
                current.deployment,
                current.version,
                current.image.clone(),
                current.config.clone(),
            );
            for inst in &mut entry.instances {
                inst.stop(StatusReason::StoppedOnRequest);
            }
            entry.add(Instance {
                run,
                deployment,
                version,
                image,
                config: config.clone(),
                status: DeploymentStatus::Starting,
                reason: None,
                follow: None,
                replicas: config.instances(),
                ready: 0,
                restarts: 0,
            });
            (run, faults, config)
        };
        self.bring_up(app, run, faults, &config).await
    }

    async fn app_logs(&self, app: &AppRef, options: &LogOptions) -> Result<LogStream> {
        self.read_logs(app, None, options)
    }

    async fn deployment_logs(
        &self,
        app: &AppRef,
        deployment: &DeploymentId,
        options: &LogOptions,
    ) -> Result<LogStream> {
        self.read_logs(app, Some(*deployment), options)
    }

    async fn app_status(&self, app: &AppRef) -> Result<AppStatus> {
        let st = self.inner.lock();
        let entry = st.apps.get(app).ok_or_else(|| gone(app))?;
        let current = entry.current().ok_or_else(|| gone(app))?;
        Ok(entry.status_of(app, current.run))
    }

    async fn list_apps(&self, tenant: &TenantId) -> Result<Vec<AppSummary>> {
        let st = self.inner.lock();
        Ok(st
            .apps
            .iter()
            .filter(|(app, _)| &app.tenant == tenant)
            .filter_map(|(app, entry)| {
                let i = entry.current()?;
                Some(AppSummary::from(entry.status_of(app, i.run)))
            })
            .collect())
    }

    async fn events(&self) -> Result<EventStream> {
        let rx = self.inner.events.subscribe();
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })))
    }

    async fn reconcile(&self, desired: &[Desired]) -> Result<ReconcileReport> {
        let wanted: HashMap<DeploymentId, Intent> = desired
            .iter()
            .map(|d| (d.deployment.id, d.intent))
            .collect();
        let mut st = self.inner.lock();
        let mut report = ReconcileReport::default();
        for (app, entry) in &mut st.apps {
            let mut orphans = Vec::new();
            for inst in &mut entry.instances {
                match wanted.get(&inst.deployment) {
                    Some(Intent::Run) => {}
                    Some(Intent::KeepStopped) => inst.stop(StatusReason::StoppedOnRequest),
                    None => {
                        inst.stop(StatusReason::Gone);
                        let name = format!("fake/{app}/v{}", inst.version);
                        if !orphans.contains(&name) {
                            orphans.push(name);
                        }
                    }
                }
            }
            entry
                .instances
                .retain(|i| wanted.contains_key(&i.deployment));
            report.removed_orphans.extend(orphans);
        }
        // An app with nothing left is gone, logs and all.
        st.apps.retain(|_, entry| !entry.instances.is_empty());
        for d in desired.iter().filter(|d| d.intent == Intent::Run) {
            let d = &d.deployment;
            let inst = st
                .apps
                .get(&d.app)
                .and_then(|e| e.instances.iter().rev().find(|i| i.deployment == d.id));
            match inst {
                Some(i) if i.status == DeploymentStatus::Running => report.adopted.push(d.id),
                Some(i) => {
                    let entry = st.apps.get(&d.app).expect("found above");
                    report.missing.push((d.id, entry.status_of(&d.app, i.run)));
                }
                None => report.missing.push((
                    d.id,
                    AppStatus::new(
                        d.app.clone(),
                        DeploymentStatus::Stopped,
                        None,
                        None,
                        Some(StatusReason::Gone),
                    )
                    .with_instances(0, 0),
                )),
            }
        }
        Ok(report)
    }

    fn deploy_grace(&self) -> Duration {
        self.inner.deploy_grace
    }
}
