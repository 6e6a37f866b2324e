//! JARs that real projects ship are accepted, and what is reported about
//! them is right: archives written by the JDK's `jar` tool and Info-ZIP's
//! `zip`, Spring Boot layouts, launch scripts, zip64 end records, tens of
//! thousands of entries.

mod common;

use std::path::Path;
use std::process::Command;

use cameleer_build::testing::jars::{self, JAVA_17};
use cameleer_build::testing::{End, Entry, ZipBuilder};
use cameleer_build::{FindingKind, Runtime, Sha256Digest, ValidationPolicy, validate_jar};
use common::{MAIN, check, class, jar};

#[test]
fn plain_jar_reports_digest_size_and_main_class() {
    let bytes = jars::plain_jar("com.acme.Main");
    let v = check(&bytes).unwrap();
    assert_eq!(v.sha256, Sha256Digest::of(&bytes));
    assert_eq!(v.size, bytes.len() as u64);
    assert_eq!(v.main_class, "com.acme.Main");
    assert_eq!(v.runtime, Runtime::Plain);
    assert_eq!(v.max_class_version, Some(JAVA_17));
    assert!(v.findings.is_empty(), "{:?}", v.findings);
}

#[test]
fn spring_boot_fat_jar_with_stored_libraries() {
    let libs: Vec<_> = (0..4)
        .map(|i| {
            (
                format!("lib-{i}-1.0.jar"),
                jars::library_jar(&format!("org/l{i}"), 20, 2000, i),
            )
        })
        .collect();
    let bytes = jars::spring_boot_jar("com.acme.App", 30, &libs);
    let v = check(&bytes).unwrap();
    assert_eq!(
        (v.runtime, v.main_class.as_str()),
        (Runtime::SpringBoot, "com.acme.App")
    );
    assert_eq!(v.size, bytes.len() as u64);
}

#[test]
fn launch_script_with_either_offset_base() {
    let script =
        b"#!/bin/bash\n# Spring Boot launch script\nexec java -jar \"$0\" \"$@\"\nexit 0\n";
    for relative in [false, true] {
        let mut zip = ZipBuilder::with_prefix(script, relative);
        zip.add(Entry::streamed(
            "META-INF/MANIFEST.MF",
            jars::manifest(&[("Main-Class", MAIN)]),
        ));
        zip.add(Entry::deflated("com/acme/Main.class", class(JAVA_17)));
        let bytes = zip.finish();
        let v = check(&bytes).unwrap_or_else(|e| panic!("relative={relative}: {e}"));
        assert_eq!(
            v.sha256,
            Sha256Digest::of(&bytes),
            "the script is part of the digest"
        );
        let f = &v.findings[0];
        assert_eq!(f.kind, FindingKind::LaunchScript);
        assert!(f.message.contains(&script.len().to_string()));
    }
}

#[test]
fn zip64_end_records_and_descriptors_without_signature() {
    let mut zip = jar();
    zip.add(Entry {
        descriptor_signature: false,
        ..Entry::streamed("a.txt", b"abc abc abc")
    });
    assert!(
        check(&zip.finish_with(End {
            zip64: true,
            ..End::default()
        }))
        .is_ok()
    );
}

#[test]
fn tens_of_thousands_of_entries() {
    let mut zip = jar();
    // Mostly STORED: setting up a compressor per entry is slow in debug
    // builds, and the count is what this test is about.
    for i in 0..30_000 {
        let (name, data) = (format!("com/acme/gen/C{i}.txt"), format!("entry {i}"));
        zip.add(if i % 100 == 0 {
            Entry::streamed(name, data)
        } else {
            Entry::stored(name, data)
        });
    }
    assert!(check(&zip.finish()).is_ok());
}

#[test]
fn reads_from_tiny_chunks() {
    // A reader that returns one byte at a time exercises every boundary.
    struct Trickle<'a>(&'a [u8]);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some((&b, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            if buf.is_empty() {
                return Ok(0);
            }
            buf[0] = b;
            self.0 = rest;
            Ok(1)
        }
    }
    let lib = jars::library_jar("org/l", 3, 500, 1);
    let bytes = jars::spring_boot_jar("com.acme.App", 2, &[("l.jar".into(), lib)]);
    let v = validate_jar(Trickle(&bytes), &ValidationPolicy::default()).unwrap();
    assert_eq!(v.sha256, Sha256Digest::of(&bytes));
}

/// Runs a tool, or returns `None` (printing why) when it is not installed.
fn run(dir: &Path, program: &str, args: &[&str]) -> Option<()> {
    match Command::new(program).args(args).current_dir(dir).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: {program} is not installed");
            None
        }
        Err(e) => panic!("{program}: {e}"),
        Ok(out) => {
            assert!(
                out.status.success(),
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(())
        }
    }
}

