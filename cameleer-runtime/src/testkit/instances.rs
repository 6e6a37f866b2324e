//! The fake's instances of one version: killing one, and replacing it.

use std::time::Duration;

use time::OffsetDateTime;

use super::orchestrator::FakeOrchestrator;
use crate::{
    AppRef, DeploymentStatus, Error, LogSource, Result, RuntimeEvent, RuntimeEventKind,
    StatusReason,
};

/// The exit code of a killed instance (128 + SIGKILL).
const KILLED_EXIT: i64 = 137;

impl FakeOrchestrator {
    /// Kills instance `index` of the version of `app` that runs, as a
    /// crash would (exit code 137).
    ///
    /// With one instance, the app has failed
    /// ([`RuntimeEventKind::Failed`]). With several, the others serve on:
    /// the killed one is reported [`RuntimeEventKind::Unhealthy`] and
    /// replaced once its image's health delay has passed, which
    /// [`AppStatus::restarts`](crate::AppStatus::restarts) counts (unless
    /// [`keep_killed_instances_dead`](Self::keep_killed_instances_dead)).
    pub fn kill_instance(&self, app: &AppRef, index: u32) -> Result<()> {
        let (run, deployment, replicas, delay) = {
            let st = self.inner.lock();
            let entry = st
                .apps
                .get(app)
                .ok_or_else(|| Error::not_found("app", app))?;
            let inst = entry
                .instances
                .iter()
                .rev()
                .find(|i| i.status == DeploymentStatus::Running)
                .ok_or_else(|| Error::not_found("running version of app", app))?;
            if index >= inst.replicas {
                return Err(Error::not_found(
                    "instance",
                    format!("{index} of {app} (it has {})", inst.replicas),
                ));
            }
            let delay = st
                .programs
                .get(&inst.image.to_string())
                .and_then(super::FakeProgram::health_delay)
                .unwrap_or_default();
            (inst.run, inst.deployment, inst.replicas, delay)
        };
        let reason = StatusReason::Exited {
            exit_code: Some(KILLED_EXIT),
        };
        if replicas == 1 {
            let event = RuntimeEventKind::Failed {
                reason: reason.clone(),
            };
            self.inner
                .end(app, run, DeploymentStatus::Failed, reason, Some(event));
            return Ok(());
        }
        let replace = {
            let mut st = self.inner.lock();
            let replace = !st.keeps_killed_instances_dead;
            let Some(entry) = st.apps.get_mut(app) else {
                return Ok(());
            };
            if let Some(inst) = entry.instances.iter_mut().find(|i| i.run == run) {
                inst.ready = inst.ready.saturating_sub(1);
            }
            self.inner.push_log(
                entry,
                run,
                index,
                LogSource::Stderr,
                format!("[app] instance {index} {reason}"),
            );
            replace
        };
        self.emit(RuntimeEvent {
            app: app.clone(),
            deployment,
            kind: RuntimeEventKind::Unhealthy {
                reason: format!("instance {index} {reason}; it is being replaced"),
            },
            at: OffsetDateTime::now_utc(),
        });
        if replace {
            let inner = std::sync::Arc::downgrade(&self.inner);
            let app = app.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay.max(Duration::from_millis(20))).await;
                let Some(inner) = inner.upgrade() else { return };
                let mut st = inner.lock();
                let Some(entry) = st.apps.get_mut(&app) else {
                    return;
                };
                let Some(inst) = entry
                    .instances
                    .iter_mut()
                    .find(|i| i.run == run && i.status == DeploymentStatus::Running)
                else {
                    return;
                };
                inst.ready = (inst.ready + 1).min(inst.replicas);
                inst.restarts += 1;
                inner.push_log(entry, run, index, LogSource::Stdout, "[app] started".into());
            });
        }
        Ok(())
    }

    /// From now on, a killed instance of several is left dead: a backend
    /// that breaks the replica contract, for the conformance suite's own
    /// tests.
    pub fn keep_killed_instances_dead(&self) {
        self.inner.lock().keeps_killed_instances_dead = true;
    }
}
