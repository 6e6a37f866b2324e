//! The conformance suite every [`RuntimeOrchestrator`] runs.
//!
//! A backend proves it keeps the contract by passing these checks against
//! its real engine. It provides a [`ConformanceFixture`]: the orchestrator,
//! deployable images of three small apps ([`FixtureApp`]), their configs,
//! and fresh tenant ids so that parallel runs never see each other's apps.
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

mod checks;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{AppConfig, EnvId, ImageRef, RuntimeOrchestrator, TenantId};

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
    /// a memory limit low enough for the OOM app, …).
    fn config(&self, app: FixtureApp) -> AppConfig {
        let _ = app;
        AppConfig::default()
    }

    /// A tenant no other run uses; see [`unique_tenant`].
    fn unique_tenant(&self) -> TenantId {
        unique_tenant("conformance")
    }

    /// The environment the suite deploys into.
    fn env(&self) -> EnvId {
        EnvId::new("conf").expect("a valid env id")
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
}

impl Check {
    /// Every check, in the order [`run_all`] runs them.
    pub const ALL: [Check; 9] = [
        Check::DeployReachesRunning,
        Check::DeployIsIdempotent,
        Check::LogsSince,
        Check::StopThenStopped,
        Check::RestartRunsAgain,
        Check::ListIsPerTenant,
        Check::UnknownAppIsNotFound,
        Check::CrashBecomesFailed,
        Check::OomBecomesFailed,
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
        }
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

/// Whether `check` applies to `fixture` (the OOM check needs
/// [`ConformanceFixture::supports_oom`]).
pub fn applies(fixture: &dyn ConformanceFixture, check: Check) -> bool {
    check != Check::OomBecomesFailed || fixture.supports_oom()
}

/// Runs one check, then cleans up the tenants it used. A check the fixture
/// does not support passes.
pub async fn run(fixture: &dyn ConformanceFixture, check: Check) -> Result<(), Failure> {
    if !applies(fixture, check) {
        return Ok(());
    }
    checks::run(fixture, check)
        .await
        .map_err(|message| Failure { check, message })
}

/// Defines one `#[tokio::test]` per conformance check for a backend.
///
/// The argument is an expression evaluating to a future that yields the
/// fixture (an `async` block); attributes before it (such as
/// `#[ignore = "needs a Docker engine"]`) go on every test. See the
/// [`conformance`](crate::testkit::conformance) module docs.
///
/// A backend that cannot OOM-kill (its fixture's
/// [`supports_oom`](ConformanceFixture::supports_oom) is false) starts the
/// invocation with `no_oom;`: the OOM test is then generated `#[ignore]`d
/// with that reason, so the run shows it as not run rather than passed. The
/// plain form fails the OOM test for such a fixture instead of letting it
/// pass vacuously.
#[macro_export]
macro_rules! conformance_tests {
    (no_oom; $(#[$attr:meta])* $make:expr) => {
        $crate::conformance_tests!(@common [$(#[$attr])*] ($make));
        #[::tokio::test(flavor = "multi_thread")]
        #[ignore = "this backend cannot OOM-kill an app (supports_oom is false)"]
        async fn oom_becomes_failed() {}
    };
    ($(#[$attr:meta])* $make:expr) => {
        $crate::conformance_tests!(@common [$(#[$attr])*] ($make));
        $crate::conformance_tests!(@test [$(#[$attr])*] ($make) oom_becomes_failed OomBecomesFailed);
    };
    (@common [$($attr:tt)*] ($make:expr)) => {
        $crate::conformance_tests!(@test [$($attr)*] ($make) deploy_reaches_running DeployReachesRunning);
        $crate::conformance_tests!(@test [$($attr)*] ($make) deploy_is_idempotent DeployIsIdempotent);
        $crate::conformance_tests!(@test [$($attr)*] ($make) logs_since LogsSince);
        $crate::conformance_tests!(@test [$($attr)*] ($make) stop_then_stopped StopThenStopped);
        $crate::conformance_tests!(@test [$($attr)*] ($make) restart_runs_again RestartRunsAgain);
        $crate::conformance_tests!(@test [$($attr)*] ($make) list_is_per_tenant ListIsPerTenant);
        $crate::conformance_tests!(@test [$($attr)*] ($make) unknown_app_is_not_found UnknownAppIsNotFound);
        $crate::conformance_tests!(@test [$($attr)*] ($make) crash_becomes_failed CrashBecomesFailed);
    };
    (@test [$($attr:tt)*] ($make:expr) $name:ident $check:ident) => {
        #[::tokio::test(flavor = "multi_thread")]
        $($attr)*
        async fn $name() {
            let fixture = $make.await;
            ::std::assert!(
                $crate::testkit::conformance::applies(&fixture, $crate::testkit::conformance::Check::$check),
                "the fixture does not support {}; start conformance_tests! with `no_oom;` to mark it not run",
                $crate::testkit::conformance::Check::$check,
            );
            if let ::std::result::Result::Err(failure) = $crate::testkit::conformance::run(
                &fixture,
                $crate::testkit::conformance::Check::$check,
            )
            .await
            {
                panic!("{failure}");
            }
        }
    };
}
