//! The Kubernetes backend of the Cameleer runtime, on kube-rs.
//!
//! [`KubernetesRuntimeOrchestrator`] runs each deployment in a per-tenant,
//! per-environment namespace behind the core's
//! [`RuntimeOrchestrator`](cameleer_runtime::RuntimeOrchestrator) contract;
//! images come from a registry: the registry builder by default, or
//! [`KanikoImageBuilder`], a build Job inside the cluster.
//!
//! The pieces, each usable on its own:
//!
//! - [`namespace`]: the tenant+env namespace, its Pod Security labels,
//!   NetworkPolicies, ResourceQuota and LimitRange (pure);
//! - [`workload`]: the app's Deployment and Service (pure);
//! - [`status`]: pod and Deployment conditions → the core's status and
//!   typed reason (pure);
//! - [`render`]: every object of a deployment as YAML, for `k8s-render`;
//! - [`watch`]: the watches that feed status and `events()`;
//! - [`logs`]: the logs of an app's pods;
//! - [`rbac`]: the shipped least-privilege RBAC manifests;
//! - [`kaniko`]: the in-cluster build Job;
//! - with the `testing` feature, [`testing`]: a scripted in-memory API
//!   server, a kubelet a test plays and the restricted-profile checker.
//!
//! # Kubernetes versions
//!
//! This library takes `k8s-openapi` without a version feature; the binary
//! that links it picks one (`k8s-openapi/latest`, or `v1_33` … `v1_37`).
//!
//! # Errors
//!
//! [`K8sError`], with stable codes; a `403` names the verb and resource to
//! grant ([`K8sError::Forbidden`]).
#![deny(missing_docs)]

mod api;
mod compat;
pub mod error;
pub mod kaniko;
pub mod logs;
pub mod namespace;
pub mod options;
mod orchestrator;
pub mod rbac;
pub mod render;
pub mod status;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod watch;
pub mod workload;

pub use error::{Call, K8sError, K8sResult};
pub use kaniko::{KanikoImageBuilder, KanikoOptions};
pub use options::{ClusterDns, FIELD_MANAGER, KubernetesOptions, TenantLimits};
pub use orchestrator::KubernetesRuntimeOrchestrator;
