//! The deploy pipeline over the fakes: deploy, redeploy, stop, restart,
//! promote, rollback, and concurrent deploys.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cameleer_runtime::memory::{MemoryArtifactStore, MemoryDeploymentStore};
use cameleer_runtime::testkit::FakeOrchestrator;
use cameleer_runtime::{
    AppConfig, DeploymentEvent, DeploymentSource, DeploymentStatus as S, PlatformEvent, Resources,
    RuntimeOrchestrator, Sha256Digest, StatusReason,
};
use cameleer_runtime::{
    BuildSpec, BuiltImage, ByteStream, ImageBuilder, Platform, ProgressSink, Result,
};
use common::{Harness, app, config, statuses};
use futures::{FutureExt, StreamExt};
use time::OffsetDateTime;

#[tokio::test(start_paused = true)]
async fn deploy_goes_building_starting_running_and_reports_it() {
    let h = Harness::new();
    let mut events = h.platform.subscribe();
    let d = h.deploy(&app("orders")).await;
    assert_eq!((d.version, d.status), (1, S::Building));
    assert_eq!(d.source, DeploymentSource::Build);

    let d = h.settled(&d.id).await;
    assert_eq!(statuses(&d), [S::Building, S::Starting, S::Running]);
    let image = d.image.clone().expect("the image is recorded");
    assert!(image.digest().is_some(), "pinned: {image}");
    assert_eq!(h.fake.running(&app("orders")), Some(d.id));
    assert_eq!(h.builder.builds(), 1);

    let mut seen = Vec::new();
    let mut progress = 0;
    while let Some(Some(event)) = events.next().now_or_never() {
        match event {
            PlatformEvent::Status(s) if s.deployment == d.id => seen.push(s.status),
            PlatformEvent::BuildProgress(p) if p.deployment == d.id => progress += 1,
            _ => {}
        }
    }
    assert_eq!(seen, [S::Building, S::Starting, S::Running]);
    assert!(progress > 0, "build progress is forwarded");
}

#[tokio::test(start_paused = true)]
async fn a_build_failure_is_failed_with_the_builders_text() {
    let h = Harness::new();
    h.builder.fail_next("base image cameleer/jre:17 not found");
    let d = h.deploy_settled(&app("orders")).await;
    assert_eq!(statuses(&d), [S::Building, S::Failed]);
    assert_eq!(
        d.last_reason(),
        Some(&StatusReason::BuildFailed {
            detail: "base image cameleer/jre:17 not found".into()
        })
    );
    assert!(d.image.is_none());
    assert_eq!(h.fake.deploys(), 0, "nothing was started");
}

#[tokio::test(start_paused = true)]
async fn a_start_failure_is_failed_with_the_backends_text() {
    let h = Harness::new();
    h.fake.fail_start("port 8080 already in use");
    let d = h.deploy_settled(&app("orders")).await;
    assert_eq!(statuses(&d), [S::Building, S::Starting, S::Failed]);
    assert_eq!(
        d.last_reason(),
        Some(&StatusReason::BackendUnavailable {
            detail: "port 8080 already in use".into()
        })
    );
}

#[tokio::test(start_paused = true)]
async fn slow_health_beyond_the_start_timeout_fails() {
    let h = Harness::new();
    h.fake.slow_health(Duration::from_secs(3600));
    let d = h.deploy_settled(&app("orders")).await;
    assert_eq!(d.status, S::Failed);
    assert!(
        matches!(
            d.last_reason(),
            Some(StatusReason::HealthTimeout { after_secs: 30, .. })
        ),
        "{:?}",
        d.last_reason()
    );
}

#[tokio::test(start_paused = true)]
async fn slow_health_within_the_start_timeout_runs() {
    let h = Harness::new();
    h.fake.slow_health(Duration::from_secs(20));
    let d = h.deploy_settled(&app("orders")).await;
    assert_eq!(d.status, S::Running);
}

