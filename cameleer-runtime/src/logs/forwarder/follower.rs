//! One deployment's follower: reads its output from the backend, from
//! where the store ends, numbers the lines and hands them to the writer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use super::{ForwarderOptions, Shared};
use crate::logs::model::{from_nanos, nanos};
use crate::logs::{LogStore, ResumePoint, StoredLine};
use crate::{AppRef, DeploymentId, LogLine, LogOptions, RuntimeOrchestrator};

/// Which deployment, and what to call its lines.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub app: AppRef,
    pub deployment: DeploymentId,
    pub version: u64,
}

/// Where the follower is in the deployment's output: the next seq, and the
/// newest line's time with how many lines of that exact time it has seen
/// (a re-read from that time skips them).
#[derive(Debug, Clone, Copy)]
struct Position {
    next_seq: u64,
    last_timestamp: Option<i64>,
    at_last: u64,
}

impl Position {
    fn from_store(point: Option<ResumePoint>) -> Self {
        match point {
            None => Self {
                next_seq: 0,
                last_timestamp: None,
                at_last: 0,
            },
            Some(p) => Self {
                next_seq: p.last_seq + 1,
                last_timestamp: Some(p.last_timestamp),
                at_last: p.lines_at_last_timestamp,
            },
        }
    }

    fn since(&self) -> Option<SystemTime> {
        self.last_timestamp.map(|t| SystemTime::from(from_nanos(t)))
    }
}

/// Skips, in a re-read from [`Position::since`], the lines already taken.
struct Reread {
    skip_at_last: u64,
}

impl Reread {
    fn new(pos: &Position) -> Self {
        Self {
            skip_at_last: pos.at_last,
        }
    }

    /// Whether `line` is new; if so, takes it into `pos` and returns its seq.
    fn take(&mut self, pos: &mut Position, line: &LogLine) -> Option<u64> {
        let ts = nanos(line.ts);
        match pos.last_timestamp {
            Some(last) if ts < last => return None,
            Some(last) if ts == last => {
                if self.skip_at_last > 0 {
                    self.skip_at_last -= 1;
                    return None;
                }
                pos.at_last += 1;
            }
            _ => {
                pos.last_timestamp = Some(ts);
                pos.at_last = 1;
                self.skip_at_last = 0;
            }
        }
        let seq = pos.next_seq;
        pos.next_seq += 1;
        Some(seq)
    }
}

/// Follows `target` until `stop` turns true (the deployment stopped), then
/// reads what is left once, without following, and returns. Without
/// `follow`, it only does that last read (a deployment that stopped while
/// no forwarder ran).
#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    target: Target,
    follow: bool,
    orchestrator: Arc<dyn RuntimeOrchestrator>,
    store: Arc<dyn LogStore>,
    options: ForwarderOptions,
    shared: Arc<Shared>,
    sink: mpsc::Sender<StoredLine>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(mut pos) = resume(&target, &*store, &options, &shared, &mut stop).await else {
        return;
    };
    let mut stopping = !follow || *stop.borrow();
    // A deployment is followed from `Starting` on, before its container
    // exists or runs (and a backend may end the stream of a container that
    // has not started yet): until the first line comes, look again soon.
    let mut idle = FIRST_LOOK;
    loop {
        let read = LogOptions {
            since: pos.since(),
            follow: !stopping,
        };
        let lines = match orchestrator
            .deployment_logs(&target.app, &target.deployment, &read)
            .await
        {
            Ok(lines) => lines,
            Err(e) if stopping => {
                tracing::debug!(deployment = %target.deployment, "its last lines cannot be read: {e}");
                return;
            }
            Err(e) => {
                let delay = if e.is_not_found() {
                    next_look(&mut idle, options.reopen_delay)
                } else {
                    shared.source_failed(format!("{}: {e}", target.deployment));
                    options.reopen_delay
                };
                if pause(delay, &mut stop).await {
                    stopping = true;
                }
                continue;
            }
        };
        let mut lines = lines;
        let mut reread = Reread::new(&pos);
        let mut interrupted = false;
        let mut got_lines = false;
        loop {
            let next = tokio::select! {
                biased;
                next = lines.next() => next,
                _ = stop.changed(), if !stopping => {
                    interrupted = true;
                    break;
                }
            };
            let line = match next {
                Some(Ok(line)) => line,
                Some(Err(e)) => {
                    shared.source_failed(format!("{}: {e}", target.deployment));
                    break;
                }
                None => break,
            };
            shared.read(1);
            got_lines = true;
            let Some(seq) = reread.take(&mut pos, &line) else {
                continue;
            };
            let stored = StoredLine {
                app: target.app.clone(),
                deployment: target.deployment,
                version: target.version,
                timestamp: line.ts,
                stream: line.stream,
                seq,
                instance: line.instance,
                line: line.line,
            };
            if sink.send(stored).await.is_err() {
                return; // The forwarder is shutting down.
            }
        }
        if stopping {
            return; // That was the last read.
        }
        if interrupted {
            stopping = true;
            continue;
        }
        // The stream ended on its own (the container stopped or was
        // replaced, or has not started yet): read again after a pause; the
        // stop, if it is one, comes as an event.
        let delay = if got_lines {
            idle = FIRST_LOOK;
            options.reopen_delay
        } else {
            next_look(&mut idle, options.reopen_delay)
        };
        if pause(delay, &mut stop).await {
            stopping = true;
        }
    }
}

