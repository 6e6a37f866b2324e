//! Quota enforcement: what a tenant uses, and the check every request that
//! would use more passes before anything is created.
//!
//! Checks and creations of one tenant take turns behind the tenant's gate,
//! so two requests racing for the last unit of a quota cannot both pass:
//! the second sees the first's deployment (it is BUILDING or STARTING, and
//! so claims its resources) before it checks. Artifact bytes are charged
//! atomically by the [`QuotaStore`](crate::QuotaStore) instead, at the end
//! of the upload's stream and before the store commits it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::OwnedMutexGuard;

use super::core::Core;
use crate::{AppConfig, AppRef, Error, QuotaKind, QuotaUsage, Result, TenantId};

/// The kinds a deployment can use more of.
const DEPLOY_KINDS: [QuotaKind; 4] = [
    QuotaKind::Apps,
    QuotaKind::Instances,
    QuotaKind::MemoryMb,
    QuotaKind::CpuMillis,
];

/// What a tenant's deployments claim, per app and environment, and which
/// apps it has.
struct Claims {
    by_app: HashMap<AppRef, AppConfig>,
    apps: BTreeSet<crate::AppId>,
}

impl Claims {
    fn usage(&self) -> QuotaUsage {
        let mut usage = QuotaUsage {
            apps: self.apps.len() as u64,
            ..QuotaUsage::default()
        };
        for config in self.by_app.values() {
            usage.claim(config);
        }
        usage
    }
}

impl Core {
    /// The tenant's gate: held across a quota check and the creation it
    /// admits.
    pub(crate) async fn tenant_gate(&self, tenant: &TenantId) -> OwnedMutexGuard<()> {
        let gate = {
            let mut gates = self.tenant_gates.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(gates.entry(tenant.clone()).or_default())
        };
        gate.lock_owned().await
    }

    async fn claims(&self, tenant: &TenantId) -> Result<Claims> {
        let apps = self
            .store
            .latest_per_app(tenant)
            .await?
            .into_iter()
            .map(|d| d.app.app)
            .collect();
        let mut by_app: HashMap<AppRef, (u64, AppConfig)> = HashMap::new();
        for d in self.store.active().await? {
            if &d.app.tenant != tenant {
                continue;
            }
            let newer = by_app.get(&d.app).is_none_or(|(v, _)| d.version > *v);
            if newer {
                by_app.insert(d.app.clone(), (d.version, d.config));
            }
        }
        Ok(Claims {
            by_app: by_app.into_iter().map(|(k, (_, c))| (k, c)).collect(),
            apps,
        })
    }

    /// What `tenant` uses now.
    pub(crate) async fn quota_usage(&self, tenant: &TenantId) -> Result<QuotaUsage> {
        let mut usage = self.claims(tenant).await?.usage();
        usage.artifact_bytes = self.quotas.artifact_bytes(tenant).await?;
        Ok(usage)
    }

    /// Checks that `app` may run with `config`: its claim replaces the one
    /// it has now. A kind over its quota is refused only when the request
    /// raises it, so a quota lowered below what is used still lets a tenant
    /// redeploy what runs. The caller holds the tenant's gate until the
    /// deployment is created.
    pub(crate) async fn admit(&self, app: &AppRef, config: &AppConfig) -> Result<()> {
        let quota = self.quotas.quota(&app.tenant).await?;
        if DEPLOY_KINDS.iter().all(|k| quota.limit(*k).is_none()) {
            return Ok(());
        }
        let mut claims = self.claims(&app.tenant).await?;
        let now = claims.usage();
        claims.by_app.insert(app.clone(), config.clone());
        claims.apps.insert(app.app.clone());
        let next = claims.usage();
        for kind in DEPLOY_KINDS {
            if let Some(limit) = quota.limit(kind)
                && next.of(kind) > limit
                && next.of(kind) > now.of(kind)
            {
                tracing::info!(tenant = %app.tenant, quota = %kind, limit, requested = next.of(kind), "refused by quota");
                return Err(Error::QuotaExceeded {
                    tenant: app.tenant.clone(),
                    kind,
                    limit,
                    requested: next.of(kind),
                });
            }
        }
        Ok(())
    }
}
