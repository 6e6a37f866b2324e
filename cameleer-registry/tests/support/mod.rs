//! Shared by the registry tests: small images, and a token server.
#![allow(dead_code)]

pub mod token;

use std::path::Path;

use cameleer_build::oci::{
    self, FileMode, ImageConfig, LayerBuilder, LayerOptions, OciImage, Platform,
};

/// Deterministic pseudo-random bytes (xorshift), incompressible enough
/// that a gzip layer is about as large as its content.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An image of three layers: a "base" and an "agent" in memory (the same
/// for every `app_seed`), and an app layer written to a file in `dir` from
/// `app_len` bytes of noise seeded by `app_seed`.
pub fn image(dir: &Path, app_seed: u64, app_len: usize) -> OciImage {
    let mut base = LayerBuilder::new();
    base.add_bytes("/etc/base-release", noise(1, 300 * 1024), FileMode::Regular)
        .unwrap();
    base.add_dir_with("/tmp", 0o1777, 0, 0).unwrap();
    let mut agent = LayerBuilder::new();
    agent
        .add_bytes(
            cameleer_build::IMAGE_AGENT_PATH,
            noise(2, 50 * 1024),
            FileMode::Regular,
        )
        .unwrap();
    let jar = dir.join(format!("app-{app_seed}.jar"));
    std::fs::write(&jar, noise(app_seed, app_len)).unwrap();
    let app = oci::app_layer(
        &jar,
        LayerOptions {
            compression_level: 1,
            ..LayerOptions::default()
        },
    )
    .unwrap()
    .write_file(dir.join(format!("app-{app_seed}.tar.gz")))
    .unwrap();
    let mut config = ImageConfig::new(vec!["java".into(), "-jar".into(), "/app/app.jar".into()]);
    config.platform = Platform::linux("amd64");
    OciImage::assemble(
        &config,
        vec![
            base.build_in_memory().unwrap(),
            agent.build_in_memory().unwrap(),
            app,
        ],
    )
    .unwrap()
}
