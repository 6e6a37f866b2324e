//! Malformed and hostile archives, built byte by byte, each rejected with
//! its own code and a message that names the offending part.

mod common;

use cameleer_build::testing::{End, Entry, ZipBuilder, deflate};
use cameleer_build::{ValidationError, ValidationPolicy, validate_jar};
use common::{assert_rejected, check, jar};

#[test]
fn rejects_what_is_not_a_zip() {
    assert_rejected(
        check(b"hello, this is plainly text"),
        "not_a_zip",
        "no zip local file header",
    );
    // A launch script longer than the allowed prefix.
    let mut long = vec![b'#'; (1 << 20) + 10];
    long.extend(jar().finish());
    assert_rejected(check(&long), "not_a_zip", "first 1048576 bytes");
}

#[test]
fn rejects_empty_uploads_and_archives() {
    assert_rejected(check(b""), "empty", "no bytes");
    assert_rejected(
        check(&ZipBuilder::new().finish()),
        "empty",
        "without entries",
    );
}

#[test]
fn every_truncation_is_rejected() {
    let bytes = jar().finish();
    for cut in 1..bytes.len() {
        let e = check(&bytes[..cut]).expect_err("a cut archive must be rejected");
        assert!(
            matches!(e.code(), "truncated" | "not_a_zip"),
            "cut at {cut}: {e}"
        );
    }
    // Cut inside the class entry's data: plainly truncated, entry named.
    let name_at = bytes
        .windows(19)
        .position(|w| w == b"com/acme/Main.class")
        .unwrap();
    assert_rejected(
        check(&bytes[..name_at + 19 + 10]),
        "truncated",
        "inside the data of entry \"com/acme/Main.class\"",
    );
}

#[test]
fn rejects_unsafe_names_naming_them() {
    for (name, why) in [
        (&b"../../etc/cron.d/evil"[..], "'..'"),
        (b"/etc/passwd", "absolute"),
        (b"com\\acme\\Evil.class", "backslash"),
        (b"C:/Windows/evil.dll", "drive letter"),
        (b"evil\0.class", "control"),
        (b"evil\x1b[2J.txt", "control"),
    ] {
        let mut zip = jar();
        zip.add(Entry::deflated(name, b"x"));
        let e = check(&zip.finish()).unwrap_err();
        assert_eq!(e.code(), "invalid_entry_name", "{name:?}");
        assert!(e.to_string().contains(why), "{e}");
    }
    let mut zip = jar();
    zip.add(Entry::deflated(vec![b'a'; 1025], b"x"));
    assert_rejected(check(&zip.finish()), "entry_name_too_long", "1025 bytes");
}

#[test]
fn rejects_symlinks() {
    let mut zip = jar();
    let mut link = Entry::stored("config/app.yml", b"/etc/shadow");
    link.unix_mode = 0o120777;
    zip.add(link);
    assert_rejected(check(&zip.finish()), "symlink_entry", "config/app.yml");
}

#[test]
fn rejects_duplicates() {
    let mut zip = jar();
    zip.add(Entry::deflated("com/acme/Main.class", b"other"));
    assert_rejected(
        check(&zip.finish()),
        "duplicate_entry",
        "com/acme/Main.class",
    );
}

#[test]
fn rejects_central_directory_disagreements() {
    type Edit = fn(&mut ZipBuilder);
    let cases: [(Edit, &str); 6] = [
        (
            |z| z.central[1].name = b"com/acme/Other.class".to_vec(),
            "names \"com/acme/Main.class\"",
        ),
        (|z| z.central[1].crc ^= 1, "CRC-32"),
        (|z| z.central[1].csize += 1, "sizes"),
        (|z| z.central[1].usize += 1, "sizes"),
        (|z| z.central[1].method = 0, "method 0"),
        (
            |z| drop(z.central.remove(0)),
            "\"META-INF/MANIFEST.MF\" is missing",
        ),
    ];
    for (edit, needle) in cases {
        let mut zip = jar();
        edit(&mut zip);
        assert_rejected(check(&zip.finish()), "central_directory_mismatch", needle);
    }
    let lie = |end: End| check(&jar().finish_with(end));
    assert_rejected(
        lie(End {
            entries: Some(3),
            ..End::default()
        }),
        "central_directory_mismatch",
        "declares 3 entries",
    );
    assert_rejected(
        lie(End {
            cd_size: Some(1),
            ..End::default()
        }),
        "central_directory_mismatch",
        "declares a central directory of 1 bytes",
    );
    assert_rejected(
        lie(End {
            cd_offset: Some(5),
            ..End::default()
        }),
        "central_directory_mismatch",
        "at offset 5",
    );
    let mut zip = jar();
    zip.central[1].offset = 7;
    assert_rejected(
        check(&zip.finish()),
        "overlapping_entries",
        "inside the data of \"META-INF/MANIFEST.MF\"",
    );
}

