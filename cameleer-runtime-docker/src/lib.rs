//! The Docker backend of the Cameleer runtime, on bollard.
//!
//! `DockerImageBuilder` turns a validated JAR into an immutable image through
//! the engine, and `DockerRuntimeOrchestrator` runs each deployment as a
//! hardened container on a per-tenant, per-environment bridge network. Both
//! implement the contracts of `cameleer_runtime`.
//!
//! Images can also come from a registry instead of the engine's cache: an
//! image built and pushed by `cameleer-registry`'s `RegistryImageBuilder`
//! (no engine involved) is a `registry/repo:tag@sha256:…` reference, which
//! the orchestrator pulls by digest, with the credentials of
//! [`DockerOrchestratorOptions::registry_logins`] ([`RegistryLogin`]).
//!
//! What the crate exports:
//!
//! - the backend, [`DockerRuntimeOrchestrator`], and its
//!   [`DockerOrchestratorOptions`] (with [`RegistryLogin`]s to pull from
//!   registries);
//! - the image builder, [`DockerImageBuilder`], and its
//!   [`DockerImageBuilderOptions`] ([`BuildRoute`], and the repository of
//!   its base+agent images, [`AGENT_BASE_REPOSITORY`]);
//! - [`base_image`]: the base-image builder, for the JRE base image,
//!   configured or `jlink`ed locally with the machine's JDK (found by
//!   `cameleer_build::java`);
//! - [`connect`]: a bollard client with the API version negotiated;
//! - [`labels`]: the labels and names of what the backend creates, for
//!   operators and hosts that list, monitor or clean up its resources;
//! - the log stream's bounds, [`MAX_LINE_BYTES`] and [`READ_AHEAD_BYTES`].
//!
//! Nothing here exists only for tests: the Java fixture apps and the demo
//! agent are in `cameleer_build::java` (features `fixtures` and `java`), the
//! helpers for tests against the engine (cleanup guards, labelled test
//! containers) in the unpublished `cameleer-docker-testing` crate.
#![deny(missing_docs)]

pub mod base_image;
pub mod connect;

mod container;
mod engine;
mod events;
mod image_builder;
pub mod labels;
mod logs;
mod network;
mod orchestrator;
mod status;

pub use image_builder::{
    AGENT_BASE_REPOSITORY, BuildRoute, DockerImageBuilder, DockerImageBuilderOptions,
};
pub use logs::{MAX_LINE_BYTES, READ_AHEAD_BYTES};
pub use orchestrator::{DockerOrchestratorOptions, DockerRuntimeOrchestrator, RegistryLogin};
