//! Pushing a 200 MB layer streams it: the process's peak resident memory
//! grows by a few MiB, not by the layer. One test in its own binary, so no
//! other test's allocations move the peak. (The benchmark measures the
//! whole build-and-push of a 200 MB JAR in release: `BENCHMARKS.md`.)
#![cfg(target_os = "linux")]

mod support;

use std::io::Write;

use cameleer_build::Sha256Digest;
use cameleer_build::oci::{BlobSource, ImageConfig, Layer, LayerBlob, OciImage, Platform};
use cameleer_registry::testing::TestRegistry;
use cameleer_registry::{PushOptions, RegistryClient};
use sha2::{Digest as _, Sha256};

/// `VmHWM`, the peak resident set size, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn pushing_a_200_mb_layer_keeps_memory_flat() {
    const SIZE: usize = 200 << 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.blob");
    // Written and hashed a MiB at a time: the test itself stays small.
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut hasher = Sha256::new();
    let mut chunk = support::noise(1000, 1 << 20);
    for i in 0..(SIZE >> 20) {
        // Every MiB differs (no chunk-level deduplication to lean on).
        chunk[..8].copy_from_slice(&(i as u64).to_le_bytes());
        hasher.update(&chunk);
        file.write_all(&chunk).unwrap();
    }
    file.flush().unwrap();
    drop(file);
    let digest: Sha256Digest = hasher.finalize().into();
    let layer = LayerBlob {
        // The registry does not look inside layers; the diff_id only has
        // to be well formed here.
        layer: Layer {
            diff_id: digest,
            digest,
            size: SIZE as u64,
            uncompressed_size: SIZE as u64,
        },
        source: BlobSource::File(path),
        created_by: None,
    };
    let mut config = ImageConfig::new(vec!["java".into()]);
    config.platform = Platform::linux("amd64");
    let image = OciImage::assemble(&config, vec![layer]).unwrap();

    let registry = TestRegistry::start().unwrap();
    let client = RegistryClient::new(registry.client_config().unwrap()).unwrap();
    client.check().await.unwrap();
    let before = peak_rss();
    let report = client
        .push_image("acme/big", &image, &["v1"], &PushOptions::default())
        .await
        .unwrap();
    let grown = peak_rss().saturating_sub(before);
    assert_eq!(report.bytes_uploaded, SIZE as u64 + image.config.size());
    eprintln!(
        "peak RSS before the push {} MiB, grew by {} KiB while pushing {} MiB",
        before >> 20,
        grown >> 10,
        SIZE >> 20
    );
    assert!(grown < 32 << 20, "peak RSS grew by {} MiB", grown >> 20);
}
