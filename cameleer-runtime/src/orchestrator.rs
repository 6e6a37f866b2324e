//! The contract every runtime backend implements.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use cameleer_build::ImageRef;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    AppConfig, AppRef, Deployment, DeploymentId, DeploymentStatus, Result, StatusReason, TenantId,
};

/// What a backend is asked to run: one version of one app.
///
/// The [`Deployment`] record itself (history, store revision) belongs to the
/// [`Platform`](crate::Platform); the backend gets the identity it must label
/// its resources with and the pinned image and config to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    /// Which app, where.
    pub app: AppRef,
    /// The deployment being started.
    pub deployment: DeploymentId,
    /// Its version.
    pub version: u64,
    /// The image, pinned to a digest.
    pub image: ImageRef,
    /// The environment's config.
    pub config: AppConfig,
}

impl DeployRequest {
    /// The request that starts `deployment` (which must have an image).
    pub fn for_deployment(deployment: &Deployment) -> Option<Self> {
        Some(Self {
            app: deployment.app.clone(),
            deployment: deployment.id,
            version: deployment.version,
            image: deployment.image.clone()?,
            config: deployment.config.clone(),
        })
    }
}

/// What the backend sees of an app right now: the truth read back from the
/// engine or cluster, not from the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppStatus {
    /// Which app.
    pub app: AppRef,
    /// STARTING, RUNNING, FAILED or STOPPED (a backend never reports BUILDING).
    pub status: DeploymentStatus,
    /// The deployment that is (or was last) running.
    pub deployment: Option<DeploymentId>,
    /// Its version.
    pub version: Option<u64>,
    /// Why it is in this state (exit code, OOM kill, health failure, or
    /// [`StatusReason::InstancesNotReady`] while some instances are not).
    pub reason: Option<StatusReason>,
    /// How many instances of the app pass their health check and serve at
    /// its address now, of whichever version: during a rolling update the
    /// old and the new ones together, so this never drops below
    /// [`desired_instances`](Self::desired_instances) while a redeploy
    /// goes well.
    #[serde(default)]
    pub ready_instances: u32,
    /// How many instances the reported deployment asks for (its config's
    /// [`replicas`](crate::AppConfig::replicas)); 0 when the backend cannot
    /// tell. The status is RUNNING only when `ready_instances` reaches it.
    #[serde(default)]
    pub desired_instances: u32,
    /// How often instances of the reported deployment were restarted after
    /// they crashed (a crashed instance of an app with several is replaced
    /// while the others serve).
    #[serde(default)]
    pub restarts: u32,
}

impl AppStatus {
    /// The status of a deployment of one instance: ready when RUNNING.
    ///
    /// ```
    /// use cameleer_runtime::{AppRef, AppStatus, DeploymentStatus};
    ///
    /// let app = AppRef::parse("acme", "orders", "dev").unwrap();
    /// let s = AppStatus::new(app, DeploymentStatus::Running, None, Some(1), None)
    ///     .with_instances(2, 3);
    /// assert_eq!((s.ready_instances, s.desired_instances), (2, 3));
    /// ```
    pub fn new(
        app: AppRef,
        status: DeploymentStatus,
        deployment: Option<DeploymentId>,
        version: Option<u64>,
        reason: Option<StatusReason>,
    ) -> Self {
        Self {
            app,
            status,
            deployment,
            version,
            reason,
            ready_instances: u32::from(status == DeploymentStatus::Running),
            desired_instances: 1,
            restarts: 0,
        }
    }

    /// The same status with these instance counts.
    pub fn with_instances(mut self, ready: u32, desired: u32) -> Self {
        self.ready_instances = ready;
        self.desired_instances = desired;
        self
    }

    /// The same status with this restart count.
    pub fn with_restarts(mut self, restarts: u32) -> Self {
        self.restarts = restarts;
        self
    }
}