/// The first pause before reading a deployment's output again when the
/// last read found nothing; it doubles up to `reopen_delay`.
const FIRST_LOOK: Duration = Duration::from_millis(20);

/// The pause after a read that found nothing: `idle`, which doubles for the
/// next one, at most `max`.
fn next_look(idle: &mut Duration, max: Duration) -> Duration {
    let now = (*idle).min(max);
    *idle = (*idle * 2).min(max);
    now
}

/// Waits `delay`; true when `stop` turned true meanwhile.
async fn pause(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Asks the store where it ends for the deployment, until it answers;
/// `None` when the forwarder shuts down first.
async fn resume(
    target: &Target,
    store: &dyn LogStore,
    options: &ForwarderOptions,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
) -> Option<Position> {
    let mut backoff = options.retry_min;
    loop {
        match store.resume_point(&target.deployment).await {
            Ok(point) => return Some(Position::from_store(point)),
            Err(e) => {
                shared.store_failed(format!("resume point of {}: {e}", target.deployment));
                if shared.is_shutting_down() {
                    return None;
                }
                // A stop does not end the wait: its last lines are still to
                // be read once the store answers.
                let _ = pause(backoff, stop).await;
                backoff = (backoff * 2).min(options.retry_max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::LogSource;

    fn line(ns: i64) -> LogLine {
        LogLine {
            ts: OffsetDateTime::UNIX_EPOCH + time::Duration::nanoseconds(ns),
            stream: LogSource::Stdout,
            line: String::new(),
            instance: None,
        }
    }

    #[test]
    fn a_reread_skips_exactly_what_was_taken_also_within_one_nanosecond() {
        // The store has seq 0..=2: times 5, 7, 7.
        let mut pos = Position::from_store(Some(ResumePoint {
            last_seq: 2,
            last_timestamp: 7,
            lines_at_last_timestamp: 2,
        }));
        let mut reread = Reread::new(&pos);
        let seqs: Vec<Option<u64>> = [7, 7, 7, 8, 8]
            .into_iter()
            .map(|ns| reread.take(&mut pos, &line(ns)))
            .collect();
        assert_eq!(seqs, [None, None, Some(3), Some(4), Some(5)]);
        // Another re-read from there skips both lines of time 8.
        let mut again = Reread::new(&pos);
        assert_eq!(again.take(&mut pos, &line(8)), None);
        assert_eq!(again.take(&mut pos, &line(8)), None);
        assert_eq!(again.take(&mut pos, &line(9)), Some(6));
        assert_eq!(
            again.take(&mut pos, &line(3)),
            None,
            "older than the store's end"
        );
    }

    #[test]
    fn the_pause_after_an_empty_read_doubles_up_to_the_reopen_delay() {
        let max = Duration::from_millis(100);
        let mut idle = FIRST_LOOK;
        let pauses: Vec<u128> = (0..5)
            .map(|_| next_look(&mut idle, max).as_millis())
            .collect();
        assert_eq!(pauses, [20, 40, 80, 100, 100]);
    }
}
