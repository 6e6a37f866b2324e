//! [`LocalProcessOrchestrator`]: the [`RuntimeOrchestrator`] of local
//! processes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use cameleer_runtime::{
    AppRef, AppStatus, AppSummary, DeployRequest, DeploymentStatus, Error, EventStream,
    HealthCheck, LogOptions, LogStream, Result, RuntimeEvent, RuntimeOrchestrator, StatusReason,
    TenantId,
};
use tokio::sync::broadcast;

use super::health::{self, NotUp};
use super::process::{self, Exit, Proc};
use super::state::{App, Run};
use super::{LocalProcessOptions, jar_path};

/// Runs apps as local `java` processes with the agent; see the
/// [module docs](super) for the command line and what it cannot isolate.
///
/// - One process per app and version; a redeploy keeps the old process until
///   the new one is up (health check passed, or alive through
///   [`grace`](LocalProcessOptions::grace)), then stops it; except when
///   both probe the same port (see the [module docs](super)).
/// - A process that ends on its own makes the app FAILED
///   ([`StatusReason::Exited`] with its code, or
///   [`StatusReason::JvmOutOfMemory`]) and, if it was RUNNING, is reported
///   by [`events`](RuntimeOrchestrator::events) as
///   [`RuntimeEventKind::Failed`](cameleer_runtime::RuntimeEventKind::Failed).
/// - [`stop_app`](RuntimeOrchestrator::stop_app) sends SIGTERM and kills
///   after [`stop_timeout`](LocalProcessOptions::stop_timeout).
/// - Logs: stdout and stderr line by line into a bounded per-app ring;
///   `since` and `follow` are honoured, a follower ends when the app's
///   processes have all ended.
///
/// Clones share one backend; dropping the last one kills every process it
/// started. Needs a tokio runtime.
#[derive(Debug, Clone)]
pub struct LocalProcessOrchestrator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: LocalProcessOptions,
    apps: Mutex<BTreeMap<AppRef, App>>,
    events: broadcast::Sender<RuntimeEvent>,
    next_run: AtomicU64,
}

fn not_found(app: &AppRef) -> Error {
    Error::not_found("app", app)
}

fn backend(message: String) -> Error {
    Error::Backend {
        message,
        source: None,
    }
}