/// The status of a deployment of `desired` instances of which `ready` pass
/// their health check, when at least one runs: RUNNING only when all are
/// ready, else STARTING with [`StatusReason::InstancesNotReady`] saying how
/// many are not. The one rule every backend applies.
///
/// ```
/// use cameleer_runtime::{DeploymentStatus, StatusReason, instances_status};
///
/// assert_eq!(instances_status(3, 3), (DeploymentStatus::Running, None));
/// assert_eq!(
///     instances_status(2, 3),
///     (DeploymentStatus::Starting, Some(StatusReason::InstancesNotReady { ready: 2, desired: 3 })),
/// );
/// ```
pub fn instances_status(ready: u32, desired: u32) -> (DeploymentStatus, Option<StatusReason>) {
    if ready >= desired.max(1) {
        (DeploymentStatus::Running, None)
    } else {
        (
            DeploymentStatus::Starting,
            Some(StatusReason::InstancesNotReady { ready, desired }),
        )
    }
}

/// One line of an app's list entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSummary {
    /// Which app.
    pub app: AppRef,
    /// Its runtime status.
    pub status: DeploymentStatus,
    /// The deployment that is (or was last) running.
    pub deployment: Option<DeploymentId>,
    /// Its version.
    pub version: Option<u64>,
    /// Ready instances of the app; see [`AppStatus::ready_instances`].
    #[serde(default)]
    pub ready_instances: u32,
    /// Instances the deployment asks for; see
    /// [`AppStatus::desired_instances`].
    #[serde(default)]
    pub desired_instances: u32,
}

impl From<AppStatus> for AppSummary {
    fn from(s: AppStatus) -> Self {
        Self {
            app: s.app,
            status: s.status,
            deployment: s.deployment,
            version: s.version,
            ready_instances: s.ready_instances,
            desired_instances: s.desired_instances,
        }
    }
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line an app wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// When the runtime received it.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub ts: OffsetDateTime,
    /// stdout or stderr.
    pub stream: LogSource,
    /// The text, without the trailing newline.
    pub line: String,
    /// Which instance of the app wrote it (`0..replicas`), when the backend
    /// runs several and says; the lines of every instance are merged.
    /// Absent on the wire when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
}

/// How to read logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only lines written at or after this time.
    pub since: Option<SystemTime>,
    /// Keep the stream open and deliver new lines as they are written.
    pub follow: bool,
}

/// Something the backend observed without being asked: a crash, an OOM kill,
/// a health change. The [`Platform`](crate::Platform) turns these into
/// deployment transitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeEvent {
    /// Which app.
    pub app: AppRef,
    /// Which deployment of it.
    pub deployment: DeploymentId,
    /// What happened.
    pub kind: RuntimeEventKind,
    /// When the backend saw it.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// What happened, in a [`RuntimeEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RuntimeEventKind {
    /// The health check passed.
    Healthy,
    /// The health check started failing while RUNNING.
    Unhealthy {
        /// The probe's output.
        reason: String,
    },
    /// The app failed on its own: it exited, the kernel or the JVM ran out
    /// of memory, it crash-loops. Classify exits with
    /// [`StatusReason::from_exit`], which tells the JVM's own
    /// `OutOfMemoryError` from an exit code 3 of the app's.
    Failed {
        /// Why.
        reason: StatusReason,
    },
    /// The app was stopped by something outside the platform (a `docker
    /// stop`, SIGTERM from the host): STOPPED, not FAILED.
    Stopped {
        /// Why, usually [`StatusReason::StoppedExternally`].
        reason: StatusReason,
    },
    /// The backend's resources for the deployment are gone.
    Removed,
}

/// What the host wants of one deployment after a controller restart; see
/// [`RuntimeOrchestrator::reconcile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// It should run (it is BUILDING, STARTING or RUNNING in the store).
    Run,
    /// The app has no active version and this one FAILED or was STOPPED:
    /// keep its resources, if it has any, stopped, for the app's status and
    /// logs.
    KeepStopped,
}

/// One deployment and what the host wants of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    /// The deployment, as the store has it.
    pub deployment: Deployment,
    /// Run it, or keep it stopped.
    pub intent: Intent,
}