#[test]
fn rejects_overlapping_entries_fifield_style() {
    // Full overlap: many central entries share one local header and its data.
    let mut zip = jar();
    for i in 0..3 {
        let mut alias = zip.central[1].clone();
        alias.name = format!("com/acme/Alias{i}.class").into_bytes();
        zip.central.push(alias);
    }
    assert_rejected(
        check(&zip.finish()),
        "overlapping_entries",
        "reuses the local data of \"com/acme/Main.class\"",
    );

    // Quoted overlap: entry A's data contains a whole local entry B, and the
    // central directory lists both, so B's bytes are also A's bytes.
    let mut inner = ZipBuilder::new();
    inner.add(Entry::stored("b.txt", b"kernel kernel kernel"));
    let quoted = inner.finish();
    let local_b_len = 30 + 5 + 20;
    let mut zip = jar();
    let a_offset = zip.offset();
    zip.add(Entry::stored("a.bin", &quoted[..local_b_len]));
    let mut b = zip.central[2].clone();
    b.name = b"b.txt".to_vec();
    b.offset = a_offset + 30 + 5;
    b.crc = cameleer_build::testing::crc32(b"kernel kernel kernel");
    (b.csize, b.usize) = (20, 20);
    zip.central.push(b);
    assert_rejected(
        check(&zip.finish()),
        "overlapping_entries",
        "inside the data of \"a.bin\"",
    );
}

#[test]
fn rejects_fifields_deflate_quoted_overlap() {
    // The "better zip bomb" construction: entry A's deflate stream opens
    // with a non-compressed block that quotes B's local header, then
    // continues with B's own compressed data, so both central entries
    // inflate the same kernel bytes.
    let content = vec![b'k'; 10_000];
    let kernel = deflate(&content);
    let mut b_header = Vec::new();
    b_header.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x08\x08\x00\x00\x00\x21\x00");
    b_header.extend_from_slice(&cameleer_build::testing::crc32(&content).to_le_bytes());
    b_header.extend_from_slice(&(kernel.len() as u32).to_le_bytes());
    b_header.extend_from_slice(&(content.len() as u32).to_le_bytes());
    b_header.extend_from_slice(&[5, 0, 0, 0]);
    b_header.extend_from_slice(b"b.bin");
    let len = b_header.len() as u16;
    let mut a_data = vec![0x00];
    a_data.extend_from_slice(&len.to_le_bytes());
    a_data.extend_from_slice(&(!len).to_le_bytes());
    a_data.extend_from_slice(&b_header);
    a_data.extend_from_slice(&kernel);
    let mut a_plain = b_header.clone();
    a_plain.extend_from_slice(&content);

    let mut zip = jar();
    let a_offset = zip.offset();
    zip.add(Entry {
        raw_data: Some(a_data),
        ..Entry::deflated("a.bin", &a_plain)
    });
    let mut b = zip.central[2].clone();
    b.name = b"b.bin".to_vec();
    b.offset = a_offset + 30 + 5 + 5;
    (b.crc, b.csize, b.usize) = (
        cameleer_build::testing::crc32(&content),
        kernel.len() as u32,
        content.len() as u32,
    );
    zip.central.push(b);
    let bytes = zip.finish();
    assert_eq!(
        &bytes[a_offset as usize + 40..][..4],
        b"PK\x03\x04",
        "B's header sits inside A's data"
    );
    assert_rejected(
        check(&bytes),
        "overlapping_entries",
        "central entry \"b.bin\" points at offset",
    );
}

#[test]
fn rejects_encryption_and_unknown_methods() {
    let mut zip = jar();
    let mut e = Entry::deflated("secret.txt", b"x");
    e.local.flags = Some(0x801);
    zip.add(e);
    assert_rejected(check(&zip.finish()), "encrypted_entry", "secret.txt");

    let mut zip = jar();
    let mut e = Entry::stored("data.bz2", b"BZh9");
    e.method = 12;
    zip.add(e);
    assert_rejected(check(&zip.finish()), "unsupported_compression", "method 12");

    let mut zip = jar();
    let mut e = Entry::stored("streamed.bin", b"abc");
    e.descriptor = true;
    zip.add(e);
    assert_rejected(
        check(&zip.finish()),
        "stored_with_data_descriptor",
        "streamed.bin",
    );
}

