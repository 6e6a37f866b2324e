//! Why a deployment is in its status: typed, with a stable code.
//!
//! Every backend reports the same [`StatusReason`]s, and the deployment
//! history stores them, so an API client (or an operator's alert) can tell
//! a kernel OOM kill from the JVM's own `OutOfMemoryError` from a health
//! check that never passed, without parsing English. [`Display`](fmt::Display)
//! gives the sentence a person reads; [`StatusReason::code`] the word a
//! program matches on.
//!
//! # Stored histories
//!
//! On the wire a reason is an object tagged by its code:
//! `{"code": "exited", "exit_code": 3}`. Histories written before reasons
//! were typed hold plain strings (`"exited with code 3: the process ended on
//! its own"`); they still load: [`StatusReason::from_legacy`] reads the
//! sentences the platform used to write back into their variants, and keeps
//! anything else as [`StatusReason::Other`].

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::DeploymentId;
use crate::launch::{JVM_OOM_EXIT_CODE, JVM_OOM_MARKER};

/// Why a deployment entered its status.
///
/// # Examples
///
/// ```
/// use cameleer_runtime::StatusReason;
///
/// let oom = StatusReason::from_exit(3, Some("Terminating due to java.lang.OutOfMemoryError: Java heap space"));
/// assert_eq!(oom, StatusReason::JvmOutOfMemory);
/// assert_eq!(oom.code(), "jvm_out_of_memory");
///
/// // The same exit code without the JVM's words is the app's own exit.
/// let exit = StatusReason::from_exit(3, Some("[app] bye"));
/// assert_eq!(exit.to_string(), "exited with code 3");
///
/// // On the wire, tagged by code.
/// let json = serde_json::to_string(&exit).unwrap();
/// assert_eq!(json, r#"{"code":"exited","exit_code":3}"#);
/// assert_eq!(serde_json::from_str::<StatusReason>(&json).unwrap(), exit);
///
/// // Free text stored before reasons were typed reads as its variant.
/// let legacy = StatusReason::from_legacy("killed by the kernel OOM killer: memory limit exceeded");
/// assert_eq!(legacy, StatusReason::OomKilled);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "code", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum StatusReason {
    /// The app's process ended on its own with this exit code.
    Exited {
        /// The exit code, when the backend knows it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
    },
    /// The kernel killed the process for exceeding its memory limit (the
    /// container's or pod's limit is too small for what the app does).
    OomKilled,
    /// The JVM ran out of heap (or metaspace, or direct memory) and, under
    /// the launch command's `-XX:+ExitOnOutOfMemoryError`, exited: the heap
    /// is too small or the app leaks, whatever the container's limit.
    JvmOutOfMemory,
    /// The health check did not pass within the start timeout.
    HealthTimeout {
        /// The start timeout, in seconds.
        after_secs: u64,
        /// What the last probe saw, when there was one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_probe: Option<String>,
    },
    /// The health check started failing while the app was RUNNING.
    Unhealthy {
        /// What the probe saw.
        detail: String,
    },
    /// The image could not be pulled (missing, unauthorised, registry down).
    ImagePullFailed {
        /// What the runtime said.
        detail: String,
    },
    /// The app keeps crashing and the runtime backs off restarting it
    /// (Kubernetes `CrashLoopBackOff`).
    CrashLoop {
        /// How often it restarted, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restarts: Option<u32>,
        /// The reason of the last exit, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", schema(no_recursion))]
        last: Option<Box<StatusReason>>,
    },
    /// The runtime refused to start the app's process (a bad command, a
    /// missing file, no room to schedule it), before the app ran any code.
    StartRefused {
        /// What the runtime said.
        detail: String,
    },
    /// The app was removed behind the platform's back: the backend no longer
    /// has it.
    Gone,
    /// The image build failed.
    BuildFailed {
        /// The builder's text.
        detail: String,
    },
    /// Stopped because someone asked for it.
    StoppedOnRequest,
    /// Stopped by something outside the platform (a `docker stop`, SIGTERM
    /// from the host).
    StoppedExternally,
    /// A newer version became RUNNING and replaced this one.
    Superseded {
        /// The version that replaced it.
        by_version: u64,
    },
    /// A controller restart cut the work short.
    Interrupted {
        /// What the backend reported of it afterwards, if anything.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The container engine or cluster could not be reached or failed.
    BackendUnavailable {
        /// What failed.
        detail: String,
    },
    /// Created by promoting another environment's image.
    Promoted {
        /// The deployment whose image was promoted.
        from: DeploymentId,
    },
    /// Created by rolling back to an earlier version's image.
    RolledBack {
        /// The version rolled back to.
        to_version: u64,
    },
    /// Some instances of an app that runs several are not ready (starting,
    /// being replaced after a crash): the status is not RUNNING until all
    /// are.
    InstancesNotReady {
        /// How many are ready.
        ready: u32,
        /// How many the deployment asks for.
        desired: u32,
    },
    /// Free text: a reason stored before reasons were typed that matches no
    /// variant, or one a custom backend has no variant for.
    Other {
        /// The text.
        message: String,
    },
}

