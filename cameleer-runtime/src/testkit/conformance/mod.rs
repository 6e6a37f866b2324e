//! The conformance suite every [`RuntimeOrchestrator`] runs.
//!
//! A backend proves it keeps the contract by passing these checks against
//! its real engine. It provides a [`ConformanceFixture`]: the orchestrator,
//! deployable images of a few small apps ([`FixtureApp`]), their configs,
//! fresh tenant ids so that parallel runs never see each other's apps, and,
//! where the backend can, a way to ask an app which version answers and a
//! fresh orchestrator as after a controller restart.
//! Each check deploys into its own tenant(s) and the fixture's
//! [`cleanup`](ConformanceFixture::cleanup) runs afterwards, pass or fail.
//!
//! # Running it
//!
//! One `#[tokio::test]` per check, with [`conformance_tests!`](crate::conformance_tests)
//! (the test crate needs `tokio` with the `macros` and `rt-multi-thread`
//! features):
//!
//! ```ignore
//! // tests/conformance.rs of a backend
//! cameleer_runtime::conformance_tests!(
//!     #[ignore = "needs a Docker engine"]
//!     async { my_backend::testing::ConformanceFixture::new().await }
//! );
//! ```
//!
//! or all checks in one test with [`run_all`]:
//!
//! ```
//! use cameleer_runtime::testkit::{conformance, FakeFixture};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let report = conformance::run_all(&FakeFixture::new()).await;
//! report.assert_passed();
//! # });
//! ```
//!
//! # What the fixture apps must do
//!
//! - [`FixtureApp::Logging`] stays up and prints lines containing
//!   [`log_marker`](ConformanceFixture::log_marker) at least every second,
//!   with gaps of at least 50 ms between some of them (the Java fixture
//!   prints `[app] line N` every `LOG_INTERVAL_MS`).
//! - [`FixtureApp::Crashing`] starts, then exits on its own with
//!   [`crash_exit_code`](ConformanceFixture::crash_exit_code).
//! - [`FixtureApp::Oom`] (optional, see
//!   [`supports_oom`](ConformanceFixture::supports_oom)) exceeds its memory
//!   limit and is killed.
//! - [`FixtureApp::CrashingAfterStart`] passes its health check (its deploy
//!   returns RUNNING), then exits on its own with
//!   [`crash_exit_code`](ConformanceFixture::crash_exit_code) a few seconds
//!   later.
//! - [`FixtureApp::Unhealthy`] stays up but never passes its health check;
//!   its config has a start timeout of a few seconds, so a deploy of it
//!   fails with [`StatusReason::HealthTimeout`](crate::StatusReason::HealthTimeout).
//! - [`FixtureApp::Serving`] (optional, see
//!   [`supports_reachable`](ConformanceFixture::supports_reachable)) stays up
//!   and answers its clients with its version, which
//!   [`reachable`](ConformanceFixture::reachable) reads; it takes a moment
//!   (a few hundred milliseconds at least) to pass its health check, so the
//!   suite can watch a redeploy switch versions.
//!
//! # Checks a backend may be excused from
//!
//! Some checks need something not every backend can offer; the fixture says
//! so, and [`conformance_tests!`](crate::conformance_tests) is told with a
//! switch, so the run shows the check as not run rather than passed:
//!
//! | Check | Needs | Switch |
//! |-------|-------|--------|
//! | [`Check::OomBecomesFailed`] | [`supports_oom`](ConformanceFixture::supports_oom) | `no_oom;` |
//! | [`Check::RedeployKeepsOldServing`] | [`supports_reachable`](ConformanceFixture::supports_reachable) | `no_reachable;` |
//! | [`Check::RestartReconciles`] | [`supports_restart`](ConformanceFixture::supports_restart) | `no_restart;` |
//! | [`Check::ReplicasReachRunning`], [`Check::RollingRedeployKeepsReady`], [`Check::FailedRollingRedeployKeepsOld`], [`Check::KilledInstanceIsReplaced`] | [`supports_replicas`](ConformanceFixture::supports_replicas) | `no_replicas;` |
//!
//! # The replica checks
//!
//! They deploy apps with [`REPLICAS`] instances
//! ([`AppConfig::replicas`](crate::AppConfig::replicas)) and read the
//! instance counts of [`AppStatus`](crate::AppStatus): RUNNING with all
//! of them ready; a rolling redeploy of [`FixtureApp::Serving`] sampled
//! through `app_status` never shows fewer than [`REPLICAS`] ready; a new
//! version that never becomes healthy leaves the old one's instances
//! serving; an instance killed with
//! [`kill_instance`](ConformanceFixture::kill_instance) is replaced and
//! counted in [`AppStatus::restarts`](crate::AppStatus::restarts). The logs
//! of every instance come merged, each line tagged with its instance.
//!
//! # Running one check
//!
//! [`run`] runs one check against a fixture and returns its [`Failure`], so
//! a backend's own tests (and the testkit's, against deliberately broken
//! fakes) can show that a check catches a given breach of the contract.

