//! What a fake "container" does once it is up.

use std::sync::Weak;
use std::time::Duration;

use super::orchestrator::Inner;
use crate::{AppRef, DeploymentStatus, LogSource, RuntimeEventKind, StatusReason};

/// What a fake "container" does once it is up. Every program first prints
/// `[app] started`, like the Java fixture apps.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FakeProgram {
    /// Stays up and says nothing more.
    Idle,
    /// Prints `[app] line N` every `interval`; every third line also goes to
    /// stderr as `[app] stderr line N`.
    Logging {
        /// Time between lines.
        interval: Duration,
    },
    /// Exits with `exit_code` after `after`.
    Crashing {
        /// How long it stays up.
        after: Duration,
        /// Its exit code.
        exit_code: i64,
    },
    /// Is OOM-killed after `after`.
    OomKilled {
        /// How long it stays up.
        after: Duration,
    },
    /// Passes its health check only `delay` after it starts (a start fails
    /// with [`StatusReason::HealthTimeout`] when that is beyond the config's
    /// start timeout), then stays up and says nothing more.
    SlowToStart {
        /// How long its health check takes to pass.
        delay: Duration,
    },
    /// Never passes its health check: a start fails with
    /// [`StatusReason::HealthTimeout`] once the config's start timeout has
    /// passed.
    NeverHealthy,
}

impl FakeProgram {
    /// How long the program takes to pass its health check; `None` when
    /// it never does.
    pub(super) fn health_delay(&self) -> Option<Duration> {
        match self {
            FakeProgram::SlowToStart { delay } => Some(*delay),
            FakeProgram::NeverHealthy => None,
            _ => Some(Duration::ZERO),
        }
    }
}

/// How long an injected crash or OOM kill waits after the app is up.
pub(super) const FAULT_DELAY: Duration = Duration::from_millis(10);

/// Runs `program` for instance `run` of `app` until it ends, the instance
/// is stopped, or the fake is dropped.
pub(super) async fn run_program(inner: Weak<Inner>, app: AppRef, run: u64, program: FakeProgram) {
    match program {
        FakeProgram::Idle | FakeProgram::SlowToStart { .. } | FakeProgram::NeverHealthy => {}
        FakeProgram::Logging { interval } => {
            for n in 1u64.. {
                tokio::time::sleep(interval).await;
                let Some(inner) = inner.upgrade() else { return };
                if !inner.log_if_running(&app, run, n, LogSource::Stdout, format!("[app] line {n}"))
                {
                    return;
                }
                if n % 3 == 0 {
                    inner.log_if_running(
                        &app,
                        run,
                        n,
                        LogSource::Stderr,
                        format!("[app] stderr line {n}"),
                    );
                }
            }
        }
        FakeProgram::Crashing { after, exit_code } => {
            tokio::time::sleep(after).await;
            if let Some(inner) = inner.upgrade() {
                let reason = StatusReason::Exited {
                    exit_code: Some(exit_code),
                };
                let event = RuntimeEventKind::Failed {
                    reason: reason.clone(),
                };
                inner.end(&app, run, DeploymentStatus::Failed, reason, Some(event));
            }
        }
        FakeProgram::OomKilled { after } => {
            tokio::time::sleep(after).await;
            if let Some(inner) = inner.upgrade() {
                let event = RuntimeEventKind::Failed {
                    reason: StatusReason::OomKilled,
                };
                inner.end(
                    &app,
                    run,
                    DeploymentStatus::Failed,
                    StatusReason::OomKilled,
                    Some(event),
                );
            }
        }
    }
}
