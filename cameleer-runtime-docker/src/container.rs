//! The container an app runs in: its create request, hardening and limits.
//!
//! Every container is created from one function, so the hardening cannot
//! be forgotten on one code path:
//!
//! - a non-root user ([`DockerOrchestratorOptions::user`], `10001:10001`);
//! - `CapDrop: ["ALL"]`, `SecurityOpt: ["no-new-privileges"]`, a private IPC
//!   namespace, no privileged mode, no published ports, no host mounts;
//! - a read-only root filesystem with a size-limited tmpfs on `/tmp` (the JVM
//!   keeps its perf data there; `noexec` unless configured otherwise);
//! - `PidsLimit`, `Memory` = `MemorySwap` (no swap), `NanoCpus` from
//!   `cpu_millis`, `CpuShares` when given;
//! - json-file logs bounded by `max-size` × `max-file`;
//! - restart policy `no` for an app of one instance: a crash is reported
//!   (FAILED), never hidden by a silent restart loop. An instance of an
//!   app that runs several gets `on-failure` with at most
//!   [`instance_restarts`](crate::DockerOrchestratorOptions::instance_restarts)
//!   retries: the engine replaces the crashed process while the others
//!   serve, counts it (`RestartCount`, which `app_status` sums), and gives
//!   up after that many, so a crash loop still ends.
//!
//! JVM options are argv elements of the container's own `Entrypoint`: the
//! image's entrypoint (`java -javaagent:… -XX:MaxRAMPercentage=75 … -jar
//! /app/app.jar`, read from the image) with the options inserted just before
//! `-jar` (see [`insert_jvm_options`]). Not `JDK_JAVA_OPTIONS`: the launcher
//! echoes that variable to stderr (`NOTE: Picked up JDK_JAVA_OPTIONS: …`),
//! which would copy secrets passed as `-D` options into the logs, and puts
//! its options *before* the image's flags, so the image's
//! `MaxRAMPercentage` would override the app's. As argv elements the
//! options need no quoting, and the last occurrence of a flag wins, so the
//! app's options override the image's defaults. App args are the
//! container's `Cmd`, appended after the JAR.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, NetworkingConfig,
    RestartPolicy, RestartPolicyNameEnum,
};
use cameleer_runtime::launch::insert_jvm_options;
use cameleer_runtime::{AppConfig, Error, Result};

use crate::engine::{backend, is_not_found};
use crate::labels::ContainerLabels;
use crate::network::TenantNetwork;
use crate::orchestrator::DockerOrchestratorOptions;

/// The entrypoint of the image `image_id` (`Config.Entrypoint`), `None`
/// when it has none.
pub(crate) async fn image_entrypoint(
    docker: &Docker,
    image_id: &str,
) -> Result<Option<Vec<String>>> {
    match docker.inspect_image(image_id).await {
        Ok(image) => Ok(image
            .config
            .and_then(|c| c.entrypoint)
            .filter(|e| !e.is_empty())),
        Err(e) if is_not_found(&e) => Err(Error::not_found("image", image_id)),
        Err(e) => Err(backend(format!("inspecting image {image_id}"), e)),
    }
}