mod checks;
mod tests_macro;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{AppConfig, AppRef, EnvId, Error, ImageRef, RuntimeOrchestrator, TenantId};

/// The apps the suite deploys; see the [module docs](self). More may be
/// added, so match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FixtureApp {
    /// Stays up and logs steadily.
    Logging,
    /// Exits with a known code shortly after starting.
    Crashing,
    /// Is OOM-killed shortly after starting.
    Oom,
    /// Passes its health check, then exits on its own with
    /// [`ConformanceFixture::crash_exit_code`] a few seconds later.
    CrashingAfterStart,
    /// Stays up but never passes its health check (its config has a short
    /// start timeout).
    Unhealthy,
    /// Stays up and answers its clients with its version (see
    /// [`ConformanceFixture::reachable`]); passes its health check only
    /// after a moment.
    Serving,
}

/// What a backend gives the suite.
#[async_trait]
pub trait ConformanceFixture: Send + Sync {
    /// The backend under test.
    fn orchestrator(&self) -> Arc<dyn RuntimeOrchestrator>;

    /// A deployable, pinned image of `app` (built or pulled once and
    /// cached by the fixture; the suite asks for each image several times).
    async fn image(&self, app: FixtureApp) -> crate::Result<ImageRef>;

    /// The config `app` runs with (env vars that steer the fixture app,
    /// a memory limit low enough for the OOM app, a start timeout of a few
    /// seconds and a health check that never passes for
    /// [`FixtureApp::Unhealthy`], …).
    fn config(&self, app: FixtureApp) -> AppConfig {
        let _ = app;
        AppConfig::default()
    }

    /// The config `version` of `app` runs with. Default:
    /// [`config`](Self::config), whatever the version.
    ///
    /// A fixture whose [`reachable`](Self::reachable) learns the version
    /// from the app itself tells the app its version here (the Docker
    /// backend's fixture sets the Java fixture's `APP_NAME` to `v<version>`,
    /// which it answers `GET /` with).
    fn config_of_version(&self, app: FixtureApp, version: u64) -> AppConfig {
        let _ = version;
        self.config(app)
    }

    /// Which version of `app` answers its clients right now, asked the way
    /// a client of the app asks: over the network, at the app's address
    /// (for Docker, a client container on the tenant's network asking the
    /// app's name), never from the backend's status or the app's logs.
    /// `None` when nothing answers. Only [`FixtureApp::Serving`] is asked.
    ///
    /// One call may retry for a second or so (a client would): the suite
    /// treats a `None` during a redeploy as downtime.
    ///
    /// The default is [`Error::Unsupported`]; a fixture that implements it
    /// says so with [`supports_reachable`](Self::supports_reachable).
    async fn reachable(&self, app: &AppRef) -> crate::Result<Option<u64>> {
        let _ = app;
        Err(Error::Unsupported("ConformanceFixture::reachable"))
    }

    /// Whether [`reachable`](Self::reachable) works and the backend can run
    /// two versions of an app side by side at its address, so the suite can
    /// watch a redeploy keep the old version serving
    /// ([`Check::RedeployKeepsOldServing`] is skipped otherwise). Default
    /// false.
    fn supports_reachable(&self) -> bool {
        false
    }

    /// A fresh orchestrator on the same runtime, as a controller that
    /// restarted would make: it shares no memory with
    /// [`orchestrator`](Self::orchestrator) (no cache, no lock, no record of
    /// what it did), only the engine or cluster. `None` when the backend's
    /// apps do not outlive their controller. Default `None`.
    ///
    /// `tenant` is the one tenant the check uses. A fixture whose runtime
    /// other tests share returns an orchestrator whose
    /// [`reconcile`](RuntimeOrchestrator::reconcile) is limited to it, so
    /// the check cannot remove another test's apps as orphans.
    fn restarted(&self, tenant: &TenantId) -> Option<Arc<dyn RuntimeOrchestrator>> {
        let _ = tenant;
        None
    }

