//! The second half of the pass: the central directory and the end records,
//! matched against the local entries the first half really saw.

use std::io::Read;

use super::input::Input;
use super::names::check_name;
use super::records::*;
use super::walker::{ArchiveContext, LocalRecord, peek_sig, truncated};
use crate::ValidationError;

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

pub(crate) fn read_central<R: Read>(
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
