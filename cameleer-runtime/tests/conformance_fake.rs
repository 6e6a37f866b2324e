//! The fake backend passes the conformance suite, and the suite catches a
//! backend that breaks the contract.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cameleer_runtime::testkit::conformance::{self, Check, ConformanceFixture, FixtureApp};
use cameleer_runtime::testkit::{FakeFixture, FakeOrchestrator};
use cameleer_runtime::{
    AppConfig, AppRef, AppStatus, AppSummary, DeployRequest, EventStream, ImageRef, LogOptions,
    LogStream, Result, RuntimeOrchestrator, TenantId,
};

cameleer_runtime::conformance_tests!(async { FakeFixture::new() });

#[tokio::test(flavor = "multi_thread")]
async fn run_all_passes_every_check() {
    let report = conformance::run_all(&FakeFixture::new()).await;
    report.assert_passed();
    assert_eq!(report.passed, Check::ALL);
}

#[test]
fn unique_tenants_are_unique_and_valid() {
    let a = conformance::unique_tenant("a-prefix-that-is-far-too-long-for-a-tenant");
    let b = conformance::unique_tenant("a-prefix-that-is-far-too-long-for-a-tenant");
    assert_ne!(a, b);
    assert!(a.as_str().len() <= TenantId::MAX_LEN);
}

/// The fake with two contract breaches: `list_apps` shows every tenant's
/// apps, and `app_logs` ignores `since`.
struct Leaky(FakeOrchestrator);

#[async_trait]
impl RuntimeOrchestrator for Leaky {
    async fn deploy_app(&self, request: &DeployRequest) -> Result<AppStatus> {
        self.0.deploy_app(request).await
    }
    async fn stop_app(&self, app: &AppRef) -> Result<()> {
        self.0.stop_app(app).await
    }
    async fn restart_app(&self, app: &AppRef) -> Result<AppStatus> {
        self.0.restart_app(app).await
    }
    async fn app_logs(&self, app: &AppRef, options: &LogOptions) -> Result<LogStream> {
        let all = LogOptions {
            since: None,
            ..options.clone()
        };
        self.0.app_logs(app, &all).await
    }
    async fn app_status(&self, app: &AppRef) -> Result<AppStatus> {
        self.0.app_status(app).await
    }
    async fn list_apps(&self, _tenant: &TenantId) -> Result<Vec<AppSummary>> {
        // Every tenant we know of, not just the one asked for.
        let mut all = Vec::new();
        for tenant in self.tenants() {
            all.extend(self.0.list_apps(&tenant).await?);
        }
        Ok(all)
    }
    async fn events(&self) -> Result<EventStream> {
        self.0.events().await
    }
}

impl Leaky {
    fn tenants(&self) -> Vec<TenantId> {
        TENANTS.lock().unwrap().clone()
    }
}

static TENANTS: std::sync::Mutex<Vec<TenantId>> = std::sync::Mutex::new(Vec::new());

struct LeakyFixture(FakeFixture);

#[async_trait]
impl ConformanceFixture for LeakyFixture {
    fn orchestrator(&self) -> Arc<dyn RuntimeOrchestrator> {
        Arc::new(Leaky(self.0.fake().clone()))
    }
    async fn image(&self, app: FixtureApp) -> Result<ImageRef> {
        self.0.image(app).await
    }
    fn config(&self, app: FixtureApp) -> AppConfig {
        self.0.config(app)
    }
    fn unique_tenant(&self) -> TenantId {
        let t = conformance::unique_tenant("leaky");
        TENANTS.lock().unwrap().push(t.clone());
        t
    }
    fn patience(&self) -> Duration {
        Duration::from_secs(5)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_suite_catches_a_leaky_backend() {
    let fixture = LeakyFixture(FakeFixture::new());
    let report = conformance::run_all(&fixture).await;
    let failed: Vec<Check> = report.failed.iter().map(|f| f.check).collect();
    assert_eq!(
        failed,
        [
            Check::DeployIsIdempotent,
            Check::LogsSince,
            Check::ListIsPerTenant,
            // Its list_apps shows other tenants' apps here too.
            Check::FailedRedeployKeepsOld,
            Check::LogsSinceOnlyLater,
            Check::ListCoversEveryEnv,
        ],
        "{report:#?}"
    );
    assert_eq!(
        report.skipped,
        [
            Check::OomBecomesFailed,
            Check::RedeployKeepsOldServing,
            Check::RestartReconciles,
            Check::ReplicasReachRunning,
            Check::RollingRedeployKeepsReady,
            Check::FailedRollingRedeployKeepsOld,
            Check::KilledInstanceIsReplaced,
        ],
        "the default fixture has no OOM app, cannot reach apps, cannot restart and runs \
         one instance per app"
    );
    let message = report.failed[2].to_string();
    assert!(message.contains("list_is_per_tenant"), "{message}");
}
