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
pub struct AppStatus {
    /// Which app.
    pub app: AppRef,
    /// STARTING, RUNNING, FAILED or STOPPED (a backend never reports BUILDING).
    pub status: DeploymentStatus,
    /// The deployment that is (or was last) running.
    pub deployment: Option<DeploymentId>,
    /// Its version.
    pub version: Option<u64>,
    /// Why it is in this state (exit code, OOM kill, health failure).
    pub reason: Option<StatusReason>,
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
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line an app wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When the runtime received it.
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// stdout or stderr.
    pub stream: LogSource,
    /// The text, without the trailing newline.
    pub line: String,
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
    /// It is the app's newest version and FAILED or was STOPPED: keep its
    /// resources, stopped, for the app's status and logs.
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
    /// What the store's deployments of every app ask of a backend: each
    /// active one (BUILDING, STARTING, RUNNING) runs; the newest version of
    /// an app with none active is kept stopped (a backend that has no
    /// resources for it, a build that failed, has nothing to keep). Every
    /// other deployment is absent, so a backend removes its
    /// resources. Sorted by app, newest version first.
    ///
    /// `deployments` are the active ones and the newest of every app (see
    /// [`DeploymentStore::latest_of_every_app`](crate::DeploymentStore::latest_of_every_app));
    /// duplicates are ignored.
    pub fn plan(deployments: impl IntoIterator<Item = Deployment>) -> Vec<Desired> {
        let mut all: Vec<Deployment> = deployments.into_iter().collect();
        all.sort_by(|a, b| (&a.app, b.version).cmp(&(&b.app, a.version)));
        all.dedup_by_key(|d| d.id);
        let active_apps: std::collections::BTreeSet<AppRef> = all
            .iter()
            .filter(|d| d.status.is_in_progress() || d.status == DeploymentStatus::Running)
            .map(|d| d.app.clone())
            .collect();
        let mut newest_seen = std::collections::BTreeSet::new();
        let mut plan = Vec::with_capacity(all.len());
        for d in all {
            let newest = newest_seen.insert(d.app.clone());
            let intent = if d.status.is_in_progress() || d.status == DeploymentStatus::Running {
                Intent::Run
            } else if newest && !active_apps.contains(&d.app) {
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
    async fn app_logs(&self, app: &AppRef, options: &LogOptions) -> Result<LogStream>;

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
    /// - [`Intent::KeepStopped`]: the newest version of an app that FAILED
    ///   or was STOPPED: never adopted, stopped if it still runs, its
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
    use cameleer_build::Sha256Digest;
    use time::OffsetDateTime;

    use super::*;
    use crate::{DeploymentEvent, DeploymentSource, StatusReason};

    fn d(app: &AppRef, version: u64, events: &[DeploymentEvent]) -> Deployment {
        let mut d = Deployment::new(
            app.clone(),
            version,
            Sha256Digest::of(b"jar"),
            None,
            DeploymentSource::Build,
            AppConfig::default(),
            OffsetDateTime::now_utc(),
        );
        for e in events {
            d.apply(e, OffsetDateTime::now_utc()).unwrap();
        }
        d
    }

    #[test]
    fn the_plan_runs_what_is_active_and_keeps_only_an_apps_newest_settled_version() {
        use DeploymentEvent as E;
        let up = [E::BuildSucceeded, E::Healthy];
        let failed = [E::BuildFailed {
            reason: StatusReason::other("no base"),
        }];
        let stopped = [
            E::BuildSucceeded,
            E::Healthy,
            E::Stopped {
                reason: StatusReason::StoppedOnRequest,
            },
        ];
        let web = AppRef::parse("acme", "web", "dev").unwrap();
        let api = AppRef::parse("acme", "api", "dev").unwrap();
        let job = AppRef::parse("acme", "job", "prod").unwrap();
        let web1 = d(&web, 1, &up);
        let web2 = d(&web, 2, &failed); // a failed redeploy: v1 serves on
        let api3 = d(&api, 3, &stopped); // stopped on request
        let job1 = d(&job, 1, &failed); // failed, and nothing else
        let job0 = d(&job, 0, &stopped); // older: not the newest
        let plan = Desired::plan([
            web2.clone(),
            web1.clone(),
            api3.clone(),
            job1.clone(),
            job0,
            web1.clone(), // duplicates are ignored
        ]);
        let got: Vec<(DeploymentId, Intent)> =
            plan.iter().map(|p| (p.deployment.id, p.intent)).collect();
        assert_eq!(
            got,
            [
                (api3.id, Intent::KeepStopped),
                (job1.id, Intent::KeepStopped),
                (web1.id, Intent::Run),
            ]
        );
        assert!(Desired::plan(Vec::new()).is_empty());
    }
}
