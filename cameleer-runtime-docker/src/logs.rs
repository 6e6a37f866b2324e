//! An app's output as a stream of [`LogLine`]s, from the engine's log API.
//!
//! The engine is asked for stdout and stderr with timestamps. Each frame it
//! sends is one log entry, tagged stdout or stderr by its header and
//! prefixed with an RFC 3339 timestamp with nanoseconds. The json-file
//! driver cuts lines longer than 16 KiB into several entries, each with its
//! own timestamp and only the last ending in `\n`, so lines are reassembled
//! per stream (stdout and stderr partials never mix) and stamped with the
//! time of their first piece.
//!
//! Memory stays bounded: [`lines`] pulls one frame from the engine only when
//! its reader asks for a line, and a line longer than [`MAX_LINE_BYTES`] is
//! delivered in pieces of at most that size rather than buffered whole.
//! [`read_ahead`] then reads those lines on a task of its own and hands them
//! to the caller in batches, at most [`READ_AHEAD_BYTES`] ahead of it (see
//! there for why).
//!
//! `since` is honoured to the nanosecond: the engine only takes whole
//! seconds, so it is asked for the second that contains `since` and the
//! lines before `since` in that second are dropped here.
//!
//! The request goes out as HTTP/1.0 (see [`engine_frames`]): the engine
//! flushes every log entry as its own HTTP/1.1 chunk, and hyper hands each
//! chunk from its connection task to the reader through a one-slot channel,
//! which on a multi-threaded runtime costs two cross-thread wake-ups per
//! line. An HTTP/1.0 body has no chunks: it is the connection's bytes, read
//! in buffer-sized pieces, until the engine closes it.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::time::SystemTime;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use cameleer_runtime::{Error, LogLine, LogSource, LogStream};
use futures::{FutureExt, Stream, StreamExt};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The longest line delivered in one piece, in bytes; longer lines come as
/// several [`LogLine`]s.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// How far, in bytes of log text, an app log stream reads ahead of its
/// reader at most: a batch being filled, two batches waiting, and the batch
/// the reader is on, each of at most 128 KiB plus one line of at most
/// [`MAX_LINE_BYTES`] that may overshoot it. About 768 KiB.
pub const READ_AHEAD_BYTES: usize = (BATCHES_IN_FLIGHT + 2) * (BATCH_BYTES + MAX_LINE_BYTES);

/// A batch is handed over when it holds this many bytes of log text…
const BATCH_BYTES: usize = 128 * 1024;
/// …or this many lines…
const BATCH_LINES: usize = 1024;
/// …or this long after its first line arrived: the most a line waits.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);
/// Full batches waiting for the reader.
const BATCHES_IN_FLIGHT: usize = 2;

/// Splits `2024-05-01T10:00:00.123456789Z message` into its time and the
/// message; `None` when the frame has no timestamp prefix.
pub(crate) fn split_timestamp(frame: &[u8]) -> Option<(OffsetDateTime, &[u8])> {
    // An RFC 3339 timestamp with nanoseconds and an offset is at most 35 bytes.
    let space = frame.iter().take(40).position(|b| *b == b' ')?;
    let stamp = std::str::from_utf8(&frame[..space]).ok()?;
    let ts = OffsetDateTime::parse(stamp, &Rfc3339).ok()?;
    Some((ts, &frame[space + 1..]))
}

#[derive(Debug, Default)]
struct Partial {
    ts: Option<OffsetDateTime>,
    bytes: Vec<u8>,
}

/// Turns log frames into whole lines, per stream.
#[derive(Debug)]
pub(crate) struct LineAssembler {
    stdout: Partial,
    stderr: Partial,
    max_line: usize,
    /// The last timestamp seen, for a frame that has none.
    last_ts: OffsetDateTime,
}

impl LineAssembler {
    pub(crate) fn new(max_line: usize) -> Self {
        Self {
            stdout: Partial::default(),
            stderr: Partial::default(),
            max_line: max_line.max(4),
            last_ts: OffsetDateTime::UNIX_EPOCH,
        }
    }

