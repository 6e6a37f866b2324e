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
//! - restart policy `no`: a crash is reported (FAILED), never hidden by a
//!   silent restart loop.
//!
//! JVM options reach the JVM through `JDK_JAVA_OPTIONS`, encoded by
//! [`jdk_java_options`]; app args are the container command, appended to the
//! image's `java … -jar /app/app.jar` entrypoint.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, NetworkingConfig,
    RestartPolicy, RestartPolicyNameEnum,
};
use cameleer_runtime::{AppConfig, Error, Result};

use crate::labels::ContainerLabels;
use crate::network::TenantNetwork;
use crate::orchestrator::DockerOrchestratorOptions;

/// The env var the JDK launcher (9 and later) reads extra options from.
pub const JDK_JAVA_OPTIONS: &str = "JDK_JAVA_OPTIONS";

/// Options the JDK 17 launcher refuses in `JDK_JAVA_OPTIONS` (it aborts the
/// start): they pick the main class or end the launcher before `main`.
/// Rejected up front so the error names the option instead of a container
/// that exits with code 1.
const LAUNCHER_REFUSES: &[&str] = &[
    "-jar",
    "-m",
    "--module",
    "--dry-run",
    "-h",
    "-?",
    "-help",
    "--help",
    "-X",
    "--help-extra",
    "-version",
    "--version",
    "-fullversion",
    "--full-version",
];

/// Encodes JVM options as the value of `JDK_JAVA_OPTIONS`, one option per
/// launcher argument, or `None` when there are none.
///
/// The JDK 17 launcher splits the variable at white space (C `isspace`) and
/// removes single or double quotes around runs of text, also in the middle
/// of an argument (`-Da="x y"` is `-Da=x y`); there is no escape character,
/// and a backslash is literal. So an option with white space or quotes is
/// written as double-quoted runs, each `"` in it as `'"'`: every option
/// arrives as exactly one argument, byte for byte, and cannot split into two
/// (which could smuggle an `@argfile` or a second flag).
///
/// Each entry is one argument: write `--add-opens=java.base/java.lang=ALL-UNNAMED`
/// or two entries, not `"--add-opens java.base/…"`.
///
/// # Errors
///
/// [`Error::InvalidConfig`] naming `jvm_options[i]` for an option that does
/// not start with `-`, contains NUL, or that the launcher refuses in the
/// variable (`-jar`, `--module=…`, `-version`, …).
///
/// # Examples
///
/// ```
/// use cameleer_runtime_docker::container::jdk_java_options;
///
/// let opts = vec!["-Xmx128m".to_string(), "-Dgreeting=hello world".to_string()];
/// assert_eq!(
///     jdk_java_options(&opts).unwrap().as_deref(),
///     Some(r#"-Xmx128m "-Dgreeting=hello world""#),
/// );
/// let quoted = vec![r#"-Dq=say "hi""#.to_string()];
/// assert_eq!(
///     jdk_java_options(&quoted).unwrap().as_deref(),
///     Some(r#""-Dq=say "'"'"hi"'"'"#),
/// );
/// assert!(jdk_java_options(&["-jar".to_string()]).is_err());
/// ```
pub fn jdk_java_options(options: &[String]) -> Result<Option<String>> {
    if options.is_empty() {
        return Ok(None);
    }
    let mut out = String::new();
    for (i, opt) in options.iter().enumerate() {
        let field = || format!("jvm_options[{i}]");
        if !opt.starts_with('-') {
            return Err(Error::invalid_config(
                field(),
                "a JVM option starts with '-'",
            ));
        }
        if opt.contains('\0') {
            return Err(Error::invalid_config(field(), "must not contain NUL"));
        }
        if LAUNCHER_REFUSES.contains(&opt.as_str()) || opt.starts_with("--module=") {
            return Err(Error::invalid_config(
                field(),
                format!(
                    "{opt} selects the main class or stops the JVM; the launcher refuses it in JDK_JAVA_OPTIONS"
                ),
            ));
        }
        if !out.is_empty() {
            out.push(' ');
        }
        encode_launcher_arg(opt, &mut out);
    }
    Ok(Some(out))
}

