//! The replica checks: several instances of one version behind the app's
//! address, replaced one at a time.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::super::REPLICAS;
use super::{Ctx, Outcome, err, expect_start_failed, running_as};
use crate::testkit::FixtureApp;
use crate::{AppRef, AppStatus, DeployRequest, DeploymentStatus, StatusReason};

/// How often `app_status` is sampled while a redeploy rolls out.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

impl Ctx<'_> {
    /// A request for `version` of `kind` with [`REPLICAS`] instances.
    async fn request_replicated(
        &self,
        app: &AppRef,
        kind: FixtureApp,
        version: u64,
    ) -> Result<DeployRequest, String> {
        let mut req = self.request(app, kind, version).await?;
        req.config.replicas = REPLICAS;
        Ok(req)
    }

    /// Deploys `version` of `kind` with [`REPLICAS`] instances and checks
    /// that `deploy_app` returns it RUNNING with all of them ready.
    async fn deploy_replicated(
        &self,
        app: &AppRef,
        kind: FixtureApp,
        version: u64,
    ) -> Result<DeployRequest, String> {
        let req = self.request_replicated(app, kind, version).await?;
        let status = self
            .within("deploy_app", self.orchestrator.deploy_app(&req))
            .await?
            .map_err(err(&format!(
                "deploy_app of {app} version {version} with {REPLICAS} replicas"
            )))?;
        running_as(&status, &req, "deploy_app")?;
        all_ready(&status, "deploy_app")?;
        Ok(req)
    }

    /// Runs `deploy` while sampling `app_status` of `app`; the deploy's
    /// outcome and every sample.
    async fn sampled<T>(
        &self,
        app: &AppRef,
        deploy: impl Future<Output = T>,
    ) -> Result<(T, Vec<AppStatus>), String> {
        let deploying = AtomicBool::new(true);
        let deploy = async {
            let result = deploy.await;
            deploying.store(false, Ordering::SeqCst);
            result
        };
        let sample = async {
            let mut samples = Vec::new();
            while deploying.load(Ordering::SeqCst) {
                samples.push(self.status(app).await);
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
            samples
        };
        let (outcome, samples) = futures::join!(deploy, sample);
        let samples: Vec<AppStatus> = samples.into_iter().collect::<Result<_, _>>()?;
        ensure!(
            !samples.is_empty(),
            "app_status of {app} was never read while the redeploy ran"
        );
        Ok((outcome, samples))
    }
}

/// `status` (returned by `call`) counts all [`REPLICAS`] instances ready.
fn all_ready(status: &AppStatus, call: &str) -> Outcome {
    ensure!(
        status.ready_instances == REPLICAS && status.desired_instances == REPLICAS,
        "{call} returned {status:?}: {} of {} instances ready, expected {REPLICAS} of {REPLICAS}",
        status.ready_instances,
        status.desired_instances
    );
    Ok(())
}

/// Every sample taken while `what` is RUNNING with at least [`REPLICAS`]
/// instances ready, as one of `deployments`.
fn never_below(samples: &[AppStatus], what: &str, deployments: &[&DeployRequest]) -> Outcome {
    for s in samples {
        ensure!(
            s.status == DeploymentStatus::Running
                && s.ready_instances >= REPLICAS
                && deployments
                    .iter()
                    .any(|d| s.deployment == Some(d.deployment)),
            "while {what}, app_status said {s:?}: fewer than {REPLICAS} instances ready \
             ({} samples in all)",
            samples.len()
        );
    }
    Ok(())
}

