//! One-shot inflation of small entries with libdeflate.
//!
//! Inflating is most of the work of validating a JAR, and a JAR is mostly
//! small entries (classes of a few KiB). libdeflate inflates a whole
//! buffer about 1.7 times as fast as zlib-rs streams it (measured on the
//! benchmark fat JAR's 4,043 entries: 45 ms against 78 ms), but it needs the
//! whole compressed entry in memory, room for all of its output, and (in
//! its safe binding) does not say how many input bytes it read.
//!
//! So only an entry whose local header gives its sizes (no data
//! descriptor: what Maven's and Gradle's archivers write) is tried here, and
//! only when its compressed bytes are all buffered and it inflates to at
//! most [`OUT_MAX`] bytes. libdeflate then gets exactly the declared
//! compressed bytes and exactly the declared output room, and must fill the
//! room: a stream cut short, too long or too short, or bad data fails the
//! try, and the entry is streamed by zlib-rs as before, which names the
//! error. Nothing is consumed by a failed try, and a try costs at most one
//! inflation of the entry (zlib-rs would have done it too).
//!
//! An entry followed by a data descriptor is always streamed: its end is
//! only known once a decoder has found the end of its deflate stream, and
//! guessing it from the descriptor's bytes lets a crafted entry hide a
//! descriptor, or a whole entry, inside its own compressed data.
//!
//! Two differences from the streaming path, accepted on purpose:
//! - bytes between the end of the deflate stream and the declared
//!   compressed size are not noticed here (streaming rejects them as a
//!   `size_mismatch`). `ZipFile`, which the JVM loads classes with,
//!   inflates from the central directory's size and stops at the stream's
//!   end, so it reads exactly the bytes checked here; `ZipInputStream`
//!   refuses such an entry ("invalid entry compressed size");
//! - libdeflate is laxer than zlib about a few malformed Huffman headers
//!   (more than 286 literal/length or 30 distance codes declared, distance
//!   codes 30 and 31). zlib, which the JVM uses, refuses those, so such an
//!   entry passes here and fails to load: nothing unchecked runs.

use libdeflater::Decompressor;

use super::input::Input;
use crate::ValidationError;

/// Largest output inflated in one shot; larger entries are streamed.
pub(crate) const OUT_MAX: usize = 256 << 10;

/// libdeflate's decompressor and an output buffer, reused across entries.
pub(crate) struct FastInflate {
    d: Decompressor,
    out: Box<[u8]>,
}

impl FastInflate {
    pub(crate) fn new() -> Self {
        Self {
            d: Decompressor::new(),
            out: vec![0; OUT_MAX].into_boxed_slice(),
        }
    }

    /// Tries to inflate in one shot the entry whose data starts at the
    /// input's position, declared `csize` bytes compressed and `usize`
    /// inflated. Returns the output, of exactly `usize` bytes, with the
    /// `csize` compressed bytes still to be consumed; `None` means stream it
    /// instead, and nothing was consumed.
    pub(crate) fn inflate<R: std::io::Read>(
        &mut self,
        input: &mut Input<R>,
        csize: u64,
        usize: u64,
    ) -> Result<Option<&[u8]>, ValidationError> {
        let (Ok(c), Ok(u)) = (usize::try_from(csize), usize::try_from(usize)) else {
            return Ok(None);
        };
        if u > OUT_MAX || c > input.capacity() {
            return Ok(None);
        }
        if input.available().len() < c {
            input.top_up()?;
        }
        let avail = input.available();
        if c > avail.len() {
            return Ok(None);
        }
        match self.d.deflate_decompress(&avail[..c], &mut self.out[..u]) {
            Ok(n) if n == u => Ok(Some(&self.out[..u])),
            _ => Ok(None),
        }
    }
}