impl Desired {
    /// What the store's deployments of every app ask of a backend, sorted by
    /// app, newest version first:
    ///
    /// - each active deployment (BUILDING, STARTING, RUNNING) runs;
    /// - of an app with none active, the newest versions that may have
    ///   resources are kept stopped: those with an image, newest first, down
    ///   to the newest that ever ran. A version that never got an image
    ///   (its build failed) never had resources and says nothing about the
    ///   older ones, so the version before it is kept; anything older than
    ///   a version that ran was retired when it came up;
    /// - every other deployment is absent, so a backend removes its
    ///   resources.
    ///
    /// `deployments` are the active ones, the newest of every app (see
    /// [`DeploymentStore::latest_of_every_app`](crate::DeploymentStore::latest_of_every_app))
    /// and, for an app whose newest version has no image or never ran
    /// ([`Desired::needs_older`]), its older versions; duplicates are
    /// ignored.
    pub fn plan(deployments: impl IntoIterator<Item = Deployment>) -> Vec<Desired> {
        let mut all: Vec<Deployment> = deployments.into_iter().collect();
        all.sort_by(|a, b| (&a.app, b.version).cmp(&(&b.app, a.version)));
        all.dedup_by_key(|d| d.id);
        let active_apps: std::collections::BTreeSet<AppRef> = all
            .iter()
            .filter(|d| is_active(d))
            .map(|d| d.app.clone())
            .collect();
        // Apps whose kept-stopped versions reached one that ran.
        let mut settled = std::collections::BTreeSet::new();
        let mut plan = Vec::with_capacity(all.len());
        for d in all {
            let intent = if is_active(&d) {
                Intent::Run
            } else if !active_apps.contains(&d.app)
                && d.image.is_some()
                && !settled.contains(&d.app)
            {
                if ran(&d) {
                    settled.insert(d.app.clone());
                }
                Intent::KeepStopped
            } else {
                continue;
            };
            plan.push(Desired {
                deployment: d,
                intent,
            });
        }
        plan
    }

    /// Whether [`plan`](Self::plan) needs the older versions of the app
    /// whose newest deployment is `newest`: it is not active, and it has no
    /// image or never ran, so an older version may be the one whose
    /// resources are kept.
    pub fn needs_older(newest: &Deployment) -> bool {
        !is_active(newest) && (newest.image.is_none() || !ran(newest))
    }
}

fn is_active(d: &Deployment) -> bool {
    d.status.is_in_progress() || d.status == DeploymentStatus::Running
}

/// Whether the deployment was ever RUNNING.
fn ran(d: &Deployment) -> bool {
    d.history
        .iter()
        .any(|c| c.status == DeploymentStatus::Running)
}

/// What [`RuntimeOrchestrator::reconcile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    /// Running deployments the backend adopted (it runs them and the store
    /// knows them).
    pub adopted: Vec<DeploymentId>,
    /// Resources under our labels that the store does not know, removed.
    pub removed_orphans: Vec<String>,
    /// Deployments the store thinks are active but that the backend does not
    /// run, with their actual status.
    pub missing: Vec<(DeploymentId, AppStatus)>,
}

/// A stream of log lines.
pub type LogStream = BoxStream<'static, Result<LogLine>>;

/// A stream of runtime events.
pub type EventStream = BoxStream<'static, RuntimeEvent>;

/// Runs apps: the contract between the [`Platform`](crate::Platform) and a
/// container runtime (Docker, Kubernetes, or a host's own).
///
/// The six operations are required; the rest have defaults so a custom
/// backend stays small. Every operation must be idempotent: a controller that
/// dies in the middle of a step converges by running the step again.
///
/// Backends must keep tenants apart: `list_apps(t)` never shows another
/// tenant's apps, and apps of one tenant+env cannot reach those of another.
#[async_trait]
pub trait RuntimeOrchestrator: Send + Sync {
    /// Starts `request.version` of `request.app` and returns once it is
    /// RUNNING (its health check passed within
    /// [`AppConfig::start_timeout`]) or has failed.
    ///
    /// A previous version of the same app keeps running until the new one is
    /// RUNNING; then the backend stops and removes it. If the new one fails,
    /// the previous one is left running and the error says why (exit code,
    /// OOM kill, health timeout).
    async fn deploy_app(&self, request: &DeployRequest) -> Result<AppStatus>;

