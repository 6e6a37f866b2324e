//! One forward pass over an archive: the local entries in order, each
//! inflated and measured, then the central directory and the end records,
//! cross-checked against what the pass really saw.
//!
//! The JVM reads a JAR through its central directory; we read the local
//! headers. Any way the two views can differ (a hidden local entry, a
//! central entry pointing into another entry's data, sizes or names that
//! disagree, a second end record in the comment or after it) is rejected, so
//! what was scanned is exactly what the JVM will load.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;

use flate2::Decompress;

use super::central::read_central;
use super::entry::{Budget, EntryData};
use super::fast::FastInflate;
use super::input::Input;
use super::names::check_name;
use super::records::*;
use crate::{ValidationError, ValidationPolicy};

/// Where an archive sits in the upload.
pub(crate) struct ArchiveContext<'a> {
    /// Limits and target release.
    pub policy: &'a ValidationPolicy,
    /// The uncompressed budget shared by all archives of the upload.
    pub budget: &'a Budget,
    /// The archive's own path (`""` for the upload, else the nested entry's
    /// full path).
    pub path: String,
    /// 0 for the upload, 1 for a JAR inside it, ...
    pub depth: u8,
    /// Where nested JARs of this archive may be scanned in parallel.
    pub offload: Option<&'a dyn crate::scan::offload::Offloader>,
}

impl ArchiveContext<'_> {
    /// The full path of an entry of this archive, `outer.jar!/inner` style.
    pub(crate) fn entry_path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}!/{name}", self.path)
        }
    }

    pub(crate) fn archive_name(&self) -> String {
        crate::error::archive_label(&self.path)
    }
}

/// What a visitor learns about an entry before its data.
pub(crate) struct EntryMeta<'n> {
    /// The name inside this archive.
    pub name: &'n str,
    /// The full path in the upload, for messages.
    pub path: &'n str,
}

/// Looks at entries as they stream past. Whatever data a visitor leaves
/// unread is drained (and checked) by the walker.
pub(crate) trait EntryVisitor {
    /// Called once per local entry, in archive order.
    fn visit(&mut self, entry: &EntryMeta<'_>, data: &mut dyn Read) -> Result<(), ValidationError>;
}

/// A local entry as the pass saw it, with its real CRC and sizes.
#[derive(Debug)]
pub(crate) struct LocalRecord {
    pub offset: u64,
    /// Offset just after its data (and descriptor).
    pub end: u64,
    pub name: Arc<str>,
    pub method: u16,
    pub flags: u16,
    pub crc: u32,
    pub csize: u64,
    pub usize: u64,
}

/// What a completed pass reports.
#[derive(Debug)]
pub(crate) struct Walked {
    /// Bytes before the first local header (a launch script).
    pub prefix_len: u64,
    /// Every entry name (shared with the local records: one copy each).
    pub names: HashSet<Arc<str>>,
}

/// Walks one archive from `input` to its end, calling `visitor` per entry.
/// `allow_prefix` lets a launch script precede the zip data.
pub(crate) fn walk<R: Read>(
    input: &mut Input<R>,
    ctx: &ArchiveContext<'_>,
    allow_prefix: bool,
    visitor: &mut dyn EntryVisitor,
) -> Result<Walked, ValidationError> {
    let prefix_len = find_start(input, ctx, allow_prefix)?;
    let mut tools = Tools::take();
    let Tools { z, fast, scratch } = &mut tools;
    let mut locals: Vec<LocalRecord> = Vec::new();
    let mut names = HashSet::new();
    loop {
        match peek_sig(input, ctx)? {
            LOCAL_SIG => {
                if locals.len() as u64 >= ctx.policy.limits.max_entries {
                    return Err(ValidationError::TooManyEntries {
                        archive: ctx.path.clone(),
                        limit: ctx.policy.limits.max_entries,
                    });
                }
                let rec = walk_entry(input, ctx, (z, fast), scratch, &mut names, visitor)?;
                locals.push(rec);
            }
            CENTRAL_SIG => break,
            EOCD_SIG | ZIP64_EOCD_SIG => {
                return Err(ValidationError::CentralDirectoryMismatch(format!(
                    "{} has {} local entries but an empty central directory",
                    ctx.archive_name(),
                    locals.len()
                )));
            }
            sig => {
                return Err(ValidationError::Malformed(format!(
                    "unexpected bytes {sig:08x} at offset {} of {}{}",
                    input.offset(),
                    ctx.archive_name(),
                    locals
                        .last()
                        .map(|l| format!(", after entry {:?}", ctx.entry_path(&l.name)))
                        .unwrap_or_default()
                )));
            }
        }
    }
    read_central(input, ctx, &locals, prefix_len)?;
    tools.give_back();
    Ok(Walked { prefix_len, names })
}

/// The inflaters and the drain buffer of a walk, kept by the thread for its
/// next walk (a fat JAR's libraries come one after another) instead of
/// being allocated and zeroed for every archive. A walk that fails drops
/// its tools; a walk nested in another gets fresh ones. About 400 KiB stay
/// with each thread that has walked an archive, until the thread ends.
struct Tools {
    z: Decompress,
    fast: FastInflate,
    scratch: Box<[u8]>,
}

thread_local! {
    static SPARE_TOOLS: std::cell::RefCell<Option<Tools>> = const { std::cell::RefCell::new(None) };
}

impl Tools {
    fn take() -> Self {
        SPARE_TOOLS
            .with(|spare| spare.borrow_mut().take())
            .unwrap_or_else(|| Tools {
                z: Decompress::new(false),
                fast: FastInflate::new(),
                scratch: vec![0u8; 64 << 10].into_boxed_slice(),
            })
    }

