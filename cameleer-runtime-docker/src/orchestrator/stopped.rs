//! "Stopped on request", kept where a controller restart cannot lose it.
//!
//! An exit code cannot tell a stop from a crash: a JVM that ends on SIGTERM
//! exits with 143, but one that ignores SIGTERM (or takes longer than the
//! stop timeout) is killed and exits with 137, exactly like one killed from
//! outside. The orchestrator's memory knows which containers it stopped,
//! until the controller restarts. So the intent is written to the engine
//! before the stop is sent: the container is renamed to its name plus
//! [`STOPPED_SUFFIX`]. Labels cannot change after creation; the name can,
//! survives controller and engine restarts, and shows in `docker ps`.
//!
//! Our names are built from DNS labels and never contain a dot, so the
//! suffix cannot be confused with a name of ours. `restart_app` renames the
//! container back before it starts it, so a later exit is news again.

use bollard::query_parameters::RenameContainerOptionsBuilder;
use cameleer_runtime::{Error, Result};

use super::DockerRuntimeOrchestrator;
use crate::engine::{is_conflict, is_not_found};
use crate::labels::ContainerLabels;

/// What a stopped container's name ends with.
pub(crate) const STOPPED_SUFFIX: &str = ".stopped";

/// Whether a container name (as list or inspect give it, with or without
/// the leading `/`) carries the stopped-on-request mark.
pub(crate) fn is_marked(name: &str) -> bool {
    name.ends_with(STOPPED_SUFFIX)
}

/// The marked form of a name.
pub(crate) fn marked(name: &str) -> String {
    let name = name.trim_start_matches('/');
    if is_marked(name) {
        name.to_string()
    } else {
        format!("{name}{STOPPED_SUFFIX}")
    }
}

/// The name without the mark.
pub(crate) fn unmarked(name: &str) -> &str {
    let name = name.trim_start_matches('/');
    name.strip_suffix(STOPPED_SUFFIX).unwrap_or(name)
}

impl DockerRuntimeOrchestrator {
    /// Records, in the container's name, that it is being stopped on
    /// request. Idempotent; a container that is gone is fine.
    pub(super) async fn mark_stopped(&self, id: &str, name: &str) -> Result<()> {
        if is_marked(name) {
            return Ok(());
        }
        self.rename(id, name, &marked(name)).await
    }

    /// Removes the mark before the container is started again; returns
    /// the name it has afterwards.
    pub(super) async fn unmark(&self, id: &str, name: &str) -> Result<String> {
        if !is_marked(name) {
            return Ok(name.trim_start_matches('/').to_string());
        }
        let plain = unmarked(name).to_string();
        self.rename(id, name, &plain).await?;
        Ok(plain)
    }

    /// Renames `id` to `to`. When `to` is held by an ended container of the
    /// same app (a leftover of an earlier attempt; only the newest container
    /// of an app is ever addressed), that one is removed first.
    async fn rename(&self, id: &str, from: &str, to: &str) -> Result<()> {
        for attempt in 0..2 {
            let options = RenameContainerOptionsBuilder::new().name(to).build();
            let err = match self.docker.rename_container(id, options).await {
                Ok(()) => {
                    tracing::debug!(from, to, "renamed container");
                    return Ok(());
                }
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) => e,
            };
            if attempt > 0 || !is_conflict(&err) || !self.clear_name(id, to).await? {
                return Err(self.engine_error(format!("renaming container {from} to {to}"), err));
            }
        }
        Err(Error::Conflict(format!("the name {to} keeps being taken")))
    }

    /// Removes the holder of `name` when it is an ended container of the
    /// same app as `id`; whether it did.
    async fn clear_name(&self, id: &str, name: &str) -> Result<bool> {
        let labels_of = |i: &bollard::models::ContainerInspectResponse| {
            i.config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(ContainerLabels::parse)
        };
        let (Some(ours), Some(holder)) = (self.inspect(id).await?, self.inspect(name).await?)
        else {
            return Ok(false);
        };
        let running = holder
            .state
            .as_ref()
            .and_then(|s| s.running)
            .unwrap_or(false);
        let same_app = matches!(
            (labels_of(&ours), labels_of(&holder)),
            (Some(a), Some(b)) if a.app == b.app
        );
        if running || !same_app || holder.id.as_deref() == Some(id) {
            return Ok(false);
        }
        let holder_id = holder.id.unwrap_or_else(|| name.to_string());
        self.force_remove(&holder_id, name).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_round_trips() {
        let name = "cameleer-acme-dev-orders-v3";
        assert!(!is_marked(name));
        let m = marked(&format!("/{name}"));
        assert_eq!(m, "cameleer-acme-dev-orders-v3.stopped");
        assert!(is_marked(&m) && is_marked(&format!("/{m}")));
        assert_eq!(marked(&m), m);
        assert_eq!(unmarked(&format!("/{m}")), name);
        assert_eq!(unmarked(name), name);
    }
}
