//! Byte-level zip writing for tests, fuzz seeds and benchmarks (feature
//! `testing`).
//!
//! [`ZipBuilder`] writes well-formed archives by default and lets every
//! header field be overridden, so tests can build exactly the malformed
//! archive they mean: lying sizes, disagreeing central entries, entries that
//! share data, comments with end records, and so on. [`jars`] has ready-made
//! JARs on top of it.
//!
//! # Examples
//!
//! ```
//! use cameleer_build::testing::{Entry, ZipBuilder};
//!
//! let mut zip = ZipBuilder::new();
//! zip.add(Entry::deflated("hello.txt", b"hello hello hello"));
//! let bytes = zip.finish();
//! assert_eq!(&bytes[..4], b"PK\x03\x04");
//! ```

pub mod jars;

use std::cell::RefCell;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Raw DEFLATE (no zlib header) at a fast level. The compressor is reused
/// per thread: setting one up costs more than compressing a small entry.
pub fn deflate(data: &[u8]) -> Vec<u8> {
    thread_local! {
        static COMPRESS: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), false));
    }
    COMPRESS.with_borrow_mut(|c| {
        c.reset();
        let mut out = Vec::with_capacity(data.len() / 2 + 128);
        loop {
            let consumed = c.total_in() as usize;
            // Compressing into a Vec's spare room cannot fail.
            let status = c
                .compress_vec(&data[consumed..], &mut out, FlushCompress::Finish)
                .expect("in-memory deflate");
            if status == Status::StreamEnd {
                return out;
            }
            out.reserve(out.capacity().max(1024));
        }
    })
}

/// CRC-32 (IEEE) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// Header fields to write instead of the true ones.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Name bytes.
    pub name: Option<Vec<u8>>,
    /// Compression method.
    pub method: Option<u16>,
    /// General purpose flags.
    pub flags: Option<u16>,
    /// CRC-32.
    pub crc: Option<u32>,
    /// Compressed size.
    pub csize: Option<u32>,
    /// Uncompressed size.
    pub usize: Option<u32>,
    /// Extra field bytes.
    pub extra: Option<Vec<u8>>,
}

/// One entry to write.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The name.
    pub name: Vec<u8>,
    /// The uncompressed content.
    pub data: Vec<u8>,
    /// 0 (STORED) or 8 (DEFLATE); any other value writes the data as is.
    pub method: u16,
    /// Set flag bit 3, zero the local CRC and sizes, and write a data
    /// descriptor after the data.
    pub descriptor: bool,
    /// Write the optional descriptor signature.
    pub descriptor_signature: bool,
    /// Unix mode for the external attributes (`0o100644` by default).
    pub unix_mode: u32,
    /// Local header overrides.
    pub local: Overrides,
    /// Central directory overrides.
    pub central: Overrides,
    /// Data written instead of the compressed content (the headers still
    /// describe the real content unless overridden).
    pub raw_data: Option<Vec<u8>>,
}

