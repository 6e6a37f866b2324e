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

use flate2::Decompress;

use super::entry::{Budget, EntryData};
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

    fn archive_name(&self) -> String {
        if self.path.is_empty() {
            "the upload".to_owned()
        } else {
            format!("nested archive {:?}", self.path)
        }
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
struct LocalRecord {
    offset: u64,
    /// Offset just after its data (and descriptor).
    end: u64,
    name: Box<str>,
    method: u16,
    flags: u16,
    crc: u32,
    csize: u64,
    usize: u64,
}

/// What a completed pass reports.
#[derive(Debug)]
pub(crate) struct Walked {
    /// Bytes before the first local header (a launch script).
    pub prefix_len: u64,
    /// Every entry name.
    pub names: HashSet<Box<str>>,
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
    let mut z = Decompress::new(false);
    let mut scratch = vec![0u8; 64 << 10];
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
                let rec = walk_entry(input, ctx, &mut z, &mut scratch, &mut names, visitor)?;
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
    Ok(Walked { prefix_len, names })
}

fn truncated(ctx: &ArchiveContext<'_>, what: &str) -> ValidationError {
    ValidationError::Truncated(format!("{} ends inside {what}", ctx.archive_name()))
}

fn peek_sig<R: Read>(
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
    z: &mut Decompress,
    scratch: &mut [u8],
    names: &mut HashSet<Box<str>>,
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
    let name: Box<str> = check_name(raw_name, limits.max_name_bytes, |n| ctx.entry_path(n))?.into();
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
        EntryData::deflated(input, z, scratch, limits, budget, &path)
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

/// Matches central entries to local records under one guess of where
/// offsets count from (the file start, or the zip data after a launch
/// script); the end record decides which guess holds.
struct BaseCheck {
    base: u64,
    matched: Vec<bool>,
    error: Option<ValidationError>,
}

/// A central directory entry, decoded.
struct CentralEntry<'a> {
    name: &'a str,
    header: CentralHeader,
    csize: u64,
    usize: u64,
    offset: u64,
}

impl BaseCheck {
    fn record(&mut self, c: &CentralEntry<'_>, locals: &[LocalRecord], ctx: &ArchiveContext<'_>) {
        if self.error.is_none() {
            self.error = self.check(c, locals, ctx).err();
        }
    }

    fn check(
        &mut self,
        c: &CentralEntry<'_>,
        locals: &[LocalRecord],
        ctx: &ArchiveContext<'_>,
    ) -> Result<(), ValidationError> {
        let path = ctx.entry_path(c.name);
        let mismatch = |what: String| {
            ValidationError::CentralDirectoryMismatch(format!("entry {path:?}: {what}"))
        };
        let abs = c.offset.saturating_add(self.base);
        let i = match locals.binary_search_by_key(&abs, |l| l.offset) {
            Ok(i) => i,
            Err(i) => {
                if let Some(l) = i.checked_sub(1).and_then(|p| locals.get(p))
                    && abs < l.end
                {
                    return Err(ValidationError::OverlappingEntries(format!(
                        "central entry {path:?} points at offset {abs}, inside the data of {:?}",
                        ctx.entry_path(&l.name)
                    )));
                }
                return Err(mismatch(format!(
                    "points at offset {abs}, where no local header starts"
                )));
            }
        };
        let l = &locals[i];
        if std::mem::replace(&mut self.matched[i], true) {
            return Err(ValidationError::OverlappingEntries(format!(
                "central entry {path:?} reuses the local data of {:?} at offset {abs}",
                ctx.entry_path(&l.name)
            )));
        }
        if *l.name != *c.name {
            return Err(mismatch(format!(
                "the local header at offset {abs} names {:?}",
                l.name
            )));
        }
        let h = &c.header;
        if h.method != l.method {
            return Err(mismatch(format!(
                "method {} in the central directory, {} locally",
                h.method, l.method
            )));
        }
        if (h.flags ^ l.flags) & FLAG_ENCRYPTED != 0 {
            return Err(mismatch("encryption flag differs".to_owned()));
        }
        if h.crc != l.crc {
            return Err(mismatch(format!(
                "CRC-32 {:08x} in the central directory, {:08x} real",
                h.crc, l.crc
            )));
        }
        if c.csize != l.csize || c.usize != l.usize {
            return Err(mismatch(format!(
                "sizes {}/{} in the central directory, {}/{} real (compressed/uncompressed)",
                c.csize, c.usize, l.csize, l.usize
            )));
        }
        Ok(())
    }
}

fn read_central<R: Read>(
    input: &mut Input<R>,
    ctx: &ArchiveContext<'_>,
    locals: &[LocalRecord],
    prefix_len: u64,
) -> Result<(), ValidationError> {
    let limits = &ctx.policy.limits;
    let cd_start = input.offset();
    let mut checks: Vec<BaseCheck> = [0, prefix_len][..if prefix_len == 0 { 1 } else { 2 }]
        .iter()
        .map(|&base| BaseCheck {
            base,
            matched: vec![false; locals.len()],
            error: None,
        })
        .collect();
    let mut count = 0u64;
    while peek_sig(input, ctx)? == CENTRAL_SIG {
        count += 1;
        let fixed = input
            .take(CENTRAL_LEN)?
            .ok_or_else(|| truncated(ctx, "a central directory header"))?;
        let h = CentralHeader::parse(fixed);
        let raw = input
            .take(usize::from(h.name_len))?
            .ok_or_else(|| truncated(ctx, "a central directory file name"))?;
        let name: Box<str> = check_name(raw, limits.max_name_bytes, |n| ctx.entry_path(n))?.into();
        let extra = input
            .take(usize::from(h.extra_len))?
            .ok_or_else(|| truncated(ctx, "a central directory extra field"))?;
        let want = [
            h.usize == ZIP64_MARK32,
            h.csize == ZIP64_MARK32,
            h.local_offset == ZIP64_MARK32,
        ];
        let z64 = parse_extra(extra, want).map_err(|r| {
            ValidationError::Malformed(format!("central entry {:?}: {r}", ctx.entry_path(&name)))
        })?;
        if !input.skip(u64::from(h.comment_len))? {
            return Err(truncated(ctx, "a central directory comment"));
        }
        if h.disk_start != 0 {
            return Err(ValidationError::Malformed(format!(
                "central entry {:?} is on another disk (split archives are not supported)",
                ctx.entry_path(&name)
            )));
        }
        if h.is_symlink() {
            return Err(ValidationError::SymlinkEntry(ctx.entry_path(&name)));
        }
        let entry = CentralEntry {
            name: &name,
            header: h,
            csize: z64.csize.unwrap_or(u64::from(h.csize)),
            usize: z64.usize.unwrap_or(u64::from(h.usize)),
            offset: z64.offset.unwrap_or(u64::from(h.local_offset)),
        };
        for check in &mut checks {
            check.record(&entry, locals, ctx);
        }
        if count > locals.len() as u64 {
            // More central entries than local ones: every guess has failed
            // (two entries share data, or one points nowhere).
            return Err(checks
                .into_iter()
                .rev()
                .find_map(|c| c.error)
                .unwrap_or_else(|| {
                    ValidationError::CentralDirectoryMismatch(
                        "more central entries than local ones".into(),
                    )
                }));
        }
    }
    let cd_size = input.offset() - cd_start;
    let end = read_end_records(input, ctx)?;
    let mismatch = ValidationError::CentralDirectoryMismatch;
    if end.entries != count {
        return Err(mismatch(format!(
            "the end record of {} declares {} entries, the central directory holds {count}",
            ctx.archive_name(),
            end.entries
        )));
    }
    if end.cd_size != cd_size {
        return Err(mismatch(format!(
            "the end record of {} declares a central directory of {} bytes, it has {cd_size}",
            ctx.archive_name(),
            end.cd_size
        )));
    }
    let placed = |what: &str| {
        mismatch(format!(
            "the end record of {} puts the {what} at offset {}, but it is at {cd_start}",
            ctx.archive_name(),
            end.cd_offset
        ))
    };
    let base = cd_start
        .checked_sub(end.cd_offset)
        .ok_or_else(|| placed("central directory"))?;
    let check = checks
        .into_iter()
        .find(|c| c.base == base)
        .ok_or_else(|| placed("central directory"))?;
    if let Some(e) = check.error {
        return Err(e);
    }
    if let Some(i) = check.matched.iter().position(|m| !m) {
        return Err(mismatch(format!(
            "local entry {:?} is missing from the central directory",
            ctx.entry_path(&locals[i].name)
        )));
    }
    if let Some((declared, actual)) = end.zip64_at
        && declared.saturating_add(base) != actual
    {
        return Err(mismatch(format!(
            "the zip64 locator of {} points at offset {declared}, the zip64 end record is at {actual}",
            ctx.archive_name()
        )));
    }
    Ok(())
}

/// The end records' facts, zip64 values resolved.
struct EndRecords {
    entries: u64,
    cd_size: u64,
    cd_offset: u64,
    /// Declared and actual offset of the zip64 end record, when present.
    zip64_at: Option<(u64, u64)>,
}

fn read_end_records<R: Read>(
    input: &mut Input<R>,
    ctx: &ArchiveContext<'_>,
) -> Result<EndRecords, ValidationError> {
    let malformed =
        |what: String| ValidationError::Malformed(format!("{} {what}", ctx.archive_name()));
    let mut zip64 = None;
    if peek_sig(input, ctx)? == ZIP64_EOCD_SIG {
        let at = input.offset();
        let b = input
            .take(ZIP64_EOCD_LEN)?
            .ok_or_else(|| truncated(ctx, "the zip64 end record"))?;
        let rec = Zip64Eocd::parse(b);
        if rec.record_size < 44
            || rec.disk != 0
            || rec.cd_disk != 0
            || rec.entries != rec.entries_on_disk
        {
            return Err(malformed(
                "has an invalid or multi-disk zip64 end record".into(),
            ));
        }
        if !input.skip(rec.record_size - 44)? {
            return Err(truncated(ctx, "the zip64 end record"));
        }
        if peek_sig(input, ctx)? != ZIP64_LOCATOR_SIG {
            return Err(malformed("has a zip64 end record without a locator".into()));
        }
        let b = input
            .take(ZIP64_LOCATOR_LEN)?
            .ok_or_else(|| truncated(ctx, "the zip64 end locator"))?;
        let loc = Zip64Locator::parse(b);
        if loc.disk != 0 || loc.total_disks > 1 {
            return Err(malformed("is a multi-disk archive".into()));
        }
        zip64 = Some((rec, (loc.eocd64_offset, at)));
    }
    let at = input.offset();
    if peek_sig(input, ctx)? != EOCD_SIG {
        return Err(malformed(format!(
            "has no end of central directory record at offset {at}"
        )));
    }
    let b = input
        .take(EOCD_LEN)?
        .ok_or_else(|| truncated(ctx, "the end of central directory record"))?;
    let eocd = Eocd::parse(b);
    let (entries, entries_on_disk, cd_size, cd_offset) = match &zip64 {
        Some((z, _)) if eocd.needs_zip64() => {
            (z.entries, z.entries_on_disk, z.cd_size, z.cd_offset)
        }
        _ => (
            u64::from(eocd.entries),
            u64::from(eocd.entries_on_disk),
            u64::from(eocd.cd_size),
            u64::from(eocd.cd_offset),
        ),
    };
    if (eocd.disk != 0 || eocd.cd_disk != 0) && zip64.is_none() || entries != entries_on_disk {
        return Err(malformed("is a multi-disk archive".into()));
    }
    let comment = input
        .take(usize::from(eocd.comment_len))?
        .ok_or_else(|| truncated(ctx, "the archive comment"))?;
    // A reader that searches backwards for the end record (the JVM does)
    // would find one hidden in the comment first and see another archive.
    if comment.windows(4).any(|w| w == b"PK\x05\x06") {
        return Err(malformed(
            "has an end record signature inside its comment".into(),
        ));
    }
    if !input.at_eof()? {
        return Err(malformed(format!(
            "has bytes after its end of central directory record (offset {})",
            input.offset()
        )));
    }
    Ok(EndRecords {
        entries,
        cd_size,
        cd_offset,
        zip64_at: zip64.map(|(_, at)| at),
    })
}
