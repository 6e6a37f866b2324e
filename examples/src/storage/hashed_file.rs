//! Streaming bytes into a file (while hashing them, when their digest is
//! not known yet): what both the artifact store and the local-process
//! builder do before they rename a file into place.

use std::io;
use std::path::Path;

use cameleer_runtime::{ByteStream, Sha256Digest};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// The step of [`write_hashed`] that failed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    Create,
    Read,
    Write,
    Sync,
}

/// Why [`write_hashed`] failed; each caller words it in its own terms.
#[derive(Debug)]
pub(crate) enum WriteFailure {
    /// More than the limit arrived.
    TooLarge,
    /// An I/O error at `Step`.
    Io(Step, io::Error),
}

/// Creates `path` and writes `data` to it, hashing it on the way and
/// stopping once more than `limit` bytes arrive; flushes it to disk. Returns
/// the digest and size. On failure the file may be left half-written: the
/// caller removes it.
pub(crate) async fn write_hashed(
    path: &Path,
    data: ByteStream,
    limit: u64,
) -> Result<(Sha256Digest, u64), WriteFailure> {
    let (digest, size) = write_file(path, data, limit, true).await?;
    Ok((digest.expect("hashed"), size))
}

/// [`write_hashed`], hashing only when `hash` (the digest is `None`
/// otherwise): for bytes whose digest is known already.
pub(crate) async fn write_file(
    path: &Path,
    mut data: impl futures::Stream<Item = io::Result<bytes::Bytes>> + Unpin,
    limit: u64,
    hash: bool,
) -> Result<(Option<Sha256Digest>, u64), WriteFailure> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| WriteFailure::Io(Step::Create, e))?;
    let mut hasher = hash.then(Sha256::new);
    let mut size = 0u64;
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(|e| WriteFailure::Io(Step::Read, e))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(WriteFailure::TooLarge);
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| WriteFailure::Io(Step::Write, e))?;
    }
    file.sync_all()
        .await
        .map_err(|e| WriteFailure::Io(Step::Sync, e))?;
    Ok((hasher.map(|h| Sha256Digest::from(h.finalize())), size))
}
