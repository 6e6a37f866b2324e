//! An [`ArtifactStore`] of content-addressed files.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use cameleer_runtime::{
    ArtifactInfo, ArtifactStore, ArtifactUpload, ByteStream, Error, Result, Sha256Digest,
    StoredArtifact,
};
use futures::StreamExt;

use super::hashed_file::{Step, WriteFailure, write_file};

/// JARs as files named by their SHA-256 under `root/sha256/ab/abcdef…`.
///
/// An upload is written to `root/tmp/`, flushed to disk, and renamed into
/// place, under the SHA-256 it carries ([`ArtifactUpload::sha256`], the
/// platform's validator computed it), only when its stream ends without
/// error; so a crash or a rejected upload never leaves half an artifact
/// where readers look. Leftover temporary files from a crash are removed by
/// [`open`](Self::open). The bytes are not hashed again unless the store
/// [`verifies`](Self::verifying) digests.
///
/// Concurrent uploads of the same bytes each write their own temporary
/// file and rename it onto the same name: the last rename wins with
/// identical content, and a reader never sees a partial file. A full disk
/// (`ENOSPC`, `EDQUOT`) is `insufficient_storage`, with the temporary file
/// removed. An artifact's modification time is when it was (last) stored:
/// a rename keeps the time of its temporary file's last write.
#[derive(Debug, Clone)]
pub struct FsArtifactStore {
    root: PathBuf,
    max_size: u64,
    verify: bool,
}

fn io_err(what: &str, e: io::Error) -> Error {
    Error::from_io(format!("artifact store: {what}"), e)
}

impl FsArtifactStore {
    /// Opens the store under `root`, creating it and removing temporary
    /// files a previous process left behind. Uploads over `max_size` bytes
    /// are refused with `artifact_too_large`.
    pub async fn open(root: impl AsRef<Path>, max_size: u64) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let tmp = root.join("tmp");
        if tokio::fs::try_exists(&tmp).await.unwrap_or(false) {
            tokio::fs::remove_dir_all(&tmp)
                .await
                .map_err(|e| io_err("clearing tmp", e))?;
        }
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| io_err("creating tmp", e))?;
        tokio::fs::create_dir_all(root.join("sha256"))
            .await
            .map_err(|e| io_err("creating sha256", e))?;
        Ok(Self {
            root,
            max_size,
            verify: false,
        })
    }

    /// The same store, hashing each upload as it writes it and refusing
    /// one whose bytes differ from the digest it carries
    /// (`checksum_mismatch`, nothing stored): for a store shared with
    /// writers other than the platform. Costs a second hash of every
    /// upload.
    pub fn verifying(mut self) -> Self {
        self.verify = true;
        self
    }

    /// Where the artifact with this digest lives (whether or not it exists).
    pub fn path_of(&self, sha256: &Sha256Digest) -> PathBuf {
        let hex = sha256.to_string();
        self.root.join("sha256").join(&hex[..2]).join(hex)
    }

    async fn write_temp(&self, tmp: &Path, upload: &mut ArtifactUpload) -> Result<ArtifactInfo> {
        match write_file(tmp, &mut *upload, self.max_size, self.verify).await {
            Ok((actual, size)) => {
                let sha256 = upload.finished_sha256()?;
                if let Some(actual) = actual
                    && actual != sha256
                {
                    return Err(Error::ChecksumMismatch {
                        expected: sha256,
                        actual,
                    });
                }
                Ok(ArtifactInfo { sha256, size })
            }
            Err(WriteFailure::TooLarge) => Err(Error::ArtifactTooLarge {
                limit: self.max_size,
            }),
            Err(WriteFailure::Io(step, e)) => {
                let what = match step {
                    Step::Create => "creating temp file",
                    Step::Read => "reading upload",
                    Step::Write => "writing temp file",
                    Step::Sync => "syncing temp file",
                };
                Err(io_err(what, e))
            }
        }
    }
}

