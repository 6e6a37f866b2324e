//! The model and the contracts of the Cameleer runtime.
//!
//! Cameleer runs customer-uploaded Apache Camel JARs as containers. This
//! crate is its core, with no Docker or Kubernetes dependency:
//!
//! - validated ids ([`TenantId`], [`AppId`], [`EnvId`], [`AppRef`]) and the
//!   per-environment [`AppConfig`];
//! - [`Deployment`] and its state machine ([`transition`]);
//! - the contracts: [`RuntimeOrchestrator`] (a backend), [`ImageBuilder`],
//!   [`DeploymentStore`] and [`ArtifactStore`] (the host's storage);
//! - in-memory stores ([`memory`]);
//! - [`Platform`], the pipeline from an uploaded JAR to a RUNNING app;
//! - with the `testkit` feature, fakes with fault injection and the
//!   conformance suite every backend runs.
#![deny(missing_docs)]

mod builder;
mod config;
mod deployment;
mod error;
mod ids;
pub mod memory;
mod orchestrator;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use builder::{BuildProgress, BuildSpec, BuiltImage, ImageBuilder, ProgressSink};
pub use config::{AppConfig, HealthCheck, Resources};
pub use deployment::{
    Deployment, DeploymentEvent, DeploymentSource, DeploymentStatus, StatusChange, transition,
};
pub use error::{BoxError, Error, Result};
pub use ids::{AppId, AppRef, DeploymentId, EnvId, TenantId};
pub use orchestrator::{
    AppStatus, AppSummary, DeployRequest, EventStream, LogLine, LogOptions, LogSource, LogStream,
    ReconcileReport, RuntimeEvent, RuntimeEventKind, RuntimeOrchestrator,
};
pub use store::{ArtifactInfo, ArtifactStore, ByteStream, DeploymentStore, NewDeployment};

pub use cameleer_build::{ImageRef, Sha256Digest};
