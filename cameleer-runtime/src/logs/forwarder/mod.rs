//! The [`LogForwarder`]: copies every deployment's output into a
//! [`LogStore`] while it runs, and its last lines once it stopped.
//!
//! ```text
//! PlatformEvents ──> supervisor ──(one per deployment)──> follower
//!   (+ the store's active         deployment_logs(since = the store's end)
//!    deployments at start,          └─ numbered lines ──> bounded channel
//!    again after a Lagged)                                     │
//!                                   writer: buffer (bounded) ──┘
//!                                     └─ batches of batch_lines or
//!                                        flush_interval ──> LogStore::append
//! ```
//!
//! - **No line lost, none stored twice, across restarts**: a follower
//!   starts where the store ends ([`LogStore::resume_point`]) and numbers
//!   lines from there; the store ignores a `(deployment, seq)` it has. What
//!   a killed forwarder held in memory is read again from the backend.
//! - **A slow or dead store never slows the app or the API**: the backend
//!   keeps writing; followers only wait on a bounded channel that the writer
//!   empties into its own bounded buffer whatever the store does. When the
//!   store is down longer than the buffer holds, new lines are dropped and
//!   counted ([`ForwarderStats::lines_lost`], per deployment in
//!   [`ForwarderStats::lost`]) and logged as a warning: never silently.

mod follower;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use self::follower::Target;
use super::{LogStore, StoredLine};
use crate::{
    DeploymentId, DeploymentStatus, DeploymentStore, Platform, PlatformEvent, RuntimeOrchestrator,
};

/// How a [`LogForwarder`] batches and how much it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwarderOptions {
    /// The most lines per append. Default 100,000: a store writes a batch
    /// at once (ClickHouse makes one part of it, SQLite one transaction),
    /// so a backlog drains in few appends; at a steady rate below it,
    /// `flush_interval` sets the batches.
    pub batch_lines: usize,
    /// The longest a line waits for its batch to fill. Default 1 s.
    pub flush_interval: Duration,
    /// The most lines held in memory while the store is slow or down; past
    /// it, new lines are dropped and counted. Default 200,000.
    pub buffer_lines: usize,
    /// The most bytes of line text held, likewise. Default 64 MiB.
    pub buffer_bytes: usize,
    /// An append that takes longer counts as failed and is sent again.
    /// Default 30 s.
    pub append_timeout: Duration,
    /// First and longest pause between attempts on a failing store.
    /// Defaults 100 ms and 10 s.
    pub retry_min: Duration,
    /// See [`retry_min`](Self::retry_min).
    pub retry_max: Duration,
    /// Pause before reading a deployment's output again after its stream
    /// ended or failed. Default 1 s. A read that found no container or no
    /// line (a deployment is followed from `Starting` on, before its
    /// container runs) is tried again sooner: after 20 ms, doubling up to
    /// this.
    pub reopen_delay: Duration,
    /// On [`LogForwarder::shutdown`], how long to keep trying to store what
    /// is held. Default 10 s.
    pub shutdown_flush: Duration,
}

impl Default for ForwarderOptions {
    fn default() -> Self {
        Self {
            batch_lines: 100_000,
            flush_interval: Duration::from_secs(1),
            buffer_lines: 200_000,
            buffer_bytes: 64 << 20,
            append_timeout: Duration::from_secs(30),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            reopen_delay: Duration::from_secs(1),
            shutdown_flush: Duration::from_secs(10),
        }
    }
}

/// What a [`LogForwarder`] did so far (since it started).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForwarderStats {
    /// The store's [`name`](LogStore::name).
    pub store: String,
    /// Deployments whose output is being read now.
    pub following: usize,
    /// Lines read from the backend (including those a re-read skipped as
    /// already stored).
    pub lines_read: u64,
    /// Lines the store took.
    pub lines_stored: u64,
    /// Appends the store took.
    pub batches_stored: u64,
    /// Lines dropped because the buffer was full (the store was slow or
    /// down for longer than it holds), or still held when a shutdown gave
    /// up: lost for good.
    pub lines_lost: u64,
    /// Lost lines per deployment.
    pub lost: BTreeMap<DeploymentId, u64>,
    /// Lines held in memory now.
    pub buffered_lines: usize,
    /// Bytes of line text held now.
    pub buffered_bytes: usize,
    /// Failed appends and resume-point reads.
    pub store_failures: u64,
    /// The last of them.
    pub last_store_error: Option<String>,
    /// Failed reads of a deployment's output (other than "not there yet").
    pub source_failures: u64,
    /// The last of them.
    pub last_source_error: Option<String>,
    /// Platform events this forwarder missed (it re-read the active
    /// deployments each time).
    pub events_missed: u64,
}

