//! The Docker backend of the Cameleer runtime, on bollard.
//!
//! `DockerImageBuilder` turns a validated JAR into an immutable image through
//! the engine, and `DockerRuntimeOrchestrator` runs each deployment as a
//! hardened container on a per-tenant, per-environment bridge network. Both
//! implement the contracts of `cameleer_runtime`.
//!
//! Groundwork they stand on:
//!
//! - [`connect`]: a bollard client with the API version negotiated.
#![deny(missing_docs)]

pub mod connect;