impl StatusReason {
    /// The stable, snake_case code: what the wire form is tagged with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Exited { .. } => "exited",
            Self::OomKilled => "oom_killed",
            Self::JvmOutOfMemory => "jvm_out_of_memory",
            Self::HealthTimeout { .. } => "health_timeout",
            Self::Unhealthy { .. } => "unhealthy",
            Self::ImagePullFailed { .. } => "image_pull_failed",
            Self::CrashLoop { .. } => "crash_loop",
            Self::StartRefused { .. } => "start_refused",
            Self::Gone => "gone",
            Self::BuildFailed { .. } => "build_failed",
            Self::StoppedOnRequest => "stopped_on_request",
            Self::StoppedExternally => "stopped_externally",
            Self::Superseded { .. } => "superseded",
            Self::Interrupted { .. } => "interrupted",
            Self::BackendUnavailable { .. } => "backend_unavailable",
            Self::Promoted { .. } => "promoted",
            Self::RolledBack { .. } => "rolled_back",
            Self::InstancesNotReady { .. } => "instances_not_ready",
            Self::Other { .. } => "other",
        }
    }

    /// Every code a reason can have, for API documentation and tests.
    pub const CODES: &'static [&'static str] = &[
        "exited",
        "oom_killed",
        "jvm_out_of_memory",
        "health_timeout",
        "unhealthy",
        "image_pull_failed",
        "crash_loop",
        "start_refused",
        "gone",
        "build_failed",
        "stopped_on_request",
        "stopped_externally",
        "superseded",
        "interrupted",
        "backend_unavailable",
        "promoted",
        "rolled_back",
        "instances_not_ready",
        "other",
    ];

    /// Classifies an exit of the app's process from its code and, when the
    /// backend has them, the last lines it wrote.
    ///
    /// The launch command ([`crate::launch`]) runs the JVM with
    /// `-XX:+ExitOnOutOfMemoryError`, which exits with code 3 after printing
    /// `Terminating due to java.lang.OutOfMemoryError…`. Code 3 alone does not
    /// say it (an app may `System.exit(3)`), so the JVM's words must be in
    /// `last_output` for [`StatusReason::JvmOutOfMemory`].
    pub fn from_exit(exit_code: i64, last_output: Option<&str>) -> Self {
        if exit_code == JVM_OOM_EXIT_CODE && last_output.is_some_and(|o| o.contains(JVM_OOM_MARKER))
        {
            return Self::JvmOutOfMemory;
        }
        Self::Exited {
            exit_code: Some(exit_code),
        }
    }

    /// A free-text reason.
    pub fn other(message: impl Into<String>) -> Self {
        Self::Other {
            message: message.into(),
        }
    }

    /// Whether this is the app's own failure (exit, OOM, health), as
    /// opposed to the platform's or the backend's.
    pub fn is_app_failure(&self) -> bool {
        matches!(
            self,
            Self::Exited { .. }
                | Self::OomKilled
                | Self::JvmOutOfMemory
                | Self::HealthTimeout { .. }
                | Self::Unhealthy { .. }
                | Self::CrashLoop { .. }
                | Self::StartRefused { .. }
        )
    }

    /// Reads a reason stored as free text before reasons were typed.
    ///
    /// Knows every sentence the platform and its backends used to write
    /// (`exited with code N…`, the OOM-killer sentence, `stopped by
    /// request`, `superseded by version N`, `interrupted by a controller
    /// restart…`, `health check timed out after N s…`, `promoted from
    /// deployment …`, `rollback to the image of version N`); anything else
    /// becomes [`StatusReason::Other`] with the text unchanged.
    pub fn from_legacy(text: &str) -> Self {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("exited with code ") {
            let digits: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '-')
                .collect();
            if let Ok(code) = digits.parse() {
                return Self::Exited {
                    exit_code: Some(code),
                };
            }
        }
        if t.starts_with("killed by the kernel OOM killer") {
            return Self::OomKilled;
        }
        if t == "stopped by request" || t == "stopped on request" || t == "by request" {
            return Self::StoppedOnRequest;
        }
        if t == "stopped (SIGTERM)" || t == "the backend reports it stopped" {
            return Self::StoppedExternally;
        }
        if let Some(v) = t.strip_prefix("superseded by version ")
            && let Ok(by_version) = v.parse()
        {
            return Self::Superseded { by_version };
        }
        if let Some(rest) = t.strip_prefix("interrupted by a controller restart") {
            let detail = rest.trim_start_matches(':').trim();
            return Self::Interrupted {
                detail: (!detail.is_empty()).then(|| detail.to_string()),
            };
        }
        if let Some(rest) = t.strip_prefix("health check timed out after ") {
            let secs: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(after_secs) = secs.parse() {
                let last_probe = rest
                    .split_once("(last probe: ")
                    .map(|(_, p)| p.split_once(')').map_or(p, |(p, _)| p).to_string());
                return Self::HealthTimeout {
                    after_secs,
                    last_probe,
                };
            }
        }
        if let Some(id) = t.strip_prefix("promoted from deployment ")
            && let Ok(from) = id.parse()
        {
            return Self::Promoted { from };
        }
        if let Some(v) = t.strip_prefix("rollback to the image of version ")
            && let Ok(to_version) = v.parse()
        {
            return Self::RolledBack { to_version };
        }
        if t == "the backend no longer runs it" {
            return Self::Gone;
        }
        Self::other(text)
    }
}

