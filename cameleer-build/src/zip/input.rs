//! A buffered, offset-counting, optionally hashing view of the upload.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use crate::{Sha256Digest, ValidationError};

/// A read buffer over the raw bytes that knows its absolute offset, enforces
/// the upload limit and hashes every byte exactly once as it arrives.
///
/// The parser reads headers straight out of the buffer (no copies) and
/// consumes them; the buffer is large enough for any single header field
/// (names, extras and comments are at most 64 KiB by the format).
pub(crate) struct Input<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Absolute offset of `buf[pos]`.
    offset: u64,
    eof: bool,
    hasher: Option<Sha256>,
    limit: u64,
    total: u64,
}

/// Buffer size: room for the largest header piece (64 KiB) plus a header.
pub(crate) const MIN_BUFFER: usize = 128 << 10;

impl<R: Read> Input<R> {
    /// Wraps `inner`. `limit` caps the bytes read (`too_large` beyond it);
    /// `hash` turns on SHA-256 of everything read.
    pub(crate) fn new(inner: R, capacity: usize, limit: u64, hash: bool) -> Self {
        Self {
            inner,
            buf: vec![0; capacity.max(MIN_BUFFER)].into_boxed_slice(),
            pos: 0,
            end: 0,
            offset: 0,
            eof: false,
            hasher: hash.then(Sha256::new),
            limit,
            total: 0,
        }
    }

    /// Absolute offset of the next unconsumed byte.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes read from the source so far.
    pub(crate) fn total_read(&self) -> u64 {
        self.total
    }

    /// The buffered, unconsumed bytes.
    pub(crate) fn available(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Marks `n` buffered bytes as used.
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.pos);
        self.pos += n;
        self.offset += n as u64;
    }

    /// Reads more bytes into the buffer. Returns how many arrived: 0 means
    /// end of input, or a full buffer (callers consume before refilling).
    pub(crate) fn fill(&mut self) -> Result<usize, ValidationError> {
        if self.eof {
            return Ok(0);
        }
        if self.pos > 0 && (self.end == self.buf.len() || self.pos == self.end) {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            return Ok(0);
        }
        let n = loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ValidationError::from_io(e)),
            }
        };
        if n == 0 {
            self.eof = true;
            return Ok(0);
        }
        self.total += n as u64;
        if self.total > self.limit {
            return Err(ValidationError::TooLarge { limit: self.limit });
        }
        if let Some(h) = &mut self.hasher {
            h.update(&self.buf[self.end..self.end + n]);
        }
        self.end += n;
        Ok(n)
    }

    /// The buffer's size: the most bytes [`Input::available`] can hold.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Moves the unconsumed bytes to the front and fills the buffer as far
    /// as the input goes.
    pub(crate) fn top_up(&mut self) -> Result<(), ValidationError> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        while self.end < self.buf.len() && self.fill()? > 0 {}
        Ok(())
    }

    /// Makes at least `n` bytes available (`n` ≤ buffer size). Returns
    /// `false` when the input ends first.
    pub(crate) fn ensure(&mut self, n: usize) -> Result<bool, ValidationError> {
        while self.end - self.pos < n {
            if self.fill()? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Consumes and returns the next `n` bytes, or `None` at end of input.
    pub(crate) fn take(&mut self, n: usize) -> Result<Option<&[u8]>, ValidationError> {
        if !self.ensure(n)? {
            return Ok(None);
        }
        let start = self.pos;
        self.consume(n);
        Ok(Some(&self.buf[start..start + n]))
    }

    /// Skips `n` bytes; `false` when the input ends first.
    pub(crate) fn skip(&mut self, mut n: u64) -> Result<bool, ValidationError> {
        while n > 0 {
            if self.available().is_empty() && self.fill()? == 0 {
                return Ok(false);
            }
            let k = (self.available().len() as u64).min(n) as usize;
            self.consume(k);
            n -= k as u64;
        }
        Ok(true)
    }

    /// True when no byte is left; a byte that is left stays buffered.
    pub(crate) fn at_eof(&mut self) -> Result<bool, ValidationError> {
        Ok(self.available().is_empty() && self.fill()? == 0)
    }

    /// Reads and hashes whatever is left, within the upload limit; used to
    /// tell a corrupted transfer from a bad archive after an early error.
    pub(crate) fn drain(&mut self) -> Result<(), ValidationError> {
        loop {
            let n = self.available().len();
            self.consume(n);
            if self.fill()? == 0 && self.available().is_empty() {
                return Ok(());
            }
        }
    }

    /// The SHA-256 of every byte read so far, when hashing is on.
    pub(crate) fn digest(&mut self) -> Option<Sha256Digest> {
        self.hasher.take().map(|h| Sha256Digest::from(h.finalize()))
    }
}
