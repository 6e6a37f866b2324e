//! What a backend writes on the resources of a deployed version, so that a
//! controller that restarts can read back whose they are.
//!
//! Two kinds of keys, one schema for every backend:
//!
//! - **Identity** ([`IdentityKey`]: managed, tenant, app, env, version,
//!   deployment id, and on a resource that is one instance of several, its
//!   instance index): what resources are selected by. Every value is a valid
//!   Kubernetes label value (at most 63 characters of `[A-Za-z0-9._-]`,
//!   alphanumeric at both ends) and a valid Docker label, so the same
//!   selectors work on both: Docker labels `io.cameleer.<key>`, Kubernetes
//!   labels `cameleer.io/<key>`.
//! - **Metadata** ([`MetadataKey`]: health check, start timeout, the config's
//!   SHA-256, the number of replicas): what a backend needs to know about a resource but never
//!   selects by. Values may be longer or hold any character, so they are
//!   Docker labels (`io.cameleer.<key>`) and Kubernetes *annotations*
//!   (`cameleer.io/<key>`).
//!
//! # Examples
//!
//! ```
//! use cameleer_runtime::identity::{DeploymentIdentity, IdentityKey, is_label_value};
//! use cameleer_runtime::{AppRef, DeploymentId};
//!
//! let id = DeploymentIdentity {
//!     app: AppRef::parse("acme", "orders", "dev").unwrap(),
//!     deployment: DeploymentId::new_random(),
//!     version: 7,
//! };
//! let labels = id.docker_labels();
//! assert_eq!(labels["io.cameleer.version"], "7");
//! assert!(id.kubernetes_labels().values().all(|v| is_label_value(v)));
//! assert_eq!(DeploymentIdentity::parse_docker(&labels), Some(id));
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cameleer_build::Sha256Digest;

use crate::{AppConfig, AppId, AppRef, DeploymentId, EnvId, HealthCheck, TenantId};

/// The prefix of every Docker label the runtime writes.
pub const DOCKER_PREFIX: &str = "io.cameleer.";
/// The prefix of every Kubernetes label and annotation the runtime writes.
pub const KUBERNETES_PREFIX: &str = "cameleer.io/";
/// The value of [`IdentityKey::Managed`].
pub const MANAGED_VALUE: &str = "true";

/// The start timeout assumed for a resource whose metadata lacks one.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(120);

/// A key that identifies a deployed version; its values are label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentityKey {
    /// `true` on everything the runtime manages.
    Managed,
    /// The owning tenant.
    Tenant,
    /// The app.
    App,
    /// The environment.
    Env,
    /// The deployment's version.
    Version,
    /// The deployment id.
    Deployment,
    /// Which instance (replica) of the deployment a resource is,
    /// `0..replicas`: on a backend that makes one resource per instance (a
    /// Docker container). A Kubernetes pod is an instance already and does
    /// not carry it. Absent means instance 0 (resources made before
    /// replicas existed).
    Instance,
}

impl IdentityKey {
    /// Every identity key.
    pub const ALL: [IdentityKey; 7] = [
        Self::Managed,
        Self::Tenant,
        Self::App,
        Self::Env,
        Self::Version,
        Self::Deployment,
        Self::Instance,
    ];

    /// The keys every resource of a deployed version carries (all but
    /// [`Instance`](Self::Instance)).
    pub const DEPLOYMENT: [IdentityKey; 6] = [
        Self::Managed,
        Self::Tenant,
        Self::App,
        Self::Env,
        Self::Version,
        Self::Deployment,
    ];

    /// The key's name, without a prefix.
    pub fn name(self) -> &'static str {
        match self {
            Self::Managed => "managed",
            Self::Tenant => "tenant",
            Self::App => "app",
            Self::Env => "env",
            Self::Version => "version",
            Self::Deployment => "deployment",
            Self::Instance => "instance",
        }
    }

    /// The Docker label: `io.cameleer.<name>`.
    pub fn docker(self) -> String {
        format!("{DOCKER_PREFIX}{}", self.name())
    }

    /// The Kubernetes label: `cameleer.io/<name>`.
    pub fn kubernetes(self) -> String {
        format!("{KUBERNETES_PREFIX}{}", self.name())
    }
}

/// A key of metadata about a deployed version; its values may be anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetadataKey {
    /// How to probe the app: `none`, `tcp:<port>` or `http:<port><path>`.
    Health,
    /// How long the app may take to become healthy, in seconds.
    StartTimeout,
    /// The SHA-256 of the config the version runs with (its canonical JSON).
    ConfigSha256,
    /// How many instances the version runs ([`AppConfig::replicas`]).
    Replicas,
}

