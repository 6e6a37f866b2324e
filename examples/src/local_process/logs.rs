//! Each app's output: a bounded ring of timestamped lines that readers walk
//! with a cursor.
//!
//! Every line gets a sequence number and a timestamp, both assigned under the
//! ring's lock, so timestamps never go backwards and `since` is a binary
//! search. A reader holds only its cursor and one batch of lines; a follower
//! waits on a [`watch`] channel for more. Memory is the ring's bound however
//! many readers there are and however slowly they read: a reader that falls
//! behind the ring's oldest line skips ahead and is told how many lines it
//! missed, with a marker line, instead of holding them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use cameleer_runtime::{LogLine, LogSource, LogStream};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

/// The longest line kept in one piece, in bytes; longer lines are cut into
/// several [`LogLine`]s.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Lines handed to a reader per lock.
const BATCH: usize = 256;

/// Roughly what a kept line costs beyond its text.
const LINE_OVERHEAD: usize = 64;

/// One app's recent output.
#[derive(Debug)]
pub(super) struct LogBuffer {
    ring: Mutex<Ring>,
    /// Bumped on every change a follower may wait for.
    changed: watch::Sender<u64>,
}

#[derive(Debug)]
struct Ring {
    lines: VecDeque<LogLine>,
    /// Sequence number of `lines[0]`.
    first: u64,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
    /// Output pipes still open; followers end when none are.
    writers: usize,
    last_ts: OffsetDateTime,
}

impl Ring {
    fn end(&self) -> u64 {
        self.first + self.lines.len() as u64
    }
}

fn cost(line: &LogLine) -> usize {
    line.line.len() + LINE_OVERHEAD
}

