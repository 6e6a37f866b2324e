//! OCI assembly: the same inputs give the same digests, in one process or
//! two, whatever the files' metadata on disk; a new JAR changes only the app
//! layer; layers parse back normalised; config, manifest and layout say what
//! they should. Bad input: `oci_errors.rs`.
#![cfg(unix)]

mod oci_common;

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::symlink;
use std::process::Command;

use cameleer_build::oci::spec::{ImageConfiguration, ImageIndex, ImageManifest};
use cameleer_build::oci::{self, FileMode, LayerBuilder, LayerOptions};
use cameleer_build::{DockerfileSpec, Sha256Digest};
use flate2::read::GzDecoder;
use oci_common::*;

/// Set in a child process: the variant of the fixture to build.
const CHILD_ENV: &str = "CAMELEER_OCI_TEST_CHILD";

// ---------------------------------------------------------------- determinism

#[test]
fn same_inputs_same_digests_whatever_the_disk_metadata() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = build(a.path(), 0, APP);
    let two = build(b.path(), 1, APP);
    assert_eq!(one.manifest.digest, two.manifest.digest);
    assert_eq!(one.manifest.bytes, two.manifest.bytes);
    assert_eq!(one.config.digest, two.config.digest);
    assert_eq!(one.config.bytes, two.config.bytes);
    for (x, y) in one.layers.iter().zip(&two.layers) {
        assert_eq!(x.layer, y.layer);
        assert_eq!(blob_bytes(x), blob_bytes(y));
    }
    // In memory and on disk give the same layer.
    let (jre, _, _) = (a.path().join("jre"), (), ());
    let mem = oci::jre_layer(&jre, LayerOptions::default())
        .unwrap()
        .build_in_memory()
        .unwrap();
    assert_eq!(mem.layer, one.layers[0].layer);
    let measured = oci::jre_layer(&jre, LayerOptions::default())
        .unwrap()
        .measure()
        .unwrap();
    assert_eq!(measured, one.layers[0].layer);
}

/// In a child process (see [`same_digest_in_another_process`]): builds the
/// fixture of the variant named by the environment and prints the digests.
/// Without the variable it does nothing.
#[test]
fn child_prints_digests() {
    let Ok(variant) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = build(dir.path(), variant.parse().unwrap(), APP);
    // The harness may print "test … " on the same line first.
    println!("\nMANIFEST={}", image.manifest.digest.oci());
    println!("CONFIG={}", image.config.digest.oci());
}

fn digests_from_child(variant: u8) -> (String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_prints_digests",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, variant.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let find = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.split_once(key).map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no {key} in child output: {stdout}"))
            .to_owned()
    };
    (find("MANIFEST="), find("CONFIG="))
}

#[test]
fn same_digest_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let here = build(dir.path(), 0, APP);
    let first = digests_from_child(1);
    let second = digests_from_child(2);
    assert_eq!(first, second);
    assert_eq!(first.0, here.manifest.digest.oci());
    assert_eq!(first.1, here.config.digest.oci());
}

#[test]
fn a_new_jar_changes_only_the_app_layer_config_and_manifest() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = build(a.path(), 0, APP);
    let two = build(b.path(), 0, b"PK\x03\x04 the application jar, v2");
    for i in 0..2 {
        assert_eq!(
            one.layers[i].layer, two.layers[i].layer,
            "layer {i} unchanged"
        );
    }
    let (x, y) = (&one.layers[2].layer, &two.layers[2].layer);
    assert_ne!(x.digest, y.digest);
    assert_ne!(x.diff_id, y.diff_id);
    assert_ne!(one.config.digest, two.config.digest);
    assert_ne!(one.manifest.digest, two.manifest.digest);
}

// ---------------------------------------------------------------- layer format