pub(super) async fn replicas_reach_running(ctx: &mut Ctx<'_>) -> Outcome {
    let app = ctx.app_in(&ctx.tenant(), "replicated");
    let req = ctx.deploy_replicated(&app, FixtureApp::Logging, 1).await?;
    let status = ctx.status(&app).await?;
    running_as(&status, &req, "app_status")?;
    all_ready(&status, "app_status")?;
    let listed = ctx.list(&app.tenant).await?;
    ensure!(
        listed.len() == 1
            && listed[0].ready_instances == REPLICAS
            && listed[0].desired_instances == REPLICAS,
        "list_apps: {listed:?}, expected {app} with {REPLICAS} of {REPLICAS} instances ready"
    );

    // Every instance's lines, merged in time order, each tagged.
    let marker = ctx.fixture.log_marker().to_string();
    let every: BTreeSet<u32> = (0..REPLICAS).collect();
    let deadline = tokio::time::Instant::now() + ctx.fixture.patience();
    loop {
        let lines = ctx.logs(&app, None).await?;
        ensure!(
            lines.windows(2).all(|w| w[0].ts <= w[1].ts),
            "app_logs of {app} are not in time order: {lines:?}"
        );
        let tagged: BTreeSet<u32> = lines
            .iter()
            .filter(|l| l.line.contains(&marker))
            .filter_map(|l| l.instance)
            .collect();
        if tagged == every {
            return Ok(());
        }
        ensure!(
            tagged.is_subset(&every),
            "app_logs of {app} has lines of instances {tagged:?}, but it runs {every:?}"
        );
        ensure!(
            tokio::time::Instant::now() < deadline,
            "app_logs of {app} with {REPLICAS} instances has lines containing {marker:?} \
             tagged with instances {tagged:?} only, expected every one of {every:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(super) async fn rolling_redeploy_keeps_ready(ctx: &mut Ctx<'_>) -> Outcome {
    let app = ctx.app_in(&ctx.tenant(), "rolling");
    let v1 = ctx.deploy_replicated(&app, FixtureApp::Serving, 1).await?;
    let v2 = ctx.request_replicated(&app, FixtureApp::Serving, 2).await?;
    let (deployed, samples) = ctx
        .sampled(
            &app,
            ctx.within("deploy_app", ctx.orchestrator.deploy_app(&v2)),
        )
        .await?;
    let status = deployed?.map_err(err("deploy_app of version 2"))?;
    running_as(&status, &v2, "deploy_app of version 2")?;
    all_ready(&status, "deploy_app of version 2")?;
    never_below(&samples, "version 2 rolled out", &[&v1, &v2])?;
    let status = ctx.status(&app).await?;
    running_as(&status, &v2, "app_status after the rollout")?;
    all_ready(&status, "app_status after the rollout")
}

pub(super) async fn failed_rolling_redeploy_keeps_old(ctx: &mut Ctx<'_>) -> Outcome {
    let app = ctx.app_in(&ctx.tenant(), "rolling-failed");
    let v1 = ctx.deploy_replicated(&app, FixtureApp::Logging, 1).await?;
    let v2 = ctx
        .request_replicated(&app, FixtureApp::Unhealthy, 2)
        .await?;
    let timeout = u64::from(v2.config.start_timeout_secs);
    let (deployed, samples) = ctx
        .sampled(
            &app,
            ctx.within("deploy_app", ctx.orchestrator.deploy_app(&v2)),
        )
        .await?;
    expect_start_failed(
        "deploy_app of a version that never becomes healthy",
        deployed?,
        &format!("a health_timeout after {timeout} s"),
        |r| matches!(r, StatusReason::HealthTimeout { after_secs, .. } if *after_secs == timeout),
    )?;
    never_below(
        &samples,
        "a version that never became healthy rolled out",
        &[&v1],
    )?;
    let status = ctx.status(&app).await?;
    running_as(&status, &v1, "app_status after the failed redeploy")?;
    all_ready(&status, "app_status after the failed redeploy")
}

pub(super) async fn killed_instance_is_replaced(ctx: &mut Ctx<'_>) -> Outcome {
    let app = ctx.app_in(&ctx.tenant(), "replaced");
    let v1 = ctx.deploy_replicated(&app, FixtureApp::Logging, 1).await?;
    let before = ctx.status(&app).await?.restarts;
    ctx.within("kill_instance", ctx.fixture.kill_instance(&app, 1))
        .await?
        .map_err(err("killing instance 1 (the fixture's kill_instance)"))?;
    let deadline = tokio::time::Instant::now() + ctx.fixture.patience();
    loop {
        let s = ctx.status(&app).await?;
        ensure!(
            s.deployment == Some(v1.deployment)
                && matches!(
                    s.status,
                    DeploymentStatus::Running | DeploymentStatus::Starting
                ),
            "after one of {REPLICAS} instances of {app} was killed, app_status said {s:?}, \
             expected deployment {} still up (the others serve)",
            v1.deployment
        );
        if s.status == DeploymentStatus::Running
            && s.ready_instances == REPLICAS
            && s.restarts > before
        {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the killed instance of {app} was not replaced: app_status still says {s:?} \
             after {:?} (restarts were {before} before the kill)",
            ctx.fixture.patience()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
