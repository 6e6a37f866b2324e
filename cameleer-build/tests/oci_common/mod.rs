//! Fixtures shared by the OCI tests: a fake `jlink` output, agent and app
//! JARs written with metadata that varies by variant, the image built from
//! them, and readers for what comes out.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cameleer_build::DockerfileSpec;
use cameleer_build::oci::{
    self, ImageConfig, LayerBlob, LayerOptions, OciError, OciImage, Platform,
};
use flate2::read::GzDecoder;

/// A fake `jlink` output: (path, content, executable) and symlinks.
pub const JRE_FILES: &[(&str, &[u8], bool)] = &[
    ("bin/java", b"#!/bin/sh\necho java\n", true),
    ("bin/keytool", b"#!/bin/sh\necho keytool\n", true),
    (
        "conf/security/java.security",
        b"securerandom.source=file:/dev/random\n",
        false,
    ),
    ("legal/java.base/LICENSE", b"GPLv2 + CPE\n", false),
    ("lib/server/libjvm.so", b"\x7fELF fake jvm", true),
    ("lib/modules", b"jimage", false),
    ("release", b"JAVA_VERSION=\"21\"\n", false),
];
pub const JRE_LINKS: &[(&str, &str)] = &[
    ("legal/java.logging/LICENSE", "../java.base/LICENSE"),
    ("lib/libjvm.so", "server/libjvm.so"),
];

/// Writes the JRE tree, the agent and the app JAR under `root`, with
/// creation order, mtimes, permissions and owners that depend on `variant`.
pub fn make_inputs(root: &Path, variant: u8, app: &[u8]) -> (PathBuf, PathBuf, PathBuf) {
    let jre = root.join("jre");
    let odd = variant & 1 == 1;
    let mtime =
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + 777_777 * u64::from(variant));
    let (file_mode, exec_mode, dir_mode) = if !odd {
        (0o644, 0o755, 0o755)
    } else {
        (0o600, 0o700, 0o700)
    };
    let mut files: Vec<_> = JRE_FILES.to_vec();
    let mut links: Vec<_> = JRE_LINKS.to_vec();
    if odd {
        files.reverse();
        links.reverse();
    }
    for (path, content, exec) in files {
        let p = jre.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        let mode = if exec { exec_mode } else { file_mode };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        if odd {
            // Root in CI can change owners; elsewhere this is a no-op.
            let _ = std::os::unix::fs::chown(&p, Some(1234), Some(5678));
        }
    }
    for (path, target) in links {
        let p = jre.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, &p).unwrap();
    }
    for dir in ["bin", "conf", "conf/security", "legal", "lib", "lib/server"] {
        fs::set_permissions(jre.join(dir), fs::Permissions::from_mode(dir_mode)).unwrap();
    }
    let agent = root.join("agent.jar");
    fs::write(&agent, b"PK agent bytes").unwrap();
    let app_path = root.join("app.jar");
    fs::write(&app_path, app).unwrap();
    for p in [&agent, &app_path] {
        fs::set_permissions(p, fs::Permissions::from_mode(file_mode)).unwrap();
        File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
    (jre, agent, app_path)
}

pub fn config() -> ImageConfig {
    let argv = DockerfileSpec::new("eclipse-temurin:21-jre".parse().unwrap())
        .command()
        .unwrap();
    let mut c = ImageConfig::new(argv);
    c.platform = Platform::linux("amd64");
    c.labels = BTreeMap::from([
        ("io.cameleer.tenant".into(), "acme".into()),
        ("io.cameleer.app".into(), "orders".into()),
    ]);
    c.annotations = BTreeMap::from([("org.opencontainers.image.title".into(), "orders".into())]);
    c
}

/// Builds the three layers (as files under `root/out`) and the image.
pub fn build(root: &Path, variant: u8, app: &[u8]) -> OciImage {
    let (jre, agent, app) = make_inputs(root, variant, app);
    let out = root.join("out");
    fs::create_dir_all(&out).unwrap();
    let opts = LayerOptions::default();
    let layers = vec![
        oci::jre_layer(&jre, opts)
            .unwrap()
            .write_file(out.join("jre.tar.gz"))
            .unwrap()
            .with_created_by("jlink runtime"),
        oci::agent_layer(&agent, opts)
            .unwrap()
            .write_file(out.join("agent.tar.gz"))
            .unwrap()
            .with_created_by("cameleer agent"),
        oci::app_layer(&app, opts)
            .unwrap()
            .write_file(out.join("app.tar.gz"))
            .unwrap()
            .with_created_by("application"),
    ];
    OciImage::assemble(&config(), layers).unwrap()
}

pub const APP: &[u8] = b"PK\x03\x04 the application jar";

pub fn blob_bytes(blob: &LayerBlob) -> Vec<u8> {
    let mut v = Vec::new();
    blob.source.open().unwrap().read_to_end(&mut v).unwrap();
    v
}

/// (name, type, mode, uid, gid, mtime, link target, data) of every entry.
pub type Row = (
    String,
    tar::EntryType,
    u32,
    u64,
    u64,
    u64,
    Option<String>,
    Vec<u8>,
);

pub fn entries(gz: &[u8]) -> Vec<Row> {
    let mut archive = tar::Archive::new(GzDecoder::new(gz));
    let mut rows = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        assert_eq!(h.username().unwrap(), Some(""), "no user names");
        assert_eq!(h.groupname().unwrap(), Some(""), "no group names");
        assert!(h.as_ustar().is_some(), "ustar headers");
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        rows.push((
            name,
            h.entry_type(),
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.mtime().unwrap(),
            link,
            data,
        ));
    }
    rows
}

#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(r: Result<T, OciError>, code: &str) {
    let e = r.expect_err("expected an error");
    assert_eq!(e.code(), code, "{e}");
    assert!(OciError::CODES.contains(&code));
}
