//! Per-tenant quotas: what a tenant may use, how much of it is in use, and
//! the [`QuotaStore`] a host keeps quotas and artifact charges in.
//!
//! The [`Platform`](crate::Platform) enforces quotas (see
//! `docs/architecture.md`, "Quotas"); this module holds the model and the
//! storage contract, with [`MemoryQuotaStore`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use cameleer_build::Sha256Digest;
use serde::{Deserialize, Serialize};

use crate::{AppConfig, Result, TenantId};

/// Which quota a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaKind {
    /// Bytes of stored artifacts ([`Quota::artifact_bytes`]).
    ArtifactBytes,
    /// Distinct apps ([`Quota::apps`]).
    Apps,
    /// Running instances ([`Quota::instances`]).
    Instances,
    /// Memory of running instances, MiB ([`Quota::memory_mb`]).
    MemoryMb,
    /// CPU of running instances, thousandths of a core ([`Quota::cpu_millis`]).
    CpuMillis,
}

impl QuotaKind {
    /// The stable error code of a request over this quota, e.g.
    /// `memory_quota_exceeded`.
    pub fn code(self) -> &'static str {
        match self {
            QuotaKind::ArtifactBytes => "artifact_bytes_quota_exceeded",
            QuotaKind::Apps => "apps_quota_exceeded",
            QuotaKind::Instances => "instances_quota_exceeded",
            QuotaKind::MemoryMb => "memory_quota_exceeded",
            QuotaKind::CpuMillis => "cpu_quota_exceeded",
        }
    }

    /// The unit the quota counts in, for messages.
    pub fn unit(self) -> &'static str {
        match self {
            QuotaKind::ArtifactBytes => "bytes",
            QuotaKind::Apps => "apps",
            QuotaKind::Instances => "instances",
            QuotaKind::MemoryMb => "MiB",
            QuotaKind::CpuMillis => "millicores",
        }
    }
}

impl std::fmt::Display for QuotaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QuotaKind::ArtifactBytes => "artifact_bytes",
            QuotaKind::Apps => "apps",
            QuotaKind::Instances => "instances",
            QuotaKind::MemoryMb => "memory_mb",
            QuotaKind::CpuMillis => "cpu_millis",
        })
    }
}

/// What one tenant may use. A field left out (`None`) is unlimited; the
/// default quota limits nothing.
///
/// Instances, memory and CPU count what the tenant's apps claim: each app
/// and environment with a deployment that is BUILDING, STARTING or RUNNING
/// claims [`instances_of`] its newest such deployment's config, each with
/// that config's `resources`. A deploy replaces its app's claim rather than
/// adding to it, so redeploying an app with the same resources needs no
/// headroom even while the old version serves during the switch.
///
/// # Examples
///
/// ```
/// use cameleer_runtime::Quota;
///
/// let q: Quota = serde_json::from_str(r#"{"apps": 5, "memory_mb": 4096}"#).unwrap();
/// assert_eq!((q.apps, q.memory_mb, q.instances), (Some(5), Some(4096), None));
/// assert_eq!(serde_json::from_str::<Quota>("{}").unwrap(), Quota::unlimited());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Bytes of artifacts the tenant has uploaded and that are still
    /// stored. An artifact counts once per tenant however often it is
    /// uploaded; two tenants uploading the same JAR are each charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_bytes: Option<u64>,
    /// Distinct apps (an app in several environments counts once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<u64>,
    /// Instances claimed by BUILDING, STARTING and RUNNING deployments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u64>,
    /// Memory of those instances, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// CPU of those instances, thousandths of a core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u64>,
}

impl Quota {
    /// A quota that limits nothing.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// The limit of one kind, `None` for unlimited.
    pub fn limit(&self, kind: QuotaKind) -> Option<u64> {
        match kind {
            QuotaKind::ArtifactBytes => self.artifact_bytes,
            QuotaKind::Apps => self.apps,
            QuotaKind::Instances => self.instances,
            QuotaKind::MemoryMb => self.memory_mb,
            QuotaKind::CpuMillis => self.cpu_millis,
        }
    }
}

/// What one tenant uses now, in the units of [`Quota`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaUsage {
    /// Bytes of stored artifacts charged to the tenant.
    pub artifact_bytes: u64,
    /// Distinct apps with at least one deployment.
    pub apps: u64,
    /// Instances claimed.
    pub instances: u64,
    /// Memory claimed, MiB.
    pub memory_mb: u64,
    /// CPU claimed, thousandths of a core.
    pub cpu_millis: u64,
}

