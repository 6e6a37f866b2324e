//! Per-tenant quotas over the fakes: every kind refuses with its own code,
//! nothing is half-created, and racing requests for the last unit do not
//! both pass.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use cameleer_runtime::memory::{MemoryArtifactStore, MemoryDeploymentStore, MemoryQuotaStore};
use cameleer_runtime::testkit::{FakeImageBuilder, FakeOrchestrator};
use cameleer_runtime::{
    AppConfig, AppRef, ArtifactInfo, ArtifactStore, ArtifactUpload, ByteStream, Deployment,
    DeploymentId, DeploymentStatus as S, DeploymentStore, Error, NewDeployment, Platform, Quota,
    QuotaKind, QuotaStore, Resources, Result, Sha256Digest, TenantId,
};
use common::{Harness, app, chunked, config, jar};
use futures::StreamExt;

fn tenant() -> TenantId {
    "acme".parse().unwrap()
}

async fn set_quota(platform: &Platform, quota: Quota) {
    platform.set_quota(&tenant(), quota).await.unwrap();
}

fn quota_kind(e: &Error) -> QuotaKind {
    match e {
        Error::QuotaExceeded { kind, .. } => *kind,
        other => panic!("expected a quota error, got {other:?}"),
    }
}

/// Deploys `app` with `config` and waits until it settles, or returns the
/// refusal's code.
async fn deploy(
    h: &Harness,
    app: &AppRef,
    artifact: Sha256Digest,
    config: AppConfig,
) -> std::result::Result<S, &'static str> {
    match h.platform.deploy(app, artifact, config).await {
        Ok(d) => Ok(h.settled(&d.id).await.status),
        Err(e) => Err(e.code()),
    }
}

fn sized(memory_mb: u32, cpu_millis: u32) -> AppConfig {
    AppConfig {
        resources: Resources {
            memory_mb,
            cpu_millis,
            cpu_shares: None,
        },
        ..config()
    }
}

