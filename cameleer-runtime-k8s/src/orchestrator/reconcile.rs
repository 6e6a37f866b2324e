//! After a controller restart: adopt what carries our labels, finish the
//! starts a dead controller cut short, keep stopped apps stopped, and remove
//! what no deployment of the store owns.
//!
//! The cluster is the truth about what runs; the host's store about what
//! *should* run ([`Desired`]). Per Deployment with our labels, by the
//! deployment id of its pod template:
//!
//! - **[`Intent::Run`]**: RUNNING is adopted; STARTING is waited for
//!   (within its start timeout) and then adopted or reported missing with
//!   its reason; stopped on request (the stop never reached the store, so
//!   it did not happen) is scaled back up and waited for; FAILED is
//!   reported missing with its reason.
//! - **[`Intent::KeepStopped`]**: never adopted; stopped if it runs, and a
//!   FAILED one keeps the store's reason on the Deployment.
//! - **Neither**: an orphan, removed with its Service once its last apply by
//!   our field manager is older than
//!   [`orphan_grace`](crate::KubernetesOptions::orphan_grace) (another
//!   controller may be deploying it).
//! - **A deployment to run with no Deployment**: reported missing, `gone`.
//! - **A Service with no Deployment of its app**: removed, after the same
//!   grace.

use std::collections::{BTreeMap, HashMap, HashSet};