    fn give_back(self) {
        SPARE_TOOLS.with(|spare| {
            spare.borrow_mut().get_or_insert(self);
        });
    }
}

pub(crate) fn truncated(ctx: &ArchiveContext<'_>, what: &str) -> ValidationError {
    ValidationError::Truncated(format!("{} ends inside {what}", ctx.archive_name()))
}

pub(crate) fn peek_sig<R: Read>(
    input: &mut Input<R>,
    ctx: &ArchiveContext<'_>,
) -> Result<u32, ValidationError> {
    if !input.ensure(4)? {
        return Err(truncated(
            ctx,
            "the archive: no end of central directory record",
        ));
    }
    Ok(u32le(input.available(), 0))
}

/// Finds the first local header: at offset 0, or (when allowed) after a
/// launch script of at most `max_prefix_bytes`.
fn find_start<R: Read>(
    input: &mut Input<R>,
    ctx: &ArchiveContext<'_>,
    allow_prefix: bool,
) -> Result<u64, ValidationError> {
    if !input.ensure(1)? {
        return Err(ValidationError::Empty(format!(
            "{} has no bytes",
            ctx.archive_name()
        )));
    }
    if input.ensure(4)? {
        match u32le(input.available(), 0) {
            LOCAL_SIG => return Ok(0),
            EOCD_SIG => {
                return Err(ValidationError::Empty(format!(
                    "{} is a zip archive without entries",
                    ctx.archive_name()
                )));
            }
            _ => {}
        }
    }
    let max = ctx.policy.limits.max_prefix_bytes;
    if !allow_prefix {
        return Err(ValidationError::NotAZip(format!(
            "{} does not start with a zip local file header",
            ctx.archive_name()
        )));
    }
    const MAGIC: &[u8; 4] = b"PK\x03\x04";
    loop {
        let avail = input.available();
        if let Some(i) = avail.windows(4).position(|w| w == MAGIC) {
            let at = input.offset() + i as u64;
            if at > max {
                break;
            }
            input.consume(i);
            return Ok(at);
        }
        if input.offset() > max {
            break;
        }
        let keep = avail.len().min(3);
        input.consume(avail.len() - keep);
        if input.fill()? == 0 {
            break;
        }
    }
    Err(ValidationError::NotAZip(format!(
        "no zip local file header in the first {max} bytes of {}",
        ctx.archive_name()
    )))
}

fn walk_entry<R: Read>(
    input: &mut Input<R>,
    ctx: &ArchiveContext<'_>,
    (z, fast): (&mut Decompress, &mut FastInflate),
    scratch: &mut [u8],
    names: &mut HashSet<Arc<str>>,
    visitor: &mut dyn EntryVisitor,
) -> Result<LocalRecord, ValidationError> {
    let limits = &ctx.policy.limits;
    let offset = input.offset();
    let fixed = input
        .take(LOCAL_LEN)?
        .ok_or_else(|| truncated(ctx, "a local file header"))?;
    let h = LocalHeader::parse(fixed);
    let raw_name = input
        .take(usize::from(h.name_len))?
        .ok_or_else(|| truncated(ctx, "a local file name"))?;
    let name: Arc<str> = check_name(raw_name, limits.max_name_bytes, |n| ctx.entry_path(n))?.into();
    let path = ctx.entry_path(&name);
    if h.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION | FLAG_CD_ENCRYPTED) != 0 {
        return Err(ValidationError::EncryptedEntry(path));
    }
    if h.method != STORED && h.method != DEFLATED {
        return Err(ValidationError::UnsupportedCompression {
            name: path,
            method: h.method,
        });
    }
    let has_descriptor = h.flags & FLAG_DESCRIPTOR != 0;
    if h.method == STORED && has_descriptor {
        return Err(ValidationError::StoredWithDataDescriptor(path));
    }
    let extra = input
        .take(usize::from(h.extra_len))?
        .ok_or_else(|| truncated(ctx, "a local extra field"))?;
    let z64 = parse_extra(
        extra,
        [h.usize == ZIP64_MARK32, h.csize == ZIP64_MARK32, false],
    )
    .map_err(|r| ValidationError::Malformed(format!("entry {path:?}: {r}")))?;
    let declared_usize = z64.usize.unwrap_or(u64::from(h.usize));
    let declared_csize = z64.csize.unwrap_or(u64::from(h.csize));
    if !names.insert(name.clone()) {
        return Err(ValidationError::DuplicateEntry(path));
    }

