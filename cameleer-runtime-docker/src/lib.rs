//! The Docker backend of the Cameleer runtime, on bollard.
//!
//! `DockerImageBuilder` turns a validated JAR into an immutable image through
//! the engine, and `DockerRuntimeOrchestrator` runs each deployment as a
//! hardened container on a per-tenant, per-environment bridge network. Both
//! implement the contracts of `cameleer_runtime`.
//!
//! Groundwork they stand on:
//!
//! - [`connect`]: a bollard client with the API version negotiated;
//! - [`jdk`]: the machine's JDK, and JARs compiled from sources, cached.
//!
//! With the `fixtures` feature, `fixtures` (Java test apps and the demo
//! agent).
#![deny(missing_docs)]

pub mod connect;
pub mod jdk;

#[cfg(feature = "fixtures")]
pub mod fixtures;
