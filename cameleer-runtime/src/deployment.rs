//! Deployments and their state machine.
//!
//! A [`Deployment`] is one version of one [`AppRef`]. Its
//! [`DeploymentStatus`] moves only through [`transition`], one pure function
//! over [`DeploymentEvent`]s; every change is kept in the history with a time
//! and a reason.
//!
//! ```text
//!            BuildSucceeded            Healthy
//! BUILDING ─────────────────> STARTING ───────> RUNNING
//!    │ BuildFailed               │ StartFailed/     │ Crashed
//!    │                           │ Crashed          │
//!    └──────────> FAILED <───────┘<─────────────────┘
//! Stopped/Superseded: BUILDING, STARTING, RUNNING, FAILED ──> STOPPED
//! Restarted:          RUNNING, FAILED, STOPPED            ──> STARTING
//! ```

use std::fmt;

use cameleer_build::{ImageRef, Sha256Digest};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{AppConfig, AppRef, DeploymentId, Error, Result, StatusReason};

/// Where a deployment is in its life. Serialized exactly as the upper-case
/// names (`"BUILDING"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStatus {
    /// The image is being built.
    Building,
    /// The container has been started and is not yet healthy.
    Starting,
    /// The app is up: its health check passes.
    Running,
    /// The build, the start or the app itself failed; the history says why.
    Failed,
    /// Stopped on request, or replaced by a newer version.
    Stopped,
}

impl DeploymentStatus {
    /// The wire name, e.g. `"RUNNING"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Building => "BUILDING",
            Self::Starting => "STARTING",
            Self::Running => "RUNNING",
            Self::Failed => "FAILED",
            Self::Stopped => "STOPPED",
        }
    }

    /// Whether the deployment is still on its way up (BUILDING or STARTING).
    pub fn is_in_progress(&self) -> bool {
        matches!(self, Self::Building | Self::Starting)
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened to a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeploymentEvent {
    /// The image was built (or found in the cache).
    BuildSucceeded,
    /// The image build failed, or a controller restart interrupted it.
    BuildFailed {
        /// Why: [`StatusReason::BuildFailed`] with the builder's text, or
        /// [`StatusReason::Interrupted`].
        reason: StatusReason,
    },
    /// The health check passed.
    Healthy,
    /// The app did not come up: it exited, was OOM-killed, its health check
    /// timed out, the runtime refused to start it, …
    StartFailed {
        /// Why.
        reason: StatusReason,
        /// The app's last output, when the backend had it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
    },
    /// The app failed after it was up: it exited on its own, the kernel or
    /// the JVM ran out of memory, it crash-loops, or it is gone.
    Crashed {
        /// Why.
        reason: StatusReason,
    },
    /// The app was stopped.
    Stopped {
        /// Why: on request, or from outside the platform.
        reason: StatusReason,
    },
    /// A newer version became RUNNING and replaced this one.
    Superseded {
        /// The version that replaced it.
        by_version: u64,
    },
    /// The app was (re)started on request.
    Restarted,
}

impl DeploymentEvent {
    /// The reason recorded in the history for this event.
    pub fn reason(&self) -> Option<StatusReason> {
        match self {
            Self::BuildSucceeded | Self::Healthy | Self::Restarted => None,
            Self::BuildFailed { reason }
            | Self::StartFailed { reason, .. }
            | Self::Crashed { reason }
            | Self::Stopped { reason } => Some(reason.clone()),
            Self::Superseded { by_version } => Some(StatusReason::Superseded {
                by_version: *by_version,
            }),
        }
    }

    /// The app's output recorded with this event, if any.
    pub fn output(&self) -> Option<&str> {
        match self {
            Self::StartFailed { output, .. } => output.as_deref(),
            _ => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::BuildSucceeded => "build_succeeded",
            Self::BuildFailed { .. } => "build_failed",
            Self::Healthy => "healthy",
            Self::StartFailed { .. } => "start_failed",
            Self::Crashed { .. } => "crashed",
            Self::Stopped { .. } => "stopped",
            Self::Superseded { .. } => "superseded",
            Self::Restarted => "restarted",
        }
    }
}

impl fmt::Display for DeploymentEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The transition table: the status that `event` leads to from `from`, or
/// [`Error::IllegalTransition`].
///
/// Pure and total; the only place where the table lives.
///
/// # Examples
///
/// ```
/// use cameleer_runtime::{transition, DeploymentEvent, DeploymentStatus::*};
///
/// assert_eq!(transition(Building, &DeploymentEvent::BuildSucceeded).unwrap(), Starting);
/// assert_eq!(transition(Starting, &DeploymentEvent::Healthy).unwrap(), Running);
/// let err = transition(Stopped, &DeploymentEvent::Healthy).unwrap_err();
/// assert_eq!(err.code(), "illegal_transition");
/// ```
pub fn transition(from: DeploymentStatus, event: &DeploymentEvent) -> Result<DeploymentStatus> {
    use DeploymentEvent as E;
    use DeploymentStatus as S;
    let to = match (from, event) {
        (S::Building, E::BuildSucceeded) => S::Starting,
        (S::Building, E::BuildFailed { .. }) => S::Failed,
        (S::Starting, E::Healthy) => S::Running,
        (S::Starting, E::StartFailed { .. }) => S::Failed,
        (S::Starting | S::Running, E::Crashed { .. }) => S::Failed,
        (S::Building | S::Starting | S::Running | S::Failed, E::Stopped { .. }) => S::Stopped,
        (S::Running | S::Failed, E::Superseded { .. }) => S::Stopped,
        (S::Running | S::Failed | S::Stopped, E::Restarted) => S::Starting,
        _ => {
            return Err(Error::IllegalTransition {
                from,
                event: Box::new(event.clone()),
            });
        }
    };
    Ok(to)
}

/// One entry of a deployment's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusChange {
    /// The status entered.
    pub status: DeploymentStatus,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: OffsetDateTime,
    /// Why, when there is more to say than the status (exit code, OOM kill,
    /// build error text). Histories stored before reasons were typed load
    /// through [`StatusReason::from_legacy`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::reason::tolerant"
    )]
    pub reason: Option<StatusReason>,
    /// The app's last output, when a failure came with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// How a deployment got its image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeploymentSource {
    /// Built from the artifact.
    Build,
    /// The image of a deployment in another environment, promoted.
    Promotion {
        /// The deployment whose image was promoted.
        from: DeploymentId,
    },
    /// The image of an earlier version of the same app and environment.
    Rollback {
        /// The version rolled back to.
        to_version: u64,
    },
}

