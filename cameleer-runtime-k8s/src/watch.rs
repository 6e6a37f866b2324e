//! The watches that drive status: kube-runtime's [`watcher()`] on the
//! Deployments and pods that carry `cameleer.io/managed=true`, cluster-wide,
//! kept in a cache that deploys wait on and that turns each app's status
//! changes into [`RuntimeEvent`]s.
//!
//! No polling: every change the API server reports wakes the waiters and
//! re-derives the status of the apps it touches with
//! [`crate::status::observe`]. The watcher relists after a
//! `410 Gone` and re-watches after a dropped connection; since each relist
//! replaces the cache and statuses are compared with what was last seen, a
//! transition that happened while the watch was down is still reported,
//! once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use cameleer_runtime::{
    AppRef, DeploymentId, DeploymentStatus, RuntimeEvent, RuntimeEventKind, StatusReason,
};
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use time::OffsetDateTime;
use tokio::sync::{broadcast, watch as signal};
use tokio::task::JoinHandle;

use crate::status::{self, Observed};

/// The label selector of everything the backend manages.
pub const MANAGED_SELECTOR: &str = "cameleer.io/managed=true";

/// How many runtime events a slow `events()` reader may fall behind before
/// it misses some.
const EVENT_BUFFER: usize = 1024;

type Key = (String, String);

fn key_of<K: Resource>(o: &K) -> Key {
    let m = o.meta();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// One kind's objects, and its relist in progress.
#[derive(Debug)]
struct Objects<K> {
    items: BTreeMap<Key, K>,
    relist: Option<BTreeMap<Key, K>>,
    synced: bool,
}

impl<K> Default for Objects<K> {
    fn default() -> Self {
        Self {
            items: BTreeMap::new(),
            relist: None,
            synced: false,
        }
    }
}

impl<K: Resource + Clone> Objects<K> {
    /// Applies one watcher event; true when the cache changed.
    fn apply(&mut self, event: Event<K>) -> bool {
        match event {
            Event::Init => {
                self.relist = Some(BTreeMap::new());
                false
            }
            Event::InitApply(o) => {
                if let Some(r) = self.relist.as_mut() {
                    r.insert(key_of(&o), o);
                }
                false
            }
            Event::InitDone => {
                if let Some(r) = self.relist.take() {
                    self.items = r;
                }
                self.synced = true;
                true
            }
            Event::Apply(o) => {
                self.items.insert(key_of(&o), o);
                true
            }
            Event::Delete(o) => {
                self.items.remove(&key_of(&o));
                true
            }
        }
    }
}

/// What the last look at an app found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    deployment: DeploymentId,
    status: DeploymentStatus,
}

/// The cache the watchers fill.
#[derive(Debug, Default)]
struct State {
    deployments: Objects<Deployment>,
    pods: Objects<Pod>,
    /// The last status of each app, for transitions.
    seen: BTreeMap<AppRef, Seen>,
    /// Whether `seen` was filled once (transitions before are not events).
    primed: bool,
}

impl State {
    fn synced(&self) -> bool {
        self.deployments.synced && self.pods.synced
    }

    fn pods_in(&self, ns: &str) -> Vec<Pod> {
        self.pods
            .items
            .range((ns.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == ns)
            .map(|(_, p)| p.clone())
            .collect()
    }

    fn observe_all(&self, now: OffsetDateTime) -> Vec<Observed> {
        let mut by_ns: BTreeMap<&str, Vec<Pod>> = BTreeMap::new();
        self.deployments
            .items
            .iter()
            .filter_map(|((ns, _), d)| {
                let pods = by_ns.entry(ns).or_insert_with(|| self.pods_in(ns));
                status::observe(d, pods, now)
            })
            .collect()
    }

    /// Compares every app's status with the last one seen and returns the
    /// events of what changed.
    fn transitions(&mut self, now: OffsetDateTime) -> Vec<RuntimeEvent> {
        if !self.synced() {
            return Vec::new();
        }
        let observed = self.observe_all(now);
        let mut events = Vec::new();
        let mut next = BTreeMap::new();
        for o in observed {
            let app = o.identity.app.clone();
            let seen = Seen {
                deployment: o.identity.deployment,
                status: o.status,
            };
            let before = self.seen.get(&app);
            let changed = match before {
                Some(b) => b != &seen,
                None => self.primed,
            };
            if changed {
                let kind = match (o.status, o.reason.clone()) {
                    (DeploymentStatus::Running, _) => Some(RuntimeEventKind::Healthy),
                    (DeploymentStatus::Failed, Some(reason)) => {
                        Some(RuntimeEventKind::Failed { reason })
                    }
                    // A stop the platform did not ask for.
                    (DeploymentStatus::Stopped, Some(reason @ StatusReason::StoppedExternally)) => {
                        Some(RuntimeEventKind::Stopped { reason })
                    }
                    _ => None,
                };
                if let Some(kind) = kind {
                    events.push(RuntimeEvent {
                        app: app.clone(),
                        deployment: o.identity.deployment,
                        kind,
                        at: now,
                    });
                }
            }
            next.insert(app, seen);
        }
        if self.primed {
            for (app, seen) in &self.seen {
                if !next.contains_key(app) {
                    events.push(RuntimeEvent {
                        app: app.clone(),
                        deployment: seen.deployment,
                        kind: RuntimeEventKind::Removed,
                        at: now,
                    });
                }
            }
        }
        self.seen = next;
        self.primed = true;
        events
    }
}

/// The cache and the watch tasks that fill it. Dropping the last clone
/// stops the watches.
#[derive(Debug, Clone)]
pub struct Informer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    changed: signal::Sender<u64>,
    events: broadcast::Sender<RuntimeEvent>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().map(std::mem::take).unwrap_or_default() {
            task.abort();
        }
    }
}

