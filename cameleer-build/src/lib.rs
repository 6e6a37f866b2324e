//! Everything in Cameleer that is a function of bytes alone.
//!
//! This crate is a leaf: it knows nothing of tenants, deployments or
//! container runtimes. It owns
//!
//! - [`Sha256Digest`], the content address of artifacts and build contexts;
//! - [`ImageRef`], a validated container image reference;
//! - [`validate_jar`], streaming JAR validation and the security scan, with
//!   its [`ValidationPolicy`] and stable [`ValidationError`] codes;
//! - the Dockerfile template and the deterministic build-context tar.
//!
//! Core functions are synchronous (they take `std::io::Read`); async callers
//! use the thin adapters next to them.
#![deny(missing_docs)]

mod digest;
mod error;
mod image_ref;
mod manifest;
mod policy;
mod report;
mod scan;
mod validate;
mod zip;

pub use digest::{DigestParseError, Sha256Digest};
pub use error::ValidationError;
pub use image_ref::{ImageRef, ImageRefError};
pub use manifest::Manifest;
pub use policy::{Limits, ValidationPolicy};
pub use report::{Finding, FindingKind, Runtime, ValidatedJar};
pub use validate::validate_jar;

#[cfg(feature = "testing")]
pub mod testing;
