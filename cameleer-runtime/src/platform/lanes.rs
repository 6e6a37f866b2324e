//! Per-app ordering of the steps that change what runs.
//!
//! Each [`AppRef`] has a lane. Everything that starts or restarts a version
//! of the app (a deploy's pipeline, a promotion into it, a rollback, a
//! restart) waits for its turn in the lane, so two versions are never
//! brought up at once and the newest request is the last to run. Turns are
//! taken in the order the requests were *made*: a request joins the queue
//! while it allocates its version, not when its background task first gets
//! scheduled.
//!
//! The map holds only weak references; a lane lives as long as someone
//! waits in it or holds its turn, and dead entries are swept as the map
//! grows, so the map stays proportional to the apps that are busy.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::AppRef;

/// Sweep dead entries when the map reaches this size (or twice the size it
/// had after the previous sweep).
const MIN_SWEEP: usize = 64;

/// The lanes of every app, created on demand.
#[derive(Debug)]
pub(crate) struct Lanes {
    map: Mutex<LaneMap>,
}

#[derive(Debug)]
struct LaneMap {
    lanes: HashMap<AppRef, Weak<Lane>>,
    sweep_at: usize,
}

/// One app's lane.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    /// Held while a request joins the queue and allocates its version, so
    /// that queue order and version order agree.
    pub(crate) admission: AsyncMutex<()>,
    /// The turn itself. tokio's mutex is fair: waiters get it in the order
    /// they first polled `lock`.
    run: Arc<AsyncMutex<()>>,
}

/// A place in a lane's queue; [`wait`](Turn::wait) for it to come.
pub(crate) struct Turn {
    lane: Arc<Lane>,
    state: TurnState,
}

enum TurnState {
    Ready(OwnedMutexGuard<()>),
    Queued(Pin<Box<dyn Future<Output = OwnedMutexGuard<()>> + Send>>),
}

/// The lane is ours until this is dropped.
pub(crate) struct LaneGuard {
    _guard: OwnedMutexGuard<()>,
    _lane: Arc<Lane>,
}

impl Default for Lanes {
    fn default() -> Self {
        Self {
            map: Mutex::new(LaneMap {
                lanes: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }
}

impl Lanes {
    /// The lane of `app`.
    pub(crate) fn lane(&self, app: &AppRef) -> Arc<Lane> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lane) = map.lanes.get(app).and_then(Weak::upgrade) {
            return lane;
        }
        let lane = Arc::new(Lane::default());
        map.lanes.insert(app.clone(), Arc::downgrade(&lane));
        if map.lanes.len() >= map.sweep_at {
            map.lanes.retain(|_, lane| lane.strong_count() > 0);
            map.sweep_at = (map.lanes.len() * 2).max(MIN_SWEEP);
        }
        lane
    }

    /// How many entries the map holds, dead ones included.
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.map.lock().unwrap().lanes.len()
    }
}

impl Lane {
    /// Joins the queue now. The turn comes after every turn queued before.
    pub(crate) async fn queue(self: &Arc<Self>) -> Turn {
        let mut lock: Pin<Box<dyn Future<Output = OwnedMutexGuard<()>> + Send>> =
            Box::pin(self.run.clone().lock_owned());
        // Polling once puts us in the mutex's FIFO queue right away.
        let state = match futures::poll!(lock.as_mut()) {
            Poll::Ready(guard) => TurnState::Ready(guard),
            Poll::Pending => TurnState::Queued(lock),
        };
        Turn {
            lane: self.clone(),
            state,
        }
    }
}

impl Turn {
    /// Waits until every earlier turn in the lane is over.
    pub(crate) async fn wait(self) -> LaneGuard {
        let guard = match self.state {
            TurnState::Ready(guard) => guard,
            TurnState::Queued(lock) => lock.await,
        };
        LaneGuard {
            _guard: guard,
            _lane: self.lane,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;

    fn app(i: usize) -> AppRef {
        AppRef::parse("t", &format!("a{i}"), "e").unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn turns_come_in_queue_order_whatever_the_task_scheduling() {
        let lanes = Lanes::default();
        let lane = lanes.lane(&app(0));
        let first = lane.queue().await.wait().await;
        let order = Arc::new(StdMutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..50 {
            let turn = lane.queue().await;
            let order = order.clone();
            // Spawned in reverse so the scheduler, not the queue, would
            // get the order wrong.
            tasks.push(async move {
                let _g = turn.wait().await;
                order.lock().unwrap().push(i);
            });
        }
        let handles: Vec<_> = tasks.into_iter().rev().map(tokio::spawn).collect();
        drop(first);
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn the_same_app_gets_the_same_lane_while_it_is_held() {
        let lanes = Lanes::default();
        let a = lanes.lane(&app(1));
        assert!(Arc::ptr_eq(&a, &lanes.lane(&app(1))));
        assert!(!Arc::ptr_eq(&a, &lanes.lane(&app(2))));
    }

    #[test]
    fn dead_lanes_are_swept() {
        let lanes = Lanes::default();
        let held: Vec<_> = (0..10).map(|i| lanes.lane(&app(i))).collect();
        for i in 10..10_000 {
            lanes.lane(&app(i));
        }
        assert!(lanes.entries() <= 2 * MIN_SWEEP, "{}", lanes.entries());
        for (i, lane) in held.iter().enumerate() {
            assert!(Arc::ptr_eq(lane, &lanes.lane(&app(i))));
        }
    }
}
