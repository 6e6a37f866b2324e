//! The namespace of one tenant+env and the policies that fence it in: pure
//! functions from ids and the host's limits to k8s-openapi objects.
//!
//! - the [`Namespace`] `cameleer-{tenant}-{env}` (at most 60 characters, see
//!   [`cameleer_runtime::TenantId`]), labelled with its tenant and env and
//!   with Pod Security Admission's `restricted` level for `enforce`, `audit`
//!   and `warn`;
//! - [`NetworkPolicy`]s: deny all ingress and egress, then allow traffic
//!   between the namespace's own pods and DNS queries to the cluster DNS;
//! - a [`ResourceQuota`] and a [`LimitRange`] from the tenant's
//!   [`TenantLimits`].

use std::collections::BTreeMap;

use cameleer_runtime::identity::{IdentityKey, MANAGED_VALUE};
use cameleer_runtime::{EnvId, Resources, TenantId};
use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::options::{KubernetesOptions, TenantLimits};

/// The Pod Security Admission level of every tenant namespace.
pub const POD_SECURITY_LEVEL: &str = "restricted";

/// The Pod Security Admission modes the namespace is labelled for.
pub const POD_SECURITY_MODES: [&str; 3] = ["enforce", "audit", "warn"];

/// The name of the NetworkPolicy that denies everything.
pub const DEFAULT_DENY: &str = "cameleer-default-deny";
/// The name of the NetworkPolicy that allows traffic inside the namespace.
pub const ALLOW_SAME_NAMESPACE: &str = "cameleer-allow-same-namespace";
/// The name of the NetworkPolicy that allows DNS queries.
pub const ALLOW_DNS: &str = "cameleer-allow-dns";
/// The name of the ResourceQuota.
pub const QUOTA: &str = "cameleer-quota";
/// The name of the LimitRange.
pub const LIMIT_RANGE: &str = "cameleer-limits";

/// The label Kubernetes puts on every namespace with its name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// `cameleer-{tenant}-{env}`: at most 9 + 30 + 1 + 20 = 60 characters, a
/// DNS-1123 label since both ids are DNS-1035 labels.
///
/// # Examples
///
/// ```
/// use cameleer_runtime::{EnvId, TenantId};
/// use cameleer_runtime_k8s::namespace::namespace_name;
///
/// let t = TenantId::new("acme").unwrap();
/// let e = EnvId::new("dev").unwrap();
/// assert_eq!(namespace_name(&t, &e), "cameleer-acme-dev");
/// ```
pub fn namespace_name(tenant: &TenantId, env: &EnvId) -> String {
    format!("cameleer-{tenant}-{env}")
}

/// The labels of everything the backend creates for a tenant+env:
/// `cameleer.io/managed`, `cameleer.io/tenant`, `cameleer.io/env`.
pub fn tenant_env_labels(tenant: &TenantId, env: &EnvId) -> BTreeMap<String, String> {
    BTreeMap::from([
        (IdentityKey::Managed.kubernetes(), MANAGED_VALUE.to_string()),
        (IdentityKey::Tenant.kubernetes(), tenant.to_string()),
        (IdentityKey::Env.kubernetes(), env.to_string()),
    ])
}

/// Every object of a tenant+env namespace, in the order they are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantNamespace {
    /// The namespace.
    pub namespace: Namespace,
    /// Default deny, then the allows.
    pub network_policies: Vec<NetworkPolicy>,
    /// The tenant's quota in this namespace.
    pub quota: ResourceQuota,
    /// Per-container defaults and maxima.
    pub limit_range: LimitRange,
}

impl TenantNamespace {
    /// The objects of `tenant`+`env`'s namespace under `options`.
    pub fn new(tenant: &TenantId, env: &EnvId, options: &KubernetesOptions) -> Self {
        let name = namespace_name(tenant, env);
        let limits = options.limits_for(tenant);
        Self {
            namespace: namespace(tenant, env),
            network_policies: network_policies(tenant, env, options),
            quota: resource_quota(&name, tenant, env, limits),
            limit_range: limit_range(&name, tenant, env, limits),
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        self.namespace.metadata.name.as_deref().unwrap_or_default()
    }
}

/// The namespace, labelled with its tenant and env and for Pod Security
/// Admission's `restricted` level.
pub fn namespace(tenant: &TenantId, env: &EnvId) -> Namespace {
    let mut labels = tenant_env_labels(tenant, env);
    for mode in POD_SECURITY_MODES {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            POD_SECURITY_LEVEL.to_string(),
        );
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            "latest".to_string(),
        );
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(namespace_name(tenant, env)),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

fn meta(name: &str, namespace: &str, tenant: &TenantId, env: &EnvId) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(tenant_env_labels(tenant, env)),
        ..ObjectMeta::default()
    }
}

