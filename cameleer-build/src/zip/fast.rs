//! One-shot inflation of small entries with libdeflate.
//!
//! Inflating is most of the work of validating a JAR, and a JAR is mostly
//! small entries (classes of a few KiB). libdeflate inflates a whole
//! buffer about 1.7 times as fast as zlib-rs streams it (measured on the
//! benchmark fat JAR's 4,043 entries: 45 ms against 78 ms), but it needs the
//! whole compressed entry in memory and room for all of its output. So an
//! entry is first tried here, from the bytes already buffered, and streamed
//! by zlib-rs only when that does not work out: the entry's end is not in
//! the buffer, it inflates to more than [`OUT_MAX`] bytes, or its data is
//! bad (the streaming path then finds and names the error). Nothing is
//! consumed by a failed try.
//!
//! Where the compressed data ends:
//! - sizes in the local header: the declared compressed size, and the entry
//!   must inflate from exactly those bytes to exactly the declared size;
//! - a data descriptor follows the data: libdeflate reports how much it
//!   wrote but not how much it read, so the descriptor is looked for right
//!   after the data: the first place `p` holding (optionally the descriptor
//!   signature, then) the CRC-32 of the output, the compressed size `p` and
//!   the output's length. The walker then reads and checks that descriptor
//!   as it would after streaming.
//!
//! One difference from the streaming path, accepted on purpose: bytes
//! between the end of the deflate stream and the end of the compressed size
//! (declared, or where the descriptor sits) are not noticed here, while the
//! streaming path rejects them as a `size_mismatch`. The JVM inflates such an
//! entry from its central-directory size and stops at the stream's end, so
//! it reads exactly the bytes checked here; nothing unscanned gets loaded.

use libdeflater::Decompressor;

use super::input::Input;
use super::records::{DESCRIPTOR_SIG, u32le, u64le};
use crate::ValidationError;

/// Largest output inflated in one shot; larger entries are streamed.
pub(crate) const OUT_MAX: usize = 256 << 10;
/// Buffered input wanted before a try; less is topped up first.
const WANT_INPUT: usize = 32 << 10;

/// Where an entry's compressed data ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Boundary {
    /// The local header's sizes.
    Sized { csize: u64, usize: u64 },
    /// A data descriptor follows, with sizes of `width` bytes (4 or 8).
    Descriptor { width: usize },
}

/// A one-shot entry inflated: its output is in [`FastInflate::output`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inflated {
    /// Compressed bytes to consume.
    pub csize: usize,
    /// Output bytes.
    pub usize: usize,
    /// CRC-32 of the output.
    pub crc: u32,
}

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

    /// The output of the last successful [`FastInflate::inflate`].
    pub(crate) fn output(&self, n: usize) -> &[u8] {
        &self.out[..n]
    }

    /// Tries to inflate the entry whose data starts at the input's position
    /// in one shot. `None` means stream it instead; nothing was consumed.
    pub(crate) fn inflate<R: std::io::Read>(
        &mut self,
        input: &mut Input<R>,
        boundary: Boundary,
    ) -> Result<Option<Inflated>, ValidationError> {
        if input.available().len() < WANT_INPUT {
            input.top_up()?;
        }
        let avail = input.available();
        match boundary {
            Boundary::Sized { csize, usize } => {
                let (Ok(c), Ok(u)) = (usize::try_from(csize), usize::try_from(usize)) else {
                    return Ok(None);
                };
                if c > avail.len() || u > OUT_MAX {
                    return Ok(None);
                }
                match self.d.deflate_decompress(&avail[..c], &mut self.out[..u]) {
                    Ok(n) if n == u => Ok(Some(Inflated {
                        csize: c,
                        usize: u,
                        crc: crc32fast::hash(&self.out[..u]),
                    })),
                    _ => Ok(None),
                }
            }
            Boundary::Descriptor { width } => {
                let Ok(n) = self.d.deflate_decompress(avail, &mut self.out) else {
                    return Ok(None);
                };
                let crc = crc32fast::hash(&self.out[..n]);
                Ok(
                    find_descriptor(avail, crc, n as u64, width).map(|p| Inflated {
                        csize: p,
                        usize: n,
                        crc,
                    }),
                )
            }
        }
    }
}

/// The first `p` where `data[p..]` is a data descriptor (signature
/// optional) for `crc`, compressed size `p` and uncompressed size `n`.
fn find_descriptor(data: &[u8], crc: u32, n: u64, width: usize) -> Option<usize> {
    let size_at = |at: usize| -> Option<u64> {
        let b = data.get(at..at + width)?;
        Some(if width == 8 {
            u64le(b, 0)
        } else {
            u64::from(u32le(b, 0))
        })
    };
    memchr::memmem::find_iter(data, &crc.to_le_bytes()).find_map(|q| {
        // The data ends at `q`, or at `q - 4` when a signature precedes.
        let signed = q >= 4 && u32le(data, q - 4) == DESCRIPTOR_SIG;
        let p = if signed { q - 4 } else { q };
        let fits = size_at(q + 4)? == p as u64 && size_at(q + 4 + width)? == n;
        fits.then_some(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deflate(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn descriptor(signed: bool, crc: u32, csize: u64, usize: u64, width: usize) -> Vec<u8> {
        let mut d = Vec::new();
        if signed {
            d.extend_from_slice(&DESCRIPTOR_SIG.to_le_bytes());
        }
        d.extend_from_slice(&crc.to_le_bytes());
        for v in [csize, usize] {
            d.extend_from_slice(&v.to_le_bytes()[..width]);
        }
        d
    }

    #[test]
    fn the_descriptor_is_found_right_after_the_data() {
        let text = b"class bytes, class bytes, class bytes".repeat(50);
        let z = deflate(&text);
        let crc = crc32fast::hash(&text);
        for (signed, width) in [(true, 4), (false, 4), (true, 8), (false, 8)] {
            let mut data = z.clone();
            data.extend(descriptor(
                signed,
                crc,
                z.len() as u64,
                text.len() as u64,
                width,
            ));
            data.extend_from_slice(b"PK\x03\x04 the next entry");
            assert_eq!(
                find_descriptor(&data, crc, text.len() as u64, width),
                Some(z.len()),
                "signed {signed}, width {width}"
            );
        }
    }

    #[test]
    fn a_descriptor_that_does_not_fit_is_not_found() {
        let text = b"some text".repeat(20);
        let z = deflate(&text);
        let crc = crc32fast::hash(&text);
        // Wrong compressed size, wrong length, wrong CRC, cut short.
        for (c, u, k) in [
            (z.len() as u64 + 1, text.len() as u64, crc),
            (z.len() as u64, text.len() as u64 + 1, crc),
            (z.len() as u64, text.len() as u64, crc ^ 1),
        ] {
            let mut data = z.clone();
            data.extend(descriptor(true, k, c, u, 4));
            assert_eq!(find_descriptor(&data, crc, text.len() as u64, 4), None);
        }
        let mut cut = z.clone();
        cut.extend(&descriptor(false, crc, z.len() as u64, text.len() as u64, 4)[..9]);
        assert_eq!(find_descriptor(&cut, crc, text.len() as u64, 4), None);
    }
}
