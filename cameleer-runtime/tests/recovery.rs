//! Keeping the store truthful: runtime events, status reconciliation,
//! recovery after a controller restart, timeouts and shutdown.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cameleer_runtime::testkit::FakeOrchestrator;
use cameleer_runtime::{
    AppRef, AppStatus, AppSummary, DeployRequest, DeploymentStatus as S, Desired, Intent,
    LogOptions, LogStream, Platform, PlatformEvent, PlatformOptions, ReconcileReport, Result,
    RuntimeEvent, RuntimeEventKind, RuntimeOrchestrator, StatusReason, TenantId,
};
use common::{Harness, app, config, statuses};
use futures::StreamExt;
use time::OffsetDateTime;

#[tokio::test(start_paused = true)]
async fn a_crash_after_start_becomes_failed_through_the_event_stream() {
    let h = Harness::new();
    h.platform.start().await.unwrap();
    h.fake.crash_after_start(42);
    let d = h.deploy_settled(&app("orders")).await;
    let d = h.wait_for(&d.id, S::Failed).await;
    assert_eq!(
        statuses(&d),
        [S::Building, S::Starting, S::Running, S::Failed]
    );
    assert_eq!(
        d.last_reason(),
        Some(&StatusReason::Exited {
            exit_code: Some(42)
        })
    );
}

#[tokio::test(start_paused = true)]
async fn an_oom_kill_becomes_failed_naming_the_oom_killer() {
    let h = Harness::new();
    h.platform.start().await.unwrap();
    h.fake.oom_kill();
    let d = h.deploy_settled(&app("orders")).await;
    let d = h.wait_for(&d.id, S::Failed).await;
    assert_eq!(d.last_reason(), Some(&StatusReason::OomKilled));
}

#[tokio::test(start_paused = true)]
async fn unhealthy_keeps_running_and_is_published() {
    let h = Harness::new();
    h.platform.start().await.unwrap();
    let d = h.deploy_settled(&app("orders")).await;
    let mut events = h.platform.subscribe();
    h.fake.emit(RuntimeEvent {
        app: d.app.clone(),
        deployment: d.id,
        kind: RuntimeEventKind::Unhealthy {
            reason: "GET /health: 503".into(),
        },
        at: OffsetDateTime::now_utc(),
    });
    let PlatformEvent::Unhealthy(u) = events.next().await.unwrap() else {
        panic!("expected an unhealthy event");
    };
    assert_eq!(
        (u.deployment, u.reason.as_str()),
        (d.id, "GET /health: 503")
    );
    assert_eq!(
        h.platform.deployment(&d.id).await.unwrap().status,
        S::Running
    );
}

#[tokio::test(start_paused = true)]
async fn events_for_unknown_or_mismatched_deployments_are_ignored() {
    let h = Harness::new();
    h.platform.start().await.unwrap();
    let d = h.deploy_settled(&app("orders")).await;
    for (app, deployment) in [
        (d.app.clone(), cameleer_runtime::DeploymentId::new_random()),
        (app("billing"), d.id),
    ] {
        h.fake.emit(RuntimeEvent {
            app,
            deployment,
            kind: RuntimeEventKind::Failed {
                reason: StatusReason::Exited { exit_code: Some(1) },
            },
            at: OffsetDateTime::now_utc(),
        });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        h.platform.deployment(&d.id).await.unwrap().status,
        S::Running
    );
}

#[tokio::test(start_paused = true)]
async fn status_reconciles_a_crash_nobody_watched() {
    let h = Harness::new(); // no start(): nobody consumes the events
    h.fake.crash_after_start(9);
    let d = h.deploy_settled(&app("orders")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        h.platform.deployment(&d.id).await.unwrap().status,
        S::Running
    );

    let view = h.platform.status(&app("orders")).await.unwrap();
    let latest = view.deployment.unwrap();
    assert_eq!(latest.status, S::Failed);
    assert_eq!(
        latest.last_reason(),
        Some(&StatusReason::Exited { exit_code: Some(9) })
    );
    assert_eq!(view.status, Some(S::Failed));
    // Persisted, not just shown.
    assert_eq!(
        h.platform.deployment(&d.id).await.unwrap().status,
        S::Failed
    );
}

#[tokio::test(start_paused = true)]
async fn status_and_list_notice_an_app_the_backend_lost() {
    let h = Harness::new();
    h.deploy_settled(&app("orders")).await;
    h.deploy_settled(&app("billing")).await;
    h.fake.wipe();
    let list = h.platform.list(&"acme".parse().unwrap()).await.unwrap();
    assert_eq!(list.len(), 2);
    for view in list {
        let d = view.deployment.unwrap();
        assert_eq!(d.status, S::Failed, "{}", view.app);
        assert_eq!(d.last_reason(), Some(&StatusReason::Gone));
    }
    assert_eq!(
        h.platform.status(&app("nothing")).await.unwrap_err().code(),
        "not_found"
    );
}