impl LogBuffer {
    /// A buffer keeping at most `max_lines` lines and about `max_bytes` bytes.
    pub(super) fn new(max_lines: usize, max_bytes: usize) -> Self {
        Self {
            ring: Mutex::new(Ring {
                lines: VecDeque::new(),
                first: 0,
                bytes: 0,
                max_lines: max_lines.max(1),
                max_bytes: max_bytes.max(MAX_LINE_BYTES + LINE_OVERHEAD),
                writers: 0,
                last_ts: OffsetDateTime::UNIX_EPOCH,
            }),
            changed: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // Every critical section leaves the ring consistent before it can
        // panic, so a poisoned lock is still usable.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Appends a line, evicting the oldest ones beyond the bounds.
    pub(super) fn push(&self, stream: LogSource, line: String) {
        let mut ring = self.lock();
        let ts = OffsetDateTime::now_utc().max(ring.last_ts);
        ring.last_ts = ts;
        let line = LogLine {
            ts,
            stream,
            line,
            instance: None,
        };
        ring.bytes += cost(&line);
        ring.lines.push_back(line);
        while ring.lines.len() > ring.max_lines || ring.bytes > ring.max_bytes {
            let Some(old) = ring.lines.pop_front() else {
                break;
            };
            ring.bytes -= cost(&old);
            ring.first += 1;
        }
        drop(ring);
        self.bump();
    }

    /// Registers a pipe that writes into the buffer until the returned
    /// guard is dropped; followers wait while any guard lives.
    pub(super) fn open_writer(self: &Arc<Self>) -> Writer {
        self.lock().writers += 1;
        Writer {
            buffer: self.clone(),
        }
    }

    /// The lines at or after `since`, then (with `follow`) new lines until
    /// no process writes any more.
    pub(super) fn read(self: &Arc<Self>, since: Option<SystemTime>, follow: bool) -> LogStream {
        let since = since.map(OffsetDateTime::from);
        let mut changes = self.changed.subscribe();
        changes.mark_unchanged();
        let cursor = {
            let ring = self.lock();
            let skip = since.map_or(0, |s| ring.lines.partition_point(|l| l.ts < s));
            ring.first + skip as u64
        };
        let reader = Reader {
            buffer: self.clone(),
            cursor,
            since,
            follow,
            changes,
            batch: VecDeque::new(),
        };
        Box::pin(futures::stream::unfold(reader, |mut r| async move {
            let line = r.next().await?;
            Some((Ok(line), r))
        }))
    }
}

/// A pipe writing into a [`LogBuffer`]; see [`LogBuffer::open_writer`].
#[derive(Debug)]
pub(super) struct Writer {
    buffer: Arc<LogBuffer>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        {
            let mut ring = self.buffer.lock();
            ring.writers = ring.writers.saturating_sub(1);
        }
        self.buffer.bump();
    }
}

struct Reader {
    buffer: Arc<LogBuffer>,
    cursor: u64,
    since: Option<OffsetDateTime>,
    follow: bool,
    changes: watch::Receiver<u64>,
    batch: VecDeque<LogLine>,
}

impl Reader {
    async fn next(&mut self) -> Option<LogLine> {
        loop {
            if let Some(line) = self.batch.pop_front() {
                if self.since.is_none_or(|s| line.ts >= s) {
                    return Some(line);
                }
                continue;
            }
            // Marked seen before looking, so a line pushed after the look
            // wakes the wait below.
            self.changes.borrow_and_update();
            let writers = {
                let ring = self.buffer.lock();
                if self.cursor < ring.first {
                    let missed = ring.first - self.cursor;
                    self.cursor = ring.first;
                    return Some(LogLine {
                        ts: ring.lines.front().map_or(ring.last_ts, |l| l.ts),
                        stream: LogSource::Stderr,
                        line: format!(
                            "[cameleer-local] {missed} log lines skipped: the reader fell behind"
                        ),
                        instance: None,
                    });
                }
                let start = (self.cursor - ring.first) as usize;
                self.batch
                    .extend(ring.lines.range(start..).take(BATCH).cloned());
                self.cursor += self.batch.len() as u64;
                debug_assert!(self.cursor <= ring.end());
                ring.writers
            };
            if !self.batch.is_empty() {
                continue;
            }
            if !self.follow || writers == 0 {
                return None;
            }
            self.changes.changed().await.ok()?;
        }
    }
}

/// Copies `pipe` into the writer's buffer line by line until it ends,
/// calling `on_line` on each line first (to notice what the JVM says about
/// itself).
pub(super) async fn pump(
    pipe: impl AsyncRead + Unpin,
    stream: LogSource,
    writer: Writer,
    on_line: impl Fn(&str),
) {
    let buffer = &writer.buffer;
    let mut reader = BufReader::with_capacity(16 * 1024, pipe);
    let mut line: Vec<u8> = Vec::new();
    let emit = |line: &mut Vec<u8>| {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let text = String::from_utf8_lossy(line).into_owned();
        on_line(&text);
        buffer.push(stream, text);
        line.clear();
    };
    loop {
        let available = match reader.fill_buf().await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if available.is_empty() {
            if !line.is_empty() {
                emit(&mut line);
            }
            break;
        }
        let room = MAX_LINE_BYTES - line.len();
        let window = &available[..available.len().min(room)];
        match window.iter().position(|b| *b == b'\n') {
            Some(newline) => {
                line.extend_from_slice(&window[..newline]);
                reader.consume(newline + 1);
                emit(&mut line);
            }
            None => {
                let taken = window.len();
                line.extend_from_slice(window);
                reader.consume(taken);
                if line.len() >= MAX_LINE_BYTES {
                    emit(&mut line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;

    async fn collect(stream: LogStream) -> Vec<String> {
        stream.map(|l| l.unwrap().line).collect().await
    }

    #[tokio::test]
    async fn since_returns_the_lines_from_that_time() {
        let buffer = Arc::new(LogBuffer::new(100, 1 << 20));
        buffer.push(LogSource::Stdout, "early".into());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let between = SystemTime::now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        buffer.push(LogSource::Stderr, "late".into());
        assert_eq!(collect(buffer.read(None, false)).await, ["early", "late"]);
        assert_eq!(collect(buffer.read(Some(between), false)).await, ["late"]);
        let stream: Vec<_> = buffer.read(Some(between), false).collect().await;
        assert_eq!(stream[0].as_ref().unwrap().stream, LogSource::Stderr);
    }

    #[tokio::test]
    async fn the_ring_keeps_the_newest_lines_within_its_bounds() {
        let buffer = Arc::new(LogBuffer::new(3, 1 << 20));
        for n in 0..10 {
            buffer.push(LogSource::Stdout, format!("line {n}"));
        }
        assert_eq!(
            collect(buffer.read(None, false)).await,
            ["line 7", "line 8", "line 9"]
        );
        let by_bytes = Arc::new(LogBuffer::new(1000, 0));
        for n in 0..4 {
            by_bytes.push(LogSource::Stdout, format!("{n}").repeat(40 * 1024));
        }
        let kept = collect(by_bytes.read(None, false)).await;
        assert_eq!(kept.len(), 1, "two 40 KiB lines do not fit in 64 KiB");
        assert!(kept[0].starts_with('3'));
    }

    #[tokio::test]
    async fn a_follower_gets_new_lines_and_ends_when_the_pipes_close() {
        let buffer = Arc::new(LogBuffer::new(100, 1 << 20));
        let (mut app, pipe) = tokio::io::duplex(64);
        let pumping = tokio::spawn(pump(pipe, LogSource::Stdout, buffer.open_writer(), |_| {}));
        use tokio::io::AsyncWriteExt;
        app.write_all(b"one\r\ntw").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut follow = buffer.read(None, true);
        assert_eq!(follow.next().await.unwrap().unwrap().line, "one");
        app.write_all(b"o\nthree without newline").await.unwrap();
        assert_eq!(follow.next().await.unwrap().unwrap().line, "two");
        drop(app);
        pumping.await.unwrap();
        assert_eq!(
            follow.next().await.unwrap().unwrap().line,
            "three without newline"
        );
        assert!(follow.next().await.is_none(), "the pipe closed");
        // With no writer left, a follower only reads what is there.
        assert_eq!(collect(buffer.read(None, true)).await.len(), 3);
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_is_told_what_it_missed() {
        let buffer = Arc::new(LogBuffer::new(4, 1 << 20));
        for n in 0..4 {
            buffer.push(LogSource::Stdout, format!("line {n}"));
        }
        let mut slow = buffer.read(None, false);
        assert_eq!(slow.next().await.unwrap().unwrap().line, "line 0");
        // It holds the batch it fetched; lines it had not fetched are evicted.
        for n in 4..10 {
            buffer.push(LogSource::Stdout, format!("line {n}"));
        }
        let rest = collect(slow).await;
        assert_eq!(rest[..3], ["line 1", "line 2", "line 3"]);
        assert!(rest[3].contains("2 log lines skipped"), "{}", rest[3]);
        assert_eq!(rest[4..], ["line 6", "line 7", "line 8", "line 9"]);
        let mut slow = buffer.read(None, false);
        for n in 10..20 {
            buffer.push(LogSource::Stdout, format!("line {n}"));
        }
        let marker = slow.next().await.unwrap().unwrap();
        assert!(
            marker.line.contains("10 log lines skipped"),
            "{}",
            marker.line
        );
        assert_eq!(
            collect(slow).await,
            ["line 16", "line 17", "line 18", "line 19"]
        );
    }

    #[tokio::test]
    async fn long_lines_are_cut_into_bounded_pieces() {
        let buffer = Arc::new(LogBuffer::new(100, 1 << 20));
        let mut text = vec![b'x'; MAX_LINE_BYTES * 2 + 10];
        text.extend_from_slice(b"\nshort\n");
        pump(&text[..], LogSource::Stdout, buffer.open_writer(), |_| {}).await;
        let lines = collect(buffer.read(None, false)).await;
        let lens: Vec<usize> = lines.iter().map(String::len).collect();
        assert_eq!(lens, [MAX_LINE_BYTES, MAX_LINE_BYTES, 10, 5]);
    }
}