/// White space as the launcher's `isspace` sees it (C locale).
fn is_launcher_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

fn encode_launcher_arg(arg: &str, out: &mut String) {
    if !arg
        .chars()
        .any(|c| is_launcher_space(c) || c == '"' || c == '\'')
    {
        out.push_str(arg);
        return;
    }
    for (i, run) in arg.split('"').enumerate() {
        if i > 0 {
            out.push_str("'\"'");
        }
        if !run.is_empty() {
            out.push('"');
            out.push_str(run);
            out.push('"');
        }
    }
}

/// The create request of one app container: hardened, limited, labelled,
/// attached to its tenant+env network by id, with the image pinned by id.
pub(crate) fn create_body(
    labels: &ContainerLabels,
    image_id: &str,
    config: &AppConfig,
    network: &TenantNetwork,
    options: &DockerOrchestratorOptions,
) -> Result<ContainerCreateBody> {
    let mut env: Vec<String> = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if let Some(value) = jdk_java_options(&config.jvm_options)? {
        env.push(format!("{JDK_JAVA_OPTIONS}={value}"));
    }

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
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
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

    /// The launcher's own splitting (JDK 17 `args.c`), to check encodings
    /// against: white space separates, quotes group and are removed.
    fn launcher_split(s: &str) -> Vec<String> {
        let mut args = Vec::new();
        let mut chars = s.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| is_launcher_space(*c)) {
                chars.next();
            }
            if chars.peek().is_none() {
                return args;
            }
            let mut arg = String::new();
            while let Some(c) = chars.next() {
                if is_launcher_space(c) {
                    break;
                }
                if c == '"' || c == '\'' {
                    for q in chars.by_ref() {
                        if q == c {
                            break;
                        }
                        arg.push(q);
                    }
                } else {
                    arg.push(c);
                }
            }
            args.push(arg);
        }
    }

    #[test]
    fn options_survive_the_launchers_splitting() {
        let cases = opts(&[
            "-Xmx128m",
            "-Da=x y",
            "-Db=q\"uote",
            "-Dc='single'",
            "-Dd=back\\slash",
            "-De=\t tabs and  spaces ",
            "-Df=\"\"",
            "-Dg=@notafile",
            "-Dh=",
            "-Di=it's \"both\"",
        ]);
        let encoded = jdk_java_options(&cases).unwrap().unwrap();
        assert_eq!(launcher_split(&encoded), cases, "{encoded}");
    }

    #[test]
    fn empty_options_set_no_variable() {
        assert_eq!(jdk_java_options(&[]).unwrap(), None);
    }

    #[test]
    fn options_the_launcher_refuses_are_rejected_by_index() {
        for bad in [
            "-jar",
            "--module=foo/bar",
            "-version",
            "--dry-run",
            "notadash",
            "-D\0",
        ] {
            let err = jdk_java_options(&opts(&["-Xmx64m", bad])).unwrap_err();
            match err {
                Error::InvalidConfig { field, .. } => assert_eq!(field, "jvm_options[1]", "{bad}"),
                other => panic!("{other:?}"),
            }
        }
        // Only the exact flags: look-alikes are ordinary options.
        jdk_java_options(&opts(&["-jarx", "-Xshare:auto", "-showversion"])).unwrap();
    }

    #[test]
    fn the_create_request_is_hardened_and_limited() {
        let labels = ContainerLabels {
            app: AppRef::parse("acme", "orders", "dev").unwrap(),
            deployment: DeploymentId::new_random(),
            version: 2,
            health: HealthCheck::TcpPort(8080),
            start_timeout: Duration::from_secs(30),
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
        let body = create_body(&labels, "sha256:abc", &config, &network, &options).unwrap();
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
        let env = body.env.unwrap();
        assert!(env.contains(&"CAMEL_PROFILE=dev".to_string()));
        assert!(env.contains(&"JDK_JAVA_OPTIONS=\"-Dx=a b\"".to_string()));
        assert_eq!(body.labels.unwrap()["io.cameleer.version"], "2");
    }
}