#[async_trait]
impl ArtifactStore for FsArtifactStore {
    async fn put(&self, mut upload: ArtifactUpload) -> Result<ArtifactInfo> {
        let tmp = self
            .root
            .join("tmp")
            .join(format!("upload-{}", uuid::Uuid::new_v4()));
        let info = match self.write_temp(&tmp, &mut upload).await {
            Ok(info) => info,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let dest = self.path_of(&info.sha256);
        let dir = dest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.root.clone());
        let placed = async {
            tokio::fs::create_dir_all(&dir).await?;
            // Same content, same name: renaming over an existing copy is
            // harmless and keeps one file.
            tokio::fs::rename(&tmp, &dest).await?;
            // Make the rename itself durable.
            tokio::fs::File::open(&dir).await?.sync_all().await
        }
        .await;
        if let Err(e) = placed {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io_err("placing artifact", e));
        }
        Ok(info)
    }

    async fn get(&self, sha256: &Sha256Digest) -> Result<ByteStream> {
        match tokio::fs::File::open(self.path_of(sha256)).await {
            Ok(file) => Ok(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).boxed()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::not_found("artifact", sha256))
            }
            Err(e) => Err(io_err("opening artifact", e)),
        }
    }

    async fn stat(&self, sha256: &Sha256Digest) -> Result<Option<ArtifactInfo>> {
        match tokio::fs::metadata(self.path_of(sha256)).await {
            Ok(meta) => Ok(Some(ArtifactInfo {
                sha256: *sha256,
                size: meta.len(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat", e)),
        }
    }

    async fn list(&self) -> Result<Vec<StoredArtifact>> {
        let root = self.root.join("sha256");
        tokio::task::spawn_blocking(move || list_dir(&root))
            .await
            .map_err(|e| Error::Internal(format!("listing artifacts: {e}")))?
            .map_err(|e| io_err("listing", e))
    }

    async fn delete(&self, sha256: &Sha256Digest) -> Result<bool> {
        match tokio::fs::remove_file(self.path_of(sha256)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("deleting", e)),
        }
    }
}

/// Every file under `root/ab/abcdef…` whose name is a digest; others
/// (nothing of ours) are left out.
fn list_dir(root: &Path) -> io::Result<Vec<StoredArtifact>> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(root)? {
        let shard = shard?;
        if !shard.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(shard.path())? {
            let file = file?;
            let Some(sha256) = file
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Sha256Digest>().ok())
            else {
                continue;
            };
            let meta = match file.metadata() {
                Ok(meta) => meta,
                // Deleted meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.push(StoredArtifact {
                info: ArtifactInfo {
                    sha256,
                    size: meta.len(),
                },
                stored_at: meta.modified()?.into(),
            });
        }
    }
    out.sort_by_key(|a| a.info.sha256);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn stream(chunks: Vec<io::Result<&'static [u8]>>) -> ByteStream {
        futures::stream::iter(chunks.into_iter().map(|c| c.map(Bytes::from_static))).boxed()
    }

    /// An upload of `chunks` carrying the digest of their bytes (up to an
    /// error), as the platform's validator computes it.
    fn upload(chunks: Vec<io::Result<&'static [u8]>>) -> ArtifactUpload {
        let bytes: Vec<u8> = chunks
            .iter()
            .filter_map(|c| c.as_ref().ok())
            .flat_map(|c| c.iter().copied())
            .collect();
        ArtifactUpload::new(stream(chunks), Sha256Digest::of(&bytes))
    }

    async fn read_all(mut s: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    fn files_under(dir: &Path) -> usize {
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    }

    #[tokio::test]
    async fn stores_by_digest_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsArtifactStore::open(dir.path(), 1 << 20).await.unwrap();
        let info = store
            .put(upload(vec![Ok(b"PK\x03\x04"), Ok(b"rest")]))
            .await
            .unwrap();
        assert_eq!(info.sha256, Sha256Digest::of(b"PK\x03\x04rest"));
        assert_eq!(info.size, 8);
        assert_eq!(
            read_all(store.get(&info.sha256).await.unwrap()).await,
            b"PK\x03\x04rest"
        );
        assert_eq!(store.stat(&info.sha256).await.unwrap(), Some(info));
        // Idempotent.
        assert_eq!(
            store
                .put(upload(vec![Ok(b"PK\x03\x04rest")]))
                .await
                .unwrap(),
            info
        );
        assert_eq!(files_under(&dir.path().join("tmp")), 0);
    }

    #[tokio::test]
    async fn a_failed_stream_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsArtifactStore::open(dir.path(), 1 << 20).await.unwrap();
        let err = store
            .put(upload(vec![
                Ok(b"partial"),
                Err(io::Error::other("rejected")),
            ]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "storage_error");
        assert_eq!(
            store.stat(&Sha256Digest::of(b"partial")).await.unwrap(),
            None
        );
        assert_eq!(files_under(&dir.path().join("tmp")), 0);
        assert_eq!(files_under(&dir.path().join("sha256")), 0);
    }

    #[tokio::test]
    async fn too_large_is_refused_and_unknown_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsArtifactStore::open(dir.path(), 4).await.unwrap();
        let err = store
            .put(upload(vec![Ok(b"abc"), Ok(b"de")]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "artifact_too_large");
        assert_eq!(files_under(&dir.path().join("tmp")), 0);
        let err = store.get(&Sha256Digest::of(b"nope")).await.err().unwrap();
        assert_eq!(err.code(), "not_found");
    }

    #[tokio::test]
    async fn a_verifying_store_refuses_bytes_that_are_not_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsArtifactStore::open(dir.path(), 1 << 20)
            .await
            .unwrap()
            .verifying();
        let claimed = Sha256Digest::of(b"something else");
        let lying = ArtifactUpload::new(stream(vec![Ok(b"PK\x03\x04")]), claimed);
        let err = store.put(lying).await.unwrap_err();
        assert_eq!(err.code(), "checksum_mismatch", "{err}");
        assert_eq!(store.stat(&claimed).await.unwrap(), None);
        assert_eq!(files_under(&dir.path().join("tmp")), 0);
        assert_eq!(files_under(&dir.path().join("sha256")), 0);
        let info = store.put(upload(vec![Ok(b"PK\x03\x04")])).await.unwrap();
        assert_eq!(info.sha256, Sha256Digest::of(b"PK\x03\x04"));
    }

    #[tokio::test]
    async fn lists_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsArtifactStore::open(dir.path(), 1 << 20).await.unwrap();
        assert!(store.list().await.unwrap().is_empty());
        let a = store.put(upload(vec![Ok(b"PK\x03\x04a")])).await.unwrap();
        let b = store.put(upload(vec![Ok(b"PK\x03\x04b")])).await.unwrap();
        let listed = store.list().await.unwrap();
        let mut expected = vec![a, b];
        expected.sort_by_key(|i| i.sha256);
        assert_eq!(listed.iter().map(|s| s.info).collect::<Vec<_>>(), expected);
        let age = time::OffsetDateTime::now_utc() - listed[0].stored_at;
        assert!(age < time::Duration::minutes(5) && age > -time::Duration::minutes(5));
        assert!(store.delete(&a.sha256).await.unwrap());
        assert!(!store.delete(&a.sha256).await.unwrap());
        assert_eq!(store.stat(&a.sha256).await.unwrap(), None);
        assert_eq!(store.list().await.unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_uploads_of_the_same_bytes_keep_one_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsArtifactStore::open(dir.path(), 1 << 24).await.unwrap();
        let body: &'static [u8] = Box::leak(vec![7u8; 1 << 20].into_boxed_slice());
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let chunks = body.chunks(4096).map(Ok).collect();
                    store.put(upload(chunks)).await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().size, 1 << 20);
        }
        let sha = Sha256Digest::of(body);
        assert_eq!(read_all(store.get(&sha).await.unwrap()).await, body);
        assert_eq!(store.list().await.unwrap().len(), 1);
        assert_eq!(files_under(&dir.path().join("tmp")), 0);
    }

    #[tokio::test]
    async fn open_clears_leftover_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::write(dir.path().join("tmp/upload-crashed"), b"half").unwrap();
        FsArtifactStore::open(dir.path(), 10).await.unwrap();
        assert_eq!(files_under(&dir.path().join("tmp")), 0);
    }
}
