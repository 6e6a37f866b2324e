//! The objects of one app: a [`Deployment`] and, when the app declares a
//! port, a [`Service`]. Pure functions from the core's [`DeployRequest`] to
//! k8s-openapi objects.
//!
//! # The pod
//!
//! Meets Pod Security's `restricted` profile field by field, and then some:
//! non-root with a uid of at least 10000, seccomp `RuntimeDefault`, no
//! privilege escalation, every capability dropped, a read-only root file
//! system with an `emptyDir` on `/tmp`, no service-account token. Its
//! `command` is the image's launch command (`JvmLaunch::entrypoint`) with
//! the customer's JVM options inserted by
//! `cameleer_runtime::launch::insert_jvm_options`, its
//! `args` the customer's; requests equal limits, from
//! [`Resources`](cameleer_runtime::Resources). The health check becomes a
//! startup probe (allowed the app's whole start timeout), a readiness and a
//! liveness probe; with none, the pod must stay up for
//! [`health_grace`](KubernetesOptions::health_grace) (`minReadySeconds`).
//! `terminationMessagePolicy: FallbackToLogsOnError` puts the last lines a
//! crashed JVM wrote into the pod's status, so a JVM `OutOfMemoryError` can
//! be told from the app's own exit 3.
//!
//! # The rollout
//!
//! `RollingUpdate` with `maxUnavailable: 0` and `maxSurge: 1`: the old pods
//! serve until the new ones are ready. `progressDeadlineSeconds` is the start
//! timeout plus [`progress_margin`](KubernetesOptions::progress_margin),
//! after which the Deployment reports `ProgressDeadlineExceeded`.

use std::collections::BTreeMap;

use cameleer_runtime::identity::{DeploymentIdentity, DeploymentMetadata, IdentityKey};
use cameleer_runtime::launch::insert_jvm_options;
use cameleer_runtime::{AppRef, DeployRequest, HealthCheck, StatusReason};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction,
    LocalObjectReference, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::compat;
use crate::error::{K8sError, K8sResult};
use crate::namespace::{cpu, memory, namespace_name, tenant_env_labels};
use crate::options::KubernetesOptions;

/// The app's container.
pub const CONTAINER: &str = "app";
/// The name of the app's port (on the container and the Service).
pub const PORT_NAME: &str = "app";
/// The `emptyDir` volume on `/tmp`.
pub const TMP_VOLUME: &str = "tmp";
/// Annotation on the Deployment: `stopped` while the app is stopped on
/// request (it then has 0 replicas), absent otherwise.
pub const DESIRED_STATE: &str = "cameleer.io/desired-state";
/// The value of [`DESIRED_STATE`] for a stopped app.
pub const STOPPED: &str = "stopped";
/// Annotation on a stopped Deployment whose app had failed before it was
/// stopped: the reason, as the core's JSON, so the app keeps reading FAILED
/// and why (as on Docker).
pub const FAILED_REASON: &str = "cameleer.io/failed-reason";
/// The pod-template annotation a rollout restart sets (as `kubectl rollout
/// restart` does).
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// The smallest uid the pods run as.
pub const MIN_UID: i64 = 10000;

/// How often the readiness probe runs, in seconds.
const READINESS_PERIOD: i32 = 2;
/// How often the startup probe runs, in seconds.
const STARTUP_PERIOD: i32 = 2;
/// How often the liveness probe runs, in seconds.
const LIVENESS_PERIOD: i32 = 10;

/// The labels every object of `app` is selected by: managed, tenant, app,
/// env (not the version, which changes with each deploy).
pub fn selector_labels(app: &AppRef) -> BTreeMap<String, String> {
    let mut labels = tenant_env_labels(&app.tenant, &app.env);
    labels.insert(IdentityKey::App.kubernetes(), app.app.to_string());
    labels
}

/// A label selector string (`a=b,c=d`) of `labels`.
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The port the app declares: its health check's, if any.
pub fn app_port(health: &HealthCheck) -> Option<u16> {
    match health {
        HealthCheck::TcpPort(port) | HealthCheck::Http { port, .. } => Some(*port),
        HealthCheck::None => None,
    }
}

/// The identity of a deploy request.
pub fn identity(request: &DeployRequest) -> DeploymentIdentity {
    DeploymentIdentity {
        app: request.app.clone(),
        deployment: request.deployment,
        version: request.version,
    }
}

/// The Deployment of `request`, running.
pub fn deployment(request: &DeployRequest, options: &KubernetesOptions) -> K8sResult<Deployment> {
    let template = pod_template(request, options)?;
    Ok(deployment_from_template(
        &request.app,
        template,
        false,
        options,
    ))
}

