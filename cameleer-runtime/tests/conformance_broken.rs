//! Each new conformance check catches the breach of the contract it is
//! about: [`Broken`] is the fake backend with exactly one behaviour broken,
//! and each test runs one check against it and expects it to fail. (That
//! the unbroken fake passes every check is `conformance_fake.rs`.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cameleer_runtime::testkit::conformance::{self, Check, ConformanceFixture, FixtureApp};
use cameleer_runtime::testkit::{FakeFixture, FakeOrchestrator};
use cameleer_runtime::{
    AppConfig, AppRef, AppStatus, AppSummary, DeployRequest, Deployment, DeploymentSource,
    DeploymentStatus, Desired, EnvId, Error, EventStream, ImageRef, Intent, LogOptions, LogStream,
    ReconcileReport, Result, RuntimeOrchestrator, Sha256Digest, TenantId,
};

/// The one behaviour a [`Broken`] backend gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breach {
    /// A redeploy stops the running version before the new one is healthy.
    StopsOldFirst,
    /// A failed redeploy takes the old version down with it.
    LosesOldOnFailedRedeploy,
    /// `events()` never yields.
    SendsNoEvents,
    /// `reconcile` does nothing and reports nothing.
    AdoptsNothing,
    /// `reconcile` removes what the store wants kept stopped.
    RemovesStoppedApps,
    /// `reconcile` leaves what the store does not know running.
    KeepsOrphans,
    /// `app_logs` ignores `since`.
    IgnoresSince,
    /// `list_apps(t)` shows every tenant's apps.
    LeaksOtherTenants,
    /// `list_apps(t)` shows only the apps of one environment.
    MissesEnvs,
    /// The app's own failure comes back as `backend_error`.
    AppFailureIsBackendError,
    /// The app's own failure comes back as `timeout`.
    AppFailureIsTimeout,
    /// Runs one instance whatever `replicas` asks.
    IgnoresReplicas,
    /// Leaves a killed instance of several dead.
    LeavesKilledInstancesDead,
}

/// The fake, with one [`Breach`].
struct Broken {
    fake: FakeOrchestrator,
    breach: Breach,
    /// Every tenant handed out, for [`Breach::LeaksOtherTenants`].
    tenants: Arc<Mutex<Vec<TenantId>>>,
    /// The one environment [`Breach::MissesEnvs`] lists.
    env: EnvId,
}

impl Broken {
    fn is(&self, breach: Breach) -> bool {
        self.breach == breach
    }

    /// The app's own failure, misreported as the backend's.
    fn misreport(&self, result: Result<AppStatus>) -> Result<AppStatus> {
        match result {
            Err(Error::StartFailed { reason, .. }) if self.is(Breach::AppFailureIsBackendError) => {
                Err(Error::Backend {
                    message: format!("the container failed: {reason}"),
                    source: None,
                })
            }
            Err(Error::StartFailed { reason, .. }) if self.is(Breach::AppFailureIsTimeout) => {
                Err(Error::Timeout(format!("the app did not start: {reason}")))
            }
            other => other,
        }
    }

    /// For [`Breach::KeepsOrphans`]: `desired` plus a "run it" for every
    /// deployment of the tenants in it that the store does not know.
    async fn with_orphans_kept(&self, desired: &[Desired]) -> Result<Vec<Desired>> {
        let mut all = desired.to_vec();
        let mut tenants: Vec<&TenantId> =
            desired.iter().map(|d| &d.deployment.app.tenant).collect();
        tenants.dedup();
        for tenant in tenants {
            for summary in self.fake.list_apps(tenant).await? {
                let Some(id) = summary.deployment else {
                    continue;
                };
                if all.iter().any(|d| d.deployment.id == id) {
                    continue;
                }
                let mut deployment = Deployment::new(
                    summary.app.clone(),
                    summary.version.unwrap_or(1),
                    Sha256Digest::of(b"kept"),
                    None,
                    DeploymentSource::Build,
                    AppConfig::default(),
                    time::OffsetDateTime::now_utc(),
                );
                deployment.id = id;
                all.push(Desired {
                    deployment,
                    intent: Intent::Run,
                });
            }
        }
        Ok(all)
    }
}

#[async_trait]
impl RuntimeOrchestrator for Broken {
    async fn deploy_app(&self, request: &DeployRequest) -> Result<AppStatus> {
        if self.is(Breach::IgnoresReplicas) {
            let mut one = request.clone();
            one.config.replicas = 1;
            return self.fake.deploy_app(&one).await;
        }
        if self.is(Breach::StopsOldFirst)
            && let Ok(status) = self.fake.app_status(&request.app).await
            && status.status == DeploymentStatus::Running
            && status.deployment != Some(request.deployment)
        {
            self.fake.stop_app(&request.app).await?;
        }
        let result = self.fake.deploy_app(request).await;
        if self.is(Breach::LosesOldOnFailedRedeploy) && result.is_err() {
            self.fake.stop_app(&request.app).await?;
        }
        self.misreport(result)
    }

