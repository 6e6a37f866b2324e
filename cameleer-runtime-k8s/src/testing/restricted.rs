//! The Pod Security Standards' `restricted` profile (with everything of
//! `baseline`), checked field by field on a pod spec, plus what the
//! platform asks on top (uid ≥ 10000, read-only root with `/tmp` on an
//! `emptyDir`, no service-account token).

use k8s_openapi::api::core::v1::{Container, PodSpec};

/// Volume types the restricted profile allows.
const ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Every way `spec` breaks the restricted profile or the platform's own
/// rules; empty when it meets them all.
pub fn violations(spec: &PodSpec) -> Vec<String> {
    let mut v = Vec::new();
    let psc = spec.security_context.clone().unwrap_or_default();
    // Baseline: host namespaces.
    for (field, on) in [
        ("hostNetwork", spec.host_network),
        ("hostPID", spec.host_pid),
        ("hostIPC", spec.host_ipc),
    ] {
        if on == Some(true) {
            v.push(format!("{field} is true"));
        }
    }
    // Restricted: volume types.
    for volume in spec.volumes.iter().flatten() {
        let json = serde_json::to_value(volume).unwrap_or_default();
        for key in json.as_object().into_iter().flat_map(|o| o.keys()) {
            if key != "name" && !ALLOWED_VOLUMES.contains(&key.as_str()) {
                v.push(format!("volume {} is of type {key}", volume.name));
            }
        }
    }
    // Baseline: sysctls (none are needed; any is flagged).
    if psc.sysctls.as_ref().is_some_and(|s| !s.is_empty()) {
        v.push("pod sets sysctls".into());
    }
    if psc
        .seccomp_profile
        .as_ref()
        .is_some_and(|p| p.type_ == "Unconfined")
    {
        v.push("pod seccomp is Unconfined".into());
    }
    if psc.run_as_user == Some(0) {
        v.push("pod runAsUser is 0".into());
    }
    if spec.automount_service_account_token != Some(false) {
        v.push("automountServiceAccountToken is not false".into());
    }
    let tmp_volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|vol| vol.empty_dir.is_some())
        .map(|vol| vol.name.clone());
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    if all.is_empty() {
        v.push("no containers".into());
    }
    for c in all {
        let n = &c.name;
        let sc = c.security_context.clone().unwrap_or_default();
        if sc.privileged == Some(true) {
            v.push(format!("{n}: privileged"));
        }
        for port in c.ports.iter().flatten() {
            if port.host_port.is_some_and(|p| p != 0) {
                v.push(format!("{n}: hostPort {}", port.container_port));
            }
        }
        if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
            v.push(format!("{n}: procMount is not Default"));
        }
        if sc.allow_privilege_escalation != Some(false) {
            v.push(format!("{n}: allowPrivilegeEscalation is not false"));
        }
        let non_root = sc.run_as_non_root.or(psc.run_as_non_root);
        if non_root != Some(true) {
            v.push(format!("{n}: runAsNonRoot is not true"));
        }
        match sc.run_as_user.or(psc.run_as_user) {
            Some(uid) if uid >= 10000 => {}
            other => v.push(format!("{n}: runAsUser {other:?} is not at least 10000")),
        }
        let seccomp = sc
            .seccomp_profile
            .as_ref()
            .or(psc.seccomp_profile.as_ref())
            .map(|p| p.type_.as_str());
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            v.push(format!(
                "{n}: seccompProfile {seccomp:?} is not RuntimeDefault"
            ));
        }
        let caps = sc.capabilities.clone().unwrap_or_default();
        if !caps.drop.iter().flatten().any(|d| d == "ALL") {
            v.push(format!("{n}: capabilities do not drop ALL"));
        }
        for add in caps.add.iter().flatten() {
            if add != "NET_BIND_SERVICE" {
                v.push(format!("{n}: adds capability {add}"));
            }
        }
        if sc.read_only_root_filesystem != Some(true) {
            v.push(format!("{n}: the root file system is not read-only"));
        }
        let tmp_mounted = c
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == "/tmp" && Some(&m.name) == tmp_volume.as_ref());
        if !tmp_mounted {
            v.push(format!("{n}: /tmp is not an emptyDir"));
        }
        let limits = c
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        if !limits.contains_key("memory") || !limits.contains_key("cpu") {
            v.push(format!("{n}: no cpu and memory limits"));
        }
    }
    v
}
