//! Fakes with fault injection, and the backend conformance suite (feature
//! `testkit`).
//!
//! - [`FakeOrchestrator`]: an in-memory [`RuntimeOrchestrator`] with fault
//!   injection.
//! - [`FakeImageBuilder`]: an [`ImageBuilder`](crate::ImageBuilder) that
//!   checks its input and counts builds.
//! - [`conformance`]: the checks every backend runs, and [`FakeFixture`],
//!   the fake's own fixture for them.

pub mod conformance;

mod builder;
mod orchestrator;
mod program;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use self::builder::FakeImageBuilder;
pub use self::conformance::{ConformanceFixture, FixtureApp};
pub use self::orchestrator::FakeOrchestrator;
pub use self::program::FakeProgram;
use crate::{ImageRef, RuntimeOrchestrator, Sha256Digest};

/// The [`ConformanceFixture`] of [`FakeOrchestrator`]: fake images whose
/// programs behave like the Java fixture apps, quickly.
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
        for app in [FixtureApp::Logging, FixtureApp::Crashing, FixtureApp::Oom] {
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

    fn supports_oom(&self) -> bool {
        true
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(10)
    }
}
