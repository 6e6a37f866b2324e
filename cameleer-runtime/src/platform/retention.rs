//! Retention: the images and artifacts of old versions are removed, those
//! of the newest versions and of everything that runs or may run again are
//! kept.
//!
//! Per app and environment, a deployment is *kept* when it is
//!
//! - one of the newest [`RetentionOptions::keep_versions`] versions,
//! - BUILDING, STARTING or RUNNING (RUNNING is also what a promotion takes),
//! - or the newest version with an image (stopped but current: what a
//!   restart brings back).
//!
//! An image goes when no kept deployment of any app or environment uses its
//! digest (a promoted image is used by the target environment's deployment,
//! so it stays as long as that one is kept). An artifact goes when no kept
//! deployment uses it and it was stored longer ago than
//! [`RetentionOptions::artifact_grace`] (an upload a deploy has not used
//! yet). Deployment records are never removed: the history stays whole.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::core::Core;
use crate::{
    AppRef, ArtifactInfo, Deployment, DeploymentStatus, Error, ImageRef, Result, Sha256Digest,
    StoredArtifact,
};

/// How much the retention sweep keeps, and how often it runs.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use cameleer_runtime::{PlatformOptions, RetentionOptions};
///
/// let mut options = PlatformOptions::default();
/// assert_eq!(options.retention.keep_versions, 10);
/// options.retention = RetentionOptions {
///     keep_versions: 5,
///     sweep_interval: Some(Duration::from_secs(600)),
///     ..RetentionOptions::default()
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionOptions {
    /// Versions kept per app and environment, newest first. Default 10; 0
    /// is taken as 1 (the newest version is always kept).
    pub keep_versions: usize,
    /// How long an artifact no deployment uses is kept after it was stored:
    /// the time a client has between its upload and its deploy. Default
    /// one hour.
    pub artifact_grace: Duration,
    /// How often the background sweep runs once [`Platform::start`] was
    /// called; `None` runs none ([`Platform::sweep`] still does). Default
    /// one hour; the first sweep runs one interval after the start.
    ///
    /// [`Platform::start`]: crate::Platform::start
    /// [`Platform::sweep`]: crate::Platform::sweep
    pub sweep_interval: Option<Duration>,
}

impl Default for RetentionOptions {
    fn default() -> Self {
        Self {
            keep_versions: 10,
            artifact_grace: Duration::from_secs(3600),
            sweep_interval: Some(Duration::from_secs(3600)),
        }
    }
}

/// One version that used an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageUse {
    /// The app and environment.
    pub app: AppRef,
    /// The version.
    pub version: u64,
}

/// An image a sweep removes, and the versions that used it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemovableImage {
    /// The image, pinned to its digest.
    pub image: ImageRef,
    /// The deployments that used it, none of them kept.
    pub used_by: Vec<ImageUse>,
}

/// What a sweep would remove now ([`Platform::retention_plan`]).
///
/// [`Platform::retention_plan`]: crate::Platform::retention_plan
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionPlan {
    /// Versions kept per app and environment.
    pub keep_versions: usize,
    /// Images no kept deployment uses, in the order of the versions that
    /// used them.
    pub images: Vec<RemovableImage>,
    /// Artifacts no kept deployment uses, stored before the grace.
    pub artifacts: Vec<ArtifactInfo>,
}

/// Something a sweep meant to remove and did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SweepSkip {
    /// The image reference or the artifact's digest.
    pub item: String,
    /// The error code: `conflict` for an image still in use, `unsupported`
    /// for a builder or store that cannot remove, or a failure's code.
    pub code: String,
    /// Why, in words.
    pub reason: String,
}

/// What a sweep did ([`Platform::sweep`]).
///
/// [`Platform::sweep`]: crate::Platform::sweep
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SweepReport {
    /// Images removed (or found gone already).
    pub removed_images: Vec<ImageRef>,
    /// Artifacts removed.
    pub removed_artifacts: Vec<ArtifactInfo>,
    /// What was left, and why; tried again by the next sweep.
    pub skipped: Vec<SweepSkip>,
}

/// The deployments of one app and environment (newest first) that
/// retention keeps; see the module docs.
pub(crate) fn kept(all: &[Deployment], keep_versions: usize) -> Vec<&Deployment> {
    let current = all.iter().find(|d| d.image.is_some()).map(|d| d.id);
    let mut by_version: Vec<&Deployment> = all.iter().collect();
    by_version.sort_by_key(|d| std::cmp::Reverse(d.version));
    by_version
        .iter()
        .enumerate()
        .filter(|(i, d)| {
            *i < keep_versions.max(1)
                || d.status.is_in_progress()
                || d.status == DeploymentStatus::Running
                || Some(d.id) == current
        })
        .map(|(_, d)| *d)
        .collect()
}