#[test]
fn layers_parse_back_sorted_with_parents_and_normalised_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let image = build(dir.path(), 1, APP);
    let gz = blob_bytes(&image.layers[0]);
    // Fixed gzip header: magic, deflate, no flags, mtime 0, XFL 0 (level 6),
    // OS 255.
    assert_eq!(gz[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);

    let rows = entries(&gz);
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "opt/",
            "opt/java/",
            "opt/java/bin/",
            "opt/java/bin/java",
            "opt/java/bin/keytool",
            "opt/java/conf/",
            "opt/java/conf/security/",
            "opt/java/conf/security/java.security",
            "opt/java/legal/",
            "opt/java/legal/java.base/",
            "opt/java/legal/java.base/LICENSE",
            "opt/java/legal/java.logging/",
            "opt/java/legal/java.logging/LICENSE",
            "opt/java/lib/",
            "opt/java/lib/libjvm.so",
            "opt/java/lib/modules",
            "opt/java/lib/server/",
            "opt/java/lib/server/libjvm.so",
            "opt/java/release",
        ]
    );
    for (name, kind, mode, uid, gid, mtime, link, data) in &rows {
        assert_eq!((*uid, *gid, *mtime), (0, 0, 0), "{name}");
        let rel = name.trim_start_matches("opt/java/");
        if name.ends_with('/') {
            assert_eq!((*kind, *mode), (tar::EntryType::Directory, 0o755), "{name}");
        } else if let Some((_, target)) = JRE_LINKS.iter().find(|(p, _)| *p == rel) {
            assert_eq!((*kind, *mode), (tar::EntryType::Symlink, 0o777), "{name}");
            assert_eq!(link.as_deref(), Some(*target));
        } else {
            let (_, content, exec) = JRE_FILES.iter().find(|(p, ..)| *p == rel).unwrap();
            let want = if *exec { 0o755 } else { 0o644 };
            assert_eq!((*kind, *mode), (tar::EntryType::Regular, want), "{name}");
            assert_eq!(data, content);
        }
    }

    let app = entries(&blob_bytes(&image.layers[2]));
    let names: Vec<(&str, u32)> = app.iter().map(|r| (r.0.as_str(), r.2)).collect();
    assert_eq!(names, [("app/", 0o755), ("app/app.jar", 0o644)]);
    assert_eq!(app[1].7, APP);
    let agent = entries(&blob_bytes(&image.layers[1]));
    let names: Vec<&str> = agent.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        ["opt/", "opt/cameleer/", "opt/cameleer/cameleer-agent.jar"]
    );

    // The same paths as the Dockerfile route.
    let spec = DockerfileSpec::new("eclipse-temurin:21-jre".parse().unwrap());
    assert_eq!(format!("/{}", app[1].0), spec.jar_path);
    assert_eq!(format!("/{}", agent[2].0), spec.agent_path);
}

#[test]
fn options_set_the_stamps_and_the_level() {
    let opts = LayerOptions {
        mtime: 1_700_000_000,
        uid: 1000,
        gid: 2000,
        compression_level: 9,
    };
    let mut b = LayerBuilder::with_options(opts);
    b.add_bytes("/x/run.sh", b"#!/bin/sh\n".to_vec(), FileMode::Executable)
        .unwrap();
    let blob = b.build_in_memory().unwrap();
    let gz = blob_bytes(&blob);
    assert_eq!(gz[8..10], [2, 255], "XFL 2 for the best level, OS 255");
    for row in entries(&gz) {
        assert_eq!((row.3, row.4, row.5), (1000, 2000, 1_700_000_000));
    }
    let default = {
        let mut b = LayerBuilder::new();
        b.add_bytes("/x/run.sh", b"#!/bin/sh\n".to_vec(), FileMode::Executable)
            .unwrap();
        b.measure().unwrap()
    };
    assert_ne!(default.diff_id, blob.layer.diff_id);
}

#[test]
fn addition_order_does_not_matter_and_digests_are_of_the_bytes() {
    let items = [
        ("/b/z", &b"1"[..]),
        ("/a", b"2"),
        ("/b/a/c", b"3"),
        ("/b.txt", b"4"),
    ];
    let build = |rev: bool| {
        let mut b = LayerBuilder::new();
        let mut v = items.to_vec();
        if rev {
            v.reverse();
        }
        for (p, d) in v {
            b.add_bytes(p, d.to_vec(), FileMode::Regular).unwrap();
        }
        b.add_dir("/b").unwrap();
        b.add_symlink("/l", "/a").unwrap();
        b.build_in_memory().unwrap()
    };
    let (one, two) = (build(false), build(true));
    assert_eq!(one, two);
    let gz = blob_bytes(&one);
    assert_eq!(one.layer.digest, Sha256Digest::of(&gz));
    assert_eq!(one.layer.size, gz.len() as u64);
    let mut tar = Vec::new();
    GzDecoder::new(&gz[..]).read_to_end(&mut tar).unwrap();
    assert_eq!(one.layer.diff_id, Sha256Digest::of(&tar));
    assert_eq!(one.layer.uncompressed_size, tar.len() as u64);
    let names: Vec<String> = entries(&gz).into_iter().map(|r| r.0).collect();
    assert_eq!(names, ["a", "b/", "b/a/", "b/a/c", "b/z", "b.txt", "l"]);
}

