//! The labels and names the backend gives its containers, networks and
//! images: its schema for operators and hosts.
//!
//! This is product API, stable like the rest of the crate: a host or an
//! operator finds, monitors, bills or cleans up what the backend runs with
//! them (`docker ps --filter label=io.cameleer.tenant=acme`, or
//! [`tenant_filter`] with [`label_filters`] in a bollard list call), and
//! reads a container's name in `docker ps`. The identity keys are the core's
//! schema ([`cameleer_runtime::identity`]) written as Docker labels
//! `io.cameleer.<key>`; the image keys are this backend's own.
//!
//! Labels are the truth about what runs: a controller that restarts reads
//! them back to learn which tenant, app, environment, version and deployment
//! a container belongs to, and how to probe it. Names only keep two
//! resources from being created twice; they are never parsed. How labels
//! are read back is internal.

use std::collections::HashMap;
use std::time::Duration;

use cameleer_runtime::identity::{DeploymentIdentity, DeploymentMetadata, InstanceIdentity};
use cameleer_runtime::{
    AppRef, DeployRequest, DeploymentId, EnvId, HealthCheck, Sha256Digest, TenantId,
};

// The identity and metadata keys are the core's schema
// (`cameleer_runtime::identity`), written as Docker labels `io.cameleer.<key>`.

/// The label every resource this backend creates carries, with value `true`.
pub const MANAGED: &str = "io.cameleer.managed";
/// The owning tenant.
pub const TENANT: &str = "io.cameleer.tenant";
/// The app.
pub const APP: &str = "io.cameleer.app";
/// The environment.
pub const ENV: &str = "io.cameleer.env";
/// The deployment's version.
pub const VERSION: &str = "io.cameleer.version";
/// The deployment id.
pub const DEPLOYMENT: &str = "io.cameleer.deployment";
/// Which instance of the deployment a container is, `0..replicas`.
pub const INSTANCE: &str = "io.cameleer.instance";
/// How many instances the deployment runs.
pub const REPLICAS: &str = "io.cameleer.replicas";
/// How to probe the app: `none`, `tcp:<port>` or `http:<port><path>`.
pub const HEALTH: &str = "io.cameleer.health";
/// How long the app may take to become healthy, in seconds.
pub const START_TIMEOUT: &str = "io.cameleer.start-timeout";
/// On images: the SHA-256 of the JAR inside.
pub const ARTIFACT_SHA256: &str = "io.cameleer.artifact-sha256";
/// On images: the build cache key, a SHA-256 over everything the image is
/// made of (see `DockerImageBuilder`).
pub const CONTEXT: &str = "io.cameleer.context";
/// On base+agent images (and the app images on them): the SHA-256 of the
/// agent JAR inside.
pub const AGENT_SHA256: &str = "io.cameleer.agent-sha256";
/// On base+agent images (and the app images on them): the id of the JRE
/// base image they were made from.
pub const BASE_IMAGE: &str = "io.cameleer.base-image";

/// The `label=…` filter values that select every container or network this
/// backend manages.
pub fn managed_filter() -> Vec<String> {
    vec![format!("{MANAGED}=true")]
}

/// The label filter values that select the resources of `tenant`.
pub fn tenant_filter(tenant: &TenantId) -> Vec<String> {
    vec![format!("{MANAGED}=true"), format!("{TENANT}={tenant}")]
}

/// The label filter values that select the resources of one tenant+env.
pub fn tenant_env_filter(tenant: &TenantId, env: &EnvId) -> Vec<String> {
    let mut f = tenant_filter(tenant);
    f.push(format!("{ENV}={env}"));
    f
}

/// The label filter values that select every container of `app`.
pub fn app_filter(app: &AppRef) -> Vec<String> {
    let mut f = tenant_env_filter(&app.tenant, &app.env);
    f.push(format!("{APP}={}", app.app));
    f
}

/// The filters map of a list call: `{"label": values}`.
pub fn label_filters(values: Vec<String>) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), values)])
}