impl LocalProcessOrchestrator {
    /// A backend running apps with `options`. Nothing is started until the
    /// first deploy.
    pub fn new(options: LocalProcessOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                options,
                apps: Mutex::default(),
                events: broadcast::channel(1024).0,
                next_run: AtomicU64::new(1),
            }),
        }
    }

    /// The options it runs with.
    pub fn options(&self) -> &LocalProcessOptions {
        &self.inner.options
    }

    /// The ids of `app`'s processes that have not ended (for diagnostics:
    /// `ps`, `jcmd`, `kill -3`).
    pub fn pids(&self, app: &AppRef) -> Vec<u32> {
        let apps = self.inner.lock();
        let procs = apps.get(app).into_iter().flat_map(App::procs);
        procs.map(|p| p.pid()).collect()
    }

    /// The JAR that `request.image` names; `not_found` when it is not stored.
    fn jar_of(&self, request: &DeployRequest) -> Result<PathBuf> {
        let digest = request.image.digest().ok_or_else(|| {
            backend(format!(
                "image {} is not pinned to a digest (the local backend runs JARs \
                 stored by LocalJarBuilder)",
                request.image
            ))
        })?;
        let jar = jar_path(&self.inner.options.root, digest);
        if !jar.is_file() {
            return Err(Error::not_found("image", &request.image));
        }
        Ok(jar)
    }

    /// The app's turn lock, creating its entry on first use.
    fn turn(&self, app: &AppRef) -> Arc<tokio::sync::Mutex<()>> {
        let options = &self.inner.options;
        let mut apps = self.inner.lock();
        let entry = apps.entry(app.clone()).or_insert_with(|| App::new(options));
        entry.turn.clone()
    }

    /// Marks every live run of `app` STOPPED with `reason` and ends their
    /// processes; `false` when the app is unknown.
    async fn stop_runs(&self, app: &AppRef, reason: &StatusReason) -> bool {
        let procs: Vec<Arc<Proc>> = {
            let mut apps = self.inner.lock();
            let Some(entry) = apps.get_mut(app) else {
                return false;
            };
            entry.stop_all(reason, None)
        };
        self.end(procs).await;
        true
    }

    /// Stops `procs`, in a task of its own so that a caller that gives up
    /// waiting does not leave them half-stopped.
    async fn end(&self, procs: Vec<Arc<Proc>>) {
        if procs.is_empty() {
            return;
        }
        let timeout = self.inner.options.stop_timeout;
        let stopping = tokio::spawn(async move {
            futures::future::join_all(procs.iter().map(|p| p.stop(timeout))).await
        });
        let _ = stopping.await;
    }

    /// Starts `request` from `jar` and waits until it is up or has failed.
    async fn start(&self, request: &DeployRequest, jar: PathBuf) -> Result<AppStatus> {
        let app = &request.app;
        let options = &self.inner.options;
        let port = health_port(&request.config.health);
        if let Some(port) = port {
            // Two versions cannot listen on one port: an old one that
            // listens where the new one will goes first. One that does not
            // keeps serving until the new one is up, as with no port.
            let collides = self.inner.lock().get(app).is_some_and(|e| {
                e.runs
                    .iter()
                    .any(|r| r.is_live() && health_port(&r.request.config.health) == Some(port))
            });
            if collides {
                let reason = StatusReason::Superseded {
                    by_version: request.version,
                };
                self.stop_runs(app, &reason).await;
            }
            if health::port_in_use(port).await {
                return Err(Error::Conflict(format!(
                    "port {port} of 127.0.0.1 is in use by another process: local \
                     processes share the host's network"
                )));
            }
        }
        let workdir = options
            .root
            .join("work")
            .join(app.tenant.as_str())
            .join(app.env.as_str())
            .join(app.app.as_str());
        tokio::fs::create_dir_all(&workdir)
            .await
            .map_err(|e| Error::backend(format!("creating {}", workdir.display()), e))?;

        let id = self.inner.next_run.fetch_add(1, Ordering::Relaxed);
        let command = process::command(options, &jar, &request.config, &workdir)
            .map_err(|e| Error::invalid_config(e.field, e.reason))?;
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let owner = app.clone();
        let on_exit = move |exit: &Exit| {
            if let Some(inner) = weak.upgrade() {
                inner.exited(&owner, id, exit);
            }
        };
        let proc = {
            // Spawned under the lock, so the run is recorded before the
            // process can end and look for it.
            let mut apps = self.inner.lock();
            let entry = apps.get_mut(app).ok_or_else(|| not_found(app))?;
            let spawned = Proc::spawn(command, &entry.logs, on_exit);
            let mut run = Run {
                id,
                request: request.clone(),
                status: DeploymentStatus::Starting,
                reason: None,
                proc: None,
            };
            let proc = match spawned {
                Ok(proc) => proc,
                Err(e) => {
                    let reason = format!("could not start {}: {e}", options.java.display());
                    run.status = DeploymentStatus::Failed;
                    run.reason = Some(StatusReason::StartRefused {
                        detail: reason.clone(),
                    });
                    entry.record(run);
                    return Err(Error::backend(reason, e));
                }
            };
            run.proc = Some(proc.clone());
            entry.record(run);
            proc
        };
        let config = &request.config;
        let up = health::wait_up(&proc, &config.health, config.start_timeout(), options.grace);
        match up.await {
            Ok(()) => self.came_up(request, id).await,
            Err(NotUp::Exited(exit)) => {
                // The supervisor recorded the exit before reporting it.
                match self.inner.status_of_run(app, id) {
                    Some(s) if s.status == DeploymentStatus::Stopped => Ok(s),
                    // The app's own failure.
                    _ => Err(Error::start_failed(exit.reason())),
                }
            }
            Err(NotUp::TimedOut(probe)) => {
                let reason = StatusReason::HealthTimeout {
                    after_secs: config.start_timeout().as_secs(),
                    last_probe: Some(probe),
                };
                let stopped = {
                    let mut apps = self.inner.lock();
                    let run = apps.get_mut(app).and_then(|e| e.run_mut(id));
                    run.and_then(|r| {
                        if r.is_live() {
                            r.status = DeploymentStatus::Failed;
                            r.reason = Some(reason.clone());
                        }
                        r.proc.clone()
                    })
                };
                self.end(stopped.into_iter().collect()).await;
                Err(Error::start_failed(reason))
            }
        }
    }

    /// Run `id` is up: RUNNING, and every other live run of the app stops.
    async fn came_up(&self, request: &DeployRequest, id: u64) -> Result<AppStatus> {
        let (status, replaced) = {
            let mut apps = self.inner.lock();
            let entry = apps
                .get_mut(&request.app)
                .ok_or_else(|| not_found(&request.app))?;
            let Some(run) = entry.run_mut(id) else {
                return Err(not_found(&request.app));
            };
            if run.status == DeploymentStatus::Starting {
                run.status = DeploymentStatus::Running;
            }
            let status = run.status();
            let mut replaced = Vec::new();
            if status.status == DeploymentStatus::Running {
                let reason = StatusReason::Superseded {
                    by_version: request.version,
                };
                replaced = entry.stop_all(&reason, Some(id));
            }
            (status, replaced)
        };
        self.end(replaced).await;
        match status.status {
            // The app's own failure, not the backend's.
            DeploymentStatus::Failed => Err(Error::StartFailed {
                reason: status
                    .reason
                    .unwrap_or_else(|| StatusReason::other("failed")),
                output: None,
            }),
            _ => Ok(status),
        }
    }
}

