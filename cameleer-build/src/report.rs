//! What validation says about an accepted JAR.

use serde::{Deserialize, Serialize};

use crate::Sha256Digest;

/// An accepted JAR: its identity, how to start it, and notes.
///
/// # Examples
///
/// ```
/// # fn demo(jar: &[u8]) -> Result<(), cameleer_build::ValidationError> {
/// use cameleer_build::{validate_jar, ValidationPolicy};
///
/// let v = validate_jar(jar, &ValidationPolicy::default())?;
/// println!("{} {} bytes, runs {} ({:?})", v.sha256, v.size, v.main_class, v.runtime);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatedJar {
    /// SHA-256 of the uploaded bytes (launch script included).
    pub sha256: Sha256Digest,
    /// Size of the upload in bytes.
    pub size: u64,
    /// The application's main class. For Spring Boot this is the
    /// `Start-Class` (the application's own class; the `Main-Class` is
    /// Spring Boot's launcher, implied by [`Runtime::SpringBoot`]); for
    /// every other layout it is the `Main-Class`.
    pub main_class: String,
    /// The application framework, as detected.
    pub runtime: Runtime,
    /// The highest class-file major version among the classes the target
    /// release would load (nested JARs included), if there is any class.
    pub max_class_version: Option<u16>,
    /// Non-fatal observations.
    pub findings: Vec<Finding>,
}

/// The application framework a JAR is built with.
///
/// Detection, in order:
/// - **Spring Boot**: `Main-Class` is one of Spring Boot's launchers
///   (`org.springframework.boot.loader.…`), which need `Start-Class`.
/// - **Quarkus**: `Main-Class` is in `io.quarkus` (the fast-jar's
///   `QuarkusEntryPoint`, the uber-jar's generated main), or the JAR holds
///   `META-INF/quarkus*` metadata or `io/quarkus/` classes.
/// - **Plain**: anything else with a `Main-Class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    /// A Spring Boot executable JAR (`BOOT-INF/` layout).
    SpringBoot,
    /// A Quarkus application.
    Quarkus,
    /// A plain executable JAR.
    Plain,
}

/// A non-fatal observation about an accepted JAR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Finding {
    /// What was observed.
    pub kind: FindingKind,
    /// The entry it concerns, when there is one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entry: Option<String>,
    /// A sentence for people.
    pub message: String,
}

/// The kinds of [`Finding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// A launch script precedes the zip data (a "fully executable" JAR).
    LaunchScript,
    /// The manifest says `Multi-Release: true`.
    MultiRelease,
    /// The JAR is signed (`META-INF/*.SF`); rebuilding or repackaging it
    /// would break the signature.
    Signed,
    /// The manifest has a `Class-Path`: those files are not in the upload
    /// and will not be in the image.
    ClassPath,
    /// `JndiLookup.class` is present but the log4j-core version is unknown
    /// (reported only when the policy does not reject it).
    UnversionedJndiLookup,
}

impl Finding {
    pub(crate) fn new(
        kind: FindingKind,
        entry: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            entry,
            message: message.into(),
        }
    }
}
