//! The image config and manifest, serialised canonically.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr as _;

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, Digest, HistoryBuilder, ImageConfigurationBuilder,
    ImageManifestBuilder, MediaType, Os, RootFs,
};
use serde::Serialize;
use serde_json::Value;

use super::error::cut;
use super::{IMAGE_JAVA_HOME, LayerBlob, OciError};
use crate::Sha256Digest;
use crate::dockerfile::{IMAGE_GID, IMAGE_UID, IMAGE_WORKDIR};

/// The operating system and CPU an image runs on, with Go's names
/// (`GOOS`, `GOARCH`) as OCI uses them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// The CPU variant (`v8` for `arm64`), when one is wanted.
    pub variant: Option<String>,
}

impl Platform {
    /// Linux on `architecture`.
    pub fn linux(architecture: impl Into<String>) -> Self {
        Self {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Linux on this host's CPU (`x86_64` is `amd64`, `aarch64` is `arm64`,
    /// …; an architecture Go has no other name for keeps Rust's).
    ///
    /// The OS is always `linux`, not the host's: a JRE layer jlinked on a
    /// build host is a Linux one, and container images run on Linux even
    /// when the tooling runs elsewhere.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "arm" => "arm",
            "loongarch64" => "loong64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "riscv64" => "riscv64",
            "s390x" => "s390x",
            other => other,
        };
        Self::linux(arch)
    }
}

/// What an image's configuration says, besides its layers.
///
/// [`ImageConfig::new`] gives Cameleer's defaults: `JAVA_HOME=/opt/java`
/// and its `bin` first on `PATH`, user `10001:10001` (not root), working
/// directory `/app`, the host's CPU, `created` at the epoch. The entrypoint
/// is the caller's (the JVM launch command belongs to the core crate).
///
/// Maps are ordered and the config is serialised with sorted keys, so the
/// same values always give the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    /// The command run when the container starts, as an argv (exec form).
    /// Not empty.
    pub entrypoint: Vec<String>,
    /// Default arguments appended to the entrypoint. Usually empty.
    pub cmd: Vec<String>,
    /// Environment variables, written as `KEY=value` in key order.
    pub env: BTreeMap<String, String>,
    /// `uid:gid`, `uid` or a user name.
    pub user: String,
    /// The working directory, absolute.
    pub working_dir: Option<String>,
    /// Image labels (the config's `Labels`).
    pub labels: BTreeMap<String, String>,
    /// Manifest annotations (`org.opencontainers.image.*`).
    pub annotations: BTreeMap<String, String>,
    /// The platform.
    pub platform: Platform,
    /// The `created` time, in seconds since the epoch (a
    /// `SOURCE_DATE_EPOCH`); also the `created` of history entries. From 0
    /// to 253402300799 (the end of year 9999).
    pub created: i64,
}

impl ImageConfig {
    /// Cameleer's defaults around `entrypoint`.
    ///
    /// ```
    /// use cameleer_build::oci::ImageConfig;
    ///
    /// let c = ImageConfig::new(vec!["java".into(), "-jar".into(), "/app/app.jar".into()]);
    /// assert_eq!(c.user, "10001:10001");
    /// assert_eq!(c.env["JAVA_HOME"], "/opt/java");
    /// assert!(c.env["PATH"].starts_with("/opt/java/bin:"));
    /// ```
    pub fn new(entrypoint: Vec<String>) -> Self {
        let env = BTreeMap::from([
            ("JAVA_HOME".to_owned(), IMAGE_JAVA_HOME.to_owned()),
            (
                "PATH".to_owned(),
                format!(
                    "{IMAGE_JAVA_HOME}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                ),
            ),
        ]);
        Self {
            entrypoint,
            cmd: Vec::new(),
            env,
            user: format!("{IMAGE_UID}:{IMAGE_GID}"),
            working_dir: Some(IMAGE_WORKDIR.to_owned()),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            platform: Platform::host(),
            created: 0,
        }
    }

    fn validate(&self) -> Result<(), OciError> {
        let err = |field: String, reason| Err(OciError::InvalidImageConfig { field, reason });
        if self.entrypoint.first().is_none_or(String::is_empty) {
            return err("entrypoint".into(), "needs a non-empty program");
        }
        for (name, args) in [("entrypoint", &self.entrypoint), ("cmd", &self.cmd)] {
            if let Some(i) = args.iter().position(|a| a.contains('\0')) {
                return err(format!("{name}[{i}]"), "has a NUL byte");
            }
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.chars().any(char::is_control) {
                return err(
                    format!("env[{:?}]", cut(k, 100)),
                    "a name must be non-empty, without = or control characters",
                );
            }
            if v.contains('\0') {
                return err(format!("env[{:?}]", cut(k, 100)), "has a NUL byte");
            }
        }
        if self.user.is_empty()
            || self
                .user
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return err(
                "user".into(),
                "must be non-empty, without spaces or control characters",
            );
        }
        if let Some(w) = &self.working_dir
            && (!w.starts_with('/') || w.chars().any(char::is_control))
        {
            return err(
                "working_dir".into(),
                "must be absolute, without control characters",
            );
        }
        for (name, map) in [("labels", &self.labels), ("annotations", &self.annotations)] {
            for (k, v) in map {
                if k.is_empty() || k.chars().any(char::is_control) {
                    return err(
                        format!("{name}[{:?}]", cut(k, 100)),
                        "a key must be non-empty, without control characters",
                    );
                }
                if v.contains('\0') {
                    return err(format!("{name}[{:?}]", cut(k, 100)), "has a NUL byte");
                }
            }
        }
        for (name, v) in [
            ("platform.os", &self.platform.os),
            ("platform.architecture", &self.platform.architecture),
        ] {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return err(name.into(), "must be a non-empty GOOS/GOARCH-style name");
            }
        }
        if self
            .platform
            .variant
            .as_ref()
            .is_some_and(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return err("platform.variant".into(), "must be alphanumeric");
        }
        Ok(())
    }

    /// `created` as RFC 3339, `1970-01-01T00:00:00Z`.
    fn created_rfc3339(&self) -> Result<String, OciError> {
        let bad = || OciError::InvalidImageConfig {
            field: "created".into(),
            reason: "must be from 0 to 253402300799 seconds since the epoch",
        };
        if !(0..=253_402_300_799).contains(&self.created) {
            return Err(bad());
        }
        time::OffsetDateTime::from_unix_timestamp(self.created)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .ok_or_else(bad)
    }
}