const MAIN_JAVA: &str = "package com.acme;\npublic class Main {\n    public static void main(String[] a) {\n        System.out.println(\"hello\");\n    }\n}\n";

#[test]
fn jdk_jar_tool_output_is_accepted_including_a_nested_stored_jar() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("src/com/acme")).unwrap();
    std::fs::write(d.join("src/com/acme/Main.java"), MAIN_JAVA).unwrap();
    if run(
        d,
        "javac",
        &["--release", "17", "-d", "classes", "src/com/acme/Main.java"],
    )
    .is_none()
    {
        return;
    }
    // A library jar, nested STORED (`-0`) in the application jar.
    std::fs::create_dir_all(d.join("libsrc/org/lib")).unwrap();
    std::fs::write(
        d.join("libsrc/org/lib/readme.txt"),
        "library resource\n".repeat(50),
    )
    .unwrap();
    run(
        d,
        "jar",
        &["--create", "--file", "classes/lib.jar", "-C", "libsrc", "."],
    )
    .unwrap();
    for (file, store) in [("stored.jar", "--no-compress"), ("app.jar", "--verbose")] {
        let args = [
            "--create",
            store,
            "--file",
            file,
            "--main-class",
            MAIN,
            "-C",
            "classes",
            ".",
        ];
        run(d, "jar", &args).unwrap();
    }
    for name in ["app.jar", "stored.jar"] {
        let bytes = std::fs::read(d.join(name)).unwrap();
        let v = check(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((v.main_class.as_str(), v.runtime), (MAIN, Runtime::Plain));
        assert_eq!(
            v.max_class_version,
            Some(JAVA_17),
            "javac --release 17 writes major 61"
        );
    }
    // Too new for Java 11.
    let bytes = std::fs::read(d.join("app.jar")).unwrap();
    let java11 = ValidationPolicy {
        java_release: 11,
        ..Default::default()
    };
    assert_eq!(
        validate_jar(&bytes[..], &java11).unwrap_err().code(),
        "unsupported_class_version"
    );
}

#[test]
fn info_zip_output_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("META-INF")).unwrap();
    std::fs::create_dir_all(d.join("com/acme")).unwrap();
    std::fs::write(
        d.join("META-INF/MANIFEST.MF"),
        jars::manifest(&[("Main-Class", MAIN)]),
    )
    .unwrap();
    std::fs::write(d.join("com/acme/Main.class"), class(JAVA_17)).unwrap();
    std::fs::write(d.join("com/acme/big.txt"), "hello zip\n".repeat(10_000)).unwrap();
    if run(d, "zip", &["-q", "-r", "-X", "app.jar", "META-INF", "com"]).is_none() {
        return;
    }
    let bytes = std::fs::read(d.join("app.jar")).unwrap();
    assert_eq!(check(&bytes).unwrap().main_class, MAIN);
    // A launch script prepended and offsets fixed with `zip -A`, as for
    // executable archives.
    let mut exe = b"#!/bin/sh\nexec java -jar \"$0\"\n".to_vec();
    exe.extend_from_slice(&bytes);
    std::fs::write(d.join("exe.jar"), &exe).unwrap();
    let v = check(&exe).unwrap();
    assert_eq!(v.findings[0].kind, FindingKind::LaunchScript);
    run(d, "zip", &["-q", "-A", "exe.jar"]).unwrap();
    assert!(check(&std::fs::read(d.join("exe.jar")).unwrap()).is_ok());
}

#[test]
fn parallel_and_sequential_scans_agree() {
    let sequential = ValidationPolicy {
        parallel: false,
        ..Default::default()
    };
    let parallel = ValidationPolicy::default();
    let libs: Vec<_> = (0..8)
        .map(|i| {
            (
                format!("lib-{i}.jar"),
                jars::library_jar(&format!("org/l{i}"), 10, 3000, i),
            )
        })
        .collect();
    let ok = jars::spring_boot_jar("com.acme.App", 5, &libs);
    assert_eq!(
        validate_jar(&ok[..], &sequential).unwrap(),
        validate_jar(&ok[..], &parallel).unwrap()
    );

    // Two bad libraries: the earlier one is reported, whichever thread
    // scanned which.
    let mut bad_libs = libs.clone();
    let mut newer = ZipBuilder::new();
    newer.add(Entry::deflated("org/n/New.class", class(70)));
    bad_libs[2] = ("newer.jar".into(), newer.finish());
    bad_libs[6] = ("broken.jar".into(), b"not a zip".to_vec());
    let bad = jars::spring_boot_jar("com.acme.App", 5, &bad_libs);
    for _ in 0..20 {
        for policy in [&sequential, &parallel] {
            let e = validate_jar(&bad[..], policy).unwrap_err();
            assert_eq!(e.code(), "unsupported_class_version", "{e}");
            assert!(
                e.to_string()
                    .contains("BOOT-INF/lib/newer.jar!/org/n/New.class")
            );
        }
    }
}
