//! Failure paths on a real registry (distribution 2.8 on loopback): the
//! registry killed in the middle of an upload, a full disk, a manifest
//! that names a blob the registry lacks, a layer file changed under the
//! push. Each is a typed error; none leaves a manifest that points at a
//! missing blob; a retry after the registry is back completes.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cameleer_build::oci::OciImage;
use cameleer_registry::testing::TestRegistry;
use cameleer_registry::{PushEvent, PushOptions, RegistryClient};

/// The manifest is absent, or present with every blob it names.
async fn no_dangling_manifest(client: &RegistryClient, repo: &str, tag: &str, image: &OciImage) {
    if let Some((_, bytes)) = client.manifest(repo, tag).await.unwrap() {
        assert_eq!(bytes, image.manifest.bytes);
        for l in &image.layers {
            assert!(
                client.blob_exists(repo, &l.layer.digest).await.unwrap(),
                "{repo}:{tag} points at the missing blob {}",
                l.layer.digest
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_killed_mid_upload_is_a_typed_error_and_a_retry_completes() {
    let registry = Arc::new(Mutex::new(TestRegistry::start().unwrap()));
    let config = registry.lock().unwrap().client_config().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A 24 MiB app layer; the kill lands at 4 MiB, well inside its upload.
    let image = support::image(dir.path(), 50, 24 << 20);
    let app = image.layers[2].layer;
    let client = RegistryClient::new(config).unwrap();
    let killed = Arc::new(AtomicBool::new(false));
    let options = PushOptions {
        progress: Some({
            let registry = registry.clone();
            let killed = killed.clone();
            Arc::new(move |e: &PushEvent| {
                if let PushEvent::Sent { digest, sent, .. } = e
                    && *digest == app.digest
                    && *sent >= 4 << 20
                    && !killed.swap(true, Ordering::SeqCst)
                {
                    // SIGKILL, as a crash or an OOM kill would.
                    registry.lock().unwrap().kill();
                }
            })
        }),
        ..PushOptions::default()
    };
    let err = client
        .push_image("acme/orders", &image, &["v1"], &options)
        .await
        .unwrap_err();
    assert!(
        killed.load(Ordering::SeqCst),
        "the registry was killed mid-upload"
    );
    assert_eq!(err.code(), "registry_unreachable", "{err}");
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains(&app.digest.oci()),
        "names the blob: {err}"
    );

    registry.lock().unwrap().restart().unwrap();
    assert_eq!(
        client.manifest_digest("acme/orders", "v1").await.unwrap(),
        None,
        "no manifest after the failed push"
    );
    assert!(
        !client
            .blob_exists("acme/orders", &app.digest)
            .await
            .unwrap()
    );

    let report = client
        .push_image("acme/orders", &image, &["v1"], &PushOptions::default())
        .await
        .unwrap();
    assert_eq!(report.manifest_digest, image.manifest.digest);
    // Blobs committed before the kill are not sent again.
    let (skipped, _, uploaded) = report.counts();
    assert_eq!(skipped + uploaded, 4, "{report:?}");
    assert!(uploaded >= 1);
    no_dangling_manifest(&client, "acme/orders", "v1", &image).await;
    assert!(
        client
            .manifest("acme/orders", "v1")
            .await
            .unwrap()
            .is_some()
    );
}

/// A tmpfs of `size`, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// `None` when this process may not mount (not root, no
    /// `CAP_SYS_ADMIN`).
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .ok()?;
        status.status.success().then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_is_quota_exceeded_and_leaves_no_manifest() {
    let Some(disk) = Tmpfs::mount("4m") else {
        // Loud, so a CI log shows it: CI runs as root, where this mounts.
        eprintln!(
            "SKIPPED a_full_disk_is_quota_exceeded_and_leaves_no_manifest: cannot mount a tmpfs (needs root)"
        );
        return;
    };
    let registry = TestRegistry::builder()
        .storage(disk.0.path())
        .start()
        .unwrap();
    let client = RegistryClient::new(registry.client_config().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = support::image(dir.path(), 60, 16 << 20);
    let err = client
        .push_image("acme/orders", &image, &["v1"], &PushOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "quota_exceeded", "{err}\n{}", registry.log());
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains("no space left on device"),
        "says why: {err}"
    );
    assert_eq!(
        client.manifest_digest("acme/orders", "v1").await.unwrap(),
        None
    );
    no_dangling_manifest(&client, "acme/orders", "v1", &image).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_naming_a_missing_blob_is_rejected() {
    let registry = TestRegistry::start().unwrap();
    let client = RegistryClient::new(registry.client_config().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = support::image(dir.path(), 70, 64 << 10);
    // The manifest alone, none of its blobs.
    let err = client
        .put_manifest("acme/orders", "v1", &image.manifest.bytes)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "manifest_rejected", "{err}");
    let cameleer_registry::RegistryError::ManifestRejected {
        codes, reference, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(reference, "acme/orders:v1");
    assert!(
        codes.iter().any(|c| c.contains("BLOB_UNKNOWN")),
        "{codes:?}"
    );
    // Not JSON at all.
    let err = client
        .put_manifest("acme/orders", "v2", b"{not a manifest")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "manifest_rejected", "{err}");
    assert_eq!(
        client.manifest_digest("acme/orders", "v1").await.unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layer_file_changed_under_the_push_is_source_changed_and_not_committed() {
    let registry = TestRegistry::start().unwrap();
    let client = RegistryClient::new(registry.client_config().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = support::image(dir.path(), 80, 1 << 20);
    let app = &image.layers[2];
    let cameleer_build::oci::BlobSource::File(path) = &app.source else {
        panic!("the app layer is a file")
    };
    // Same size, other bytes.
    let mut bytes = std::fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
    let err = client
        .push_image("acme/orders", &image, &["v1"], &PushOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "source_changed", "{err}");
    assert!(
        !client
            .blob_exists("acme/orders", &app.layer.digest)
            .await
            .unwrap()
    );
    assert_eq!(
        client.manifest_digest("acme/orders", "v1").await.unwrap(),
        None
    );
}
