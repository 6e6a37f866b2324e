//! Fakes with fault injection, and the backend conformance suite (feature
//! `testkit`).
//!
//! - [`FakeOrchestrator`]: an in-memory [`RuntimeOrchestrator`] with fault
//!   injection.
//! - [`FakeImageBuilder`]: an [`ImageBuilder`](crate::ImageBuilder) that
//!   checks its input and counts builds.
//! - [`conformance`]: the checks every backend runs, and [`FakeFixture`],
//!   the fake's own fixture for them.
//! - [`logs`]: the suite every `LogStore` passes
//!   ([`log_store_conformance_tests!`](crate::log_store_conformance_tests))
//!   and [`FlakyLogStore`](logs::FlakyLogStore) for failure tests.
//! - [`check_quota_store`]: the contract every
//!   [`QuotaStore`](crate::QuotaStore) keeps.

pub mod conformance;
pub mod logs;

mod builder;
mod instances;
mod orchestrator;
mod program;
mod quota_store;
mod rollout;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use self::builder::FakeImageBuilder;
pub use self::conformance::{ConformanceFixture, FixtureApp};
pub use self::orchestrator::FakeOrchestrator;
pub use self::program::FakeProgram;
pub use self::quota_store::check_quota_store;
use crate::{AppConfig, AppRef, ImageRef, RuntimeOrchestrator, Sha256Digest, TenantId};

/// The [`ConformanceFixture`] of [`FakeOrchestrator`]: fake images whose
/// programs behave like the Java fixture apps, quickly.
///
/// [`reachable`](ConformanceFixture::reachable) is the fake's own truth
/// ([`FakeOrchestrator::running_version`]): the fake has no network, and
/// what it runs is what answers. [`restarted`](ConformanceFixture::restarted)
/// is another handle on the same fake: it keeps nothing on the controller's
/// side to lose.
#[derive(Debug, Clone)]
pub struct FakeFixture {
    fake: FakeOrchestrator,
}

impl Default for FakeFixture {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeFixture {
    /// A fixture over a fresh fake.
    pub fn new() -> Self {
        let fake = FakeOrchestrator::new();
        for app in [
            FixtureApp::Logging,
            FixtureApp::Crashing,
            FixtureApp::Oom,
            FixtureApp::CrashingAfterStart,
            FixtureApp::Unhealthy,
            FixtureApp::Serving,
        ] {
            let program = match app {
                FixtureApp::Logging => FakeProgram::Logging {
                    interval: Duration::from_millis(60),
                },
                FixtureApp::Crashing => FakeProgram::Crashing {
                    after: Duration::from_millis(50),
                    exit_code: 3,
                },
                FixtureApp::Oom => FakeProgram::OomKilled {
                    after: Duration::from_millis(50),
                },
                FixtureApp::CrashingAfterStart => FakeProgram::Crashing {
                    after: Duration::from_millis(100),
                    exit_code: 3,
                },
                FixtureApp::Unhealthy => FakeProgram::NeverHealthy,
                FixtureApp::Serving => FakeProgram::SlowToStart {
                    delay: Duration::from_millis(200),
                },
            };
            fake.register_image(&Self::image_of(app), program);
        }
        Self { fake }
    }

    /// The fake under test, for fault injection.
    pub fn fake(&self) -> &FakeOrchestrator {
        &self.fake
    }

    fn image_of(app: FixtureApp) -> ImageRef {
        let name = format!("{app:?}").to_lowercase();
        ImageRef::new(
            Some("fake.local"),
            &format!("fixtures/{name}"),
            Some("1"),
            Some(Sha256Digest::of(name.as_bytes())),
        )
        .expect("a valid image reference")
    }
}

#[async_trait]
impl ConformanceFixture for FakeFixture {
    fn orchestrator(&self) -> Arc<dyn RuntimeOrchestrator> {
        Arc::new(self.fake.clone())
    }

    async fn image(&self, app: FixtureApp) -> crate::Result<ImageRef> {
        Ok(Self::image_of(app))
    }

    fn config(&self, app: FixtureApp) -> AppConfig {
        let mut config = AppConfig::default();
        if app == FixtureApp::Unhealthy {
            // The shortest start timeout there is.
            config.start_timeout_secs = 1;
        }
        config
    }

    async fn reachable(&self, app: &AppRef) -> crate::Result<Option<u64>> {
        Ok(self.fake.running_version(app))
    }

    fn supports_reachable(&self) -> bool {
        true
    }

    fn restarted(&self, tenant: &TenantId) -> Option<Arc<dyn RuntimeOrchestrator>> {
        let _ = tenant;
        Some(Arc::new(self.fake.clone()))
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

    async fn kill_instance(&self, app: &AppRef, instance: u32) -> crate::Result<()> {
        self.fake.kill_instance(app, instance)
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(10)
    }
}
