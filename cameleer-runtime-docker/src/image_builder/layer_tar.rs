//! The tar streams of the Docker routes: a root-owned ustar header, and
//! the one-file tar of the app JAR, checked (size, SHA-256) as it streams.

use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cameleer_build::Sha256Digest;
use cameleer_runtime::{ByteStream, Error, Result};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

/// A tar block.
pub(super) const BLOCK: usize = 512;

/// A ustar header of a root-owned entry.
pub(super) fn header(
    path: &str,
    size: u64,
    mode: u32,
    kind: tar::EntryType,
) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path.trim_start_matches('/'))?;
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(kind);
    header.set_cksum();
    Ok(header)
}

/// A tar of one root-owned 0644 file at `path` whose content is `jar`, as
/// a stream: the header, the JAR's chunks as they come, the padding and
/// the end of the archive. The JAR must be exactly `size` bytes with the
/// SHA-256 `expected`; otherwise the stream ends in an error (before the
/// end of the archive, so the engine extracts nothing whole) and
/// `failure` says why.
pub(super) fn jar_tar(
    path: &str,
    jar: ByteStream,
    size: u64,
    expected: Sha256Digest,
    failure: Arc<Mutex<Option<String>>>,
) -> Result<impl Stream<Item = io::Result<Bytes>> + Send + 'static> {
    let header = header(path, size, 0o644, tar::EntryType::Regular)
        .map_err(|e| Error::BuildFailed(format!("the tar header of {path}: {e}")))?;
    enum Stage {
        Header,
        Body,
        Done,
    }
    struct State {
        stage: Stage,
        header: [u8; BLOCK],
        jar: ByteStream,
        size: u64,
        sent: u64,
        hasher: Sha256,
        expected: Sha256Digest,
        failure: Arc<Mutex<Option<String>>>,
    }
    fn fail(mut st: State, why: String) -> Option<(io::Result<Bytes>, State)> {
        st.stage = Stage::Done;
        let error = io::Error::new(io::ErrorKind::InvalidData, why.clone());
        st.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
        Some((Err(error), st))
    }
    let mut block = [0u8; BLOCK];
    block.copy_from_slice(header.as_bytes());
    let state = State {
        stage: Stage::Header,
        header: block,
        jar,
        size,
        sent: 0,
        hasher: Sha256::new(),
        expected,
        failure,
    };
    Ok(futures::stream::unfold(state, |mut st| async move {
        match st.stage {
            Stage::Header => {
                st.stage = Stage::Body;
                let header = Bytes::copy_from_slice(&st.header);
                Some((Ok(header), st))
            }
            Stage::Body => match st.jar.next().await {
                Some(Ok(chunk)) => {
                    let len = chunk.len() as u64;
                    if st.sent + len > st.size {
                        let why = format!(
                            "the JAR is longer than its announced size of {} bytes",
                            st.size
                        );
                        return fail(st, why);
                    }
                    st.sent += len;
                    st.hasher.update(&chunk);
                    Some((Ok(chunk), st))
                }
                Some(Err(e)) => fail(st, format!("reading the JAR: {e}")),
                None if st.sent < st.size => {
                    let why = format!(
                        "the JAR ended {} bytes short of its announced size of {} bytes",
                        st.size - st.sent,
                        st.size
                    );
                    fail(st, why)
                }
                None => {
                    let actual = Sha256Digest::from(std::mem::take(&mut st.hasher).finalize());
                    if actual != st.expected {
                        let why = format!(
                            "the JAR's SHA-256 is {actual}, not the announced {}",
                            st.expected
                        );
                        return fail(st, why);
                    }
                    st.stage = Stage::Done;
                    let padding = (BLOCK - (st.size % BLOCK as u64) as usize) % BLOCK;
                    let end = Bytes::from(vec![0u8; padding + 2 * BLOCK]);
                    Some((Ok(end), st))
                }
            },
            Stage::Done => None,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(
        jar: &[u8],
        size: u64,
        expected: Sha256Digest,
    ) -> (Vec<io::Result<Bytes>>, Option<String>) {
        let chunks: Vec<io::Result<Bytes>> = jar
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let stream = jar_tar(
            "/app/app.jar",
            futures::stream::iter(chunks).boxed(),
            size,
            expected,
            failure.clone(),
        )
        .unwrap();
        let items = futures::executor::block_on(stream.collect::<Vec<_>>());
        let why = failure.lock().unwrap().take();
        (items, why)
    }

    #[test]
    fn the_jar_tar_is_a_valid_archive_of_one_root_owned_file() {
        let jar: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let (items, why) = collect(&jar, jar.len() as u64, Sha256Digest::of(&jar));
        assert_eq!(why, None);
        let bytes: Vec<u8> = items
            .into_iter()
            .flat_map(|i| i.unwrap().to_vec())
            .collect();
        assert_eq!(bytes.len() % BLOCK, 0);
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("app/app.jar"));
        assert_eq!(entry.header().mode().unwrap(), 0o644);
        assert_eq!(entry.header().uid().unwrap(), 0);
        assert_eq!(entry.header().gid().unwrap(), 0);
        let mut content = Vec::new();
        io::Read::read_to_end(&mut entry, &mut content).unwrap();
        assert_eq!(content, jar);
        drop(entry);
        assert!(entries.next().is_none());
    }

    #[test]
    fn a_jar_of_the_wrong_size_or_digest_ends_the_stream_in_an_error() {
        let jar = vec![7u8; 3000];
        let digest = Sha256Digest::of(&jar);
        for (size, expected, needle) in [
            (3010, digest, "10 bytes short"),
            (2990, digest, "longer than"),
            (3000, Sha256Digest::of(b"other"), "SHA-256"),
        ] {
            let (items, why) = collect(&jar, size, expected);
            let why = why.unwrap_or_else(|| panic!("no failure for {size}"));
            assert!(why.contains(needle), "{why}");
            assert!(
                items.last().unwrap().is_err(),
                "the stream ends in the error"
            );
            // The end of the archive is never sent.
            let sent: usize = items
                .iter()
                .filter_map(|i| i.as_ref().ok())
                .map(Bytes::len)
                .sum();
            assert!(sent <= BLOCK + 3000, "{sent}");
        }
    }
}
