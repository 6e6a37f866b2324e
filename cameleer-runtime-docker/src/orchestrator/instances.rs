//! The instances of an app: which deployment its status is about, how its
//! containers add up to one status, and their logs merged.
//!
//! An app runs [`AppConfig::replicas`](cameleer_runtime::AppConfig::replicas)
//! containers per version, each labelled with its instance index. The
//! status is about one deployment, the *current* one: the oldest whose
//! containers run or start (during a rolling update, the version that
//! serves until the new one has all its instances; after it, the new one),
//! else the newest (a stopped or failed app). Of it:
//!
//! - **ready** counts the app's containers that run and pass their health
//!   check, of whichever version: during a rolling update the old and the
//!   new ones together, all behind the app's name;
//! - **desired** is the deployment's replicas (its label);
//! - **restarts** sums the engine's `RestartCount` of its containers (the
//!   engine restarts a crashed instance of an app that runs several, see
//!   [`crate::container`]);
//! - the status is RUNNING when ready reaches desired; STARTING while some
//!   run or start and the rest are not ready
//!   ([`StatusReason::InstancesNotReady`], or for an app of one instance
//!   what its probe says); and when none runs, the status of its failed
//!   container (a crash loop when the engine gave up restarting it), else of
//!   its newest.

use bollard::models::ContainerSummaryStateEnum;
use cameleer_runtime::{
    AppRef, AppStatus, DeploymentId, DeploymentStatus, Error, LogLine, LogOptions, LogStream,
    Result, StatusReason,
};
use futures::StreamExt;

use super::{DockerRuntimeOrchestrator, Listed};
use crate::labels;

/// What one container of an app is now.
#[derive(Debug, Clone)]
pub(super) struct Instance {
    pub(super) container: Listed,
    pub(super) status: DeploymentStatus,
    pub(super) reason: Option<StatusReason>,
    pub(super) restarts: u32,
}

/// The deployment `app_status` is about, of an app's containers (any
/// order); see the [module docs](self).
pub(super) fn current_deployment(containers: &[Listed]) -> Option<DeploymentId> {
    let up = |c: &&Listed| {
        matches!(
            c.state,
            Some(
                ContainerSummaryStateEnum::RUNNING
                    | ContainerSummaryStateEnum::RESTARTING
                    | ContainerSummaryStateEnum::CREATED
            )
        )
    };
    containers
        .iter()
        .filter(up)
        .min_by_key(|c| (c.labels.version, std::cmp::Reverse(c.created)))
        .or_else(|| {
            containers
                .iter()
                .max_by_key(|c| (c.labels.version, c.created))
        })
        .map(|c| c.labels.deployment)
}

impl DockerRuntimeOrchestrator {
    /// The containers of `app`, newest version first, or
    /// [`Error::NotFound`] when it has none.
    pub(super) async fn containers_of(&self, app: &AppRef) -> Result<Vec<Listed>> {
        let containers: Vec<Listed> = self
            .list(labels::app_filter(app))
            .await?
            .into_iter()
            // The filter already matched; the labels must say so too.
            .filter(|c| c.labels.app == *app)
            .collect();
        if containers.is_empty() {
            return Err(Error::not_found("app", app));
        }
        Ok(containers)
    }

    /// The containers of the current deployment of `app`, by instance.
    pub(super) async fn current_instances(&self, app: &AppRef) -> Result<Vec<Listed>> {
        let containers = self.containers_of(app).await?;
        let current = current_deployment(&containers);
        let mut mine: Vec<Listed> = containers
            .into_iter()
            .filter(|c| Some(c.labels.deployment) == current)
            .collect();
        mine.sort_by_key(|c| c.labels.instance);
        Ok(mine)
    }

