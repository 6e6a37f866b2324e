//! The log forwarder over the platform's fakes: every line stored once,
//! across stops, redeploys, kills and a failing store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cameleer_runtime::logs::{
    ForwarderOptions, LogForwarder, LogOrder, LogQuery, LogStore, MemoryLogStore, StoredLine,
};
use cameleer_runtime::testkit::logs::{FlakyLogStore, all_pages};
use cameleer_runtime::testkit::{FakeImageBuilder, FakeProgram};
use cameleer_runtime::{
    AppRef, BuildSpec, Deployment, DeploymentId, DeploymentStatus, LogOptions, PlatformEvent,
    RuntimeOrchestrator, Sha256Digest,
};
use common::{Harness, app, config};
use futures::StreamExt;

/// Quick batches and re-reads, so tests see lines within milliseconds.
fn options() -> ForwarderOptions {
    ForwarderOptions {
        batch_lines: 7,
        flush_interval: Duration::from_millis(20),
        retry_min: Duration::from_millis(10),
        retry_max: Duration::from_millis(50),
        reopen_delay: Duration::from_millis(30),
        ..ForwarderOptions::default()
    }
}

/// Uploads a JAR and makes versions 1..=3 of `app` log a line every 2 ms.
async fn chatty(h: &Harness, app: &AppRef) -> Sha256Digest {
    let artifact = h.upload("com.example.Main").await;
    for version in 1..=3 {
        let image = FakeImageBuilder::image_for(&BuildSpec {
            app: app.clone(),
            deployment: DeploymentId::new_random(),
            version,
            artifact,
            artifact_size: 0,
        });
        h.fake.register_image(
            &image,
            FakeProgram::Logging {
                interval: Duration::from_millis(2),
            },
        );
    }
    artifact
}

async fn deploy(h: &Harness, app: &AppRef, artifact: Sha256Digest) -> Deployment {
    let d = h.platform.deploy(app, artifact, config()).await.unwrap();
    let d = h.settled(&d.id).await;
    assert_eq!(d.status, DeploymentStatus::Running);
    d
}

/// What the backend holds of `d`, in order.
async fn backend_lines(h: &Harness, d: &Deployment) -> Vec<String> {
    let lines = h
        .fake
        .deployment_logs(&d.app, &d.id, &LogOptions::default())
        .await
        .unwrap();
    let lines: Vec<_> = lines.collect().await;
    lines.into_iter().map(|l| l.unwrap().line).collect()
}

/// What the store holds of `d`, oldest first.
async fn stored(store: &dyn LogStore, d: &Deployment) -> Vec<StoredLine> {
    let mut q = LogQuery::new(d.app.clone());
    q.deployment = Some(d.id);
    q.order = LogOrder::OldestFirst;
    q.limit = 1000;
    all_pages(store, &q).await
}

/// Polls until `check` holds (10 s at most).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

/// The store has exactly the backend's lines of `d`, in order, numbered
/// 0.. without gaps or repeats.
async fn assert_complete(h: &Harness, store: &dyn LogStore, d: &Deployment) {
    let want = backend_lines(h, d).await;
    assert!(want.len() > 10, "the app logged: {}", want.len());
    let got = stored(store, d).await;
    let seqs: Vec<u64> = got.iter().map(|l| l.seq).collect();
    assert_eq!(
        seqs,
        (0..want.len() as u64).collect::<Vec<_>>(),
        "numbered once each"
    );
    let texts: Vec<String> = got.into_iter().map(|l| l.line).collect();
    assert_eq!(texts, want);
}

