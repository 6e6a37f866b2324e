//! Random event sequences against the deployment state machine.
//!
//! The allowed moves are written out again here, independently of
//! `transition`, as a list of (from, event kind, to) triples taken from the
//! diagram in DESIGN.md: the test fails if the two disagree.

use cameleer_runtime::{
    AppConfig, AppRef, Deployment, DeploymentEvent, DeploymentSource, DeploymentStatus, ImageRef,
    Sha256Digest, StatusReason,
};
use proptest::prelude::*;
use time::{Duration, OffsetDateTime};

use DeploymentStatus::{Building, Failed, Running, Starting, Stopped};

/// (from, event kind, to), as the design describes them.
const ALLOWED: &[(DeploymentStatus, &str, DeploymentStatus)] = &[
    (Building, "build_succeeded", Starting),
    (Building, "build_failed", Failed),
    (Starting, "healthy", Running),
    (Starting, "start_failed", Failed),
    (Starting, "crashed", Failed),
    (Starting, "oom_killed", Failed),
    (Running, "crashed", Failed),
    (Running, "oom_killed", Failed),
    (Building, "stopped", Stopped),
    (Starting, "stopped", Stopped),
    (Running, "stopped", Stopped),
    (Failed, "stopped", Stopped),
    (Running, "superseded", Stopped),
    (Failed, "superseded", Stopped),
    (Running, "restarted", Starting),
    (Failed, "restarted", Starting),
    (Stopped, "restarted", Starting),
];

fn kind(e: &DeploymentEvent) -> &'static str {
    match e {
        DeploymentEvent::BuildSucceeded => "build_succeeded",
        DeploymentEvent::BuildFailed { .. } => "build_failed",
        DeploymentEvent::Healthy => "healthy",
        DeploymentEvent::StartFailed { .. } => "start_failed",
        DeploymentEvent::Crashed { .. } => "crashed",
        DeploymentEvent::Stopped { .. } => "stopped",
        DeploymentEvent::Superseded { .. } => "superseded",
        DeploymentEvent::Restarted => "restarted",
    }
}

fn expected(from: DeploymentStatus, event: &DeploymentEvent) -> Option<DeploymentStatus> {
    let k = kind(event);
    ALLOWED
        .iter()
        .find(|(f, e, _)| *f == from && *e == k)
        .map(|(_, _, to)| *to)
}

fn event() -> impl Strategy<Value = DeploymentEvent> {
    let text = "[a-z ]{0,12}";
    prop_oneof![
        Just(DeploymentEvent::BuildSucceeded),
        text.prop_map(|detail| DeploymentEvent::BuildFailed {
            reason: StatusReason::BuildFailed { detail }
        }),
        Just(DeploymentEvent::Healthy),
        (text, proptest::option::of(text)).prop_map(|(detail, output)| {
            DeploymentEvent::StartFailed {
                reason: StatusReason::StartRefused { detail },
                output,
            }
        }),
        proptest::option::of(-255i64..256).prop_map(|exit_code| DeploymentEvent::Crashed {
            reason: StatusReason::Exited { exit_code }
        }),
        Just(DeploymentEvent::Crashed {
            reason: StatusReason::OomKilled
        }),
        Just(DeploymentEvent::Stopped {
            reason: StatusReason::StoppedOnRequest
        }),
        (1u64..100).prop_map(|by_version| DeploymentEvent::Superseded { by_version }),
        Just(DeploymentEvent::Restarted),
    ]
}

fn deployment(with_image: bool) -> Deployment {
    let image: ImageRef = "registry.local/acme/orders:v1".parse().unwrap();
    Deployment::new(
        AppRef::parse("acme", "orders", "dev").unwrap(),
        7,
        Sha256Digest::of(b"jar"),
        with_image.then(|| image.with_digest(Sha256Digest::of(b"image"))),
        DeploymentSource::Build,
        AppConfig::default(),
        OffsetDateTime::UNIX_EPOCH + Duration::days(20_000),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_event_sequences_keep_the_invariants(
        with_image in any::<bool>(),
        // Each step: an event and a time offset in seconds, negative ones
        // standing for a clock that stepped back.
        steps in proptest::collection::vec((event(), -100i64..1000), 0..40),
    ) {
        let mut d = deployment(with_image);
        let start = d.clone();
        let mut at = d.created_at;
        for (event, offset) in steps {
            at += Duration::seconds(offset);
            let before = d.clone();
            match d.apply(&event, at) {
                Ok(()) => {
                    let to = expected(before.status, &event);
                    prop_assert_eq!(to, Some(d.status), "{} accepted from {}", kind(&event), before.status);
                    prop_assert_eq!(d.history.len(), before.history.len() + 1);
                    prop_assert_eq!(d.last_reason().cloned(), event.reason());
                    prop_assert_eq!(d.history.last().and_then(|c| c.output.as_deref()), event.output());
                }
                Err(e) => {
                    prop_assert_eq!(e.code(), "illegal_transition");
                    prop_assert_eq!(expected(before.status, &event), None, "{} rejected from {}", kind(&event), before.status);
                    prop_assert_eq!(&d, &before);
                }
            }
            prop_assert!(d.history.windows(2).all(|w| w[0].at <= w[1].at), "history goes back in time");
            prop_assert_eq!(d.history.last().map(|c| c.status), Some(d.status));
            prop_assert_eq!(d.id, start.id);
            prop_assert_eq!(d.version, start.version);
            prop_assert_eq!(&d.app, &start.app);
            prop_assert_eq!(d.artifact, start.artifact);
            prop_assert_eq!(&d.image, &start.image);
            prop_assert_eq!(d.created_at, start.created_at);
        }
    }
}

#[test]
fn the_table_and_the_list_agree_on_every_pair() {
    let statuses = [Building, Starting, Running, Failed, Stopped];
    let events = [
        DeploymentEvent::BuildSucceeded,
        DeploymentEvent::BuildFailed {
            reason: StatusReason::other("r"),
        },
        DeploymentEvent::Healthy,
        DeploymentEvent::StartFailed {
            reason: StatusReason::other("r"),
            output: None,
        },
        DeploymentEvent::Crashed {
            reason: StatusReason::Exited { exit_code: Some(1) },
        },
        DeploymentEvent::Crashed {
            reason: StatusReason::OomKilled,
        },
        DeploymentEvent::Stopped {
            reason: StatusReason::StoppedOnRequest,
        },
        DeploymentEvent::Superseded { by_version: 2 },
        DeploymentEvent::Restarted,
    ];
    for from in statuses {
        for event in &events {
            let got = cameleer_runtime::transition(from, event).ok();
            assert_eq!(got, expected(from, event), "{from} + {}", kind(event));
        }
    }
}

#[test]
fn a_deployment_with_an_image_starts_in_starting() {
    assert_eq!(deployment(false).status, Building);
    assert_eq!(deployment(true).status, Starting);
}
