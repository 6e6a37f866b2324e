//! [`Platform`]: the pipeline from an uploaded JAR to a RUNNING app.

mod builder;
mod core;
mod events;
mod lanes;
mod pipeline;
mod quota;
mod retention;
mod upload;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use cameleer_build::{Sha256Digest, ValidationPolicy};
use tokio_util::sync::DropGuard;

pub use self::builder::{PlatformBuilder, Unset};
use self::core::Core;
pub use self::events::{
    BuildProgressEvent, PlatformEvent, PlatformEvents, StatusEvent, UnhealthyEvent,
};
pub use self::retention::{
    ImageUse, RemovableImage, RetentionOptions, RetentionPlan, SweepReport, SweepSkip,
};
pub use self::upload::UploadedArtifact;
pub use self::watch::{AppView, RecoveryReport};
use crate::{
    AppConfig, AppRef, ArtifactStore, ByteStream, Deployment, DeploymentId, DeploymentStore, EnvId,
    Error, ImageBuilder, LogOptions, LogStream, Quota, QuotaStore, QuotaUsage, Result,
    RuntimeOrchestrator, TenantId,
};

/// Limits, validation policy and tuning of a [`Platform`].
///
/// # Examples
///
/// ```
/// use cameleer_runtime::PlatformOptions;
///
/// let mut options = PlatformOptions::default();
/// options.validation.limits.max_upload_bytes = 64 << 20;
/// options.validation.java_release = 21;
/// ```
#[derive(Debug, Clone)]
pub struct PlatformOptions {
    /// How uploads are validated. Its `limits.max_upload_bytes` (default
    /// 512 MiB) is the upload limit: a larger upload is refused with
    /// `artifact_too_large` as soon as the limit is crossed. Its
    /// `expected_sha256` is ignored: the checksum is per upload (see
    /// [`Platform::upload_artifact`]).
    pub validation: ValidationPolicy,
    /// How many chunks of an upload may wait for the validator (memory per
    /// upload is about this many of the host's chunks). Default 8.
    pub upload_queue_chunks: usize,
    /// How many [`PlatformEvent`]s a slow subscriber may fall behind before
    /// it misses some (and gets a [`PlatformEvent::Lagged`] in their place).
    /// Default 1024.
    pub event_capacity: usize,
    /// How many build progress lines may wait to be published before the
    /// builder's newer ones are dropped. Default 256.
    pub progress_capacity: usize,
    /// How often a conditional write is retried after losing a race before
    /// giving up with `conflict`. Default 16.
    pub conflict_retries: u32,
    /// How long to wait before subscribing again when the backend's event
    /// stream ends. Default 1 s.
    pub watcher_retry: Duration,
    /// What the retention sweep keeps and how often it runs; see
    /// [`RetentionOptions`].
    pub retention: RetentionOptions,
}

impl Default for PlatformOptions {
    fn default() -> Self {
        Self {
            validation: ValidationPolicy::default(),
            upload_queue_chunks: 8,
            event_capacity: 1024,
            progress_capacity: 256,
            conflict_retries: 16,
            watcher_retry: Duration::from_secs(1),
            retention: RetentionOptions::default(),
        }
    }
}