impl MetadataKey {
    /// Every metadata key.
    pub const ALL: [MetadataKey; 4] = [
        Self::Health,
        Self::StartTimeout,
        Self::ConfigSha256,
        Self::Replicas,
    ];

    /// The key's name, without a prefix.
    pub fn name(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::StartTimeout => "start-timeout",
            Self::ConfigSha256 => "config-sha256",
            Self::Replicas => "replicas",
        }
    }

    /// The Docker label: `io.cameleer.<name>`.
    pub fn docker(self) -> String {
        format!("{DOCKER_PREFIX}{}", self.name())
    }

    /// The Kubernetes annotation: `cameleer.io/<name>`.
    pub fn kubernetes(self) -> String {
        format!("{KUBERNETES_PREFIX}{}", self.name())
    }
}

/// Whether `value` is a valid Kubernetes label value: empty, or at most 63
/// characters of `[A-Za-z0-9._-]` that start and end alphanumeric.
pub fn is_label_value(value: &str) -> bool {
    let b = value.as_bytes();
    if b.is_empty() {
        return true;
    }
    b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Which version of which app a resource belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeploymentIdentity {
    /// Which app, where.
    pub app: AppRef,
    /// The deployment.
    pub deployment: DeploymentId,
    /// Its version.
    pub version: u64,
}

impl DeploymentIdentity {
    /// The value of each identity key.
    pub fn values(&self) -> [(IdentityKey, String); 6] {
        [
            (IdentityKey::Managed, MANAGED_VALUE.to_string()),
            (IdentityKey::Tenant, self.app.tenant.to_string()),
            (IdentityKey::App, self.app.app.to_string()),
            (IdentityKey::Env, self.app.env.to_string()),
            (IdentityKey::Version, self.version.to_string()),
            (IdentityKey::Deployment, self.deployment.to_string()),
        ]
    }

    /// The identity as Docker labels.
    pub fn docker_labels(&self) -> HashMap<String, String> {
        self.values()
            .into_iter()
            .map(|(k, v)| (k.docker(), v))
            .collect()
    }

    /// The identity as Kubernetes labels.
    pub fn kubernetes_labels(&self) -> BTreeMap<String, String> {
        self.values()
            .into_iter()
            .map(|(k, v)| (k.kubernetes(), v))
            .collect()
    }

    /// Reads an identity back through `get` (a key's value, if present);
    /// `None` when the resource is not managed or a value is missing or
    /// invalid (such a resource is never adopted).
    pub fn parse<'a>(get: impl Fn(IdentityKey) -> Option<&'a str>) -> Option<Self> {
        if get(IdentityKey::Managed)? != MANAGED_VALUE {
            return None;
        }
        Some(Self {
            app: AppRef::new(
                TenantId::new(get(IdentityKey::Tenant)?).ok()?,
                AppId::new(get(IdentityKey::App)?).ok()?,
                EnvId::new(get(IdentityKey::Env)?).ok()?,
            ),
            deployment: get(IdentityKey::Deployment)?.parse().ok()?,
            version: get(IdentityKey::Version)?.parse().ok()?,
        })
    }

    /// [`parse`](Self::parse) over Docker labels.
    pub fn parse_docker(labels: &HashMap<String, String>) -> Option<Self> {
        Self::parse(|k| labels.get(&k.docker()).map(String::as_str))
    }
}

/// One instance of a deployed version: whose it is and its index.
///
/// ```
/// use cameleer_runtime::identity::{DeploymentIdentity, InstanceIdentity};
/// use cameleer_runtime::{AppRef, DeploymentId};
///
/// let instance = InstanceIdentity {
///     deployment: DeploymentIdentity {
///         app: AppRef::parse("acme", "orders", "dev").unwrap(),
///         deployment: DeploymentId::new_random(),
///         version: 7,
///     },
///     index: 2,
/// };
/// let labels = instance.docker_labels();
/// assert_eq!(labels["io.cameleer.instance"], "2");
/// assert_eq!(InstanceIdentity::parse_docker(&labels), Some(instance));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceIdentity {
    /// The deployed version.
    pub deployment: DeploymentIdentity,
    /// Which of its instances, `0..replicas`.
    pub index: u32,
}

impl InstanceIdentity {
    /// The identity as Docker labels, the instance index included.
    pub fn docker_labels(&self) -> HashMap<String, String> {
        let mut labels = self.deployment.docker_labels();
        labels.insert(IdentityKey::Instance.docker(), self.index.to_string());
        labels
    }