/// The network of one tenant+env: `cameleer-{tenant}-{env}`.
///
/// Two pairs can map to the same name (`a`/`b-c` and `a-b`/`c`), so the
/// network's labels, not its name, say whose it is, and a network of a pair
/// whose name is taken gets a hash of the pair appended.
pub fn network_name(tenant: &TenantId, env: &EnvId) -> String {
    format!("cameleer-{tenant}-{env}")
}

/// The container of one version (of its first instance):
/// `cameleer-{tenant}-{env}-{app}-v{version}`.
pub fn container_name(app: &AppRef, version: u64) -> String {
    instance_container_name(app, version, 0)
}

/// The container of one instance of one version: [`container_name`] for
/// instance 0 (the name a version of one instance always had),
/// `…-v{version}-i{instance}` for the others.
pub fn instance_container_name(app: &AppRef, version: u64, instance: u32) -> String {
    let base = format!("cameleer-{}-{}-{}-v{version}", app.tenant, app.env, app.app);
    if instance == 0 {
        base
    } else {
        format!("{base}-i{instance}")
    }
}

/// The labels of a network.
pub(crate) fn network_labels(tenant: &TenantId, env: &EnvId) -> HashMap<String, String> {
    HashMap::from([
        (MANAGED.to_string(), "true".to_string()),
        (TENANT.to_string(), tenant.to_string()),
        (ENV.to_string(), env.to_string()),
    ])
}

/// Whether `labels` mark a network as the one of `tenant`+`env`.
pub(crate) fn network_belongs_to(
    labels: Option<&HashMap<String, String>>,
    tenant: &TenantId,
    env: &EnvId,
) -> bool {
    let Some(labels) = labels else { return false };
    labels.get(MANAGED).map(String::as_str) == Some("true")
        && labels.get(TENANT).map(String::as_str) == Some(tenant.as_str())
        && labels.get(ENV).map(String::as_str) == Some(env.as_str())
}

/// What the labels of one of our containers say about it: the core's
/// identity and metadata of the version it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerLabels {
    /// Which app, where.
    pub(crate) app: AppRef,
    /// The deployment.
    pub(crate) deployment: DeploymentId,
    /// Its version.
    pub(crate) version: u64,
    /// Which of its instances this container is.
    pub(crate) instance: u32,
    /// How many instances the deployment runs.
    pub(crate) replicas: u32,
    /// How to probe it.
    pub(crate) health: HealthCheck,
    /// How long it may take to become healthy.
    pub(crate) start_timeout: Duration,
    /// The SHA-256 of the config it runs with, when recorded.
    pub(crate) config_sha256: Option<Sha256Digest>,
}

impl ContainerLabels {
    /// The labels of the container that runs instance `instance` of
    /// `request`.
    pub(crate) fn of(request: &DeployRequest, instance: u32) -> Self {
        let metadata = DeploymentMetadata::of(&request.config);
        Self {
            app: request.app.clone(),
            deployment: request.deployment,
            version: request.version,
            instance,
            replicas: metadata.replicas,
            health: metadata.health,
            start_timeout: metadata.start_timeout,
            config_sha256: metadata.config_sha256,
        }
    }

    fn identity(&self) -> InstanceIdentity {
        InstanceIdentity {
            deployment: DeploymentIdentity {
                app: self.app.clone(),
                deployment: self.deployment,
                version: self.version,
            },
            index: self.instance,
        }
    }

    fn metadata(&self) -> DeploymentMetadata {
        DeploymentMetadata {
            health: self.health.clone(),
            start_timeout: self.start_timeout,
            config_sha256: self.config_sha256,
            replicas: self.replicas,
        }
    }

    /// The container's name; see [`instance_container_name`].
    pub(crate) fn container_name(&self) -> String {
        instance_container_name(&self.app, self.version, self.instance)
    }

    /// The labels to put on a container.
    pub(crate) fn to_map(&self) -> HashMap<String, String> {
        let mut map = self.identity().docker_labels();
        map.extend(self.metadata().docker_labels());
        map
    }

