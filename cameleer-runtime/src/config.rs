//! The runtime configuration of one app in one environment.
//!
//! An [`AppConfig`] is environment-specific and never baked into the image:
//! promotion deploys the same image digest with the target environment's
//! config. Backends pass JVM options as arguments after the image's own
//! flags and before `-jar` (not through `JDK_JAVA_OPTIONS`, which the
//! launcher echoes to stderr), app args after the JAR, and env vars as the
//! process environment.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The smallest memory limit accepted, in MiB: a JVM with the agent needs it.
pub const MIN_MEMORY_MB: u32 = 64;
/// The largest memory limit accepted, in MiB (1 TiB).
pub const MAX_MEMORY_MB: u32 = 1 << 20;
/// The longest value (env value, option, arg, path) accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 32 * 1024;
/// The most env vars, JVM options or args accepted, each.
pub const MAX_ITEMS: usize = 512;
/// The most instances (replicas) of one app in one environment. A tenant's
/// quota may allow fewer; this bound keeps one config from asking a backend
/// for an absurd number of containers.
pub const MAX_REPLICAS: u32 = 32;

/// Env var names the runtime sets itself. Letting a customer set them would
/// let config smuggle JVM flags (such as another `-javaagent`) past the checks.
pub const RESERVED_ENV: &[&str] = &["JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS"];

/// How an app in one environment runs: env vars, JVM options, args,
/// resources and health check.
///
/// Unknown fields are rejected on deserialize so a typo is an error, not a
/// silently ignored setting. Call [`AppConfig::validate`] before use; the
/// [`Platform`](crate::Platform) does.
///
/// # Examples
///
/// ```
/// use cameleer_runtime::{AppConfig, HealthCheck};
///
/// let cfg: AppConfig = serde_json::from_str(r#"{
///     "env": {"CAMEL_PROFILE": "dev"},
///     "jvm_options": ["-Xmx128m"],
///     "resources": {"memory_mb": 256, "cpu_millis": 500},
///     "health": {"tcp_port": 9092}
/// }"#).unwrap();
/// assert_eq!(cfg.health, HealthCheck::TcpPort(9092));
/// cfg.validate().unwrap();
///
/// let too_big: AppConfig = serde_json::from_str(
///     r#"{"jvm_options": ["-Xmx2g"], "resources": {"memory_mb": 256, "cpu_millis": 500}}"#,
/// ).unwrap();
/// assert_eq!(too_big.validate().unwrap_err().code(), "invalid_config");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Environment variables of the app's process.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Extra JVM options, e.g. `-Xmx256m` or `-Dcamel.main.name=orders`.
    #[serde(default)]
    pub jvm_options: Vec<String>,
    /// Arguments passed to the app's main class.
    #[serde(default)]
    pub args: Vec<String>,
    /// Memory and CPU limits.
    #[serde(default)]
    pub resources: Resources,
    /// How to tell that the app is up.
    #[serde(default)]
    pub health: HealthCheck,
    /// How long the app may take to become healthy, in seconds.
    #[serde(default = "default_start_timeout_secs")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3600))]
    pub start_timeout_secs: u32,
    /// How many instances of the app run side by side behind its address,
    /// `1..=`[`MAX_REPLICAS`]. Default 1. A redeploy replaces them one at a
    /// time, each new one health-gated before an old one leaves.
    ///
    /// Left out of the serialized form when 1, so the
    /// [`sha256`](Self::sha256) of a config written before replicas existed
    /// does not change.
    #[serde(default = "default_replicas", skip_serializing_if = "is_one")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 32))]
    pub replicas: u32,
}

fn default_start_timeout_secs() -> u32 {
    120
}

fn default_replicas() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            env: BTreeMap::new(),
            jvm_options: Vec::new(),
            args: Vec::new(),
            resources: Resources::default(),
            health: HealthCheck::default(),
            start_timeout_secs: default_start_timeout_secs(),
            replicas: default_replicas(),
        }
    }
}

/// The memory limit when a config gives none, in MiB.
pub const DEFAULT_MEMORY_MB: u32 = 512;
/// The CPU limit when a config gives none, in thousandths of a core.
pub const DEFAULT_CPU_MILLIS: u32 = 1000;