/// The pipeline from an uploaded JAR to a RUNNING app.
///
/// The platform ties the four contracts together: it validates and stores
/// uploads ([`ArtifactStore`]), records every deployment and status change
/// ([`DeploymentStore`]), builds images ([`ImageBuilder`]) and runs them
/// ([`RuntimeOrchestrator`]).
///
/// - **Every operation on one app takes its [`AppRef`]** (tenant, app,
///   environment): deploy, stop, restart, rollback, status, history, logs,
///   and also [`upload_artifact`](Self::upload_artifact) and
///   [`promote`](Self::promote) (the source; the target is another
///   environment of the same app).
/// - **Deploys run in the background.** [`Platform::deploy`] returns the
///   BUILDING deployment at once; build and start follow in a task, and
///   every status change is published to [`Platform::subscribe`]rs.
/// - **One version of an app comes up at a time.** Deploys, promotions,
///   rollbacks and restarts of one [`AppRef`] take turns, in the order they
///   were asked for; versions follow that order. Stops do not wait: a
///   BUILDING deployment can be stopped: its build is cancelled and it ends
///   STOPPED.
/// - **Nothing is overwritten.** Every write is a conditional update of the
///   deployment's revision, re-read and retried on conflict; an event the
///   state machine no longer allows (a stop came first) is dropped.
/// - **The store stays truthful.** After [`Platform::start`], crashes and
///   OOM kills the backend reports turn RUNNING deployments FAILED with the
///   reason; [`Platform::status`] reconciles with the backend too, and
///   [`Platform::recover`] settles what a controller restart interrupted.
///
/// Built with [`Platform::builder`]. Cheap to clone: clones share one
/// platform. Background work stops when the last clone is dropped, or on
/// [`shutdown`](Self::shutdown); after `shutdown`, the operations that would
/// start work fail with [`Error::ShuttingDown`] (`shutting_down`). Needs a
/// tokio runtime.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cameleer_runtime::memory::{MemoryArtifactStore, MemoryDeploymentStore};
/// use cameleer_runtime::{AppConfig, AppRef, ByteStream, ImageBuilder, Platform, RuntimeOrchestrator};
///
/// # async fn demo(backend: Arc<dyn RuntimeOrchestrator>, builder: Arc<dyn ImageBuilder>, jar: ByteStream)
/// # -> cameleer_runtime::Result<()> {
/// let platform = Platform::builder()
///     .orchestrator(backend)
///     .image_builder(builder)
///     .deployment_store(Arc::new(MemoryDeploymentStore::new()))
///     .artifact_store(Arc::new(MemoryArtifactStore::new()))
///     .build();
/// platform.start().await?; // watch crashes, settle what a restart interrupted
///
/// let dev = AppRef::parse("acme", "orders", "dev")?;
/// let upload = platform.upload_artifact(&dev, jar, None).await?;
/// let building = platform.deploy(&dev, upload.sha256, AppConfig::default()).await?;
/// let settled = platform.wait_settled(&building.id, Duration::from_secs(300)).await?;
/// println!("v{} is {}", settled.version, settled.status);
///
/// // The same image, without a build, into staging.
/// let staging = platform.promote(&dev, "staging".parse()?, None).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Platform {
    core: Arc<Core>,
    _stop_on_drop: Arc<DropGuard>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("options", &self.core.options)
            .finish_non_exhaustive()
    }
}

impl Platform {
    /// A builder: give it the backend, the image builder, the two stores
    /// and (optionally) the options, then [`build`](PlatformBuilder::build).
    pub fn builder() -> PlatformBuilder {
        PlatformBuilder::new()
    }

    fn from_parts(
        orchestrator: Arc<dyn RuntimeOrchestrator>,
        builder: Arc<dyn ImageBuilder>,
        store: Arc<dyn DeploymentStore>,
        artifacts: Arc<dyn ArtifactStore>,
        quotas: Arc<dyn QuotaStore>,
        options: PlatformOptions,
    ) -> Self {
        let core = Arc::new(Core::new(
            orchestrator,
            builder,
            store,
            artifacts,
            quotas,
            options,
        ));
        let guard = core.cancel.clone().drop_guard();
        Self {
            core,
            _stop_on_drop: Arc::new(guard),
        }
    }

    /// The options the platform runs with.
    pub fn options(&self) -> &PlatformOptions {
        &self.core.options
    }

