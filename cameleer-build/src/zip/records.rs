//! The fixed-size zip records and their fields (APPNOTE 6.3.x), parsed from
//! byte slices. Nothing here reads; the walker hands in exact-size slices.

/// `PK\x03\x04`: local file header.
pub(crate) const LOCAL_SIG: u32 = 0x0403_4b50;
/// `PK\x01\x02`: central directory file header.
pub(crate) const CENTRAL_SIG: u32 = 0x0201_4b50;
/// `PK\x05\x06`: end of central directory record.
pub(crate) const EOCD_SIG: u32 = 0x0605_4b50;
/// `PK\x06\x06`: zip64 end of central directory record.
pub(crate) const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
/// `PK\x06\x07`: zip64 end of central directory locator.
pub(crate) const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
/// `PK\x07\x08`: optional data descriptor signature.
pub(crate) const DESCRIPTOR_SIG: u32 = 0x0807_4b50;

/// Fixed part of a local file header, signature included.
pub(crate) const LOCAL_LEN: usize = 30;
/// Fixed part of a central directory header, signature included.
pub(crate) const CENTRAL_LEN: usize = 46;
/// End of central directory record without its comment.
pub(crate) const EOCD_LEN: usize = 22;
/// Zip64 end record up to its extensible data.
pub(crate) const ZIP64_EOCD_LEN: usize = 56;
/// Zip64 end locator.
pub(crate) const ZIP64_LOCATOR_LEN: usize = 20;

/// General purpose flag: the entry is encrypted.
pub(crate) const FLAG_ENCRYPTED: u16 = 1;
/// General purpose flag: CRC and sizes follow the data in a descriptor.
pub(crate) const FLAG_DESCRIPTOR: u16 = 1 << 3;
/// General purpose flag: strong encryption.
pub(crate) const FLAG_STRONG_ENCRYPTION: u16 = 1 << 6;
/// General purpose flag: the central directory is encrypted.
pub(crate) const FLAG_CD_ENCRYPTED: u16 = 1 << 13;

/// Compression method STORED.
pub(crate) const STORED: u16 = 0;
/// Compression method DEFLATE.
pub(crate) const DEFLATED: u16 = 8;

/// A 32-bit field set to this means "see the zip64 extra field".
pub(crate) const ZIP64_MARK32: u32 = u32::MAX;
/// A 16-bit count set to this means "see the zip64 end record".
pub(crate) const ZIP64_MARK16: u16 = u16::MAX;

/// Little-endian u16 at `at`; callers pass slices of the right length.
pub(crate) fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Little-endian u32 at `at`.
pub(crate) fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Little-endian u64 at `at`.
pub(crate) fn u64le(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The fixed fields of a local file header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalHeader {
    pub flags: u16,
    pub method: u16,
    pub crc: u32,
    pub csize: u32,
    pub usize: u32,
    pub name_len: u16,
    pub extra_len: u16,
}

impl LocalHeader {
    /// Parses the 30 fixed bytes (signature already checked).
    pub(crate) fn parse(b: &[u8]) -> Self {
        Self {
            flags: u16le(b, 6),
            method: u16le(b, 8),
            crc: u32le(b, 14),
            csize: u32le(b, 18),
            usize: u32le(b, 22),
            name_len: u16le(b, 26),
            extra_len: u16le(b, 28),
        }
    }
}

/// The fixed fields of a central directory header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CentralHeader {
    pub flags: u16,
    pub method: u16,
    pub crc: u32,
    pub csize: u32,
    pub usize: u32,
    pub name_len: u16,
    pub extra_len: u16,
    pub comment_len: u16,
    pub disk_start: u16,
    pub external_attrs: u32,
    pub local_offset: u32,
}

impl CentralHeader {
    /// Parses the 46 fixed bytes (signature already checked).
    pub(crate) fn parse(b: &[u8]) -> Self {
        Self {
            flags: u16le(b, 8),
            method: u16le(b, 10),
            crc: u32le(b, 16),
            csize: u32le(b, 20),
            usize: u32le(b, 24),
            name_len: u16le(b, 28),
            extra_len: u16le(b, 30),
            comment_len: u16le(b, 32),
            disk_start: u16le(b, 34),
            external_attrs: u32le(b, 38),
            local_offset: u32le(b, 42),
        }
    }