use cameleer_runtime::{
    AppRef, AppStatus, DeploymentId, DeploymentStatus, Desired, Intent, ReconcileReport, Result,
    StatusReason, TenantId,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use time::OffsetDateTime;

use super::{KubernetesRuntimeOrchestrator, template_of};
use crate::status::{self, Observed};
use crate::watch::MANAGED_SELECTOR;
use crate::workload;

impl KubernetesRuntimeOrchestrator {
    /// When our field manager last applied `meta` (its creation when the
    /// managed fields do not say).
    fn last_applied(&self, meta: &ObjectMeta) -> Option<OffsetDateTime> {
        let ours = meta
            .managed_fields
            .iter()
            .flatten()
            .filter(|f| f.manager.as_deref() == Some(self.options.field_manager.as_str()))
            .filter_map(|f| f.time.as_ref())
            .max()
            .or(meta.creation_timestamp.as_ref())?;
        OffsetDateTime::from_unix_timestamp(ours.0.as_second()).ok()
    }

    fn is_young(&self, meta: &ObjectMeta, now: OffsetDateTime) -> bool {
        self.last_applied(meta)
            .is_some_and(|at| (now - at).as_seconds_f64() < self.options.orphan_grace.as_secs_f64())
    }

    pub(super) async fn reconcile_with(
        &self,
        desired: &[Desired],
        scope: Option<&TenantId>,
    ) -> Result<ReconcileReport> {
        let selector = match scope {
            Some(tenant) => format!("{MANAGED_SELECTOR},cameleer.io/tenant={tenant}"),
            None => MANAGED_SELECTOR.to_string(),
        };
        let in_scope = |app: &AppRef| scope.is_none_or(|t| &app.tenant == t);
        let by_id: HashMap<DeploymentId, &Desired> =
            desired.iter().map(|d| (d.deployment.id, d)).collect();
        let deployments = self.kube.list::<Deployment>(None, &selector).await?;
        let mut pods: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
        for pod in self.kube.list::<Pod>(None, &selector).await? {
            pods.entry(pod.metadata.namespace.clone().unwrap_or_default())
                .or_default()
                .push(pod);
        }
        let now = OffsetDateTime::now_utc();
        let mut report = ReconcileReport::default();
        let mut seen: HashSet<DeploymentId> = HashSet::new();
        let mut apps: HashSet<AppRef> = HashSet::new();

        for d in &deployments {
            let Some(identity) = status::deployment_identity(d) else {
                continue;
            };
            let app = identity.app.clone();
            if !in_scope(&app) {
                continue;
            }
            let ns = d.metadata.namespace.clone().unwrap_or_default();
            let app_pods = pods.get(&ns).map(Vec::as_slice).unwrap_or_default();
            let Some(observed) = status::observe(d, app_pods, now) else {
                continue;
            };
            let lock = self.app_lock(&app);
            let _app = lock.lock().await;
            match by_id.get(&identity.deployment) {
                Some(want) if want.intent == Intent::Run => {
                    seen.insert(identity.deployment);
                    apps.insert(app.clone());
                    match self.run(d, observed).await? {
                        Ok(()) => report.adopted.push(identity.deployment),
                        Err(status) => report.missing.push((identity.deployment, status)),
                    }
                }
                Some(want) => {
                    seen.insert(identity.deployment);
                    apps.insert(app.clone());
                    let failed = (want.deployment.status == DeploymentStatus::Failed)
                        .then(|| want.deployment.last_reason())
                        .flatten();
                    let has_reason = d
                        .metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(workload::FAILED_REASON));
                    if !status::is_stopped(d) || (failed.is_some() && !has_reason) {
                        let stopped = workload::stopped_deployment(
                            &app,
                            template_of(d),
                            Some(failed),
                            &self.options,
                        );
                        self.kube.apply::<Deployment>(&stopped).await?;
                    }
                }
                None if self.is_young(&d.metadata, now) => {
                    apps.insert(app.clone());
                }
                None => {
                    self.remove(&app).await?;
                    tracing::info!(app = %app, deployment = %identity.deployment, "removed an orphan");
                    report.removed_orphans.push(format!(
                        "deployment {ns}/{}",
                        d.metadata.name.clone().unwrap_or_default()
                    ));
                }
            }
        }

        for want in desired {
            if want.intent == Intent::Run
                && in_scope(&want.deployment.app)
                && !seen.contains(&want.deployment.id)
            {
                report.missing.push((
                    want.deployment.id,
                    AppStatus::new(
                        want.deployment.app.clone(),
                        DeploymentStatus::Failed,
                        Some(want.deployment.id),
                        Some(want.deployment.version),
                        Some(StatusReason::Gone),
                    )
                    .with_instances(0, want.deployment.config.instances()),
                ));
            }
        }

        for svc in self.kube.list::<Service>(None, &selector).await? {
            let Some(identity) = status::identity_of(svc.metadata.labels.as_ref()) else {
                continue;
            };
            if !in_scope(&identity.app) {
                continue;
            }
            if apps.contains(&identity.app) || self.is_young(&svc.metadata, now) {
                continue;
            }
            let ns = svc.metadata.namespace.clone().unwrap_or_default();
            let name = svc.metadata.name.clone().unwrap_or_default();
            self.kube.delete::<Service>(&ns, &name).await?;
            report.removed_orphans.push(format!("service {ns}/{name}"));
        }
        Ok(report)
    }

    /// Brings a Deployment the store wants running to RUNNING if it can:
    /// `Ok(Ok(()))` adopted, `Ok(Err(status))` missing.
    async fn run(
        &self,
        d: &Deployment,
        observed: Observed,
    ) -> Result<std::result::Result<(), AppStatus>> {
        let identity = observed.identity.clone();
        let app = identity.app.clone();
        let status = |o: &Observed| o.to_status(&app);
        let generation = match observed.status {
            DeploymentStatus::Running => return Ok(Ok(())),
            DeploymentStatus::Failed => return Ok(Err(status(&observed))),
            DeploymentStatus::Stopped => {
                let running =
                    workload::deployment_from_template(&app, template_of(d), false, &self.options);
                self.apply_app(&app, &running).await?
            }
            _ => d.metadata.generation,
        };
        self.synced_informer().await?;
        let timeout = status::start_timeout(&template_of(d));
        let (settled, _) = self
            .wait_settled(
                &app,
                identity.deployment,
                generation,
                self.start_deadline(timeout),
            )
            .await;
        Ok(match settled {
            Some(o) if o.status == DeploymentStatus::Running => Ok(()),
            Some(o) => Err(status(&o)),
            None => Err(AppStatus {
                app: app.clone(),
                status: DeploymentStatus::Failed,
                deployment: Some(identity.deployment),
                version: Some(identity.version),
                reason: Some(StatusReason::HealthTimeout {
                    after_secs: timeout.as_secs(),
                    last_probe: None,
                }),
                ready_instances: observed.ready,
                desired_instances: observed.desired,
                restarts: observed.restarts,
            }),
        })
    }
}
