//! Every limit holds on the real bytes, whatever the headers declare.

mod common;

use cameleer_build::testing::jars::{self, Rng};
use cameleer_build::testing::{Entry, ZipBuilder};
use cameleer_build::{Limits, ValidationPolicy, validate_jar};
use common::{assert_rejected, check, jar};

fn with_limits(limits: Limits) -> ValidationPolicy {
    ValidationPolicy {
        limits,
        ..Default::default()
    }
}

/// Pseudo-random bytes: they do not compress.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len.div_ceil(8))
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .take(len)
        .collect()
}

#[test]
fn default_limits_are_the_documented_ones() {
    let l = Limits::default();
    assert_eq!(l.max_upload_bytes, 512 << 20);
    assert_eq!(l.max_entries, 65_535);
    assert_eq!(l.max_name_bytes, 1024);
    assert_eq!(l.max_total_uncompressed, 2 << 30);
    assert_eq!(
        (l.max_compression_ratio, l.ratio_threshold_bytes),
        (100, 1 << 20)
    );
    assert_eq!(l.max_nesting_depth, 2);
    assert_eq!(ValidationPolicy::default().java_release, 17);
}

#[test]
fn rejects_oversized_uploads_while_reading() {
    let bytes = jar().finish();
    let small = with_limits(Limits {
        max_upload_bytes: 100,
        ..Limits::default()
    });
    assert_rejected(
        validate_jar(&bytes[..], &small),
        "too_large",
        "exceeds 100 bytes",
    );
}

#[test]
fn rejects_high_ratio_entries_even_when_declared_small() {
    // 4 MiB of zeros deflate to ~4 KiB: 1000:1. The headers claim 10 bytes.
    let mut zip = jar();
    let mut bomb = Entry::deflated("bomb.bin", vec![0u8; 4 << 20]);
    bomb.local.usize = Some(10);
    bomb.central.usize = Some(10);
    zip.add(bomb);
    assert_rejected(
        check(&zip.finish()),
        "compression_ratio_exceeded",
        "bomb.bin",
    );
    // Small entries may compress as well as they like.
    let mut zip = jar();
    zip.add(Entry::deflated("small.txt", vec![b'a'; 512 << 10]));
    assert!(check(&zip.finish()).is_ok());
}

#[test]
fn rejects_going_over_the_total_budget_nested_archives_included() {
    // Each library holds 3 x 1 MiB of noise; three libraries are 9 MiB
    // inside, 18 MiB counted with the outer entries, over an 8 MiB budget.
    let lib = {
        let mut z = ZipBuilder::new();
        for i in 0..3 {
            z.add(Entry::stored(format!("blob{i}.bin"), noise(1 << 20, i)));
        }
        z.finish()
    };
    let libs: Vec<_> = (0..3)
        .map(|i| (format!("lib{i}.jar"), lib.clone()))
        .collect();
    let boot = jars::spring_boot_jar("com.acme.App", 0, &libs);
    let tight = with_limits(Limits {
        max_total_uncompressed: 8 << 20,
        ..Limits::default()
    });
    assert_rejected(
        validate_jar(&boot[..], &tight),
        "uncompressed_budget_exceeded",
        "BOOT-INF/lib/lib",
    );
    let roomy = with_limits(Limits {
        max_total_uncompressed: 32 << 20,
        ..Limits::default()
    });
    assert!(validate_jar(&boot[..], &roomy).is_ok());
}

#[test]
fn rejects_nested_bombs() {
    // A ratio bomb inside a library is found through the nesting.
    let mut lib = ZipBuilder::new();
    lib.add(Entry::deflated("zeros.bin", vec![0u8; 3 << 20]));
    let boot = jars::spring_boot_jar("com.acme.App", 0, &[("bomb.jar".into(), lib.finish())]);
    assert_rejected(
        check(&boot),
        "compression_ratio_exceeded",
        "BOOT-INF/lib/bomb.jar!/zeros.bin",
    );

    // Nesting: depth 2 is scanned, depth 3 is refused.
    let wrap = |name: &str, inner: Vec<u8>| {
        let mut z = ZipBuilder::new();
        z.add(Entry::stored(name, inner));
        z.finish()
    };
    let depth2 = wrap("lib/b.jar", jars::library_jar("org/c", 1, 100, 1));
    let ok = jars::spring_boot_jar("com.acme.App", 0, &[("a.jar".into(), depth2.clone())]);
    assert!(check(&ok).is_ok());
    let depth3 = wrap(
        "lib/b.jar",
        wrap("lib/c.jar", jars::library_jar("org/d", 1, 100, 1)),
    );
    let deep = jars::spring_boot_jar("com.acme.App", 0, &[("a.jar".into(), depth3)]);
    assert_rejected(
        check(&deep),
        "nesting_too_deep",
        "BOOT-INF/lib/a.jar!/lib/b.jar!/lib/c.jar",
    );
}

fn many_entries(n: usize) -> Vec<u8> {
    let mut zip = jar();
    for i in 0..n {
        zip.add(Entry::stored(format!("r/{i}"), b""));
    }
    zip.finish()
}

#[test]
fn entry_count_limit_is_65535_per_archive() {
    // jar() holds 2 entries.
    assert!(check(&many_entries(65_535 - 2)).is_ok());
    assert_rejected(
        check(&many_entries(65_535 - 1)),
        "too_many_entries",
        "more than 65535 entries",
    );
    let few = with_limits(Limits {
        max_entries: 5,
        ..Limits::default()
    });
    assert_rejected(
        validate_jar(&many_entries(4)[..], &few),
        "too_many_entries",
        "more than 5",
    );
}