/// A Deployment around a pod template this module made (possibly read back
/// from the cluster): running with the replicas its config asked for (the
/// `cameleer.io/replicas` annotation; at least
/// [`KubernetesOptions::replicas`]),
/// or `stopped` with none. Its labels and annotations are the template's,
/// plus [`DESIRED_STATE`] when stopped.
pub fn deployment_from_template(
    app: &AppRef,
    template: PodTemplateSpec,
    stopped: bool,
    options: &KubernetesOptions,
) -> Deployment {
    stopped_deployment(app, template, stopped.then_some(None), options)
}

/// [`deployment_from_template`], stopped when `stopped` is `Some`, with the
/// reason the app had failed for, if it had.
pub fn stopped_deployment(
    app: &AppRef,
    template: PodTemplateSpec,
    stopped: Option<Option<&StatusReason>>,
    options: &KubernetesOptions,
) -> Deployment {
    let template_meta = template.metadata.clone().unwrap_or_default();
    let labels = template_meta.labels.unwrap_or_default();
    let mut annotations: BTreeMap<String, String> = template_meta
        .annotations
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != RESTARTED_AT)
        .collect();
    if let Some(failed) = stopped {
        annotations.insert(DESIRED_STATE.to_string(), STOPPED.to_string());
        if let Some(json) = failed.and_then(|r| serde_json::to_string(r).ok()) {
            annotations.insert(FAILED_REASON.to_string(), json);
        }
    }
    let stopped = stopped.is_some();
    let metadata = template_metadata(&template);
    let start_timeout = metadata.as_ref().map_or(120, |m| m.start_timeout.as_secs());
    let no_health = metadata
        .as_ref()
        .is_none_or(|m| m.health == HealthCheck::None);
    let min_ready = if no_health {
        i32::try_from(options.health_grace.as_secs()).unwrap_or(i32::MAX)
    } else {
        0
    };
    let deadline = start_timeout
        .saturating_add(options.progress_margin.as_secs())
        .max(u64::try_from(min_ready).unwrap_or(0) + 1);
    compat::new_deployment(
        ObjectMeta {
            name: Some(app.app.to_string()),
            namespace: Some(namespace_name(&app.tenant, &app.env)),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        DeploymentSpec {
            replicas: Some(if stopped {
                0
            } else {
                // The config's replicas; the options' as a floor.
                let wanted = metadata.as_ref().map_or(1, |m| m.replicas);
                i32::try_from(wanted)
                    .unwrap_or(i32::MAX)
                    .max(options.replicas)
            }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(app)),
                ..LabelSelector::default()
            },
            template,
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            progress_deadline_seconds: Some(i32::try_from(deadline).unwrap_or(i32::MAX)),
            min_ready_seconds: (min_ready > 0).then_some(min_ready),
            revision_history_limit: Some(3),
            ..DeploymentSpec::default()
        },
    )
}

/// The pod template of `request`: the hardened pod described in the
/// [module docs](self).
pub fn pod_template(
    request: &DeployRequest,
    options: &KubernetesOptions,
) -> K8sResult<PodTemplateSpec> {
    let config = &request.config;
    config.validate().map_err(|e| match e {
        cameleer_runtime::Error::InvalidConfig { field, reason } => {
            K8sError::InvalidRequest { field, reason }
        }
        other => K8sError::invalid("config", other.to_string()),
    })?;
    let Some(digest) = request.image.digest() else {
        return Err(K8sError::invalid(
            "image",
            format!("{} is not pinned to a digest", request.image),
        ));
    };
    if options.run_as_user < MIN_UID || options.run_as_group < MIN_UID {
        return Err(K8sError::invalid(
            "run_as_user",
            format!("the app runs as uid and gid of at least {MIN_UID}"),
        ));
    }
    let image = format!("{}@{}", request.image.name(), digest.oci());
    let command = insert_jvm_options(&options.launch.entrypoint(), &config.jvm_options)
        .map_err(|e| K8sError::invalid(e.field, e.reason))?;

    let identity = identity(request);
    let metadata = DeploymentMetadata::of(config);
    let port = app_port(&config.health);
    let resources = BTreeMap::from([
        (
            "cpu".to_string(),
            cpu(u64::from(config.resources.cpu_millis)),
        ),
        (
            "memory".to_string(),
            memory(u64::from(config.resources.memory_mb)),
        ),
    ]);
    let probes = probes(&config.health, config.start_timeout_secs);

    let container = Container {
        name: CONTAINER.to_string(),
        image: Some(image),
        image_pull_policy: Some(options.image_pull_policy.clone()),
        command: Some(command),
        args: (!config.args.is_empty()).then(|| config.args.clone()),
        env: (!config.env.is_empty()).then(|| {
            config
                .env
                .iter()
                .map(|(name, value)| EnvVar {
                    name: name.clone(),
                    value: Some(value.clone()),
                    ..EnvVar::default()
                })
                .collect()
        }),
        ports: port.map(|p| {
            vec![ContainerPort {
                name: Some(PORT_NAME.to_string()),
                container_port: i32::from(p),
                protocol: Some("TCP".to_string()),
                ..ContainerPort::default()
            }]
        }),
        resources: Some(ResourceRequirements {
            limits: Some(resources.clone()),
            requests: Some(resources),
            ..ResourceRequirements::default()
        }),
        security_context: Some(container_security_context(options)),
        volume_mounts: Some(vec![VolumeMount {
            name: TMP_VOLUME.to_string(),
            mount_path: "/tmp".to_string(),
            ..VolumeMount::default()
        }]),
        startup_probe: probes.startup,
        readiness_probe: probes.readiness,
        liveness_probe: probes.liveness,
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        ..Container::default()
    };

    Ok(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(identity.kubernetes_labels()),
            annotations: Some(metadata.kubernetes_annotations()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(options.run_as_user),
                run_as_group: Some(options.run_as_group),
                fs_group: Some(options.run_as_group),
                seccomp_profile: Some(runtime_default()),
                ..PodSecurityContext::default()
            }),
            termination_grace_period_seconds: Some(
                i64::try_from(options.stop_timeout.as_secs()).unwrap_or(i64::MAX),
            ),
            image_pull_secrets: (!options.image_pull_secrets.is_empty()).then(|| {
                options
                    .image_pull_secrets
                    .iter()
                    .map(|name| LocalObjectReference { name: name.clone() })
                    .collect()
            }),
            containers: vec![container],
            volumes: Some(vec![Volume {
                name: TMP_VOLUME.to_string(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: options.tmp_in_memory.then(|| "Memory".to_string()),
                    size_limit: Some(memory(u64::from(options.tmp_size_mb.max(1)))),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
    })
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        ..SeccompProfile::default()
    }
}

/// The container's security context: what the restricted profile asks,
/// field by field.
pub fn container_security_context(options: &KubernetesOptions) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: None,
        }),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(options.run_as_user),
        run_as_group: Some(options.run_as_group),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

