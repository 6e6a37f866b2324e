//! The engine's event stream, narrowed to our containers and mapped to
//! [`RuntimeEvent`](cameleer_runtime::RuntimeEvent)s.
//!
//! The engine reports an OOM kill as an `oom` event followed by a `die` with
//! exit code 137. One death should be one event, so `oom` itself is not
//! mapped: the orchestrator inspects the container on `die` and reports
//! [`RuntimeEventKind::Failed`](cameleer_runtime::RuntimeEventKind::Failed)
//! with the kernel's OOM kill or the exit from `State.OOMKilled`. `start` is followed only to know which containers run
//! (a `die` after it is news); `health_status` comes from images that bring
//! their own `HEALTHCHECK`.

use std::collections::HashMap;

use bollard::models::{EventMessage, EventMessageTypeEnum};
use cameleer_runtime::{RuntimeEventKind, StatusReason};
use time::OffsetDateTime;

use crate::labels::{self, ContainerLabels};

/// The container actions the orchestrator follows. The engine matches
/// `health_status` as a prefix (`health_status: healthy`).
pub(crate) const ACTIONS: &[&str] = &["start", "die", "oom", "destroy", "health_status"];

/// The filters of the events request: our containers, the actions above.
pub(crate) fn filters() -> HashMap<String, Vec<String>> {
    HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("label".to_string(), labels::managed_filter()),
        (
            "event".to_string(),
            ACTIONS.iter().map(|a| a.to_string()).collect(),
        ),
    ])
}

/// What happened to a container, as far as we care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// It started (again).
    Start,
    /// Its process ended.
    Die,
    /// The kernel's OOM killer hit it (a `die` follows).
    Oom,
    /// It was removed.
    Destroy,
    /// Its image's `HEALTHCHECK` changed verdict: healthy or not.
    Health(bool),
}

impl Action {
    fn parse(action: &str) -> Option<Action> {
        // `exec_die` and `health_status: …` start like our actions; match whole.
        Some(match action {
            "start" => Action::Start,
            "die" => Action::Die,
            "oom" => Action::Oom,
            "destroy" => Action::Destroy,
            "health_status: healthy" => Action::Health(true),
            "health_status: unhealthy" => Action::Health(false),
            _ => return None,
        })
    }
}

/// What an engine event says about one of our containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerEvent {
    /// The container id.
    pub container: String,
    /// Its name when the event happened.
    pub name: String,
    /// Its labels (the engine copies them into the event's attributes).
    pub labels: ContainerLabels,
    /// What happened.
    pub action: Action,
    /// The exit code of a `die`.
    pub exit_code: Option<i64>,
    /// When the engine saw it.
    pub at: OffsetDateTime,
}

/// Reads an engine event; `None` when it is not about one of our containers.
pub(crate) fn parse(message: &EventMessage) -> Option<ContainerEvent> {
    if message.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let action = Action::parse(message.action.as_deref()?)?;
    let actor = message.actor.as_ref()?;
    let attributes = actor.attributes.as_ref()?;
    let labels = ContainerLabels::parse(attributes)?;
    let at = message
        .time_nano
        .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(i128::from(n)).ok())
        .or_else(|| {
            message
                .time
                .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        })
        .unwrap_or_else(OffsetDateTime::now_utc);
    Some(ContainerEvent {
        container: actor.id.clone()?,
        name: attributes.get("name").cloned().unwrap_or_default(),
        labels,
        action,
        exit_code: attributes.get("exitCode").and_then(|c| c.parse().ok()),
        at,
    })
}

/// The reason of a `die`, given whether the container was OOM killed. An
/// exit with the JVM's out-of-memory code still needs the container's last
/// output to tell (see `DockerRuntimeOrchestrator::refine`).
pub(crate) fn died(exit_code: Option<i64>, oom_killed: bool) -> StatusReason {
    if oom_killed {
        StatusReason::OomKilled
    } else {
        StatusReason::Exited { exit_code }
    }
}

/// The runtime event of a container that ended for `reason`: an exit on
/// SIGTERM (`docker stop`, the host) is a stop, as the container's status
/// says too; anything else is a failure.
pub(crate) fn ended(reason: StatusReason) -> RuntimeEventKind {
    match reason {
        StatusReason::Exited {
            exit_code: Some(crate::status::SIGTERM_EXIT),
        } => RuntimeEventKind::Stopped {
            reason: StatusReason::StoppedExternally,
        },
        reason => RuntimeEventKind::Failed { reason },
    }
}

/// The `since` of an events request: seconds and nanoseconds.
pub(crate) fn since(at: OffsetDateTime) -> String {
    format!("{}.{:09}", at.unix_timestamp(), at.nanosecond())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bollard::models::EventActor;
    use cameleer_runtime::{AppRef, DeploymentId, HealthCheck};

    use super::*;

    fn message(action: &str, labels: &ContainerLabels) -> EventMessage {
        let mut attributes = labels.to_map();
        attributes.insert("exitCode".into(), "3".into());
        attributes.insert("name".into(), "cameleer-acme-dev-orders-v1".into());
        EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(attributes),
            }),
            time: Some(1_700_000_000),
            time_nano: Some(1_700_000_000_123_456_789),
            ..Default::default()
        }
    }

    #[test]
    fn our_events_are_parsed_and_others_ignored() {
        let labels = ContainerLabels {
            app: AppRef::parse("acme", "orders", "dev").unwrap(),
            deployment: DeploymentId::new_random(),
            version: 1,
            instance: 0,
            replicas: 1,
            health: HealthCheck::None,
            start_timeout: Duration::from_secs(10),
            config_sha256: None,
        };
        let e = parse(&message("die", &labels)).unwrap();
        assert_eq!(e.exit_code, Some(3));
        assert_eq!(e.labels, labels);
        assert_eq!(e.container, "abc");
        assert_eq!(e.name, "cameleer-acme-dev-orders-v1");
        assert_eq!(e.action, Action::Die);
        assert_eq!(e.at.nanosecond(), 123_456_789);
        assert!(parse(&message("exec_die", &labels)).is_none());
        assert!(parse(&message("exec_start: sh", &labels)).is_none());
        assert_eq!(
            parse(&message("health_status: unhealthy", &labels))
                .unwrap()
                .action,
            Action::Health(false)
        );
        assert_eq!(
            parse(&message("start", &labels)).unwrap().action,
            Action::Start
        );
        let mut foreign = message("die", &labels);
        foreign
            .actor
            .as_mut()
            .unwrap()
            .attributes
            .as_mut()
            .unwrap()
            .remove(labels::MANAGED);
        assert!(parse(&foreign).is_none());
    }

    #[test]
    fn since_keeps_the_nanoseconds() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_000_000_042).unwrap();
        assert_eq!(since(at), "1700000000.000000042");
    }

    #[test]
    fn a_sigterm_exit_is_a_stop_and_any_other_end_a_failure() {
        assert_eq!(
            ended(died(Some(143), false)),
            RuntimeEventKind::Stopped {
                reason: StatusReason::StoppedExternally
            }
        );
        for reason in [died(Some(137), false), died(Some(143), true)] {
            assert_eq!(ended(reason.clone()), RuntimeEventKind::Failed { reason });
        }
    }

    #[test]
    fn a_die_after_an_oom_kill_is_one_oom_event() {
        assert_eq!(died(Some(137), true), StatusReason::OomKilled);
        assert_eq!(
            died(Some(3), false),
            StatusReason::Exited { exit_code: Some(3) }
        );
    }
}