    /// Validates and stores a JAR as it streams in, in one pass, and hashes
    /// it once (the validator's SHA-256 is the one the
    /// [`ArtifactStore`] files it under).
    ///
    /// `app` is the app and environment the JAR is uploaded for. The
    /// environment does not change what is stored: it only appears in logs
    /// and traces. Artifacts are stored by content, once, and an upload can
    /// be deployed to any environment (and promoted between them). Nothing
    /// is stored unless the whole JAR is accepted. Errors: the validator's
    /// codes (`not_a_zip`, `invalid_entry_name`, `missing_main_class`, …),
    /// `artifact_too_large`, `checksum_mismatch` when `expected_sha256`
    /// differs, `upload_failed` when `data` ends with an error,
    /// `insufficient_storage` when the store is full, and
    /// `artifact_bytes_quota_exceeded` when the tenant's
    /// [`Quota::artifact_bytes`] does not allow it (the tenant is charged an
    /// artifact once, at its first upload; the charge is made before the
    /// store commits, so a refused upload stores nothing).
    #[tracing::instrument(skip_all, fields(tenant = %app.tenant, app = %app.app, env = %app.env))]
    pub async fn upload_artifact(
        &self,
        app: &AppRef,
        data: ByteStream,
        expected_sha256: Option<Sha256Digest>,
    ) -> Result<UploadedArtifact> {
        let _no_sweep = self.core.sweep_gate.read().await;
        let mut policy = self.core.options.validation.clone();
        policy.expected_sha256 = expected_sha256;
        let charge = upload::Charge {
            quotas: self.core.quotas.clone(),
            tenant: app.tenant.clone(),
            limit: self.core.quotas.quota(&app.tenant).await?.artifact_bytes,
        };
        let uploaded = upload::upload(
            self.core.artifacts.as_ref(),
            data,
            &policy,
            self.core.options.upload_queue_chunks,
            charge,
        )
        .await;
        match &uploaded {
            Ok(u) => tracing::info!(sha256 = %u.sha256, size = u.size, "artifact stored"),
            Err(e) => tracing::info!(code = e.code(), "upload rejected: {e}"),
        }
        uploaded
    }

    /// Deploys a stored artifact as the next version of `app`.
    ///
    /// Checks the config (`invalid_config`) and the artifact (`not_found`)
    /// before anything is stored, then returns the new BUILDING deployment
    /// at once. In the background, after any earlier deploy of the app: the
    /// image is built (STARTING, image recorded), the backend starts it
    /// within `config.start_timeout()` plus the backend's
    /// [`deploy_grace`](RuntimeOrchestrator::deploy_grace) (RUNNING, and the
    /// previous RUNNING version becomes STOPPED, superseded), or it ends
    /// FAILED with the builder's or backend's reason, the previous version
    /// still serving.
    ///
    /// A deploy the tenant's [`Quota`] does not allow (apps, instances,
    /// memory, CPU) is refused with the quota's code
    /// (`apps_quota_exceeded`, …) and creates nothing.
    #[tracing::instrument(skip_all, fields(tenant = %app.tenant, app = %app.app, env = %app.env, artifact = %artifact))]
    pub async fn deploy(
        &self,
        app: &AppRef,
        artifact: Sha256Digest,
        config: AppConfig,
    ) -> Result<Deployment> {
        self.check_running()?;
        let _no_sweep = self.core.sweep_gate.read().await;
        self.core.deploy(app, artifact, config).await
    }

    /// Stops `app`: the backend stops it, then each of its BUILDING,
    /// STARTING or RUNNING deployments becomes STOPPED ("stopped by
    /// request"), which are returned. A BUILDING deployment's build is
    /// cancelled (the [`ImageBuilder::build`] future is dropped); a
    /// STARTING deployment's pipeline notices and ends, and if the backend
    /// brought it up meanwhile, the pipeline stops it again.
    ///
    /// `not_found` when the store knows no deployment of `app`.
    #[tracing::instrument(skip_all, fields(tenant = %app.tenant, app = %app.app, env = %app.env))]
    pub async fn stop(&self, app: &AppRef) -> Result<Vec<Deployment>> {
        self.core.stop(app).await
    }

    /// Restarts the version of `app` the backend runs (or, when it runs
    /// none, the newest with an image): RUNNING/FAILED/STOPPED → STARTING →
    /// RUNNING or FAILED. Waits for any deploy of the app in progress, then
    /// for the restart, and returns the deployment as it ends.
    ///
    /// `not_found` for an unknown app, `conflict` when no version has an
    /// image, `illegal_transition` when the version is BUILDING or STARTING,
    /// a quota's code when a stopped version may not claim its resources
    /// again.
    #[tracing::instrument(skip_all, fields(tenant = %app.tenant, app = %app.app, env = %app.env))]
    pub async fn restart(&self, app: &AppRef) -> Result<Deployment> {
        self.check_running()?;
        self.core.restart(app).await
    }