    /// Feeds one frame; completed lines are appended to `out`.
    pub(crate) fn push(&mut self, source: LogSource, frame: &[u8], out: &mut VecDeque<LogLine>) {
        let (ts, mut content) = match split_timestamp(frame) {
            Some((ts, rest)) => (ts, rest),
            None => (self.last_ts, frame),
        };
        self.last_ts = ts;
        let max_line = self.max_line;
        let partial = match source {
            LogSource::Stdout => &mut self.stdout,
            LogSource::Stderr => &mut self.stderr,
        };
        while !content.is_empty() {
            let ts = *partial.ts.get_or_insert(ts);
            match content.iter().position(|b| *b == b'\n') {
                Some(nl) => {
                    partial.bytes.extend_from_slice(&content[..nl]);
                    content = &content[nl + 1..];
                    flush_long(partial, source, ts, max_line, out);
                    out.push_back(line(source, ts, std::mem::take(&mut partial.bytes), true));
                    partial.ts = None;
                }
                None => {
                    partial.bytes.extend_from_slice(content);
                    content = &[];
                    flush_long(partial, source, ts, max_line, out);
                }
            }
        }
    }

    /// The unterminated rest of each stream, as lines, at the end of the logs.
    pub(crate) fn finish(&mut self, out: &mut VecDeque<LogLine>) {
        for (source, partial) in [
            (LogSource::Stdout, &mut self.stdout),
            (LogSource::Stderr, &mut self.stderr),
        ] {
            if !partial.bytes.is_empty() {
                let ts = partial.ts.unwrap_or(self.last_ts);
                out.push_back(line(source, ts, std::mem::take(&mut partial.bytes), true));
            }
            partial.ts = None;
        }
    }
}

/// Emits full `max_line` pieces of a partial that grew too long, cut at a
/// UTF-8 character boundary.
fn flush_long(
    partial: &mut Partial,
    source: LogSource,
    ts: OffsetDateTime,
    max_line: usize,
    out: &mut VecDeque<LogLine>,
) {
    while partial.bytes.len() > max_line {
        let mut cut = max_line;
        // Back up over continuation bytes (10xxxxxx), at most 3.
        while cut > max_line - 3 && (partial.bytes[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        let rest = partial.bytes.split_off(cut);
        let piece = std::mem::replace(&mut partial.bytes, rest);
        out.push_back(line(source, ts, piece, false));
    }
}

fn line(source: LogSource, ts: OffsetDateTime, mut bytes: Vec<u8>, complete: bool) -> LogLine {
    if complete && bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    let line = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    LogLine {
        ts,
        stream: source,
        line,
        // The orchestrator tags the lines of each instance.
        instance: None,
    }
}

/// The engine's log frames of container `id`, asked for over HTTP/1.0.
///
/// Over HTTP/1.1 the engine sends every entry as its own chunk, and hyper
/// passes each chunk from its connection task to the reader's task: two
/// task wake-ups per line, which a multi-threaded runtime turns into
/// cross-thread wake-ups (measured for 1,000,000 lines: 21 s and 15 s of
/// CPU, against 10 s for `docker logs`). Over HTTP/1.0 the body is not
/// chunked (the engine closes the connection at its end), hyper reads it
/// in buffer-sized pieces, and the same lines take 10 s and 3.5 s of CPU.
/// The cost is the connection: it closes with the stream instead of going
/// back to the pool, which a log stream, holding its connection as long as
/// it is read, does not miss.
///
/// The request goes through a clone of `docker` with a request modifier,
/// which replaces any modifier the host set on its client for this one
/// request.
pub(crate) fn engine_frames(
    docker: &Docker,
    id: &str,
    options: LogsOptions,
) -> impl Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send + 'static {
    docker
        .clone()
        .with_request_modifier(|mut request| {
            *request.version_mut() = http::Version::HTTP_10;
            request
        })
        .logs(id, Some(options))
}

/// The whole second to ask the engine for, given `since`.
pub(crate) fn engine_since(since: Option<SystemTime>) -> i32 {
    since
        .and_then(|s| s.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX))
}