#[test]
fn rejects_lying_sizes_and_crcs() {
    type Edit = fn(&mut Entry);
    let cases: [(Edit, &str, &str); 5] = [
        (
            |e| e.local.usize = Some(10),
            "size_mismatch",
            "declares 10 uncompressed bytes but holds 4000",
        ),
        (|e| e.local.csize = Some(3), "size_mismatch", "compressed"),
        (
            |e| e.local.crc = Some(0xdead_beef),
            "crc_mismatch",
            "declared deadbeef",
        ),
        (
            |e| e.raw_data = Some(deflate(&[b'y'; 4000])),
            "crc_mismatch",
            "big.txt",
        ),
        (
            |e| e.method = 0,
            "size_mismatch",
            "declares 4001 uncompressed bytes",
        ),
    ];
    for (edit, code, needle) in cases {
        let mut zip = jar();
        let mut e = Entry::deflated("big.txt", [b'x'; 4000]);
        edit(&mut e);
        if e.method == 0 {
            // STORED, but the uncompressed size differs from the stored bytes.
            e.local.usize = Some(4001);
        }
        zip.add(e);
        assert_rejected(check(&zip.finish()), code, needle);
    }
    // A data descriptor that lies.
    let mut zip = jar();
    let mut e = Entry::streamed("big.txt", [b'x'; 4000]);
    e.raw_data = Some(deflate(&[b'x'; 3999]));
    zip.add(e);
    assert_rejected(
        check(&zip.finish()),
        "size_mismatch",
        "declares 4000 uncompressed bytes but holds 3999",
    );
}

#[test]
fn rejects_bytes_after_the_end_and_hidden_end_records() {
    let trailing = jar().finish_with(End {
        trailing: b"junk".to_vec(),
        ..End::default()
    });
    assert_rejected(
        check(&trailing),
        "malformed",
        "bytes after its end of central directory record",
    );
    let hidden = jar().finish_with(End {
        comment: b"xPK\x05\x06".to_vec(),
        ..End::default()
    });
    assert_rejected(
        check(&hidden),
        "malformed",
        "end record signature inside its comment",
    );
    let mut zip = jar();
    zip.raw(b"garbage between entries");
    zip.add(Entry::deflated("x.txt", b"x"));
    assert_rejected(
        check(&zip.finish()),
        "malformed",
        "after entry \"com/acme/Main.class\"",
    );
    let mut zip = jar();
    zip.add(Entry {
        raw_data: Some(vec![0xff; 16]),
        ..Entry::deflated("bad.txt", b"x")
    });
    assert_rejected(
        check(&zip.finish()),
        "malformed",
        "corrupt deflate data in entry \"bad.txt\"",
    );
}

#[test]
fn reports_io_errors_and_checksums() {
    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    assert_rejected(
        validate_jar(Failing, &ValidationPolicy::default()),
        "io_error",
        "disk on fire",
    );

    let bytes = jar().finish();
    let mut policy = ValidationPolicy {
        expected_sha256: Some(cameleer_build::Sha256Digest::of(&bytes)),
        ..Default::default()
    };
    assert!(validate_jar(&bytes[..], &policy).is_ok());
    policy.expected_sha256 = Some(cameleer_build::Sha256Digest::of(b"other"));
    assert_rejected(
        validate_jar(&bytes[..], &policy),
        "checksum_mismatch",
        "expected sha256",
    );
    // A transfer that corrupted the archive: the checksum explains it best.
    let mut corrupt = bytes.clone();
    corrupt[60] ^= 0xff;
    assert!(check(&corrupt).is_err());
    policy.expected_sha256 = Some(cameleer_build::Sha256Digest::of(&bytes));
    assert_rejected(validate_jar(&corrupt[..], &policy), "checksum_mismatch", "");
}

#[test]
fn every_code_is_listed() {
    let e = ValidationError::Empty(String::new());
    assert!(ValidationError::CODES.contains(&e.code()));
    let mut seen = std::collections::HashSet::new();
    assert!(
        ValidationError::CODES.iter().all(|c| seen.insert(*c)),
        "codes are unique"
    );
    assert!(
        ValidationError::CODES
            .iter()
            .all(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    );
}

#[test]
fn lies_are_caught_in_entries_inflated_in_one_shot_and_in_streamed_ones() {
    // Small entries are inflated in one shot; one over 256 KiB of output
    // (or whose end is not yet buffered) is streamed. Both are held to the
    // same checks.
    fn text(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_u32;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b'a' + (x % 20) as u8
            })
            .collect()
    }
    for len in [4_000, 600_000] {
        let body = text(len);
        for streamed in [false, true] {
            let entry = || {
                if streamed {
                    Entry::streamed("data.txt", body.clone())
                } else {
                    Entry::deflated("data.txt", body.clone())
                }
            };
            let mut zip = jar();
            zip.add(entry());
            check(&zip.finish())
                .unwrap_or_else(|e| panic!("{len} bytes, streamed {streamed}: {e}"));

            let mut zip = jar();
            let mut e = entry();
            e.raw_data = Some(deflate(&body[..len - 1]));
            zip.add(e);
            assert_rejected(check(&zip.finish()), "size_mismatch", "data.txt");

            let mut zip = jar();
            let mut e = entry();
            let mut other = body.clone();
            other[len / 2] ^= 1;
            e.raw_data = Some(deflate(&other));
            zip.add(e);
            assert_rejected(check(&zip.finish()), "crc_mismatch", "data.txt");
        }
    }
}
