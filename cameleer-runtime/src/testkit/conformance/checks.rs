//! The checks themselves, each against fresh tenants.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;

use super::{Check, ConformanceFixture, FixtureApp};
use crate::{
    AppId, AppRef, AppStatus, AppSummary, DeployRequest, Deployment, DeploymentEvent, DeploymentId,
    DeploymentSource, DeploymentStatus, Desired, EnvId, Error, Intent, LogLine, LogOptions,
    RuntimeEventKind, RuntimeOrchestrator, Sha256Digest, StatusReason, TenantId,
};

/// Runs `check`, then cleans up every tenant it used.
pub(super) async fn run(fixture: &dyn ConformanceFixture, check: Check) -> Outcome {
    let mut ctx = Ctx {
        fixture,
        orchestrator: fixture.orchestrator(),
        tenants: Mutex::new(Vec::new()),
    };
    let outcome = match check {
        Check::DeployReachesRunning => deploy_reaches_running(&mut ctx).await,
        Check::DeployIsIdempotent => deploy_is_idempotent(&mut ctx).await,
        Check::LogsSince => logs_since(&mut ctx).await,
        Check::StopThenStopped => stop_then_stopped(&mut ctx).await,
        Check::RestartRunsAgain => restart_runs_again(&mut ctx).await,
        Check::ListIsPerTenant => list_is_per_tenant(&mut ctx).await,
        Check::UnknownAppIsNotFound => unknown_app_is_not_found(&mut ctx).await,
        Check::CrashBecomesFailed => crash_becomes_failed(&mut ctx).await,
        Check::OomBecomesFailed => oom_becomes_failed(&mut ctx).await,
        Check::RedeployKeepsOldServing => redeploy_keeps_old_serving(&mut ctx).await,
        Check::FailedRedeployKeepsOld => failed_redeploy_keeps_old(&mut ctx).await,
        Check::CrashIsAnEvent => crash_is_an_event(&mut ctx).await,
        Check::RestartReconciles => restart_reconciles(&mut ctx).await,
        Check::LogsSinceOnlyLater => logs_since_only_later(&mut ctx).await,
        Check::ListCoversEveryEnv => list_covers_every_env(&mut ctx).await,
        Check::AppFailureIsStartFailed => app_failure_is_start_failed(&mut ctx).await,
        Check::ReplicasReachRunning => replicas::replicas_reach_running(&mut ctx).await,
        Check::RollingRedeployKeepsReady => replicas::rolling_redeploy_keeps_ready(&mut ctx).await,
        Check::FailedRollingRedeployKeepsOld => {
            replicas::failed_rolling_redeploy_keeps_old(&mut ctx).await
        }
        Check::KilledInstanceIsReplaced => replicas::killed_instance_is_replaced(&mut ctx).await,
        // `Check` is non_exhaustive only for other crates.
    };
    let tenants = std::mem::take(&mut *ctx.tenants.lock().unwrap_or_else(|p| p.into_inner()));
    for tenant in tenants {
        fixture.cleanup(&tenant).await;
    }
    outcome
}

type Outcome = Result<(), String>;

struct Ctx<'a> {
    fixture: &'a dyn ConformanceFixture,
    orchestrator: Arc<dyn RuntimeOrchestrator>,
    tenants: Mutex<Vec<TenantId>>,
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

// After `ensure!`, which it uses.
mod replicas;

fn err(step: &str) -> impl FnOnce(Error) -> String + '_ {
    move |e| format!("{step}: {} ({e})", e.code())
}

