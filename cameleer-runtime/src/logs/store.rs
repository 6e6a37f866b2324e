//! The [`LogStore`] contract and its in-memory implementation.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{LogCursor, LogOrder, LogPage, LogQuery, LogStoreError, ResumePoint, StoredLine};
use crate::DeploymentId;

/// Where app logs outlive their containers: appended in batches by the
/// [`LogForwarder`](super::LogForwarder), queried by app and environment.
///
/// Every implementation passes the same suite
/// (`testkit::logs::log_store_conformance_tests!`, feature `testkit`).
#[async_trait]
pub trait LogStore: Send + Sync + 'static {
    /// A short name for stats and errors: `memory`, `sqlite`, `clickhouse`.
    fn name(&self) -> &'static str;

    /// Stores `lines`, all or none where the store allows, and ignores any
    /// whose `(deployment, seq)` it already has: appending the same batch
    /// twice stores it once. An error means the batch may be sent again.
    async fn append(&self, lines: &[StoredLine]) -> Result<(), LogStoreError>;

    /// Where the store ends for `deployment`; `None` when it has none of
    /// its lines.
    async fn resume_point(
        &self,
        deployment: &DeploymentId,
    ) -> Result<Option<ResumePoint>, LogStoreError>;

    /// One page of the lines that match `query`, in its order, starting
    /// after its cursor. Lines sort by time, then deployment, then seq, so
    /// pages neither repeat nor skip lines, also lines of the same
    /// nanosecond.
    async fn query(&self, query: &LogQuery) -> Result<LogPage, LogStoreError>;
}

/// Builds the page of `query` from its matching lines, sorted in the
/// query's order and already after the cursor: the first `limit`, and a
/// cursor when there were more.
pub fn page_of(mut lines: Vec<StoredLine>, query: &LogQuery) -> LogPage {
    let more = lines.len() > query.limit;
    lines.truncate(query.limit);
    let next = if more {
        lines.last().map(StoredLine::position)
    } else {
        None
    };
    LogPage { lines, next }
}

/// A [`LogStore`] in memory: the reference implementation for tests and a
/// host that wants no persistence. Queries scan every line.
#[derive(Debug, Default)]
pub struct MemoryLogStore {
    lines: Mutex<BTreeMap<(DeploymentId, u64), StoredLine>>,
}

impl MemoryLogStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many lines it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(DeploymentId, u64), StoredLine>> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl LogStore for MemoryLogStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn append(&self, lines: &[StoredLine]) -> Result<(), LogStoreError> {
        let mut all = self.lock();
        for line in lines {
            all.entry((line.deployment, line.seq))
                .or_insert_with(|| line.clone());
        }
        Ok(())
    }

    async fn resume_point(
        &self,
        deployment: &DeploymentId,
    ) -> Result<Option<ResumePoint>, LogStoreError> {
        let all = self.lock();
        let mine: Vec<&StoredLine> = all
            .range((*deployment, 0)..=(*deployment, u64::MAX))
            .map(|(_, l)| l)
            .collect();
        let Some(last_seq) = mine.iter().map(|l| l.seq).max() else {
            return Ok(None);
        };
        let last_timestamp = mine.iter().map(|l| l.timestamp_nanos()).max().unwrap_or(0);
        let at_last = mine
            .iter()
            .filter(|l| l.timestamp_nanos() == last_timestamp)
            .count();
        Ok(Some(ResumePoint {
            last_seq,
            last_timestamp,
            lines_at_last_timestamp: at_last as u64,
        }))
    }

    async fn query(&self, query: &LogQuery) -> Result<LogPage, LogStoreError> {
        query.validate()?;
        let mut lines: Vec<StoredLine> = self
            .lock()
            .values()
            .filter(|l| query.matches(l) && query.after_cursor(&l.position()))
            .cloned()
            .collect();
        let key = |l: &StoredLine| LogCursor::key(&l.position());
        match query.order {
            LogOrder::OldestFirst => lines.sort_by_key(key),
            LogOrder::NewestFirst => lines.sort_by_key(|l| std::cmp::Reverse(key(l))),
        }
        Ok(page_of(lines, query))
    }
}
