//! OCI assembly refuses bad input with typed, stable codes, and a failed
//! addition leaves the layer as it was.
#![cfg(unix)]

mod oci_common;

use std::fs;
use std::io;

use cameleer_build::oci::{
    self, BlobSource, FileMode, ImageConfig, LayerBuilder, LayerOptions, OciError, OciImage,
};
use oci_common::*;

#[test]
fn bad_paths_and_conflicts_have_codes() {
    let mut b = LayerBuilder::new();
    assert_code(b.add_dir("/opt/../etc"), "invalid_path");
    assert_code(b.add_dir("/"), "invalid_path");
    assert_code(
        b.add_bytes("/a/.wh.b", vec![], FileMode::Regular),
        "invalid_path",
    );
    assert_code(b.add_symlink("/l", ""), "invalid_path");
    b.add_bytes("/a/f", vec![1], FileMode::Regular).unwrap();
    assert_code(
        b.add_bytes("/a/f", vec![2], FileMode::Regular),
        "duplicate_path",
    );
    assert_code(
        b.add_bytes("/a/f/g", vec![], FileMode::Regular),
        "path_conflict",
    );
    assert_code(b.add_dir("/a/f"), "path_conflict");
    assert_code(
        b.add_bytes("/a", vec![], FileMode::Regular),
        "path_conflict",
    );
    b.add_dir("/a").unwrap();
    assert_eq!(b.len(), 2, "failed adds add nothing");
    b.add_dir_with("/t", 0o1777, 0, 0).unwrap();
    assert_code(b.add_dir_with("/t", 0o755, 0, 0), "path_conflict");
    assert_code(b.add_dir_with("/a/f", 0o755, 0, 0), "path_conflict");
    assert_code(b.add_dir_with("/u", 0o17777, 0, 0), "invalid_layer_options");
    assert_code(
        b.add_dir_with("/u", 0o755, 1 << 40, 0),
        "invalid_layer_options",
    );
    assert_eq!(b.len(), 3);
    assert_code(
        b.add_reader("/big", io::empty(), 9 << 30, FileMode::Regular),
        "file_too_large",
    );
}

#[test]
fn readers_that_lie_about_their_size_are_size_mismatch() {
    let mut short = LayerBuilder::new();
    short
        .add_reader("/f", &b"abc"[..], 4, FileMode::Regular)
        .unwrap();
    assert_code(short.measure(), "size_mismatch");
    let mut long = LayerBuilder::new();
    long.add_reader("/f", &b"abcde"[..], 4, FileMode::Regular)
        .unwrap();
    assert_code(long.measure(), "size_mismatch");
}

#[test]
fn files_that_vanish_or_change_are_source_changed() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("app.jar");
    fs::write(&f, b"12345").unwrap();
    let mut b = LayerBuilder::new();
    b.add_file("/app/app.jar", &f, FileMode::Regular).unwrap();
    fs::remove_file(&f).unwrap();
    assert_code(b.measure(), "source_changed");

    fs::write(&f, b"12345").unwrap();
    let mut b = LayerBuilder::new();
    b.add_file("/app/app.jar", &f, FileMode::Regular).unwrap();
    fs::write(&f, b"123456").unwrap();
    assert_code(b.measure(), "source_changed");

    assert_code(
        LayerBuilder::new().add_file("/x", dir.path().join("missing"), FileMode::Regular),
        "source_changed",
    );
    assert_code(
        LayerBuilder::new().add_file("/x", dir.path(), FileMode::Regular),
        "unsupported_file_type",
    );
}