impl fmt::Display for StatusReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited {
                exit_code: Some(code),
            } => write!(f, "exited with code {code}"),
            Self::Exited { exit_code: None } => f.write_str("exited"),
            Self::OomKilled => {
                f.write_str("killed by the kernel OOM killer: memory limit exceeded")
            }
            Self::JvmOutOfMemory => f.write_str(
                "the JVM ran out of memory (java.lang.OutOfMemoryError) and exited: raise the heap or fix the leak",
            ),
            Self::HealthTimeout {
                after_secs,
                last_probe,
            } => {
                write!(f, "health check timed out after {after_secs} s")?;
                if let Some(probe) = last_probe {
                    write!(f, " (last probe: {probe})")?;
                }
                Ok(())
            }
            Self::Unhealthy { detail } => write!(f, "health check failing: {detail}"),
            Self::ImagePullFailed { detail } => write!(f, "the image could not be pulled: {detail}"),
            Self::CrashLoop { restarts, last } => {
                f.write_str("crash loop")?;
                if let Some(n) = restarts {
                    write!(f, " after {n} restarts")?;
                }
                if let Some(last) = last {
                    write!(f, ", last: {last}")?;
                }
                Ok(())
            }
            Self::StartRefused { detail } => write!(f, "the runtime could not start it: {detail}"),
            Self::Gone => f.write_str("the backend no longer runs it"),
            Self::BuildFailed { detail } => write!(f, "build failed: {detail}"),
            Self::StoppedOnRequest => f.write_str("stopped on request"),
            Self::StoppedExternally => f.write_str("stopped outside the platform"),
            Self::Superseded { by_version } => write!(f, "superseded by version {by_version}"),
            Self::Interrupted { detail: None } => f.write_str("interrupted by a controller restart"),
            Self::Interrupted {
                detail: Some(detail),
            } => write!(f, "interrupted by a controller restart: {detail}"),
            Self::BackendUnavailable { detail } => write!(f, "backend unavailable: {detail}"),
            Self::Promoted { from } => write!(f, "promoted from deployment {from}"),
            Self::RolledBack { to_version } => {
                write!(f, "rollback to the image of version {to_version}")
            }
            Self::InstancesNotReady { ready, desired } => write!(
                f,
                "{ready} of {desired} instances ready, {} not",
                desired.saturating_sub(*ready)
            ),
            Self::Other { message } => f.write_str(message),
        }
    }
}

/// A tagged reason, or a plain string from a history stored before reasons
/// were typed.
#[derive(Deserialize)]
#[serde(untagged)]
enum Wire {
    Typed(StatusReason),
    Legacy(String),
}

