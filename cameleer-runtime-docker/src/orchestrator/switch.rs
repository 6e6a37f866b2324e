//! The switch from one version to the next without a refused connection.
//!
//! Apps of a tenant+env reach each other by app name: the engine's DNS
//! answers `{app}` with the address of every container that has that alias
//! on the network, in turn. A container that has the alias from its
//! creation is in those answers while its JVM is still starting, so during
//! a redeploy about half of the connections would go to a version that does
//! not listen yet. Hence:
//!
//! 1. a new container joins the tenant network *without* the app's alias
//!    (it is reachable by its own name and address, which the health probe
//!    uses);
//! 2. once healthy, it is reconnected to the network with the alias
//!    (the engine cannot add an alias to a live endpoint), then probed
//!    again at its new address; from then on the old and the new version
//!    both serve;
//! 3. each older container is then taken out of the network, which takes
//!    it out of the answers, and stopped and removed.
//!
//! What a client can still see: the engine (20.10) removes a container's
//! DNS record as the last part of a disconnect, after its interface. A
//! client that resolves the name in those few tens of milliseconds gets an
//! address that no longer answers, and its connect times out (it is not
//! refused). Stopping the old version first would be worse: it stays in
//! the answers until its process has exited, so every client that picks it
//! meanwhile is refused. The engine has no way to drop a name while the
//! endpoint stays; `tests/zero_downtime.rs` measures what is left.
//!
//! Clients that cache DNS answers (the JVM does, 30 s by default) keep
//! using an old address until their cache expires; that is the client's
//! setting, not the switch's.

use bollard::models::{EndpointSettings, NetworkConnectRequest, NetworkDisconnectRequest};
use cameleer_runtime::{Error, Result};

use super::{DockerRuntimeOrchestrator, Listed, lifecycle::StartFailure};
use crate::engine::is_not_found;
use crate::labels::{self, ContainerLabels};

impl DockerRuntimeOrchestrator {
    /// Makes the healthy container `id` the one that serves the app: it
    /// gets the app's name on the network, and the app's older versions are
    /// retired.
    pub(super) async fn take_over(&self, id: &str, labels: &ContainerLabels) -> Result<()> {
        self.publish_alias(id, labels).await?;
        for old in self.list(labels::app_filter(&labels.app)).await? {
            if old.id != id && old.labels.version <= labels.version {
                self.retire(&old).await?;
            }
        }
        Ok(())
    }

    /// Gives the running container `id` the app's name on its network, if
    /// it does not have it yet, and waits until it answers its health check
    /// at its (possibly new) address.
    pub(super) async fn publish_alias(&self, id: &str, labels: &ContainerLabels) -> Result<()> {
        let alias = labels.app.app.to_string();
        let Some(inspect) = self.inspect(id).await? else {
            return Err(Error::not_found("app", &labels.app));
        };
        let endpoints = inspect
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        let Some((network, endpoint)) = endpoints.into_iter().next() else {
            return Err(Error::Backend {
                message: format!("container {id} of {} has no network", labels.app),
                source: None,
            });
        };
        if endpoint
            .aliases
            .as_ref()
            .is_some_and(|a| a.contains(&alias))
        {
            return Ok(());
        }
        let network = endpoint.network_id.clone().unwrap_or(network);
        let disconnect = NetworkDisconnectRequest {
            container: id.to_string(),
            force: Some(true),
        };
        match self.docker.disconnect_network(&network, disconnect).await {
            Ok(()) => {}
            // Not connected (an earlier attempt got this far).
            Err(e) if crate::engine::status_code(&e) == Some(500) => {
                tracing::debug!(container = %id, "not connected before taking the alias: {e}");
            }
            Err(e) => {
                return Err(self.engine_error(format!("disconnecting container {id}"), e));
            }
        }
        let connect = NetworkConnectRequest {
            container: id.to_string(),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(vec![alias]),
                ..Default::default()
            }),
        };
        self.docker
            .connect_network(&network, connect)
            .await
            .map_err(|e| {
                self.engine_error(format!("connecting container {id} as {}", labels.app), e)
            })?;
        tracing::info!(container = %id, app = %labels.app, "serving under the app's name");
        match self.wait_until_up(id, labels).await {
            Ok(()) => Ok(()),
            Err(StartFailure::Engine(e)) => Err(e),
            Err(failure) => {
                tracing::warn!(container = %id, "failed after joining the network as {}: {failure}", labels.app);
                Err(failure.into_error(&labels.app.to_string(), ""))
            }
        }
    }

    /// Takes an older version out of service: off the network first (out
    /// of the engine's DNS answers), then stopped and removed.
    pub(super) async fn retire(&self, old: &Listed) -> Result<()> {
        self.memory.expect_exit(&old.id);
        if old.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING) {
            self.leave_networks(&old.id).await?;
        }
        self.remove_container(old).await
    }

    /// Disconnects a container from every network it is on.
    pub(super) async fn leave_networks(&self, id: &str) -> Result<()> {
        let Some(inspect) = self.inspect(id).await? else {
            return Ok(());
        };
        let networks = inspect
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        for (name, endpoint) in networks {
            let network = endpoint.network_id.unwrap_or(name);
            let request = NetworkDisconnectRequest {
                container: id.to_string(),
                force: Some(true),
            };
            match self.docker.disconnect_network(&network, request).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(self.engine_error(format!("disconnecting container {id}"), e));
                }
            }
        }
        Ok(())
    }
}
