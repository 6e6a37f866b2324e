//! Following the engine's events, and catching up after the stream drops.
//!
//! [`RuntimeOrchestrator::events`](cameleer_runtime::RuntimeOrchestrator::events)
//! hands out a stream fed by a background task, the follower, which lives
//! as long as the stream does. The follower:
//!
//! - lists our containers, then subscribes to the engine's events of our
//!   containers *since just before the list*, so nothing between the two is
//!   missed (the engine replays what it saw since then);
//! - keeps the last state it knows of each container (created, running,
//!   ended), from the list and then from `start`, `die` and `destroy`;
//! - reports a `die` as [`RuntimeEventKind::Failed`] with the exit (the
//!   JVM's own out-of-memory exit told by its last output) or the kernel's
//!   OOM kill, unless the orchestrator caused it (a
//!   stop, a removal, a restart, a container it is starting itself and
//!   reports on) — see [`Memory`](super::memory::Memory) and
//!   [`stopped`];
//! - when the stream ends or fails (the engine restarted, the connection
//!   broke), subscribes again with a pause that doubles from
//!   [`event_reconnect_min`] up to [`event_reconnect_max`], and *catches
//!   up* from a full list: a container it knew running that has ended
//!   meanwhile (or one it did not know that ended after the drop) is
//!   reported as if its `die` had arrived; one that is gone is
//!   [`RuntimeEventKind::Removed`]. A death seen both in the list and in
//!   the replayed events is reported once, because the state it leaves is
//!   already "ended".
//!
//! [`event_reconnect_min`]: super::DockerOrchestratorOptions::event_reconnect_min
//! [`event_reconnect_max`]: super::DockerOrchestratorOptions::event_reconnect_max

use std::collections::HashMap;

use bollard::models::{ContainerSummaryStateEnum, EventMessage};
use bollard::query_parameters::EventsOptionsBuilder;
use cameleer_runtime::{EventStream, Result, RuntimeEvent, RuntimeEventKind};
use futures::StreamExt;
use futures::stream::BoxStream;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::{DockerRuntimeOrchestrator, Listed, started_at, stopped};
use crate::events::{self, Action, ContainerEvent};
use crate::labels::{self, ContainerLabels};

/// How many events may wait for a slow reader before the follower waits.
const BUFFER: usize = 256;

/// The reason of an [`RuntimeEventKind::Unhealthy`] from the image's own
/// `HEALTHCHECK`.
const UNHEALTHY: &str = "the image's HEALTHCHECK reports it unhealthy";

type EngineEvents = BoxStream<'static, std::result::Result<EventMessage, bollard::errors::Error>>;

/// What the follower last knew of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Created,
    Running,
    Ended,
}

impl Seen {
    fn of(state: Option<ContainerSummaryStateEnum>) -> Seen {
        use ContainerSummaryStateEnum as S;
        match state {
            Some(S::CREATED) => Seen::Created,
            Some(S::RUNNING | S::RESTARTING | S::PAUSED) => Seen::Running,
            _ => Seen::Ended,
        }
    }
}

#[derive(Debug, Clone)]
struct Known {
    labels: ContainerLabels,
    name: String,
    seen: Seen,
}

struct Follower {
    orchestrator: DockerRuntimeOrchestrator,
    known: HashMap<String, Known>,
    tx: mpsc::Sender<RuntimeEvent>,
}

impl DockerRuntimeOrchestrator {
    /// Crashes, OOM kills and removals of our containers; see the
    /// [module docs](self). Never ends while the orchestrator's engine can
    /// come back; the follower stops when the stream is dropped.
    pub(super) fn event_stream(&self) -> EventStream {
        let (tx, rx) = mpsc::channel(BUFFER);
        let follower = Follower {
            orchestrator: self.clone(),
            known: HashMap::new(),
            tx,
        };
        let span = tracing::info_span!("engine_events", engine = %self.engine);
        tokio::spawn(follower.run().instrument(span));
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
            .boxed()
    }
}

impl Follower {
    async fn run(mut self) {
        let tx = self.tx.clone();
        tokio::select! {
            () = tx.closed() => tracing::debug!("the event stream was dropped"),
            () = self.follow() => {}
        }
    }

