//! Retention over the fakes: 30 versions, exactly what stays.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use cameleer_runtime::{
    ArtifactStore, Deployment, DeploymentStatus as S, PlatformOptions, RetentionOptions,
    Sha256Digest,
};
use common::{Harness, app, chunked, config, jar};

fn options(keep_versions: usize, grace: Duration) -> PlatformOptions {
    PlatformOptions {
        retention: RetentionOptions {
            keep_versions,
            artifact_grace: grace,
            sweep_interval: None,
        },
        ..PlatformOptions::default()
    }
}

fn digest(d: &Deployment) -> Sha256Digest {
    *d.image.as_ref().unwrap().digest().unwrap()
}

#[tokio::test(start_paused = true)]
async fn thirty_versions_keep_the_newest_ten_and_what_another_env_promoted() {
    let h = Harness::with(options(10, Duration::ZERO));
    let dev = app("orders");
    let staging = dev.in_env("staging".parse().unwrap());
    let mut versions = Vec::new();
    for v in 1..=30 {
        let artifact = h.upload(&format!("com.example.Main{v}")).await;
        let d = h.platform.deploy(&dev, artifact, config()).await.unwrap();
        let d = h.settled(&d.id).await;
        assert_eq!((d.version, d.status), (v, S::Running));
        versions.push(d);
        if v == 5 {
            // dev v5's image now also serves staging.
            let p = h
                .platform
                .promote(&dev, staging.env.clone(), None)
                .await
                .unwrap();
            assert_eq!(h.settled(&p.id).await.status, S::Running);
        }
    }
    assert_eq!(h.builder.images().len(), 30);
    assert_eq!(h.artifacts.len(), 30);

    let kept_versions: BTreeSet<u64> = (21..=30).chain([5]).collect();
    let removed_versions: BTreeSet<u64> = (1..=30).filter(|v| !kept_versions.contains(v)).collect();
    assert_eq!(removed_versions.len(), 19);

    // The dry run lists exactly the images and artifacts of the others.
    let plan = h.platform.retention_plan().await.unwrap();
    assert_eq!(plan.keep_versions, 10);
    let planned: BTreeSet<u64> = plan
        .images
        .iter()
        .flat_map(|i| i.used_by.iter().map(|u| u.version))
        .collect();
    assert_eq!(planned, removed_versions);
    assert!(
        plan.images
            .iter()
            .all(|i| i.used_by.len() == 1 && i.used_by[0].app == dev)
    );
    let planned_artifacts: BTreeSet<Sha256Digest> =
        plan.artifacts.iter().map(|a| a.sha256).collect();
    let expected_artifacts: BTreeSet<Sha256Digest> = versions
        .iter()
        .filter(|d| removed_versions.contains(&d.version))
        .map(|d| d.artifact)
        .collect();
    assert_eq!(planned_artifacts, expected_artifacts);
    // A dry run removes nothing.
    assert_eq!(h.builder.images().len(), 30);

    let report = h.platform.sweep().await.unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.removed_images.len(), 19);
    assert_eq!(report.removed_artifacts.len(), 19);
    let left: BTreeSet<Sha256Digest> = h.builder.images();
    let expected: BTreeSet<Sha256Digest> = versions
        .iter()
        .filter(|d| kept_versions.contains(&d.version))
        .map(digest)
        .collect();
    assert_eq!(left, expected);
    for d in &versions {
        let stored = h.artifacts.stat(&d.artifact).await.unwrap().is_some();
        assert_eq!(stored, kept_versions.contains(&d.version), "v{}", d.version);
    }
    // History stays whole; a second sweep finds nothing.
    assert_eq!(h.platform.history(&dev).await.unwrap().len(), 30);
    let again = h.platform.retention_plan().await.unwrap();
    assert!(again.images.is_empty() && again.artifacts.is_empty());

    // Rollback reaches the kept versions only.
    let e = h.platform.rollback(&dev, Some(20)).await.unwrap_err();
    assert_eq!(e.code(), "conflict");
    assert!(e.to_string().contains("retention"), "{e}");
    let r = h.platform.rollback(&dev, Some(21)).await.unwrap();
    assert_eq!(h.settled(&r.id).await.status, S::Running);
}

#[tokio::test(start_paused = true)]
async fn a_stopped_current_version_and_an_image_in_use_are_kept() {
    let h = Harness::with(options(2, Duration::ZERO));
    let dev = app("orders");
    let v1 = h.deploy_settled(&dev).await;
    assert_eq!(v1.status, S::Running);
    // Three failed builds: the newest two versions have no image.
    for _ in 0..3 {
        h.builder.fail_next("broken");
        let d = h.deploy(&dev).await;
        assert_eq!(h.settled(&d.id).await.status, S::Failed);
    }
    h.platform.stop(&dev).await.unwrap();
    assert_eq!(
        h.platform.history(&dev).await.unwrap()[3].status,
        S::Stopped
    );
    // v1 is stopped but current (a restart brings it back): kept.
    let plan = h.platform.retention_plan().await.unwrap();
    assert!(plan.images.is_empty(), "{:?}", plan.images);
    assert!(plan.artifacts.is_empty());
    let restarted = h.platform.restart(&dev).await.unwrap();
    assert_eq!(restarted.version, 1);

    // An image the engine still uses is skipped and tried again next time.
    let other = app("billing");
    let first = h.upload("com.example.BillingFirst").await;
    let b1 = h.platform.deploy(&other, first, config()).await.unwrap();
    let b1 = h.settled(&b1.id).await;
    let artifact = h.upload("com.example.Other").await;
    for _ in 0..2 {
        let d = h.platform.deploy(&other, artifact, config()).await.unwrap();
        h.settled(&d.id).await;
    }
    h.builder.mark_in_use(digest(&b1));
    let report = h.platform.sweep().await.unwrap();
    assert!(report.removed_images.is_empty());
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].code, "conflict");
    assert!(h.builder.images().contains(&digest(&b1)));
}

#[tokio::test(start_paused = true)]
async fn a_fresh_upload_no_deploy_uses_yet_is_spared_for_the_grace() {
    let h = Harness::with(options(1, Duration::from_secs(3600)));
    let up = h
        .platform
        .upload_artifact(&app("orders"), chunked(jar("com.example.Fresh"), 500), None)
        .await
        .unwrap();
    let plan = h.platform.retention_plan().await.unwrap();
    assert!(plan.artifacts.is_empty(), "{:?}", plan.artifacts);
    h.platform.sweep().await.unwrap();
    assert!(h.artifacts.stat(&up.sha256).await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn the_background_sweep_runs_every_interval_after_start() {
    let mut o = options(1, Duration::ZERO);
    o.retention.sweep_interval = Some(Duration::from_secs(600));
    let h = Harness::with(o);
    h.platform.start().await.unwrap();
    let dev = app("orders");
    for v in 1..=3 {
        let artifact = h.upload(&format!("com.example.Main{v}")).await;
        let d = h.platform.deploy(&dev, artifact, config()).await.unwrap();
        h.settled(&d.id).await;
    }
    assert_eq!(h.builder.images().len(), 3);
    // Nothing before the first interval has passed.
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(h.builder.images().len(), 3);
    tokio::time::sleep(Duration::from_secs(301)).await;
    assert_eq!(h.builder.images().len(), 1);
    assert_eq!(h.artifacts.len(), 1);
}
