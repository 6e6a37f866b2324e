//! The Kubernetes backend of the Cameleer runtime (to come).
//!
//! This crate will hold `KanikoImageBuilder`, which builds images inside the
//! cluster with a Kaniko Job and pushes them to a registry, and
//! `KubernetesRuntimeOrchestrator`, which runs each deployment in a
//! per-tenant, per-environment namespace through kube-rs. Both implement the
//! contracts of [`cameleer_runtime`]. It is empty until its issue lands.
#![deny(missing_docs)]
