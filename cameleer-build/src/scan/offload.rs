//! Scanning nested JARs on a second core.
//!
//! Inflating the libraries of a fat JAR is most of the work of validating
//! it, and they are independent of each other. While the upload's own entries
//! are walked on the calling thread, a nested JAR whose turn comes while the
//! worker's queue has room ([`QUEUE`]) is handed to it: the walker copies
//! the entry's bytes into a bounded channel as they stream past (at most
//! [`IN_FLIGHT`] bytes per JAR, so memory stays bounded) and moves on; the
//! worker scans it and returns the report. When the queue is full, the next
//! nested JAR is scanned inline, so both cores stay loaded. Reports are merged in entry
//! order, and an error of an earlier entry wins over a later one, so the
//! verdict is the same as a sequential scan's.

use std::cell::OnceCell;
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::Scope;

use super::{ArchiveReport, scan_archive};
use crate::zip::entry::Budget;
use crate::zip::input::{Input, MIN_BUFFER};
use crate::zip::walker::ArchiveContext;
use crate::{ValidationError, ValidationPolicy};

/// Bytes per chunk handed to the worker.
pub(crate) const CHUNK: usize = 64 << 10;
/// Most bytes queued for the worker per nested JAR.
pub(crate) const IN_FLIGHT: usize = 4 << 20;
/// Nested JARs the worker may hold: the one it scans and one waiting, so
/// it never idles while the walker scans a JAR inline. Memory in flight is
/// bounded by `QUEUE * IN_FLIGHT`.
pub(crate) const QUEUE: usize = 2;

/// The result of a nested scan, delivered once.
pub(crate) type Report = Receiver<Result<ArchiveReport, ValidationError>>;

/// A nested JAR handed to the worker: feed its bytes into `chunks`, then
/// drop it; the report arrives on `report`.
pub(crate) struct Submission {
    pub chunks: SyncSender<Vec<u8>>,
    pub report: Report,
}

/// Something that may take a nested JAR off the caller's hands.
pub(crate) trait Offloader {
    /// Hands the nested archive at `path` to the worker, or returns `None`
    /// when its queue is full (scan inline then).
    fn try_submit(&self, path: &str) -> Option<Submission>;
}

struct Job {
    path: String,
    chunks: Receiver<Vec<u8>>,
    report: SyncSender<Result<ArchiveReport, ValidationError>>,
}

/// One worker thread in a scope, started on first use.
pub(crate) struct Worker<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    policy: &'env ValidationPolicy,
    budget: &'env Budget,
    pending: &'env AtomicUsize,
    jobs: OnceCell<SyncSender<Job>>,
}

impl<'scope, 'env> Worker<'scope, 'env> {
    /// A worker that scans with `policy` against `budget` and counts the
    /// nested JARs it holds in `pending`.
    pub(crate) fn new(
        scope: &'scope Scope<'scope, 'env>,
        policy: &'env ValidationPolicy,
        budget: &'env Budget,
        pending: &'env AtomicUsize,
    ) -> Self {
        Self {
            scope,
            policy,
            budget,
            pending,
            jobs: OnceCell::new(),
        }
    }

    fn jobs(&self) -> &SyncSender<Job> {
        self.jobs.get_or_init(|| {
            let (tx, rx) = sync_channel::<Job>(QUEUE);
            let (policy, budget, pending) = (self.policy, self.budget, self.pending);
            self.scope.spawn(move || {
                for job in rx {
                    let ctx = ArchiveContext {
                        policy,
                        budget,
                        path: job.path,
                        depth: 1,
                        offload: None,
                    };
                    let reader = ChunkReader {
                        rx: job.chunks,
                        current: Vec::new(),
                        pos: 0,
                    };
                    let mut input = Input::new(reader, MIN_BUFFER, u64::MAX, false);
                    let result = scan_archive(&mut input, &ctx, false);
                    drop(input);
                    pending.fetch_sub(1, Ordering::AcqRel);
                    // The walker may have stopped waiting (it failed first).
                    let _ = job.report.send(result);
                }
            });
            tx
        })
    }
}

impl Offloader for Worker<'_, '_> {
    fn try_submit(&self, path: &str) -> Option<Submission> {
        // Only the walker's thread submits, so a load then an add is exact.
        if self.pending.load(Ordering::Acquire) >= QUEUE {
            return None;
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        let (chunks_tx, chunks_rx) = sync_channel(IN_FLIGHT / CHUNK);
        let (report_tx, report_rx) = sync_channel(1);
        let job = Job {
            path: path.to_owned(),
            chunks: chunks_rx,
            report: report_tx,
        };
        if self.jobs().send(job).is_err() {
            // The worker is gone; scan inline.
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Submission {
            chunks: chunks_tx,
            report: report_rx,
        })
    }
}

/// Feeds an entry's bytes to the worker until the entry ends or the worker
/// stops listening (it has its verdict). Errors reading the entry are the
/// walker's own and are returned; the worker then sees a cut-off archive
/// and its report is to be discarded.
pub(crate) fn feed(
    data: &mut dyn Read,
    chunks: SyncSender<Vec<u8>>,
) -> Result<(), ValidationError> {
    loop {
        let mut buf = vec![0u8; CHUNK];
        let n = super::read_up_to(data, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        if chunks.send(buf).is_err() {
            return Ok(());
        }
    }
}

/// The worker's side of the channel as a `Read`.
struct ChunkReader {
    rx: Receiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(chunk) => (self.current, self.pos) = (chunk, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
