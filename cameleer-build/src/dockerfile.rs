//! The Dockerfile that wraps an application JAR with the Cameleer agent.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::ImageRef;
use crate::launch::{HeapSizing, JvmLaunch};

/// File name of the agent JAR inside the build context.
pub const CONTEXT_AGENT_FILE: &str = "cameleer-agent.jar";
/// File name of the application JAR inside the build context.
pub const CONTEXT_APP_FILE: &str = "app.jar";
/// File name of the Dockerfile inside the build context.
pub const CONTEXT_DOCKERFILE: &str = "Dockerfile";

/// Where the agent JAR goes in the image, by default (both the Dockerfile
/// and the [OCI](crate::oci) routes).
pub const IMAGE_AGENT_PATH: &str = "/opt/cameleer/cameleer-agent.jar";
/// Where the application JAR goes in the image, by default.
pub const IMAGE_APP_PATH: &str = "/app/app.jar";
/// The image's working directory, by default.
pub const IMAGE_WORKDIR: &str = "/app";
/// The uid the JVM runs as, by default (not root).
pub const IMAGE_UID: u32 = 10001;
/// The gid the JVM runs as, by default.
pub const IMAGE_GID: u32 = 10001;

/// Everything the image's Dockerfile depends on.
///
/// [`render`](Self::render) validates every value before writing it, so no
/// value can add, remove or alter an instruction: strings with control
/// characters (newlines included) are refused, paths are restricted to a
/// safe alphabet, and every free-form value is written JSON-quoted (exec-form
/// `ENTRYPOINT`, `COPY` and quoted `LABEL`s, with `$` escaped against
/// variable expansion).
///
/// # Examples
///
/// ```
/// use cameleer_build::DockerfileSpec;
///
/// let mut spec = DockerfileSpec::new("eclipse-temurin:17-jre".parse().unwrap());
/// spec.agent_args = Some("tenant=acme".into());
/// spec.app_args = vec!["--spring.profiles.active=prod".into()];
/// let dockerfile = spec.render().unwrap();
/// assert!(dockerfile.starts_with("FROM eclipse-temurin:17-jre\n"));
/// assert!(dockerfile.contains(r#""-javaagent:/opt/cameleer/cameleer-agent.jar=tenant=acme""#));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DockerfileSpec {
    /// The base image (a JRE of the target Java release); pin it by digest
    /// for reproducible builds.
    pub base_image: ImageRef,
    /// Where the agent JAR goes in the image. Default
    /// `/opt/cameleer/cameleer-agent.jar`.
    pub agent_path: String,
    /// Options passed to the agent (`-javaagent:<path>=<args>`).
    pub agent_args: Option<String>,
    /// Where the application JAR goes in the image. Default `/app/app.jar`.
    pub jar_path: String,
    /// The working directory. Default `/app`.
    pub workdir: String,
    /// Heap as a share of the container's memory limit
    /// (`-XX:MaxRAMPercentage`), from 1 to 100. Default 75.0.
    pub max_ram_percentage: f64,
    /// Extra JVM options, after the defaults (so they can override them).
    pub jvm_options: Vec<String>,
    /// Arguments passed to the application's main method.
    pub app_args: Vec<String>,
    /// The user the JVM runs as. Default 10001 (not root).
    pub uid: u32,
    /// The group the JVM runs as. Default 10001.
    pub gid: u32,
    /// Image labels.
    pub labels: BTreeMap<String, String>,
}

/// A [`DockerfileSpec`] value that cannot be rendered safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Dockerfile spec field {field}: {reason}")]
pub struct DockerfileError {
    /// The field, with index or key: `jvm_options[2]`, `labels["team"]`.
    pub field: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl DockerfileError {
    /// The stable error code: `invalid_dockerfile_spec`.
    pub fn code(&self) -> &'static str {
        "invalid_dockerfile_spec"
    }
}

impl DockerfileSpec {
    /// A spec with the documented defaults.
    pub fn new(base_image: ImageRef) -> Self {
        Self {
            base_image,
            agent_path: IMAGE_AGENT_PATH.into(),
            agent_args: None,
            jar_path: IMAGE_APP_PATH.into(),
            workdir: IMAGE_WORKDIR.into(),
            max_ram_percentage: 75.0,
            jvm_options: Vec::new(),
            app_args: Vec::new(),
            uid: IMAGE_UID,
            gid: IMAGE_GID,
            labels: BTreeMap::new(),
        }
    }

