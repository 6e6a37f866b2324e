//! Reading the truth back: status, lists and logs.

use std::collections::BTreeMap;

use bollard::query_parameters::LogsOptionsBuilder;
use cameleer_runtime::{
    AppId, AppSummary, DeploymentStatus, EnvId, LogOptions, LogStream, Result, StatusReason,
    TenantId,
};
use futures::{StreamExt, TryStreamExt};

use super::{DockerRuntimeOrchestrator, Listed, phase_status, probe_running};
use crate::labels::{self, ContainerLabels};
use crate::logs;
use crate::status::{self, Phase};

/// How many containers `list_apps` inspects and probes at once.
const LIST_CONCURRENCY: usize = 8;

impl DockerRuntimeOrchestrator {
    /// The status of one of our containers now: inspect, then probe when it
    /// runs and has not passed its health check in this run yet.
    pub(super) async fn observe(
        &self,
        id: &str,
        labels: &ContainerLabels,
    ) -> Result<(DeploymentStatus, Option<StatusReason>)> {
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
            Err(why) => Ok((
                DeploymentStatus::Starting,
                Some(StatusReason::Unhealthy { detail: why }),
            )),
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
                let stopped =
                    self.memory.stopped_on_request(&c.id) || super::stopped::is_marked(&c.name);
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

    /// The log lines of a container, read ahead in batches (see
    /// [`logs::read_ahead`]).
    pub(super) fn logs_of(&self, id: &str, options: &LogOptions) -> LogStream {
        let request = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .follow(options.follow)
            .since(logs::engine_since(options.since))
            .build();
        logs::read_ahead(logs::lines(
            logs::engine_frames(&self.docker, id, request),
            options.since,
            logs::MAX_LINE_BYTES,
        ))
    }
}