/// State shared by the forwarder's tasks.
pub(super) struct Shared {
    stats: Mutex<ForwarderStats>,
    lines_read: AtomicU64,
    shutting_down: AtomicBool,
    given_up: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ForwarderStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn read(&self, n: u64) {
        self.lines_read.fetch_add(n, Ordering::Relaxed);
    }
    fn stored(&self, n: usize) {
        let mut s = self.lock();
        s.lines_stored += n as u64;
        s.batches_stored += 1;
    }
    fn store_failed(&self, message: String) {
        tracing::warn!("log store: {message}");
        let mut s = self.lock();
        s.store_failures += 1;
        s.last_store_error = Some(message);
    }
    fn source_failed(&self, message: String) {
        tracing::debug!("log source: {message}");
        let mut s = self.lock();
        s.source_failures += 1;
        s.last_source_error = Some(message);
    }
    fn dropped(&self, line: &StoredLine) {
        let mut s = self.lock();
        if s.lines_lost.is_power_of_two() || s.lines_lost == 0 {
            tracing::warn!(
                lost = s.lines_lost + 1,
                deployment = %line.deployment,
                "log forwarder buffer full: dropping lines the store cannot take"
            );
        }
        s.lines_lost += 1;
        *s.lost.entry(line.deployment).or_default() += 1;
    }
    fn lost_at_shutdown(&self, n: usize) {
        self.lock().lines_lost += n as u64;
    }
    fn buffered(&self, lines: usize, bytes: usize) {
        let mut s = self.lock();
        s.buffered_lines = lines;
        s.buffered_bytes = bytes;
    }
    fn give_up(&self) {
        self.given_up.store(true, Ordering::SeqCst);
    }
    fn given_up(&self) -> bool {
        self.given_up.load(Ordering::SeqCst)
    }
    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// Where a forwarder learns what to follow, and reads it from.
#[derive(Clone)]
pub struct ForwarderSources {
    /// The backend whose [`deployment_logs`](RuntimeOrchestrator::deployment_logs)
    /// are read.
    pub orchestrator: Arc<dyn RuntimeOrchestrator>,
    /// The deployments: which are active at start and after a missed event.
    pub deployments: Arc<dyn DeploymentStore>,
}

impl std::fmt::Debug for ForwarderSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwarderSources").finish_non_exhaustive()
    }
}

/// Follows every active deployment's output into a [`LogStore`]; see the
/// [module docs](self). Clones share one forwarder.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use cameleer_runtime::Platform;
/// use cameleer_runtime::logs::{ForwarderOptions, LogForwarder, MemoryLogStore};
///
/// # async fn demo(platform: Platform) {
/// let store = Arc::new(MemoryLogStore::new());
/// let forwarder = LogForwarder::start(&platform, store, ForwarderOptions::default());
/// // … serve; the stats say what was stored and what, if anything, was lost.
/// println!("{:?}", forwarder.stats());
/// forwarder.shutdown().await;
/// # }
/// ```
#[derive(Clone)]
pub struct LogForwarder {
    shared: Arc<Shared>,
    control: Arc<Control>,
}

struct Control {
    shutdown: watch::Sender<bool>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for LogForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogForwarder")
            .field("stats", &self.stats())
            .finish()
    }
}

impl LogForwarder {
    /// Starts forwarding the output of `platform`'s deployments into
    /// `store`. Needs a tokio runtime.
    pub fn start(platform: &Platform, store: Arc<dyn LogStore>, options: ForwarderOptions) -> Self {
        let sources = platform.log_sources();
        Self::start_with(platform.subscribe(), sources, store, options)
    }