    /// Reads an instance back through `get`; a missing index is 0 (a
    /// resource made before replicas existed), a malformed one is `None`.
    pub fn parse<'a>(get: impl Fn(IdentityKey) -> Option<&'a str>) -> Option<Self> {
        let index = match get(IdentityKey::Instance) {
            None => 0,
            Some(s) => s.parse().ok()?,
        };
        Some(Self {
            deployment: DeploymentIdentity::parse(get)?,
            index,
        })
    }

    /// [`parse`](Self::parse) over Docker labels.
    pub fn parse_docker(labels: &HashMap<String, String>) -> Option<Self> {
        Self::parse(|k| labels.get(&k.docker()).map(String::as_str))
    }
}

/// What a backend needs to know about a deployed version besides whose it
/// is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentMetadata {
    /// How to probe it.
    pub health: HealthCheck,
    /// How long it may take to become healthy.
    pub start_timeout: Duration,
    /// The SHA-256 of its config, when recorded.
    pub config_sha256: Option<Sha256Digest>,
    /// How many instances it runs; 1 when not recorded.
    pub replicas: u32,
}

impl DeploymentMetadata {
    /// The metadata of a version that runs with `config`.
    pub fn of(config: &AppConfig) -> Self {
        Self {
            health: config.health.clone(),
            start_timeout: config.start_timeout(),
            config_sha256: Some(config.sha256()),
            replicas: config.instances(),
        }
    }

    /// The value of each metadata key that has one.
    pub fn values(&self) -> Vec<(MetadataKey, String)> {
        let mut v = vec![
            (MetadataKey::Health, encode_health(&self.health)),
            (
                MetadataKey::StartTimeout,
                self.start_timeout.as_secs().to_string(),
            ),
        ];
        if let Some(d) = &self.config_sha256 {
            v.push((MetadataKey::ConfigSha256, d.to_string()));
        }
        v.push((MetadataKey::Replicas, self.replicas.to_string()));
        v
    }

    /// The metadata as Docker labels.
    pub fn docker_labels(&self) -> HashMap<String, String> {
        self.values()
            .into_iter()
            .map(|(k, v)| (k.docker(), v))
            .collect()
    }

    /// The metadata as Kubernetes annotations.
    pub fn kubernetes_annotations(&self) -> BTreeMap<String, String> {
        self.values()
            .into_iter()
            .map(|(k, v)| (k.kubernetes(), v))
            .collect()
    }

    /// Reads metadata back through `get`. A missing health check is `none`
    /// a missing start timeout 120 s and missing replicas 1 (resources
    /// written before they were recorded); a malformed health check is
    /// `None`, since probing the wrong thing would misreport the app.
    pub fn parse<'a>(get: impl Fn(MetadataKey) -> Option<&'a str>) -> Option<Self> {
        let health = get(MetadataKey::Health).map_or(Some(HealthCheck::None), decode_health)?;
        let start_timeout = get(MetadataKey::StartTimeout)
            .and_then(|s| s.parse::<u64>().ok())
            .map_or(DEFAULT_START_TIMEOUT, Duration::from_secs);
        let config_sha256 = get(MetadataKey::ConfigSha256).and_then(|s| s.parse().ok());
        let replicas = get(MetadataKey::Replicas)
            .and_then(|s| s.parse().ok())
            .filter(|n| *n >= 1)
            .unwrap_or(1);
        Some(Self {
            health,
            start_timeout,
            config_sha256,
            replicas,
        })
    }

    /// [`parse`](Self::parse) over Docker labels.
    pub fn parse_docker(labels: &HashMap<String, String>) -> Option<Self> {
        Self::parse(|k| labels.get(&k.docker()).map(String::as_str))
    }
}

/// `none`, `tcp:9092` or `http:8080/health`.
pub fn encode_health(health: &HealthCheck) -> String {
    match health {
        HealthCheck::TcpPort(port) => format!("tcp:{port}"),
        HealthCheck::Http { port, path } => format!("http:{port}{path}"),
        HealthCheck::None => "none".to_string(),
    }
}