impl Ctx<'_> {
    /// A fresh tenant, cleaned up after the check.
    fn tenant(&self) -> TenantId {
        let t = self.fixture.unique_tenant();
        self.tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(t.clone());
        t
    }

    fn app_in(&self, tenant: &TenantId, name: &str) -> AppRef {
        self.app_in_env(tenant, name, self.fixture.env())
    }

    fn app_in_env(&self, tenant: &TenantId, name: &str, env: EnvId) -> AppRef {
        AppRef::new(
            tenant.clone(),
            AppId::new(name).expect("a valid app id"),
            env,
        )
    }

    async fn request(
        &self,
        app: &AppRef,
        kind: FixtureApp,
        version: u64,
    ) -> Result<DeployRequest, String> {
        Ok(DeployRequest {
            app: app.clone(),
            deployment: DeploymentId::new_random(),
            version,
            image: self
                .fixture
                .image(kind)
                .await
                .map_err(err("getting the fixture image"))?,
            config: self.fixture.config_of_version(kind, version),
        })
    }

    async fn within<T>(&self, what: &str, fut: impl Future<Output = T>) -> Result<T, String> {
        let patience = self.fixture.patience();
        tokio::time::timeout(patience, fut)
            .await
            .map_err(|_| format!("{what} took longer than {patience:?}"))
    }

    /// Deploys `version` of the `kind` app as `app` and checks that
    /// `deploy_app` returns it RUNNING.
    async fn deploy_running(
        &self,
        app: &AppRef,
        kind: FixtureApp,
        version: u64,
    ) -> Result<DeployRequest, String> {
        let req = self.request(app, kind, version).await?;
        let status = self
            .within("deploy_app", self.orchestrator.deploy_app(&req))
            .await?
            .map_err(err(&format!("deploy_app of {app} version {version}")))?;
        running_as(&status, &req, "deploy_app")?;
        Ok(req)
    }

    /// Deploys the logging app into a fresh tenant and checks it RUNNING.
    async fn running_logging_app(&self, name: &str) -> Result<(AppRef, DeployRequest), String> {
        let app = self.app_in(&self.tenant(), name);
        let req = self.deploy_running(&app, FixtureApp::Logging, 1).await?;
        Ok((app, req))
    }

    async fn status(&self, app: &AppRef) -> Result<AppStatus, String> {
        self.status_in(self.orchestrator.as_ref(), app).await
    }

    async fn status_in(
        &self,
        orchestrator: &dyn RuntimeOrchestrator,
        app: &AppRef,
    ) -> Result<AppStatus, String> {
        let status = self
            .within("app_status", orchestrator.app_status(app))
            .await?
            .map_err(err("app_status"))?;
        ensure!(
            status.app == *app,
            "app_status({app}) is about {}",
            status.app
        );
        Ok(status)
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<AppSummary>, String> {
        self.list_in(self.orchestrator.as_ref(), tenant).await
    }

    async fn list_in(
        &self,
        orchestrator: &dyn RuntimeOrchestrator,
        tenant: &TenantId,
    ) -> Result<Vec<AppSummary>, String> {
        let mut listed = self
            .within("list_apps", orchestrator.list_apps(tenant))
            .await?
            .map_err(err("list_apps"))?;
        listed.sort_by(|a, b| a.app.cmp(&b.app));
        Ok(listed)
    }

    /// Polls `app_status` until `done` holds, within the patience.
    async fn eventually(
        &self,
        app: &AppRef,
        what: &str,
        done: impl Fn(&AppStatus) -> bool,
    ) -> Result<AppStatus, String> {
        self.eventually_in(self.orchestrator.as_ref(), app, what, done)
            .await
    }

    /// [`eventually`](Self::eventually) through `orchestrator`.
    async fn eventually_in(
        &self,
        orchestrator: &dyn RuntimeOrchestrator,
        app: &AppRef,
        what: &str,
        done: impl Fn(&AppStatus) -> bool,
    ) -> Result<AppStatus, String> {
        let deadline = tokio::time::Instant::now() + self.fixture.patience();
        loop {
            let status = self.status_in(orchestrator, app).await?;
            if done(&status) {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{what}: still {status:?} after {:?}",
                    self.fixture.patience()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn logs(&self, app: &AppRef, since: Option<SystemTime>) -> Result<Vec<LogLine>, String> {
        let options = LogOptions {
            since,
            follow: false,
        };
        let stream = self
            .within("app_logs", self.orchestrator.app_logs(app, &options))
            .await?
            .map_err(err("app_logs"))?;
        let lines: Vec<_> = self
            .within("reading logs", stream.collect::<Vec<_>>())
            .await?;
        lines
            .into_iter()
            .map(|l| l.map_err(err("reading logs")))
            .collect()
    }

    /// Stops `app` and waits until `app_status` says STOPPED.
    async fn stop(&self, app: &AppRef) -> Result<(), String> {
        self.within("stop_app", self.orchestrator.stop_app(app))
            .await?
            .map_err(err("stop_app"))?;
        self.eventually(app, "after stop_app", |s| {
            s.status == DeploymentStatus::Stopped
        })
        .await?;
        Ok(())
    }

    /// Waits for a failure of `app` and returns its reason.
    async fn failure_reason(&self, req: &DeployRequest) -> Result<StatusReason, String> {
        // A backend may notice the failure inside deploy_app or only later.
        let deployed = self
            .within("deploy_app", self.orchestrator.deploy_app(req))
            .await?;
        let early = match deployed {
            Ok(status) => {
                started_as(&status, req, "deploy_app")?;
                None
            }
            Err(Error::StartFailed { reason, .. }) => Some(reason),
            Err(e) => {
                return Err(format!(
                    "deploy_app of an app that fails on its own: {} ({e}), expected \
                     RUNNING, or start_failed with the reason",
                    e.code()
                ));
            }
        };
        let status = self
            .eventually(&req.app, "waiting for FAILED", |s| {
                s.status == DeploymentStatus::Failed
            })
            .await?;
        ensure!(
            status.deployment.is_none_or(|d| d == req.deployment),
            "app_status names deployment {:?}, expected {}",
            status.deployment,
            req.deployment
        );
        let reason = status
            .reason
            .ok_or_else(|| "FAILED without a reason".to_string())?;
        if let Some(early) = early {
            ensure!(
                early == reason,
                "deploy_app failed with {early:?} but app_status says {reason:?}"
            );
        }
        Ok(reason)
    }

    /// Asks the fixture which version of `app` answers.
    async fn reachable(&self, app: &AppRef) -> Result<Option<u64>, String> {
        self.within("reachable", self.fixture.reachable(app))
            .await?
            .map_err(err("asking the app which version answers"))
    }
}

/// `status` (returned by `call` for `req`) is `req`'s deployment, RUNNING.
fn running_as(status: &AppStatus, req: &DeployRequest, call: &str) -> Outcome {
    ensure!(
        status.app == req.app
            && status.status == DeploymentStatus::Running
            && status.deployment == Some(req.deployment)
            && status.version == Some(req.version),
        "{call} returned {status:?}, expected {} RUNNING as deployment {} version {}",
        req.app,
        req.deployment,
        req.version
    );
    Ok(())
}

/// `status` (returned by `call` for `req`) is `req`'s deployment, STARTING
/// or RUNNING (an app that fails later may already have passed its check).
fn started_as(status: &AppStatus, req: &DeployRequest, call: &str) -> Outcome {
    ensure!(
        status.app == req.app
            && matches!(
                status.status,
                DeploymentStatus::Starting | DeploymentStatus::Running
            )
            && status.deployment == Some(req.deployment)
            && status.version == Some(req.version),
        "{call} returned {status:?}, expected {} STARTING or RUNNING as deployment {} \
         version {}",
        req.app,
        req.deployment,
        req.version
    );
    Ok(())
}

/// `summary` is `req`'s deployment in `status`.
fn listed_as(summary: &AppSummary, req: &DeployRequest, status: DeploymentStatus) -> Outcome {
    ensure!(
        summary.app == req.app
            && summary.status == status
            && summary.deployment == Some(req.deployment)
            && summary.version == Some(req.version),
        "list_apps shows {summary:?}, expected {} {status} as deployment {} version {}",
        req.app,
        req.deployment,
        req.version
    );
    Ok(())
}

/// `result` (of `call`) is `start_failed` with a reason `want` accepts.
fn expect_start_failed(
    call: &str,
    result: crate::Result<AppStatus>,
    expected: &str,
    want: impl Fn(&StatusReason) -> bool,
) -> Outcome {
    match result {
        Ok(status) => Err(format!(
            "{call} returned {status:?}, expected start_failed with {expected}"
        )),
        Err(Error::StartFailed { reason, .. }) if want(&reason) => Ok(()),
        Err(Error::StartFailed { reason, .. }) => Err(format!(
            "{call} failed with start_failed but the reason is {reason:?}, expected {expected}"
        )),
        Err(e) => Err(format!(
            "{call} failed with {} ({e}), expected start_failed with {expected}: the app's \
             own failure is not the backend's",
            e.code()
        )),
    }
}

/// The store's record of the deployment `req` started, in `status`
/// (RUNNING or STOPPED), with a history that got it there.
fn record(req: &DeployRequest, status: DeploymentStatus) -> Deployment {
    let now = time::OffsetDateTime::now_utc();
    let mut d = Deployment::new(
        req.app.clone(),
        req.version,
        Sha256Digest::of(b"conformance"),
        Some(req.image.clone()),
        DeploymentSource::Build,
        req.config.clone(),
        now,
    );
    d.id = req.deployment;
    d.apply(&DeploymentEvent::Healthy, now)
        .expect("STARTING -> RUNNING");
    if status == DeploymentStatus::Stopped {
        let stopped = DeploymentEvent::Stopped {
            reason: StatusReason::StoppedOnRequest,
        };
        d.apply(&stopped, now).expect("RUNNING -> STOPPED");
    }
    d
}

async fn deploy_reaches_running(ctx: &mut Ctx<'_>) -> Outcome {
    let (app, req) = ctx.running_logging_app("logging").await?;
    let status = ctx.status(&app).await?;
    ensure!(
        status.app == app,
        "app_status is about {}, expected {app}",
        status.app
    );
    ensure!(
        status.status == DeploymentStatus::Running,
        "app_status: {status:?}, expected RUNNING"
    );
    ensure!(
        status.deployment == Some(req.deployment) && status.version == Some(req.version),
        "app_status names {:?} v{:?}, expected {} v{}",
        status.deployment,
        status.version,
        req.deployment,
        req.version
    );
    Ok(())
}

async fn deploy_is_idempotent(ctx: &mut Ctx<'_>) -> Outcome {
    let (app, req) = ctx.running_logging_app("twice").await?;
    let again = ctx
        .within("deploy_app", ctx.orchestrator.deploy_app(&req))
        .await?
        .map_err(err("deploy_app of the same request again"))?;
    running_as(&again, &req, "the second deploy_app")?;
    let listed = ctx.list(&app.tenant).await?;
    ensure!(
        listed.len() == 1,
        "list_apps after deploying twice: {listed:?}"
    );
    listed_as(&listed[0], &req, DeploymentStatus::Running)?;
    let status = ctx.status(&app).await?;
    ensure!(
        status.deployment == Some(req.deployment),
        "app_status names another deployment: {status:?}"
    );
    Ok(())
}

async fn logs_since(ctx: &mut Ctx<'_>) -> Outcome {
    let (app, _) = ctx.running_logging_app("logs").await?;
    let marker = ctx.fixture.log_marker().to_string();
    // Two consecutive app lines with a gap, to put `since` in between.
    let deadline = tokio::time::Instant::now() + ctx.fixture.patience();
    let (before, after) = loop {
        let lines: Vec<LogLine> = ctx
            .logs(&app, None)
            .await?
            .into_iter()
            .filter(|l| l.line.contains(&marker))
            .collect();
        let gap = lines
            .windows(2)
            .find(|w| w[1].ts - w[0].ts >= time::Duration::milliseconds(50));
        if let Some(w) = gap {
            break (w[0].clone(), w[1].clone());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no two log lines containing {marker:?} 50 ms apart; got {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let since: time::OffsetDateTime = before.ts + (after.ts - before.ts) / 2;
    let lines = ctx.logs(&app, Some(since.into())).await?;
    ensure!(
        lines.iter().all(|l| l.ts >= since),
        "lines before `since` ({since}) returned: {:?}",
        lines.iter().filter(|l| l.ts < since).collect::<Vec<_>>()
    );
    ensure!(
        !lines.contains(&before),
        "{before:?} is before `since` ({since}) but was returned"
    );
    ensure!(
        lines.contains(&after),
        "{after:?} is after `since` ({since}) but was not returned: {lines:?}"
    );
    Ok(())
}

async fn stop_then_stopped(ctx: &mut Ctx<'_>) -> Outcome {
    let (app, req) = ctx.running_logging_app("stopping").await?;
    ctx.stop(&app).await?;
    ctx.within("stop_app", ctx.orchestrator.stop_app(&app))
        .await?
        .map_err(err("stop_app of a stopped app"))?;
    let status = ctx.status(&app).await?;
    ensure!(
        status.status == DeploymentStatus::Stopped && status.deployment == Some(req.deployment),
        "app_status after stopping twice: {status:?}, expected STOPPED as deployment {}",
        req.deployment
    );
    Ok(())
}

async fn restart_runs_again(ctx: &mut Ctx<'_>) -> Outcome {
    let (app, req) = ctx.running_logging_app("restarting").await?;
    ctx.stop(&app).await?;
    let status = ctx
        .within("restart_app", ctx.orchestrator.restart_app(&app))
        .await?
        .map_err(err("restart_app"))?;
    running_as(&status, &req, "restart_app")?;
    let status = ctx.status(&app).await?;
    ensure!(
        status.status == DeploymentStatus::Running && status.deployment == Some(req.deployment),
        "app_status after restart_app: {status:?}"
    );
    Ok(())
}

async fn list_is_per_tenant(ctx: &mut Ctx<'_>) -> Outcome {
    let (a, a_req) = ctx.running_logging_app("alpha").await?;
    let (b, b_req) = ctx.running_logging_app("beta").await?;
    for ((mine, req), theirs) in [((&a, &a_req), &b), ((&b, &b_req), &a)] {
        let listed = ctx.list(&mine.tenant).await?;
        if let [only] = listed.as_slice() {
            listed_as(only, req, DeploymentStatus::Running)?;
        }
        let apps: Vec<&AppRef> = listed.iter().map(|s| &s.app).collect();
        ensure!(
            apps == [mine],
            "list_apps({}) returned {apps:?}, expected only {mine}",
            mine.tenant
        );
        ensure!(
            !apps.contains(&theirs),
            "list_apps({}) shows {theirs}",
            mine.tenant
        );
    }
    Ok(())
}

async fn unknown_app_is_not_found(ctx: &mut Ctx<'_>) -> Outcome {
    let app = ctx.app_in(&ctx.tenant(), "ghost");
    let o = &ctx.orchestrator;
    fn not_found<T: std::fmt::Debug>(what: &str, r: Result<T, Error>) -> Outcome {
        match r {
            Err(e) if e.code() == "not_found" => Ok(()),
            Err(e) => Err(format!(
                "{what} of an unknown app: {} ({e}), expected not_found",
                e.code()
            )),
            Ok(value) => Err(format!(
                "{what} of an unknown app returned {value:?}, expected not_found"
            )),
        }
    }
    not_found(
        "app_status",
        ctx.within("app_status", o.app_status(&app)).await?,
    )?;
    not_found("stop_app", ctx.within("stop_app", o.stop_app(&app)).await?)?;
    not_found(
        "restart_app",
        ctx.within("restart_app", o.restart_app(&app)).await?,
    )?;
    // The error may come from the call or as the stream's first item.
    let logs = ctx
        .within("app_logs", o.app_logs(&app, &LogOptions::default()))
        .await?;
    let first = match logs {
        Err(e) => Err(e),
        Ok(mut stream) => match ctx.within("reading logs", stream.next()).await? {
            Some(Err(e)) => Err(e),
            Some(Ok(line)) => Ok(Some(line)),
            None => Ok(None),
        },
    };
    not_found("app_logs", first)
}

async fn crash_becomes_failed(ctx: &mut Ctx<'_>) -> Outcome {
    let app = ctx.app_in(&ctx.tenant(), "crashing");
    let req = ctx.request(&app, FixtureApp::Crashing, 1).await?;
    let reason = ctx.failure_reason(&req).await?;
    let code = ctx.fixture.crash_exit_code();
    ensure!(
        reason
            == StatusReason::Exited {
                exit_code: Some(code)
            },
        "FAILED reason {reason:?} is not an exit with code {code}"
    );
    Ok(())
}

async fn oom_becomes_failed(ctx: &mut Ctx<'_>) -> Outcome {
    let app = ctx.app_in(&ctx.tenant(), "oom");
    let req = ctx.request(&app, FixtureApp::Oom, 1).await?;
    let reason = ctx.failure_reason(&req).await?;
    ensure!(
        reason == StatusReason::OomKilled,
        "FAILED reason {reason:?} is not the kernel's OOM kill"
    );
    Ok(())
}

async fn redeploy_keeps_old_serving(ctx: &mut Ctx<'_>) -> Outcome {
    let app = ctx.app_in(&ctx.tenant(), "serving");
    ctx.deploy_running(&app, FixtureApp::Serving, 1).await?;
    let before = ctx.reachable(&app).await?;
    ensure!(
        before == Some(1),
        "before the redeploy, {before:?} answers at {app}'s address, expected version 1"
    );

    // Ask the app, again and again, while version 2 starts. Each question
    // runs to its end (the fixture may have started a client to ask).
    let v2 = ctx.request(&app, FixtureApp::Serving, 2).await?;
    let deploying = std::sync::atomic::AtomicBool::new(true);
    let deploy = async {
        let result = ctx
            .within("deploy_app", ctx.orchestrator.deploy_app(&v2))
            .await;
        deploying.store(false, std::sync::atomic::Ordering::SeqCst);
        result
    };
    let ask = async {
        let mut answers = Vec::new();
        while deploying.load(std::sync::atomic::Ordering::SeqCst) {
            answers.push(ctx.reachable(&app).await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        answers
    };
    let (deployed, answers) = futures::join!(deploy, ask);
    let status = deployed?.map_err(err("deploy_app of version 2"))?;
    running_as(&status, &v2, "deploy_app of version 2")?;
    let answers: Vec<Option<u64>> = answers.into_iter().collect::<Result<_, _>>()?;
    ensure!(
        !answers.is_empty(),
        "no question about {app} was answered while version 2 started"
    );
    ensure!(
        answers.iter().all(|a| matches!(a, Some(1 | 2))),
        "while version 2 started, {app} did not always answer with version 1 or 2 (None: \
         nothing answered): {answers:?}"
    );
    ensure!(
        answers.first() == Some(&Some(1)),
        "version 1 did not keep serving while version 2 started; the answers: {answers:?}"
    );

    // Once deploy_app has returned, the new version serves.
    let deadline = tokio::time::Instant::now() + ctx.fixture.patience();
    loop {
        let after = ctx.reachable(&app).await?;
        if after == Some(2) {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "after the redeploy, {after:?} answers at {app}'s address, expected version 2"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = ctx.status(&app).await?;
    running_as(&status, &v2, "app_status after the redeploy")
}

async fn failed_redeploy_keeps_old(ctx: &mut Ctx<'_>) -> Outcome {
    let (app, v1) = ctx.running_logging_app("redeploy").await?;
    let v2 = ctx.request(&app, FixtureApp::Unhealthy, 2).await?;
    let timeout = u64::from(v2.config.start_timeout_secs);
    let deployed = ctx
        .within("deploy_app", ctx.orchestrator.deploy_app(&v2))
        .await?;
    expect_start_failed(
        "deploy_app of a version that never becomes healthy",
        deployed,
        &format!("a health_timeout after {timeout} s"),
        |r| matches!(r, StatusReason::HealthTimeout { after_secs, .. } if *after_secs == timeout),
    )?;
    let status = ctx.status(&app).await?;
    running_as(&status, &v1, "app_status after the failed redeploy")?;
    let listed = ctx.list(&app.tenant).await?;
    ensure!(
        listed.len() == 1,
        "list_apps after the failed redeploy: {listed:?}, expected {app} only"
    );
    listed_as(&listed[0], &v1, DeploymentStatus::Running)
}

async fn crash_is_an_event(ctx: &mut Ctx<'_>) -> Outcome {
    // Subscribed before the deploy; afterwards nobody asks for a status.
    let mut events = ctx
        .within("events", ctx.orchestrator.events())
        .await?
        .map_err(err("events"))?;
    let app = ctx.app_in(&ctx.tenant(), "crash-event");
    let req = ctx
        .deploy_running(&app, FixtureApp::CrashingAfterStart, 1)
        .await?;
    let code = ctx.fixture.crash_exit_code();
    let event = ctx
        .within("waiting for the crash's event", async {
            loop {
                let Some(event) = events.next().await else {
                    return Err("the event stream ended".to_string());
                };
                // The stream carries every app of the runtime.
                if event.app != app || event.deployment != req.deployment {
                    continue;
                }
                match event.kind {
                    RuntimeEventKind::Failed { .. } => return Ok(event),
                    RuntimeEventKind::Healthy | RuntimeEventKind::Unhealthy { .. } => {}
                    RuntimeEventKind::Removed => {
                        return Err(format!("{app} was reported removed, not FAILED"));
                    }
                    RuntimeEventKind::Stopped { reason } => {
                        return Err(format!("{app} was reported stopped ({reason}), not FAILED"));
                    }
                }
            }
        })
        .await??;
    let want = StatusReason::Exited {
        exit_code: Some(code),
    };
    ensure!(
        event.kind
            == RuntimeEventKind::Failed {
                reason: want.clone()
            },
        "the crash of {app} arrived as {:?}, expected FAILED: {want}",
        event.kind
    );
    let status = ctx.status(&app).await?;
    ensure!(
        status.status == DeploymentStatus::Failed
            && status.deployment == Some(req.deployment)
            && status.reason.as_ref() == Some(&want),
        "app_status after the crash's event: {status:?}, expected FAILED: {want}"
    );
    Ok(())
}

async fn restart_reconciles(ctx: &mut Ctx<'_>) -> Outcome {
    let tenant = ctx.tenant();
    let adopted = ctx.app_in(&tenant, "adopted");
    let stopped = ctx.app_in(&tenant, "stopped");
    let stop_lost = ctx.app_in(&tenant, "stop-lost");
    let orphan = ctx.app_in(&tenant, "orphan");
    let (a, b, d, o) = futures::try_join!(
        ctx.deploy_running(&adopted, FixtureApp::Logging, 1),
        ctx.deploy_running(&stopped, FixtureApp::Logging, 1),
        ctx.deploy_running(&stop_lost, FixtureApp::Logging, 1),
        ctx.deploy_running(&orphan, FixtureApp::Logging, 1),
    )?;
    ctx.stop(&stopped).await?;

    // The controller restarts. Its store: `adopted` runs, `stopped` and
    // `stop-lost` were stopped (the second stop never reached the backend),
    // and `orphan` is unknown.
    let restarted = ctx
        .fixture
        .restarted(&tenant)
        .ok_or("supports_restart is true but restarted() gave no orchestrator")?;
    let plan = Desired::plan([
        record(&a, DeploymentStatus::Running),
        record(&b, DeploymentStatus::Stopped),
        record(&d, DeploymentStatus::Stopped),
    ]);
    let intents: Vec<(DeploymentId, Intent)> =
        plan.iter().map(|d| (d.deployment.id, d.intent)).collect();
    ensure!(
        intents.len() == 3
            && intents.contains(&(a.deployment, Intent::Run))
            && intents.contains(&(b.deployment, Intent::KeepStopped))
            && intents.contains(&(d.deployment, Intent::KeepStopped)),
        "Desired::plan gave {intents:?}"
    );
    let report = ctx
        .within("reconcile", restarted.reconcile(&plan))
        .await?
        .map_err(err("reconcile"))?;
    ensure!(
        report.adopted == [a.deployment],
        "reconcile adopted {:?}, expected only {adopted}'s deployment {} (report: {report:?})",
        report.adopted,
        a.deployment
    );
    ensure!(
        report.missing.is_empty(),
        "reconcile reports missing {:?}, but what the store wants runs",
        report.missing
    );
    ensure!(
        !report.removed_orphans.is_empty(),
        "reconcile removed no orphan, but the store does not know {orphan} (deployment {})",
        o.deployment
    );

    let r = restarted.as_ref();
    let status = ctx.status_in(r, &adopted).await?;
    running_as(&status, &a, "app_status of the adopted app")?;
    let status = ctx
        .status_in(r, &stopped)
        .await
        .map_err(|e| format!("the stopped app after reconcile: {e}"))?;
    ensure!(
        status.status == DeploymentStatus::Stopped && status.deployment == Some(b.deployment),
        "app_status of the stopped app after reconcile: {status:?}, expected STOPPED as \
         deployment {}",
        b.deployment
    );
    let status = ctx
        .eventually_in(
            r,
            &stop_lost,
            "stopping what the store says is stopped",
            |s| s.status != DeploymentStatus::Running && s.status != DeploymentStatus::Starting,
        )
        .await?;
    ensure!(
        status.status == DeploymentStatus::Stopped && status.deployment == Some(d.deployment),
        "app_status of an app the store says is stopped, after reconcile: {status:?}, \
         expected STOPPED as deployment {}",
        d.deployment
    );
    match ctx.within("app_status", r.app_status(&orphan)).await? {
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            return Err(format!(
                "app_status of the removed orphan: {} ({e})",
                e.code()
            ));
        }
        Ok(s) => {
            return Err(format!(
                "the orphan {orphan} is still there after reconcile: {s:?}"
            ));
        }
    }
    let listed = ctx.list_in(r, &tenant).await?;
    ensure!(
        listed.len() == 3,
        "list_apps after reconcile: {listed:?}, expected {adopted}, {stop_lost} and {stopped}"
    );
    listed_as(&listed[0], &a, DeploymentStatus::Running)?;
    listed_as(&listed[1], &d, DeploymentStatus::Stopped)?;
    listed_as(&listed[2], &b, DeploymentStatus::Stopped)
}

async fn logs_since_only_later(ctx: &mut Ctx<'_>) -> Outcome {
    let (app, _) = ctx.running_logging_app("later").await?;
    let marker = ctx.fixture.log_marker().to_string();
    let deadline = tokio::time::Instant::now() + ctx.fixture.patience();
    // Lines before `since`, so there is something to leave out.
    let earlier = loop {
        let lines = ctx.logs(&app, None).await?;
        if lines.iter().any(|l| l.line.contains(&marker)) {
            break lines;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no log line containing {marker:?}: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // `since` from the check's clock, after every line read so far.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = SystemTime::now();
    let since_ts = time::OffsetDateTime::from(since);
    ensure!(
        earlier.iter().all(|l| l.ts < since_ts),
        "lines read before {since_ts} are stamped later: {earlier:?}"
    );
    let later = loop {
        let lines = ctx.logs(&app, Some(since)).await?;
        ensure!(
            lines.iter().all(|l| l.ts >= since_ts),
            "app_logs since {since_ts} returned earlier lines: {:?}",
            lines.iter().filter(|l| l.ts < since_ts).collect::<Vec<_>>()
        );
        ensure!(
            !lines.iter().any(|l| earlier.contains(l)),
            "app_logs since {since_ts} returned lines read before it"
        );
        if lines.iter().filter(|l| l.line.contains(&marker)).count() >= 2 {
            break lines;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no two lines containing {marker:?} since {since_ts}: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Following from `since`: its first lines are the later ones, too.
    let options = LogOptions {
        since: Some(since),
        follow: true,
    };
    let mut stream = ctx
        .within("app_logs", ctx.orchestrator.app_logs(&app, &options))
        .await?
        .map_err(err("app_logs with follow"))?;
    let mut followed = Vec::new();
    while followed.len() < later.len().min(3) {
        let line = ctx
            .within("following the logs", stream.next())
            .await?
            .ok_or("the followed logs ended while the app runs")?
            .map_err(err("following the logs"))?;
        ensure!(
            line.ts >= since_ts && !earlier.contains(&line),
            "following since {since_ts} returned an earlier line: {line:?}"
        );
        followed.push(line);
    }
    ensure!(
        followed[..] == later[..followed.len()],
        "following since {since_ts} began with {followed:?}, but app_logs since then \
         returned {later:?}"
    );
    Ok(())
}

async fn list_covers_every_env(ctx: &mut Ctx<'_>) -> Outcome {
    let (mine, theirs) = (ctx.tenant(), ctx.tenant());
    let (env, other_env) = (ctx.fixture.env(), ctx.fixture.other_env());
    ensure!(
        env != other_env,
        "the fixture's env() and other_env() are both {env}"
    );
    let here = ctx.app_in_env(&mine, "listed", env.clone());
    let there = ctx.app_in_env(&mine, "listed", other_env);
    let foreign = ctx.app_in_env(&theirs, "listed", env);
    let (h, t, f) = futures::try_join!(
        ctx.deploy_running(&here, FixtureApp::Logging, 1),
        ctx.deploy_running(&there, FixtureApp::Logging, 1),
        ctx.deploy_running(&foreign, FixtureApp::Logging, 1),
    )?;
    ctx.stop(&there).await?;

    let listed = ctx.list(&mine).await?;
    ensure!(
        listed.len() == 2,
        "list_apps({mine}) returned {:?}, expected {here} and {there}",
        listed.iter().map(|s| &s.app).collect::<Vec<_>>()
    );
    listed_as(&listed[0], &h, DeploymentStatus::Running)?;
    listed_as(&listed[1], &t, DeploymentStatus::Stopped)?;
    let listed = ctx.list(&theirs).await?;
    ensure!(
        listed.len() == 1,
        "list_apps({theirs}) returned {:?}, expected {foreign} only",
        listed.iter().map(|s| &s.app).collect::<Vec<_>>()
    );
    listed_as(&listed[0], &f, DeploymentStatus::Running)
}

async fn app_failure_is_start_failed(ctx: &mut Ctx<'_>) -> Outcome {
    let tenant = ctx.tenant();
    let o = &ctx.orchestrator;

    // Never healthy: deploying and restarting it both fail, the app's way.
    let unhealthy = ctx.app_in(&tenant, "unhealthy");
    let req = ctx.request(&unhealthy, FixtureApp::Unhealthy, 1).await?;
    let timeout = u64::from(req.config.start_timeout_secs);
    let health_timeout = |r: &StatusReason| matches!(r, StatusReason::HealthTimeout { after_secs, .. } if *after_secs == timeout);
    let expected = format!("a health_timeout after {timeout} s");
    let deployed = ctx.within("deploy_app", o.deploy_app(&req)).await?;
    expect_start_failed(
        "deploy_app of an app that never becomes healthy",
        deployed,
        &expected,
        health_timeout,
    )?;
    let restarted = ctx.within("restart_app", o.restart_app(&unhealthy)).await?;
    expect_start_failed(
        "restart_app of an app that never becomes healthy",
        restarted,
        &expected,
        health_timeout,
    )?;

    // Exits on its own: deploy_app may see it or return RUNNING first; an
    // error is start_failed with the exit code.
    let code = ctx.fixture.crash_exit_code();
    let mut others = vec![(
        FixtureApp::Crashing,
        "crashing",
        StatusReason::Exited {
            exit_code: Some(code),
        },
    )];
    if ctx.fixture.supports_oom() {
        others.push((FixtureApp::Oom, "oom", StatusReason::OomKilled));
    }
    for (kind, name, want) in others {
        let app = ctx.app_in(&tenant, name);
        let req = ctx.request(&app, kind, 1).await?;
        match ctx.within("deploy_app", o.deploy_app(&req)).await? {
            Ok(status) => started_as(&status, &req, &format!("deploy_app of the {name} app"))?,
            failed => expect_start_failed(
                &format!("deploy_app of the {name} app"),
                failed,
                &want.to_string(),
                |r| *r == want,
            )?,
        }
    }
    Ok(())
}