    /// Stops every running version of `app`. Stopping a stopped app is a
    /// no-op; stopping an app the backend never ran is
    /// [`Error::NotFound`](crate::Error::NotFound).
    async fn stop_app(&self, app: &AppRef) -> Result<()>;

    /// Restarts the current version of `app` (also when stopped or failed)
    /// and returns once it is RUNNING or has failed.
    async fn restart_app(&self, app: &AppRef) -> Result<AppStatus>;

    /// The app's output, stdout and stderr tagged, from `options.since`,
    /// following new lines when `options.follow`. Memory stays bounded however
    /// fast the app writes and however slowly the caller reads.
    ///
    /// A redeploy (or a removal) replacing what the stream reads is not an
    /// error of the stream: it ends cleanly, or goes on with the new
    /// version; the backend's own "no such container" never reaches the
    /// caller.
    async fn app_logs(&self, app: &AppRef, options: &LogOptions) -> Result<LogStream>;

    /// The output of one deployment of `app` (the version it ran), from
    /// `options.since`, following new lines when `options.follow` while it
    /// runs; readable after it stopped for as long as the backend keeps its
    /// resources (a stopped version that was kept, or the old version in
    /// the moments before a redeploy removes it). The
    /// [`LogForwarder`](crate::logs::LogForwarder) reads it to copy each
    /// deployment's lines into a [`LogStore`](crate::logs::LogStore), with
    /// timestamps that do not go backwards within one deployment.
    ///
    /// The default reads [`app_logs`](Self::app_logs) when `deployment` is
    /// the one the backend runs for the app now, and is
    /// [`Error::NotFound`](crate::Error::NotFound) otherwise: right for a
    /// backend that keeps one version per app, but a backend that keeps a
    /// stopped version beside a new one should read that version's own
    /// output.
    async fn deployment_logs(
        &self,
        app: &AppRef,
        deployment: &DeploymentId,
        options: &LogOptions,
    ) -> Result<LogStream> {
        let now = self.app_status(app).await?;
        if now.deployment != Some(*deployment) {
            return Err(crate::Error::not_found("deployment", deployment));
        }
        self.app_logs(app, options).await
    }

    /// What runs for `app` now, read from the runtime.
    async fn app_status(&self, app: &AppRef) -> Result<AppStatus>;

    /// Every app of `tenant` the backend runs or has stopped; never another
    /// tenant's.
    async fn list_apps(&self, tenant: &TenantId) -> Result<Vec<AppSummary>>;

    /// Crashes, OOM kills and health changes as they happen.
    ///
    /// Report only what the platform did not cause: a container the backend
    /// stops on request or replaces in a redeploy is not a `Failed` event.
    /// The platform ignores events for deployments the store does not know
    /// and events its state machine no longer allows.
    ///
    /// The default is a stream that never yields: the platform then learns of
    /// crashes only through [`app_status`](Self::app_status).
    async fn events(&self) -> Result<EventStream> {
        Ok(Box::pin(futures::stream::pending()))
    }

    /// After a controller restart: bring what runs under our labels in line
    /// with what the host's store wants, and report what the store believes
    /// runs but does not.
    ///
    /// `desired` is the store's intent, per deployment ([`Desired`]); it
    /// wins over anything the backend cached on its resources:
    ///
    /// - [`Intent::Run`]: adopt it if it runs (finishing a start a dead
    ///   controller cut short); start it again if it is only stopped on
    ///   request (the stop never reached the store, so it did not happen);
    ///   report it in `missing`, with its actual status and reason, if it
    ///   failed or has no resources. Older versions of the app that still
    ///   run are retired once it serves.
    /// - [`Intent::KeepStopped`]: a version of an app with none active that
    ///   FAILED or was STOPPED (the newest that may have resources, see
    ///   [`Desired::plan`]; there may be several per app, of which at most
    ///   one has resources): never adopted, stopped if it still runs, its
    ///   resources kept for the app's status and logs.
    /// - Anything else under our labels is an orphan and is removed (a
    ///   backend may give young resources a grace period, since another
    ///   controller may be deploying them).
    ///
    /// The default does nothing, which suits a backend whose resources die
    /// with the controller.
    async fn reconcile(&self, desired: &[Desired]) -> Result<ReconcileReport> {
        let _ = desired;
        Ok(ReconcileReport::default())
    }