/// Adapts the engine's frame stream into a [`LogStream`] of lines at or after
/// `since`. Pull-based: nothing is read from the engine before it is asked for.
pub(crate) fn lines<S>(frames: S, since: Option<SystemTime>, max_line: usize) -> LogStream
where
    S: Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send + 'static,
{
    let since = since.map(OffsetDateTime::from);
    struct State<S> {
        frames: std::pin::Pin<Box<S>>,
        assembler: LineAssembler,
        ready: VecDeque<LogLine>,
        /// The engine's error, delivered after the lines assembled before it.
        error: Option<Error>,
        done: bool,
    }
    let state = State {
        frames: Box::pin(frames),
        assembler: LineAssembler::new(max_line),
        ready: VecDeque::new(),
        error: None,
        done: false,
    };
    futures::stream::unfold(state, move |mut st| async move {
        loop {
            while let Some(line) = st.ready.pop_front() {
                if since.is_none_or(|s| line.ts >= s) {
                    return Some((Ok(line), st));
                }
            }
            if st.done {
                return st.error.take().map(|e| (Err(e), st));
            }
            match st.frames.next().await {
                Some(Ok(frame)) => {
                    let source = match &frame {
                        LogOutput::StdErr { .. } => LogSource::Stderr,
                        // Console (a TTY) and stdin echo count as stdout.
                        _ => LogSource::Stdout,
                    };
                    st.assembler.push(source, frame.as_ref(), &mut st.ready);
                }
                Some(Err(e)) => {
                    st.done = true;
                    st.error = Some(crate::engine::backend("reading the app's logs", e));
                    st.assembler.finish(&mut st.ready);
                }
                None => {
                    st.done = true;
                    st.assembler.finish(&mut st.ready);
                }
            }
        }
    })
    .boxed()
}