#[tokio::test(start_paused = true)]
async fn artifact_bytes_are_charged_once_and_an_upload_over_quota_stores_nothing() {
    let h = Harness::new();
    let first = jar("com.example.First");
    let size = first.len() as u64;
    set_quota(
        &h.platform,
        Quota {
            artifact_bytes: Some(size + 10),
            ..Quota::default()
        },
    )
    .await;
    let orders = app("orders");
    let up = h
        .platform
        .upload_artifact(&orders, chunked(first.clone(), 100), None)
        .await
        .unwrap();
    // The same JAR again (to another env) is not charged twice.
    h.platform
        .upload_artifact(
            &orders.in_env("prod".parse().unwrap()),
            chunked(first, 100),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        h.platform
            .quota_usage(&tenant())
            .await
            .unwrap()
            .artifact_bytes,
        size
    );
    let second = jar("com.example.Second");
    let sha2 = Sha256Digest::of(&second);
    let e = h
        .platform
        .upload_artifact(&orders, chunked(second, 100), None)
        .await
        .unwrap_err();
    assert_eq!(quota_kind(&e), QuotaKind::ArtifactBytes);
    assert_eq!(e.code(), "artifact_bytes_quota_exceeded");
    assert!(e.to_string().contains("artifact_bytes"), "{e}");
    assert_eq!(h.artifacts.stat(&sha2).await.unwrap(), None);
    assert_eq!(h.artifacts.len(), 1);
    assert!(h.artifacts.stat(&up.sha256).await.unwrap().is_some());
    // Another tenant has its own account.
    let other = cameleer_runtime::AppRef::parse("globex", "orders", "dev").unwrap();
    h.platform
        .upload_artifact(&other, chunked(jar("com.example.Second"), 100), None)
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn apps_quota_refuses_a_new_app_and_creates_nothing() {
    let h = Harness::new();
    set_quota(
        &h.platform,
        Quota {
            apps: Some(1),
            ..Quota::default()
        },
    )
    .await;
    h.deploy_settled(&app("orders")).await;
    // The same app in another environment is the same app.
    let artifact = h.upload("com.example.Main").await;
    let prod = app("orders").in_env("prod".parse().unwrap());
    let p = h.platform.deploy(&prod, artifact, config()).await.unwrap();
    h.settled(&p.id).await;
    let builds = h.builder.builds();
    let e = h
        .platform
        .deploy(&app("billing"), artifact, config())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "apps_quota_exceeded");
    match &e {
        Error::QuotaExceeded {
            tenant: t,
            limit,
            requested,
            ..
        } => assert_eq!((t, *limit, *requested), (&tenant(), 1, 2)),
        other => panic!("{other:?}"),
    }
    // No version allocated, no build, no container.
    assert!(h.platform.history(&app("billing")).await.is_err());
    assert_eq!(h.builder.builds(), builds);
    assert_eq!(h.store.len(), 2);
    let usage = h.platform.quota_usage(&tenant()).await.unwrap();
    assert_eq!((usage.apps, usage.instances), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn instances_quota_counts_what_runs_and_what_a_restart_would_bring_back() {
    let h = Harness::new();
    set_quota(
        &h.platform,
        Quota {
            instances: Some(1),
            ..Quota::default()
        },
    )
    .await;
    let dev = app("orders");
    let prod = dev.in_env("prod".parse().unwrap());
    h.deploy_settled(&dev).await;
    // A redeploy replaces the app's claim: no headroom needed.
    let v2 = h.deploy_settled(&dev).await;
    assert_eq!(v2.status, S::Running);
    let e = h.platform.promote(&dev, prod.env.clone(), None).await;
    assert_eq!(e.unwrap_err().code(), "instances_quota_exceeded");
    assert!(h.platform.history(&prod).await.is_err(), "nothing created");
    // Stopped, dev frees its instance; prod may take it.
    h.platform.stop(&dev).await.unwrap();
    let p = h.platform.promote(&dev, prod.env.clone(), None).await;
    assert!(p.is_err(), "nothing RUNNING to promote once stopped");
    let artifact = h.upload("com.example.Main").await;
    let p = h.platform.deploy(&prod, artifact, config()).await.unwrap();
    assert_eq!(h.settled(&p.id).await.status, S::Running);
    // Restarting the stopped dev would claim a second instance.
    let e = h.platform.restart(&dev).await.unwrap_err();
    assert_eq!(e.code(), "instances_quota_exceeded");
    let newest = h.platform.history(&dev).await.unwrap();
    assert_eq!(
        newest[0].status,
        S::Stopped,
        "the refused restart changed nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn memory_and_cpu_quotas_sum_the_resources_of_every_claim() {
    let h = Harness::new();
    set_quota(
        &h.platform,
        Quota {
            memory_mb: Some(768),
            cpu_millis: Some(1500),
            ..Quota::default()
        },
    )
    .await;
    let artifact = h.upload("com.example.Main").await;
    let (a, b) = (app("a"), app("b"));
    assert_eq!(
        deploy(&h, &a, artifact, sized(512, 500)).await,
        Ok(S::Running)
    );
    assert_eq!(
        deploy(&h, &b, artifact, sized(512, 500)).await,
        Err("memory_quota_exceeded")
    );
    assert_eq!(
        deploy(&h, &b, artifact, sized(256, 1001)).await,
        Err("cpu_quota_exceeded")
    );
    assert_eq!(
        deploy(&h, &b, artifact, sized(256, 1000)).await,
        Ok(S::Running)
    );
    let usage = h.platform.quota_usage(&tenant()).await.unwrap();
    assert_eq!((usage.memory_mb, usage.cpu_millis), (768, 1500));
    // Lowering the quota below the usage removes nothing and still lets an
    // app be redeployed as it is; growing it is refused.
    set_quota(
        &h.platform,
        Quota {
            memory_mb: Some(256),
            ..Quota::default()
        },
    )
    .await;
    assert_eq!(
        deploy(&h, &a, artifact, sized(512, 500)).await,
        Ok(S::Running)
    );
    assert_eq!(
        deploy(&h, &a, artifact, sized(640, 500)).await,
        Err("memory_quota_exceeded")
    );
}

/// A deployment store whose reads take a while, as a database's do: without the tenant's gate, racing checks would all read
/// the usage before any of them created its deployment.
struct Yielding(MemoryDeploymentStore);

#[async_trait]
impl DeploymentStore for Yielding {
    async fn create(&self, app: &AppRef, new: NewDeployment) -> Result<Deployment> {
        tokio::task::yield_now().await;
        self.0.create(app, new).await
    }
    async fn get(&self, id: &DeploymentId) -> Result<Deployment> {
        self.0.get(id).await
    }
    async fn update(&self, d: &Deployment) -> Result<Deployment> {
        self.0.update(d).await
    }
    async fn list(&self, app: &AppRef) -> Result<Vec<Deployment>> {
        tokio::task::yield_now().await;
        self.0.list(app).await
    }
    async fn latest_per_app(&self, tenant: &TenantId) -> Result<Vec<Deployment>> {
        tokio::task::yield_now().await;
        self.0.latest_per_app(tenant).await
    }
    async fn active(&self) -> Result<Vec<Deployment>> {
        // A slow read: every racer reads before any of them creates,
        // unless something makes them take turns.
        let usage = self.0.active().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        usage
    }
    async fn latest_of_every_app(&self) -> Result<Vec<Deployment>> {
        self.0.latest_of_every_app().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_deploys_for_the_last_instance_do_not_both_pass() {
    let store = Arc::new(Yielding(MemoryDeploymentStore::new()));
    let fake = FakeOrchestrator::new();
    let platform = Platform::builder()
        .orchestrator(Arc::new(fake))
        .image_builder(Arc::new(FakeImageBuilder::new()))
        .deployment_store(store.clone())
        .artifact_store(Arc::new(MemoryArtifactStore::new()))
        .build();
    let h = Racing { platform };
    set_quota(
        &h.platform,
        Quota {
            instances: Some(1),
            ..Quota::default()
        },
    )
    .await;
    let artifact = h.upload("com.example.Main").await;
    let racers: Vec<_> = (0..10)
        .map(|i| {
            let platform = h.platform.clone();
            let target = app(&format!("app{i}"));
            tokio::spawn(async move { platform.deploy(&target, artifact, config()).await })
        })
        .collect();
    let mut passed = 0;
    let mut refused = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(_) => passed += 1,
            Err(e) => {
                assert_eq!(e.code(), "instances_quota_exceeded");
                refused += 1;
            }
        }
    }
    assert_eq!((passed, refused), (1, 9));
    assert_eq!(store.0.len(), 1, "one deployment created, no other");
}

struct Racing {
    platform: Platform,
}

impl Racing {
    async fn upload(&self, main: &str) -> Sha256Digest {
        self.platform
            .upload_artifact(&app("orders"), chunked(jar(main), 1000), None)
            .await
            .unwrap()
            .sha256
    }
}

#[tokio::test(start_paused = true)]
async fn racing_uploads_for_the_last_bytes_do_not_both_pass() {
    let h = Harness::new();
    let size = jar("com.example.A").len() as u64;
    set_quota(
        &h.platform,
        Quota {
            artifact_bytes: Some(size + size / 2),
            ..Quota::default()
        },
    )
    .await;
    let racers: Vec<_> = ["com.example.A", "com.example.B", "com.example.C"]
        .into_iter()
        .map(|main| {
            let platform = h.platform.clone();
            tokio::spawn(async move {
                platform
                    .upload_artifact(&app("orders"), chunked(jar(main), 50), None)
                    .await
            })
        })
        .collect();
    let mut passed = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(_) => passed += 1,
            Err(e) => assert_eq!(e.code(), "artifact_bytes_quota_exceeded"),
        }
    }
    assert_eq!(passed, 1);
    assert_eq!(h.artifacts.len(), 1);
}

/// A store that reads the whole upload and then finds the disk full.
struct FullDisk;

#[async_trait]
impl ArtifactStore for FullDisk {
    async fn put(&self, mut upload: ArtifactUpload) -> Result<ArtifactInfo> {
        while let Some(chunk) = upload.next().await {
            chunk.map_err(|e| Error::storage("reading", e))?;
        }
        Err(Error::from_io(
            "syncing the artifact",
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        ))
    }
    async fn get(&self, sha256: &Sha256Digest) -> Result<ByteStream> {
        Err(Error::not_found("artifact", sha256))
    }
    async fn stat(&self, _: &Sha256Digest) -> Result<Option<ArtifactInfo>> {
        Ok(None)
    }
}

#[tokio::test]
async fn a_store_that_fails_after_the_charge_takes_the_charge_back() {
    let quotas = Arc::new(MemoryQuotaStore::new());
    let fake = FakeOrchestrator::new();
    let platform = Platform::builder()
        .orchestrator(Arc::new(fake))
        .image_builder(Arc::new(FakeImageBuilder::new()))
        .deployment_store(Arc::new(MemoryDeploymentStore::new()))
        .artifact_store(Arc::new(FullDisk))
        .quota_store(quotas.clone())
        .build();
    platform
        .set_quota(
            &tenant(),
            Quota {
                artifact_bytes: Some(1 << 20),
                ..Quota::default()
            },
        )
        .await
        .unwrap();
    let e = platform
        .upload_artifact(&app("orders"), chunked(jar("com.example.Main"), 100), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "insufficient_storage", "{e}");
    assert_eq!(quotas.artifact_bytes(&tenant()).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_tenant_cannot_deploy_another_tenants_artifact_by_its_digest() {
    let h = Harness::new();
    let sha = h.upload("com.acme.Main").await; // acme's
    let theirs = AppRef::parse("globex", "orders", "dev").unwrap();
    let err = h.platform.deploy(&theirs, sha, config()).await.unwrap_err();
    assert_eq!(err.code(), "not_found", "{err}");
    assert!(
        h.platform.history(&theirs).await.is_err(),
        "nothing created"
    );

    // Uploading the same bytes makes them globex's too (stored once).
    let again = h
        .platform
        .upload_artifact(&theirs, chunked(jar("com.acme.Main"), 1000), None)
        .await
        .unwrap();
    assert_eq!(again.sha256, sha);
    assert_eq!(deploy(&h, &theirs, sha, config()).await, Ok(S::Running));
    // And acme's own deploy was never in question.
    assert_eq!(
        deploy(&h, &app("orders"), sha, config()).await,
        Ok(S::Running)
    );
}