    let (budget, meta) = (
        ctx.budget,
        EntryMeta {
            name: &name,
            path: &path,
        },
    );
    let mut data = if h.method == STORED {
        EntryData::stored(input, declared_csize, scratch, limits, budget, &path)
    } else {
        // Only declared sizes can be given to the one-shot inflater: with a
        // data descriptor, the end is where the deflate stream ends.
        let sizes = (!has_descriptor).then_some((declared_csize, declared_usize));
        EntryData::deflated(input, z, (fast, sizes), scratch, limits, budget, &path)?
    };
    visitor.visit(&meta, &mut data)?;
    let real = data.finish()?;

    let (crc, csize, usize) = if has_descriptor {
        read_descriptor(input, ctx, z64.present, real.crc)?
    } else {
        (h.crc, declared_csize, declared_usize)
    };
    for (what, declared, actual) in [
        ("compressed", csize, real.csize),
        ("uncompressed", usize, real.usize),
    ] {
        if declared != actual {
            return Err(ValidationError::SizeMismatch {
                name: path,
                what,
                declared,
                actual,
            });
        }
    }
    if crc != real.crc {
        return Err(ValidationError::CrcMismatch {
            name: path,
            declared: crc,
            actual: real.crc,
        });
    }
    Ok(LocalRecord {
        offset,
        end: input.offset(),
        name,
        method: h.method,
        flags: h.flags,
        crc: real.crc,
        csize: real.csize,
        usize: real.usize,
    })
}

/// Reads a data descriptor: an optional signature, the CRC-32 and the two
/// sizes (8 bytes each when the local header had a zip64 record).
fn read_descriptor<R: Read>(
    input: &mut Input<R>,
    ctx: &ArchiveContext<'_>,
    zip64: bool,
    real_crc: u32,
) -> Result<(u32, u64, u64), ValidationError> {
    let width = if zip64 { 8 } else { 4 };
    if input.ensure(4)? && u32le(input.available(), 0) == DESCRIPTOR_SIG {
        // A CRC equal to the signature is ambiguous: the signature is there
        // only if the CRC follows it.
        let sig_then_crc = input.ensure(8)? && u32le(input.available(), 4) == real_crc;
        if real_crc != DESCRIPTOR_SIG || sig_then_crc {
            input.consume(4);
        }
    }
    let b = input
        .take(4 + 2 * width)?
        .ok_or_else(|| truncated(ctx, "a data descriptor"))?;
    Ok(if zip64 {
        (u32le(b, 0), u64le(b, 4), u64le(b, 12))
    } else {
        (u32le(b, 0), u64::from(u32le(b, 4)), u64::from(u32le(b, 8)))
    })
}