#[test]
fn long_names_and_link_targets_round_trip() {
    let deep = format!("/opt/{}/{}", "d".repeat(120), "f".repeat(200));
    let split = format!("/opt/{}/{}", "p".repeat(60), "n".repeat(60));
    let target = format!("../{}", "t".repeat(150));
    let mut b = LayerBuilder::new();
    b.add_bytes(&deep, b"deep".to_vec(), FileMode::Regular)
        .unwrap();
    b.add_bytes(&split, b"split".to_vec(), FileMode::Regular)
        .unwrap();
    b.add_symlink("/opt/link", &target).unwrap();
    let gz = blob_bytes(&b.build_in_memory().unwrap());
    let rows = entries(&gz);
    let find = |n: &str| {
        rows.iter()
            .find(|r| r.0 == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    assert_eq!(find(&deep[1..]).7, b"deep");
    assert_eq!(find(&split[1..]).7, b"split");
    assert_eq!(find("opt/link").6.as_deref(), Some(target.as_str()));
    assert!(
        rows.iter()
            .any(|r| r.0 == format!("opt/{}/", "d".repeat(120)))
    );
}

#[test]
fn streams_a_reader_of_many_megabytes() {
    const SIZE: u64 = 8 << 20;
    let mut b = LayerBuilder::new();
    b.add_reader(
        "/app/app.jar",
        io::repeat(0x5a).take(SIZE),
        SIZE,
        FileMode::Regular,
    )
    .unwrap();
    let layer = b.write_to(io::sink()).unwrap();
    // Header, data, two zero blocks at the end, padded to tar's record size.
    assert!(layer.uncompressed_size >= 512 * 2 + SIZE + 1024);
    assert!(layer.size < SIZE / 100, "repeated bytes compress");
}

#[test]
fn a_tree_at_the_root_has_no_root_entry() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("lib/x86_64-linux-gnu")).unwrap();
    fs::write(dir.path().join("lib/x86_64-linux-gnu/libc.so.6"), b"elf").unwrap();
    symlink("lib", dir.path().join("lib64")).unwrap();
    let mut b = LayerBuilder::new();
    b.add_tree("/", dir.path()).unwrap();
    let names: Vec<String> = entries(&blob_bytes(&b.build_in_memory().unwrap()))
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(
        names,
        [
            "lib/",
            "lib/x86_64-linux-gnu/",
            "lib/x86_64-linux-gnu/libc.so.6",
            "lib64"
        ]
    );
}

#[test]
fn directories_can_have_their_own_mode_and_owner() {
    let mut b = LayerBuilder::new();
    b.add_bytes("/home/cameleer/.keep", vec![], FileMode::Regular)
        .unwrap();
    b.add_dir_with("/tmp", 0o1777, 0, 0).unwrap();
    b.add_dir_with("/home/cameleer", 0o755, 10001, 10001)
        .unwrap();
    b.add_dir("/home/cameleer").unwrap();
    b.add_dir_with("/tmp", 0o1777, 0, 0).unwrap();
    let rows = entries(&blob_bytes(&b.build_in_memory().unwrap()));
    let meta: Vec<(&str, u32, u64, u64)> =
        rows.iter().map(|r| (r.0.as_str(), r.2, r.3, r.4)).collect();
    assert_eq!(
        meta,
        [
            ("home/", 0o755, 0, 0),
            ("home/cameleer/", 0o755, 10001, 10001),
            ("home/cameleer/.keep", 0o644, 0, 0),
            ("tmp/", 0o1777, 0, 0),
        ]
    );
}

// ---------------------------------------------------------------- config and manifest