/// Every pod of the namespace.
fn all_pods() -> LabelSelector {
    LabelSelector::default()
}

/// Deny all ingress and egress; allow the namespace's pods to talk to each
/// other; allow DNS (UDP and TCP 53) to the cluster DNS pods.
pub fn network_policies(
    tenant: &TenantId,
    env: &EnvId,
    options: &KubernetesOptions,
) -> Vec<NetworkPolicy> {
    let ns = namespace_name(tenant, env);
    let same_namespace = NetworkPolicyPeer {
        pod_selector: Some(all_pods()),
        ..NetworkPolicyPeer::default()
    };
    let dns = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                NAMESPACE_NAME_LABEL.to_string(),
                options.dns.namespace.clone(),
            )])),
            ..LabelSelector::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(options.dns.pod_labels.clone()),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let dns_port = |protocol: &str| NetworkPolicyPort {
        protocol: Some(protocol.to_string()),
        port: Some(IntOrString::Int(53)),
        ..NetworkPolicyPort::default()
    };
    let both = Some(vec!["Ingress".to_string(), "Egress".to_string()]);
    vec![
        NetworkPolicy {
            metadata: meta(DEFAULT_DENY, &ns, tenant, env),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(all_pods()),
                policy_types: both.clone(),
                ..NetworkPolicySpec::default()
            }),
        },
        NetworkPolicy {
            metadata: meta(ALLOW_SAME_NAMESPACE, &ns, tenant, env),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(all_pods()),
                policy_types: both,
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![same_namespace.clone()]),
                    ..NetworkPolicyIngressRule::default()
                }]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![same_namespace]),
                    ..NetworkPolicyEgressRule::default()
                }]),
            }),
        },
        NetworkPolicy {
            metadata: meta(ALLOW_DNS, &ns, tenant, env),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(all_pods()),
                policy_types: Some(vec!["Egress".to_string()]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![dns]),
                    ports: Some(vec![dns_port("UDP"), dns_port("TCP")]),
                }]),
                ..NetworkPolicySpec::default()
            }),
        },
    ]
}

/// `{n}m`: CPU in thousandths of a core.
pub fn cpu(millis: u64) -> Quantity {
    Quantity(format!("{millis}m"))
}

/// `{n}Mi`: memory in MiB.
pub fn memory(mb: u64) -> Quantity {
    Quantity(format!("{mb}Mi"))
}

