//! [`KubernetesRuntimeOrchestrator`]: the
//! [`RuntimeOrchestrator`] of one Kubernetes cluster.
//!
//! Each app is one Deployment (and a Service when it declares a port) in
//! the namespace of its tenant+env, written with server-side apply under one
//! field manager. The cluster is the truth: every operation reads the
//! Deployment and its pods (from the API, or from the watch cache while
//! waiting), so a controller that restarts converges by running the step
//! again.
//!
//! # Semantics
//!
//! - **deploy**: applies the namespace and its policies, then the app's
//!   Deployment with the new version's pod template; the rolling update
//!   (`maxUnavailable: 0`) keeps the old pods serving until the new ones are
//!   ready. Returns once the watches show the new version RUNNING (and the
//!   old version's pods gone or being deleted), or FAILED
//!   (see [`crate::status`]), or its start timeout plus
//!   [`progress_margin`](KubernetesOptions::progress_margin) passed. On
//!   failure the error is [`Error::StartFailed`] with the typed reason and
//!   the app's last output and, when an older version was RUNNING, the
//!   Deployment goes back to that version's pod template: the old version
//!   stays RUNNING, the new one is FAILED, as on Docker. With no older
//!   version, the failed one is kept for its status and logs.
//! - **stop**: the Deployment is applied with 0 replicas and annotated
//!   stopped (an app that had failed keeps FAILED and its reason); stopping
//!   a stopped app is a no-op; an unknown app is `not_found`.
//! - **restart**: a rollout restart (the pod template's
//!   `kubectl.kubernetes.io/restartedAt`), with the replicas back, waited for
//!   like a deploy.
//! - **logs**: see [`crate::logs`].
//! - **status**, **list** (the Deployments labelled with the tenant, in
//!   every namespace): the version that serves, see
//!   [`status::observe_serving`]: during a rollout the older version until
//!   the new one has all its pods ready.
//! - **events**: see [`crate::watch`].
//! - **reconcile**: see `reconcile` below.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use cameleer_runtime::{
    AppRef, AppStatus, AppSummary, DeployRequest, DeploymentId, DeploymentStatus, Desired, Error,
    EventStream, LogOptions, LogStream, ReconcileReport, Result, RuntimeOrchestrator, StatusReason,
    TenantId,
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    LimitRange, Namespace, Pod, PodTemplateSpec, ResourceQuota, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

use crate::api::Kube;
use crate::compat;
use crate::error::K8sError;
use crate::namespace::{TenantNamespace, namespace_name};
use crate::options::KubernetesOptions;
use crate::status::{self, Observed};
use crate::watch::{Informer, MANAGED_SELECTOR};
use crate::workload::{self, RESTARTED_AT};

mod reconcile;

/// How long after the progress deadline a deploy still waits for the
/// Deployment controller to report it.
const DEADLINE_SLACK: Duration = Duration::from_secs(15);

/// Runs deployments on one Kubernetes cluster.
///
/// Cheap to clone: clones share the client, the watch cache and the
/// per-app locks.
#[derive(Debug, Clone)]
pub struct KubernetesRuntimeOrchestrator {
    kube: Kube,
    options: Arc<KubernetesOptions>,
    informer: Arc<OnceLock<Informer>>,
    app_locks: Arc<Mutex<HashMap<AppRef, Arc<tokio::sync::Mutex<()>>>>>,
    namespaces_ready: Arc<Mutex<HashSet<String>>>,
}

impl KubernetesRuntimeOrchestrator {
    /// An orchestrator on `client` (any tower service: a real cluster, or a
    /// test's mock or in-memory API server).
    pub fn new(client: kube::Client, options: KubernetesOptions) -> Self {
        Self {
            kube: Kube {
                client,
                field_manager: options.field_manager.clone(),
            },
            options: Arc::new(options),
            informer: Arc::new(OnceLock::new()),
            app_locks: Arc::default(),
            namespaces_ready: Arc::default(),
        }
    }