#[test]
fn config_and_manifest_say_what_they_should() {
    let dir = tempfile::tempdir().unwrap();
    let image = build(dir.path(), 0, APP);
    let cfg = ImageConfiguration::from_reader(&image.config.bytes[..]).unwrap();
    assert_eq!(image.config.digest, Sha256Digest::of(&image.config.bytes));
    assert_eq!(cfg.created().as_deref(), Some("1970-01-01T00:00:00Z"));
    assert_eq!(cfg.architecture().to_string(), "amd64");
    assert_eq!(cfg.os().to_string(), "linux");
    let run = cfg.config().as_ref().unwrap();
    assert_eq!(run.user().as_deref(), Some("10001:10001"));
    assert_eq!(run.working_dir().as_deref(), Some("/app"));
    let entrypoint = run.entrypoint().as_ref().unwrap();
    assert_eq!(entrypoint[0], "java");
    assert!(entrypoint.contains(&"-javaagent:/opt/cameleer/cameleer-agent.jar".to_owned()));
    assert_eq!(entrypoint[entrypoint.len() - 2..], ["-jar", "/app/app.jar"]);
    let env = run.env().as_ref().unwrap();
    assert_eq!(env[0], "JAVA_HOME=/opt/java");
    assert!(env[1].starts_with("PATH=/opt/java/bin:"));
    assert_eq!(run.labels().as_ref().unwrap()["io.cameleer.tenant"], "acme");
    let diff_ids: Vec<String> = image.layers.iter().map(|l| l.layer.diff_id.oci()).collect();
    assert_eq!(cfg.rootfs().diff_ids(), &diff_ids);
    assert_eq!(cfg.rootfs().typ(), "layers");
    let history = cfg.history().as_ref().unwrap();
    let by: Vec<_> = history
        .iter()
        .map(|h| h.created_by().clone().unwrap())
        .collect();
    assert_eq!(by, ["jlink runtime", "cameleer agent", "application"]);

    let manifest = ImageManifest::from_reader(&image.manifest.bytes[..]).unwrap();
    assert_eq!(
        image.manifest.digest,
        Sha256Digest::of(&image.manifest.bytes)
    );
    assert_eq!(manifest.schema_version(), 2);
    assert_eq!(
        manifest.media_type().as_ref().unwrap().to_string(),
        oci::MEDIA_TYPE_MANIFEST
    );
    assert_eq!(
        manifest.config().media_type().to_string(),
        oci::MEDIA_TYPE_CONFIG
    );
    assert_eq!(
        manifest.config().digest().to_string(),
        image.config.digest.oci()
    );
    assert_eq!(manifest.config().size(), image.config.size());
    assert_eq!(manifest.layers().len(), 3);
    for (d, blob) in manifest.layers().iter().zip(&image.layers) {
        let bytes = blob_bytes(blob);
        assert_eq!(d.media_type().to_string(), oci::MEDIA_TYPE_LAYER_GZIP);
        assert_eq!(d.digest().to_string(), Sha256Digest::of(&bytes).oci());
        assert_eq!(d.size(), bytes.len() as u64);
    }
    assert_eq!(
        manifest.annotations().as_ref().unwrap()["org.opencontainers.image.title"],
        "orders"
    );
    // Canonical: compact, keys sorted.
    let text = String::from_utf8(image.manifest.bytes.clone()).unwrap();
    assert!(text.starts_with(r#"{"annotations":{"#), "{text}");
    assert!(!text.contains('\n') && !text.contains(": "));
}

#[test]
fn oci_layout_has_every_blob_and_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let image = build(dir.path(), 0, APP);
    let layout = dir.path().join("layout");
    oci::write_oci_layout(&layout, &image, Some("orders:1")).unwrap();
    assert_eq!(
        fs::read_to_string(layout.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index = ImageIndex::from_file(layout.join("index.json")).unwrap();
    let m = &index.manifests()[0];
    assert_eq!(m.digest().to_string(), image.manifest.digest.oci());
    assert_eq!(
        m.annotations().as_ref().unwrap()[oci::ANNOTATION_REF_NAME],
        "orders:1"
    );
    assert_eq!(
        m.platform().as_ref().unwrap().architecture().to_string(),
        "amd64"
    );
    let mut digests = vec![image.manifest.digest, image.config.digest];
    digests.extend(image.layers.iter().map(|l| l.layer.digest));
    for d in &digests {
        let bytes = fs::read(oci::layout_blob_path(&layout, d)).unwrap();
        assert_eq!(Sha256Digest::of(&bytes), *d);
    }
    let docker: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("manifest.json")).unwrap()).unwrap();
    let blob = |d: &Sha256Digest| format!("blobs/sha256/{d}");
    assert_eq!(
        docker,
        serde_json::json!([{
            "Config": blob(&image.config.digest),
            "Layers": image.layers.iter().map(|l| blob(&l.layer.digest)).collect::<Vec<_>>(),
            "RepoTags": ["orders:1"],
        }])
    );
    let blobs = fs::read_dir(layout.join("blobs/sha256")).unwrap().count();
    assert_eq!(blobs, digests.len(), "no leftovers");
    // Again, into a fresh directory: the same bytes.
    let again = dir.path().join("again");
    oci::write_oci_layout(&again, &image, Some("orders:1")).unwrap();
    assert_eq!(
        fs::read(layout.join("index.json")).unwrap(),
        fs::read(again.join("index.json")).unwrap()
    );
}
