//! [`FakeOrchestrator`]: an in-memory backend with fault injection.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::sync::broadcast;

use super::program::{FAULT_DELAY, FakeProgram, run_program};
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
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<RuntimeEvent>,
    deploy_grace: Duration,
    log_capacity: usize,
}

#[derive(Default)]
struct State {
    apps: BTreeMap<AppRef, FakeApp>,
    pending: Faults,
    programs: HashMap<String, FakeProgram>,
    next_run: u64,
    deploys: u64,
}

#[derive(Default)]
struct Faults {
    crash: Option<i64>,
    oom: bool,
    slow: Option<Duration>,
    fail: Option<String>,
}

#[derive(Default)]
struct FakeApp {
    instances: Vec<Instance>,
    /// Every instance's lines, oldest first, with the deployment that
    /// wrote them.
    logs: VecDeque<(DeploymentId, LogLine)>,
}

struct Instance {
    run: u64,
    deployment: DeploymentId,
    version: u64,
    image: ImageRef,
    config: AppConfig,
    status: DeploymentStatus,
    reason: Option<StatusReason>,
    follow: Option<broadcast::Sender<LogLine>>,
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

    /// Brings instance `run` of `app` up (after injected delays and
    /// failures) and starts its program.
    async fn bring_up(
        &self,
        app: &AppRef,
        run: u64,
        faults: Faults,
        config: &AppConfig,
    ) -> Result<AppStatus> {
        // The image's own health delay, and an injected one.
        let image_delay = {
            let st = self.inner.lock();
            let image = st
                .apps
                .get(app)
                .and_then(|e| e.instances.iter().find(|i| i.run == run))
                .map(|i| i.image.to_string());
            match image.and_then(|i| st.programs.get(&i)) {
                Some(program) => program.health_delay(),
                None => Some(Duration::ZERO),
            }
        };
        let delay = match (image_delay, faults.slow) {
            (None, _) => None,
            (Some(a), b) => Some(a.max(b.unwrap_or_default())),
        };
        let limit = config.start_timeout();
        match delay {
            Some(delay) if delay <= limit => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
            _ => {
                tokio::time::sleep(limit).await;
                let reason = StatusReason::HealthTimeout {
                    after_secs: limit.as_secs(),
                    last_probe: None,
                };
                self.inner
                    .end(app, run, DeploymentStatus::Failed, reason.clone(), None);
                return Err(Error::start_failed(reason));
            }
        }
        if let Some(reason) = faults.fail {
            self.inner.end(
                app,
                run,
                DeploymentStatus::Failed,
                StatusReason::BackendUnavailable {
                    detail: reason.clone(),
                },
                None,
            );
            return Err(Error::Backend {
                message: reason,
                source: None,
            });
        }
        let (status, program) = {
            let mut st = self.inner.lock();
            let programs = st.programs.clone();
            let entry = st.apps.get_mut(app).ok_or_else(|| gone(app))?;
            let Some(inst) = entry.instances.iter_mut().find(|i| i.run == run) else {
                return Err(gone(app));
            };
            if inst.status != DeploymentStatus::Starting {
                // Stopped while starting.
                return Ok(inst.status_of(app));
            }
            inst.status = DeploymentStatus::Running;
            inst.reason = None;
            inst.follow = Some(broadcast::channel(256).0);
            let status = inst.status_of(app);
            let program = match (faults.crash, faults.oom) {
                (Some(exit_code), _) => FakeProgram::Crashing {
                    after: FAULT_DELAY,
                    exit_code,
                },
                (None, true) => FakeProgram::OomKilled { after: FAULT_DELAY },
                (None, false) => programs
                    .get(&inst.image.to_string())
                    .cloned()
                    .unwrap_or(FakeProgram::Idle),
            };
            let version = inst.version;
            for old in &mut entry.instances {
                if old.run != run && old.status == DeploymentStatus::Running {
                    old.stop(StatusReason::Superseded {
                        by_version: version,
                    });
                }
            }
            self.inner
                .push_log(entry, run, LogSource::Stdout, "[app] started".into());
            (status, program)
        };
        tokio::spawn(run_program(
            Arc::downgrade(&self.inner),
            app.clone(),
            run,
            program,
        ));
        Ok(status)
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

fn gone(app: &AppRef) -> Error {
    Error::not_found("app", app)
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push_log(&self, app: &mut FakeApp, run: u64, stream: LogSource, line: String) {
        let line = LogLine {
            ts: OffsetDateTime::now_utc(),
            stream,
            line,
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

    /// Writes a line for instance `run` if it is still up; false otherwise.
    pub(super) fn log_if_running(
        &self,
        app: &AppRef,
        run: u64,
        stream: LogSource,
        line: String,
    ) -> bool {
        let mut st = self.lock();
        let Some(entry) = st.apps.get_mut(app) else {
            return false;
        };
        let up = entry
            .instances
            .iter()
            .any(|i| i.run == run && i.status == DeploymentStatus::Running);
        if up {
            self.push_log(entry, run, stream, line);
        }
        up
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
            self.push_log(entry, run, LogSource::Stderr, format!("[app] {reason}"));
        }
        let inst = entry
            .instances
            .iter_mut()
            .find(|i| i.run == run)
            .expect("found above");
        inst.status = status;
        inst.reason = Some(reason);
        inst.follow = None;
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
    fn status_of(&self, app: &AppRef) -> AppStatus {
        AppStatus {
            app: app.clone(),
            status: self.status,
            deployment: Some(self.deployment),
            version: Some(self.version),
            reason: self.reason.clone(),
        }
    }

    fn stop(&mut self, reason: StatusReason) {
        if matches!(
            self.status,
            DeploymentStatus::Starting | DeploymentStatus::Running
        ) {
            self.status = DeploymentStatus::Stopped;
            self.reason = Some(reason);
            self.follow = None;
        }
    }
}

impl FakeApp {
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
                return Ok(up.status_of(&request.app));
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
                .push_log(entry, run, LogSource::Stdout, "[app] stopping".into());
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
        st.apps
            .get(app)
            .and_then(FakeApp::current)
            .map(|i| i.status_of(app))
            .ok_or_else(|| gone(app))
    }

    async fn list_apps(&self, tenant: &TenantId) -> Result<Vec<AppSummary>> {
        let st = self.inner.lock();
        Ok(st
            .apps
            .iter()
            .filter(|(app, _)| &app.tenant == tenant)
            .filter_map(|(app, entry)| {
                let i = entry.current()?;
                Some(AppSummary {
                    app: app.clone(),
                    status: i.status,
                    deployment: Some(i.deployment),
                    version: Some(i.version),
                })
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
                Some(i) => report.missing.push((d.id, i.status_of(&d.app))),
                None => report.missing.push((
                    d.id,
                    AppStatus {
                        app: d.app.clone(),
                        status: DeploymentStatus::Stopped,
                        deployment: None,
                        version: None,
                        reason: Some(StatusReason::Gone),
                    },
                )),
            }
        }
        Ok(report)
    }

    fn deploy_grace(&self) -> Duration {
        self.inner.deploy_grace
    }
}