    async fn stop_app(&self, app: &AppRef) -> Result<()> {
        self.fake.stop_app(app).await
    }

    async fn restart_app(&self, app: &AppRef) -> Result<AppStatus> {
        let result = self.fake.restart_app(app).await;
        self.misreport(result)
    }

    async fn app_logs(&self, app: &AppRef, options: &LogOptions) -> Result<LogStream> {
        let mut options = options.clone();
        if self.is(Breach::IgnoresSince) {
            options.since = None;
        }
        self.fake.app_logs(app, &options).await
    }

    async fn app_status(&self, app: &AppRef) -> Result<AppStatus> {
        self.fake.app_status(app).await
    }

    async fn list_apps(&self, tenant: &TenantId) -> Result<Vec<AppSummary>> {
        let mut listed = Vec::new();
        if self.is(Breach::LeaksOtherTenants) {
            let tenants = self.tenants.lock().unwrap().clone();
            for t in tenants {
                listed.extend(self.fake.list_apps(&t).await?);
            }
        } else {
            listed = self.fake.list_apps(tenant).await?;
        }
        if self.is(Breach::MissesEnvs) {
            listed.retain(|s| s.app.env == self.env);
        }
        Ok(listed)
    }

    async fn events(&self) -> Result<EventStream> {
        if self.is(Breach::SendsNoEvents) {
            return Ok(Box::pin(futures::stream::pending()));
        }
        self.fake.events().await
    }

    async fn reconcile(&self, desired: &[Desired]) -> Result<ReconcileReport> {
        match self.breach {
            Breach::AdoptsNothing => Ok(ReconcileReport::default()),
            Breach::RemovesStoppedApps => {
                let run: Vec<Desired> = desired
                    .iter()
                    .filter(|d| d.intent == Intent::Run)
                    .cloned()
                    .collect();
                self.fake.reconcile(&run).await
            }
            Breach::KeepsOrphans => {
                let all = self.with_orphans_kept(desired).await?;
                let mut report = self.fake.reconcile(&all).await?;
                report
                    .adopted
                    .retain(|id| desired.iter().any(|d| d.deployment.id == *id));
                Ok(report)
            }
            _ => self.fake.reconcile(desired).await,
        }
    }
}

/// The fake's fixture, running the [`Broken`] backend.
struct BrokenFixture {
    inner: FakeFixture,
    breach: Breach,
    tenants: Arc<Mutex<Vec<TenantId>>>,
}

impl BrokenFixture {
    fn new(breach: Breach) -> Self {
        Self {
            inner: FakeFixture::new(),
            breach,
            tenants: Arc::default(),
        }
    }

    fn broken(&self) -> Broken {
        Broken {
            fake: self.inner.fake().clone(),
            breach: self.breach,
            tenants: self.tenants.clone(),
            env: self.inner.env(),
        }
    }
}

#[async_trait]
impl ConformanceFixture for BrokenFixture {
    fn orchestrator(&self) -> Arc<dyn RuntimeOrchestrator> {
        Arc::new(self.broken())
    }
    async fn image(&self, app: FixtureApp) -> Result<ImageRef> {
        self.inner.image(app).await
    }
    fn config(&self, app: FixtureApp) -> AppConfig {
        self.inner.config(app)
    }
    async fn reachable(&self, app: &AppRef) -> Result<Option<u64>> {
        self.inner.reachable(app).await
    }
    fn supports_reachable(&self) -> bool {
        self.inner.supports_reachable()
    }
    fn restarted(&self, _tenant: &TenantId) -> Option<Arc<dyn RuntimeOrchestrator>> {
        Some(Arc::new(self.broken()))
    }
    fn supports_restart(&self) -> bool {
        true
    }
    fn supports_oom(&self) -> bool {
        true
    }
    fn supports_replicas(&self) -> bool {
        true
    }
    async fn kill_instance(&self, app: &AppRef, instance: u32) -> Result<()> {
        if self.breach == Breach::LeavesKilledInstancesDead {
            self.inner.fake().keep_killed_instances_dead();
        }
        self.inner.kill_instance(app, instance).await
    }
    fn unique_tenant(&self) -> TenantId {
        let tenant = conformance::unique_tenant("broken");
        self.tenants.lock().unwrap().push(tenant.clone());
        tenant
    }
    /// Short: a check that waits for what never comes fails sooner.
    fn patience(&self) -> Duration {
        Duration::from_secs(2)
    }
}

