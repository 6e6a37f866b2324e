//! Everything in Cameleer that is a function of bytes alone.
//!
//! This crate is a leaf: it knows nothing of tenants, deployments or
//! container runtimes. It owns
//!
//! - [`Sha256Digest`], the content address of artifacts and build contexts;
//! - [`ImageRef`], a validated container image reference;
//! - [`validate_jar`], streaming JAR validation and the security scan, with
//!   its [`ValidationPolicy`] and stable [`ValidationError`] codes;
//! - [`DockerfileSpec`], the Dockerfile template, and [`BuildContext`], the
//!   deterministic build-context tar whose SHA-256 is the build cache key.
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
mod manifest;
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
};
pub use error::ValidationError;
pub use hashing::HashingWriter;
pub use image_ref::{ImageRef, ImageRefError};
pub use manifest::Manifest;
pub use policy::{Limits, ValidationPolicy};
pub use report::{Finding, FindingKind, Runtime, ValidatedJar};
pub use validate::validate_jar;

#[cfg(feature = "testing")]
pub mod testing;