impl QuotaUsage {
    /// The usage of one kind.
    pub fn of(&self, kind: QuotaKind) -> u64 {
        match kind {
            QuotaKind::ArtifactBytes => self.artifact_bytes,
            QuotaKind::Apps => self.apps,
            QuotaKind::Instances => self.instances,
            QuotaKind::MemoryMb => self.memory_mb,
            QuotaKind::CpuMillis => self.cpu_millis,
        }
    }

    /// Adds what `config` claims when it runs: [`instances_of`] it, each
    /// with its memory and CPU.
    pub fn claim(&mut self, config: &AppConfig) {
        let n = instances_of(config);
        self.instances += n;
        self.memory_mb += n * u64::from(config.resources.memory_mb);
        self.cpu_millis += n * u64::from(config.resources.cpu_millis);
    }
}

/// How many instances a deployment with `config` runs
/// ([`AppConfig::instances`], its replicas): the one place quotas count
/// instances.
pub fn instances_of(config: &AppConfig) -> u64 {
    u64::from(config.instances())
}

/// What [`QuotaStore::charge_artifact`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactCharge {
    /// The artifact is now charged to the tenant; `total` is the tenant's
    /// charged bytes with it.
    Charged {
        /// The tenant's charged bytes after the charge.
        total: u64,
    },
    /// The tenant was charged for it already: nothing changed.
    AlreadyCharged {
        /// The tenant's charged bytes.
        total: u64,
    },
    /// Charging it would take the tenant over `limit`: nothing changed.
    OverLimit {
        /// The tenant's charged bytes, without the artifact.
        total: u64,
    },
}

/// Keeps tenants' quotas and which stored artifacts each tenant is charged
/// for. Provided by the host, like the other stores.
///
/// Artifacts are stored once by content, but charged per tenant: a tenant
/// is charged an artifact's size once, at its first upload, whatever other
/// tenants uploaded. [`charge_artifact`](Self::charge_artifact) must be
/// atomic (check and record in one step) so that two uploads racing for the
/// last bytes of a quota cannot both pass.
#[async_trait]
pub trait QuotaStore: Send + Sync {
    /// The tenant's quota; [`Quota::unlimited`] when none was set.
    async fn quota(&self, tenant: &TenantId) -> Result<Quota>;

    /// Sets the tenant's quota, replacing the previous one. Lowering it
    /// below what is used removes nothing: requests that would use more are
    /// refused until usage falls.
    async fn set_quota(&self, tenant: &TenantId, quota: Quota) -> Result<()>;

    /// Charges `tenant` for the artifact `sha256` of `size` bytes unless it
    /// is charged already, refusing when the tenant's charged bytes would
    /// exceed `limit` (`None`: no limit). Atomic.
    async fn charge_artifact(
        &self,
        tenant: &TenantId,
        sha256: &Sha256Digest,
        size: u64,
        limit: Option<u64>,
    ) -> Result<ArtifactCharge>;

    /// Takes the charge of `sha256` off `tenant` (an upload whose store
    /// failed after the charge); nothing when it was not charged.
    async fn release_artifact(&self, tenant: &TenantId, sha256: &Sha256Digest) -> Result<()>;

    /// Takes the charge of `sha256` off every tenant: the artifact was
    /// removed from the store.
    async fn forget_artifact(&self, sha256: &Sha256Digest) -> Result<()>;

    /// The bytes charged to `tenant`.
    async fn artifact_bytes(&self, tenant: &TenantId) -> Result<u64>;

    /// Whether `tenant` is charged for `sha256`, that is, uploaded it (and
    /// it was not removed since). Artifacts are stored once for everyone,
    /// so this is what keeps a tenant from deploying another tenant's JAR
    /// by its digest.
    async fn artifact_charged(&self, tenant: &TenantId, sha256: &Sha256Digest) -> Result<bool>;
}