/// Runs `check` against the fake broken by `breach`: it must fail, saying
/// something that contains `says`. The same check passes on the fake.
async fn catches(check: Check, breach: Breach, says: &str) {
    let fixture = BrokenFixture::new(breach);
    let failure = conformance::run(&fixture, check)
        .await
        .expect_err(&format!("{check} passes on a backend that {breach:?}"));
    assert_eq!(failure.check, check);
    assert!(
        failure.message.contains(says),
        "{check} failed on a backend that {breach:?}, but not for that reason: {failure}"
    );
    conformance::run(&FakeFixture::new(), check)
        .await
        .unwrap_or_else(|f| panic!("the unbroken fake fails {check}: {f}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn redeploy_keeps_old_serving_catches_a_backend_that_stops_the_old_version_first() {
    catches(
        Check::RedeployKeepsOldServing,
        Breach::StopsOldFirst,
        "did not always answer",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_redeploy_keeps_old_catches_a_backend_that_loses_the_old_version() {
    catches(
        Check::FailedRedeployKeepsOld,
        Breach::LosesOldOnFailedRedeploy,
        "app_status after the failed redeploy",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_is_an_event_catches_a_backend_that_sends_no_events() {
    catches(
        Check::CrashIsAnEvent,
        Breach::SendsNoEvents,
        "waiting for the crash's event took longer",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_reconciles_catches_a_backend_that_adopts_nothing() {
    catches(
        Check::RestartReconciles,
        Breach::AdoptsNothing,
        "reconcile adopted []",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_reconciles_catches_a_backend_that_removes_stopped_apps() {
    catches(
        Check::RestartReconciles,
        Breach::RemovesStoppedApps,
        "the stopped app after reconcile: app_status: not_found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_reconciles_catches_a_backend_that_keeps_orphans() {
    catches(
        Check::RestartReconciles,
        Breach::KeepsOrphans,
        "reconcile removed no orphan",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_since_only_later_catches_a_backend_that_ignores_since() {
    catches(
        Check::LogsSinceOnlyLater,
        Breach::IgnoresSince,
        "returned earlier lines",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_covers_every_env_catches_a_backend_that_leaks_other_tenants() {
    catches(
        Check::ListCoversEveryEnv,
        Breach::LeaksOtherTenants,
        "list_apps(broken-",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_covers_every_env_catches_a_backend_that_misses_an_env() {
    catches(
        Check::ListCoversEveryEnv,
        Breach::MissesEnvs,
        "list_apps(broken-",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn app_failure_is_start_failed_catches_a_backend_error_for_the_apps_failure() {
    catches(
        Check::AppFailureIsStartFailed,
        Breach::AppFailureIsBackendError,
        "failed with backend_error",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn app_failure_is_start_failed_catches_a_timeout_for_the_apps_failure() {
    catches(
        Check::AppFailureIsStartFailed,
        Breach::AppFailureIsTimeout,
        "failed with timeout",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_reach_running_catches_a_backend_that_ignores_replicas() {
    catches(
        Check::ReplicasReachRunning,
        Breach::IgnoresReplicas,
        "1 of 1 instances ready, expected 3 of 3",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rolling_redeploy_keeps_ready_catches_a_backend_that_stops_the_old_instances_first() {
    catches(
        Check::RollingRedeployKeepsReady,
        Breach::StopsOldFirst,
        "while version 2 rolled out, app_status said",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_rolling_redeploy_keeps_old_catches_a_backend_that_loses_the_old_version() {
    catches(
        Check::FailedRollingRedeployKeepsOld,
        Breach::LosesOldOnFailedRedeploy,
        "app_status after the failed redeploy",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_instance_is_replaced_catches_a_backend_that_leaves_it_dead() {
    catches(
        Check::KilledInstanceIsReplaced,
        Breach::LeavesKilledInstancesDead,
        "the killed instance of",
    )
    .await;
}

/// The breaches that show up elsewhere too are caught by the old checks
/// as well, where those cover them.
#[tokio::test(flavor = "multi_thread")]
async fn the_older_checks_catch_what_they_cover() {
    for (check, breach) in [
        (Check::LogsSince, Breach::IgnoresSince),
        (Check::ListIsPerTenant, Breach::LeaksOtherTenants),
        (
            Check::FailedRedeployKeepsOld,
            Breach::AppFailureIsBackendError,
        ),
    ] {
        let fixture = BrokenFixture::new(breach);
        assert!(
            conformance::run(&fixture, check).await.is_err(),
            "{check} passes on a backend that {breach:?}"
        );
    }
}