/// The port `check` probes, if any: the one the app listens on.
fn health_port(check: &HealthCheck) -> Option<u16> {
    match check {
        HealthCheck::TcpPort(port) | HealthCheck::Http { port, .. } => Some(*port),
        HealthCheck::None => None,
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<AppRef, App>> {
        // No critical section can panic half-way through a change.
        self.apps.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn status_of_run(&self, app: &AppRef, id: u64) -> Option<AppStatus> {
        let mut apps = self.lock();
        apps.get_mut(app)?.run_mut(id).map(|r| r.status())
    }

    /// A process ended; a crash goes to the event subscribers.
    fn exited(&self, app: &AppRef, id: u64, exit: &Exit) {
        let event = self.lock().get_mut(app).and_then(|e| e.exited(id, exit));
        if let Some(event) = event {
            let _ = self.events.send(event);
        }
    }
}

#[async_trait]
impl RuntimeOrchestrator for LocalProcessOrchestrator {
    async fn deploy_app(&self, request: &DeployRequest) -> Result<AppStatus> {
        request.config.validate()?;
        if request.config.instances() > 1 {
            // One process per app on one machine: there is no address to
            // put several behind.
            return Err(Error::invalid_config(
                "replicas",
                format!(
                    "the local-process backend runs one instance per app, not {}",
                    request.config.instances()
                ),
            ));
        }
        let jar = self.jar_of(request)?;
        let turn = self.turn(&request.app);
        let _turn = turn.lock().await;
        {
            let apps = self.inner.lock();
            let running = apps.get(&request.app);
            if let Some(run) = running.and_then(|e| e.running(request.deployment)) {
                return Ok(run.status());
            }
        }
        self.start(request, jar).await
    }

    async fn stop_app(&self, app: &AppRef) -> Result<()> {
        let known = self
            .inner
            .lock()
            .get(app)
            .is_some_and(|e| !e.runs.is_empty());
        if !known || !self.stop_runs(app, &StatusReason::StoppedOnRequest).await {
            return Err(not_found(app));
        }
        Ok(())
    }

    async fn restart_app(&self, app: &AppRef) -> Result<AppStatus> {
        let turn = {
            let apps = self.inner.lock();
            let entry = apps.get(app).ok_or_else(|| not_found(app))?;
            entry.turn.clone()
        };
        let _turn = turn.lock().await;
        let request = {
            let apps = self.inner.lock();
            let current = apps.get(app).and_then(App::current);
            current.ok_or_else(|| not_found(app))?.request.clone()
        };
        let jar = self.jar_of(&request)?;
        self.stop_runs(app, &StatusReason::StoppedOnRequest).await;
        self.start(&request, jar).await
    }

    async fn app_logs(&self, app: &AppRef, options: &LogOptions) -> Result<LogStream> {
        let apps = self.inner.lock();
        let entry = apps
            .get(app)
            .filter(|e| !e.runs.is_empty())
            .ok_or_else(|| not_found(app))?;
        Ok(entry.logs.read(options.since, options.follow))
    }

    async fn app_status(&self, app: &AppRef) -> Result<AppStatus> {
        let apps = self.inner.lock();
        apps.get(app)
            .and_then(App::current)
            .map(Run::status)
            .ok_or_else(|| not_found(app))
    }

    async fn list_apps(&self, tenant: &TenantId) -> Result<Vec<AppSummary>> {
        let apps = self.inner.lock();
        Ok(apps
            .iter()
            .filter(|(app, _)| &app.tenant == tenant)
            .filter_map(|(_, entry)| {
                let run = entry.current()?;
                Some(AppSummary::from(run.status()))
            })
            .collect())
    }

    async fn events(&self) -> Result<EventStream> {
        let events = self.inner.events.subscribe();
        Ok(Box::pin(futures::stream::unfold(
            events,
            |mut events| async move {
                loop {
                    match events.recv().await {
                        Ok(event) => return Some((event, events)),
                        // The platform re-reads status; a missed crash is
                        // found by `app_status`.
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        )))
    }

    fn deploy_grace(&self) -> Duration {
        self.inner.options.deploy_grace
    }
}