    async fn follow(&mut self) {
        let min = self.orchestrator.options.event_reconnect_min;
        let max = self.orchestrator.options.event_reconnect_max.max(min);
        let mut pause = min;
        // When the previous stream dropped; `None` before the first one.
        let mut dropped_at: Option<OffsetDateTime> = None;
        loop {
            match self.subscribe(dropped_at).await {
                Ok(stream) => {
                    if dropped_at.is_some() {
                        tracing::info!("following the engine's events again");
                    }
                    let began = Instant::now();
                    let why = self.consume(stream).await;
                    tracing::warn!("the engine's event stream dropped ({why}); subscribing again");
                    dropped_at = Some(OffsetDateTime::now_utc());
                    if began.elapsed() >= max {
                        pause = min;
                    }
                }
                Err(e) => tracing::warn!("cannot follow the engine's events: {e}"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(max);
        }
    }

    /// Lists, then subscribes from just before the list; after a drop,
    /// reports what changed while no one was listening.
    async fn subscribe(&mut self, dropped_at: Option<OffsetDateTime>) -> Result<EngineEvents> {
        let since = OffsetDateTime::now_utc();
        let listed = self.orchestrator.list(labels::managed_filter()).await?;
        let options = EventsOptionsBuilder::new()
            .filters(&events::filters())
            .since(&events::since(since))
            .build();
        let stream = self.orchestrator.docker.events(Some(options)).boxed();
        match dropped_at {
            None => {
                self.known = listed
                    .into_iter()
                    .map(|c| (c.id.clone(), known(&c)))
                    .collect();
            }
            Some(at) => self.catch_up(listed, at).await?,
        }
        Ok(stream)
    }

    /// Reads the stream until it ends or fails; says why.
    async fn consume(&mut self, mut stream: EngineEvents) -> String {
        while let Some(item) = stream.next().await {
            match item {
                Ok(message) => {
                    if let Some(event) = events::parse(&message) {
                        self.on_event(event).await;
                    }
                }
                Err(e) => return e.to_string(),
            }
        }
        "the engine ended it".into()
    }

    async fn on_event(&mut self, e: ContainerEvent) {
        match e.action {
            Action::Start => {
                self.set(&e, Seen::Running);
            }
            Action::Die => {
                // Already ended: caught up from a list, or replayed twice.
                if self.set(&e, Seen::Ended) == Some(Seen::Ended) {
                    return;
                }
                if self.expected(&e.container, &e.name, e.at) {
                    return;
                }
                let oom = match self.orchestrator.inspect(&e.container).await {
                    Ok(Some(c)) => c.state.and_then(|s| s.oom_killed).unwrap_or(false),
                    _ => false,
                };
                let reason = self
                    .orchestrator
                    .refine(&e.container, events::died(e.exit_code, oom))
                    .await;
                let kind = self.death(&e.container, &e.labels, reason).await;
                self.send(&e.labels, kind, e.at).await;
            }
            Action::Destroy => {
                self.known.remove(&e.container);
                if !self.expected(&e.container, &e.name, e.at) {
                    self.send(&e.labels, RuntimeEventKind::Removed, e.at).await;
                }
            }
            Action::Health(healthy) => {
                let kind = if healthy {
                    RuntimeEventKind::Healthy
                } else {
                    RuntimeEventKind::Unhealthy {
                        reason: UNHEALTHY.into(),
                    }
                };
                self.send(&e.labels, kind, e.at).await;
            }
            // The `die` that follows says it.
            Action::Oom => {}
        }
    }

    /// Records what an event says of its container; what was known before.
    fn set(&mut self, e: &ContainerEvent, seen: Seen) -> Option<Seen> {
        let before = self.known.insert(
            e.container.clone(),
            Known {
                labels: e.labels.clone(),
                name: e.name.clone(),
                seen,
            },
        );
        before.map(|k| k.seen)
    }

    /// After a drop: the deaths and removals the stream did not deliver.
    async fn catch_up(&mut self, listed: Vec<Listed>, dropped_at: OffsetDateTime) -> Result<()> {
        let mut before = std::mem::take(&mut self.known);
        for c in &listed {
            self.known.insert(c.id.clone(), known(c));
            let was = before.remove(&c.id).map(|k| k.seen);
            match (was, Seen::of(c.state)) {
                (Some(Seen::Created | Seen::Running), Seen::Ended) => {
                    self.report_death(c, None).await?
                }
                // Created and ended while no one listened.
                (None, Seen::Ended) => self.report_death(c, Some(dropped_at)).await?,
                _ => {}
            }
        }
        let now = OffsetDateTime::now_utc();
        for (id, gone) in before {
            if !self.expected(&id, &gone.name, now) {
                self.send(&gone.labels, RuntimeEventKind::Removed, now)
                    .await;
            }
        }
        Ok(())
    }

    /// Reports the death of a listed container, read from inspect; only
    /// when it ended after `after`, if given.
    async fn report_death(&mut self, c: &Listed, after: Option<OffsetDateTime>) -> Result<()> {
        let Some(inspect) = self.orchestrator.inspect(&c.id).await? else {
            return Ok(());
        };
        let state = inspect.state.unwrap_or_default();
        let at = state
            .finished_at
            .as_deref()
            .and_then(started_at)
            .unwrap_or_else(OffsetDateTime::now_utc);
        let name = inspect.name.unwrap_or_else(|| c.name.clone());
        if after.is_some_and(|after| at < after) || self.expected(&c.id, &name, at) {
            return Ok(());
        }
        tracing::info!(container = %c.name, "it ended while the event stream was down");
        let reason = self
            .orchestrator
            .refine(
                &c.id,
                events::died(state.exit_code, state.oom_killed.unwrap_or(false)),
            )
            .await;
        let kind = self.death(&c.id, &c.labels, reason).await;
        self.send(&c.labels, kind, at).await;
        Ok(())
    }

    /// What the death of container `id` for `reason` means for its
    /// deployment. With one instance, the app ended. With several, an
    /// instance the engine restarts (its restart policy, see
    /// [`crate::container`]) or one whose siblings still run is
    /// [`RuntimeEventKind::Unhealthy`]: the app serves on, fewer. Only when
    /// it stays down and none of its siblings runs has the deployment
    /// failed, in a crash loop when the engine restarted it before.
    async fn death(
        &self,
        id: &str,
        labels: &ContainerLabels,
        reason: cameleer_runtime::StatusReason,
    ) -> RuntimeEventKind {
        if labels.replicas <= 1 {
            return events::ended(reason);
        }
        let o = &self.orchestrator;
        // By the time the event is read the engine may have restarted it
        // already: restarting or running again both mean it came back.
        let state = match o.inspect(id).await {
            Ok(Some(inspect)) => {
                let s = inspect.state.unwrap_or_default();
                let n = inspect
                    .restart_count
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0);
                let back = if s.restarting == Some(true) {
                    Some(n + 1)
                } else if s.running == Some(true) {
                    Some(n)
                } else {
                    None
                };
                Some((back, n))
            }
            _ => None,
        };
        let instance = labels.instance;
        if let Some((Some(restart), _)) = state {
            return RuntimeEventKind::Unhealthy {
                reason: format!(
                    "instance {instance} {reason}; the engine restarts it (restart {restart} of at most {})",
                    o.options.instance_restarts
                ),
            };
        }
        let restarts = state.map_or(0, |(_, n)| n);
        let siblings_run = o
            .list(labels::app_filter(&labels.app))
            .await
            .map(|all| {
                all.iter().any(|c| {
                    c.id != id
                        && c.labels.deployment == labels.deployment
                        && c.state == Some(ContainerSummaryStateEnum::RUNNING)
                })
            })
            .unwrap_or(false);
        if siblings_run {
            return RuntimeEventKind::Unhealthy {
                reason: format!(
                    "instance {instance} {reason} and stays down after {restarts} restarts; the \
                     others serve"
                ),
            };
        }
        match events::ended(reason) {
            RuntimeEventKind::Failed { reason } if restarts > 0 => RuntimeEventKind::Failed {
                reason: cameleer_runtime::StatusReason::CrashLoop {
                    restarts: Some(restarts),
                    last: Some(Box::new(reason)),
                },
            },
            kind => kind,
        }
    }

    /// Whether the orchestrator caused the end of this container (at `at`),
    /// or a call of its own reports it.
    fn expected(&self, id: &str, name: &str, at: OffsetDateTime) -> bool {
        let memory = &self.orchestrator.memory;
        memory.exit_expected_at(id, at) || memory.is_starting(id) || stopped::is_marked(name)
    }

    async fn send(&self, labels: &ContainerLabels, kind: RuntimeEventKind, at: OffsetDateTime) {
        tracing::info!(app = %labels.app, deployment = %labels.deployment, ?kind, "runtime event");
        let event = RuntimeEvent {
            app: labels.app.clone(),
            deployment: labels.deployment,
            kind,
            at,
        };
        // A closed channel ends the follower (see `run`).
        let _ = self.tx.send(event).await;
    }
}

fn known(c: &Listed) -> Known {
    Known {
        labels: c.labels.clone(),
        name: c.name.clone(),
        seen: Seen::of(c.state),
    }
}