/// The create request of one app container: hardened, limited, labelled,
/// attached to its tenant+env network by id, with the image pinned by id.
/// `image_entrypoint` is the image's (see [`insert_jvm_options`]); the
/// container's `Entrypoint` is set to it with the JVM options inserted.
pub(crate) fn create_body(
    labels: &ContainerLabels,
    image_id: &str,
    image_entrypoint: Option<&[String]>,
    config: &AppConfig,
    network: &TenantNetwork,
    options: &DockerOrchestratorOptions,
) -> Result<ContainerCreateBody> {
    let env: Vec<String> = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let entrypoint = match image_entrypoint {
        Some(image) => Some(
            insert_jvm_options(image, &config.jvm_options)
                .map_err(|e| Error::invalid_config(e.field, e.reason))?,
        ),
        None if config.jvm_options.is_empty() => None,
        None => {
            return Err(Error::invalid_config(
                "jvm_options",
                format!("image {image_id} has no entrypoint to put JVM options into"),
            ));
        }
    };

    let memory = i64::try_from(config.resources.memory_bytes())
        .map_err(|_| Error::invalid_config("resources.memory_mb", "too large"))?;
    let mut tmpfs_opts = format!(
        "rw,nosuid,nodev,size={}m,mode=1777",
        options.tmp_size_mb.max(1)
    );
    if !options.tmp_exec {
        tmpfs_opts.push_str(",noexec");
    }

    let host_config = HostConfig {
        // Limits.
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some(i64::from(config.resources.cpu_millis) * 1_000_000),
        cpu_shares: config.resources.cpu_shares.map(i64::from),
        pids_limit: Some(options.pids_limit),
        // Hardening.
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([("/tmp".to_string(), tmpfs_opts)])),
        privileged: Some(false),
        publish_all_ports: Some(false),
        ipc_mode: Some("private".into()),
        // Placement.
        network_mode: Some(network.id.clone()),
        restart_policy: Some(if labels.replicas > 1 {
            RestartPolicy {
                name: Some(RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: Some(options.instance_restarts),
            }
        } else {
            RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }
        }),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_string(), options.log_max_size.clone()),
                (
                    "max-file".to_string(),
                    options.log_max_files.max(1).to_string(),
                ),
            ])),
        }),
        ..Default::default()
    };

    Ok(ContainerCreateBody {
        image: Some(image_id.to_string()),
        user: Some(options.user.clone()),
        env: Some(env),
        entrypoint,
        cmd: Some(config.args.clone()),
        labels: Some(labels.to_map()),
        stop_timeout: Some(i64::try_from(options.stop_timeout.as_secs()).unwrap_or(i64::MAX)),
        attach_stdin: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.id.clone(),
                EndpointSettings {
                    // Apps of one tenant+env find each other by app name.
                    aliases: Some(vec![labels.app.app.to_string()]),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cameleer_runtime::{AppRef, DeploymentId, HealthCheck, Resources};

    use super::*;

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn image_entrypoint() -> Vec<String> {
        opts(&[
            "java",
            "-javaagent:/opt/cameleer/cameleer-agent.jar",
            "-XX:MaxRAMPercentage=75.0",
            "-XX:+ExitOnOutOfMemoryError",
            "-jar",
            "/app/app.jar",
        ])
    }

    #[test]
    fn the_create_request_is_hardened_and_limited() {
        let labels = ContainerLabels {
            app: AppRef::parse("acme", "orders", "dev").unwrap(),
            deployment: DeploymentId::new_random(),
            version: 2,
            instance: 0,
            replicas: 1,
            health: HealthCheck::TcpPort(8080),
            start_timeout: Duration::from_secs(30),
            config_sha256: None,
        };
        let mut config = AppConfig {
            resources: Resources {
                memory_mb: 256,
                cpu_millis: 500,
                cpu_shares: Some(512),
            },
            args: opts(&["--port", "8080"]),
            jvm_options: opts(&["-Dx=a b"]),
            ..AppConfig::default()
        };
        config.env.insert("CAMEL_PROFILE".into(), "dev".into());
        let network = TenantNetwork {
            id: "netid".into(),
            name: "cameleer-acme-dev".into(),
        };
        let options = DockerOrchestratorOptions::default();
        let entrypoint = image_entrypoint();
        let body = create_body(
            &labels,
            "sha256:abc",
            Some(&entrypoint),
            &config,
            &network,
            &options,
        )
        .unwrap();
        let host = body.host_config.as_ref().unwrap();
        assert_eq!(host.memory, Some(256 << 20));
        assert_eq!(host.memory_swap, host.memory);
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.cpu_shares, Some(512));
        assert_eq!(host.cap_drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert!(host.pids_limit.is_some_and(|p| p > 0));
        assert!(host.binds.is_none() && host.mounts.is_none() && host.port_bindings.is_none());
        assert!(host.tmpfs.as_ref().unwrap()["/tmp"].contains("noexec"));
        assert_eq!(host.network_mode.as_deref(), Some("netid"));
        assert_eq!(body.user.as_deref(), Some("10001:10001"));
        assert_eq!(body.cmd, Some(opts(&["--port", "8080"])));
        let argv = body.entrypoint.unwrap();
        assert_eq!(argv[4], "-Dx=a b");
        assert_eq!(argv[5..], opts(&["-jar", "/app/app.jar"])[..]);
        let env = body.env.unwrap();
        assert_eq!(env, ["CAMEL_PROFILE=dev"]);
        assert_eq!(body.labels.unwrap()["io.cameleer.version"], "2");

        // JVM options need an entrypoint to go into.
        let err =
            create_body(&labels, "sha256:abc", None, &config, &network, &options).unwrap_err();
        assert_eq!(err.code(), "invalid_config");
        config.jvm_options.clear();
        let body = create_body(&labels, "sha256:abc", None, &config, &network, &options).unwrap();
        assert_eq!(body.entrypoint, None, "the image's own");
    }
}
