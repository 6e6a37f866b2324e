//! The `validate` example: one JSON line per file, exit 0 when all are
//! valid, 1 when any is rejected, 2 on a usage error. Its `run` is tested
//! directly, and the built program is run as a process for the exit codes.

#[path = "../examples/validate.rs"]
#[allow(dead_code)]
mod validate_example;

use std::path::PathBuf;
use std::process::Command;

use cameleer_build::Sha256Digest;
use cameleer_build::testing::jars;

fn files() -> (tempfile::TempDir, PathBuf, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jar");
    let bad = dir.path().join("bad.jar");
    let bytes = jars::plain_jar("com.acme.Main");
    std::fs::write(&good, &bytes).unwrap();
    std::fs::write(&bad, b"not a jar").unwrap();
    (dir, good, bad, bytes)
}

fn run(args: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = validate_example::run(&args, &mut out, &mut err);
    let lines = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (code, lines, String::from_utf8(err).unwrap())
}

#[test]
fn prints_one_json_object_per_file() {
    let (_dir, good, bad, bytes) = files();
    let (code, lines, _) = run(&[good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 2);
    let ok = &lines[0];
    assert_eq!(ok["valid"], true);
    assert_eq!(ok["sha256"], Sha256Digest::of(&bytes).to_string());
    assert_eq!(ok["size"], bytes.len());
    assert_eq!(ok["main_class"], "com.acme.Main");
    assert_eq!(ok["runtime"], "plain");
    assert!(ok["error"].is_null());
    assert!(ok["findings"].as_array().unwrap().is_empty());
    let ko = &lines[1];
    assert_eq!(ko["valid"], false);
    assert_eq!(ko["error"]["code"], "not_a_zip");
    assert!(
        ko["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no zip local file header")
    );
}

#[test]
fn exit_codes_and_checksums() {
    let (_dir, good, _bad, bytes) = files();
    let good = good.to_str().unwrap();
    assert_eq!(run(&[good]).0, 0);
    let digest = Sha256Digest::of(&bytes).to_string();
    assert_eq!(run(&["--sha256", &digest, good]).0, 0);
    let (code, lines, _) = run(&["--sha256", &"0".repeat(64), good]);
    assert_eq!(
        (code, &lines[0]["error"]["code"]),
        (1, &serde_json::json!("checksum_mismatch"))
    );
    assert_eq!(
        run(&["/nonexistent/app.jar"]).1[0]["error"]["code"],
        "io_error"
    );
    for usage in [
        &[][..],
        &["--sha256"],
        &["--sha256", "xyz", good],
        &["--bogus", good],
    ] {
        let (code, lines, err) = run(usage);
        assert_eq!(code, 2, "{usage:?}");
        assert!(
            lines.is_empty() && err.contains("usage:"),
            "{usage:?}: {err}"
        );
    }
}

/// The example program, (re)built by cargo (a no-op when `cargo test` has
/// just built it) into the profile directory next to this test binary.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let mut build = Command::new(env!("CARGO"));
    build.args([
        "build",
        "-q",
        "-p",
        "cameleer-build",
        "--example",
        "validate",
    ]);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    assert!(build.status().unwrap().success());
    profile_dir.join("examples").join("validate")
}

#[test]
fn the_program_exits_with_the_documented_codes() {
    let (_dir, good, bad, _) = files();
    let bin = example_binary();
    let status = |args: &[&std::ffi::OsStr]| Command::new(&bin).args(args).output().unwrap();
    let ok = status(&[good.as_os_str()]);
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).lines().count(), 1);
    assert_eq!(
        status(&[good.as_os_str(), bad.as_os_str()]).status.code(),
        Some(1)
    );
    assert_eq!(status(&[]).status.code(), Some(2));
}
