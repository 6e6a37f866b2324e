//! How the fake brings a run of a version up: one instance at a time, each
//! taking the place of one instance of the version that serves.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::orchestrator::{FakeOrchestrator, Faults, gone};
use super::program::{FAULT_DELAY, FakeProgram, run_program};
use crate::{
    AppConfig, AppRef, AppStatus, DeploymentStatus, Error, LogSource, Result, StatusReason,
};

impl FakeOrchestrator {
    /// Brings run `run` of `app` up, one instance at a time (after injected
    /// delays and failures), and starts its program.
    ///
    /// Each instance that comes up takes the place of one instance of the
    /// version that serves, so the app never has fewer instances up than
    /// before; a failure brings the old ones back, and the old version
    /// serves on.
    pub(super) async fn bring_up(
        &self,
        app: &AppRef,
        run: u64,
        mut faults: Faults,
        config: &AppConfig,
    ) -> Result<AppStatus> {
        // The image's own health delay, and an injected one.
        let image_delay = {
            let st = self.inner.lock();
            let image = st
                .apps
                .get(app)
                .and_then(|e| e.instances.iter().find(|i| i.run == run))
                .map(|i| i.image.to_string());
            match image.and_then(|i| st.programs.get(&i)) {
                Some(program) => program.health_delay(),
                None => Some(Duration::ZERO),
            }
        };
        let delay = match (image_delay, faults.slow) {
            (None, _) => None,
            (Some(a), b) => Some(a.max(b.unwrap_or_default())),
        };
        let limit = config.start_timeout();
        let replicas = config.instances();
        for index in 0..replicas {
            match delay {
                Some(delay) if delay <= limit => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                }
                _ => {
                    tokio::time::sleep(limit).await;
                    let reason = StatusReason::HealthTimeout {
                        after_secs: limit.as_secs(),
                        last_probe: None,
                    };
                    self.inner
                        .end(app, run, DeploymentStatus::Failed, reason.clone(), None);
                    self.inner.bring_old_back(app, run);
                    return Err(Error::start_failed(reason));
                }
            }
            if let Some(reason) = faults.fail.take() {
                self.inner.end(
                    app,
                    run,
                    DeploymentStatus::Failed,
                    StatusReason::BackendUnavailable {
                        detail: reason.clone(),
                    },
                    None,
                );
                self.inner.bring_old_back(app, run);
                return Err(Error::Backend {
                    message: reason,
                    source: None,
                });
            }
            let mut st = self.inner.lock();
            let entry = st.apps.get_mut(app).ok_or_else(|| gone(app))?;
            let Some(inst) = entry.instances.iter_mut().find(|i| i.run == run) else {
                return Err(gone(app));
            };
            if inst.status != DeploymentStatus::Starting {
                // Stopped while starting.
                return Ok(entry.status_of(app, run));
            }
            inst.ready += 1;
            // One old instance leaves for the new one.
            if let Some(old) = entry
                .instances
                .iter_mut()
                .find(|i| i.run != run && i.status == DeploymentStatus::Running && i.ready > 0)
            {
                old.ready -= 1;
            }
            self.inner
                .push_log(entry, run, index, LogSource::Stdout, "[app] started".into());
        }
        let (status, program) = {
            let mut st = self.inner.lock();
            let programs = st.programs.clone();
            let entry = st.apps.get_mut(app).ok_or_else(|| gone(app))?;
            let Some(inst) = entry.instances.iter_mut().find(|i| i.run == run) else {
                return Err(gone(app));
            };
            if inst.status != DeploymentStatus::Starting {
                return Ok(entry.status_of(app, run));
            }
            inst.status = DeploymentStatus::Running;
            inst.reason = None;
            inst.follow = Some(broadcast::channel(256).0);
            let program = match (faults.crash, faults.oom) {
                (Some(exit_code), _) => FakeProgram::Crashing {
                    after: FAULT_DELAY,
                    exit_code,
                },
                (None, true) => FakeProgram::OomKilled { after: FAULT_DELAY },
                (None, false) => programs
                    .get(&inst.image.to_string())
                    .cloned()
                    .unwrap_or(FakeProgram::Idle),
            };
            let version = inst.version;
            for old in &mut entry.instances {
                if old.run != run && old.status == DeploymentStatus::Running {
                    old.stop(StatusReason::Superseded {
                        by_version: version,
                    });
                }
            }
            (entry.status_of(app, run), program)
        };
        tokio::spawn(run_program(
            Arc::downgrade(&self.inner),
            app.clone(),
            run,
            program,
        ));
        Ok(status)
    }
}
