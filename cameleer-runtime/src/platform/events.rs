//! What the [`Platform`](crate::Platform) tells its subscribers.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{AppRef, BuildProgress, Deployment, DeploymentId, DeploymentStatus, StatusReason};

/// Something that happened on the platform, for dashboards and server-sent
/// events. Get them with [`Platform::subscribe`](crate::Platform::subscribe).
///
/// On the wire the variant is a `type` field: `{"type": "status", ...}`.
///
/// # Examples
///
/// ```
/// use cameleer_runtime::PlatformEvent;
///
/// # fn print(event: PlatformEvent) {
/// match &event {
///     PlatformEvent::Status(s) => println!("{} v{} is {}", s.app, s.version, s.status),
///     PlatformEvent::BuildProgress(p) => println!("{} v{}: {}", p.app, p.version, p.message),
///     PlatformEvent::Unhealthy(u) => println!("{} v{} unhealthy: {}", u.app, u.version, u.reason),
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PlatformEvent {
    /// A deployment entered a status (including its first one, on creation).
    Status(StatusEvent),
    /// A line of build output.
    BuildProgress(BuildProgressEvent),
    /// The backend reports a RUNNING app's health check failing. The status
    /// stays RUNNING: a failing probe is often transient, and a backend that
    /// gives up on the app reports a crash or a stop, which does change it.
    Unhealthy(UnhealthyEvent),
}

impl PlatformEvent {
    /// The app the event is about (to filter by tenant, say).
    pub fn app(&self) -> &AppRef {
        match self {
            Self::Status(e) => &e.app,
            Self::BuildProgress(e) => &e.app,
            Self::Unhealthy(e) => &e.app,
        }
    }

    /// The deployment the event is about.
    pub fn deployment(&self) -> DeploymentId {
        match self {
            Self::Status(e) => e.deployment,
            Self::BuildProgress(e) => e.deployment,
            Self::Unhealthy(e) => e.deployment,
        }
    }
}

/// A deployment entered `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEvent {
    /// The deployment.
    pub deployment: DeploymentId,
    /// Its app.
    pub app: AppRef,
    /// Its version.
    pub version: u64,
    /// The status entered.
    pub status: DeploymentStatus,
    /// Why, as recorded in the history.
    pub reason: Option<StatusReason>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl StatusEvent {
    /// The event for the latest history entry of `d`.
    pub fn latest(d: &Deployment) -> Self {
        let last = d.history.last();
        Self {
            deployment: d.id,
            app: d.app.clone(),
            version: d.version,
            status: d.status,
            reason: last.and_then(|c| c.reason.clone()),
            at: last.map_or(d.created_at, |c| c.at),
        }
    }
}

/// A line of build output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildProgressEvent {
    /// The deployment being built.
    pub deployment: DeploymentId,
    /// Its app.
    pub app: AppRef,
    /// Its version.
    pub version: u64,
    /// What the builder said.
    pub message: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl BuildProgressEvent {
    pub(crate) fn new(app: &AppRef, version: u64, progress: BuildProgress) -> Self {
        Self {
            deployment: progress.deployment,
            app: app.clone(),
            version,
            message: progress.message,
            at: progress.at,
        }
    }
}

/// A RUNNING app's health check is failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnhealthyEvent {
    /// The deployment.
    pub deployment: DeploymentId,
    /// Its app.
    pub app: AppRef,
    /// Its version.
    pub version: u64,
    /// The probe's output.
    pub reason: String,
    /// When the backend saw it.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variant_is_a_type_field_next_to_the_event_fields() {
        let event = PlatformEvent::Status(StatusEvent {
            deployment: DeploymentId::new_random(),
            app: AppRef::parse("acme", "orders", "dev").unwrap(),
            version: 3,
            status: DeploymentStatus::Failed,
            reason: Some(crate::StatusReason::Exited { exit_code: Some(1) }),
            at: OffsetDateTime::UNIX_EPOCH,
        });
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "status");
        assert_eq!(json["status"], "FAILED");
        assert_eq!(json["app"]["tenant"], "acme");
        assert_eq!(json["at"], "1970-01-01T00:00:00Z");
        let back: PlatformEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
