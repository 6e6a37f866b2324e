//! What the orchestrator remembers between calls about the containers it
//! handled: a shortcut, never the truth. Losing it (a controller restart)
//! costs a re-probe, and turns a stop it made or a start it gave up on into
//! what the engine alone can tell (an exit code), never a wrong app.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use cameleer_runtime::{AppRef, EnvId, TenantId};
use time::OffsetDateTime;

/// How many containers are remembered; the oldest are forgotten first.
const CAPACITY: usize = 4096;

/// Which exits of a container were the orchestrator's own doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ExpectedExits {
    /// None: an exit is news (a crash).
    #[default]
    None,
    /// Every exit: it was stopped or removed on request.
    All,
    /// Those up to this time: it was restarted then.
    Until(OffsetDateTime),
}

#[derive(Debug, Default)]
struct Remembered {
    /// The `StartedAt` of the start whose health check passed.
    healthy_start: Option<String>,
    exits: ExpectedExits,
    /// Why its start was given up (a health timeout), when it was kept.
    start_failure: Option<cameleer_runtime::StatusReason>,
    /// How many deploys or restarts of this orchestrator are waiting for it
    /// to come up right now; they report its exit themselves.
    starting: u32,
}

#[derive(Debug, Default)]
struct State {
    containers: HashMap<String, Remembered>,
    order: VecDeque<String>,
    app_locks: HashMap<AppRef, Arc<tokio::sync::Mutex<()>>>,
    /// Keyed by the derived network name, so that pairs whose names
    /// collide take turns choosing one.
    network_locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

/// The orchestrator's memory; see the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Memory {
    state: Mutex<State>,
}

impl Memory {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }

    fn read<T>(&self, id: &str, f: impl FnOnce(&Remembered) -> T) -> Option<T> {
        self.with(|s| s.containers.get(id).map(f))
    }

    fn write(&self, id: &str, f: impl FnOnce(&mut Remembered)) {
        self.with(|s| {
            if !s.containers.contains_key(id) {
                s.order.push_back(id.to_string());
                while s.order.len() > CAPACITY {
                    if let Some(old) = s.order.pop_front() {
                        s.containers.remove(&old);
                    }
                }
            }
            f(s.containers.entry(id.to_string()).or_default());
        });
    }

    /// Whether the health check passed for this start of the container.
    pub(crate) fn is_healthy(&self, id: &str, started_at: &str) -> bool {
        self.read(id, |r| r.healthy_start.as_deref() == Some(started_at))
            .unwrap_or(false)
    }

    pub(crate) fn set_healthy(&self, id: &str, started_at: &str) {
        self.write(id, |r| r.healthy_start = Some(started_at.to_string()));
    }

    /// It is being stopped or removed on request: every exit is ours.
    pub(crate) fn expect_exit(&self, id: &str) {
        self.write(id, |r| {
            r.exits = ExpectedExits::All;
            r.healthy_start = None;
        });
    }

    /// It was restarted just now: the exit of the run before was ours.
    pub(crate) fn expect_exits_until_now(&self, id: &str) {
        self.write(id, |r| {
            r.exits = ExpectedExits::Until(OffsetDateTime::now_utc());
            r.healthy_start = None;
            r.start_failure = None;
        });
    }

    /// Whether it was stopped on request (and not started since).
    pub(crate) fn stopped_on_request(&self, id: &str) -> bool {
        self.read(id, |r| r.exits == ExpectedExits::All)
            .unwrap_or(false)
    }

    /// Whether an exit the engine saw at `at` was the orchestrator's doing.
    pub(crate) fn exit_expected_at(&self, id: &str, at: OffsetDateTime) -> bool {
        self.read(id, |r| match r.exits {
            ExpectedExits::None => false,
            ExpectedExits::All => true,
            ExpectedExits::Until(until) => at <= until,
        })
        .unwrap_or(false)
    }

    /// Its start was given up for `reason` and it was stopped and kept.
    pub(crate) fn set_start_failure(&self, id: &str, reason: &cameleer_runtime::StatusReason) {
        self.write(id, |r| r.start_failure = Some(reason.clone()));
    }

    /// Why its start was given up, if it was.
    pub(crate) fn start_failure(&self, id: &str) -> Option<cameleer_runtime::StatusReason> {
        self.read(id, |r| r.start_failure.clone()).flatten()
    }

    /// A deploy or restart is waiting for it to come up until the returned
    /// guard is dropped: an exit meanwhile is that call's to report, not the
    /// event stream's, and `reconcile` leaves the container alone.
    pub(crate) fn starting(self: &Arc<Self>, id: &str) -> StartingGuard {
        self.write(id, |r| r.starting += 1);
        StartingGuard {
            memory: self.clone(),
            id: id.to_string(),
        }
    }

    /// Whether a deploy or restart is waiting for it to come up.
    pub(crate) fn is_starting(&self, id: &str) -> bool {
        self.read(id, |r| r.starting > 0).unwrap_or(false)
    }

    /// A fresh container: nothing is known about it.
    pub(crate) fn forget(&self, id: &str) {
        self.with(|s| {
            s.containers.remove(id);
        });
    }

    /// The lock that serialises the lifecycle steps of one app.
    pub(crate) fn app_lock(&self, app: &AppRef) -> Arc<tokio::sync::Mutex<()>> {
        self.with(|s| s.app_locks.entry(app.clone()).or_default().clone())
    }

    /// The lock that serialises creating and removing one tenant+env's
    /// network with creating its containers.
    pub(crate) fn network_lock(
        &self,
        tenant: &TenantId,
        env: &EnvId,
    ) -> Arc<tokio::sync::Mutex<()>> {
        self.with(|s| {
            s.network_locks
                .entry(crate::labels::network_name(tenant, env))
                .or_default()
                .clone()
        })
    }
}

