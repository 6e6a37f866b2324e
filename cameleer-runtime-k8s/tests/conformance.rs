//! The `cameleer-runtime` conformance suite, unchanged, against a real
//! cluster: `KUBECONFIG` pointing at one (kind, k3d) and the fixture apps'
//! images pushed to a registry it pulls from, pinned by digest, in
//! `CAMELEER_K8S_IMAGE_LOGGING`, `CAMELEER_K8S_IMAGE_CRASHING` and
//! `CAMELEER_K8S_IMAGE_OOM` (see docs/kubernetes.md for building them).
//!
//! ```sh
//! KUBECONFIG=~/.kube/config CAMELEER_K8S_IMAGE_LOGGING=… \
//!   cargo test -p cameleer-runtime-k8s --test conformance -- --ignored
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cameleer_runtime::testkit::conformance::{self, Check, ConformanceFixture, FixtureApp};
use cameleer_runtime::{
    AppConfig, AppRef, HealthCheck, ImageRef, Resources, RuntimeOrchestrator, TenantId,
};
use cameleer_runtime_k8s::{KubernetesOptions, KubernetesRuntimeOrchestrator};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams};

struct ClusterFixture {
    orchestrator: Arc<KubernetesRuntimeOrchestrator>,
}

impl ClusterFixture {
    async fn new() -> Self {
        let orchestrator = KubernetesRuntimeOrchestrator::connect(KubernetesOptions::default())
            .await
            .expect("KUBECONFIG (or an in-cluster config) names a reachable cluster");
        Self {
            orchestrator: Arc::new(orchestrator),
        }
    }
}

fn image_from_env(var: &str) -> ImageRef {
    let value = std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} must name the fixture's image, pinned: REF@sha256:… (see docs/kubernetes.md)")
    });
    value.parse().unwrap_or_else(|e| panic!("{var}: {e}"))
}

fn config(env: &[(&str, &str)], memory_mb: u32) -> AppConfig {
    AppConfig {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        resources: Resources {
            memory_mb,
            cpu_millis: 500,
            cpu_shares: None,
        },
        health: HealthCheck::None,
        start_timeout_secs: 60,
        ..AppConfig::default()
    }
}

#[async_trait]
impl ConformanceFixture for ClusterFixture {
    fn orchestrator(&self) -> Arc<dyn RuntimeOrchestrator> {
        self.orchestrator.clone()
    }

    async fn image(&self, app: FixtureApp) -> cameleer_runtime::Result<ImageRef> {
        Ok(match app {
            FixtureApp::Logging | FixtureApp::Unhealthy => {
                image_from_env("CAMELEER_K8S_IMAGE_LOGGING")
            }
            FixtureApp::Crashing | FixtureApp::CrashingAfterStart => {
                image_from_env("CAMELEER_K8S_IMAGE_CRASHING")
            }
            FixtureApp::Oom => image_from_env("CAMELEER_K8S_IMAGE_OOM"),
            other => panic!("no fixture image for {other:?}"),
        })
    }

    fn config(&self, app: FixtureApp) -> AppConfig {
        match app {
            FixtureApp::Logging => config(&[("LOG_INTERVAL_MS", "200")], 256),
            FixtureApp::Crashing => config(&[("CRASH_DELAY_MS", "200")], 256),
            FixtureApp::CrashingAfterStart => config(&[("CRASH_DELAY_MS", "5000")], 256),
            FixtureApp::Unhealthy => AppConfig {
                health: HealthCheck::TcpPort(8080),
                start_timeout_secs: 5,
                ..config(&[], 256)
            },
            _ => config(&[("OOM_PAUSE_MS", "10")], 128),
        }
    }

    fn restarted(&self, tenant: &TenantId) -> Option<Arc<dyn RuntimeOrchestrator>> {
        // Limited to the check's tenant: other tests share the cluster.
        let options = KubernetesOptions {
            orphan_grace: Duration::ZERO,
            reconcile_scope: Some(tenant.clone()),
            ..KubernetesOptions::default()
        };
        Some(Arc::new(KubernetesRuntimeOrchestrator::new(
            self.orchestrator.client().clone(),
            options,
        )))
    }

    fn supports_restart(&self) -> bool {
        true
    }

    fn supports_oom(&self) -> bool {
        true
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(180)
    }

    fn supports_replicas(&self) -> bool {
        true
    }