    /// The app's output from the backend; see [`LogOptions`].
    #[tracing::instrument(skip_all, fields(tenant = %app.tenant, app = %app.app, env = %app.env))]
    pub async fn logs(&self, app: &AppRef, options: LogOptions) -> Result<LogStream> {
        self.core.orchestrator.app_logs(app, &options).await
    }

    /// The newest deployment of `app` and what the backend reports of it.
    ///
    /// When the two disagree about a deployment no pipeline is working on
    /// (the store says RUNNING, the backend FAILED with a reason, or does
    /// not run the app at all), the store is corrected first: the crash is
    /// recorded with the backend's reason.
    #[tracing::instrument(skip_all, fields(tenant = %app.tenant, app = %app.app, env = %app.env))]
    pub async fn status(&self, app: &AppRef) -> Result<AppView> {
        self.core.status(app).await
    }

    /// Every deployment of `app`, newest first; `not_found` when none.
    #[tracing::instrument(skip_all, fields(tenant = %app.tenant, app = %app.app, env = %app.env))]
    pub async fn history(&self, app: &AppRef) -> Result<Vec<Deployment>> {
        let all = self.core.store.list(app).await?;
        if all.is_empty() {
            return Err(Error::not_found("app", app));
        }
        Ok(all)
    }

    /// One deployment by id.
    #[tracing::instrument(skip(self))]
    pub async fn deployment(&self, id: &DeploymentId) -> Result<Deployment> {
        self.core.store.get(id).await
    }

    /// Every app and environment of `tenant`, ordered by app then
    /// environment, reconciled like [`status`](Self::status); apps the
    /// backend runs but the store does not know are listed without a
    /// deployment.
    #[tracing::instrument(skip(self), fields(tenant = %tenant))]
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<AppView>> {
        self.core.list(tenant).await
    }

    /// Deploys the *same image* that is RUNNING in `from` (an app in one
    /// environment) into environment `to` of the same app, without
    /// building: the new version of `from.in_env(to)` starts in STARTING
    /// with `source: Promotion`, and is returned at once.
    ///
    /// It runs with `config` when given, else with the config of the newest
    /// deployment in `to` (environment config never travels with an image),
    /// else, for a first promotion into `to`, with the source's config.
    /// Errors: `conflict` when nothing is RUNNING in `from` or `to` is
    /// `from`'s own environment; `invalid_config` when the config is
    /// invalid.
    #[tracing::instrument(skip(self, config), fields(tenant = %from.tenant, app = %from.app, from = %from.env, to = %to))]
    pub async fn promote(
        &self,
        from: &AppRef,
        to: EnvId,
        config: Option<AppConfig>,
    ) -> Result<Deployment> {
        self.check_running()?;
        let _no_sweep = self.core.sweep_gate.read().await;
        let target = from.in_env(to);
        self.core.promote(from, &target, config).await
    }

    /// Deploys the image and config of an earlier version as a new version
    /// (`source: Rollback`), without building.
    ///
    /// With `version: None`, the newest version that reached RUNNING and is
    /// older than the one serving now (or than the newest, when none
    /// serves). Errors: `not_found` for an unknown app or version,
    /// `conflict` when the version has no image, is older than what
    /// retention keeps ([`RetentionOptions`]), or there is nothing earlier.
    #[tracing::instrument(skip(self), fields(tenant = %app.tenant, app = %app.app, env = %app.env))]
    pub async fn rollback(&self, app: &AppRef, version: Option<u64>) -> Result<Deployment> {
        self.check_running()?;
        let _no_sweep = self.core.sweep_gate.read().await;
        self.core.rollback(app, version).await
    }

    /// The backend and the deployment store, for a
    /// [`LogForwarder`](crate::logs::LogForwarder).
    pub fn log_sources(&self) -> crate::logs::ForwarderSources {
        crate::logs::ForwarderSources {
            orchestrator: self.core.orchestrator.clone(),
            deployments: self.core.store.clone(),
        }
    }