#[tokio::test(start_paused = true)]
async fn a_redeploy_supersedes_the_running_version() {
    let h = Harness::new();
    let v1 = h.deploy_settled(&app("orders")).await;
    let v2 = h.deploy_settled(&app("orders")).await;
    assert_eq!((v2.version, v2.status), (2, S::Running));
    let v1 = h.platform.deployment(&v1.id).await.unwrap();
    assert_eq!(
        statuses(&v1),
        [S::Building, S::Starting, S::Running, S::Stopped]
    );
    assert_eq!(
        v1.last_reason(),
        Some(&StatusReason::Superseded { by_version: 2 })
    );
    assert_eq!(h.fake.running(&app("orders")), Some(v2.id));
}

#[tokio::test(start_paused = true)]
async fn a_failing_redeploy_leaves_the_old_version_running() {
    let h = Harness::new();
    let v1 = h.deploy_settled(&app("orders")).await;
    h.fake.fail_start("health check failed: connection refused");
    let v2 = h.deploy_settled(&app("orders")).await;
    assert_eq!(v2.status, S::Failed);
    assert_eq!(
        h.platform.deployment(&v1.id).await.unwrap().status,
        S::Running
    );
    assert_eq!(h.fake.running(&app("orders")), Some(v1.id));

    let view = h.platform.status(&app("orders")).await.unwrap();
    assert_eq!(view.deployment.unwrap().id, v2.id, "the newest deployment");
    assert_eq!(view.status, Some(S::Running), "what serves");
    assert_eq!(view.runtime.unwrap().deployment, Some(v1.id));
}

#[tokio::test(start_paused = true)]
async fn stop_stops_the_backend_and_the_deployment() {
    let h = Harness::new();
    let d = h.deploy_settled(&app("orders")).await;
    let stopped = h.platform.stop(&app("orders")).await.unwrap();
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].id, d.id);
    assert_eq!(stopped[0].status, S::Stopped);
    assert_eq!(
        stopped[0].last_reason(),
        Some(&StatusReason::StoppedOnRequest)
    );
    assert_eq!(h.fake.running(&app("orders")), None);
    let view = h.platform.status(&app("orders")).await.unwrap();
    assert_eq!(view.status, Some(S::Stopped));
    assert_eq!(
        h.platform.stop(&app("nothing")).await.unwrap_err().code(),
        "not_found"
    );
}

#[tokio::test(start_paused = true)]
async fn stop_while_building_ends_the_pipeline_quietly() {
    let h = Harness::new();
    h.builder.set_delay(Duration::from_secs(5));
    let d = h.deploy(&app("orders")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.builder.builds(), 1, "the build is under way");

    let stopped = h.platform.stop(&app("orders")).await.unwrap();
    assert_eq!(stopped[0].status, S::Stopped);
    tokio::time::sleep(Duration::from_secs(10)).await;

    let d = h.platform.deployment(&d.id).await.unwrap();
    assert_eq!(statuses(&d), [S::Building, S::Stopped], "never overwritten");
    assert!(d.image.is_none());
    assert_eq!(h.fake.deploys(), 0, "never started");
}

/// A builder whose builds never finish, and which tells when the future of
/// one was dropped (the build cancelled).
#[derive(Default)]
struct EndlessBuilder {
    started: AtomicUsize,
    dropped: Arc<AtomicUsize>,
}

