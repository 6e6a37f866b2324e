//! Example hosts of the Cameleer runtime.
//!
//! Each example wires the crates the way a host application would: the HTTP
//! server on embedded defaults (SQLite storage, the Docker backend) and a
//! custom backend written only against the public traits. The pieces a host
//! would write itself live here as a library so the binaries stay small and
//! the pieces are tested on their own:
//!
//! - [`api`]: the platform's HTTP API as an axum router;
//! - [`auth`]: its bearer tokens, the admin's and the tenants';
//! - [`dashboard`]: the browser UI over the API, served at `/`;
//! - `k8s_render` (feature `kubernetes`): the command line of `k8s-render`,
//!   which prints what the Kubernetes backend would apply;
//! - [`local_process`]: a custom backend, apps as local `java` processes,
//!   written only against the public traits and passing the conformance
//!   suite;
//! - [`server`]: the example server's command line;
//! - [`storage`]: a SQLite [`DeploymentStore`](cameleer_runtime::DeploymentStore)
//!   and a filesystem [`ArtifactStore`](cameleer_runtime::ArtifactStore).
#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod dashboard;
#[cfg(feature = "kubernetes")]
pub mod k8s_render;
pub mod local_process;
pub mod server;
pub mod storage;