/// The tenant's quota: CPU and memory requests and limits, pods, Services.
pub fn resource_quota(
    namespace: &str,
    tenant: &TenantId,
    env: &EnvId,
    limits: &TenantLimits,
) -> ResourceQuota {
    let hard = BTreeMap::from([
        ("requests.cpu".to_string(), cpu(limits.cpu_millis)),
        ("limits.cpu".to_string(), cpu(limits.cpu_millis)),
        ("requests.memory".to_string(), memory(limits.memory_mb)),
        ("limits.memory".to_string(), memory(limits.memory_mb)),
        ("pods".to_string(), Quantity(limits.pods.to_string())),
        (
            "services".to_string(),
            Quantity(limits.services.to_string()),
        ),
    ]);
    ResourceQuota {
        metadata: meta(QUOTA, namespace, tenant, env),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

/// Per-container maxima from the tenant's limits, and defaults (the core's
/// [`Resources::default`], within the maxima) for any container that names
/// none.
pub fn limit_range(
    namespace: &str,
    tenant: &TenantId,
    env: &EnvId,
    limits: &TenantLimits,
) -> LimitRange {
    let defaults = Resources::default();
    let default_cpu = u64::from(defaults.cpu_millis).min(limits.max_container_cpu_millis);
    let default_memory = u64::from(defaults.memory_mb).min(limits.max_container_memory_mb);
    let pair = |cpu_m: u64, mem: u64| {
        BTreeMap::from([
            ("cpu".to_string(), cpu(cpu_m)),
            ("memory".to_string(), memory(mem)),
        ])
    };
    LimitRange {
        metadata: meta(LIMIT_RANGE, namespace, tenant, env),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_string(),
                max: Some(pair(
                    limits.max_container_cpu_millis,
                    limits.max_container_memory_mb,
                )),
                default: Some(pair(default_cpu, default_memory)),
                default_request: Some(pair(default_cpu, default_memory)),
                ..LimitRangeItem::default()
            }],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (TenantId, EnvId) {
        (TenantId::new("acme").unwrap(), EnvId::new("dev").unwrap())
    }

    #[test]
    fn the_longest_ids_give_a_name_within_63() {
        let t = TenantId::new("t".repeat(TenantId::MAX_LEN)).unwrap();
        let e = EnvId::new("e".repeat(EnvId::MAX_LEN)).unwrap();
        let name = namespace_name(&t, &e);
        assert_eq!(name.len(), 60);
        assert!(name.len() <= 63);
    }

    #[test]
    fn the_namespace_is_labelled_with_its_ids_and_restricted() {
        let (t, e) = ids();
        let ns = namespace(&t, &e);
        let labels = ns.metadata.labels.unwrap();
        assert_eq!(labels["cameleer.io/tenant"], "acme");
        assert_eq!(labels["cameleer.io/env"], "dev");
        assert_eq!(labels["cameleer.io/managed"], "true");
        for mode in ["enforce", "audit", "warn"] {
            assert_eq!(
                labels[&format!("pod-security.kubernetes.io/{mode}")],
                "restricted"
            );
        }
    }

    #[test]
    fn network_policies_deny_by_default_and_allow_the_namespace_and_dns() {
        let (t, e) = ids();
        let policies = network_policies(&t, &e, &KubernetesOptions::default());
        let deny = policies[0].spec.as_ref().unwrap();
        assert_eq!(policies[0].metadata.name.as_deref(), Some(DEFAULT_DENY));
        assert_eq!(
            deny.policy_types.as_deref(),
            Some(&["Ingress".to_string(), "Egress".to_string()][..])
        );
        assert!(deny.ingress.is_none() && deny.egress.is_none());
        assert_eq!(deny.pod_selector, Some(LabelSelector::default()));

        let same = policies[1].spec.as_ref().unwrap();
        let from = &same.ingress.as_ref().unwrap()[0].from.as_ref().unwrap()[0];
        assert_eq!(from.pod_selector, Some(LabelSelector::default()));
        assert!(from.namespace_selector.is_none(), "only this namespace");
        let to = &same.egress.as_ref().unwrap()[0].to.as_ref().unwrap()[0];
        assert!(to.namespace_selector.is_none());

        let dns = policies[2].spec.as_ref().unwrap();
        assert_eq!(
            dns.policy_types.as_deref(),
            Some(&["Egress".to_string()][..])
        );
        let rule = &dns.egress.as_ref().unwrap()[0];
        let ports: Vec<_> = rule
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| (p.protocol.clone().unwrap(), p.port.clone().unwrap()))
            .collect();
        assert_eq!(
            ports,
            [
                ("UDP".to_string(), IntOrString::Int(53)),
                ("TCP".to_string(), IntOrString::Int(53))
            ]
        );
        let peer = &rule.to.as_ref().unwrap()[0];
        assert_eq!(
            peer.namespace_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["kubernetes.io/metadata.name"],
            "kube-system"
        );
    }

    #[test]
    fn quota_and_limit_range_come_from_the_tenants_limits() {
        let (t, e) = ids();
        let mut options = KubernetesOptions::default();
        options.tenant_limits.insert(
            t.clone(),
            TenantLimits {
                cpu_millis: 2000,
                memory_mb: 1024,
                pods: 5,
                services: 3,
                max_container_cpu_millis: 500,
                max_container_memory_mb: 256,
            },
        );
        let objects = TenantNamespace::new(&t, &e, &options);
        assert_eq!(objects.name(), "cameleer-acme-dev");
        let hard = objects.quota.spec.unwrap().hard.unwrap();
        assert_eq!(hard["limits.cpu"], Quantity("2000m".into()));
        assert_eq!(hard["requests.memory"], Quantity("1024Mi".into()));
        assert_eq!(hard["pods"], Quantity("5".into()));
        let item = &objects.limit_range.spec.unwrap().limits[0];
        assert_eq!(item.type_, "Container");
        assert_eq!(
            item.max.as_ref().unwrap()["memory"],
            Quantity("256Mi".into())
        );
        // Defaults never exceed the maxima.
        assert_eq!(
            item.default.as_ref().unwrap()["memory"],
            Quantity("256Mi".into())
        );
        assert_eq!(
            item.default.as_ref().unwrap()["cpu"],
            Quantity("500m".into())
        );

        let other = TenantNamespace::new(&TenantId::new("other").unwrap(), &e, &options);
        assert_eq!(
            other.quota.spec.unwrap().hard.unwrap()["pods"],
            Quantity("40".into())
        );
    }
}
