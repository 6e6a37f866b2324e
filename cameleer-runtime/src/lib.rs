//! The model and the contracts of the Cameleer runtime.
//!
//! Cameleer runs customer-uploaded Apache Camel JARs as containers. This
//! crate is its core, with no Docker or Kubernetes dependency:
//!
//! - validated ids ([`TenantId`], [`AppId`], [`EnvId`], [`AppRef`]) and the
//!   per-environment [`AppConfig`];
//! - [`Deployment`] and its state machine ([`transition`]);
//! - the contracts: [`RuntimeOrchestrator`] (a backend), [`ImageBuilder`],
//!   [`DeploymentStore`], [`ArtifactStore`] and [`QuotaStore`] (the host's
//!   storage);
//! - per-tenant [`Quota`]s and retention ([`RetentionOptions`]), both
//!   enforced by the [`Platform`];
//! - in-memory stores ([`memory`]);
//! - logs that outlive containers ([`logs`]): the `LogStore` contract and
//!   the forwarder that fills it;
//! - [`Platform`], the pipeline from an uploaded JAR to a RUNNING app, and
//!   the [`PlatformEvent`]s it publishes;
//! - with the `testkit` feature, fakes with fault injection and the
//!   conformance suite every backend runs (`testkit::conformance`).
//!
//! # How the pieces fit
//!
//! A host builds one [`Platform`] ([`Platform::builder`]) from a backend, an
//! image builder and its two stores, calls [`Platform::start`] once, and
//! serves requests with the platform's methods, each of which takes the
//! [`AppRef`] of the app it acts on:
//!
//! ```text
//! upload_artifact ──> validate (cameleer-build) + ArtifactStore::put      one pass, hashed once
//! deploy ───────────> DeploymentStore::create (v N, BUILDING) ──> returns
//!                       └─ background, one version of an app at a time:
//!                          ImageBuilder::build ──> STARTING (image pinned)
//!                          RuntimeOrchestrator::deploy_app ──> RUNNING, vN-1 STOPPED
//!                                                       or ──> FAILED (reason), vN-1 serves on
//! promote / rollback ──> a new version of an existing image, no build
//! RuntimeOrchestrator::events ──> crash / OOM kill ──> FAILED (reason)
//! ```
//!
//! Every status change goes through [`transition`] and a conditional
//! [`DeploymentStore::update`], so concurrent writers (a user's stop, a
//! crash event, the pipeline) never overwrite each other: the loser re-reads
//! and, if its event no longer applies, drops it.
//!
//! # Errors
//!
//! Every error is an [`Error`] with a stable [`Error::code`] for APIs:
//! `invalid_id`, `invalid_config`, the validator's codes for rejected JARs
//! (`not_a_zip`, `invalid_entry_name`, …), `checksum_mismatch`,
//! `artifact_too_large`, `upload_failed`, `not_found`,
//! `illegal_transition`, `conflict`, `build_failed`, `backend_error`,
//! `storage_error`, `insufficient_storage`, the quota codes
//! (`artifact_bytes_quota_exceeded`, `apps_quota_exceeded`,
//! `instances_quota_exceeded`, `memory_quota_exceeded`,
//! `cpu_quota_exceeded`), `start_failed`, `timeout`, `unsupported`,
//! `shutting_down`, `internal`.
#![deny(missing_docs)]

mod builder;
mod config;
mod deployment;
mod error;
pub mod health;
pub mod identity;
mod ids;
pub mod instance_logs;
pub mod logs;
pub mod memory;
mod orchestrator;
mod platform;
mod quota;
mod reason;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use builder::{BuildProgress, BuildSpec, BuiltImage, ImageBuilder, ProgressSink};
pub use config::{
    AppConfig, DEFAULT_CPU_MILLIS, DEFAULT_MEMORY_MB, HealthCheck, MAX_MEMORY_MB, MAX_REPLICAS,
    MIN_MEMORY_MB, RESERVED_ENV, Resources,
};
pub use deployment::{
    Deployment, DeploymentEvent, DeploymentSource, DeploymentStatus, StatusChange, transition,
};
pub use error::{BoxError, Error, Result};
pub use ids::{AppId, AppRef, DeploymentId, EnvId, TenantId};
pub use orchestrator::{
    AppStatus, AppSummary, DeployRequest, Desired, EventStream, Intent, LogLine, LogOptions,
    LogSource, LogStream, ReconcileReport, RuntimeEvent, RuntimeEventKind, RuntimeOrchestrator,
    instances_status,
};
pub use platform::{
    AppView, BuildProgressEvent, ImageUse, Platform, PlatformBuilder, PlatformEvent,
    PlatformEvents, PlatformOptions, RecoveryReport, RemovableImage, RetentionOptions,
    RetentionPlan, StatusEvent, SweepReport, SweepSkip, UnhealthyEvent, Unset, UploadedArtifact,
};
pub use quota::{ArtifactCharge, Quota, QuotaKind, QuotaStore, QuotaUsage, instances_of};
pub use store::{
    ArtifactInfo, ArtifactStore, ArtifactUpload, ByteStream, DeploymentStore, NewDeployment,
    StoredArtifact,
};

pub use reason::StatusReason;

/// The JVM launch command every backend runs and the rules for the JVM
/// options a customer may add (re-exported from `cameleer-build`).
pub use cameleer_build::launch;
pub use cameleer_build::{ImageRef, Sha256Digest, ValidatedJar, ValidationPolicy};