/// Deserializes an optional reason that may be stored as free text (see
/// [`StatusReason::from_legacy`]); for the history of a [`Deployment`]
/// (`crate::Deployment`), which stores keep for years.
pub(crate) fn tolerant<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<StatusReason>, D::Error> {
    Ok(
        Option::<Wire>::deserialize(deserializer)?.map(|wire| match wire {
            Wire::Typed(reason) => reason,
            Wire::Legacy(text) => StatusReason::from_legacy(&text),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<StatusReason> {
        vec![
            StatusReason::Exited { exit_code: Some(3) },
            StatusReason::Exited { exit_code: None },
            StatusReason::OomKilled,
            StatusReason::JvmOutOfMemory,
            StatusReason::HealthTimeout {
                after_secs: 30,
                last_probe: Some("connection refused".into()),
            },
            StatusReason::Unhealthy {
                detail: "GET /health: 503".into(),
            },
            StatusReason::ImagePullFailed {
                detail: "manifest unknown".into(),
            },
            StatusReason::CrashLoop {
                restarts: Some(5),
                last: Some(Box::new(StatusReason::Exited { exit_code: Some(1) })),
            },
            StatusReason::StartRefused {
                detail: "exec format error".into(),
            },
            StatusReason::InstancesNotReady {
                ready: 2,
                desired: 3,
            },
            StatusReason::Gone,
            StatusReason::BuildFailed {
                detail: "no base image".into(),
            },
            StatusReason::StoppedOnRequest,
            StatusReason::StoppedExternally,
            StatusReason::Superseded { by_version: 4 },
            StatusReason::Interrupted { detail: None },
            StatusReason::BackendUnavailable {
                detail: "engine down".into(),
            },
            StatusReason::Promoted {
                from: DeploymentId::new_random(),
            },
            StatusReason::RolledBack { to_version: 2 },
            StatusReason::other("something else"),
        ]
    }

    #[test]
    fn every_reason_round_trips_tagged_by_its_code() {
        let all = samples();
        assert_eq!(all.len(), StatusReason::CODES.len() + 1);
        for r in &all {
            let json = serde_json::to_value(r).unwrap();
            assert_eq!(json["code"], r.code(), "{json}");
            assert!(StatusReason::CODES.contains(&r.code()));
            let back: StatusReason = serde_json::from_value(json).unwrap();
            assert_eq!(&back, r);
            assert!(!r.to_string().is_empty());
        }
    }

    #[test]
    fn the_sentences_written_before_reasons_were_typed_load_as_their_variants() {
        let id = DeploymentId::new_random();
        for (text, want) in [
            (
                "exited with code 3: the process ended on its own".to_string(),
                StatusReason::Exited { exit_code: Some(3) },
            ),
            (
                "exited with code 137; last output: x | y".to_string(),
                StatusReason::Exited {
                    exit_code: Some(137),
                },
            ),
            (
                "killed by the kernel OOM killer: memory limit exceeded".to_string(),
                StatusReason::OomKilled,
            ),
            (
                "stopped by request".to_string(),
                StatusReason::StoppedOnRequest,
            ),
            (
                "superseded by version 12".to_string(),
                StatusReason::Superseded { by_version: 12 },
            ),
            (
                "interrupted by a controller restart".to_string(),
                StatusReason::Interrupted { detail: None },
            ),
            (
                "interrupted by a controller restart: exited with code 1".to_string(),
                StatusReason::Interrupted {
                    detail: Some("exited with code 1".into()),
                },
            ),
            (
                "health check timed out after 30 s (last probe: connection refused)".to_string(),
                StatusReason::HealthTimeout {
                    after_secs: 30,
                    last_probe: Some("connection refused".into()),
                },
            ),
            (
                format!("promoted from deployment {id}"),
                StatusReason::Promoted { from: id },
            ),
            (
                "rollback to the image of version 2".to_string(),
                StatusReason::RolledBack { to_version: 2 },
            ),
            (
                "the backend no longer runs it".to_string(),
                StatusReason::Gone,
            ),
            (
                "no base image".to_string(),
                StatusReason::other("no base image"),
            ),
        ] {
            // As a stored history entry has it.
            let change: crate::StatusChange = serde_json::from_value(serde_json::json!({
                "status": "FAILED", "at": "2026-01-01T00:00:00Z", "reason": text,
            }))
            .unwrap();
            assert_eq!(change.reason, Some(want), "{text}");
        }
    }

    #[test]
    fn jvm_oom_needs_the_jvms_words_not_only_its_exit_code() {
        assert_eq!(
            StatusReason::from_exit(
                3,
                Some("x | Terminating due to java.lang.OutOfMemoryError: Java heap space")
            ),
            StatusReason::JvmOutOfMemory
        );
        assert_eq!(
            StatusReason::from_exit(3, None),
            StatusReason::Exited { exit_code: Some(3) }
        );
        assert_eq!(
            StatusReason::from_exit(
                1,
                Some("Terminating due to java.lang.OutOfMemoryError: Java heap space")
            ),
            StatusReason::Exited { exit_code: Some(1) }
        );
    }

    #[test]
    fn an_unknown_code_is_an_error_not_a_silent_other() {
        assert!(serde_json::from_str::<StatusReason>(r#"{"code":"nope"}"#).is_err());
    }
}
