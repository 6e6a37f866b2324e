//! Reading the truth back: status, lists, logs, events and reconciliation.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::query_parameters::{
    EventsOptionsBuilder, InspectContainerOptions, LogsOptionsBuilder,
};
use cameleer_runtime::{
    AppId, AppStatus, AppSummary, Deployment, DeploymentId, DeploymentStatus, EnvId, EventStream,
    LogOptions, LogStream, ReconcileReport, Result, RuntimeEvent, RuntimeEventKind, TenantId,
};
use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;

use super::{DockerRuntimeOrchestrator, Listed, phase_status, probe_running};
use crate::labels::{self, ContainerLabels};
use crate::status::{self, Phase};
use crate::{events, logs};

/// How many containers `list_apps` inspects and probes at once.
const LIST_CONCURRENCY: usize = 8;

impl DockerRuntimeOrchestrator {
    /// The status of one of our containers now: inspect, then probe when it
    /// runs and has not passed its health check in this run yet.
    pub(super) async fn observe(
        &self,
        id: &str,
        labels: &ContainerLabels,
    ) -> Result<(DeploymentStatus, Option<String>)> {
        let Some(inspect) = self.inspect(id).await? else {
            return Err(cameleer_runtime::Error::not_found("app", &labels.app));
        };
        let phase = self.phase_of(id, &inspect);
        if let Some(known) = phase_status(&phase) {
            return Ok(known);
        }
        let Phase::Running { started_at } = phase else {
            unreachable!("phase_status covers every other phase")
        };
        if self.memory.is_healthy(id, &started_at) {
            return Ok((DeploymentStatus::Running, None));
        }
        match probe_running(&self.options, labels, &inspect, &started_at).await {
            Ok(()) => {
                self.memory.set_healthy(id, &started_at);
                Ok((DeploymentStatus::Running, None))
            }
            Err(why) => Ok((DeploymentStatus::Starting, Some(why))),
        }
    }

    /// Every app of `tenant`, newest version of each, ordered by app then env.
    pub(super) async fn summaries(&self, tenant: &TenantId) -> Result<Vec<AppSummary>> {
        let mut newest: BTreeMap<(AppId, EnvId), Listed> = BTreeMap::new();
        // `list` returns newest first, so the first of each app wins.
        for c in self.list(labels::tenant_filter(tenant)).await? {
            // The engine filtered by tenant already; a container whose labels
            // say otherwise is never shown.
            if c.labels.app.tenant != *tenant {
                continue;
            }
            newest
                .entry((c.labels.app.app.clone(), c.labels.app.env.clone()))
                .or_insert(c);
        }
        futures::stream::iter(newest.into_values())
            .map(|c| async move {
                let stopped = self.memory.stopped_on_request(&c.id);
                let from_list = status::summary_status(c.state, c.status_text.as_deref(), stopped);
                let status = match from_list {
                    Some(DeploymentStatus::Stopped)
                        if self.memory.start_failure(&c.id).is_some() =>
                    {
                        DeploymentStatus::Failed
                    }
                    Some(s) => s,
                    None if self.memory.known_healthy(&c.id) => DeploymentStatus::Running,
                    None => match self.observe(&c.id, &c.labels).await {
                        Ok((s, _)) => s,
                        // Removed between the list and the inspect.
                        Err(e) if e.code() == "not_found" => DeploymentStatus::Stopped,
                        Err(e) => return Err(e),
                    },
                };
                Ok(AppSummary {
                    app: c.labels.app.clone(),
                    status,
                    deployment: Some(c.labels.deployment),
                    version: Some(c.labels.version),
                })
            })
            .buffered(LIST_CONCURRENCY)
            .try_collect()
            .await
    }

    /// The log lines of a container.
    pub(super) fn logs_of(&self, id: &str, options: &LogOptions) -> LogStream {
        let request = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .follow(options.follow)
            .since(logs::engine_since(options.since))
            .build();
        logs::lines(
            self.docker.logs(id, Some(request)),
            options.since,
            logs::MAX_LINE_BYTES,
        )
    }