/// Memory and CPU limits of the app's container.
///
/// Every field may be left out: a partial object takes the defaults for the
/// rest, so `{"memory_mb": 256}` is 256 MiB and one core.
///
/// | field | default |
/// | --- | --- |
/// | `memory_mb` | [`DEFAULT_MEMORY_MB`] (512) |
/// | `cpu_millis` | [`DEFAULT_CPU_MILLIS`] (1000, one core) |
/// | `cpu_shares` | none (the engine's default weight) |
///
/// # Examples
///
/// ```
/// use cameleer_runtime::Resources;
///
/// let r: Resources = serde_json::from_str(r#"{"memory_mb": 256}"#).unwrap();
/// assert_eq!((r.memory_mb, r.cpu_millis, r.cpu_shares), (256, 1000, None));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory limit in MiB; swap is not allowed on top of it. At least 64.
    /// Default [`DEFAULT_MEMORY_MB`].
    #[serde(default = "default_memory_mb")]
    #[cfg_attr(feature = "openapi", schema(minimum = 64, maximum = 1048576))]
    pub memory_mb: u32,
    /// CPU limit in thousandths of a core (`500` = half a core). Default
    /// [`DEFAULT_CPU_MILLIS`].
    #[serde(default = "default_cpu_millis")]
    #[cfg_attr(feature = "openapi", schema(minimum = 10, maximum = 256000))]
    pub cpu_millis: u32,
    /// Relative CPU weight when cores are contended (Docker `CpuShares`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 2, maximum = 262144))]
    pub cpu_shares: Option<u32>,
}

fn default_memory_mb() -> u32 {
    DEFAULT_MEMORY_MB
}

fn default_cpu_millis() -> u32 {
    DEFAULT_CPU_MILLIS
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            memory_mb: DEFAULT_MEMORY_MB,
            cpu_millis: DEFAULT_CPU_MILLIS,
            cpu_shares: None,
        }
    }
}

/// How the runtime decides that a started app is up (RUNNING).
///
/// On the wire: `{"tcp_port": 9092}`, `{"http": {"port": 8080, "path":
/// "/health"}}` (the path defaults to `/`) or `"none"`. With `none`, the app is up once its process has
/// stayed alive through a short grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HealthCheck {
    /// A TCP connection to this port of the app succeeds.
    TcpPort(u16),
    /// An HTTP GET of `path` on `port` answers 2xx or 3xx.
    Http {
        /// The port (required).
        #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65535))]
        port: u16,
        /// The path, starting with `/`. Default `/`.
        #[serde(default = "root_path")]
        #[cfg_attr(feature = "openapi", schema(pattern = "^/"))]
        path: String,
    },
    /// No probe: the process staying up through a grace period counts.
    #[default]
    None,
}

fn root_path() -> String {
    "/".into()
}

impl AppConfig {
    /// The SHA-256 of the config's canonical JSON (fields in declaration
    /// order, env sorted by name): equal configs give equal digests, so a
    /// backend can tell from its resources' metadata whether a version runs
    /// with the config it was asked for.
    pub fn sha256(&self) -> cameleer_build::Sha256Digest {
        // Serializing plain strings, numbers and maps cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        cameleer_build::Sha256Digest::of(&json)
    }

    /// How many instances of the app run: [`replicas`](Self::replicas).
    /// The one function that counts what a config asks a backend to run
    /// (for a tenant's quota on running instances, say).
    pub fn instances(&self) -> u32 {
        self.replicas
    }

