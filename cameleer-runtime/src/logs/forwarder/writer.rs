//! The forwarder's writer: one buffer, batches to the store in order, one
//! at a time, retried until they are stored; loss counted when the buffer
//! is full.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{ForwarderOptions, Shared};
use crate::logs::{LogStore, StoredLine};

/// Runs until the line channel closes (every follower is gone) or
/// `shutdown` says so; then stores what it holds, trying until
/// `options.shutdown_flush` has passed.
pub(super) async fn run(
    store: Arc<dyn LogStore>,
    options: ForwarderOptions,
    shared: Arc<Shared>,
    mut lines: mpsc::Receiver<StoredLine>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buffer = Buffer::default();
    let mut in_flight: Option<tokio::task::JoinHandle<Result<(), String>>> = None;
    let mut in_flight_len = 0usize;
    let mut batch: Arc<Vec<StoredLine>> = Arc::new(Vec::new());
    let mut retry_at: Option<Instant> = None;
    let mut backoff = options.retry_min;
    let mut oldest_since: Option<Instant> = None;
    let mut open = true;
    loop {
        // A batch is due when it is full, or its oldest line has waited
        // `flush_interval`.
        let due = !buffer.lines.is_empty()
            && (buffer.lines.len() >= options.batch_lines
                || oldest_since.is_some_and(|t| t.elapsed() >= options.flush_interval)
                || !open);
        if in_flight.is_none() && retry_at.is_none_or(|t| Instant::now() >= t) {
            if batch.is_empty() && due {
                let n = buffer.lines.len().min(options.batch_lines);
                batch = Arc::new(buffer.take(n));
                oldest_since = (!buffer.lines.is_empty()).then(Instant::now);
            }
            if !batch.is_empty() {
                let (store, b) = (store.clone(), batch.clone());
                let limit = options.append_timeout;
                in_flight_len = b.len();
                in_flight = Some(tokio::spawn(async move {
                    match tokio::time::timeout(limit, store.append(&b)).await {
                        Ok(done) => done.map_err(|e| e.to_string()),
                        Err(_) => Err(format!("append took longer than {limit:?}")),
                    }
                }));
                retry_at = None;
            }
        }
        if !open && in_flight.is_none() && batch.is_empty() && buffer.lines.is_empty() {
            break;
        }
        let wake = match (retry_at, oldest_since) {
            (Some(r), _) => r,
            (None, Some(o)) => o + options.flush_interval,
            (None, None) => Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            biased;
            done = async { in_flight.as_mut().unwrap().await }, if in_flight.is_some() => {
                in_flight = None;
                match done {
                    Ok(Ok(())) => {
                        shared.stored(in_flight_len);
                        batch = Arc::new(Vec::new());
                        backoff = options.retry_min;
                    }
                    Ok(Err(message)) => {
                        shared.store_failed(message);
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(options.retry_max);
                    }
                    Err(join) => {
                        shared.store_failed(format!("the append task failed: {join}"));
                        retry_at = Some(Instant::now() + backoff);
                    }
                }
                shared.buffered(buffer.lines.len() + batch.len(), buffer.bytes);
            }
            line = lines.recv(), if open => match line {
                Some(line) => {
                    let held = buffer.lines.len() + batch.len();
                    if held >= options.buffer_lines || buffer.bytes >= options.buffer_bytes {
                        shared.dropped(&line);
                    } else {
                        if buffer.lines.is_empty() {
                            oldest_since = Some(Instant::now());
                        }
                        buffer.push(line);
                    }
                    shared.buffered(buffer.lines.len() + batch.len(), buffer.bytes);
                }
                None => open = false,
            },
            _ = shutdown.changed(), if open => {
                open = false;
                lines.close();
                // Lines already in the channel are ours to store.
                while let Ok(line) = lines.try_recv() {
                    buffer.push(line);
                }
                let deadline = Instant::now() + options.shutdown_flush;
                tokio::spawn({
                    let shared = shared.clone();
                    async move {
                        tokio::time::sleep_until(deadline).await;
                        shared.give_up();
                    }
                });
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
        if !open && shared.given_up() {
            let lost = buffer.lines.len() + if in_flight.is_some() { 0 } else { batch.len() };
            if lost > 0 {
                tracing::warn!(
                    lost,
                    "log forwarder stopped with lines the store did not take"
                );
                shared.lost_at_shutdown(lost);
            }
            break;
        }
    }
}

#[derive(Default)]
struct Buffer {
    lines: VecDeque<StoredLine>,
    bytes: usize,
}

impl Buffer {
    fn push(&mut self, line: StoredLine) {
        self.bytes += line.line.len();
        self.lines.push_back(line);
    }

    fn take(&mut self, n: usize) -> Vec<StoredLine> {
        let out: Vec<StoredLine> = self.lines.drain(..n).collect();
        self.bytes -= out.iter().map(|l| l.line.len()).sum::<usize>();
        out
    }
}
