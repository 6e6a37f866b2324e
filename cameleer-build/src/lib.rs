//! Everything in Cameleer that is a function of bytes alone.
//!
//! This crate is a leaf: it knows nothing of tenants, deployments or
//! container runtimes. It owns
//!
//! - [`Sha256Digest`], the content address of artifacts and build contexts;
//! - [`ImageRef`], a validated container image reference;
//! - [`validate_jar`], streaming JAR validation and the security scan, with
//!   its [`ValidationPolicy`] and stable [`ValidationError`] codes;
//! - [`launch`], the JVM launch command every backend runs and the rules
//!   for the JVM options a customer may add;
//! - [`DockerfileSpec`], the Dockerfile template, and [`BuildContext`], the
//!   deterministic build-context tar whose SHA-256 is the build cache key;
//! - with the `java` feature, `java`: the machine's JDK, JARs compiled from
//!   Java sources into a content-keyed cache, and the demo agent; with
//!   `fixtures`, also the Java fixture apps the tests deploy. It runs the
//!   JDK's tools and needs no container engine, so every backend (and the
//!   benchmarks) can use it;
//! - [`oci`], daemonless reproducible OCI images: deterministic gzipped tar
//!   layers, the image config and manifest, an OCI image layout.
//!
//! # Validating an upload
//!
//! [`validate_jar`] reads the upload once, forward only: it hashes it,
//! inflates every entry (nested JARs too, as their bytes stream out of the
//! outer entry) and cross-checks the central directory against what it saw,
//! so the archive the JVM will open is exactly the one that was checked.
//! Rejections carry a stable [`ValidationError::code`]:
//!
//! | code | why |
//! | --- | --- |
//! | `empty`, `not_a_zip`, `truncated`, `too_large`, `malformed` | not a well-formed archive |
//! | `invalid_entry_name`, `entry_name_too_long` | `..`, absolute, `\`, `C:`, control characters |
//! | `symlink_entry`, `duplicate_entry`, `encrypted_entry` | unsafe or ambiguous entries |
//! | `unsupported_compression`, `stored_with_data_descriptor` | only STORED and DEFLATE, ends findable |
//! | `central_directory_mismatch`, `overlapping_entries` | the JVM would see another archive |
//! | `size_mismatch`, `crc_mismatch` | declared sizes or CRC lie |
//! | `too_many_entries`, `uncompressed_budget_exceeded`, `compression_ratio_exceeded`, `nesting_too_deep` | [`Limits`] |
//! | `missing_main_class`, `main_class_not_found`, `invalid_manifest` | not runnable |
//! | `vulnerable_dependency` | log4j-core < 2.17.1 with `JndiLookup.class` |
//! | `unsupported_class_version` | classes newer than the target Java release |
//! | `checksum_mismatch`, `io_error` | transfer problems |
//!
//! Core functions are synchronous (they take `std::io::Read`); async callers
//! use the thin adapters next to them (feature `async`, on by default):
//! [`validate_jar_async`] and [`BuildContext::into_stream`].
#![deny(missing_docs)]

#[cfg(feature = "async")]
mod async_io;
mod context;
mod digest;
mod dockerfile;
mod error;
mod hashing;
mod image_ref;
pub mod launch;
mod manifest;
pub mod oci;
#[cfg(feature = "openapi")]
mod openapi;
mod policy;
mod report;
mod scan;
mod validate;
mod zip;

#[cfg(feature = "async")]
pub use async_io::{ContextStream, validate_jar_async};
pub use context::{BuildContext, ContextFile};
pub use digest::{DigestParseError, Sha256Digest};
pub use dockerfile::{
    CONTEXT_AGENT_FILE, CONTEXT_APP_FILE, CONTEXT_DOCKERFILE, DockerfileError, DockerfileSpec,
    IMAGE_AGENT_PATH, IMAGE_APP_PATH, IMAGE_GID, IMAGE_UID, IMAGE_WORKDIR,
};
pub use error::ValidationError;
pub use hashing::HashingWriter;
pub use image_ref::{ImageRef, ImageRefError};
pub use manifest::Manifest;
pub use policy::{Limits, ValidationPolicy};
pub use report::{Finding, FindingKind, Runtime, ValidatedJar};
pub use validate::validate_jar;

#[cfg(feature = "java")]
pub mod java;
#[cfg(feature = "testing")]
pub mod testing;