/// Marks a container as being started until dropped; see [`Memory::starting`].
#[derive(Debug)]
pub(crate) struct StartingGuard {
    memory: Arc<Memory>,
    id: String,
}

impl Drop for StartingGuard {
    fn drop(&mut self) {
        self.memory.with(|s| {
            if let Some(r) = s.containers.get_mut(&self.id) {
                r.starting = r.starting.saturating_sub(1);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_expected_after_a_stop_and_before_a_restart() {
        let m = Memory::default();
        let before = OffsetDateTime::now_utc();
        assert!(!m.exit_expected_at("c", before));
        m.expect_exit("c");
        assert!(m.stopped_on_request("c"));
        assert!(m.exit_expected_at("c", before));
        m.expect_exits_until_now("c");
        assert!(!m.stopped_on_request("c"));
        assert!(m.exit_expected_at("c", before));
        assert!(!m.exit_expected_at("c", OffsetDateTime::now_utc() + time::Duration::seconds(1)));
        m.forget("c");
        assert!(!m.exit_expected_at("c", before));
    }

    #[test]
    fn health_is_per_start() {
        let m = Memory::default();
        m.set_healthy("c", "t1");
        assert!(m.is_healthy("c", "t1") && !m.is_healthy("c", "t2"));
        m.expect_exit("c");
        assert!(!m.is_healthy("c", "t1"));
    }

    #[test]
    fn a_start_is_in_progress_while_its_guard_lives() {
        let m = Arc::new(Memory::default());
        let first = m.starting("c");
        let second = m.starting("c");
        assert!(m.is_starting("c"));
        drop(first);
        assert!(m.is_starting("c"));
        drop(second);
        assert!(!m.is_starting("c"));
        assert!(!m.is_starting("other"));
    }

    #[test]
    fn memory_is_bounded() {
        let m = Memory::default();
        for i in 0..CAPACITY + 10 {
            m.expect_exit(&i.to_string());
        }
        assert!(!m.stopped_on_request("0"));
        assert!(m.stopped_on_request(&(CAPACITY + 9).to_string()));
        assert_eq!(m.with(|s| s.containers.len()), CAPACITY);
    }
}