#[tokio::test(start_paused = true)]
async fn recovery_settles_what_a_controller_restart_interrupted() {
    let h = Harness::new();
    let kept = h.deploy_settled(&app("kept")).await;
    let lost = h.deploy_settled(&app("lost")).await;
    h.builder.set_delay(Duration::from_secs(3600));
    let building = h.deploy(&app("building")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.platform.shutdown().await; // the controller dies mid-build
    assert_eq!(
        h.platform.deployment(&building.id).await.unwrap().status,
        S::Building
    );
    h.fake.stop_app(&app("lost")).await.unwrap(); // and an app died with it

    let restarted = h.restarted();
    let report = restarted.start().await.unwrap();
    assert_eq!(report.backend.adopted, [kept.id]);
    let mut failed = report.failed.clone();
    failed.sort();
    let mut expected = vec![building.id, lost.id];
    expected.sort();
    assert_eq!(failed, expected);

    let building = restarted.deployment(&building.id).await.unwrap();
    assert_eq!(statuses(&building), [S::Building, S::Failed]);
    assert_eq!(
        building.last_reason(),
        Some(&StatusReason::Interrupted { detail: None })
    );
    let lost = restarted.deployment(&lost.id).await.unwrap();
    assert_eq!(lost.status, S::Failed);
    assert_eq!(lost.last_reason(), Some(&StatusReason::StoppedOnRequest));
    assert_eq!(
        restarted.deployment(&kept.id).await.unwrap().status,
        S::Running
    );
}

#[tokio::test(start_paused = true)]
async fn recovery_finishes_a_start_the_backend_completed() {
    use cameleer_runtime::{DeployRequest, DeploymentStore, NewDeployment};
    let h = Harness::new();
    let v1 = h.deploy_settled(&app("orders")).await;
    // v2 was handed to the backend, which brought it up, but the controller
    // died before recording RUNNING.
    let new = NewDeployment {
        artifact: v1.artifact,
        image: v1.image.clone(),
        source: v1.source.clone(),
        config: v1.config.clone(),
    };
    let v2 = h.store.create(&app("orders"), new.clone()).await.unwrap();
    assert_eq!(v2.status, S::Starting);
    let request = DeployRequest::for_deployment(&v2).unwrap();
    h.fake.deploy_app(&request).await.unwrap();
    // And v3 was starting when it died, but never came up.
    let v3 = h.store.create(&app("orders"), new).await.unwrap();

    let restarted = h.restarted();
    let report = restarted.recover().await.unwrap();
    assert_eq!(report.running, [v2.id]);
    assert_eq!(report.failed, [v3.id]);
    let get = |id| restarted.deployment(id);
    assert_eq!(get(&v2.id).await.unwrap().status, S::Running);
    let v1 = get(&v1.id).await.unwrap();
    assert_eq!(v1.status, S::Stopped);
    assert_eq!(
        v1.last_reason(),
        Some(&StatusReason::Superseded { by_version: 2 })
    );
    let v3 = get(&v3.id).await.unwrap();
    assert_eq!(statuses(&v3), [S::Starting, S::Failed]);
    assert!(
        matches!(v3.last_reason(), Some(StatusReason::Interrupted { .. })),
        "{:?}",
        v3.last_reason()
    );
}

/// The fake, recording what each `reconcile` was asked.
struct Recording {
    fake: FakeOrchestrator,
    asked: Mutex<Vec<Vec<Desired>>>,
}

#[async_trait]
impl RuntimeOrchestrator for Recording {
    async fn deploy_app(&self, request: &DeployRequest) -> Result<AppStatus> {
        self.fake.deploy_app(request).await
    }
    async fn stop_app(&self, app: &AppRef) -> Result<()> {
        self.fake.stop_app(app).await
    }
    async fn restart_app(&self, app: &AppRef) -> Result<AppStatus> {
        self.fake.restart_app(app).await
    }
    async fn app_logs(&self, app: &AppRef, options: &LogOptions) -> Result<LogStream> {
        self.fake.app_logs(app, options).await
    }
    async fn app_status(&self, app: &AppRef) -> Result<AppStatus> {
        self.fake.app_status(app).await
    }
    async fn list_apps(&self, tenant: &TenantId) -> Result<Vec<AppSummary>> {
        self.fake.list_apps(tenant).await
    }
    async fn reconcile(&self, desired: &[Desired]) -> Result<ReconcileReport> {
        self.asked.lock().unwrap().push(desired.to_vec());
        self.fake.reconcile(desired).await
    }
}

#[tokio::test(start_paused = true)]
async fn recovery_keeps_the_version_before_a_newest_whose_build_failed() {
    let h = Harness::new();
    let v1 = h.deploy_settled(&app("orders")).await;
    h.platform.stop(&app("orders")).await.unwrap();
    h.builder.fail_next("base image not found");
    let v2 = h.deploy_settled(&app("orders")).await;
    assert_eq!((v2.status, v2.image.is_none()), (S::Failed, true));

    let backend = Arc::new(Recording {
        fake: h.fake.clone(),
        asked: Mutex::default(),
    });
    let restarted = Platform::builder()
        .orchestrator(backend.clone())
        .image_builder(Arc::new(h.builder.clone()))
        .deployment_store(h.store.clone())
        .artifact_store(h.artifacts.clone())
        .build();
    restarted.recover().await.unwrap();
    let asked = backend.asked.lock().unwrap().clone();
    let intents: Vec<_> = asked[0]
        .iter()
        .map(|d| (d.deployment.id, d.intent))
        .collect();
    // v1's container (stopped, with its logs) is what the app has: the
    // backend must know it, or it removes it as an orphan. v2 never had
    // one.
    assert_eq!(intents, [(v1.id, Intent::KeepStopped)]);
}

/// The fake, except that `reconcile` says when it is entered and then waits
/// to be let through.
struct GatedReconcile {
    fake: FakeOrchestrator,
    entered: tokio::sync::Notify,
    gate: tokio::sync::Semaphore,
    /// Once let through, bring up every version the platform says should
    /// run, as the Docker backend starts the stopped container of one after
    /// an engine restart.
    brings_up: bool,
}

impl GatedReconcile {
    fn new(fake: &FakeOrchestrator, brings_up: bool) -> Arc<Self> {
        Arc::new(Self {
            fake: fake.clone(),
            entered: tokio::sync::Notify::new(),
            gate: tokio::sync::Semaphore::new(0),
            brings_up,
        })
    }
}

#[async_trait]
impl RuntimeOrchestrator for GatedReconcile {
    async fn deploy_app(&self, request: &DeployRequest) -> Result<AppStatus> {
        self.fake.deploy_app(request).await
    }
    async fn stop_app(&self, app: &AppRef) -> Result<()> {
        self.fake.stop_app(app).await
    }
    async fn restart_app(&self, app: &AppRef) -> Result<AppStatus> {
        self.fake.restart_app(app).await
    }
    async fn app_logs(&self, app: &AppRef, options: &LogOptions) -> Result<LogStream> {
        self.fake.app_logs(app, options).await
    }
    async fn app_status(&self, app: &AppRef) -> Result<AppStatus> {
        self.fake.app_status(app).await
    }
    async fn list_apps(&self, tenant: &TenantId) -> Result<Vec<AppSummary>> {
        self.fake.list_apps(tenant).await
    }
    async fn reconcile(&self, desired: &[Desired]) -> Result<ReconcileReport> {
        self.entered.notify_one();
        let _through = self.gate.acquire().await.unwrap();
        let report = self.fake.reconcile(desired).await?;
        if self.brings_up {
            for d in desired.iter().filter(|d| d.intent == Intent::Run) {
                self.fake.restart_app(&d.deployment.app).await?;
            }
        }
        Ok(report)
    }
}

/// Runs `act` on a platform over `h`'s store while its recovery is held
/// between reading the store and the backend acting on it, then lets the
/// backend act; returns what `act` returned and the platform.
async fn during_a_held_recovery<T, F, Fut>(h: &Harness, brings_up: bool, act: F) -> (T, Platform)
where
    T: Send + 'static,
    F: FnOnce(Platform) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let backend = GatedReconcile::new(&h.fake, brings_up);
    let platform = Platform::builder()
        .orchestrator(backend.clone())
        .image_builder(Arc::new(h.builder.clone()))
        .deployment_store(h.store.clone())
        .artifact_store(h.artifacts.clone())
        .build();
    let recovery = tokio::spawn({
        let platform = platform.clone();
        async move { platform.recover().await }
    });
    // The snapshot is read; the backend has not acted on it yet.
    backend.entered.notified().await;
    let acting = tokio::spawn(act(platform.clone()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    backend.gate.add_permits(1);
    recovery.await.unwrap().unwrap();
    (acting.await.unwrap(), platform)
}

/// A recovery reads the store, then the backend acts on it. A restart of a
/// STOPPED app that lands in between must not be undone: the backend would
/// act on the stale "stopped" and stop what the restart brought up, while
/// the store says RUNNING. The recovery reads under the app's turn and keeps
/// it until it is done, so the restart waits.
#[tokio::test(start_paused = true)]
async fn a_restart_during_recovery_is_not_stopped_again_by_a_stale_snapshot() {
    let h = Harness::new();
    let v1 = h.deploy_settled(&app("orders")).await;
    h.platform.stop(&app("orders")).await.unwrap();
    assert_eq!(h.fake.running(&app("orders")), None);

    // v1 STOPPED in the snapshot: keep it stopped.
    let (restarted, platform) = during_a_held_recovery(&h, false, |platform| async move {
        platform.restart(&app("orders")).await
    })
    .await;
    let restarted = restarted.unwrap();

    assert_eq!(restarted.id, v1.id);
    assert_eq!(restarted.status, S::Running);
    assert_eq!(
        h.fake.running(&app("orders")),
        Some(v1.id),
        "the backend runs what the store says is RUNNING"
    );
    let view = platform.status(&app("orders")).await.unwrap();
    assert_eq!(view.status, Some(S::Running), "{view:#?}");
}

/// The mirror of the test above: a stop that lands between the recovery's
/// snapshot (v1 RUNNING: run it) and the backend acting on it must not be
/// undone by the backend starting v1 again. Stops take no lane, so they
/// wait for the recovery itself.
#[tokio::test(start_paused = true)]
async fn a_stop_during_recovery_is_not_undone_by_a_stale_snapshot() {
    let h = Harness::new();
    let v1 = h.deploy_settled(&app("orders")).await;
    // v1 RUNNING in the snapshot: run it.
    let (stopped, _) = during_a_held_recovery(&h, true, |platform| async move {
        platform.stop(&app("orders")).await
    })
    .await;
    let stopped = stopped.unwrap();

    assert_eq!(stopped.len(), 1, "{stopped:#?}");
    assert_eq!(stopped[0].id, v1.id);
    assert_eq!(stopped[0].status, S::Stopped);
    assert_eq!(
        h.fake.running(&app("orders")),
        None,
        "the backend runs nothing: the store says STOPPED"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_refuses_new_work() {
    let h = Harness::new();
    h.platform.shutdown().await;
    let artifact = h.upload("com.example.Main").await;
    let err = h
        .platform
        .deploy(&app("orders"), artifact, config())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "shutting_down");
    assert!(h.store.is_empty());
}

/// The fake, except that `deploy_app` never returns.
struct Hanging(FakeOrchestrator);

#[async_trait]
impl RuntimeOrchestrator for Hanging {
    async fn deploy_app(&self, _: &DeployRequest) -> Result<AppStatus> {
        std::future::pending().await
    }
    async fn stop_app(&self, app: &AppRef) -> Result<()> {
        self.0.stop_app(app).await
    }
    async fn restart_app(&self, app: &AppRef) -> Result<AppStatus> {
        self.0.restart_app(app).await
    }
    async fn app_logs(&self, app: &AppRef, options: &LogOptions) -> Result<LogStream> {
        self.0.app_logs(app, options).await
    }
    async fn app_status(&self, app: &AppRef) -> Result<AppStatus> {
        self.0.app_status(app).await
    }
    async fn list_apps(&self, tenant: &TenantId) -> Result<Vec<AppSummary>> {
        self.0.list_apps(tenant).await
    }
    fn deploy_grace(&self) -> Duration {
        Duration::from_secs(7)
    }
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_never_answers_times_out_after_start_timeout_plus_grace() {
    let fake = FakeOrchestrator::new();
    let h = Harness::over(
        Arc::new(Hanging(fake.clone())),
        fake,
        PlatformOptions::default(),
    );
    let started = tokio::time::Instant::now();
    let d = h.deploy_settled(&app("orders")).await;
    assert_eq!(d.status, S::Failed);
    assert_eq!(started.elapsed(), Duration::from_secs(37));
    let reason = d.last_reason().unwrap();
    assert_eq!(reason.code(), "health_timeout");
    assert!(
        reason.to_string().contains("not RUNNING within 37s"),
        "{reason}"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_platform_stops_its_background_work() {
    let h = Harness::new();
    h.platform.start().await.unwrap();
    h.builder.set_delay(Duration::from_secs(3600));
    let d = h.deploy(&app("orders")).await;
    let weak = Arc::downgrade(&h.store);
    let Harness {
        platform, store, ..
    } = h;
    drop(platform);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The pipeline and the watcher let go of the store.
    assert_eq!(
        Arc::strong_count(&store),
        1,
        "only the test holds the store"
    );
    assert_eq!(
        cameleer_runtime::DeploymentStore::get(store.as_ref(), &d.id)
            .await
            .unwrap()
            .status,
        S::Building
    );
    drop(store);
    assert!(weak.upgrade().is_none());
}