    /// The start timeout as a [`Duration`].
    pub fn start_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.start_timeout_secs))
    }

    /// Checks every field and names the first offending one.
    ///
    /// Rejects: memory below 64 MiB (or above 1 TiB), a zero or absurd CPU
    /// limit, env var names that are not identifiers or that the runtime
    /// reserves, JVM options that set `-javaagent`, `-agentlib` or
    /// `-agentpath`, launcher arguments that are not JVM options
    /// ([`LAUNCHER_ONLY_OPTIONS`](cameleer_build::launch::LAUNCHER_ONLY_OPTIONS), `@argfile`), a heap (`-Xmx`, `-Xms`, `-XX:MaxHeapSize`) above the
    /// memory limit, NUL, CR or LF in any value, a health port of 0 or a path
    /// not starting with `/`, a start timeout outside 1..=3600 s, and
    /// replicas outside 1..=[`MAX_REPLICAS`].
    pub fn validate(&self) -> Result<()> {
        self.resources.validate()?;
        if !(1..=MAX_REPLICAS).contains(&self.replicas) {
            return Err(Error::invalid_config(
                "replicas",
                format!("must be 1..={MAX_REPLICAS}, got {}", self.replicas),
            ));
        }
        if self.env.len() > MAX_ITEMS {
            return Err(Error::invalid_config(
                "env",
                format!("at most {MAX_ITEMS} variables"),
            ));
        }
        for (name, value) in &self.env {
            let field = format!("env.{}", printable(name));
            if !is_identifier(name) {
                return Err(Error::invalid_config(
                    field,
                    "name must be an identifier: [A-Za-z_][A-Za-z0-9_]*",
                ));
            }
            if RESERVED_ENV.contains(&name.as_str()) {
                return Err(Error::invalid_config(
                    field,
                    "is set by the runtime; put JVM flags in jvm_options",
                ));
            }
            check_value(&field, value)?;
        }
        if self.jvm_options.len() > MAX_ITEMS {
            return Err(Error::invalid_config(
                "jvm_options",
                format!("at most {MAX_ITEMS} options"),
            ));
        }
        let limit = u64::from(self.resources.memory_mb) * 1024 * 1024;
        for (i, opt) in self.jvm_options.iter().enumerate() {
            let field = format!("jvm_options[{i}]");
            check_value(&field, opt)?;
            check_jvm_option(&field, opt, limit)?;
        }
        if self.args.len() > MAX_ITEMS {
            return Err(Error::invalid_config(
                "args",
                format!("at most {MAX_ITEMS} args"),
            ));
        }
        for (i, arg) in self.args.iter().enumerate() {
            check_value(&format!("args[{i}]"), arg)?;
        }
        match &self.health {
            HealthCheck::TcpPort(0) => {
                return Err(Error::invalid_config(
                    "health.tcp_port",
                    "must be 1..=65535",
                ));
            }
            HealthCheck::Http { port, path } => {
                if *port == 0 {
                    return Err(Error::invalid_config(
                        "health.http.port",
                        "must be 1..=65535",
                    ));
                }
                check_value("health.http.path", path)?;
                if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace()) {
                    return Err(Error::invalid_config(
                        "health.http.path",
                        "must start with '/' and contain no whitespace",
                    ));
                }
            }
            _ => {}
        }
        if !(1..=3600).contains(&self.start_timeout_secs) {
            return Err(Error::invalid_config(
                "start_timeout_secs",
                "must be 1..=3600",
            ));
        }
        Ok(())
    }
}

impl Resources {
    /// Checks the limits; see [`AppConfig::validate`].
    pub fn validate(&self) -> Result<()> {
        if self.memory_mb < MIN_MEMORY_MB {
            return Err(Error::invalid_config(
                "resources.memory_mb",
                format!(
                    "must be at least {MIN_MEMORY_MB} MiB, got {}",
                    self.memory_mb
                ),
            ));
        }
        if self.memory_mb > MAX_MEMORY_MB {
            return Err(Error::invalid_config(
                "resources.memory_mb",
                format!(
                    "must be at most {MAX_MEMORY_MB} MiB, got {}",
                    self.memory_mb
                ),
            ));
        }
        if !(10..=256_000).contains(&self.cpu_millis) {
            return Err(Error::invalid_config(
                "resources.cpu_millis",
                format!("must be 10..=256000, got {}", self.cpu_millis),
            ));
        }
        if let Some(shares) = self.cpu_shares
            && !(2..=262_144).contains(&shares)
        {
            return Err(Error::invalid_config(
                "resources.cpu_shares",
                format!("must be 2..=262144, got {shares}"),
            ));
        }
        Ok(())
    }

    /// The memory limit in bytes.
    pub fn memory_bytes(&self) -> u64 {
        u64::from(self.memory_mb) * 1024 * 1024
    }
}

fn printable(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_debug).collect()
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 256
}

fn check_value(field: &str, value: &str) -> Result<()> {
    if let Some(c) = value.chars().find(|c| matches!(c, '\0' | '\n' | '\r')) {
        return Err(Error::invalid_config(
            field,
            format!("must not contain {:?}", c),
        ));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(Error::invalid_config(
            field,
            format!("longer than {MAX_VALUE_LEN} bytes"),
        ));
    }
    Ok(())
}

fn check_jvm_option(field: &str, opt: &str, memory_limit: u64) -> Result<()> {
    // The launch command's rules, shared by every backend.
    cameleer_build::launch::check_jvm_option(field, opt)
        .map_err(|e| Error::invalid_config(e.field, e.reason))?;
    let heap = opt
        .strip_prefix("-Xmx")
        .map(|v| ("-Xmx", v))
        .or_else(|| opt.strip_prefix("-Xms").map(|v| ("-Xms", v)))
        .or_else(|| {
            opt.strip_prefix("-XX:MaxHeapSize=")
                .map(|v| ("-XX:MaxHeapSize", v))
        })
        .or_else(|| {
            opt.strip_prefix("-XX:InitialHeapSize=")
                .map(|v| ("-XX:InitialHeapSize", v))
        });
    if let Some((flag, value)) = heap {
        let bytes = parse_jvm_size(value).ok_or_else(|| {
            Error::invalid_config(
                field,
                format!("{flag} needs a size such as 256m, got {value:?}"),
            )
        })?;
        if bytes > memory_limit {
            return Err(Error::invalid_config(
                field,
                format!(
                    "{flag}{value} is above the memory limit of {} MiB",
                    memory_limit / (1024 * 1024)
                ),
            ));
        }
    }
    Ok(())
}

