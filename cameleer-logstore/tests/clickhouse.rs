//! The log store suite against a real clickhouse-server that the test
//! starts on loopback (one per test binary, a database per test).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use cameleer_logstore::testing::ClickHouseServer;
use cameleer_logstore::{ClickHouseLogStore, ClickHouseOptions};
use cameleer_runtime::logs::{LogQuery, LogStore};
use cameleer_runtime::testkit::logs::line;
use cameleer_runtime::{AppRef, DeploymentId};

fn server() -> &'static ClickHouseServer {
    static SERVER: OnceLock<ClickHouseServer> = OnceLock::new();
    SERVER.get_or_init(|| ClickHouseServer::start().expect("clickhouse-server must start"))
}

/// A database of its own for each test.
fn fresh_db() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

async fn fresh() -> ClickHouseLogStore {
    connect(&fresh_db()).await
}

async fn connect(db: &str) -> ClickHouseLogStore {
    let options = ClickHouseOptions::from_url(&server().store_url(db)).unwrap();
    ClickHouseLogStore::connect(options).await.unwrap()
}

cameleer_runtime::log_store_conformance_tests!(fresh);

#[tokio::test]
async fn the_server_is_at_least_the_oldest_supported() {
    let store = fresh().await;
    let v = store.server_version().await.unwrap();
    let major_minor: Vec<u32> = v.split('.').take(2).map(|p| p.parse().unwrap()).collect();
    assert!(major_minor >= vec![18, 16], "{v}");
}

#[tokio::test]
async fn retention_drops_whole_old_months() {
    let store = fresh().await;
    let app = AppRef::parse("acme", "orders", "prod").unwrap();
    let d = DeploymentId::new_random();
    // T0 is 2026-01-01; 40 days later is February.
    let day = 86_400_000_000_000i64;
    store
        .append(&[
            line(&app, d, 1, 0, 0, "january"),
            line(&app, d, 1, 1, 40 * day, "february"),
        ])
        .await
        .unwrap();
    let feb = cameleer_runtime::logs::from_nanos(1_767_225_600_000_000_000 + 40 * day);
    assert_eq!(store.drop_months_before(feb).await.unwrap(), 1);
    let left = store.query(&LogQuery::new(app)).await.unwrap().lines;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].line, "february");
}

#[tokio::test]
async fn an_unreachable_server_is_a_typed_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = ClickHouseOptions::from_url(&format!("clickhouse://127.0.0.1:{port}/x")).unwrap();
    let e = ClickHouseLogStore::connect(options).await.unwrap_err();
    assert_eq!(e.code(), "log_store_unavailable");
    assert!(e.to_string().contains(&port.to_string()), "{e}");
}

#[tokio::test]
async fn a_restarted_writer_stores_no_line_twice() {
    let db = fresh_db();
    let before = connect(&db).await;
    let app = AppRef::parse("acme", "orders", "prod").unwrap();
    let d = DeploymentId::new_random();
    let batch = |from: u64, to: u64| -> Vec<_> {
        (from..to)
            .map(|i| line(&app, d, 1, i, i as i64, "x"))
            .collect()
    };
    // The old writer's last batch lands after the new one read where the
    // store ends (seq 49); the new one knows nothing of what it wrote.
    before.append(&batch(0, 50)).await.unwrap();
    let after = connect(&db).await;
    before.append(&batch(50, 100)).await.unwrap();
    for (from, to) in [(50, 60), (60, 70), (70, 130), (130, 140)] {
        after.append(&batch(from, to)).await.unwrap();
    }
    // And the old writer, still running, retries a batch it thinks failed.
    before.append(&batch(50, 100)).await.unwrap();
    let mut q = LogQuery::new(app);
    q.limit = 1000;
    let seqs: Vec<u64> = after
        .query(&q)
        .await
        .unwrap()
        .lines
        .iter()
        .map(|l| l.seq)
        .rev()
        .collect();
    assert_eq!(seqs, (0..140).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_table_made_before_instances_gets_the_column_and_keeps_its_lines() {
    let db = fresh_db();
    let sql = |q: String| {
        let out = std::process::Command::new("clickhouse-client")
            .args(["--host", "127.0.0.1", "--port"])
            .arg(server().tcp_port().to_string())
            .arg("--query")
            .arg(&q)
            .output()
            .expect("clickhouse-client runs");
        assert!(
            out.status.success(),
            "{q}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The table as the first release made it, with one line in it.
    sql(format!("CREATE DATABASE {db}"));
    sql(format!(
        "CREATE TABLE {db}.log_lines (tenant String, app String, env String, \
         deployment String, version UInt64, ts Int64, stream UInt8, seq UInt64, line String) \
         ENGINE = ReplacingMergeTree() \
         PARTITION BY (tenant, toYYYYMM(toDateTime(intDiv(ts, 1000000000)))) \
         ORDER BY (tenant, app, env, ts, deployment, seq)"
    ));
    let app = AppRef::parse("acme", "orders", "prod").unwrap();
    let d = DeploymentId::new_random();
    let old = line(&app, d, 1, 0, 0, "before");
    sql(format!(
        "INSERT INTO {db}.log_lines VALUES ('acme', 'orders', 'prod', '{}', 1, {}, 0, 0, 'before')",
        d.as_uuid().simple(),
        old.timestamp_nanos()
    ));

    let store = connect(&db).await;
    cameleer_runtime::testkit::logs::check_upgraded_store(&store, &app, d).await;
}