    /// True when the unix mode in the external attributes is `S_IFLNK`.
    pub(crate) fn is_symlink(&self) -> bool {
        const S_IFMT: u32 = 0o170000;
        const S_IFLNK: u32 = 0o120000;
        (self.external_attrs >> 16) & S_IFMT == S_IFLNK
    }
}

/// The end of central directory record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Eocd {
    pub disk: u16,
    pub cd_disk: u16,
    pub entries_on_disk: u16,
    pub entries: u16,
    pub cd_size: u32,
    pub cd_offset: u32,
    pub comment_len: u16,
}

impl Eocd {
    /// Parses the 22 fixed bytes (signature already checked).
    pub(crate) fn parse(b: &[u8]) -> Self {
        Self {
            disk: u16le(b, 4),
            cd_disk: u16le(b, 6),
            entries_on_disk: u16le(b, 8),
            entries: u16le(b, 10),
            cd_size: u32le(b, 12),
            cd_offset: u32le(b, 16),
            comment_len: u16le(b, 20),
        }
    }

    /// True when a field defers to the zip64 end record.
    pub(crate) fn needs_zip64(&self) -> bool {
        self.entries == ZIP64_MARK16
            || self.entries_on_disk == ZIP64_MARK16
            || self.cd_size == ZIP64_MARK32
            || self.cd_offset == ZIP64_MARK32
    }
}

/// The zip64 end of central directory record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Zip64Eocd {
    /// Size of the rest of the record (after this field).
    pub record_size: u64,
    pub disk: u32,
    pub cd_disk: u32,
    pub entries_on_disk: u64,
    pub entries: u64,
    pub cd_size: u64,
    pub cd_offset: u64,
}

impl Zip64Eocd {
    /// Parses the 56 fixed bytes (signature already checked).
    pub(crate) fn parse(b: &[u8]) -> Self {
        Self {
            record_size: u64le(b, 4),
            disk: u32le(b, 16),
            cd_disk: u32le(b, 20),
            entries_on_disk: u64le(b, 24),
            entries: u64le(b, 32),
            cd_size: u64le(b, 40),
            cd_offset: u64le(b, 48),
        }
    }
}

/// The zip64 end of central directory locator.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Zip64Locator {
    pub disk: u32,
    pub eocd64_offset: u64,
    pub total_disks: u32,
}

impl Zip64Locator {
    /// Parses the 20 bytes (signature already checked).
    pub(crate) fn parse(b: &[u8]) -> Self {
        Self {
            disk: u32le(b, 4),
            eocd64_offset: u64le(b, 8),
            total_disks: u32le(b, 16),
        }
    }
}

/// The values a zip64 extra field (id 1) supplies for the 32-bit fields
/// that were set to `0xFFFFFFFF`, in the APPNOTE order.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Zip64Values {
    /// A zip64 record is present (descriptors then carry 8-byte sizes).
    pub present: bool,
    pub usize: Option<u64>,
    pub csize: Option<u64>,
    pub offset: Option<u64>,
}

/// Walks the extra field, checking that every record fits, and reads the
/// zip64 record's values for the fields flagged in `want` (uncompressed,
/// compressed, offset). Returns `Err(reason)` on a malformed field.
pub(crate) fn parse_extra(extra: &[u8], want: [bool; 3]) -> Result<Zip64Values, &'static str> {
    let mut out = Zip64Values::default();
    let mut i = 0;
    let mut seen_zip64 = false;
    while i < extra.len() {
        if extra.len() - i < 4 {
            return Err("extra field record header is cut short");
        }
        let id = u16le(extra, i);
        let len = usize::from(u16le(extra, i + 2));
        let body = extra
            .get(i + 4..i + 4 + len)
            .ok_or("extra field record overruns the extra field")?;
        if id == 1 {
            if seen_zip64 {
                return Err("two zip64 extra records");
            }
            seen_zip64 = true;
            let mut at = 0;
            let mut next = |present: bool| -> Result<Option<u64>, &'static str> {
                if !present {
                    return Ok(None);
                }
                let v = body
                    .get(at..at + 8)
                    .ok_or("zip64 extra record is too short")?;
                at += 8;
                Ok(Some(u64le(v, 0)))
            };
            out.usize = next(want[0])?;
            out.csize = next(want[1])?;
            out.offset = next(want[2])?;
        }
        i += 4 + len;
    }
    out.present = seen_zip64;
    if want.iter().any(|&w| w) && !seen_zip64 {
        return Err("a size or offset is 0xFFFFFFFF but there is no zip64 extra record");
    }
    Ok(out)
}
