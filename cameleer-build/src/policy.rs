//! What an upload may be: the limits and the target Java release.

use serde::{Deserialize, Serialize};

use crate::Sha256Digest;

/// Size and shape limits, all enforced on the real bytes while reading and
/// inflating; declared sizes are never trusted.
///
/// The defaults fit real Spring Boot and Quarkus applications with room to
/// spare while bounding the work one upload can cause.
///
/// # Examples
///
/// ```
/// use cameleer_build::Limits;
///
/// let limits = Limits { max_upload_bytes: 64 << 20, ..Limits::default() };
/// assert_eq!(limits.max_entries, 65_535);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest upload in bytes, launch script included. Default 512 MiB.
    pub max_upload_bytes: u64,
    /// Most entries in one archive (the upload or one nested JAR).
    /// Default 65,535, the classic zip limit.
    pub max_entries: u64,
    /// Longest entry name in bytes. Default 1,024.
    pub max_name_bytes: usize,
    /// Most bytes produced by inflating every entry of every archive, nested
    /// ones included. A nested JAR's bytes count once as the outer entry's
    /// output and again as its own entries' output. Default 2 GiB.
    pub max_total_uncompressed: u64,
    /// Largest allowed ratio of uncompressed to compressed bytes for one
    /// entry, checked continuously once the entry has produced more than
    /// [`ratio_threshold_bytes`](Self::ratio_threshold_bytes). Default 100.
    pub max_compression_ratio: u64,
    /// Entries below this uncompressed size are exempt from the ratio check
    /// (small files legitimately compress well). Default 1 MiB.
    pub ratio_threshold_bytes: u64,
    /// Deepest nesting of JARs: the upload is depth 0, a library in
    /// `BOOT-INF/lib` depth 1, a JAR inside that library depth 2. A `.jar`
    /// entry that would open at a deeper level is rejected. Default 2.
    pub max_nesting_depth: u8,
    /// Longest launch script (any bytes) allowed before the first zip local
    /// header, as in Spring Boot's "fully executable" JARs. Default 1 MiB.
    pub max_prefix_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 512 << 20,
            max_entries: 65_535,
            max_name_bytes: 1024,
            max_total_uncompressed: 2 << 30,
            max_compression_ratio: 100,
            ratio_threshold_bytes: 1 << 20,
            max_nesting_depth: 2,
            max_prefix_bytes: 1 << 20,
        }
    }
}

/// How to validate an upload: the limits, the target Java release and an
/// optional expected checksum.
///
/// # Examples
///
/// ```
/// use cameleer_build::ValidationPolicy;
///
/// let policy = ValidationPolicy { java_release: 21, ..ValidationPolicy::default() };
/// assert_eq!(policy.max_class_major(), 65);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ValidationPolicy {
    /// Size and shape limits.
    pub limits: Limits,
    /// The Java feature release the image runs (8, 11, 17, 21, ...). Class
    /// files with a major version above `44 + java_release` are rejected.
    /// Default 17.
    pub java_release: u16,
    /// When set, the upload's SHA-256 must equal it (`checksum_mismatch`).
    pub expected_sha256: Option<Sha256Digest>,
    /// What to do with `JndiLookup.class` when the log4j-core version cannot
    /// be found (no `pom.properties`, no manifest version, no versioned file
    /// name). `true` (the default) rejects it as `vulnerable_dependency`:
    /// shading often strips the metadata, and the class is the exploit path,
    /// so an unprovable version is treated as vulnerable. `false` records a
    /// finding instead.
    pub reject_unversioned_jndi_lookup: bool,
    /// Scan nested JARs on a second thread while the upload streams on
    /// (about 1.6x faster on a two-core machine for a Spring Boot fat JAR).
    /// Turn it off to keep one upload to one core, e.g. when a host
    /// validates many uploads at once. Default `true`.
    pub parallel: bool,
}

impl Default for ValidationPolicy {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            java_release: 17,
            expected_sha256: None,
            reject_unversioned_jndi_lookup: true,
            parallel: true,
        }
    }
}

impl ValidationPolicy {
    /// The largest class-file major version the target release runs
    /// (`44 + java_release`: 52 for Java 8, 61 for Java 17).
    pub fn max_class_major(&self) -> u16 {
        self.java_release.saturating_add(44)
    }
}