    /// How long a deploy may take beyond the app's own start timeout (image
    /// pulls, container creation) before the platform gives up on it.
    fn deploy_grace(&self) -> Duration {
        Duration::from_secs(60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppConfig, DeploymentEvent, DeploymentSource, ImageRef, Sha256Digest};

    /// Version `version` of `app`, through `events` from BUILDING; with an
    /// image once its build succeeded.
    fn deployment(app: &str, version: u64, events: &[DeploymentEvent]) -> Deployment {
        let now = OffsetDateTime::now_utc();
        let mut d = Deployment::new(
            AppRef::parse("acme", app, "dev").unwrap(),
            version,
            Sha256Digest::of(b"jar"),
            None,
            DeploymentSource::Build,
            AppConfig::default(),
            now,
        );
        for e in events {
            if e == &DeploymentEvent::BuildSucceeded {
                d.image = Some(
                    ImageRef::new(None, "acme/app", None, Some(Sha256Digest::of(b"image")))
                        .unwrap(),
                );
            }
            d.apply(e, now).unwrap();
        }
        d
    }

    fn intents(plan: &[Desired]) -> Vec<(String, u64, Intent)> {
        plan.iter()
            .map(|d| {
                let d2 = &d.deployment;
                (d2.app.app.to_string(), d2.version, d.intent)
            })
            .collect()
    }

    #[test]
    fn the_version_before_a_failed_build_is_kept_stopped() {
        use DeploymentEvent as E;
        let stopped = E::Stopped {
            reason: StatusReason::StoppedOnRequest,
        };
        let build_failed = E::BuildFailed {
            reason: StatusReason::other("no"),
        };
        let start_failed = E::StartFailed {
            reason: StatusReason::other("no"),
            output: None,
        };
        let plan = Desired::plan([
            // a: v1 ran and was stopped; v2's build failed (no image).
            deployment("a", 1, &[E::BuildSucceeded, E::Healthy, stopped.clone()]),
            deployment("a", 2, std::slice::from_ref(&build_failed)),
            // b: v1 ran and was stopped; v2 never came up; v3's build failed.
            deployment("b", 1, &[E::BuildSucceeded, E::Healthy, stopped.clone()]),
            deployment("b", 2, &[E::BuildSucceeded, start_failed]),
            deployment("b", 3, std::slice::from_ref(&build_failed)),
            // c: runs v1; v2's build failed.
            deployment("c", 1, &[E::BuildSucceeded, E::Healthy]),
            deployment("c", 2, std::slice::from_ref(&build_failed)),
            // d: v2 ran and was stopped, so v1 was retired when it came up.
            deployment("d", 1, &[E::BuildSucceeded, E::Healthy, stopped.clone()]),
            deployment("d", 2, &[E::BuildSucceeded, E::Healthy, stopped]),
            // e: never built at all.
            deployment("e", 1, &[build_failed]),
        ]);
        assert_eq!(
            intents(&plan),
            [
                ("a".into(), 1, Intent::KeepStopped),
                ("b".into(), 2, Intent::KeepStopped),
                ("b".into(), 1, Intent::KeepStopped),
                ("c".into(), 1, Intent::Run),
                ("d".into(), 2, Intent::KeepStopped),
            ]
        );
    }

    #[test]
    fn older_versions_are_needed_only_when_the_newest_never_ran() {
        use DeploymentEvent as E;
        let failed_build = deployment(
            "a",
            2,
            &[E::BuildFailed {
                reason: StatusReason::other("no"),
            }],
        );
        assert!(Desired::needs_older(&failed_build));
        let crashed = deployment(
            "a",
            2,
            &[
                E::BuildSucceeded,
                E::Healthy,
                E::Crashed {
                    reason: StatusReason::OomKilled,
                },
            ],
        );
        assert!(!Desired::needs_older(&crashed));
        let running = deployment("a", 2, &[E::BuildSucceeded, E::Healthy]);
        assert!(!Desired::needs_older(&running));
    }
}
