//! What the [`Platform`](crate::Platform) tells its subscribers, and the
//! stream they read it from.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

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
///     PlatformEvent::Lagged { missed } => println!("missed {missed} events; re-read the status"),
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
    /// Not an event: this subscriber fell more than
    /// [`PlatformOptions::event_capacity`](crate::PlatformOptions::event_capacity)
    /// events behind, and the `missed` oldest of them are lost to it. It
    /// comes in their place, before the first event that was kept; what a
    /// subscriber shows may be stale, so it should re-read it
    /// ([`Platform::status`](crate::Platform::status)). Only
    /// [`PlatformEvents`] produces it, never for a subscriber that keeps up.
    Lagged {
        /// How many events were lost.
        missed: u64,
    },
}

impl PlatformEvent {
    /// The app the event is about (to filter by tenant, say); `None` for
    /// [`Lagged`](Self::Lagged), which is about every app.
    pub fn app(&self) -> Option<&AppRef> {
        match self {
            Self::Status(e) => Some(&e.app),
            Self::BuildProgress(e) => Some(&e.app),
            Self::Unhealthy(e) => Some(&e.app),
            Self::Lagged { .. } => None,
        }
    }

    /// The deployment the event is about; `None` for
    /// [`Lagged`](Self::Lagged).
    pub fn deployment(&self) -> Option<DeploymentId> {
        match self {
            Self::Status(e) => Some(e.deployment),
            Self::BuildProgress(e) => Some(e.deployment),
            Self::Unhealthy(e) => Some(e.deployment),
            Self::Lagged { .. } => None,
        }
    }
}

/// The events of a [`Platform`](crate::Platform) from the moment of
/// [`subscribe`](crate::Platform::subscribe), as a [`Stream`].
///
/// Each subscriber has its own buffer of
/// [`PlatformOptions::event_capacity`](crate::PlatformOptions::event_capacity)
/// events. One that falls further behind loses the oldest and gets one
/// [`PlatformEvent::Lagged`] with their count in their place, then the
/// events that were kept; it is never disconnected for being slow. The
/// stream ends when the platform is gone (every clone dropped and its
/// background work over).
///
/// # Examples
///
/// ```no_run
/// use futures::StreamExt;
/// use cameleer_runtime::{AppRef, Platform, PlatformEvent};
///
/// # async fn demo(platform: Platform, app: AppRef) {
/// let mut events = platform.subscribe();
/// while let Some(event) = events.next().await {
///     match event {
///         PlatformEvent::Lagged { .. } => { /* re-read what is shown */ }
///         e if e.app() == Some(&app) => println!("{e:?}"),
///         _ => {}
///     }
/// }
/// # }
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct PlatformEvents {
    inner: BoxStream<'static, PlatformEvent>,
}

impl PlatformEvents {
    pub(crate) fn new(rx: broadcast::Receiver<PlatformEvent>) -> Self {
        let inner = futures::stream::unfold(rx, |mut rx| async move {
            let event = match rx.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => PlatformEvent::Lagged { missed },
                Err(RecvError::Closed) => return None,
            };
            Some((event, rx))
        });
        Self {
            inner: Box::pin(inner),
        }
    }
}

impl std::fmt::Debug for PlatformEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformEvents").finish_non_exhaustive()
    }
}

impl Stream for PlatformEvents {
    type Item = PlatformEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
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

        let lagged = serde_json::to_value(PlatformEvent::Lagged { missed: 7 }).unwrap();
        assert_eq!(lagged, serde_json::json!({"type": "lagged", "missed": 7}));
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_gets_one_lagged_marker_then_what_was_kept() {
        use futures::StreamExt;

        let (tx, rx) = broadcast::channel(2);
        let mut events = PlatformEvents::new(rx);
        let app = AppRef::parse("acme", "orders", "dev").unwrap();
        let progress = |n: u64| {
            PlatformEvent::BuildProgress(BuildProgressEvent {
                deployment: DeploymentId::new_random(),
                app: app.clone(),
                version: n,
                message: format!("line {n}"),
                at: OffsetDateTime::UNIX_EPOCH,
            })
        };
        for n in 1..=5 {
            tx.send(progress(n)).unwrap();
        }
        assert_eq!(
            events.next().await,
            Some(PlatformEvent::Lagged { missed: 3 })
        );
        let kept: Vec<u64> = events
            .by_ref()
            .take(2)
            .map(|e| match e {
                PlatformEvent::BuildProgress(p) => p.version,
                other => panic!("{other:?}"),
            })
            .collect()
            .await;
        assert_eq!(kept, [4, 5]);
        drop(tx);
        assert_eq!(events.next().await, None, "ends with the platform");
    }
}
