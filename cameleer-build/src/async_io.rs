//! Thin async adapters (feature `async`): the synchronous core runs on
//! Tokio's blocking pool, fed or drained through a bounded channel, so
//! memory stays bounded and the async side never blocks.

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, oneshot};

use crate::{
    BuildContext, Sha256Digest, ValidatedJar, ValidationError, ValidationPolicy, validate_jar,
};

/// Chunk size between the async and the blocking side.
const CHUNK: usize = 64 << 10;
/// Chunks in flight: at most `DEPTH * CHUNK` bytes are buffered.
const DEPTH: usize = 8;

/// [`validate_jar`] for an async reader (an HTTP body, an object store
/// download). The reader is read on the calling task and its bytes handed
/// to the validator on Tokio's blocking pool through a bounded channel, so
/// at most 512 KiB are in flight. Must be called within a Tokio runtime.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use cameleer_build::{validate_jar_async, ValidationPolicy};
///
/// let file = tokio::fs::File::open("app.jar").await?;
/// let jar = validate_jar_async(file, &ValidationPolicy::default()).await?;
/// println!("{}", jar.sha256);
/// # Ok(()) }
/// ```
pub async fn validate_jar_async<R>(
    mut reader: R,
    policy: &ValidationPolicy,
) -> Result<ValidatedJar, ValidationError>
where
    R: AsyncRead + Unpin,
{
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(DEPTH);
    let policy = policy.clone();
    let task = tokio::task::spawn_blocking(move || {
        validate_jar(
            ChannelReader {
                rx,
                current: Bytes::new(),
            },
            &policy,
        )
    });
    let feed = async move {
        loop {
            let mut buf = BytesMut::with_capacity(CHUNK);
            let item = match reader.read_buf(&mut buf).await {
                Ok(0) => return,
                Ok(_) => Ok(buf.freeze()),
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            // A closed channel means the validator has decided already.
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    };
    let ((), joined) = futures::join!(feed, task);
    joined.map_err(|e| {
        ValidationError::Io(io::Error::other(format!("validation task failed: {e}")))
    })?
}

/// The blocking side of the channel as a `Read`.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(item) => self.current = item?,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The build context as an async byte stream, for a Docker client's build
/// body, and its digest once the stream is complete.
pub struct ContextStream {
    /// The tar, in chunks of about 64 KiB.
    pub stream: std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'static>>,
    /// Resolves to the tar's SHA-256 after the stream has ended without
    /// error (an error or a dropped stream leaves it unresolved: the sender
    /// is dropped and awaiting it fails).
    pub digest: oneshot::Receiver<Sha256Digest>,
}

impl std::fmt::Debug for ContextStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextStream").finish_non_exhaustive()
    }
}

impl<A, J> BuildContext<A, J>
where
    A: Read + Send + 'static,
    J: Read + Send + 'static,
{
    /// Streams the tar from Tokio's blocking pool through a bounded channel
    /// (at most 512 KiB in flight; a slow consumer slows the producer).
    /// Dropping the stream stops the producer. Must be called within a
    /// Tokio runtime.
    pub fn into_stream(self) -> ContextStream {
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(DEPTH);
        let (digest_tx, digest_rx) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let mut writer = ChannelWriter {
                tx: tx.clone(),
                buf: BytesMut::with_capacity(CHUNK),
            };
            match self.write_to(&mut writer) {
                Ok(digest) => {
                    // Nobody may be waiting for the digest; that is fine.
                    let _ = digest_tx.send(digest);
                }
                Err(e) => {
                    // The consumer may have gone away; then nobody cares.
                    let _ = tx.blocking_send(Err(e));
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        ContextStream {
            stream: Box::pin(stream),
            digest: digest_rx,
        }
    }
}

/// The producing side of the channel as a `Write`, in 64 KiB chunks.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: BytesMut,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK);
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the build context stream was dropped",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
