//! The deterministic Docker build context: a tar of the Dockerfile, the
//! agent JAR and the application JAR.

use std::io::{self, Read, Write};

use crate::dockerfile::{CONTEXT_AGENT_FILE, CONTEXT_APP_FILE, CONTEXT_DOCKERFILE};
use crate::{HashingWriter, Sha256Digest};

/// A file to put in the context: a reader and the exact number of bytes it
/// yields (the tar header is written before the data).
#[derive(Debug)]
pub struct ContextFile<R> {
    /// The content.
    pub reader: R,
    /// Its exact size; a reader that yields more or fewer bytes is an error.
    pub size: u64,
}

impl<R: Read> ContextFile<R> {
    /// A file of `size` bytes read from `reader`.
    pub fn new(reader: R, size: u64) -> Self {
        Self { reader, size }
    }
}

/// The inputs of an image build.
///
/// [`write_to`](Self::write_to) streams a tar in which the same inputs
/// always give the same bytes, so its SHA-256 is a build cache key: entries
/// in byte order of their names (`Dockerfile`, `app.jar`,
/// `cameleer-agent.jar`), ustar headers with mtime 0, uid and gid 0, no user
/// or group names, mode 0644. JARs are copied through a small buffer, never
/// held whole.
///
/// # Examples
///
/// ```
/// use cameleer_build::{BuildContext, ContextFile, Sha256Digest};
///
/// let app = b"PK...app";
/// let agent = b"PK...agent";
/// let ctx = || BuildContext {
///     dockerfile: "FROM scratch\n".into(),
///     agent: ContextFile::new(&agent[..], agent.len() as u64),
///     app: ContextFile::new(&app[..], app.len() as u64),
/// };
/// let mut tar = Vec::new();
/// let digest = ctx().write_to(&mut tar).unwrap();
/// assert_eq!(digest, Sha256Digest::of(&tar));
/// assert_eq!(ctx().digest().unwrap(), digest);
/// ```
#[derive(Debug)]
pub struct BuildContext<A, J> {
    /// The rendered Dockerfile (see [`crate::DockerfileSpec::render`]).
    pub dockerfile: String,
    /// The Cameleer agent JAR.
    pub agent: ContextFile<A>,
    /// The application JAR.
    pub app: ContextFile<J>,
}

impl<A: Read, J: Read> BuildContext<A, J> {
    /// Writes the tar into `out` and returns its SHA-256, computed as it
    /// streams.
    pub fn write_to<W: Write>(self, out: W) -> io::Result<Sha256Digest> {
        let mut tar = tar::Builder::new(HashingWriter::new(out));
        let dockerfile = self.dockerfile.into_bytes();
        let size = dockerfile.len() as u64;
        append(&mut tar, CONTEXT_DOCKERFILE, size, &dockerfile[..])?;
        // Byte order of the names: "app.jar" < "cameleer-agent.jar".
        append(&mut tar, CONTEXT_APP_FILE, self.app.size, self.app.reader)?;
        append(
            &mut tar,
            CONTEXT_AGENT_FILE,
            self.agent.size,
            self.agent.reader,
        )?;
        let (mut out, digest) = tar.into_inner()?.finish();
        out.flush()?;
        Ok(digest)
    }

    /// The context's SHA-256 without keeping its bytes.
    pub fn digest(self) -> io::Result<Sha256Digest> {
        self.write_to(io::sink())
    }
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.append(
        &header,
        ExactSize {
            inner: data,
            remaining: size,
            name,
        },
    )
}

/// Yields exactly `remaining` bytes of `inner`, or fails: the tar header
/// has promised that many.
struct ExactSize<'n, R> {
    inner: R,
    remaining: u64,
    name: &'n str,
}

impl<R: Read> Read for ExactSize<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is longer than its declared size", self.name),
                )),
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 && max > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} ended {} bytes short of its declared size",
                    self.name, self.remaining
                ),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}
