//! One bridge network per tenant+env, created on demand and removed with its
//! last container.
//!
//! The network is found by its labels, never by its name: two tenant+env
//! pairs can share a name (`a`/`b-c` and `a-b`/`c` both give
//! `cameleer-a-b-c`), and an engine that predates API 1.44 lets two networks
//! share one. Containers are attached by network id, so a name collision
//! never puts two tenants on one network. When a race between two
//! controllers leaves two networks of the same tenant+env, every caller picks
//! the oldest, and the other is removed once empty.

use bollard::Docker;
use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::{ListContainersOptionsBuilder, ListNetworksOptionsBuilder};
use cameleer_runtime::{EnvId, Result, Sha256Digest, TenantId};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::engine::{backend, is_not_found};
use crate::labels;

/// A tenant+env network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TenantNetwork {
    /// The engine's id: what containers are attached by.
    pub id: String,
    /// Its name, for messages.
    pub name: String,
}

/// Every network of `tenant`+`env`, oldest first.
async fn list(docker: &Docker, tenant: &TenantId, env: &EnvId) -> Result<Vec<TenantNetwork>> {
    let filters = labels::label_filters(labels::tenant_env_filter(tenant, env));
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    let networks = docker
        .list_networks(Some(options))
        .await
        .map_err(|e| backend(format!("listing the networks of {tenant}/{env}"), e))?;
    let mut found: Vec<_> = networks
        .into_iter()
        // The engine already filtered; checking again costs nothing and keeps
        // a filter bug from ever handing out another tenant's network.
        .filter(|n| labels::network_belongs_to(n.labels.as_ref(), tenant, env))
        .filter_map(|n| {
            let created = n
                .created
                .as_deref()
                .and_then(|c| OffsetDateTime::parse(c, &Rfc3339).ok())
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            Some((
                created,
                TenantNetwork {
                    id: n.id?,
                    name: n.name.unwrap_or_default(),
                },
            ))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    Ok(found.into_iter().map(|(_, n)| n).collect())
}

/// The tenant+env pairs that have at least one network of ours.
pub(crate) async fn managed_places(docker: &Docker) -> Result<Vec<(TenantId, EnvId)>> {
    let filters = labels::label_filters(labels::managed_filter());
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    let networks = docker
        .list_networks(Some(options))
        .await
        .map_err(|e| backend("listing our networks", e))?;
    let mut places: Vec<_> = networks
        .into_iter()
        .filter_map(|n| {
            let l = n.labels?;
            Some((
                TenantId::new(l.get(labels::TENANT)?.as_str()).ok()?,
                EnvId::new(l.get(labels::ENV)?.as_str()).ok()?,
            ))
        })
        .collect();
    places.sort();
    places.dedup();
    Ok(places)
}

/// The network of `tenant`+`env`, created when absent.
///
/// Callers serialise `ensure` and [`remove_if_unused`] for one tenant+env
/// (the orchestrator holds a lock across "ensure, then create the container"),
/// so a network is never removed between being found and being used.
pub(crate) async fn ensure(
    docker: &Docker,
    tenant: &TenantId,
    env: &EnvId,
) -> Result<TenantNetwork> {
    if let Some(existing) = list(docker, tenant, env).await?.into_iter().next() {
        return Ok(existing);
    }
    let name = free_name(docker, tenant, env).await?;
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        internal: Some(false),
        attachable: Some(false),
        labels: Some(labels::network_labels(tenant, env)),
        ..Default::default()
    };
    docker
        .create_network(request)
        .await
        .map_err(|e| backend(format!("creating network {name}"), e))?;
    tracing::info!(network = %name, "created tenant network");
    // Read back rather than trust the create response: if another controller
    // created one at the same time, both now agree on the oldest.
    list(docker, tenant, env)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| cameleer_runtime::Error::Backend {
            message: format!("network {name} vanished right after it was created"),
            source: None,
        })
}

/// The name for a new network of `tenant`+`env`: `cameleer-{tenant}-{env}`,
/// or, when another pair's network has that name, the name with a hash of
/// the pair appended. (The engine resolves networks by name when it starts
/// a container, and refuses an ambiguous one.)
async fn free_name(docker: &Docker, tenant: &TenantId, env: &EnvId) -> Result<String> {
    let primary = labels::network_name(tenant, env);
    let filters = std::collections::HashMap::from([("name".to_string(), vec![primary.clone()])]);
    let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
    let taken = docker
        .list_networks(Some(options))
        .await
        .map_err(|e| backend(format!("looking up network {primary}"), e))?
        .into_iter()
        // The engine's name filter matches substrings.
        .any(|n| n.name.as_deref() == Some(primary.as_str()));
    if !taken {
        return Ok(primary);
    }
    let pair = Sha256Digest::of(format!("{tenant}/{env}").as_bytes());
    Ok(format!("{primary}-{}", pair.short(8)))
}

/// Removes the networks of `tenant`+`env` when no container of ours (in any
/// state) is left in that tenant+env. Returns how many were removed.
///
/// A stopped container still counts: it can be restarted and needs its
/// network.
pub(crate) async fn remove_if_unused(
    docker: &Docker,
    tenant: &TenantId,
    env: &EnvId,
) -> Result<usize> {
    let filters = labels::label_filters(labels::tenant_env_filter(tenant, env));
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let containers = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| backend(format!("listing the containers of {tenant}/{env}"), e))?;
    if !containers.is_empty() {
        return Ok(0);
    }
    let mut removed = 0;
    for network in list(docker, tenant, env).await? {
        match docker.remove_network(&network.id).await {
            Ok(()) => {
                tracing::info!(network = %network.name, "removed tenant network");
                removed += 1;
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(backend(format!("removing network {}", network.name), e)),
        }
    }
    Ok(removed)
}
