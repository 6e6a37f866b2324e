//! Streaming uploads: validated while stored, nothing stored on rejection.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use cameleer_runtime::{
    ArtifactInfo, ArtifactStore, ArtifactUpload, ByteStream, Error, Platform, PlatformOptions,
    Sha256Digest,
};
use common::{Harness, app, chunked, jar};

async fn upload(
    h: &Harness,
    data: ByteStream,
    expected: Option<Sha256Digest>,
) -> Result<Sha256Digest, Error> {
    h.platform
        .upload_artifact(&app("orders"), data, expected)
        .await
        .map(|u| u.sha256)
}

#[tokio::test]
async fn a_valid_jar_is_validated_and_stored_by_its_digest() {
    let h = Harness::new();
    let bytes = jar("com.example.Main");
    let uploaded = h
        .platform
        .upload_artifact(
            &app("orders"),
            chunked(bytes.clone(), 7),
            Some(Sha256Digest::of(&bytes)),
        )
        .await
        .unwrap();
    assert_eq!(uploaded.sha256, Sha256Digest::of(&bytes));
    assert_eq!(uploaded.size, bytes.len() as u64);
    assert_eq!(uploaded.jar.main_class, "com.example.Main");
    let info = h.artifacts.stat(&uploaded.sha256).await.unwrap().unwrap();
    assert_eq!(info.size, bytes.len() as u64);

    // The same bytes again: accepted, one copy.
    upload(&h, chunked(bytes, 4096), None).await.unwrap();
    assert_eq!(h.artifacts.len(), 1);
}

#[tokio::test]
async fn a_wrong_checksum_is_checksum_mismatch_and_stores_nothing() {
    let h = Harness::new();
    let err = upload(
        &h,
        chunked(jar("com.example.Main"), 100),
        Some(Sha256Digest::of(b"something else")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "checksum_mismatch");
    assert!(
        err.to_string()
            .contains(&Sha256Digest::of(b"something else").to_string()),
        "{err}"
    );
    assert!(h.artifacts.is_empty());
}

#[tokio::test]
async fn a_rejected_jar_keeps_the_validators_code_and_stores_nothing() {
    let h = Harness::new();
    let err = upload(
        &h,
        chunked(b"#!/bin/sh\necho not a jar\n".to_vec(), 5),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "not_a_zip", "{err}");

    // A zip without a manifest.
    let mut zip = cameleer_build::testing::ZipBuilder::new();
    zip.add(cameleer_build::testing::Entry::deflated(
        "hello.txt",
        b"hello",
    ));
    let err = upload(&h, chunked(zip.finish(), 64), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "missing_main_class", "{err}");

    let err = upload(&h, chunked(Vec::new(), 1), None).await.unwrap_err();
    assert_eq!(err.code(), "empty", "{err}");
    assert!(h.artifacts.is_empty());
}

#[tokio::test]
async fn an_upload_over_the_limit_is_artifact_too_large() {
    let mut options = PlatformOptions::default();
    options.validation.limits.max_upload_bytes = 1000;
    let h = Harness::with(options);
    // A launch script in front of the JAR, as "fully executable" JARs have:
    // valid, but too long for this limit.
    let mut big = b"#!/bin/sh\n".repeat(500);
    big.extend(jar("com.example.Main"));
    let err = upload(&h, chunked(big, 100), None).await.unwrap_err();
    assert_eq!(err.code(), "artifact_too_large", "{err}");
    assert!(h.artifacts.is_empty());
}

#[tokio::test]
async fn a_broken_upload_stream_is_upload_failed() {
    let h = Harness::new();
    let mut chunks: Vec<std::io::Result<Bytes>> =
        vec![Ok(Bytes::from(jar("com.example.Main")[..50].to_vec()))];
    chunks.push(Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "client went away",
    )));
    let err = upload(&h, Box::pin(futures::stream::iter(chunks)), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "upload_failed", "{err}");
    assert!(err.to_string().contains("client went away"), "{err}");
    assert!(h.artifacts.is_empty());
}

#[tokio::test]
async fn a_large_upload_streams_through_in_small_chunks() {
    let h = Harness::new();
    let bytes = cameleer_build::testing::jars::spring_boot_jar("com.example.App", 200, &[]);
    assert!(bytes.len() > 10_000, "{}", bytes.len());
    let digest = upload(&h, chunked(bytes.clone(), 512), None).await.unwrap();
    assert_eq!(digest, Sha256Digest::of(&bytes));
}

/// A store that hashes nothing and records the digest its uploads carry:
/// before the first chunk, and after the stream ended (cleanly or not).
#[derive(Default)]
struct DigestProbe {
    seen: std::sync::Mutex<Vec<(Option<Sha256Digest>, Option<Sha256Digest>)>>,
}

#[async_trait::async_trait]
impl ArtifactStore for DigestProbe {
    async fn put(&self, mut upload: ArtifactUpload) -> cameleer_runtime::Result<ArtifactInfo> {
        use futures::StreamExt;
        let before = upload.sha256();
        let mut size = 0;
        let mut failed = None;
        while let Some(chunk) = upload.next().await {
            match chunk {
                Ok(c) => size += c.len() as u64,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        self.seen.lock().unwrap().push((before, upload.sha256()));
        if let Some(e) = failed {
            return Err(Error::storage("the upload failed", e));
        }
        Ok(ArtifactInfo {
            sha256: upload.finished_sha256()?,
            size,
        })
    }
    async fn get(&self, sha256: &Sha256Digest) -> cameleer_runtime::Result<ByteStream> {
        Err(Error::not_found("artifact", sha256))
    }
    async fn stat(&self, _: &Sha256Digest) -> cameleer_runtime::Result<Option<ArtifactInfo>> {
        Ok(None)
    }
}

#[tokio::test]
async fn the_store_is_handed_the_validators_digest_at_the_clean_end_only() {
    let probe = Arc::new(DigestProbe::default());
    let fake = cameleer_runtime::testkit::FakeOrchestrator::new();
    let platform = Platform::builder()
        .orchestrator(Arc::new(fake))
        .image_builder(Arc::new(cameleer_runtime::testkit::FakeImageBuilder::new()))
        .deployment_store(Arc::new(
            cameleer_runtime::memory::MemoryDeploymentStore::new(),
        ))
        .artifact_store(probe.clone())
        .build();
    let bytes = jar("com.example.Main");
    let uploaded = platform
        .upload_artifact(&app("orders"), chunked(bytes.clone(), 100), None)
        .await
        .unwrap();
    assert_eq!(uploaded.sha256, Sha256Digest::of(&bytes));
    // A rejected upload: the store sees the error, and no digest.
    let err = platform
        .upload_artifact(&app("orders"), chunked(b"not a jar".to_vec(), 3), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "not_a_zip", "{err}");
    let seen = probe.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(None, Some(Sha256Digest::of(&bytes))), (None, None)],
        "known once every byte was validated, never for a rejected upload"
    );
}