    /// Starts a forwarder on `events` (a [`Platform::subscribe`] stream or
    /// any other, with [`PlatformEvent::Lagged`] where events were missed)
    /// and `sources`.
    pub fn start_with(
        events: impl Stream<Item = PlatformEvent> + Send + 'static,
        sources: ForwarderSources,
        store: Arc<dyn LogStore>,
        options: ForwarderOptions,
    ) -> Self {
        let shared = Arc::new(Shared {
            stats: Mutex::new(ForwarderStats {
                store: store.name().to_owned(),
                ..ForwarderStats::default()
            }),
            lines_read: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
            given_up: AtomicBool::new(false),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        // Small: the writer empties it into its own buffer at once, so it
        // only smooths bursts; the buffer is where lines wait.
        let (sink, lines) = mpsc::channel(options.batch_lines.clamp(64, 4096));
        let writer = tokio::spawn(writer::run(
            store.clone(),
            options.clone(),
            shared.clone(),
            lines,
            shutdown_rx.clone(),
        ));
        let supervisor = Supervisor {
            sources,
            store,
            options,
            shared: shared.clone(),
            sink,
            followers: HashMap::new(),
            tasks: JoinSet::new(),
        };
        let supervisor = tokio::spawn(supervisor.run(Box::pin(events), shutdown_rx));
        Self {
            shared,
            control: Arc::new(Control {
                shutdown,
                supervisor: Mutex::new(Some(supervisor)),
                writer: Mutex::new(Some(writer)),
            }),
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> ForwarderStats {
        let mut s = self.shared.lock().clone();
        s.lines_read = self.shared.lines_read.load(Ordering::Relaxed);
        s
    }

    /// Stops following and stores what it holds (trying for
    /// [`ForwarderOptions::shutdown_flush`]); what the store would not take
    /// by then is counted as lost. Lines not yet read stay with the backend
    /// for the next forwarder.
    pub async fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        let _ = self.control.shutdown.send(true);
        let supervisor = take(&self.control.supervisor);
        if let Some(s) = supervisor {
            let _ = s.await;
        }
        let writer = take(&self.control.writer);
        if let Some(w) = writer {
            let _ = w.await;
        }
    }

    /// Ends every task at once, storing nothing more: what a crash of the
    /// controller does (tests use it to show nothing is lost or stored twice
    /// by the next forwarder).
    pub fn kill(&self) {
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        for handle in [&self.control.supervisor, &self.control.writer] {
            if let Some(h) = take(handle) {
                h.abort();
            }
        }
    }
}

fn take(slot: &Mutex<Option<JoinHandle<()>>>) -> Option<JoinHandle<()>> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Starts and stops followers as deployments come and go.
struct Supervisor {
    sources: ForwarderSources,
    store: Arc<dyn LogStore>,
    options: ForwarderOptions,
    shared: Arc<Shared>,
    sink: mpsc::Sender<StoredLine>,
    /// The stop signal of each follower that runs.
    followers: HashMap<DeploymentId, watch::Sender<bool>>,
    tasks: JoinSet<DeploymentId>,
}

impl Supervisor {
    async fn run(
        mut self,
        mut events: std::pin::Pin<Box<dyn Stream<Item = PlatformEvent> + Send>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.catch_up(true).await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok(id) = done {
                        self.followers.remove(&id);
                    }
                    self.shared.lock().following = self.followers.len();
                }
                event = events.next() => match event {
                    Some(PlatformEvent::Status(s)) => {
                        let target = Target { app: s.app, deployment: s.deployment, version: s.version };
                        match s.status {
                            DeploymentStatus::Starting | DeploymentStatus::Running => self.follow(target, true),
                            DeploymentStatus::Stopped | DeploymentStatus::Failed => self.stop(target),
                            DeploymentStatus::Building => {}
                        }
                    }
                    Some(PlatformEvent::Lagged { missed }) => {
                        self.shared.lock().events_missed += missed;
                        self.catch_up(false).await;
                    }
                    Some(_) => {}
                    None => break,
                },
            }
        }
        // Followers may wait on a backend stream forever: end them; the
        // writer stores what they handed over.
        self.tasks.shutdown().await;
        self.shared.lock().following = 0;
    }

    /// Follows every active deployment the store knows; at start, also
    /// reads the last lines of each app's newest stopped one (it may have
    /// stopped while no forwarder ran). Followers of deployments no longer
    /// active are told to stop.
    async fn catch_up(&mut self, at_start: bool) {
        let deployments = &self.sources.deployments;
        let mut backoff = self.options.retry_min;
        let (active, latest) = loop {
            let both = async {
                Ok::<_, crate::Error>((
                    deployments.active().await?,
                    deployments.latest_of_every_app().await?,
                ))
            };
            match both.await {
                Ok(both) => break both,
                Err(e) => {
                    tracing::warn!("log forwarder: reading the deployments failed: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.options.retry_max);
                }
            }
        };
        let target = |d: &crate::Deployment| Target {
            app: d.app.clone(),
            deployment: d.id,
            version: d.version,
        };
        let running: Vec<Target> = active
            .iter()
            .filter(|d| d.status != DeploymentStatus::Building)
            .map(target)
            .collect();
        let gone: Vec<DeploymentId> = self
            .followers
            .keys()
            .filter(|id| !active.iter().any(|d| d.id == **id))
            .copied()
            .collect();
        for id in gone {
            if let Some(stop) = self.followers.get(&id) {
                let _ = stop.send(true);
            }
        }
        for t in running {
            self.follow(t, true);
        }
        if at_start {
            for d in latest.iter().filter(|d| {
                matches!(
                    d.status,
                    DeploymentStatus::Stopped | DeploymentStatus::Failed
                ) && d.image.is_some()
            }) {
                self.follow(target(d), false);
            }
        }
    }

    fn follow(&mut self, target: Target, follow: bool) {
        if self.followers.contains_key(&target.deployment) {
            return;
        }
        let (stop, stop_rx) = watch::channel(false);
        self.followers.insert(target.deployment, stop);
        let id = target.deployment;
        let task = follower::run(
            target,
            follow,
            self.sources.orchestrator.clone(),
            self.store.clone(),
            self.options.clone(),
            self.shared.clone(),
            self.sink.clone(),
            stop_rx,
        );
        self.tasks.spawn(async move {
            task.await;
            id
        });
        self.shared.lock().following = self.followers.len();
    }

    /// The deployment stopped: its follower reads its last lines and ends;
    /// with none running, one is started for those last lines.
    fn stop(&mut self, target: Target) {
        match self.followers.get(&target.deployment) {
            Some(stop) => {
                let _ = stop.send(true);
            }
            None => self.follow(target, false),
        }
    }
}