/// Anything the informer can read watch events from.
pub type WatchStream<K> = futures::stream::BoxStream<'static, Result<Event<K>, watcher::Error>>;

impl Informer {
    /// Starts watching every managed Deployment and pod through `client`
    /// (kube-runtime's watcher, with its default backoff after errors).
    pub fn start(client: kube::Client) -> Self {
        let config = watcher::Config::default().labels(MANAGED_SELECTOR);
        let deployments = watcher(Api::<Deployment>::all(client.clone()), config.clone())
            .default_backoff()
            .boxed();
        let pods = watcher(Api::<Pod>::all(client), config)
            .default_backoff()
            .boxed();
        Self::from_streams(deployments, pods)
    }

    /// An informer fed by the given watch streams (tests feed scripted
    /// ones).
    pub fn from_streams(deployments: WatchStream<Deployment>, pods: WatchStream<Pod>) -> Self {
        let (changed, _) = signal::channel(0);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            changed,
            events,
            tasks: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&inner);
        let d = tokio::spawn(feed(weak.clone(), deployments, |s: &mut State, e| {
            s.deployments.apply(e)
        }));
        let p = tokio::spawn(feed(weak, pods, |s: &mut State, e| s.pods.apply(e)));
        if let Ok(mut tasks) = inner.tasks.lock() {
            tasks.extend([d, p]);
        }
        Self { inner }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind: usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether both watches have listed once.
    pub fn synced(&self) -> bool {
        self.state().synced()
    }

    /// The cached Deployment `ns/name`.
    pub fn deployment(&self, ns: &str, name: &str) -> Option<Deployment> {
        self.state()
            .deployments
            .items
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// The cached pods of namespace `ns`.
    pub fn pods(&self, ns: &str) -> Vec<Pod> {
        self.state().pods_in(ns)
    }

    /// A receiver that changes whenever the cache does.
    pub fn changes(&self) -> signal::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Waits until both watches have listed once.
    pub async fn wait_synced(&self) {
        let mut changes = self.changes();
        while !self.synced() {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// The runtime events from now on. A reader that falls more than
    /// 1024 events behind skips the ones it missed.
    pub fn events(&self) -> impl Stream<Item = RuntimeEvent> + Send + 'static {
        let rx = self.inner.events.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, rx)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "events reader fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}

async fn feed<K>(
    inner: std::sync::Weak<Inner>,
    mut stream: WatchStream<K>,
    apply: impl Fn(&mut State, Event<K>) -> bool,
) {
    let mut errors = 0u32;
    while let Some(item) = stream.next().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match item {
            Ok(event) => {
                errors = 0;
                let (changed, events) = {
                    let mut state = inner
                        .state
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let changed = apply(&mut state, event);
                    let events = if changed {
                        state.transitions(OffsetDateTime::now_utc())
                    } else {
                        Vec::new()
                    };
                    (changed, events)
                };
                for event in events {
                    let _ = inner.events.send(event);
                }
                if changed {
                    inner.changed.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
            Err(e) => {
                errors += 1;
                // The watcher relists or re-watches by itself; say so once
                // in a while, not at every retry.
                if errors == 1 || errors.is_power_of_two() {
                    tracing::warn!(error = %e, retries = errors, "watch failed; retrying");
                }
            }
        }
    }
}