    /// The JVM's command line: [`JvmLaunch::entrypoint`] (`java`, the agent,
    /// the container-aware heap and exit-on-OOM flags) with the extra
    /// options before `-jar` and the app arguments after the JAR.
    pub fn command(&self) -> Result<Vec<String>, DockerfileError> {
        self.validate()?;
        let launch = JvmLaunch {
            agent_path: self.agent_path.clone(),
            agent_args: self.agent_args.clone(),
            heap: HeapSizing::RamPercentage(self.max_ram_percentage),
            jar_path: self.jar_path.clone(),
            ..JvmLaunch::default()
        };
        let mut argv = launch.entrypoint();
        // `-jar <jar>` last: the extra options go before it.
        let tail = argv.split_off(argv.len() - 2);
        argv.extend(self.jvm_options.iter().cloned());
        argv.extend(tail);
        argv.extend(self.app_args.iter().cloned());
        Ok(argv)
    }

    /// Renders the Dockerfile. Instructions, in order: `FROM`, one `LABEL`
    /// per label, `WORKDIR`, `COPY` of the agent and of the application
    /// (owned by root, so the app cannot change them), `USER uid:gid`,
    /// exec-form `ENTRYPOINT`.
    pub fn render(&self) -> Result<String, DockerfileError> {
        let argv = self.command()?;
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "FROM {}", self.base_image);
        for (k, v) in &self.labels {
            let _ = writeln!(out, "LABEL {}={}", quote_label(k), quote_label(v));
        }
        let _ = writeln!(out, "WORKDIR {}", self.workdir);
        for (src, dst) in [
            (CONTEXT_AGENT_FILE, &self.agent_path),
            (CONTEXT_APP_FILE, &self.jar_path),
        ] {
            let _ = writeln!(out, "COPY --chown=0:0 {}", json(&[src, dst.as_str()]));
        }
        let _ = writeln!(out, "USER {}:{}", self.uid, self.gid);
        let _ = writeln!(out, "ENTRYPOINT {}", json(&argv));
        Ok(out)
    }

    fn validate(&self) -> Result<(), DockerfileError> {
        let err = |field: String, reason| Err(DockerfileError { field, reason });
        for (field, path) in [
            ("agent_path", &self.agent_path),
            ("jar_path", &self.jar_path),
            ("workdir", &self.workdir),
        ] {
            if let Err(reason) = check_path(path) {
                return err(field.to_owned(), reason);
            }
        }
        if self.agent_path == self.jar_path {
            return err("jar_path".into(), "must differ from agent_path");
        }
        if !(1.0..=100.0).contains(&self.max_ram_percentage) {
            return err(
                "max_ram_percentage".into(),
                "must be a number from 1 to 100",
            );
        }
        if let Some(a) = &self.agent_args {
            check_text(a).or_else(|r| err("agent_args".into(), r))?;
        }
        for (i, o) in self.jvm_options.iter().enumerate() {
            check_text(o).or_else(|r| err(format!("jvm_options[{i}]"), r))?;
        }
        for (i, a) in self.app_args.iter().enumerate() {
            check_text(a).or_else(|r| err(format!("app_args[{i}]"), r))?;
        }
        for (k, v) in &self.labels {
            if k.is_empty() {
                return err("labels".into(), "a label key is empty");
            }
            check_text(k).or_else(|r| err(format!("labels[{k:?}]"), r))?;
            check_text(v).or_else(|r| err(format!("labels[{k:?}]"), r))?;
        }
        Ok(())
    }
}

/// Free text: anything but control characters (a newline would start a new
/// instruction; the others have no business in a command line).
fn check_text(s: &str) -> Result<(), &'static str> {
    if s.chars().any(char::is_control) {
        return Err("contains a newline or control character");
    }
    Ok(())
}

/// An absolute path of `[A-Za-z0-9._-]` components: nothing to quote,
/// nothing to expand.
fn check_path(p: &str) -> Result<(), &'static str> {
    let Some(rest) = p.strip_prefix('/') else {
        return Err("must be an absolute path");
    };
    let ok = !rest.is_empty()
        && p.len() <= 255
        && rest.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err("must be /-separated components of [A-Za-z0-9._-], without . or ..")
    }
}

/// A JSON array of strings (valid JSON, so Docker never falls back to the
/// shell form).
fn json<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    serde_json::to_string(&items).unwrap_or_default()
}

/// A double-quoted LABEL word: JSON escaping (`"` and `\`), and `$` escaped
/// so the builder does not expand variables in it.
fn quote_label(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap_or_default()
        .replace('$', "\\$")
}
