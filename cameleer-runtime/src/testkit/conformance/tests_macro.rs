//! [`conformance_tests!`](crate::conformance_tests): one `#[tokio::test]`
//! per check, for a backend's test crate.

/// Defines one `#[tokio::test]` per conformance check for a backend.
///
/// The argument is an expression evaluating to a future that yields the
/// fixture (an `async` block); attributes before it (such as
/// `#[ignore = "needs a Docker engine"]`) go on every test. See the
/// [`conformance`](crate::testkit::conformance) module docs.
///
/// A backend excused from a check (see the table in the
/// [module docs](crate::testkit::conformance)) starts the invocation with
/// its switches: `no_oom;` (its fixture's
/// [`supports_oom`](crate::testkit::ConformanceFixture::supports_oom) is
/// false), `no_reachable;`
/// ([`supports_reachable`](crate::testkit::ConformanceFixture::supports_reachable)),
/// `no_restart;`
/// ([`supports_restart`](crate::testkit::ConformanceFixture::supports_restart)),
/// `no_replicas;`
/// ([`supports_replicas`](crate::testkit::ConformanceFixture::supports_replicas)).
/// The check's test is then generated `#[ignore]`d with that reason, so the
/// run shows it as not run rather than passed. Without the switch, the test
/// fails for a fixture that does not support the check instead of letting
/// it pass vacuously.
///
/// ```ignore
/// cameleer_runtime::conformance_tests!(no_oom; no_restart; no_replicas; async { MyFixture::new().await });
/// ```
#[macro_export]
macro_rules! conformance_tests {
    (@parse {$oom:ident $reach:ident $restart:ident $replicas:ident} no_oom; $($rest:tt)*) => {
        $crate::conformance_tests!(@parse {no $reach $restart $replicas} $($rest)*);
    };
    (@parse {$oom:ident $reach:ident $restart:ident $replicas:ident} no_reachable; $($rest:tt)*) => {
        $crate::conformance_tests!(@parse {$oom no $restart $replicas} $($rest)*);
    };
    (@parse {$oom:ident $reach:ident $restart:ident $replicas:ident} no_restart; $($rest:tt)*) => {
        $crate::conformance_tests!(@parse {$oom $reach no $replicas} $($rest)*);
    };
    (@parse {$oom:ident $reach:ident $restart:ident $replicas:ident} no_replicas; $($rest:tt)*) => {
        $crate::conformance_tests!(@parse {$oom $reach $restart no} $($rest)*);
    };
    (@parse {$oom:ident $reach:ident $restart:ident $replicas:ident} $(#[$attr:meta])* $make:expr) => {
        $crate::conformance_tests!(@common [$(#[$attr])*] ($make));
        $crate::conformance_tests!(@maybe $oom [$(#[$attr])*] ($make) oom_becomes_failed OomBecomesFailed
            "this backend cannot OOM-kill an app (supports_oom is false)");
        $crate::conformance_tests!(@maybe $reach [$(#[$attr])*] ($make) redeploy_keeps_old_serving RedeployKeepsOldServing
            "the fixture cannot tell which version answers at the app's address (supports_reachable is false)");
        $crate::conformance_tests!(@maybe $restart [$(#[$attr])*] ($make) restart_reconciles RestartReconciles
            "this backend's apps do not outlive a controller restart (supports_restart is false)");
        $crate::conformance_tests!(@maybe $replicas [$(#[$attr])*] ($make) replicas_reach_running ReplicasReachRunning
            "this backend runs one instance per app (supports_replicas is false)");
        $crate::conformance_tests!(@maybe $replicas [$(#[$attr])*] ($make) rolling_redeploy_keeps_ready RollingRedeployKeepsReady
            "this backend runs one instance per app (supports_replicas is false)");
        $crate::conformance_tests!(@maybe $replicas [$(#[$attr])*] ($make) failed_rolling_redeploy_keeps_old FailedRollingRedeployKeepsOld
            "this backend runs one instance per app (supports_replicas is false)");
        $crate::conformance_tests!(@maybe $replicas [$(#[$attr])*] ($make) killed_instance_is_replaced KilledInstanceIsReplaced
            "this backend runs one instance per app (supports_replicas is false)");
    };
    (@maybe yes [$($attr:tt)*] ($make:expr) $name:ident $check:ident $why:literal) => {
        $crate::conformance_tests!(@test [$($attr)*] ($make) $name $check);
    };
    (@maybe no [$($attr:tt)*] ($make:expr) $name:ident $check:ident $why:literal) => {
        #[::tokio::test(flavor = "multi_thread")]
        #[ignore = $why]
        async fn $name() {}
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
        $crate::conformance_tests!(@test [$($attr)*] ($make) failed_redeploy_keeps_old FailedRedeployKeepsOld);
        $crate::conformance_tests!(@test [$($attr)*] ($make) crash_is_an_event CrashIsAnEvent);
        $crate::conformance_tests!(@test [$($attr)*] ($make) logs_since_only_later LogsSinceOnlyLater);
        $crate::conformance_tests!(@test [$($attr)*] ($make) list_covers_every_env ListCoversEveryEnv);
        $crate::conformance_tests!(@test [$($attr)*] ($make) app_failure_is_start_failed AppFailureIsStartFailed);
    };
    (@test [$($attr:tt)*] ($make:expr) $name:ident $check:ident) => {
        #[::tokio::test(flavor = "multi_thread")]
        $($attr)*
        async fn $name() {
            let fixture = $make.await;
            ::std::assert!(
                $crate::testkit::conformance::applies(&fixture, $crate::testkit::conformance::Check::$check),
                "the fixture does not support {}; start conformance_tests! with `{};` to mark it not run",
                $crate::testkit::conformance::Check::$check,
                $crate::testkit::conformance::Check::$check.switch().unwrap_or("?"),
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
    (@parse $($rest:tt)*) => {
        ::std::compile_error!(
            "conformance_tests!: expected the switches `no_oom;`, `no_reachable;`, `no_restart;`, `no_replicas;` (each optional), then attributes and the fixture"
        );
    };
    ($($input:tt)*) => {
        $crate::conformance_tests!(@parse {yes yes yes yes} $($input)*);
    };
}
