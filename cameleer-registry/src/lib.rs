//! Daemonless images pushed straight to an OCI registry.
//!
//! Where the platform runs on more than one machine, images live in a
//! registry (`registry:2`, a customer's registry, Gitea's), not in one
//! engine's cache. This crate pushes the images `cameleer_build::oci`
//! assembles, byte for byte, without a container engine:
//!
//! - [`RegistryClient`]: the distribution API v2 requests of a push, on
//!   reqwest and rustls: blobs the repository already has are skipped,
//!   base and agent layers are mounted across repositories instead of
//!   uploaded again, large layers are streamed from their file (never
//!   held in memory) and hashed on the way, the manifest goes last. Basic
//!   and bearer-token auth as the registry asks; TLS trusting the system's
//!   roots and the operator's CA; plain HTTP only on loopback.
//! - [`RegistryImageBuilder`]: the [`ImageBuilder`](cameleer_runtime::ImageBuilder)
//!   of a registry: JAR bytes in, `registry/prefix/tenant/app:vN@sha256:…`
//!   out. The JRE base and the agent are layers built once (cached by
//!   content) and pushed once to a base repository; a new version uploads
//!   only its app layer, its config and its manifest. Any backend can run
//!   the result by digest: the Docker backend pulls it, a cluster would.
//!
//! The image digest is a pure function of the inputs (the JAR, the agent,
//! the JRE, the launch command), so promotion and rollback are "run this
//! digest" on any backend, and building the same JAR again is a cache hit.
//!
//! # Errors
//!
//! [`RegistryError::code`] is stable:
//!
//! | code | why |
//! | --- | --- |
//! | `invalid_registry_config`, `insecure_registry` | a bad URL, CA or credentials file; plain HTTP to a host that is not loopback |
//! | `auth_required`, `auth_failed`, `access_denied` | no credentials; wrong ones (registry or token server); not allowed |
//! | `tls_error` | the certificate is not trusted, or the server does not speak TLS |
//! | `quota_exceeded` | the registry's disk is full, or a quota (413, 507, `DENIED … quota`) |
//! | `manifest_rejected`, `blob_rejected` | the registry refused the manifest (`MANIFEST_INVALID`, `MANIFEST_BLOB_UNKNOWN`…) or a blob (`DIGEST_INVALID`) |
//! | `registry_unreachable`, `registry_timeout`, `registry_error` | the connection failed or broke mid-push; no answer in time; any other error answer ([`RegistryError::is_retryable`] says whether to try again) |
//! | `protocol_error`, `source_changed`, `io_error` | the registry broke the protocol; a local blob changed while pushed; a local file could not be read |
#![deny(missing_docs)]

mod auth;
mod builder;
mod client;
mod config;
mod error;
mod push;
mod tls;

#[cfg(feature = "testing")]
pub mod testing;

pub use builder::{BASE_REPOSITORY, RegistryBuilderOptions, RegistryImageBuilder, labels};
pub use client::RegistryClient;
pub use config::{Credentials, PASSWORD_ENV, RegistryConfig, USERNAME_ENV};
pub use error::RegistryError;
pub use push::{BlobOutcome, PushEvent, PushOptions, PushProgress, PushReport};