    /// Deletes the pod of instance `instance` (the app's pods oldest first,
    /// the order its logs number instances in), as `kubectl delete pod`
    /// would: not a crash of its process (that needs `pods/exec`, which the
    /// controller's role does not grant), so its ReplicaSet replaces it with
    /// a new pod and the app's `restarts` do not grow (see
    /// `killed_instance_is_replaced` below).
    async fn kill_instance(&self, app: &AppRef, instance: u32) -> cameleer_runtime::Result<()> {
        let ns = cameleer_runtime_k8s::namespace::namespace_name(&app.tenant, &app.env);
        let pods = Api::<Pod>::namespaced(self.orchestrator.client().clone(), &ns);
        let selector = format!("cameleer.io/app={}", app.app);
        let mut live: Vec<Pod> = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| cameleer_runtime::Error::backend("listing the app's pods", e))?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        live.sort_by(|a, b| {
            (&a.metadata.creation_timestamp, &a.metadata.name)
                .cmp(&(&b.metadata.creation_timestamp, &b.metadata.name))
        });
        let name = usize::try_from(instance)
            .ok()
            .and_then(|i| live.get(i))
            .and_then(|p| p.metadata.name.clone())
            .ok_or_else(|| {
                cameleer_runtime::Error::not_found("instance", format!("{app} #{instance}"))
            })?;
        pods.delete(&name, &DeleteParams::default())
            .await
            .map_err(|e| cameleer_runtime::Error::backend("deleting the instance's pod", e))?;
        Ok(())
    }

    async fn cleanup(&self, tenant: &TenantId) {
        let namespaces = Api::<Namespace>::all(self.orchestrator.client().clone());
        let selector = format!("cameleer.io/tenant={tenant}");
        match namespaces
            .list(&ListParams::default().labels(&selector))
            .await
        {
            Ok(list) => {
                for ns in list.items {
                    let name = ns.metadata.name.unwrap_or_default();
                    if let Err(e) = namespaces.delete(&name, &DeleteParams::background()).await {
                        eprintln!("removing namespace {name}: {e}");
                    }
                }
            }
            Err(e) => eprintln!("listing the namespaces of {tenant}: {e}"),
        }
    }
}

// `cameleer_runtime::conformance_tests!` cannot take the `#[ignore]` its
// docs show: `$(#[$attr:meta])* $make:expr` is a local ambiguity for
// macro_rules (an expression may start with an attribute), so every
// invocation with an attribute fails to compile. Until the core's macro
// takes attributes another way, the same tests are spelled out here: one
// per check, each running the suite's own check through
// `conformance::run`, unchanged.
macro_rules! live {
    ($($name:ident => $check:ident),* $(,)?) => {$(
        live!(@one $name $check "needs a cluster: KUBECONFIG and CAMELEER_K8S_IMAGE_{LOGGING,CRASHING,OOM} (docs/kubernetes.md)");
    )*};
    (@one $name:ident $check:ident $reason:literal) => {
        #[tokio::test(flavor = "multi_thread")]
        #[ignore = $reason]
        async fn $name() {
            let fixture = ClusterFixture::new().await;
            assert_eq!(Check::$check.name(), stringify!($name));
            if let Err(failure) = conformance::run(&fixture, Check::$check).await {
                panic!("{failure}");
            }
        }
    };
}

live! {
    deploy_reaches_running => DeployReachesRunning,
    deploy_is_idempotent => DeployIsIdempotent,
    logs_since => LogsSince,
    stop_then_stopped => StopThenStopped,
    restart_runs_again => RestartRunsAgain,
    list_is_per_tenant => ListIsPerTenant,
    unknown_app_is_not_found => UnknownAppIsNotFound,
    crash_becomes_failed => CrashBecomesFailed,
    oom_becomes_failed => OomBecomesFailed,
    failed_redeploy_keeps_old => FailedRedeployKeepsOld,
    crash_is_an_event => CrashIsAnEvent,
    restart_reconciles => RestartReconciles,
    logs_since_only_later => LogsSinceOnlyLater,
    list_covers_every_env => ListCoversEveryEnv,
    app_failure_is_start_failed => AppFailureIsStartFailed,
}

// No in-cluster client asks the app yet (supports_reachable is false): run
// against the in-memory API server, in tests/conformance_fake.rs.
live!(@one redeploy_keeps_old_serving RedeployKeepsOldServing
    "no_reachable: the live fixture has no in-cluster client yet (tests/conformance_fake.rs runs it)");

// The replica checks: the live fixture has no Serving image (as above),
// and its kill_instance deletes the pod, which its ReplicaSet replaces with
// a new one, so `restarts` (container restarts, as the kubelet counts them)
// do not grow; the fake kubelet of tests/conformance_fake.rs restarts the
// killed container and runs both checks.
live! {
    replicas_reach_running => ReplicasReachRunning,
    failed_rolling_redeploy_keeps_old => FailedRollingRedeployKeepsOld,
}
live!(@one rolling_redeploy_keeps_ready RollingRedeployKeepsReady
    "no_reachable: the live fixture has no Serving image yet (tests/conformance_fake.rs runs it)");
live!(@one killed_instance_is_replaced KilledInstanceIsReplaced
    "kill_instance deletes the pod (no pods/exec): its replacement is no restart (tests/conformance_fake.rs runs it)");

#[test]
fn every_check_of_the_suite_has_a_live_test() {
    // A check added to the suite must be added above.
    assert_eq!(Check::ALL.len(), 20);
}