    /// Status changes, build progress and health warnings of every app from
    /// now on, for dashboards and server-sent events.
    ///
    /// A subscriber that falls more than [`PlatformOptions::event_capacity`]
    /// events behind loses the oldest and gets one
    /// [`PlatformEvent::Lagged`] with their count in their place (see
    /// [`PlatformEvents`]); it should then re-read what it shows.
    pub fn subscribe(&self) -> PlatformEvents {
        PlatformEvents::new(self.core.events.subscribe())
    }

    /// Waits until deployment `id` is no longer BUILDING or STARTING and its
    /// background work is over (a RUNNING version has superseded the
    /// previous one), and returns it; `timeout` when `limit` passes first.
    #[tracing::instrument(skip(self))]
    pub async fn wait_settled(&self, id: &DeploymentId, limit: Duration) -> Result<Deployment> {
        self.core.wait_settled(id, limit).await
    }

    /// Starts watching the backend's events (crashes, OOM kills, health
    /// warnings) and the background retention sweep (when
    /// [`RetentionOptions::sweep_interval`] is set), then
    /// [`recover`](Self::recover)s. Call it once at startup; later calls
    /// only recover.
    #[tracing::instrument(skip(self))]
    pub async fn start(&self) -> Result<RecoveryReport> {
        self.check_running()?;
        self.core.start_sweeping();
        self.core.start().await
    }

    /// The tenant's quota ([`Quota::unlimited`] until one is set).
    pub async fn quota(&self, tenant: &TenantId) -> Result<Quota> {
        self.core.quotas.quota(tenant).await
    }

    /// Sets the tenant's quota. Lowering it below what the tenant uses
    /// removes nothing: requests that would use more are refused until
    /// usage falls.
    #[tracing::instrument(skip(self), fields(tenant = %tenant))]
    pub async fn set_quota(&self, tenant: &TenantId, quota: Quota) -> Result<()> {
        self.core.quotas.set_quota(tenant, quota).await
    }

    /// What the tenant uses now, in the units of its [`Quota`].
    pub async fn quota_usage(&self, tenant: &TenantId) -> Result<QuotaUsage> {
        self.core.quota_usage(tenant).await
    }

    /// What a retention sweep would remove now: a dry run of
    /// [`sweep`](Self::sweep). See [`RetentionOptions`] for what is kept.
    pub async fn retention_plan(&self) -> Result<RetentionPlan> {
        self.core.retention_plan().await
    }

    /// Removes the images and artifacts retention does not keep (see
    /// [`RetentionOptions`]). Runs alone: uploads, deploys, promotions and
    /// rollbacks wait for it. What could not be removed (an image still in
    /// use, a builder that cannot remove images) is listed in the report's
    /// `skipped`, and the next sweep tries again.
    #[tracing::instrument(skip(self))]
    pub async fn sweep(&self) -> Result<SweepReport> {
        self.core.sweep().await
    }

    /// Settles what a controller restart interrupted: the backend
    /// [`reconcile`](RuntimeOrchestrator::reconcile)s against the store's
    /// active deployments (adopting what runs, removing orphans); BUILDING
    /// deployments become FAILED ("interrupted by a controller restart"),
    /// STARTING ones RUNNING if the backend runs them and FAILED otherwise,
    /// and RUNNING ones the backend does not run FAILED with its reason.
    /// Deployments this platform is working on are left alone.
    ///
    /// It takes every app's turn (see the type's docs) before it reads the
    /// store, and keeps them until it is done: it waits for the deploys and
    /// restarts under way, and those asked meanwhile wait for it, so none
    /// of them is undone by a stale read. One recovery runs at a time.
    #[tracing::instrument(skip(self))]
    pub async fn recover(&self) -> Result<RecoveryReport> {
        self.core.recover().await
    }

    /// Stops all background work (pipelines, the event watcher) and waits
    /// for it to end. Deployments caught mid-way stay BUILDING or STARTING
    /// until the next [`recover`](Self::recover). Requests that would start
    /// work fail afterwards.
    pub async fn shutdown(&self) {
        self.core.cancel.cancel();
        self.core.tasks.close();
        self.core.tasks.wait().await;
    }

    fn check_running(&self) -> Result<()> {
        if self.core.cancel.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        Ok(())
    }
}