    /// Whether [`restarted`](Self::restarted) gives an orchestrator
    /// ([`Check::RestartReconciles`] is skipped otherwise). Default false.
    fn supports_restart(&self) -> bool {
        false
    }

    /// Whether the backend runs several instances of an app behind its
    /// address and [`kill_instance`](Self::kill_instance) works (the
    /// replica checks are skipped otherwise). Default false.
    fn supports_replicas(&self) -> bool {
        false
    }

    /// Kills instance `instance` (`0..replicas`) of the version of `app`
    /// that runs, the way a crash does: its process dies, from outside the
    /// backend's API (the Docker fixture kills the container's process by
    /// its host pid). The default is [`Error::Unsupported`].
    async fn kill_instance(&self, app: &AppRef, instance: u32) -> crate::Result<()> {
        let _ = (app, instance);
        Err(Error::Unsupported("ConformanceFixture::kill_instance"))
    }

    /// A tenant no other run uses; see [`unique_tenant`].
    fn unique_tenant(&self) -> TenantId {
        unique_tenant("conformance")
    }

    /// The environment the suite deploys into.
    fn env(&self) -> EnvId {
        EnvId::new("conf").expect("a valid env id")
    }

    /// A second environment, for the check that `list_apps` covers every
    /// environment of a tenant. Must differ from [`env`](Self::env).
    /// Default `conf-b`.
    fn other_env(&self) -> EnvId {
        EnvId::new("conf-b").expect("a valid env id")
    }

    /// The exit code of [`FixtureApp::Crashing`]. Default 3.
    fn crash_exit_code(&self) -> i64 {
        3
    }

    /// Text every line of [`FixtureApp::Logging`] contains. Default `[app] `.
    fn log_marker(&self) -> &str {
        "[app] "
    }

    /// Whether the backend can run [`FixtureApp::Oom`] (the OOM check is
    /// skipped otherwise). Default false.
    fn supports_oom(&self) -> bool {
        false
    }

    /// How long any one step may take (a deploy, a crash to show). Default
    /// 120 s, for engines that start JVMs in fresh containers.
    fn patience(&self) -> Duration {
        Duration::from_secs(120)
    }

    /// Removes everything the suite created for `tenant`. Called after
    /// each check, pass or fail, for each tenant it used.
    async fn cleanup(&self, tenant: &TenantId) {
        let _ = tenant;
    }
}

/// `{prefix}-{8 random hex}`: a tenant id unique to this run. `prefix` is
/// cut to 21 characters so the id stays within [`TenantId::MAX_LEN`].
pub fn unique_tenant(prefix: &str) -> TenantId {
    let prefix: String = prefix.chars().take(21).collect();
    let prefix = prefix.trim_end_matches('-');
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    TenantId::new(format!("{prefix}-{}", &suffix[..8])).expect("prefix must be a valid id start")
}

