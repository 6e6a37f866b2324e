//! Tar headers written byte for byte the same way every time.
//!
//! Every entry gets a ustar header: name (split into `prefix`/`name` when
//! longer than 100 bytes), fixed mode, uid, gid and mtime, empty user and
//! group names, zero device numbers. A name or symlink target that does not
//! fit a ustar header gets a POSIX.1-2001 PAX extended header (`path`,
//! `linkpath`) right before it, so the archive stays in one format family.

use std::io::{self, Read, Write};

use super::LayerOptions;

/// Length of the ustar `name` and `linkname` fields.
const NAME_LEN: usize = 100;

/// Largest size a ustar header holds (11 octal digits).
pub(crate) const MAX_USTAR_SIZE: u64 = 0o77_777_777_777;

/// What an entry is, with its normalised mode.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EntryKind<'t> {
    /// A directory: mode 0755 unless given another.
    Dir { mode: u32 },
    /// A regular file of `size` bytes: mode 0755 when `executable`, else 0644.
    File { size: u64, executable: bool },
    /// A symbolic link: mode 0777, target verbatim.
    Symlink { target: &'t str },
}

/// Appends one entry: its PAX header when needed, its ustar header, its
/// data (exactly the size the header says, which the caller guarantees).
pub(crate) fn append_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    opts: &LayerOptions,
    name: &str,
    kind: EntryKind<'_>,
    data: impl Read,
) -> io::Result<()> {
    let mut header = base_header(opts);
    let mut pax = Vec::new();
    if !set_name(&mut header, name) {
        pax_record(&mut pax, "path", name);
    }
    match kind {
        EntryKind::Dir { mode } => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(mode);
            header.set_size(0);
        }
        EntryKind::File { size, executable } => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if executable { 0o755 } else { 0o644 });
            header.set_size(size);
        }
        EntryKind::Symlink { target } => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            if !set_link(&mut header, target) {
                pax_record(&mut pax, "linkpath", target);
            }
        }
    }
    header.set_cksum();
    if !pax.is_empty() {
        let mut ext = base_header(opts);
        set_name(&mut ext, "././@PaxHeader");
        ext.set_entry_type(tar::EntryType::XHeader);
        ext.set_mode(0o644);
        ext.set_size(pax.len() as u64);
        ext.set_cksum();
        tar.append(&ext, &pax[..])?;
    }
    tar.append(&header, data)
}

/// A ustar header with the fixed owner and mtime and nothing else set.
fn base_header(opts: &LayerOptions) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_uid(opts.uid);
    h.set_gid(opts.gid);
    h.set_mtime(opts.mtime);
    h
}

/// Writes `name` into the ustar `name` field, or splits it at a `/` into
/// `prefix` (at most 155 bytes) and `name` (at most 100, not empty), taking
/// the first `/` that works. False when it fits neither way (the field then
/// holds a cut copy and a PAX `path` record must carry the real name).
fn set_name(header: &mut tar::Header, name: &str) -> bool {
    let Some(ustar) = header.as_ustar_mut() else {
        return false;
    };
    let b = name.as_bytes();
    if b.len() <= ustar.name.len() {
        copy(&mut ustar.name, b);
        return true;
    }
    let split = b.iter().enumerate().find_map(|(i, &c)| {
        let rest = b.len() - i - 1;
        (c == b'/' && i <= ustar.prefix.len() && rest > 0 && rest <= ustar.name.len()).then_some(i)
    });
    match split {
        Some(i) => {
            copy(&mut ustar.prefix, &b[..i]);
            copy(&mut ustar.name, &b[i + 1..]);
            true
        }
        None => {
            copy(&mut ustar.name, cut_at_char(name, NAME_LEN));
            false
        }
    }
}

/// Writes a symlink target into `linkname`; false when longer than 100
/// bytes (a cut copy is written and a PAX `linkpath` record is needed).
fn set_link(header: &mut tar::Header, target: &str) -> bool {
    let Some(ustar) = header.as_ustar_mut() else {
        return false;
    };
    let fits = target.len() <= NAME_LEN;
    copy(&mut ustar.linkname, cut_at_char(target, NAME_LEN));
    fits
}

/// Copies `src` into the start of a zeroed field.
fn copy(field: &mut [u8], src: &[u8]) {
    field.fill(0);
    field[..src.len()].copy_from_slice(src);
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn cut_at_char(s: &str, max: usize) -> &[u8] {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

/// Appends a PAX record, `"<len> <key>=<value>\n"`, where `len` counts the
/// whole record, its own digits included.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &str) {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}={value}\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for value in ["a", &"x".repeat(93), &"y".repeat(94), &"z".repeat(995)] {
            let mut out = Vec::new();
            pax_record(&mut out, "path", value);
            let s = String::from_utf8(out).unwrap();
            let (len, _) = s.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), s.len(), "{s:?}");
        }
    }

    #[test]
    fn long_names_split_then_fall_back_to_pax() {
        let mut h = tar::Header::new_ustar();
        let name = format!("{}/{}", "p".repeat(150), "n".repeat(100));
        assert!(set_name(&mut h, &name));
        assert_eq!(h.path_bytes().as_ref(), name.as_bytes());
        let dir = format!("{}/{}/", "a".repeat(30), "d".repeat(90));
        assert!(set_name(&mut h, &dir), "a 122-byte directory splits");
        assert_eq!(h.path_bytes().as_ref(), dir.as_bytes());
        let lone = format!("{}/", "d".repeat(120));
        assert!(!set_name(&mut h, &lone), "the trailing / leaves no name");
        assert!(!set_name(&mut h, &"q".repeat(101)), "no / to split at");
        assert!(!set_name(&mut h, &format!("{}/x", "p".repeat(156))));
        assert!(set_link(&mut h, &"l".repeat(100)));
        assert!(!set_link(&mut h, &"é".repeat(51)));
    }
}