    /// Connects with the kubeconfig (`KUBECONFIG`, `~/.kube/config`) or, in
    /// a pod, the in-cluster config.
    pub async fn connect(options: KubernetesOptions) -> Result<Self> {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| Error::from(K8sError::Config(e.to_string())))?;
        Ok(Self::new(client, options))
    }

    /// The options.
    pub fn options(&self) -> &KubernetesOptions {
        &self.options
    }

    /// The kube client.
    pub fn client(&self) -> &kube::Client {
        &self.kube.client
    }

    /// The watch cache, started on first use.
    pub fn informer(&self) -> &Informer {
        self.informer
            .get_or_init(|| Informer::start(self.kube.client.clone()))
    }

    fn app_lock(&self, app: &AppRef) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .app_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(app.clone()).or_default().clone()
    }

    /// Applies the namespace of `tenant`+`env` and its policies, quota and
    /// limit range (once per process; applying again changes nothing).
    pub async fn ensure_namespace(
        &self,
        tenant: &TenantId,
        env: &cameleer_runtime::EnvId,
    ) -> Result<()> {
        let objects = TenantNamespace::new(tenant, env, &self.options);
        let name = objects.name().to_string();
        if self.ready_namespaces().contains(&name) {
            return Ok(());
        }
        self.kube
            .apply_cluster::<Namespace>(&objects.namespace)
            .await?;
        for policy in &objects.network_policies {
            self.kube.apply::<NetworkPolicy>(policy).await?;
        }
        self.kube.apply::<ResourceQuota>(&objects.quota).await?;
        self.kube.apply::<LimitRange>(&objects.limit_range).await?;
        self.ready_namespaces().insert(name);
        Ok(())
    }

    fn ready_namespaces(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.namespaces_ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes the app's Deployment and Service. Removing an app that has
    /// none is a no-op.
    pub async fn remove_app(&self, app: &AppRef) -> Result<()> {
        let lock = self.app_lock(app);
        let _app = lock.lock().await;
        self.remove(app).await
    }

    async fn remove(&self, app: &AppRef) -> Result<()> {
        let ns = namespace_name(&app.tenant, &app.env);
        self.kube
            .delete::<Deployment>(&ns, app.app.as_str())
            .await?;
        self.kube.delete::<Service>(&ns, app.app.as_str()).await?;
        Ok(())
    }

    async fn get_deployment(&self, app: &AppRef) -> Result<Option<Deployment>> {
        let ns = namespace_name(&app.tenant, &app.env);
        Ok(self.kube.get::<Deployment>(&ns, app.app.as_str()).await?)
    }

    async fn pods_of(&self, app: &AppRef) -> Result<Vec<Pod>> {
        let ns = namespace_name(&app.tenant, &app.env);
        let selector = workload::selector_string(&workload::selector_labels(app));
        Ok(self.kube.list::<Pod>(Some(&ns), &selector).await?)
    }

    /// What the API says of the version `deployment`'s template runs, right
    /// now (not what serves while it rolls out: see
    /// [`status::observe_serving`]).
    async fn observe_now(&self, app: &AppRef, deployment: &Deployment) -> Result<Observed> {
        let pods = self.pods_of(app).await?;
        status::observe(deployment, &pods, OffsetDateTime::now_utc())
            .ok_or_else(|| Error::not_found("app", app))
    }

    /// Applies `deployment` and the Service its version declares (or
    /// removes a Service it no longer declares).
    async fn apply_app(&self, app: &AppRef, deployment: &Deployment) -> Result<Option<i64>> {
        let applied = self.kube.apply::<Deployment>(deployment).await?;
        let template = compat::deployment_spec(deployment)
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let identity = status::deployment_identity(deployment);
        let service = identity
            .as_ref()
            .and_then(|id| workload::service_for(id, &workload::template_health(&template)));
        match service {
            Some(service) => {
                self.kube.apply::<Service>(&service).await?;
            }
            None => {
                let ns = namespace_name(&app.tenant, &app.env);
                self.kube.delete::<Service>(&ns, app.app.as_str()).await?;
            }
        }
        Ok(applied.metadata.generation)
    }

    /// Waits on the watch cache until `deployment` of `app`, at
    /// `generation` or later, is RUNNING, FAILED or STOPPED, or `deadline`
    /// passes (`None`, with what was last seen).
    async fn wait_settled(
        &self,
        app: &AppRef,
        deployment: DeploymentId,
        generation: Option<i64>,
        deadline: Instant,
    ) -> (Option<Observed>, Option<String>) {
        let informer = self.informer();
        let mut changes = informer.changes();
        let ns = namespace_name(&app.tenant, &app.env);
        let mut last_probe = None;
        loop {
            let now = OffsetDateTime::now_utc();
            let mut wake = deadline;
            if let Some(d) = informer.deployment(&ns, app.app.as_str())
                && d.metadata.generation >= generation
            {
                let pods = informer.pods(&ns);
                if let Some(o) = status::observe(&d, &pods, now)
                    && o.identity.deployment == deployment
                {
                    // RUNNING once the rollout is over too, so the old
                    // version's pods no longer count as ready.
                    let settled = match o.status {
                        DeploymentStatus::Starting => false,
                        DeploymentStatus::Running => status::rollout_done(&d, &pods),
                        _ => true,
                    };
                    if settled {
                        return (Some(o), status::last_output(&d, &pods));
                    }
                    last_probe = not_ready(&d, &pods).or(last_probe);
                    if let Some(at) = status::next_readiness_deadline(&d, &pods, now) {
                        let after = (at - now).max(time::Duration::ZERO);
                        let after = Duration::from_secs_f64(after.as_seconds_f64())
                            + Duration::from_millis(10);
                        wake = wake.min(Instant::now() + after);
                    }
                }
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return (None, last_probe);
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= deadline {
                        return (None, last_probe);
                    }
                }
            }
        }
    }

    /// How long a start of `deployment` may take, from now.
    fn start_deadline(&self, start_timeout: Duration) -> Instant {
        Instant::now() + start_timeout + self.options.progress_margin + DEADLINE_SLACK
    }

    /// The watch cache, synced, within the progress margin.
    async fn synced_informer(&self) -> Result<&Informer> {
        let informer = self.informer();
        tokio::time::timeout(self.options.progress_margin, informer.wait_synced())
            .await
            .map_err(|_| {
                Error::backend(
                    "the watches on Deployments and pods did not list within the progress margin",
                    K8sError::Timeout("watch sync".into()),
                )
            })?;
        Ok(informer)
    }

    async fn deploy(&self, request: &DeployRequest) -> Result<AppStatus> {
        let app = &request.app;
        let deployment = workload::deployment(request, &self.options)?;
        let lock = self.app_lock(app);
        let _app = lock.lock().await;
        self.ensure_namespace(&app.tenant, &app.env).await?;
        self.synced_informer().await?;

        // What serves now, to go back to if the new version fails.
        let rollback = match self.get_deployment(app).await? {
            Some(current)
                if status::deployment_identity(&current)
                    .is_some_and(|id| id.deployment != request.deployment) =>
            {
                let o = self.observe_now(app, &current).await?;
                (o.status == DeploymentStatus::Running)
                    .then(|| compat::deployment_spec(&current).map(|s| s.template.clone()))
                    .flatten()
            }
            _ => None,
        };

        let generation = self.apply_app(app, &deployment).await?;
        let start_timeout = request.config.start_timeout();
        let (settled, output) = self
            .wait_settled(
                app,
                request.deployment,
                generation,
                self.start_deadline(start_timeout),
            )
            .await;
        let reason = match settled {
            Some(o) if o.status == DeploymentStatus::Running => {
                tracing::info!(app = %app, version = request.version, "running");
                return Ok(o.to_status(app));
            }
            Some(o) => o
                .reason
                .unwrap_or_else(|| StatusReason::other(format!("ended {}", o.status))),
            None => StatusReason::HealthTimeout {
                after_secs: start_timeout.as_secs(),
                last_probe: output.clone(),
            },
        };
        let output = output.filter(|_| !matches!(reason, StatusReason::HealthTimeout { .. }));
        if let Some(template) = rollback {
            tracing::warn!(app = %app, version = request.version, %reason, "the new version failed; back to the serving one");
            let back = workload::deployment_from_template(app, template, false, &self.options);
            self.apply_app(app, &back).await?;
        }
        Err(Error::StartFailed { reason, output })
    }

    async fn stop(&self, app: &AppRef) -> Result<()> {
        let current = self
            .get_deployment(app)
            .await?
            .ok_or_else(|| Error::not_found("app", app))?;
        if status::is_stopped(&current) {
            return Ok(());
        }
        let o = self.observe_now(app, &current).await?;
        let failed = (o.status == DeploymentStatus::Failed)
            .then_some(o.reason.as_ref())
            .flatten();
        let template = template_of(&current);
        let stopped = workload::stopped_deployment(app, template, Some(failed), &self.options);
        self.kube.apply::<Deployment>(&stopped).await?;
        Ok(())
    }

    async fn restart(&self, app: &AppRef) -> Result<AppStatus> {
        let current = self
            .get_deployment(app)
            .await?
            .ok_or_else(|| Error::not_found("app", app))?;
        let identity =
            status::deployment_identity(&current).ok_or_else(|| Error::not_found("app", app))?;
        self.synced_informer().await?;
        let mut template = template_of(&current);
        let now = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(RESTARTED_AT.to_string(), now);
        let start_timeout = crate::status::start_timeout(&template);
        let restarted = workload::deployment_from_template(app, template, false, &self.options);
        let generation = self.apply_app(app, &restarted).await?;
        let (settled, output) = self
            .wait_settled(
                app,
                identity.deployment,
                generation,
                self.start_deadline(start_timeout),
            )
            .await;
        match settled {
            Some(o) if o.status == DeploymentStatus::Running => Ok(o.to_status(app)),
            Some(o) => Err(Error::StartFailed {
                reason: o
                    .reason
                    .unwrap_or_else(|| StatusReason::other(format!("ended {}", o.status))),
                output,
            }),
            None => Err(Error::StartFailed {
                reason: StatusReason::HealthTimeout {
                    after_secs: start_timeout.as_secs(),
                    last_probe: output,
                },
                output: None,
            }),
        }
    }

    async fn status_of(&self, app: &AppRef) -> Result<AppStatus> {
        let current = self
            .get_deployment(app)
            .await?
            .ok_or_else(|| Error::not_found("app", app))?;
        let pods = self.pods_of(app).await?;
        status::observe_serving(&current, &pods, OffsetDateTime::now_utc())
            .map(|o| o.to_status(app))
            .ok_or_else(|| Error::not_found("app", app))
    }

    async fn summaries(&self, tenant: &TenantId) -> Result<Vec<AppSummary>> {
        let selector = format!("{MANAGED_SELECTOR},cameleer.io/tenant={tenant}");
        let deployments = self.kube.list::<Deployment>(None, &selector).await?;
        let pods = self.kube.list::<Pod>(None, &selector).await?;
        let mut by_ns: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
        for pod in pods {
            by_ns
                .entry(pod.metadata.namespace.clone().unwrap_or_default())
                .or_default()
                .push(pod);
        }
        let now = OffsetDateTime::now_utc();
        let mut out: Vec<AppSummary> = deployments
            .iter()
            .filter_map(|d| {
                let ns = d.metadata.namespace.clone().unwrap_or_default();
                let pods = by_ns.get(&ns).map(Vec::as_slice).unwrap_or_default();
                status::observe_serving(d, pods, now)
            })
            .filter(|o| &o.identity.app.tenant == tenant)
            .map(|o| AppSummary::from(o.to_status(&o.identity.app)))
            .collect();
        out.sort_by(|a, b| a.app.cmp(&b.app));
        Ok(out)
    }
}