/// A JSON document and its SHA-256: the image config or the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonBlob {
    /// The canonical bytes: compact, keys sorted.
    pub bytes: Vec<u8>,
    /// SHA-256 of [`bytes`](Self::bytes).
    pub digest: Sha256Digest,
}

impl JsonBlob {
    fn of<T: Serialize>(value: &T) -> Result<Self, OciError> {
        let bytes = canonical_json(value)?;
        Ok(Self {
            digest: Sha256Digest::of(&bytes),
            bytes,
        })
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// An assembled image: what a registry push or an OCI layout needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciImage {
    /// The image config (`application/vnd.oci.image.config.v1+json`).
    pub config: JsonBlob,
    /// The image manifest (`application/vnd.oci.image.manifest.v1+json`);
    /// its digest is the image's identity, `repo@sha256:…`.
    pub manifest: JsonBlob,
    /// The layers, base first, as in the manifest.
    pub layers: Vec<LayerBlob>,
    /// The platform the config names.
    pub platform: Platform,
}

impl OciImage {
    /// Assembles the config and the manifest of an image made of `layers`,
    /// base first. A pure function of its inputs: the same config and
    /// layer digests give the same bytes, so the same manifest digest.
    ///
    /// The config has `rootfs.diff_ids` in layer order and, when any layer
    /// has a [`created_by`](LayerBlob::created_by), one history entry per
    /// layer dated [`ImageConfig::created`].
    ///
    /// # Examples
    ///
    /// ```
    /// use cameleer_build::oci::{FileMode, ImageConfig, LayerBuilder, OciImage, Platform};
    ///
    /// let mut app = LayerBuilder::new();
    /// app.add_bytes("/app/app.jar", b"PK...".to_vec(), FileMode::Regular).unwrap();
    /// let mut config = ImageConfig::new(vec!["java".into(), "-jar".into(), "/app/app.jar".into()]);
    /// config.platform = Platform::linux("amd64");
    /// let layers = vec![app.build_in_memory().unwrap()];
    /// let image = OciImage::assemble(&config, layers.clone()).unwrap();
    /// let again = OciImage::assemble(&config, layers).unwrap();
    /// assert_eq!(image.manifest.digest, again.manifest.digest);
    /// ```
    pub fn assemble(config: &ImageConfig, layers: Vec<LayerBlob>) -> Result<Self, OciError> {
        config.validate()?;
        if layers.is_empty() {
            return Err(OciError::InvalidImageConfig {
                field: "layers".into(),
                reason: "an image needs at least one layer",
            });
        }
        let created = config.created_rfc3339()?;
        let image_config = image_configuration(config, &created, &layers)?;
        let config_blob = JsonBlob::of(&image_config)?;

        let mut descriptors = Vec::with_capacity(layers.len());
        for l in &layers {
            descriptors.push(Descriptor::new(
                MediaType::ImageLayerGzip,
                l.layer.size,
                oci_digest(&l.layer.digest)?,
            ));
        }
        let mut manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_blob.size(),
                oci_digest(&config_blob.digest)?,
            ))
            .layers(descriptors);
        if !config.annotations.is_empty() {
            manifest = manifest.annotations(hash_map(&config.annotations));
        }
        let manifest = manifest.build().map_err(OciError::spec)?;
        Ok(Self {
            config: config_blob,
            manifest: JsonBlob::of(&manifest)?,
            layers,
            platform: config.platform.clone(),
        })
    }

    /// The descriptor of the manifest (for an image index), with the
    /// platform.
    pub fn manifest_descriptor(&self) -> Result<Descriptor, OciError> {
        let mut d = Descriptor::new(
            MediaType::ImageManifest,
            self.manifest.size(),
            oci_digest(&self.manifest.digest)?,
        );
        let mut platform = oci_spec::image::PlatformBuilder::default()
            .os(Os::from(self.platform.os.as_str()))
            .architecture(Arch::from(self.platform.architecture.as_str()));
        if let Some(v) = &self.platform.variant {
            platform = platform.variant(v.clone());
        }
        d.set_platform(Some(platform.build().map_err(OciError::spec)?));
        Ok(d)
    }
}