/// Quotas and artifact charges in memory.
///
/// # Examples
///
/// ```
/// use cameleer_runtime::memory::MemoryQuotaStore;
/// use cameleer_runtime::{ArtifactCharge, Quota, QuotaStore, Sha256Digest, TenantId};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryQuotaStore::new();
/// let acme: TenantId = "acme".parse().unwrap();
/// store.set_quota(&acme, Quota { artifact_bytes: Some(100), ..Quota::default() }).await.unwrap();
/// let jar = Sha256Digest::of(b"jar");
/// let charged = store.charge_artifact(&acme, &jar, 60, Some(100)).await.unwrap();
/// assert_eq!(charged, ArtifactCharge::Charged { total: 60 });
/// let other = Sha256Digest::of(b"other");
/// let refused = store.charge_artifact(&acme, &other, 60, Some(100)).await.unwrap();
/// assert_eq!(refused, ArtifactCharge::OverLimit { total: 60 });
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryQuotaStore {
    state: Mutex<QuotaState>,
}

#[derive(Debug, Default)]
struct QuotaState {
    quotas: HashMap<TenantId, Quota>,
    charges: HashMap<TenantId, BTreeMap<Sha256Digest, u64>>,
}

impl MemoryQuotaStore {
    /// An empty store: every tenant unlimited, nothing charged.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, QuotaState> {
        // Every critical section checks first and writes last.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl QuotaStore for MemoryQuotaStore {
    async fn quota(&self, tenant: &TenantId) -> Result<Quota> {
        Ok(self.lock().quotas.get(tenant).copied().unwrap_or_default())
    }

    async fn set_quota(&self, tenant: &TenantId, quota: Quota) -> Result<()> {
        self.lock().quotas.insert(tenant.clone(), quota);
        Ok(())
    }

    async fn charge_artifact(
        &self,
        tenant: &TenantId,
        sha256: &Sha256Digest,
        size: u64,
        limit: Option<u64>,
    ) -> Result<ArtifactCharge> {
        let mut st = self.lock();
        let charges = st.charges.entry(tenant.clone()).or_default();
        let total: u64 = charges.values().sum();
        if charges.contains_key(sha256) {
            return Ok(ArtifactCharge::AlreadyCharged { total });
        }
        if limit.is_some_and(|l| total.saturating_add(size) > l) {
            return Ok(ArtifactCharge::OverLimit { total });
        }
        charges.insert(*sha256, size);
        Ok(ArtifactCharge::Charged {
            total: total + size,
        })
    }

    async fn release_artifact(&self, tenant: &TenantId, sha256: &Sha256Digest) -> Result<()> {
        if let Some(charges) = self.lock().charges.get_mut(tenant) {
            charges.remove(sha256);
        }
        Ok(())
    }

    async fn forget_artifact(&self, sha256: &Sha256Digest) -> Result<()> {
        for charges in self.lock().charges.values_mut() {
            charges.remove(sha256);
        }
        Ok(())
    }

    async fn artifact_bytes(&self, tenant: &TenantId) -> Result<u64> {
        Ok(self
            .lock()
            .charges
            .get(tenant)
            .map(|c| c.values().sum())
            .unwrap_or(0))
    }
    async fn artifact_charged(&self, tenant: &TenantId, sha256: &Sha256Digest) -> Result<bool> {
        Ok(self
            .lock()
            .charges
            .get(tenant)
            .is_some_and(|c| c.contains_key(sha256)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "testkit")]
    #[tokio::test]
    async fn the_memory_store_keeps_the_contract() {
        crate::testkit::check_quota_store(&MemoryQuotaStore::new()).await;
    }

    #[test]
    fn replicas_claim_their_instances_memory_and_cpu_each() {
        let mut usage = QuotaUsage::default();
        let config = AppConfig {
            replicas: 3,
            resources: crate::Resources {
                memory_mb: 256,
                cpu_millis: 500,
                cpu_shares: None,
            },
            ..AppConfig::default()
        };
        usage.claim(&config);
        assert_eq!(
            (usage.instances, usage.memory_mb, usage.cpu_millis),
            (3, 768, 1500)
        );
    }

    #[test]
    fn every_kind_has_its_own_code() {
        let kinds = [
            QuotaKind::ArtifactBytes,
            QuotaKind::Apps,
            QuotaKind::Instances,
            QuotaKind::MemoryMb,
            QuotaKind::CpuMillis,
        ];
        let codes: std::collections::HashSet<_> = kinds.iter().map(|k| k.code()).collect();
        assert_eq!(codes.len(), kinds.len());
        assert!(codes.iter().all(|c| c.ends_with("_quota_exceeded")));
    }
}
