//! Reading the truth back: status, lists and logs.

use std::collections::BTreeMap;

use std::time::Duration;

use bollard::query_parameters::LogsOptionsBuilder;
use cameleer_runtime::{
    AppId, AppRef, AppSummary, DeploymentStatus, EnvId, LogOptions, LogStream, Result,
    StatusReason, TenantId,
};
use futures::{StreamExt, TryStreamExt};

use super::{DockerRuntimeOrchestrator, Listed, phase_status, probe_running};
use crate::labels::{self, ContainerLabels};
use crate::logs;
use crate::status::Phase;

/// How many containers `list_apps` inspects and probes at once.
const LIST_CONCURRENCY: usize = 8;

/// How many times a log request that finds its container gone before it
/// read a line looks for the app's newest container again.
const LOG_RETRIES: usize = 3;

/// The pause before looking again (a container being removed may still be
/// listed for a moment).
const LOG_RETRY_PAUSE: Duration = Duration::from_millis(50);

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
        self.observe_inspected(id, labels, &inspect).await
    }

    /// [`observe`](Self::observe) of a container inspected just now.
    pub(super) async fn observe_inspected(
        &self,
        id: &str,
        labels: &ContainerLabels,
        inspect: &bollard::models::ContainerInspectResponse,
    ) -> Result<(DeploymentStatus, Option<StatusReason>)> {
        let phase = self.phase_of(id, inspect);
        if let Some(known) = phase_status(&phase) {
            return Ok(known);
        }
        let Phase::Running { started_at } = phase else {
            unreachable!("phase_status covers every other phase")
        };
        if self.memory.is_healthy(id, &started_at) {
            return Ok((DeploymentStatus::Running, None));
        }
        match probe_running(&self.options, labels, inspect, &started_at).await {
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

    /// Every app of `tenant`, as `app_status` has it, ordered by app then
    /// env.
    pub(super) async fn summaries(&self, tenant: &TenantId) -> Result<Vec<AppSummary>> {
        let mut apps: BTreeMap<(AppId, EnvId), Vec<Listed>> = BTreeMap::new();
        for c in self.list(labels::tenant_filter(tenant)).await? {
            // The engine filtered by tenant already; a container whose labels
            // say otherwise is never shown.
            if c.labels.app.tenant != *tenant {
                continue;
            }
            apps.entry((c.labels.app.app.clone(), c.labels.app.env.clone()))
                .or_default()
                .push(c);
        }
        futures::stream::iter(apps.into_values())
            .map(|containers| async move {
                let app = containers[0].labels.app.clone();
                match self.status_of_containers(&app, &containers).await {
                    Ok(status) => Ok(Some(AppSummary::from(status))),
                    // Removed between the list and the look.
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffered(LIST_CONCURRENCY)
            .try_filter_map(|s| async move { Ok(s) })
            .try_collect()
            .await
    }

    /// The log lines of `app`, from its newest container `first`, read
    /// ahead in batches (see [`logs::read_ahead`]).
    ///
    /// The container may be replaced by a redeploy (or removed) at any
    /// moment, and the engine then answers "No such container" (or "marked
    /// for removal"); that never reaches the caller:
    ///
    /// - before the stream yielded a line (the container went between the
    ///   list that found it and the log request), the app's newest
    ///   container is looked up again and its logs are read instead, up to
    ///   [`LOG_RETRIES`] times; when the app has none left, the stream ends;
    /// - after, the stream ends cleanly, as a followed stream does when its
    ///   container stops: a stream reads one container, and the caller asks
    ///   again for the new version's lines.
    pub(super) fn app_log_stream(
        &self,
        app: &AppRef,
        first: &str,
        options: &LogOptions,
    ) -> LogStream {
        struct State {
            orchestrator: DockerRuntimeOrchestrator,
            app: AppRef,
            options: LogOptions,
            current: LogStream,
            yielded: bool,
            retries: usize,
            done: bool,
        }
        let state = State {
            orchestrator: self.clone(),
            app: app.clone(),
            options: options.clone(),
            current: self.container_lines(first, options),
            yielded: false,
            retries: 0,
            done: false,
        };
        let lines = futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            loop {
                match st.current.next().await {
                    Some(Ok(line)) => {
                        st.yielded = true;
                        return Some((Ok(line), st));
                    }
                    Some(Err(e)) if crate::engine::is_gone_error(&e) => {
                        if st.yielded || st.retries == LOG_RETRIES {
                            tracing::debug!(app = %st.app, "the container whose logs were read is gone: {e}");
                            return None;
                        }
                        st.retries += 1;
                        tokio::time::sleep(LOG_RETRY_PAUSE).await;
                        match st.orchestrator.newest(&st.app).await {
                            Ok(c) => {
                                tracing::debug!(app = %st.app, container = %c.name, "its container was replaced; reading the new one's logs");
                                st.current = st.orchestrator.container_lines(&c.id, &st.options);
                            }
                            // The app is gone altogether: no more lines.
                            Err(e) if e.is_not_found() => return None,
                            Err(e) => {
                                st.done = true;
                                return Some((Err(e), st));
                            }
                        }
                    }
                    other => return other.map(|item| (item, st)),
                }
            }
        });
        logs::read_ahead(lines.boxed())
    }

    /// The lines of `deployment`'s own containers, every instance's
    /// (the newest container of each, if one was recreated), running or
    /// stopped, each tagged with its instance; a container removed while
    /// being read ends its part cleanly.
    pub(super) async fn deployment_log_stream(
        &self,
        app: &AppRef,
        deployment: &cameleer_runtime::DeploymentId,
        options: &LogOptions,
    ) -> Result<LogStream> {
        let mut mine: Vec<_> = Vec::new();
        // The engine lists the newest first: keep the first of each instance.
        for c in self.list(labels::app_filter(app)).await? {
            if c.labels.app == *app
                && c.labels.deployment == *deployment
                && !mine
                    .iter()
                    .any(|m: &Listed| m.labels.instance == c.labels.instance)
            {
                mine.push(c);
            }
        }
        if mine.is_empty() {
            return Err(cameleer_runtime::Error::not_found("deployment", deployment));
        }
        mine.sort_by_key(|c| c.labels.instance);
        Ok(self.merged_lines(&mine, options))
    }

    /// The log lines of one container, as the engine has them.
    pub(super) fn container_lines(&self, id: &str, options: &LogOptions) -> LogStream {
        let request = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .follow(options.follow)
            .since(logs::engine_since(options.since))
            .build();
        logs::lines(
            logs::engine_frames(&self.docker, id, request),
            options.since,
            logs::MAX_LINE_BYTES,
        )
    }
}