/// The pod template of a Deployment.
fn template_of(d: &Deployment) -> PodTemplateSpec {
    compat::deployment_spec(d)
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

/// Why the current pods of `d` are not ready, if they say.
fn not_ready(d: &Deployment, pods: &[Pod]) -> Option<String> {
    pods.iter()
        .filter(|p| status::is_current(d, p))
        .filter_map(|p| p.status.as_ref()?.conditions.as_ref())
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "False")
        .and_then(|c| c.message.clone())
}

#[async_trait]
impl RuntimeOrchestrator for KubernetesRuntimeOrchestrator {
    async fn deploy_app(&self, request: &DeployRequest) -> Result<AppStatus> {
        self.deploy(request).await
    }

    async fn stop_app(&self, app: &AppRef) -> Result<()> {
        let lock = self.app_lock(app);
        let _app = lock.lock().await;
        self.stop(app).await
    }

    async fn restart_app(&self, app: &AppRef) -> Result<AppStatus> {
        let lock = self.app_lock(app);
        let _app = lock.lock().await;
        self.restart(app).await
    }

    async fn app_logs(&self, app: &AppRef, options: &LogOptions) -> Result<LogStream> {
        if self.get_deployment(app).await?.is_none() {
            return Err(Error::not_found("app", app));
        }
        let pods = self.pods_of(app).await?;
        crate::logs::logs_of(&self.kube, pods, options).await
    }

    async fn app_status(&self, app: &AppRef) -> Result<AppStatus> {
        self.status_of(app).await
    }

    async fn list_apps(&self, tenant: &TenantId) -> Result<Vec<AppSummary>> {
        self.summaries(tenant).await
    }

    async fn events(&self) -> Result<EventStream> {
        Ok(self.informer().events().boxed())
    }

    async fn reconcile(&self, desired: &[Desired]) -> Result<ReconcileReport> {
        self.reconcile_with(desired, self.options.reconcile_scope.as_ref())
            .await
    }

    fn deploy_grace(&self) -> Duration {
        self.options.progress_margin + DEADLINE_SLACK + Duration::from_secs(15)
    }
}