/// Parses a HotSpot size (`512`, `64k`, `256m`, `2g`, `1t`, any case).
fn parse_jvm_size(s: &str) -> Option<u64> {
    let (digits, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        b't' | b'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AppConfig {
        AppConfig {
            resources: Resources {
                memory_mb: 256,
                cpu_millis: 500,
                cpu_shares: None,
            },
            ..AppConfig::default()
        }
    }

    fn field_of(c: &AppConfig) -> String {
        match c.validate().unwrap_err() {
            Error::InvalidConfig { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn default_and_typical_configs_are_valid() {
        AppConfig::default().validate().unwrap();
        let mut c = cfg();
        c.env.insert("CAMEL_PROFILE".into(), "dev".into());
        c.env.insert("_X1".into(), String::new());
        c.jvm_options = vec![
            "-Xmx200m".into(),
            "-Dfoo=bar baz".into(),
            "-XX:+UseG1GC".into(),
        ];
        c.args = vec!["--server.port=8080".into()];
        c.health = HealthCheck::Http {
            port: 8080,
            path: "/actuator/health".into(),
        };
        c.validate().unwrap();
    }

    #[test]
    fn memory_below_64_mib_is_rejected() {
        let mut c = cfg();
        c.resources.memory_mb = 63;
        assert_eq!(field_of(&c), "resources.memory_mb");
        c.resources.memory_mb = 64;
        c.validate().unwrap();
    }

    #[test]
    fn env_names_must_be_identifiers_and_not_reserved() {
        for bad in [
            "1A",
            "A-B",
            "",
            "A B",
            "A=B",
            "JAVA_TOOL_OPTIONS",
            "JDK_JAVA_OPTIONS",
        ] {
            let mut c = cfg();
            c.env.insert(bad.into(), "v".into());
            assert!(field_of(&c).starts_with("env."), "{bad:?}");
        }
    }

    #[test]
    fn agents_and_oversized_heaps_are_rejected() {
        for (opt, ok) in [
            ("-javaagent:/evil.jar", false),
            ("-agentlib:jdwp=transport=dt_socket", false),
            ("-agentpath:/x.so", false),
            ("-Xmx256m", true),
            ("-Xmx257m", false),
            ("-Xmx1g", false),
            ("-Xmx268435456", true),
            ("-Xms300M", false),
            ("-XX:MaxHeapSize=1G", false),
            ("-Xmxlots", false),
            ("-Xmx", false),
            ("-Xmx99999999999999999999g", false),
            ("notanoption", false),
            ("@/etc/args", false),
            ("-jar", false),
            ("--module=evil/Main", false),
            ("-version", false),
            ("-Xss512k", true),
            ("-XshowSettings:vm", true),
        ] {
            let mut c = cfg();
            c.jvm_options = vec!["-Dok=1".into(), opt.into()];
            assert_eq!(c.validate().is_ok(), ok, "{opt}");
            if !ok {
                assert_eq!(field_of(&c), "jvm_options[1]");
            }
        }
    }

    #[test]
    fn nul_and_newlines_are_rejected_everywhere() {
        for bad in ["a\nb", "a\rb", "a\0b"] {
            let mut c = cfg();
            c.env.insert("X".into(), bad.into());
            assert_eq!(field_of(&c), "env.X");
            let mut c = cfg();
            c.jvm_options = vec![format!("-D{bad}")];
            assert_eq!(field_of(&c), "jvm_options[0]");
            let mut c = cfg();
            c.args = vec!["ok".into(), bad.into()];
            assert_eq!(field_of(&c), "args[1]");
            let mut c = cfg();
            c.health = HealthCheck::Http {
                port: 1,
                path: format!("/{bad}"),
            };
            assert_eq!(field_of(&c), "health.http.path");
        }
    }

    #[test]
    fn health_wire_format() {
        let h: HealthCheck = serde_json::from_str(r#"{"tcp_port": 9092}"#).unwrap();
        assert_eq!(h, HealthCheck::TcpPort(9092));
        let h: HealthCheck =
            serde_json::from_str(r#"{"http": {"port": 8080, "path": "/h"}}"#).unwrap();
        assert_eq!(
            h,
            HealthCheck::Http {
                port: 8080,
                path: "/h".into()
            }
        );
        let h: HealthCheck = serde_json::from_str(r#""none""#).unwrap();
        assert_eq!(h, HealthCheck::None);
    }

    #[test]
    fn partial_resources_take_the_defaults_for_what_is_left_out() {
        let c: AppConfig = serde_json::from_str(r#"{"resources": {"memory_mb": 256}}"#).unwrap();
        assert_eq!(
            c.resources,
            Resources {
                memory_mb: 256,
                cpu_millis: DEFAULT_CPU_MILLIS,
                cpu_shares: None
            }
        );
        c.validate().unwrap();
        let c: AppConfig = serde_json::from_str(r#"{"resources": {"cpu_millis": 250}}"#).unwrap();
        assert_eq!(
            (c.resources.memory_mb, c.resources.cpu_millis),
            (DEFAULT_MEMORY_MB, 250)
        );
        let c: AppConfig = serde_json::from_str(r#"{"resources": {"cpu_shares": 512}}"#).unwrap();
        assert_eq!(
            c.resources,
            Resources {
                cpu_shares: Some(512),
                ..Resources::default()
            }
        );
        let c: AppConfig = serde_json::from_str(r#"{"resources": {}}"#).unwrap();
        assert_eq!(c.resources, Resources::default());
        // The whole config may be partial too, and an empty one is the default.
        let c: AppConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, AppConfig::default());
        // An HTTP check's path defaults to `/`; its port has no default.
        let h: HealthCheck = serde_json::from_str(r#"{"http": {"port": 8080}}"#).unwrap();
        assert_eq!(
            h,
            HealthCheck::Http {
                port: 8080,
                path: "/".into()
            }
        );
        assert!(serde_json::from_str::<HealthCheck>(r#"{"http": {"path": "/h"}}"#).is_err());
        // A typo in a partial object is still an error.
        let e = serde_json::from_str::<AppConfig>(r#"{"resources": {"memory": 256}}"#).unwrap_err();
        assert!(e.to_string().contains("memory"), "{e}");
    }

    #[test]
    fn replicas_default_to_one_and_are_bounded() {
        let c: AppConfig = serde_json::from_str("{}").unwrap();
        assert_eq!((c.replicas, c.instances()), (1, 1));
        for (n, ok) in [
            (0, false),
            (1, true),
            (3, true),
            (MAX_REPLICAS, true),
            (MAX_REPLICAS + 1, false),
        ] {
            let mut c = cfg();
            c.replicas = n;
            assert_eq!(c.validate().is_ok(), ok, "{n}");
            if !ok {
                assert_eq!(field_of(&c), "replicas");
            }
        }
        let c: AppConfig = serde_json::from_str(r#"{"replicas": 3}"#).unwrap();
        assert_eq!(c.instances(), 3);
    }

    #[test]
    fn one_replica_leaves_the_config_digest_as_it_was() {
        // The canonical JSON of a config written before replicas existed.
        let json = serde_json::to_string(&AppConfig::default()).unwrap();
        assert!(!json.contains("replicas"), "{json}");
        let three = AppConfig {
            replicas: 3,
            ..AppConfig::default()
        };
        assert!(
            serde_json::to_string(&three)
                .unwrap()
                .contains(r#""replicas":3"#)
        );
        assert_ne!(three.sha256(), AppConfig::default().sha256());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = serde_json::from_str::<AppConfig>(r#"{"jvm_opts": []}"#).unwrap_err();
        assert!(e.to_string().contains("jvm_opts"), "{e}");
    }
}

/// The schema's bounds are the ones [`AppConfig::validate`] applies.
#[cfg(all(test, feature = "openapi"))]
mod openapi_tests {
    use utoipa::PartialSchema;

    use super::*;

    fn bounds(schema: &serde_json::Value, field: &str) -> (u64, u64) {
        let f = &schema["properties"][field];
        (
            f["minimum"].as_u64().unwrap(),
            f["maximum"].as_u64().unwrap(),
        )
    }

    #[test]
    fn the_schemas_bounds_are_the_validators() {
        let resources = serde_json::to_value(Resources::schema()).unwrap();
        assert_eq!(
            bounds(&resources, "memory_mb"),
            (u64::from(MIN_MEMORY_MB), u64::from(MAX_MEMORY_MB))
        );
        let config = serde_json::to_value(AppConfig::schema()).unwrap();
        assert_eq!(bounds(&config, "replicas"), (1, u64::from(MAX_REPLICAS)));
    }
}