    /// Reads the labels of a container back; `None` when it is not one of
    /// ours or a label is missing or malformed (such a container is never
    /// probed or adopted).
    pub(crate) fn parse(labels: &HashMap<String, String>) -> Option<Self> {
        let identity = InstanceIdentity::parse_docker(labels)?;
        let metadata = DeploymentMetadata::parse_docker(labels)?;
        Some(Self {
            app: identity.deployment.app,
            deployment: identity.deployment.deployment,
            version: identity.deployment.version,
            instance: identity.index,
            replicas: metadata.replicas,
            health: metadata.health,
            start_timeout: metadata.start_timeout,
            config_sha256: metadata.config_sha256,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(health: HealthCheck) -> ContainerLabels {
        ContainerLabels {
            app: AppRef::parse("acme", "orders", "dev").unwrap(),
            deployment: DeploymentId::new_random(),
            version: 7,
            instance: 2,
            replicas: 3,
            health,
            start_timeout: Duration::from_secs(30),
            config_sha256: Some(Sha256Digest::of(b"{}")),
        }
    }

    #[test]
    fn labels_round_trip() {
        for health in [
            HealthCheck::None,
            HealthCheck::TcpPort(9092),
            HealthCheck::Http {
                port: 8080,
                path: "/actuator/health?x=1".into(),
            },
        ] {
            let l = labels(health);
            assert_eq!(ContainerLabels::parse(&l.to_map()), Some(l));
        }
    }

    #[test]
    fn foreign_or_damaged_labels_are_not_ours() {
        let good = labels(HealthCheck::TcpPort(1)).to_map();
        for (key, value) in [
            (MANAGED, "false"),
            (TENANT, "Not A Tenant"),
            (VERSION, "x"),
            (DEPLOYMENT, "nope"),
            (HEALTH, "tcp:0"),
            (INSTANCE, "first"),
            (HEALTH, "http:80"),
            (HEALTH, "udp:53"),
        ] {
            let mut m = good.clone();
            m.insert(key.into(), value.into());
            assert_eq!(ContainerLabels::parse(&m), None, "{key}={value}");
        }
        let mut m = good.clone();
        m.remove(APP);
        assert_eq!(ContainerLabels::parse(&m), None);
    }

    #[test]
    fn the_label_names_are_the_cores_schema() {
        use cameleer_runtime::identity::{IdentityKey as I, MetadataKey as M};
        for (ours, core) in [
            (MANAGED, I::Managed.docker()),
            (TENANT, I::Tenant.docker()),
            (APP, I::App.docker()),
            (ENV, I::Env.docker()),
            (VERSION, I::Version.docker()),
            (DEPLOYMENT, I::Deployment.docker()),
            (INSTANCE, I::Instance.docker()),
            (REPLICAS, M::Replicas.docker()),
            (HEALTH, M::Health.docker()),
            (START_TIMEOUT, M::StartTimeout.docker()),
        ] {
            assert_eq!(ours, core);
        }
    }

    #[test]
    fn names() {
        let app = AppRef::parse("acme", "orders", "dev").unwrap();
        assert_eq!(container_name(&app, 3), "cameleer-acme-dev-orders-v3");
        assert_eq!(
            instance_container_name(&app, 3, 0),
            "cameleer-acme-dev-orders-v3"
        );
        assert_eq!(
            instance_container_name(&app, 3, 2),
            "cameleer-acme-dev-orders-v3-i2"
        );
        assert_eq!(network_name(&app.tenant, &app.env), "cameleer-acme-dev");
    }

    #[test]
    fn a_network_of_a_colliding_name_is_not_taken_for_ours() {
        let (t1, e1) = (TenantId::new("a").unwrap(), EnvId::new("b-c").unwrap());
        let (t2, e2) = (TenantId::new("a-b").unwrap(), EnvId::new("c").unwrap());
        assert_eq!(network_name(&t1, &e1), network_name(&t2, &e2));
        let l = network_labels(&t1, &e1);
        assert!(network_belongs_to(Some(&l), &t1, &e1));
        assert!(!network_belongs_to(Some(&l), &t2, &e2));
        assert!(!network_belongs_to(None, &t1, &e1));
    }
}