/// The checks of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// `deploy_app` of the logging app returns RUNNING; `app_status` agrees
    /// and names the deployment and version.
    DeployReachesRunning,
    /// Deploying the same request twice succeeds and runs one app.
    DeployIsIdempotent,
    /// `app_logs` with `since` excludes lines before it and includes lines
    /// after it.
    LogsSince,
    /// `stop_app` makes `app_status` STOPPED; stopping again is a no-op.
    StopThenStopped,
    /// `restart_app` of a stopped app brings it back to RUNNING.
    RestartRunsAgain,
    /// `list_apps(t)` shows exactly `t`'s apps.
    ListIsPerTenant,
    /// `app_status`, `stop_app`, `restart_app` and `app_logs` of an app
    /// never deployed fail with `not_found`.
    UnknownAppIsNotFound,
    /// The crashing app ends FAILED with a reason naming its exit code.
    CrashBecomesFailed,
    /// The OOM app ends FAILED with a reason naming the OOM kill (skipped
    /// unless [`ConformanceFixture::supports_oom`]).
    OomBecomesFailed,
    /// While a redeploy of [`FixtureApp::Serving`] starts the new version,
    /// [`ConformanceFixture::reachable`] keeps getting an answer, first from
    /// the old version; once `deploy_app` returns, the new one answers
    /// (skipped unless [`ConformanceFixture::supports_reachable`]).
    RedeployKeepsOldServing,
    /// A redeploy whose new version never becomes healthy fails with
    /// `start_failed` and the typed reason
    /// ([`StatusReason::HealthTimeout`](crate::StatusReason::HealthTimeout)
    /// after the config's start timeout), and the old version stays RUNNING,
    /// in `app_status` and `list_apps`.
    FailedRedeployKeepsOld,
    /// A crash of a RUNNING app arrives through `events()` as
    /// [`RuntimeEventKind::Failed`](crate::RuntimeEventKind::Failed) with
    /// the exit code, without anyone calling `app_status` or `list_apps`.
    CrashIsAnEvent,
    /// After a controller restart ([`ConformanceFixture::restarted`]),
    /// `reconcile` with the store's [`Desired::plan`](crate::Desired::plan)
    /// adopts the app that runs, keeps a stopped app stopped, stops an app
    /// the store says is stopped, and removes an app the store does not
    /// know (skipped unless [`ConformanceFixture::supports_restart`]).
    RestartReconciles,
    /// `app_logs` with a `since` taken from the check's own clock returns
    /// only lines from then on (plain and following), and lines written
    /// after it.
    LogsSinceOnlyLater,
    /// `list_apps(t)` shows every app of `t` in every environment, running
    /// or stopped, with its deployment, and nothing of another tenant that
    /// has an app of the same name in the same environment.
    ListCoversEveryEnv,
    /// Every error `deploy_app` and `restart_app` return for the app's own
    /// failure (it never became healthy, it exited, it ran out of memory)
    /// is `start_failed` with the typed reason, never `backend_error` or
    /// `timeout`.
    AppFailureIsStartFailed,
    /// A deploy with [`REPLICAS`] instances returns RUNNING with all of
    /// them ready and desired, `app_status` and `list_apps` agree, and
    /// `app_logs` merges every instance's lines in time order, each tagged
    /// with its instance (skipped unless
    /// [`ConformanceFixture::supports_replicas`]).
    ReplicasReachRunning,
    /// While a redeploy of [`FixtureApp::Serving`] with [`REPLICAS`]
    /// instances rolls out, `app_status`, sampled again and again, is
    /// always RUNNING with at least [`REPLICAS`] instances ready; afterwards
    /// the new version runs all of them (skipped unless
    /// [`ConformanceFixture::supports_replicas`]).
    RollingRedeployKeepsReady,
    /// A redeploy whose new version never becomes healthy fails with
    /// `start_failed` and its health timeout, and the old version's
    /// [`REPLICAS`] instances stay ready throughout and after (skipped
    /// unless [`ConformanceFixture::supports_replicas`]).
    FailedRollingRedeployKeepsOld,
    /// An instance killed with [`ConformanceFixture::kill_instance`] is
    /// replaced: the app never reads FAILED or STOPPED (the others serve),
    /// and comes back RUNNING with every instance ready and the restart
    /// counted (skipped unless [`ConformanceFixture::supports_replicas`]).
    KilledInstanceIsReplaced,
}

/// How many instances the replica checks run.
pub const REPLICAS: u32 = 3;

impl Check {
    /// Every check, in the order [`run_all`] runs them.
    pub const ALL: [Check; 20] = [
        Check::DeployReachesRunning,
        Check::DeployIsIdempotent,
        Check::LogsSince,
        Check::StopThenStopped,
        Check::RestartRunsAgain,
        Check::ListIsPerTenant,
        Check::UnknownAppIsNotFound,
        Check::CrashBecomesFailed,
        Check::OomBecomesFailed,
        Check::RedeployKeepsOldServing,
        Check::FailedRedeployKeepsOld,
        Check::CrashIsAnEvent,
        Check::RestartReconciles,
        Check::LogsSinceOnlyLater,
        Check::ListCoversEveryEnv,
        Check::AppFailureIsStartFailed,
        Check::ReplicasReachRunning,
        Check::RollingRedeployKeepsReady,
        Check::FailedRollingRedeployKeepsOld,
        Check::KilledInstanceIsReplaced,
    ];

