//! The checks themselves, each against fresh tenants.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;

use super::{Check, ConformanceFixture, FixtureApp};
use crate::{
    AppId, AppRef, AppStatus, DeployRequest, DeploymentId, DeploymentStatus, Error, LogLine,
    LogOptions, RuntimeOrchestrator, StatusReason, TenantId,
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
        AppRef::new(
            tenant.clone(),
            AppId::new(name).expect("a valid app id"),
            self.fixture.env(),
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
            config: self.fixture.config(kind),
        })
    }

    async fn within<T>(&self, what: &str, fut: impl Future<Output = T>) -> Result<T, String> {
        let patience = self.fixture.patience();
        tokio::time::timeout(patience, fut)
            .await
            .map_err(|_| format!("{what} took longer than {patience:?}"))
    }

    /// Deploys the logging app into a fresh tenant and checks it RUNNING.
    async fn running_logging_app(&self, name: &str) -> Result<(AppRef, DeployRequest), String> {
        let app = self.app_in(&self.tenant(), name);
        let req = self.request(&app, FixtureApp::Logging, 1).await?;
        let status = self
            .within("deploy_app", self.orchestrator.deploy_app(&req))
            .await?
            .map_err(err("deploy_app of the logging app"))?;
        ensure!(
            status.status == DeploymentStatus::Running,
            "deploy_app returned {status:?}, expected RUNNING"
        );
        Ok((app, req))
    }

    async fn status(&self, app: &AppRef) -> Result<AppStatus, String> {
        self.within("app_status", self.orchestrator.app_status(app))
            .await?
            .map_err(err("app_status"))
    }

    /// Polls `app_status` until `done` holds, within the patience.
    async fn eventually(
        &self,
        app: &AppRef,
        what: &str,
        done: impl Fn(&AppStatus) -> bool,
    ) -> Result<AppStatus, String> {
        let deadline = tokio::time::Instant::now() + self.fixture.patience();
        loop {
            let status = self.status(app).await?;
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
        let _ = self
            .within("deploy_app", self.orchestrator.deploy_app(req))
            .await?;
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
        status
            .reason
            .ok_or_else(|| "FAILED without a reason".to_string())
    }
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
    ensure!(
        again.status == DeploymentStatus::Running,
        "second deploy_app returned {again:?}"
    );
    let listed = ctx
        .orchestrator
        .list_apps(&app.tenant)
        .await
        .map_err(err("list_apps"))?;
    ensure!(
        listed.len() == 1,
        "list_apps after deploying twice: {listed:?}"
    );
    ensure!(
        ctx.status(&app).await?.deployment == Some(req.deployment),
        "app_status names another deployment"
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
    let (app, _) = ctx.running_logging_app("stopping").await?;
    ctx.stop(&app).await?;
    ctx.within("stop_app", ctx.orchestrator.stop_app(&app))
        .await?
        .map_err(err("stop_app of a stopped app"))?;
    Ok(())
}

async fn restart_runs_again(ctx: &mut Ctx<'_>) -> Outcome {
    let (app, req) = ctx.running_logging_app("restarting").await?;
    ctx.stop(&app).await?;
    let status = ctx
        .within("restart_app", ctx.orchestrator.restart_app(&app))
        .await?
        .map_err(err("restart_app"))?;
    ensure!(
        status.status == DeploymentStatus::Running,
        "restart_app returned {status:?}"
    );
    let status = ctx.status(&app).await?;
    ensure!(
        status.status == DeploymentStatus::Running && status.deployment == Some(req.deployment),
        "app_status after restart_app: {status:?}"
    );
    Ok(())
}

async fn list_is_per_tenant(ctx: &mut Ctx<'_>) -> Outcome {
    let (a, _) = ctx.running_logging_app("alpha").await?;
    let (b, _) = ctx.running_logging_app("beta").await?;
    for (mine, theirs) in [(&a, &b), (&b, &a)] {
        let listed = ctx
            .within("list_apps", ctx.orchestrator.list_apps(&mine.tenant))
            .await?
            .map_err(err("list_apps"))?;
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
    let not_found = |what: &str, r: Result<(), Error>| -> Outcome {
        match r {
            Err(e) if e.code() == "not_found" => Ok(()),
            Err(e) => Err(format!(
                "{what} of an unknown app: {} ({e}), expected not_found",
                e.code()
            )),
            Ok(()) => Err(format!(
                "{what} of an unknown app succeeded, expected not_found"
            )),
        }
    };
    not_found(
        "app_status",
        ctx.within("app_status", o.app_status(&app))
            .await?
            .map(drop),
    )?;
    not_found("stop_app", ctx.within("stop_app", o.stop_app(&app)).await?)?;
    not_found(
        "restart_app",
        ctx.within("restart_app", o.restart_app(&app))
            .await?
            .map(drop),
    )?;
    // The error may come from the call or as the stream's first item.
    let logs = ctx
        .within("app_logs", o.app_logs(&app, &LogOptions::default()))
        .await?;
    let first = match logs {
        Err(e) => Err(e),
        Ok(mut stream) => match ctx.within("reading logs", stream.next()).await? {
            Some(Err(e)) => Err(e),
            _ => Ok(()),
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