/// The plan over every app's deployments (each list newest first) and the
/// stored artifacts (`None`: the store cannot list them).
pub(crate) fn plan(
    apps: &[Vec<Deployment>],
    stored: Option<&[StoredArtifact]>,
    options: &RetentionOptions,
    now: OffsetDateTime,
) -> RetentionPlan {
    let mut kept_images: HashSet<Sha256Digest> = HashSet::new();
    let mut kept_artifacts: HashSet<Sha256Digest> = HashSet::new();
    let mut kept_ids = HashSet::new();
    for all in apps {
        for d in kept(all, options.keep_versions) {
            kept_ids.insert(d.id);
            kept_artifacts.insert(d.artifact);
            if let Some(digest) = d.image.as_ref().and_then(ImageRef::digest) {
                kept_images.insert(*digest);
            }
        }
    }
    let mut images: BTreeMap<Sha256Digest, RemovableImage> = BTreeMap::new();
    for d in apps.iter().flatten() {
        if kept_ids.contains(&d.id) {
            continue;
        }
        let Some(image) = &d.image else { continue };
        let Some(digest) = image.digest() else {
            continue;
        };
        if kept_images.contains(digest) {
            continue;
        }
        let entry = images.entry(*digest).or_insert_with(|| RemovableImage {
            image: image.clone(),
            used_by: Vec::new(),
        });
        entry.used_by.push(ImageUse {
            app: d.app.clone(),
            version: d.version,
        });
    }
    let mut artifacts: Vec<ArtifactInfo> = stored
        .unwrap_or_default()
        .iter()
        .filter(|a| !kept_artifacts.contains(&a.info.sha256))
        .filter(|a| a.stored_at + options.artifact_grace <= now)
        .map(|a| a.info)
        .collect();
    artifacts.sort_by_key(|a| a.sha256);
    let mut images: Vec<RemovableImage> = images.into_values().collect();
    for image in &mut images {
        image
            .used_by
            .sort_by(|a, b| (&a.app, a.version).cmp(&(&b.app, b.version)));
    }
    // In the order of the versions that used them, oldest first.
    images.sort_by(|a, b| {
        let first = |i: &RemovableImage| i.used_by.first().map(|u| (u.app.clone(), u.version));
        first(a).cmp(&first(b))
    });
    RetentionPlan {
        keep_versions: options.keep_versions.max(1),
        images,
        artifacts,
    }
}

impl Core {
    /// Every app's deployments, newest first.
    async fn all_deployments(&self) -> Result<Vec<Vec<Deployment>>> {
        let mut apps = Vec::new();
        for latest in self.store.latest_of_every_app().await? {
            apps.push(self.store.list(&latest.app).await?);
        }
        Ok(apps)
    }

    /// What a sweep would remove now.
    pub(crate) async fn retention_plan(&self) -> Result<RetentionPlan> {
        let apps = self.all_deployments().await?;
        let stored = match self.artifacts.list().await {
            Ok(stored) => Some(stored),
            Err(Error::Unsupported(_)) => None,
            Err(e) => return Err(e),
        };
        let mut plan = plan(
            &apps,
            stored.as_deref(),
            &self.options.retention,
            OffsetDateTime::now_utc(),
        );
        let swept = self.swept_images.lock().unwrap_or_else(|p| p.into_inner());
        plan.images
            .retain(|i| i.image.digest().is_none_or(|d| !swept.contains(d)));
        Ok(plan)
    }

    /// Removes what [`retention_plan`](Self::retention_plan) lists, alone:
    /// no upload, deploy, promotion or rollback runs meanwhile.
    pub(crate) async fn sweep(&self) -> Result<SweepReport> {
        let _alone = self.sweep_gate.write().await;
        let plan = self.retention_plan().await?;
        let mut report = SweepReport::default();
        for removable in plan.images {
            let image = removable.image;
            match self.builder.remove_image(&image).await {
                Ok(()) => {
                    if let Some(digest) = image.digest() {
                        self.swept_images
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(*digest);
                    }
                    report.removed_images.push(image)
                }
                Err(e) => report.skipped.push(skip(image.to_string(), &e)),
            }
        }
        for info in plan.artifacts {
            match self.artifacts.delete(&info.sha256).await {
                Ok(_) => {
                    self.quotas.forget_artifact(&info.sha256).await?;
                    report.removed_artifacts.push(info);
                }
                Err(e) => report.skipped.push(skip(info.sha256.to_string(), &e)),
            }
        }
        tracing::info!(
            images = report.removed_images.len(),
            artifacts = report.removed_artifacts.len(),
            skipped = report.skipped.len(),
            "retention sweep done"
        );
        Ok(report)
    }

    /// Starts the background sweep, once, when it is configured.
    pub(crate) fn start_sweeping(self: &Arc<Self>) {
        let Some(interval) = self.options.retention.sweep_interval else {
            return;
        };
        if self.sweeping.swap(true, Ordering::SeqCst) {
            return;
        }
        let core = Arc::downgrade(self);
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            cancel
                .run_until_cancelled(async move {
                    loop {
                        tokio::time::sleep(interval).await;
                        let Some(core) = core.upgrade() else { return };
                        if let Err(e) = core.sweep().await {
                            tracing::warn!(code = e.code(), "retention sweep failed: {e}");
                        }
                    }
                })
                .await;
        });
    }

    /// Refuses a rollback to a version retention does not keep: its image
    /// may be gone.
    pub(crate) fn check_retained(&self, all: &[Deployment], target: &Deployment) -> Result<()> {
        let keep = self.options.retention.keep_versions;
        if kept(all, keep).iter().any(|d| d.id == target.id) {
            return Ok(());
        }
        Err(Error::Conflict(format!(
            "{} v{} is older than the {} versions retention keeps; its image may have been removed",
            target.app,
            target.version,
            keep.max(1)
        )))
    }
}

fn skip(item: String, e: &Error) -> SweepSkip {
    SweepSkip {
        item,
        code: e.code().to_string(),
        reason: e.to_string(),
    }
}
