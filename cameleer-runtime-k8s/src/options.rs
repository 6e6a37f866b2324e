//! How the backend shapes what it applies: the host's configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use cameleer_runtime::TenantId;
use cameleer_runtime::launch::JvmLaunch;
use serde::{Deserialize, Serialize};

/// The field manager every server-side apply of the backend uses.
pub const FIELD_MANAGER: &str = "cameleer-runtime";

/// What one tenant may use in each of its namespaces (one per environment):
/// the namespace's `ResourceQuota` and `LimitRange`.
///
/// Leave room for one more pod than the apps need: a rolling update starts
/// the new pod before the old one goes (`maxSurge` 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    /// CPU of all pods together, in thousandths of a core (requests and
    /// limits). Default 8000.
    pub cpu_millis: u64,
    /// Memory of all pods together, in MiB (requests and limits). Default
    /// 16384.
    pub memory_mb: u64,
    /// How many pods. Default 40.
    pub pods: u32,
    /// How many Services. Default 20.
    pub services: u32,
    /// The most CPU one container may have, in thousandths of a core.
    /// Default 4000.
    pub max_container_cpu_millis: u64,
    /// The most memory one container may have, in MiB. Default 8192.
    pub max_container_memory_mb: u64,
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self {
            cpu_millis: 8000,
            memory_mb: 16 * 1024,
            pods: 40,
            services: 20,
            max_container_cpu_millis: 4000,
            max_container_memory_mb: 8 * 1024,
        }
    }
}

/// The cluster DNS the apps may reach (the only egress outside their
/// namespace that the default-deny policy lets through).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterDns {
    /// The namespace of the DNS pods. Default `kube-system`.
    pub namespace: String,
    /// Labels that select the DNS pods. Default `k8s-app=kube-dns` (CoreDNS
    /// on kind, k3d and most distributions).
    pub pod_labels: BTreeMap<String, String>,
}

impl Default for ClusterDns {
    fn default() -> Self {
        Self {
            namespace: "kube-system".into(),
            pod_labels: BTreeMap::from([("k8s-app".into(), "kube-dns".into())]),
        }
    }
}

/// How the Kubernetes backend runs apps. The defaults suit a typical Camel
/// or Spring Boot app on a small cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesOptions {
    /// The server-side apply field manager. Default [`FIELD_MANAGER`].
    pub field_manager: String,
    /// The fewest pods per app: an app runs its config's
    /// [`replicas`](cameleer_runtime::AppConfig::replicas), or this many if
    /// that is more. Default 1.
    pub replicas: i32,
    /// The uid the app runs as: at least 10000 (the restricted profile asks
    /// only for non-root; the platform asks for a uid no host user has).
    /// Default 10001, the base image's `cameleer` user.
    pub run_as_user: i64,
    /// The gid. Default 10001.
    pub run_as_group: i64,
    /// The size of the `emptyDir` on `/tmp`, in MiB. Default 64.
    pub tmp_size_mb: u32,
    /// Whether `/tmp` is in memory (`medium: Memory`, counted against the
    /// memory limit, as on Docker) rather than on the node's disk. Default
    /// false.
    pub tmp_in_memory: bool,
    /// Secrets (in each tenant namespace) to pull images with. Default none.
    pub image_pull_secrets: Vec<String>,
    /// `imagePullPolicy`. Default `IfNotPresent` (images are pinned by
    /// digest, so a cached one is the right one).
    pub image_pull_policy: String,
    /// How long a rollout may take beyond the app's start timeout (pulling
    /// the image, scheduling) before it counts as failed: the Deployment's
    /// `progressDeadlineSeconds` is the start timeout plus this. Default 60 s.
    pub progress_margin: Duration,
    /// With no health check, how long a pod must stay up to count as
    /// available (`minReadySeconds`). Default 3 s, as on Docker.
    pub health_grace: Duration,
    /// `terminationGracePeriodSeconds`: SIGTERM, then SIGKILL after this.
    /// Default 10 s, as on Docker.
    pub stop_timeout: Duration,
    /// How long a Deployment unknown to the store is left alone by
    /// `reconcile` after its last apply (another controller may be
    /// deploying it). Default 60 s.
    pub orphan_grace: Duration,
    /// The limits of every tenant without its own entry in
    /// [`tenant_limits`](Self::tenant_limits).
    pub default_limits: TenantLimits,
    /// Per-tenant limits.
    pub tenant_limits: BTreeMap<TenantId, TenantLimits>,
    /// The cluster DNS.
    pub dns: ClusterDns,
    /// The launch command the images carry; the pod's `command` is this with
    /// the customer's JVM options inserted. Default [`JvmLaunch::default`].
    pub launch: JvmLaunch,
    /// Limits [`reconcile`](cameleer_runtime::RuntimeOrchestrator::reconcile)
    /// to one tenant: the Deployments and Services of others are left
    /// alone, and their desired deployments are not reported missing. For
    /// hosts that shard tenants across controllers sharing one cluster, and
    /// for tests that share one. Default `None`: every tenant.
    pub reconcile_scope: Option<TenantId>,
}

impl Default for KubernetesOptions {
    fn default() -> Self {
        Self {
            field_manager: FIELD_MANAGER.into(),
            replicas: 1,
            run_as_user: 10001,
            run_as_group: 10001,
            tmp_size_mb: 64,
            tmp_in_memory: false,
            image_pull_secrets: Vec::new(),
            image_pull_policy: "IfNotPresent".into(),
            progress_margin: Duration::from_secs(60),
            health_grace: Duration::from_secs(3),
            stop_timeout: Duration::from_secs(10),
            orphan_grace: Duration::from_secs(60),
            default_limits: TenantLimits::default(),
            tenant_limits: BTreeMap::new(),
            dns: ClusterDns::default(),
            launch: JvmLaunch::default(),
            reconcile_scope: None,
        }
    }
}

impl KubernetesOptions {
    /// The limits of `tenant`.
    pub fn limits_for(&self, tenant: &TenantId) -> &TenantLimits {
        self.tenant_limits
            .get(tenant)
            .unwrap_or(&self.default_limits)
    }
}
