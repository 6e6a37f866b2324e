//! A `Write` wrapper that hashes what passes through it.

use std::io::{self, Write};

use sha2::{Digest as _, Sha256};

use crate::Sha256Digest;

/// Passes bytes through to `inner` and computes their SHA-256 on the way,
/// so a digest costs no second pass.
///
/// # Examples
///
/// ```
/// use std::io::Write;
/// use cameleer_build::{HashingWriter, Sha256Digest};
///
/// let mut w = HashingWriter::new(Vec::new());
/// w.write_all(b"test").unwrap();
/// let (bytes, digest) = w.finish();
/// assert_eq!(digest, Sha256Digest::of(&bytes));
/// ```
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The wrapped writer and the digest of everything written.
    pub fn finish(self) -> (W, Sha256Digest) {
        (self.inner, Sha256Digest::from(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