    /// The snake_case name, as the generated tests are named.
    pub fn name(&self) -> &'static str {
        match self {
            Check::DeployReachesRunning => "deploy_reaches_running",
            Check::DeployIsIdempotent => "deploy_is_idempotent",
            Check::LogsSince => "logs_since",
            Check::StopThenStopped => "stop_then_stopped",
            Check::RestartRunsAgain => "restart_runs_again",
            Check::ListIsPerTenant => "list_is_per_tenant",
            Check::UnknownAppIsNotFound => "unknown_app_is_not_found",
            Check::CrashBecomesFailed => "crash_becomes_failed",
            Check::OomBecomesFailed => "oom_becomes_failed",
            Check::RedeployKeepsOldServing => "redeploy_keeps_old_serving",
            Check::FailedRedeployKeepsOld => "failed_redeploy_keeps_old",
            Check::CrashIsAnEvent => "crash_is_an_event",
            Check::RestartReconciles => "restart_reconciles",
            Check::LogsSinceOnlyLater => "logs_since_only_later",
            Check::ListCoversEveryEnv => "list_covers_every_env",
            Check::AppFailureIsStartFailed => "app_failure_is_start_failed",
            Check::ReplicasReachRunning => "replicas_reach_running",
            Check::RollingRedeployKeepsReady => "rolling_redeploy_keeps_ready",
            Check::FailedRollingRedeployKeepsOld => "failed_rolling_redeploy_keeps_old",
            Check::KilledInstanceIsReplaced => "killed_instance_is_replaced",
        }
    }

    /// The switch of [`conformance_tests!`](crate::conformance_tests) that
    /// marks this check not run for a backend that cannot offer what it
    /// needs (`no_oom`, `no_reachable`, `no_restart`, `no_replicas`);
    /// `None` for the checks every backend runs.
    pub fn switch(&self) -> Option<&'static str> {
        match self {
            Check::OomBecomesFailed => Some("no_oom"),
            Check::RedeployKeepsOldServing => Some("no_reachable"),
            Check::RestartReconciles => Some("no_restart"),
            c if c.is_replica_check() => Some("no_replicas"),
            _ => None,
        }
    }

    /// Whether this is one of the replica checks (see the
    /// [module docs](self)).
    pub fn is_replica_check(&self) -> bool {
        matches!(
            self,
            Check::ReplicasReachRunning
                | Check::RollingRedeployKeepsReady
                | Check::FailedRollingRedeployKeepsOld
                | Check::KilledInstanceIsReplaced
        )
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The check.
    pub check: Check,
    /// What was expected and what happened.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conformance check {} failed: {}",
            self.check, self.message
        )
    }
}

impl std::error::Error for Failure {}

/// The outcome of [`run_all`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The checks that passed.
    pub passed: Vec<Check>,
    /// The checks that were skipped (the fixture does not support them).
    pub skipped: Vec<Check>,
    /// The checks that failed.
    pub failed: Vec<Failure>,
}

impl Report {
    /// Panics listing every failure, if there is one.
    pub fn assert_passed(&self) {
        if !self.failed.is_empty() {
            let all: Vec<String> = self.failed.iter().map(Failure::to_string).collect();
            panic!(
                "{} conformance check(s) failed:\n{}",
                all.len(),
                all.join("\n")
            );
        }
    }
}

/// Runs every check, one after the other.
pub async fn run_all(fixture: &dyn ConformanceFixture) -> Report {
    let mut report = Report::default();
    for check in Check::ALL {
        if !applies(fixture, check) {
            report.skipped.push(check);
            continue;
        }
        match run(fixture, check).await {
            Ok(()) => report.passed.push(check),
            Err(f) => report.failed.push(f),
        }
    }
    report
}

/// Whether `check` applies to `fixture`: the OOM check needs
/// [`ConformanceFixture::supports_oom`], the redeploy-serving check
/// [`ConformanceFixture::supports_reachable`], the restart check
/// [`ConformanceFixture::supports_restart`], the replica checks
/// [`ConformanceFixture::supports_replicas`].
pub fn applies(fixture: &dyn ConformanceFixture, check: Check) -> bool {
    match check {
        Check::OomBecomesFailed => fixture.supports_oom(),
        Check::RedeployKeepsOldServing => fixture.supports_reachable(),
        Check::RestartReconciles => fixture.supports_restart(),
        c if c.is_replica_check() => fixture.supports_replicas(),
        _ => true,
    }
}

/// Runs one check, then cleans up the tenants it used. A check the fixture
/// does not support passes.
///
/// Every check is a function of its own; this is how to run one alone,
/// e.g. against a backend broken on purpose to show that the check fails:
///
/// ```
/// use cameleer_runtime::testkit::{conformance::{self, Check}, FakeFixture};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let outcome = conformance::run(&FakeFixture::new(), Check::ListCoversEveryEnv).await;
/// assert!(outcome.is_ok(), "{outcome:?}");
/// # });
/// ```
pub async fn run(fixture: &dyn ConformanceFixture, check: Check) -> Result<(), Failure> {
    if !applies(fixture, check) {
        return Ok(());
    }
    checks::run(fixture, check)
        .await
        .map_err(|message| Failure { check, message })
}