impl Entry {
    /// A STORED entry.
    pub fn stored(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Self {
        Self::with_method(name, data, 0)
    }

    /// A DEFLATE entry.
    pub fn deflated(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Self {
        Self::with_method(name, data, 8)
    }

    /// A DEFLATE entry with a data descriptor, as `jar` and
    /// `java.util.zip.ZipOutputStream` write them.
    pub fn streamed(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Self {
        Self {
            descriptor: true,
            descriptor_signature: true,
            ..Self::deflated(name, data)
        }
    }

    fn with_method(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>, method: u16) -> Self {
        Self {
            name: name.as_ref().to_vec(),
            data: data.as_ref().to_vec(),
            method,
            descriptor: false,
            descriptor_signature: false,
            unix_mode: 0o100644,
            local: Overrides::default(),
            central: Overrides::default(),
            raw_data: None,
        }
    }
}

/// A central directory record, as written.
#[derive(Debug, Clone)]
pub struct CentralRecord {
    /// Name bytes.
    pub name: Vec<u8>,
    /// "Version made by" (high byte 3 = unix).
    pub made_by: u16,
    /// General purpose flags.
    pub flags: u16,
    /// Compression method.
    pub method: u16,
    /// CRC-32.
    pub crc: u32,
    /// Compressed size.
    pub csize: u32,
    /// Uncompressed size.
    pub usize: u32,
    /// Extra field.
    pub extra: Vec<u8>,
    /// External attributes.
    pub external_attrs: u32,
    /// Offset of the local header (as written: relative to the base).
    pub offset: u32,
}

/// End-record overrides for [`ZipBuilder::finish_with`].
#[derive(Debug, Clone, Default)]
pub struct End {
    /// Entry count to declare.
    pub entries: Option<u16>,
    /// Central directory size to declare.
    pub cd_size: Option<u32>,
    /// Central directory offset to declare.
    pub cd_offset: Option<u32>,
    /// The archive comment.
    pub comment: Vec<u8>,
    /// Bytes after the end record.
    pub trailing: Vec<u8>,
    /// Write zip64 end records (and mark the classic fields 0xFFFF...).
    pub zip64: bool,
}

/// Writes a zip archive into memory, field by field.
#[derive(Debug, Clone, Default)]
pub struct ZipBuilder {
    buf: Vec<u8>,
    base: u64,
    /// The central directory to write; tests may edit, drop, reorder or
    /// duplicate records before [`finish`](Self::finish).
    pub central: Vec<CentralRecord>,
}

impl ZipBuilder {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// An archive after `prefix` (a launch script). With `relative`, offsets
    /// count from the zip data, else from the file start.
    pub fn with_prefix(prefix: &[u8], relative: bool) -> Self {
        Self {
            buf: prefix.to_vec(),
            base: if relative { prefix.len() as u64 } else { 0 },
            central: Vec::new(),
        }
    }

    /// Current offset as the central directory would record it.
    pub fn offset(&self) -> u32 {
        (self.buf.len() as u64 - self.base) as u32
    }

    /// Appends raw bytes.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// Writes an entry's local header, data and descriptor, and queues its
    /// central record.
    pub fn add(&mut self, e: Entry) -> &mut Self {
        let offset = self.offset();
        let compressed = match (&e.raw_data, e.method) {
            (Some(raw), _) => raw.clone(),
            (None, 8) => deflate(&e.data),
            (None, _) => e.data.clone(),
        };
        let crc = crc32(&e.data);
        let (csize, usize) = (compressed.len() as u32, e.data.len() as u32);
        let flags = if e.descriptor { 8 } else { 0 } | 0x800;
        let (lcrc, lcs, lus) = if e.descriptor {
            (0, 0, 0)
        } else {
            (crc, csize, usize)
        };
        let l = &e.local;
        let name = l.name.clone().unwrap_or_else(|| e.name.clone());
        let extra = l.extra.clone().unwrap_or_default();
        let b = &mut self.buf;
        b.extend_from_slice(b"PK\x03\x04");
        put16(b, 20);
        put16(b, l.flags.unwrap_or(flags));
        put16(b, l.method.unwrap_or(e.method));
        put16(b, 0);
        put16(b, 0x21);
        put32(b, l.crc.unwrap_or(lcrc));
        put32(b, l.csize.unwrap_or(lcs));
        put32(b, l.usize.unwrap_or(lus));
        put16(b, name.len() as u16);
        put16(b, extra.len() as u16);
        b.extend_from_slice(&name);
        b.extend_from_slice(&extra);
        b.extend_from_slice(&compressed);
        if e.descriptor {
            if e.descriptor_signature {
                b.extend_from_slice(b"PK\x07\x08");
            }
            put32(b, crc);
            put32(b, csize);
            put32(b, usize);
        }
        let c = &e.central;
        self.central.push(CentralRecord {
            name: c.name.clone().unwrap_or(e.name),
            made_by: 0x0314,
            flags: c.flags.unwrap_or(flags),
            method: c.method.unwrap_or(e.method),
            crc: c.crc.unwrap_or(crc),
            csize: c.csize.unwrap_or(csize),
            usize: c.usize.unwrap_or(usize),
            extra: c.extra.clone().unwrap_or_default(),
            external_attrs: e.unix_mode << 16,
            offset,
        });
        self
    }

    /// Writes the central directory and end record.
    pub fn finish(self) -> Vec<u8> {
        self.finish_with(End::default())
    }

    /// Writes the central directory and end records with overrides.
    pub fn finish_with(mut self, end: End) -> Vec<u8> {
        let cd_start = self.offset();
        let b = &mut self.buf;
        for r in &self.central {
            b.extend_from_slice(b"PK\x01\x02");
            put16(b, r.made_by);
            put16(b, 20);
            put16(b, r.flags);
            put16(b, r.method);
            put16(b, 0);
            put16(b, 0x21);
            put32(b, r.crc);
            put32(b, r.csize);
            put32(b, r.usize);
            put16(b, r.name.len() as u16);
            put16(b, r.extra.len() as u16);
            put16(b, 0);
            put16(b, 0);
            put16(b, 0);
            put32(b, r.external_attrs);
            put32(b, r.offset);
            b.extend_from_slice(&r.name);
            b.extend_from_slice(&r.extra);
        }
        let cd_size = (b.len() as u64 - self.base) as u32 - cd_start;
        let count = self.central.len();
        let (mut entries, mut size32, mut off32) = (count as u16, cd_size, cd_start);
        if end.zip64 {
            let at = b.len() as u64 - self.base;
            b.extend_from_slice(b"PK\x06\x06");
            put64(b, 44);
            put16(b, 0x032d);
            put16(b, 45);
            put32(b, 0);
            put32(b, 0);
            put64(b, count as u64);
            put64(b, count as u64);
            put64(b, u64::from(cd_size));
            put64(b, u64::from(cd_start));
            b.extend_from_slice(b"PK\x06\x07");
            put32(b, 0);
            put64(b, at);
            put32(b, 1);
            (entries, size32, off32) = (u16::MAX, u32::MAX, u32::MAX);
        }
        b.extend_from_slice(b"PK\x05\x06");
        put16(b, 0);
        put16(b, 0);
        let declared = end.entries.unwrap_or(entries);
        put16(b, declared);
        put16(b, declared);
        put32(b, end.cd_size.unwrap_or(size32));
        put32(b, end.cd_offset.unwrap_or(off32));
        put16(b, end.comment.len() as u16);
        b.extend_from_slice(&end.comment);
        b.extend_from_slice(&end.trailing);
        self.buf
    }
}

fn put16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}