fn image_configuration(
    config: &ImageConfig,
    created: &str,
    layers: &[LayerBlob],
) -> Result<oci_spec::image::ImageConfiguration, OciError> {
    let env: Vec<String> = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut run = ConfigBuilder::default()
        .user(config.user.clone())
        .env(env)
        .entrypoint(config.entrypoint.clone());
    if !config.cmd.is_empty() {
        run = run.cmd(config.cmd.clone());
    }
    if let Some(w) = &config.working_dir {
        run = run.working_dir(w.clone());
    }
    if !config.labels.is_empty() {
        run = run.labels(hash_map(&config.labels));
    }
    let mut rootfs = RootFs::default();
    rootfs.set_diff_ids(layers.iter().map(|l| l.layer.diff_id.oci()).collect());

    let mut image = ImageConfigurationBuilder::default()
        .created(created.to_owned())
        .architecture(Arch::from(config.platform.architecture.as_str()))
        .os(Os::from(config.platform.os.as_str()))
        .config(run.build().map_err(OciError::spec)?)
        .rootfs(rootfs);
    if let Some(v) = &config.platform.variant {
        image = image.variant(v.clone());
    }
    if layers.iter().any(|l| l.created_by.is_some()) {
        let mut history = Vec::with_capacity(layers.len());
        for l in layers {
            let mut h = HistoryBuilder::default().created(created.to_owned());
            if let Some(by) = &l.created_by {
                h = h.created_by(by.clone());
            }
            history.push(h.build().map_err(OciError::spec)?);
        }
        image = image.history(history);
    }
    image.build().map_err(OciError::spec)
}

/// `oci-spec` keeps maps in `HashMap`s; the canonical serialisation
/// re-sorts them, so their iteration order does not matter.
fn hash_map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(crate) fn oci_digest(d: &Sha256Digest) -> Result<Digest, OciError> {
    Digest::from_str(&d.oci()).map_err(OciError::spec)
}

/// Compact JSON with every object's keys in byte order, whatever order the
/// value's maps iterate in (`HashMap`s in `oci-spec`) and whether or not
/// `serde_json`'s `preserve_order` is on somewhere in the build.
pub(crate) fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, OciError> {
    let value = serde_json::to_value(value).map_err(OciError::spec)?;
    serde_json::to_vec(&sort_keys(value)).map_err(OciError::spec)
}

fn sort_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_nested_keys() {
        let v = serde_json::json!({"b": {"z": 1, "a": [ {"y": 2, "x": 3} ]}, "a": "é"});
        let s = String::from_utf8(canonical_json(&v).unwrap()).unwrap();
        assert_eq!(s, r#"{"a":"é","b":{"a":[{"x":3,"y":2}],"z":1}}"#);
        let m: HashMap<String, u8> = (0..50).map(|i| (format!("k{i}"), i)).collect();
        let once = canonical_json(&m).unwrap();
        let m2: HashMap<String, u8> = (0..50).rev().map(|i| (format!("k{i}"), i)).collect();
        assert_eq!(once, canonical_json(&m2).unwrap());
    }

    #[test]
    fn created_is_rfc3339_and_bounded() {
        let mut c = ImageConfig::new(vec!["java".into()]);
        assert_eq!(c.created_rfc3339().unwrap(), "1970-01-01T00:00:00Z");
        c.created = 1_700_000_000;
        assert_eq!(c.created_rfc3339().unwrap(), "2023-11-14T22:13:20Z");
        c.created = -1;
        assert_eq!(
            c.created_rfc3339().unwrap_err().code(),
            "invalid_image_config"
        );
    }

    #[test]
    fn host_platform_is_linux() {
        let p = Platform::host();
        assert_eq!(p.os, "linux");
        assert!(!p.architecture.is_empty());
    }
}