/// Reads `lines` on a task of its own and hands them to the returned stream
/// in batches: a batch goes when it holds [`BATCH_LINES`] lines or
/// [`BATCH_BYTES`] bytes, or [`BATCH_WINDOW`] after its first line, and at
/// most [`BATCHES_IN_FLIGHT`] batches wait for the reader, so the stream is
/// never more than [`READ_AHEAD_BYTES`] ahead of it.
///
/// Why a task: the engine's bytes arrive on hyper's connection task, which
/// runs on a worker of the runtime, while the caller may poll the stream
/// anywhere, often from a thread that is not a worker (`block_on`, the main
/// thread of a CLI). Polled directly, every read from the socket woke the
/// caller's thread and every poll of the caller woke a worker back: two
/// cross-thread wake-ups per read of a few kilobytes, which cost 1,000,000
/// lines 4.9 s of system time (the caller on `block_on`) against 1.7 s (the
/// caller on a worker). Here the reading task and the connection task
/// wake each other on the same worker, and the caller is woken at most once
/// per batch. The window is what makes the batches: a reader that keeps up
/// with the engine would otherwise be woken once per socket read, as before.
///
/// Dropping the returned stream stops the task, and with it the engine
/// request, also while the engine has nothing to send (a followed log of a
/// quiet app). If reading panics, the lines read before still come, then an
/// error, rather than the stream ending quietly early. Must be called within
/// a Tokio runtime.
pub(crate) fn read_ahead(mut lines: LogStream) -> LogStream {
    type Batch = Vec<Result<LogLine, Error>>;
    let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(BATCHES_IN_FLIGHT);
    tokio::spawn(async move {
        let mut batch = Batch::new();
        let mut bytes = 0;
        let mut deadline = tokio::time::Instant::now();
        loop {
            let next = if batch.is_empty() {
                tokio::select! {
                    () = tx.closed() => return,
                    next = AssertUnwindSafe(lines.next()).catch_unwind() => next,
                }
            } else {
                tokio::select! {
                    biased;
                    next = AssertUnwindSafe(lines.next()).catch_unwind() => next,
                    () = tokio::time::sleep_until(deadline) => {
                        bytes = 0;
                        if tx.send(std::mem::take(&mut batch)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            };
            let item = match next {
                Ok(Some(item)) => item,
                Ok(None) => {
                    if !batch.is_empty() {
                        let _ = tx.send(batch).await;
                    }
                    return;
                }
                // A bug below (the engine client, the line assembler): the
                // lines read so far still go out, then the stream ends with
                // an error rather than quietly early.
                Err(_panic) => {
                    batch.push(Err(Error::backend(
                        "reading the app's logs",
                        "the task reading them panicked",
                    )));
                    let _ = tx.send(batch).await;
                    return;
                }
            };
            if batch.is_empty() {
                deadline = tokio::time::Instant::now() + BATCH_WINDOW;
            }
            bytes += item.as_ref().map_or(0, |l| l.line.len());
            batch.push(item);
            if batch.len() >= BATCH_LINES || bytes >= BATCH_BYTES {
                bytes = 0;
                if tx.send(std::mem::take(&mut batch)).await.is_err() {
                    return;
                }
            }
        }
    });
    futures::stream::unfold(
        (rx, Vec::new().into_iter()),
        |(mut rx, mut batch): (_, std::vec::IntoIter<_>)| async move {
            loop {
                if let Some(item) = batch.next() {
                    return Some((item, (rx, batch)));
                }
                batch = rx.recv().await?.into_iter();
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn out(ts: &str, text: &str) -> LogOutput {
        LogOutput::StdOut {
            message: Bytes::from(format!("{ts} {text}")),
        }
    }

    fn err(ts: &str, text: &str) -> LogOutput {
        LogOutput::StdErr {
            message: Bytes::from(format!("{ts} {text}")),
        }
    }

    async fn collect(
        frames: Vec<LogOutput>,
        since: Option<SystemTime>,
        max: usize,
    ) -> Vec<LogLine> {
        let s = futures::stream::iter(frames.into_iter().map(Ok));
        lines(s, since, max)
            .map(|l| l.unwrap())
            .collect::<Vec<_>>()
            .await
    }

    #[test]
    fn timestamps_parse_with_nanoseconds() {
        let (ts, rest) = split_timestamp(b"2026-01-02T03:04:05.123456789Z hello world").unwrap();
        assert_eq!(ts.nanosecond(), 123_456_789);
        assert_eq!(rest, b"hello world");
        let (ts, _) = split_timestamp(b"2026-01-02T03:04:05Z x").unwrap();
        assert_eq!(ts.nanosecond(), 0);
        assert!(split_timestamp(b"no timestamp here").is_none());
    }

    #[tokio::test]
    async fn lines_are_tagged_and_reassembled_per_stream() {
        let t1 = "2026-01-02T03:04:05.000000001Z";
        let t2 = "2026-01-02T03:04:05.000000002Z";
        let t3 = "2026-01-02T03:04:05.000000003Z";
        let got = collect(
            vec![
                out(t1, "first half, "),
                err(t2, "an error\n"),
                out(t3, "second half\n"),
                out(t3, "crlf\r\n"),
                out(t3, "no newline at the end"),
            ],
            None,
            MAX_LINE_BYTES,
        )
        .await;
        let view: Vec<_> = got.iter().map(|l| (l.stream, l.line.as_str())).collect();
        assert_eq!(
            view,
            [
                (LogSource::Stderr, "an error"),
                (LogSource::Stdout, "first half, second half"),
                (LogSource::Stdout, "crlf"),
                (LogSource::Stdout, "no newline at the end"),
            ]
        );
        // A reassembled line carries the time of its first piece.
        assert_eq!(got[1].ts.nanosecond(), 1);
    }

    #[tokio::test]
    async fn long_lines_come_in_bounded_pieces_cut_at_char_boundaries() {
        let ts = "2026-01-02T03:04:05Z";
        let long = "é".repeat(10); // 20 bytes
        let got = collect(vec![out(ts, &format!("{long}\n"))], None, 7).await;
        assert!(got.iter().all(|l| l.line.len() <= 7), "{got:?}");
        assert_eq!(
            got.iter().map(|l| l.line.as_str()).collect::<String>(),
            long
        );
    }

    #[tokio::test]
    async fn since_is_honoured_below_the_second() {
        let base = OffsetDateTime::parse("2026-01-02T03:04:05Z", &Rfc3339).unwrap();
        let frames = (0..10)
            .map(|i| {
                let ts = (base + Duration::from_millis(100 * i))
                    .format(&Rfc3339)
                    .unwrap();
                out(&ts, &format!("line {i}\n"))
            })
            .collect();
        let since = SystemTime::from(base + Duration::from_millis(450));
        let got = collect(frames, Some(since), MAX_LINE_BYTES).await;
        let texts: Vec<_> = got.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(texts, ["line 5", "line 6", "line 7", "line 8", "line 9"]);
        assert_eq!(
            engine_since(Some(since)),
            i32::try_from(base.unix_timestamp()).unwrap()
        );
    }

    #[tokio::test]
    async fn frames_are_pulled_only_as_lines_are_read() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        // An app that writes without end: the stream must not read ahead.
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let endless = futures::stream::repeat_with(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(out("2026-01-02T03:04:05Z", "spam\n"))
        });
        let mut stream = lines(endless, None, MAX_LINE_BYTES);
        for _ in 0..10 {
            stream.next().await.unwrap().unwrap();
        }
        assert_eq!(pulled.load(Ordering::SeqCst), 10);
    }

    #[tokio::test]
    async fn an_engine_error_comes_after_the_lines_before_it() {
        let ts = "2026-01-02T03:04:05Z";
        let s = futures::stream::iter(vec![
            Ok(out(ts, "a\n")),
            Ok(out(ts, "partial")),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 500,
                message: "boom".into(),
            }),
            Ok(out(ts, "never\n")),
        ]);
        let got: Vec<_> = lines(s, None, MAX_LINE_BYTES).collect().await;
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap().line, "a");
        assert_eq!(got[1].as_ref().unwrap().line, "partial");
        assert_eq!(got[2].as_ref().unwrap_err().code(), "backend_error");
    }

    fn text_line(text: String) -> Result<LogLine, Error> {
        Ok(LogLine {
            ts: OffsetDateTime::UNIX_EPOCH,
            stream: LogSource::Stdout,
            line: text,
            instance: None,
        })
    }

    /// Sets its flag when dropped: tells that a source stream was dropped.
    struct DropFlag(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    const PATIENCE: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn read_ahead_delivers_every_line_and_error_in_order() {
        let items: Vec<Result<LogLine, Error>> = (0..5000)
            .map(|i| {
                if i == 2500 {
                    Err(Error::backend("boom", std::io::Error::other("boom")))
                } else {
                    text_line(format!("line {i}"))
                }
            })
            .collect();
        let got: Vec<_> = read_ahead(futures::stream::iter(items).boxed())
            .collect()
            .await;
        assert_eq!(got.len(), 5000);
        for (i, item) in got.iter().enumerate() {
            match item {
                Ok(l) => assert_eq!(l.line, format!("line {i}")),
                Err(e) => {
                    assert_eq!(i, 2500);
                    assert_eq!(e.code(), "backend_error");
                }
            }
        }
    }

    #[tokio::test]
    async fn read_ahead_hands_over_a_lone_line_while_the_source_stays_quiet() {
        // A followed log of a quiet app: one line, then nothing for good.
        let source = futures::stream::iter([text_line("hello".into())])
            .chain(futures::stream::pending())
            .boxed();
        let mut stream = read_ahead(source);
        let first = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("the line is handed over without the source ending");
        assert_eq!(first.unwrap().unwrap().line, "hello");
    }

    #[tokio::test]
    async fn dropping_the_stream_stops_reading_even_from_a_quiet_source() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};

        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let source = futures::stream::pending::<Result<LogLine, Error>>()
            .map(move |l| {
                let _keep = &flag;
                l
            })
            .boxed();
        let stream = read_ahead(source);
        tokio::task::yield_now().await;
        assert!(!dropped.load(Ordering::SeqCst), "still read while wanted");
        drop(stream);
        tokio::time::timeout(PATIENCE, async {
            while !dropped.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the reading task drops its source once the stream is gone");
    }

    #[tokio::test]
    async fn read_ahead_stays_within_its_bound_for_a_reader_that_stops() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        // An app that writes without end, 1 KiB lines; the reader takes one
        // line and stops reading.
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let endless = futures::stream::repeat_with(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            text_line("x".repeat(1024))
        })
        .boxed();
        let mut stream = read_ahead(endless);
        stream.next().await.unwrap().unwrap();
        // Let the task run until it blocks on the full channel.
        let mut last = usize::MAX;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = pulled.load(Ordering::SeqCst);
            if now == last {
                break;
            }
            last = now;
        }
        let bytes = pulled.load(Ordering::SeqCst) * 1024;
        assert!(
            bytes <= READ_AHEAD_BYTES,
            "read {bytes} bytes ahead, bound {READ_AHEAD_BYTES}"
        );
        // It did read ahead (batches are the point), and reading on resumes.
        assert!(bytes > BATCH_BYTES, "read only {bytes} bytes ahead");
        for _ in 0..1000 {
            stream.next().await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn a_panic_while_reading_ends_the_stream_with_an_error() {
        let source = futures::stream::iter([text_line("before".into())])
            .chain(futures::stream::poll_fn(
                |_| -> std::task::Poll<Option<Result<LogLine, Error>>> {
                    panic!("a bug in the source")
                },
            ))
            .boxed();
        let got: Vec<_> = read_ahead(source).collect().await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap().line, "before");
        assert_eq!(got[1].as_ref().unwrap_err().code(), "backend_error");
    }
}