/// The three probes of a health check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probes {
    /// Allowed the whole start timeout; the others wait for it.
    pub startup: Option<Probe>,
    /// Ready = serves traffic, and counts for the rollout.
    pub readiness: Option<Probe>,
    /// Restarts a hung app.
    pub liveness: Option<Probe>,
}

/// The probes of `health`: none for [`HealthCheck::None`].
pub fn probes(health: &HealthCheck, start_timeout_secs: u32) -> Probes {
    let handler = |probe: Probe| match health {
        HealthCheck::TcpPort(port) => Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(*port)),
                ..TCPSocketAction::default()
            }),
            ..probe
        }),
        HealthCheck::Http { port, path } => Some(Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(i32::from(*port)),
                path: Some(path.clone()),
                scheme: Some("HTTP".to_string()),
                ..HTTPGetAction::default()
            }),
            ..probe
        }),
        HealthCheck::None => None,
    };
    let start = i32::try_from(start_timeout_secs).unwrap_or(3600).max(1);
    Probes {
        startup: handler(Probe {
            period_seconds: Some(STARTUP_PERIOD),
            timeout_seconds: Some(1),
            failure_threshold: Some(((start + STARTUP_PERIOD - 1) / STARTUP_PERIOD).max(1)),
            ..Probe::default()
        }),
        readiness: handler(Probe {
            period_seconds: Some(READINESS_PERIOD),
            timeout_seconds: Some(1),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        liveness: handler(Probe {
            period_seconds: Some(LIVENESS_PERIOD),
            timeout_seconds: Some(2),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
    }
}

/// The Service of `request`, when its app declares a port: named after the
/// app, selecting all of its pods, the port under the same number.
pub fn service(request: &DeployRequest) -> Option<Service> {
    service_for(&identity(request), &request.config.health)
}

/// The Service of the version `identity` with health check `health`, when
/// that declares a port.
pub fn service_for(identity: &DeploymentIdentity, health: &HealthCheck) -> Option<Service> {
    let port = app_port(health)?;
    let app = &identity.app;
    Some(Service {
        metadata: ObjectMeta {
            name: Some(app.app.to_string()),
            namespace: Some(namespace_name(&app.tenant, &app.env)),
            labels: Some(identity.kubernetes_labels()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(selector_labels(app)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_string()),
                port: i32::from(port),
                target_port: Some(IntOrString::String(PORT_NAME.to_string())),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// The metadata a pod template's annotations record (health check, start
/// timeout, config digest); `None` when they are missing or damaged.
pub fn template_metadata(template: &PodTemplateSpec) -> Option<DeploymentMetadata> {
    let annotations = template.metadata.as_ref()?.annotations.as_ref()?;
    DeploymentMetadata::parse(|k| annotations.get(&k.kubernetes()).map(String::as_str))
}

/// The health check a pod template records (none when it records none).
pub fn template_health(template: &PodTemplateSpec) -> HealthCheck {
    template_metadata(template)
        .map(|m| m.health)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
