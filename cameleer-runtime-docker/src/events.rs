//! The engine's event stream, narrowed to our containers and mapped to
//! [`RuntimeEvent`]s.
//!
//! The engine reports an OOM kill as an `oom` event followed by a `die` with
//! exit code 137. One death should be one event, so `oom` itself is not
//! mapped: the orchestrator inspects the container on `die` and reports
//! [`RuntimeEventKind::OomKilled`] or [`RuntimeEventKind::Exited`] from
//! `State.OOMKilled`.

use std::collections::HashMap;

use bollard::models::{EventMessage, EventMessageTypeEnum};
use cameleer_runtime::RuntimeEventKind;
use time::OffsetDateTime;

use crate::labels::{self, ContainerLabels};

/// The container actions the orchestrator follows.
pub(crate) const ACTIONS: &[&str] = &["die", "oom", "destroy"];

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

/// What an engine event says about one of our containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerEvent {
    /// The container id.
    pub container: String,
    /// Its labels (the engine copies them into the event's attributes).
    pub labels: ContainerLabels,
    /// What happened: `die`, `oom` or `destroy`.
    pub action: String,
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
    let action = message.action.as_deref()?;
    // `exec_die` and `health_status: …` start like our actions; match whole.
    if !ACTIONS.contains(&action) {
        return None;
    }
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
        labels,
        action: action.to_string(),
        exit_code: attributes.get("exitCode").and_then(|c| c.parse().ok()),
        at,
    })
}

/// The runtime event of a `die`, given whether the container was OOM killed.
pub(crate) fn died(exit_code: Option<i64>, oom_killed: bool) -> RuntimeEventKind {
    if oom_killed {
        RuntimeEventKind::OomKilled
    } else {
        RuntimeEventKind::Exited { exit_code }
    }
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
            health: HealthCheck::None,
            start_timeout: Duration::from_secs(10),
        };
        let e = parse(&message("die", &labels)).unwrap();
        assert_eq!(e.exit_code, Some(3));
        assert_eq!(e.labels, labels);
        assert_eq!(e.container, "abc");
        assert_eq!(e.at.nanosecond(), 123_456_789);
        assert!(parse(&message("exec_die", &labels)).is_none());
        assert!(parse(&message("health_status: healthy", &labels)).is_none());
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
    fn a_die_after_an_oom_kill_is_one_oom_event() {
        assert_eq!(died(Some(137), true), RuntimeEventKind::OomKilled);
        assert_eq!(
            died(Some(3), false),
            RuntimeEventKind::Exited { exit_code: Some(3) }
        );
    }
}
