//! Everything in Cameleer that is a function of bytes alone.
//!
//! This crate is a leaf: it knows nothing of tenants, deployments or
//! container runtimes. It owns
//!
//! - [`Sha256Digest`], the content address of artifacts and build contexts;
//! - [`ImageRef`], a validated container image reference;
//! - streaming JAR validation and the security scan;
//! - the Dockerfile template and the deterministic build-context tar.
//!
//! Core functions are synchronous (they take `std::io::Read`); async callers
//! use the thin adapters next to them.
#![deny(missing_docs)]

mod digest;
mod image_ref;

pub use digest::{DigestParseError, Sha256Digest};
pub use image_ref::{ImageRef, ImageRefError};