    /// One container now: its status and reason (probing it when it runs),
    /// and how often the engine restarted it.
    pub(super) async fn instance(&self, c: &Listed) -> Result<Instance> {
        let Some(inspect) = self.inspect(&c.id).await? else {
            // Removed between the list and the look.
            return Ok(Instance {
                container: c.clone(),
                status: DeploymentStatus::Stopped,
                reason: Some(StatusReason::Gone),
                restarts: 0,
            });
        };
        let restarts = inspect
            .restart_count
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0);
        let (status, reason) = self.observe_inspected(&c.id, &c.labels, &inspect).await?;
        Ok(Instance {
            container: c.clone(),
            status,
            reason,
            restarts,
        })
    }

    /// The status of `app` from its containers (any order, at least one);
    /// see the [module docs](self).
    ///
    /// Which deployment is current is decided on what the containers are
    /// when inspected, not on the list: a container a rollout removes
    /// between the two is not up.
    pub(super) async fn status_of_containers(
        &self,
        app: &AppRef,
        containers: &[Listed],
    ) -> Result<AppStatus> {
        let is_up = |i: &Instance| {
            matches!(
                i.status,
                DeploymentStatus::Running | DeploymentStatus::Starting
            )
        };
        let mut seen: Vec<Instance> = Vec::new();
        for c in containers.iter().filter(|c| {
            matches!(
                c.state,
                Some(
                    ContainerSummaryStateEnum::RUNNING
                        | ContainerSummaryStateEnum::RESTARTING
                        | ContainerSummaryStateEnum::CREATED
                )
            )
        }) {
            seen.push(self.instance(c).await?);
        }
        let ready = u32::try_from(
            seen.iter()
                .filter(|i| i.status == DeploymentStatus::Running)
                .count(),
        )
        .unwrap_or(u32::MAX);
        let current = seen
            .iter()
            .filter(|i| is_up(i))
            .min_by_key(|i| {
                (
                    i.container.labels.version,
                    std::cmp::Reverse(i.container.created),
                )
            })
            .map(|i| i.container.labels.deployment)
            .or_else(|| {
                containers
                    .iter()
                    .max_by_key(|c| (c.labels.version, c.created))
                    .map(|c| c.labels.deployment)
            });
        let mut mine: Vec<Instance> = seen
            .into_iter()
            .filter(|i| Some(i.container.labels.deployment) == current)
            .collect();
        for c in containers {
            if Some(c.labels.deployment) == current && !mine.iter().any(|i| i.container.id == c.id)
            {
                mine.push(self.instance(c).await?);
            }
        }
        mine.sort_by_key(|i| i.container.labels.instance);
        let Some(first) = mine.first() else {
            return Err(Error::not_found("app", app));
        };
        let labels = first.container.labels.clone();
        let desired = labels.replicas.max(1);
        let restarts: u32 = mine.iter().map(|i| i.restarts).sum();
        let up = mine.iter().any(is_up);
        let (status, reason) = if up {
            match cameleer_runtime::instances_status(ready, desired) {
                (DeploymentStatus::Starting, _) if desired == 1 => (
                    DeploymentStatus::Starting,
                    mine.iter().find_map(|i| i.reason.clone()),
                ),
                other => other,
            }
        } else {
            let ended = mine
                .iter()
                .find(|i| i.status == DeploymentStatus::Failed)
                .unwrap_or(first);
            let reason = match ended.reason.clone() {
                Some(r) => Some(self.refine(&ended.container.id, r).await),
                None => None,
            };
            let reason = match reason {
                Some(last) if ended.status == DeploymentStatus::Failed && restarts > 0 => {
                    Some(StatusReason::CrashLoop {
                        restarts: Some(restarts),
                        last: Some(Box::new(last)),
                    })
                }
                other => other,
            };
            (ended.status, reason)
        };
        Ok(AppStatus::new(
            app.clone(),
            status,
            Some(labels.deployment),
            Some(labels.version),
            reason,
        )
        .with_instances(ready, desired)
        .with_restarts(restarts))
    }

    /// The logs of every container of the current deployment of `app`,
    /// merged (in time order when not following), each line tagged with its
    /// instance. A container that a redeploy removes ends its part of the
    /// stream quietly.
    pub(super) async fn instance_logs(
        &self,
        app: &AppRef,
        options: &LogOptions,
    ) -> Result<LogStream> {
        let instances = self.current_instances(app).await?;
        if let [only] = instances.as_slice() {
            let instance = only.labels.instance;
            return Ok(tagged(
                self.app_log_stream(app, &only.id, options),
                instance,
            ));
        }
        Ok(crate::logs::read_ahead(
            self.merged_lines(&instances, options),
        ))
    }

    /// The lines of `containers` (instances of one deployment), each tagged
    /// with its instance, merged in time order (in arrival order when
    /// following). A container removed while being read ends its part of
    /// the stream quietly.
    pub(super) fn merged_lines(&self, containers: &[Listed], options: &LogOptions) -> LogStream {
        let streams: Vec<LogStream> = containers
            .iter()
            .map(|c| {
                let lines = self.container_lines(&c.id, options).take_while(|item| {
                    let gone = matches!(item, Err(e) if crate::engine::is_gone_error(e));
                    std::future::ready(!gone)
                });
                tagged(lines.boxed(), c.labels.instance)
            })
            .collect();
        if options.follow {
            futures::stream::select_all(streams).boxed()
        } else {
            cameleer_runtime::instance_logs::merge_in_time_order(streams)
        }
    }
}

/// `lines`, each tagged with `instance`.
fn tagged(lines: LogStream, instance: u32) -> LogStream {
    lines
        .map(move |item| {
            item.map(|line| LogLine {
                instance: Some(instance),
                ..line
            })
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cameleer_runtime::{AppRef, HealthCheck};

    use super::*;
    use crate::labels::ContainerLabels;

    fn container(version: u64, state: ContainerSummaryStateEnum, created: i64) -> Listed {
        Listed {
            id: format!("c{version}-{created}"),
            name: format!("v{version}"),
            labels: ContainerLabels {
                app: AppRef::parse("acme", "orders", "dev").unwrap(),
                deployment: DeploymentId::new_random(),
                version,
                instance: 0,
                replicas: 1,
                health: HealthCheck::None,
                start_timeout: Duration::from_secs(1),
                config_sha256: None,
            },
            state: Some(state),
            created,
        }
    }

    #[test]
    fn the_version_that_serves_is_current_until_the_rollout_ends() {
        use ContainerSummaryStateEnum as S;
        let v1 = container(1, S::RUNNING, 10);
        let v2 = container(2, S::RUNNING, 20);
        let v3_failed = container(3, S::EXITED, 30);
        // Mid-rollout: the old version serves.
        assert_eq!(
            current_deployment(&[v2.clone(), v1.clone()]),
            Some(v1.labels.deployment)
        );
        // A failed newer version does not take over.
        assert_eq!(
            current_deployment(&[v3_failed.clone(), v2.clone()]),
            Some(v2.labels.deployment)
        );
        // Nothing runs: the newest says why.
        let v1_stopped = container(1, S::EXITED, 10);
        assert_eq!(
            current_deployment(&[v1_stopped, v3_failed.clone()]),
            Some(v3_failed.labels.deployment)
        );
        assert_eq!(current_deployment(&[]), None);
    }
}