/// One version of one app in one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deployment {
    /// The unique id.
    pub id: DeploymentId,
    /// Which app, where.
    pub app: AppRef,
    /// Per-`AppRef` version: allocated by the store, monotonic, never reused.
    pub version: u64,
    /// SHA-256 of the JAR this deployment runs.
    pub artifact: Sha256Digest,
    /// The image, pinned to its digest once known (after the build, or from
    /// the start for a promotion or a rollback).
    pub image: Option<ImageRef>,
    /// How the image was obtained.
    pub source: DeploymentSource,
    /// The environment's config this version runs with.
    pub config: AppConfig,
    /// The current status (the last entry of `history`).
    pub status: DeploymentStatus,
    /// Every status entered, oldest first.
    pub history: Vec<StatusChange>,
    /// When the deployment was created.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
    /// Bumped by the store on every write; conditional updates compare it.
    pub revision: u64,
}

impl Deployment {
    /// A new deployment in BUILDING (or STARTING when the image is already
    /// known, as for promotions and rollbacks), revision 0.
    pub fn new(
        app: AppRef,
        version: u64,
        artifact: Sha256Digest,
        image: Option<ImageRef>,
        source: DeploymentSource,
        config: AppConfig,
        at: OffsetDateTime,
    ) -> Self {
        let status = if image.is_some() {
            DeploymentStatus::Starting
        } else {
            DeploymentStatus::Building
        };
        let reason = match &source {
            DeploymentSource::Build => None,
            DeploymentSource::Promotion { from } => Some(StatusReason::Promoted { from: *from }),
            DeploymentSource::Rollback { to_version } => Some(StatusReason::RolledBack {
                to_version: *to_version,
            }),
        };
        Self {
            id: DeploymentId::new_random(),
            app,
            version,
            artifact,
            image,
            source,
            config,
            status,
            history: vec![StatusChange {
                status,
                at,
                reason,
                output: None,
            }],
            created_at: at,
            revision: 0,
        }
    }

    /// Applies `event` at time `at`: moves the status through [`transition`]
    /// and appends to the history. On error nothing changes.
    ///
    /// Times in the history never go backwards: an `at` earlier than the last
    /// entry (a clock step) is recorded as the last entry's time.
    pub fn apply(&mut self, event: &DeploymentEvent, at: OffsetDateTime) -> Result<()> {
        let to = transition(self.status, event)?;
        let last = self.history.last().map(|c| c.at).unwrap_or(at);
        self.status = to;
        self.history.push(StatusChange {
            status: to,
            at: at.max(last),
            reason: event.reason(),
            output: event.output().map(str::to_string),
        });
        Ok(())
    }

    /// The reason of the latest status change, if any.
    pub fn last_reason(&self) -> Option<&StatusReason> {
        self.history.last().and_then(|c| c.reason.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeploymentStatus as S;

    #[test]
    fn wire_names_are_exact() {
        for (s, name) in [
            (S::Building, "BUILDING"),
            (S::Starting, "STARTING"),
            (S::Running, "RUNNING"),
            (S::Failed, "FAILED"),
            (S::Stopped, "STOPPED"),
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<S>(&format!("\"{name}\"")).unwrap(),
                s
            );
            assert_eq!(s.to_string(), name);
        }
        assert!(serde_json::from_str::<S>("\"running\"").is_err());
    }

    #[test]
    fn illegal_transitions_change_nothing() {
        let app = AppRef::parse("t", "a", "e").unwrap();
        let mut d = Deployment::new(
            app,
            1,
            Sha256Digest::of(b"jar"),
            None,
            DeploymentSource::Build,
            AppConfig::default(),
            OffsetDateTime::now_utc(),
        );
        let before = d.clone();
        let err = d
            .apply(&DeploymentEvent::Healthy, OffsetDateTime::now_utc())
            .unwrap_err();
        assert_eq!(err.code(), "illegal_transition");
        assert_eq!(d, before);
        d.apply(
            &DeploymentEvent::Crashed {
                reason: StatusReason::OomKilled,
            },
            OffsetDateTime::now_utc(),
        )
        .unwrap_err();
        let failed = StatusReason::BuildFailed {
            detail: "no base image".into(),
        };
        d.apply(
            &DeploymentEvent::BuildFailed {
                reason: failed.clone(),
            },
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        assert_eq!(d.status, S::Failed);
        assert_eq!(d.last_reason(), Some(&failed));
    }
}