/// The inverse of [`encode_health`]; `None` for anything malformed.
pub fn decode_health(s: &str) -> Option<HealthCheck> {
    if s == "none" {
        return Some(HealthCheck::None);
    }
    if let Some(port) = s.strip_prefix("tcp:") {
        return port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .map(HealthCheck::TcpPort);
    }
    let rest = s.strip_prefix("http:")?;
    let slash = rest.find('/')?;
    let port: u16 = rest[..slash].parse().ok().filter(|p| *p != 0)?;
    let path = &rest[slash..];
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some(HealthCheck::Http {
        port,
        path: path.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Any id the parsers accept: DNS-1035 labels up to the type's limit.
    fn id(max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[a-z]([a-z0-9-]{{0,{}}}[a-z0-9])?", max - 2))
            .unwrap()
            .prop_filter("valid id", move |s| {
                s.len() <= max && !s.contains("--") && !s.ends_with('-')
            })
    }

    proptest! {
        #[test]
        fn every_identity_value_we_can_generate_is_a_kubernetes_label_value(
            tenant in id(TenantId::MAX_LEN),
            app in id(AppId::MAX_LEN),
            env in id(EnvId::MAX_LEN),
            version in any::<u64>(),
        ) {
            let identity = DeploymentIdentity {
                app: AppRef::parse(&tenant, &app, &env).unwrap(),
                deployment: DeploymentId::new_random(),
                version,
            };
            let values = identity.values();
            prop_assert_eq!(values.len(), IdentityKey::DEPLOYMENT.len());
            for (key, value) in &values {
                prop_assert!(is_label_value(value), "{:?}={:?}", key, value);
                prop_assert!(!value.is_empty());
            }
            prop_assert_eq!(DeploymentIdentity::parse_docker(&identity.docker_labels()), Some(identity.clone()));
            let k8s = identity.kubernetes_labels();
            prop_assert_eq!(DeploymentIdentity::parse(|k| k8s.get(&k.kubernetes()).map(String::as_str)), Some(identity));
        }
    }

    #[test]
    fn the_longest_ids_and_versions_still_fit() {
        let identity = DeploymentIdentity {
            app: AppRef::parse(
                &"t".repeat(TenantId::MAX_LEN),
                &"a".repeat(AppId::MAX_LEN),
                &"e".repeat(EnvId::MAX_LEN),
            )
            .unwrap(),
            deployment: DeploymentId::new_random(),
            version: u64::MAX,
        };
        assert!(identity.values().iter().all(|(_, v)| is_label_value(v)));
        let instance = InstanceIdentity {
            deployment: identity,
            index: crate::config::MAX_REPLICAS - 1,
        };
        assert!(instance.docker_labels().values().all(|v| is_label_value(v)));
    }

    #[test]
    fn an_instance_without_an_index_is_instance_zero_and_a_bad_index_is_not_ours() {
        let identity = DeploymentIdentity {
            app: AppRef::parse("acme", "orders", "dev").unwrap(),
            deployment: DeploymentId::new_random(),
            version: 3,
        };
        let mut labels = identity.docker_labels();
        assert_eq!(
            InstanceIdentity::parse_docker(&labels).map(|i| i.index),
            Some(0)
        );
        labels.insert(IdentityKey::Instance.docker(), "two".into());
        assert_eq!(InstanceIdentity::parse_docker(&labels), None);
        assert_eq!(IdentityKey::ALL.len(), IdentityKey::DEPLOYMENT.len() + 1);
    }

    #[test]
    fn label_value_rules() {
        for ok in ["", "a", "a.b_c-d", &"x".repeat(63)] {
            assert!(is_label_value(ok), "{ok:?}");
        }
        for bad in ["-a", "a-", "a/b", "a:b", &"x".repeat(64), "ä"] {
            assert!(!is_label_value(bad), "{bad:?}");
        }
        // Metadata need not be: that is why it goes in annotations.
        assert!(!is_label_value(&encode_health(&HealthCheck::Http {
            port: 8080,
            path: "/health".into()
        })));
    }

    #[test]
    fn metadata_round_trips_and_damaged_health_is_refused() {
        for health in [
            HealthCheck::None,
            HealthCheck::TcpPort(9092),
            HealthCheck::Http {
                port: 8080,
                path: "/actuator/health?x=1".into(),
            },
        ] {
            let config = AppConfig {
                health,
                ..AppConfig::default()
            };
            let m = DeploymentMetadata::of(&config);
            let labels = m.docker_labels();
            assert_eq!(DeploymentMetadata::parse_docker(&labels), Some(m.clone()));
            let a = m.kubernetes_annotations();
            assert_eq!(
                DeploymentMetadata::parse(|k| a.get(&k.kubernetes()).map(String::as_str)),
                Some(m)
            );
        }
        for bad in ["tcp:0", "http:80", "udp:53", "http:80/a b"] {
            assert_eq!(
                DeploymentMetadata::parse(|k| (k == MetadataKey::Health).then_some(bad)),
                None,
                "{bad}"
            );
        }
    }
}