async fn stopped_and_drained(
    h: &Harness,
    forwarder: &LogForwarder,
    store: &dyn LogStore,
    d: &Deployment,
) {
    h.platform.stop(&d.app).await.unwrap();
    eventually("the follower ends", || async {
        forwarder.stats().following == 0
    })
    .await;
    let n = backend_lines(h, d).await.len();
    eventually("every line is stored", || async {
        stored(store, d).await.len() == n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_deployments_lines_are_stored_once_including_its_last_ones() {
    let h = Harness::new();
    let orders = app("orders");
    let artifact = chatty(&h, &orders).await;
    let store = Arc::new(MemoryLogStore::new());
    let forwarder = LogForwarder::start(&h.platform, store.clone(), options());
    let d = deploy(&h, &orders, artifact).await;
    eventually("lines arrive", || async {
        stored(&*store, &d).await.len() > 30
    })
    .await;
    stopped_and_drained(&h, &forwarder, &*store, &d).await;
    assert_complete(&h, &*store, &d).await;
    let last = stored(&*store, &d).await.pop().unwrap();
    assert_eq!(
        last.line, "[app] stopping",
        "the last line after the stop is kept"
    );
    let stats = forwarder.stats();
    assert_eq!(stats.lines_lost, 0);
    assert_eq!(stats.lines_stored as usize, store.len());
    forwarder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeployed_versions_lines_stay_with_it() {
    let h = Harness::new();
    let orders = app("orders");
    let artifact = chatty(&h, &orders).await;
    let store = Arc::new(MemoryLogStore::new());
    let forwarder = LogForwarder::start(&h.platform, store.clone(), options());
    let v1 = deploy(&h, &orders, artifact).await;
    eventually("v1 lines", || async {
        stored(&*store, &v1).await.len() > 20
    })
    .await;
    let v2 = deploy(&h, &orders, artifact).await;
    eventually("v2 lines", || async {
        stored(&*store, &v2).await.len() > 20
    })
    .await;
    stopped_and_drained(&h, &forwarder, &*store, &v2).await;
    assert_complete(&h, &*store, &v1).await;
    assert_complete(&h, &*store, &v2).await;
    let mut q = LogQuery::new(orders);
    q.version = Some(1);
    q.limit = 10_000;
    let v1_lines = store.query(&q).await.unwrap().lines;
    assert!(!v1_lines.is_empty());
    assert!(
        v1_lines
            .iter()
            .all(|l| l.deployment == v1.id && l.version == 1)
    );
    forwarder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_killed_mid_batch_is_resumed_without_loss_or_repeats() {
    let h = Harness::new();
    let orders = app("orders");
    let artifact = chatty(&h, &orders).await;
    let store = Arc::new(FlakyLogStore::new(MemoryLogStore::new()));
    let first = LogForwarder::start(&h.platform, store.clone(), options());
    let d = deploy(&h, &orders, artifact).await;
    eventually("some batches stored", || async { store.appends() >= 3 }).await;
    // The store stalls: a batch is in flight and more wait in memory when
    // the controller dies.
    store.close_gate();
    let before = store.appends();
    eventually("a batch is in flight", || async {
        first.stats().buffered_lines > 7
    })
    .await;
    first.kill();
    let held = first.stats().buffered_lines;
    assert!(held > 0, "the kill lost lines held in memory");
    assert_eq!(store.appends(), before, "the stalled batch had not landed");
    // The restarted controller's store half-writes its first batches; the
    // stalled write of the dead one lands late.
    store.set_half_then_fail(true);
    store.open_gate();
    let second = LogForwarder::start(&h.platform, store.clone(), options());
    eventually("the second forwarder hits the half writes", || async {
        store.failures() >= 2
    })
    .await;
    store.set_half_then_fail(false);
    stopped_and_drained(&h, &second, &*store, &d).await;
    assert_complete(&h, &*store, &d).await;
    assert_eq!(second.stats().lines_lost, 0);
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_down_longer_than_the_buffer_loses_lines_counted_and_slows_nothing() {
    let h = Harness::new();
    let orders = app("orders");
    let artifact = chatty(&h, &orders).await;
    let store = Arc::new(FlakyLogStore::new(MemoryLogStore::new()));
    let small = ForwarderOptions {
        buffer_lines: 20,
        ..options()
    };
    let forwarder = LogForwarder::start(&h.platform, store.clone(), small);
    let d = deploy(&h, &orders, artifact).await;
    eventually("lines stored", || async { store.inner().len() > 10 }).await;
    // Down, and then stalled forever: neither the app nor the API waits.
    store.set_down(true);
    eventually("lines are lost, and counted", || async {
        forwarder.stats().lines_lost > 50
    })
    .await;
    store.close_gate();
    let written = backend_lines(&h, &d).await.len();
    eventually("the app keeps writing", || async {
        backend_lines(&h, &d).await.len() > written + 50
    })
    .await;
    let v2 = deploy(&h, &orders, artifact).await;
    assert_eq!(
        h.platform
            .status(&orders)
            .await
            .unwrap()
            .deployment
            .map(|d| d.id),
        Some(v2.id)
    );
    store.set_down(false);
    store.open_gate();
    stopped_and_drained_lossy(&h, &forwarder, &*store, &v2).await;
    let stats = forwarder.stats();
    assert!(
        stats.store_failures > 0 && stats.last_store_error.is_some(),
        "{stats:?}"
    );
    let lost_v1 = stats.lost.get(&d.id).copied().unwrap_or(0);
    assert!(lost_v1 > 0, "{stats:?}");
    assert_eq!(stats.lines_lost, stats.lost.values().sum::<u64>());
    // Every line of v1 is either stored (once) or counted as lost.
    let got = stored(&*store, &d).await;
    let seqs: std::collections::BTreeSet<u64> = got.iter().map(|l| l.seq).collect();
    assert_eq!(seqs.len(), got.len(), "no line twice");
    assert_eq!(
        got.len() as u64 + lost_v1,
        backend_lines(&h, &d).await.len() as u64
    );
    forwarder.shutdown().await;
}

/// Like [`stopped_and_drained`] for a forwarder that lost lines: waits
/// until nothing is held and the follower ended.
async fn stopped_and_drained_lossy(
    h: &Harness,
    forwarder: &LogForwarder,
    _store: &dyn LogStore,
    d: &Deployment,
) {
    h.platform.stop(&d.app).await.unwrap();
    eventually("the follower ends and the buffer empties", || async {
        let s = forwarder.stats();
        s.following == 0 && s.buffered_lines == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_events_are_caught_up_from_the_deployment_store() {
    let h = Harness::new();
    let orders = app("orders");
    let artifact = chatty(&h, &orders).await;
    let store = Arc::new(MemoryLogStore::new());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<PlatformEvent>();
    let events =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    let forwarder =
        LogForwarder::start_with(events, h.platform.log_sources(), store.clone(), options());
    let d = deploy(&h, &orders, artifact).await;
    // No event said so: nothing is followed until the forwarder learns it
    // missed some.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(forwarder.stats().following, 0);
    tx.send(PlatformEvent::Lagged { missed: 3 }).unwrap();
    eventually("it follows after the catch-up", || async {
        stored(&*store, &d).await.len() > 10
    })
    .await;
    assert_eq!(forwarder.stats().events_missed, 3);
    forwarder.shutdown().await;
}