struct CountDrop(Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl ImageBuilder for EndlessBuilder {
    async fn build(&self, _: &BuildSpec, _: ByteStream, _: ProgressSink) -> Result<BuiltImage> {
        let _dropped = CountDrop(self.dropped.clone());
        self.started.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn stop_while_building_cancels_the_build_and_ends_stopped() {
    let fake = FakeOrchestrator::new();
    let builder = Arc::new(EndlessBuilder::default());
    let store = Arc::new(MemoryDeploymentStore::new());
    let platform = Platform::builder()
        .orchestrator(Arc::new(fake.clone()))
        .image_builder(builder.clone())
        .deployment_store(store)
        .artifact_store(Arc::new(MemoryArtifactStore::new()))
        .build();
    let jar = common::jar("com.example.Main");
    let uploaded = platform
        .upload_artifact(&app("orders"), common::chunked(jar, 1000), None)
        .await
        .unwrap();
    let d = platform
        .deploy(&app("orders"), uploaded.sha256, config())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(builder.started.load(Ordering::SeqCst), 1, "building");
    assert_eq!(builder.dropped.load(Ordering::SeqCst), 0);

    platform.stop(&app("orders")).await.unwrap();
    // The pipeline ends (the build does not run on, holding the app's
    // lane), the builder's future is dropped, the deployment is STOPPED.
    let settled = platform
        .wait_settled(&d.id, Duration::from_secs(5))
        .await
        .expect("the pipeline ends once the build is cancelled");
    assert_eq!(builder.dropped.load(Ordering::SeqCst), 1, "build cancelled");
    assert_eq!(statuses(&settled), [S::Building, S::Stopped]);
    assert_eq!(settled.last_reason(), Some(&StatusReason::StoppedOnRequest));
    assert_eq!(fake.deploys(), 0, "never started");
}

#[tokio::test(start_paused = true)]
async fn restart_brings_a_stopped_version_back() {
    let h = Harness::new();
    let d = h.deploy_settled(&app("orders")).await;
    h.platform.stop(&app("orders")).await.unwrap();
    let d2 = h.platform.restart(&app("orders")).await.unwrap();
    assert_eq!(d2.id, d.id);
    assert_eq!(
        statuses(&d2),
        [
            S::Building,
            S::Starting,
            S::Running,
            S::Stopped,
            S::Starting,
            S::Running
        ]
    );
    assert_eq!(h.fake.running(&app("orders")), Some(d.id));

    h.fake.fail_start("restart refused");
    let d3 = h.platform.restart(&app("orders")).await.unwrap();
    assert_eq!(d3.status, S::Failed);
    assert_eq!(
        d3.last_reason(),
        Some(&StatusReason::BackendUnavailable {
            detail: "restart refused".into()
        })
    );
    assert_eq!(
        h.platform
            .restart(&app("nothing"))
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
}

#[tokio::test(start_paused = true)]
async fn promotion_deploys_the_same_image_without_building() {
    let h = Harness::new();
    let dev = h.deploy_settled(&app("orders")).await;
    assert_eq!(h.builder.builds(), 1);
    let prod_config = AppConfig {
        resources: Resources {
            memory_mb: 1024,
            cpu_millis: 2000,
            cpu_shares: None,
        },
        ..config()
    };

    let prod = h
        .platform
        .promote(&dev.app, "prod".parse().unwrap(), Some(prod_config.clone()))
        .await
        .unwrap();
    assert_eq!(prod.app.env.as_str(), "prod");
    assert_eq!((prod.version, prod.status), (1, S::Starting));
    assert_eq!(prod.image, dev.image, "the same pinned image");
    assert_eq!(prod.artifact, dev.artifact);
    assert_eq!(prod.source, DeploymentSource::Promotion { from: dev.id });
    assert_eq!(prod.config, prod_config, "the target's config, not dev's");
    let prod = h.settled(&prod.id).await;
    assert_eq!(statuses(&prod), [S::Starting, S::Running]);

    // Again without a config: prod's latest config is used.
    let again = h
        .platform
        .promote(&dev.app, "prod".parse().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(again.config, prod_config);
    assert_eq!(h.settled(&again.id).await.status, S::Running);
    assert_eq!(h.builder.builds(), 1, "promotion never builds");
    // The dev deployment is untouched.
    assert_eq!(
        h.platform.deployment(&dev.id).await.unwrap().status,
        S::Running
    );
}

#[tokio::test(start_paused = true)]
async fn promotion_needs_something_running_and_another_env() {
    let h = Harness::new();
    let dev = h.deploy_settled(&app("orders")).await;
    let env = |s: &str| s.parse().unwrap();
    let staging = dev.app.in_env(env("staging"));
    let err = h
        .platform
        .promote(&staging, env("prod"), Some(config()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "conflict", "{err}");
    let mut bad = config();
    bad.resources.memory_mb = 1;
    let err = h
        .platform
        .promote(&dev.app, env("prod"), Some(bad))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_config", "{err}");
    // A first promotion without a config starts from the source's.
    let prod = h
        .platform
        .promote(&dev.app, env("prod"), None)
        .await
        .unwrap();
    assert_eq!(prod.config, dev.config);
    assert_eq!(prod.image, dev.image);
    let err = h
        .platform
        .promote(&dev.app, env("dev"), Some(config()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "conflict", "{err}");
}

#[tokio::test(start_paused = true)]
async fn rollback_redeploys_an_earlier_image_as_a_new_version() {
    let h = Harness::new();
    let v1 = h.deploy_settled(&app("orders")).await;
    let artifact = h.upload("com.example.Other").await;
    let v2 = h
        .platform
        .deploy(&app("orders"), artifact, config())
        .await
        .unwrap();
    let v2 = h.settled(&v2.id).await;
    assert_ne!(v1.image, v2.image);

    let v3 = h.platform.rollback(&app("orders"), None).await.unwrap();
    assert_eq!(v3.version, 3);
    assert_eq!(v3.image, v1.image);
    assert_eq!(v3.artifact, v1.artifact);
    assert_eq!(v3.source, DeploymentSource::Rollback { to_version: 1 });
    let v3 = h.settled(&v3.id).await;
    assert_eq!(statuses(&v3), [S::Starting, S::Running]);
    assert_eq!(
        h.platform.deployment(&v2.id).await.unwrap().status,
        S::Stopped
    );
    assert_eq!(h.builder.builds(), 2, "rollback never builds");

    let v4 = h.platform.rollback(&app("orders"), Some(2)).await.unwrap();
    assert_eq!(v4.image, v2.image);
    assert_eq!(
        h.platform
            .rollback(&app("orders"), Some(99))
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert_eq!(
        h.platform
            .rollback(&app("nothing"), None)
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
}

#[tokio::test(start_paused = true)]
async fn rollback_refuses_versions_without_an_image() {
    let h = Harness::new();
    h.builder.fail_next("broken");
    let v1 = h.deploy_settled(&app("orders")).await;
    assert_eq!(v1.status, S::Failed);
    let err = h
        .platform
        .rollback(&app("orders"), Some(1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "conflict", "{err}");
    let err = h.platform.rollback(&app("orders"), None).await.unwrap_err();
    assert_eq!(err.code(), "conflict", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deploys_of_one_app_are_serialized_in_version_order() {
    let h = Arc::new(Harness::new());
    let artifact = h.upload("com.example.Main").await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.platform.deploy(&app("orders"), artifact, config()).await })
        })
        .collect();
    let mut created = Vec::new();
    for t in tasks {
        created.push(t.await.unwrap().unwrap());
    }
    created.sort_by_key(|d| d.version);
    let versions: Vec<u64> = created.iter().map(|d| d.version).collect();
    assert_eq!(versions, (1..=50).collect::<Vec<_>>(), "unique, no gaps");
    assert!(
        created
            .windows(2)
            .all(|w| w[0].created_at <= w[1].created_at),
        "versions follow creation order"
    );

    for d in &created {
        h.settled(&d.id).await;
    }
    let mut settled = Vec::new();
    for d in &created {
        settled.push(h.platform.deployment(&d.id).await.unwrap());
    }
    let last = settled.pop().unwrap();
    assert_eq!(last.status, S::Running);
    for d in &settled {
        // Each was brought up, then replaced by the very next version: they
        // ran one after the other, in version order.
        assert_eq!(
            statuses(d),
            [S::Building, S::Starting, S::Running, S::Stopped],
            "v{}",
            d.version
        );
        assert_eq!(
            d.last_reason(),
            Some(&StatusReason::Superseded {
                by_version: d.version + 1
            })
        );
    }
    assert_eq!(h.fake.running(&app("orders")), Some(last.id));
    assert_eq!(h.builder.builds(), 50);
}

#[tokio::test(start_paused = true)]
async fn writers_with_stale_revisions_conflict() {
    use cameleer_runtime::DeploymentStore;
    let h = Harness::new();
    let d = h.deploy_settled(&app("orders")).await;
    let mut first = h.platform.deployment(&d.id).await.unwrap();
    let mut second = first.clone();
    first
        .apply(
            &DeploymentEvent::Crashed {
                reason: StatusReason::OomKilled,
            },
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    second
        .apply(
            &DeploymentEvent::Stopped {
                reason: StatusReason::StoppedOnRequest,
            },
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    h.store.update(&first).await.unwrap();
    let err = h.store.update(&second).await.unwrap_err();
    assert_eq!(err.code(), "conflict");
    let stored = h.platform.deployment(&d.id).await.unwrap();
    assert_eq!(stored.status, S::Failed, "the first write stands");
}

#[tokio::test(start_paused = true)]
async fn invalid_config_or_unknown_artifact_stores_nothing() {
    let h = Harness::new();
    let artifact = h.upload("com.example.Main").await;
    let mut bad = config();
    bad.resources.memory_mb = 32;
    let err = h
        .platform
        .deploy(&app("orders"), artifact, bad)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_config");
    assert!(err.to_string().contains("resources.memory_mb"), "{err}");

    let err = h
        .platform
        .deploy(
            &app("orders"),
            Sha256Digest::of(b"never uploaded"),
            config(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "not_found");
    assert!(err.to_string().contains("artifact"), "{err}");

    assert!(h.store.is_empty());
    assert_eq!(h.builder.builds(), 0);
    assert_eq!(h.fake.deploys(), 0);
    assert_eq!(
        h.platform.history(&app("orders")).await.unwrap_err().code(),
        "not_found"
    );
}

#[tokio::test(start_paused = true)]
async fn history_and_list() {
    let h = Harness::new();
    h.deploy_settled(&app("orders")).await;
    h.deploy_settled(&app("orders")).await;
    h.deploy_settled(&app("billing")).await;
    let other = cameleer_runtime::AppRef::parse("globex", "orders", "dev").unwrap();
    h.deploy_settled(&other).await;

    let history = h.platform.history(&app("orders")).await.unwrap();
    let versions: Vec<u64> = history.iter().map(|d| d.version).collect();
    assert_eq!(versions, [2, 1], "newest first");

    let list = h.platform.list(&"acme".parse().unwrap()).await.unwrap();
    let names: Vec<String> = list.iter().map(|v| v.app.to_string()).collect();
    assert_eq!(names, ["acme/billing/dev", "acme/orders/dev"]);
    assert!(list.iter().all(|v| v.status == Some(S::Running)));
    assert_eq!(list[1].deployment.as_ref().unwrap().version, 2);
}

#[tokio::test(start_paused = true)]
async fn logs_come_from_the_backend() {
    let h = Harness::new();
    h.deploy_settled(&app("orders")).await;
    let lines: Vec<_> = h
        .platform
        .logs(&app("orders"), Default::default())
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(lines[0].as_ref().unwrap().line, "[app] started");
    let err = h
        .platform
        .logs(&app("nothing"), Default::default())
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), "not_found");
    // The backend is still reachable through the trait object too.
    let fake: Arc<dyn RuntimeOrchestrator> = Arc::new(h.fake.clone());
    assert!(fake.app_status(&app("orders")).await.is_ok());
}