#[test]
fn trees_with_bad_entries_are_refused_and_add_nothing() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt as _;

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-name");
    fs::create_dir(&bad).unwrap();
    fs::write(bad.join("ok"), b"x").unwrap();
    fs::write(bad.join(OsStr::from_bytes(b"\xffname")), b"x").unwrap();
    let mut b = LayerBuilder::new();
    assert_code(b.add_tree("/opt/java", &bad), "non_utf8_path");
    assert!(b.is_empty(), "a failed walk adds nothing");

    let sock = dir.path().join("socket");
    fs::create_dir(&sock).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(sock.join("s")).unwrap();
    assert_code(b.add_tree("/opt/java", &sock), "unsupported_file_type");

    let wh = dir.path().join("whiteout");
    fs::create_dir(&wh).unwrap();
    fs::write(wh.join(".wh.lib"), b"").unwrap();
    assert_code(b.add_tree("/opt/java", &wh), "invalid_path");

    assert_code(
        b.add_tree("/opt/java", dir.path().join("missing")),
        "source_changed",
    );
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    assert_code(b.add_tree("/opt/java", &file), "unsupported_file_type");

    // A tree over an existing file conflicts.
    let ok = dir.path().join("ok");
    fs::create_dir(&ok).unwrap();
    fs::write(ok.join("f"), b"x").unwrap();
    b.add_bytes("/opt/java/f", b"y".to_vec(), FileMode::Regular)
        .unwrap();
    assert_code(b.add_tree("/opt/java", &ok), "duplicate_path");
    assert_eq!(b.len(), 3);
}

#[test]
fn a_vanished_tree_file_is_source_changed_when_written() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("f"), b"x").unwrap();
    let layer = oci::jre_layer(dir.path(), LayerOptions::default()).unwrap();
    fs::remove_file(dir.path().join("f")).unwrap();
    assert_code(layer.measure(), "source_changed");
}

#[test]
fn bad_options_and_configs_have_codes() {
    let bad = LayerOptions {
        compression_level: 10,
        ..LayerOptions::default()
    };
    assert_code(
        LayerBuilder::with_options(bad).measure(),
        "invalid_layer_options",
    );
    let bad = LayerOptions {
        uid: 1 << 40,
        ..LayerOptions::default()
    };
    assert_code(
        LayerBuilder::with_options(bad).measure(),
        "invalid_layer_options",
    );

    let mut b = LayerBuilder::new();
    b.add_dir("/app").unwrap();
    let layer = b.build_in_memory().unwrap();
    let assemble = |c: &ImageConfig| OciImage::assemble(c, vec![layer.clone()]);
    let ok = config();
    assert!(assemble(&ok).is_ok());
    assert_code(OciImage::assemble(&ok, vec![]), "invalid_image_config");
    let cases: [fn(&mut ImageConfig); 9] = [
        |c| c.entrypoint.clear(),
        |c| c.entrypoint = vec![String::new()],
        |c| c.cmd = vec!["a\0b".into()],
        |c| {
            c.env.insert("A=B".into(), "x".into());
        },
        |c| c.user = "root user".into(),
        |c| c.working_dir = Some("app".into()),
        |c| {
            c.labels.insert(String::new(), "x".into());
        },
        |c| c.platform.architecture = "x86-64".into(),
        |c| c.created = -5,
    ];
    for (i, change) in cases.iter().enumerate() {
        let mut c = ok.clone();
        change(&mut c);
        let e = assemble(&c).expect_err(&format!("case {i}"));
        assert_eq!(e.code(), "invalid_image_config", "case {i}: {e}");
    }
}

#[test]
fn a_tampered_blob_is_not_written_into_a_layout() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = LayerBuilder::new();
    b.add_bytes("/f", b"x".to_vec(), FileMode::Regular).unwrap();
    let blob = b.write_file(dir.path().join("l.tar.gz")).unwrap();
    let image = OciImage::assemble(&config(), vec![blob.clone()]).unwrap();
    let BlobSource::File(path) = &blob.source else {
        unreachable!()
    };
    let mut bytes = fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(path, &bytes).unwrap();
    let layout = dir.path().join("layout");
    assert_code(
        oci::write_oci_layout(&layout, &image, None),
        "source_changed",
    );
    assert!(!oci::layout_blob_path(&layout, &blob.layer.digest).exists());
}

#[test]
fn codes_are_unique() {
    let mut codes = OciError::CODES.to_vec();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), OciError::CODES.len());
}