    /// Crashes, OOM kills and removals of our containers, from the engine's
    /// event stream. Exits this orchestrator caused (stops, removals,
    /// restarts) are not reported. The stream ends when the engine's does
    /// (reconnecting is the caller's business for now).
    pub(super) fn event_stream(&self) -> EventStream {
        let options = EventsOptionsBuilder::new()
            .filters(&events::filters())
            .build();
        let this = self.clone();
        self.docker
            .events(Some(options))
            .take_while(|item| {
                if let Err(e) = item {
                    tracing::warn!(error = %e, "the engine's event stream ended");
                }
                futures::future::ready(item.is_ok())
            })
            .filter_map(move |item| {
                let this = this.clone();
                async move {
                    let event = events::parse(&item.ok()?)?;
                    this.runtime_event(event).await
                }
            })
            .boxed()
    }

    async fn runtime_event(&self, event: events::ContainerEvent) -> Option<RuntimeEvent> {
        let kind = match event.action.as_str() {
            "die" => {
                if self.memory.exit_expected_at(&event.container, event.at) {
                    return None;
                }
                let oom = match self
                    .docker
                    .inspect_container(&event.container, None::<InspectContainerOptions>)
                    .await
                {
                    Ok(c) => c.state.and_then(|s| s.oom_killed).unwrap_or(false),
                    Err(_) => false,
                };
                events::died(event.exit_code, oom)
            }
            "destroy" if !self.memory.exit_expected_at(&event.container, event.at) => {
                RuntimeEventKind::Removed
            }
            // `oom` is reported by the `die` that follows it.
            _ => return None,
        };
        Some(RuntimeEvent {
            app: event.labels.app,
            deployment: event.labels.deployment,
            kind,
            at: event.at,
        })
    }

    /// Adopts the containers of `known` deployments, removes the ones of
    /// deployments it does not know (older than the orphan grace period),
    /// reports known active deployments that do not run, and removes
    /// networks left without containers.
    pub(super) async fn reconcile_with(
        &self,
        known: &[Deployment],
        scope: Option<&TenantId>,
    ) -> Result<ReconcileReport> {
        let by_id: HashMap<DeploymentId, &Deployment> = known.iter().map(|d| (d.id, d)).collect();
        let mut report = ReconcileReport::default();
        let mut seen = BTreeSet::new();
        let mut places = BTreeSet::new();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let grace = i64::try_from(self.options.orphan_grace.as_secs()).unwrap_or(i64::MAX);
        let filter = match scope {
            Some(tenant) => labels::tenant_filter(tenant),
            None => labels::managed_filter(),
        };
        for c in self.list(filter).await? {
            places.insert((c.labels.app.tenant.clone(), c.labels.app.env.clone()));
            match by_id.get(&c.labels.deployment) {
                Some(d) if d.app == c.labels.app => {
                    seen.insert(c.labels.deployment);
                    let (status, reason) = self.observe(&c.id, &c.labels).await?;
                    if matches!(
                        status,
                        DeploymentStatus::Running | DeploymentStatus::Starting
                    ) {
                        report.adopted.push(c.labels.deployment);
                    } else if d.status.is_in_progress() || d.status == DeploymentStatus::Running {
                        report.missing.push((
                            d.id,
                            AppStatus {
                                app: d.app.clone(),
                                status,
                                deployment: Some(d.id),
                                version: Some(d.version),
                                reason,
                            },
                        ));
                    }
                }
                _ if now.saturating_sub(c.created) < grace => {}
                _ => {
                    self.remove_container(&c).await?;
                    report.removed_orphans.push(c.name.clone());
                }
            }
        }
        for d in known
            .iter()
            .filter(|d| scope.is_none_or(|s| *s == d.app.tenant))
        {
            let active = matches!(
                d.status,
                DeploymentStatus::Starting | DeploymentStatus::Running
            );
            if active && !seen.contains(&d.id) {
                report.missing.push((
                    d.id,
                    AppStatus {
                        app: d.app.clone(),
                        status: DeploymentStatus::Failed,
                        deployment: Some(d.id),
                        version: Some(d.version),
                        reason: Some("its container no longer exists".into()),
                    },
                ));
            }
        }
        places.extend(
            crate::network::managed_places(&self.docker)
                .await?
                .into_iter()
                .filter(|(tenant, _)| scope.is_none_or(|s| s == tenant)),
        );
        for (tenant, env) in places {
            self.remove_network_if_unused(&tenant, &env).await?;
        }
        Ok(report)
    }
}
