//! What the engine's view of a container means for its deployment.
//!
//! Pure functions over inspect and list results; the health probe that turns
//! a running container from STARTING into RUNNING is the orchestrator's.

use bollard::models::{ContainerState, ContainerStateStatusEnum};
use cameleer_runtime::{DeploymentStatus, StatusReason};

/// Exit code of a JVM that ended on SIGTERM (128 + 15): what `docker stop`
/// produces. Read as "stopped", so a stop is recognised even by a controller
/// that restarted since.
pub(crate) const SIGTERM_EXIT: i64 = 143;

/// Where a container is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Created or restarting: not up yet, not failed.
    Starting,
    /// The process runs; whether the app is up is the probe's call.
    Running {
        /// `State.StartedAt`, which tells one start from the next.
        started_at: String,
    },
    /// Not running, and will not run again unless asked.
    Ended {
        /// FAILED or STOPPED.
        status: DeploymentStatus,
        /// Why (exit code, OOM kill, stop). An exit with the JVM's
        /// out-of-memory code still needs the container's last output to
        /// tell (see `DockerRuntimeOrchestrator::refine`).
        reason: StatusReason,
    },
}

/// Classifies an inspected container. `stopped_on_request` is whether this
/// controller stopped it (then any exit is STOPPED, not FAILED).
pub(crate) fn phase(state: &ContainerState, stopped_on_request: bool) -> Phase {
    use ContainerStateStatusEnum as S;
    let status = state.status.unwrap_or(S::EMPTY);
    match status {
        S::CREATED | S::RESTARTING => Phase::Starting,
        S::RUNNING if state.paused == Some(true) => {
            ended(DeploymentStatus::Stopped, StatusReason::StoppedExternally)
        }
        S::RUNNING => Phase::Running {
            started_at: state.started_at.clone().unwrap_or_default(),
        },
        S::PAUSED => ended(DeploymentStatus::Stopped, StatusReason::StoppedExternally),
        S::REMOVING => ended(DeploymentStatus::Stopped, StatusReason::Gone),
        S::EXITED | S::DEAD | S::STOPPING | S::EMPTY => {
            if state.oom_killed == Some(true) {
                return ended(DeploymentStatus::Failed, StatusReason::OomKilled);
            }
            let code = state.exit_code.unwrap_or(-1);
            if stopped_on_request {
                return ended(DeploymentStatus::Stopped, StatusReason::StoppedOnRequest);
            }
            if code == SIGTERM_EXIT {
                return ended(DeploymentStatus::Stopped, StatusReason::StoppedExternally);
            }
            if let Some(error) = state.error.as_deref().filter(|e| !e.is_empty()) {
                return ended(
                    DeploymentStatus::Failed,
                    StatusReason::StartRefused {
                        detail: error.to_string(),
                    },
                );
            }
            if status == S::DEAD {
                return ended(
                    DeploymentStatus::Failed,
                    StatusReason::other("the container is dead"),
                );
            }
            if status == S::STOPPING {
                return ended(DeploymentStatus::Stopped, StatusReason::StoppedExternally);
            }
            ended(
                DeploymentStatus::Failed,
                StatusReason::Exited {
                    exit_code: Some(code),
                },
            )
        }
    }
}

fn ended(status: DeploymentStatus, reason: StatusReason) -> Phase {
    Phase::Ended { status, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: ContainerStateStatusEnum, code: i64, oom: bool) -> ContainerState {
        ContainerState {
            status: Some(status),
            exit_code: Some(code),
            oom_killed: Some(oom),
            started_at: Some("2026-01-01T00:00:00.5Z".into()),
            ..Default::default()
        }
    }

    #[test]
    fn exits_oom_kills_and_stops() {
        use ContainerStateStatusEnum as S;
        assert_eq!(
            phase(&state(S::EXITED, 3, false), false),
            ended(
                DeploymentStatus::Failed,
                StatusReason::Exited { exit_code: Some(3) }
            )
        );
        assert_eq!(
            phase(&state(S::EXITED, 137, true), false),
            ended(DeploymentStatus::Failed, StatusReason::OomKilled)
        );
        // An OOM kill is an OOM kill even while we were stopping it.
        assert!(matches!(
            phase(&state(S::EXITED, 137, true), true),
            Phase::Ended {
                status: DeploymentStatus::Failed,
                ..
            }
        ));
        assert!(matches!(
            phase(&state(S::EXITED, 137, false), true),
            Phase::Ended {
                status: DeploymentStatus::Stopped,
                ..
            }
        ));
        assert!(matches!(
            phase(&state(S::EXITED, 143, false), false),
            Phase::Ended {
                status: DeploymentStatus::Stopped,
                ..
            }
        ));
        assert_eq!(phase(&state(S::CREATED, 0, false), false), Phase::Starting);
        assert!(matches!(
            phase(&state(S::RUNNING, 0, false), false),
            Phase::Running { .. }
        ));
    }
}
