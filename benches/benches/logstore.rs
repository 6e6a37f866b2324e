//! The log stores side by side with ClickHouse's own client (see
//! `benches/scripts/logstore_vs_clickhouse.sh`):
//!
//! - `ingest`: lines of one deployment through the [`LogForwarder`] into a
//!   [`ClickHouseLogStore`] (core default batches, and 100k-line batches),
//!   against `clickhouse-client` inserting the same lines (JSONEachRow,
//!   one invocation) into the same schema, interleaved run by run; the
//!   ratio of throughputs (target ≥ 0.5).
//! - `query`: `STORED` lines (default 10 M) over 4 apps and 7 days in each
//!   store; a text search (a rare order number, newest 100) and a one-hour
//!   page (oldest 100) of one app, median and p99 of `QUERIES` runs.
//!
//! Runs a `clickhouse-server` of its own on loopback. `LINES` (default
//! 1,000,000) and `RUNS` (default 3) size the ingest. Under `cargo test
//! --all-targets` (no `--bench` argument) nothing runs.
#![deny(missing_docs)]

use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cameleer_logstore::testing::ClickHouseServer;
use cameleer_logstore::{ClickHouseLogStore, ClickHouseOptions, SqliteLogStore};
use cameleer_runtime::logs::{
    ForwarderOptions, ForwarderSources, LogForwarder, LogOrder, LogQuery, LogStore, StoredLine,
    from_nanos,
};
use cameleer_runtime::memory::MemoryDeploymentStore;
use cameleer_runtime::{
    AppRef, AppStatus, AppSummary, DeployRequest, DeploymentId, DeploymentStatus, LogLine,
    LogOptions, LogSource, LogStream, PlatformEvent, Result as RtResult, RuntimeOrchestrator,
    StatusEvent, TenantId,
};
use time::OffsetDateTime;

const T0: i64 = 1_767_225_600_000_000_000;
const HOUR: i64 = 3_600_000_000_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Line `n`: a Camel-like log line; one in 50 is a WARN with an order
/// number, one in 1,000 an ERROR.
fn text(n: usize) -> String {
    match n % 1000 {
        0 => format!(
            "ERROR [route-{}] o.a.c.p.DefaultErrorHandler - Failed delivery for exchange ID-{n}: java.lang.IllegalStateException: stock service timed out",
            n % 7
        ),
        k if k % 50 == 0 => format!(
            "WARN  [route-{}] o.a.c.Processor - retrying order-{n} (attempt {})",
            n % 7,
            n % 3 + 1
        ),
        _ => format!(
            "INFO  [route-{}] o.a.c.Processor - processed order-{n} in {} ms",
            n % 7,
            n % 97
        ),
    }
}

/// A backend with one deployment whose output is `lines` pre-made lines.
struct Canned {
    lines: Arc<Vec<LogLine>>,
}

#[async_trait]
impl RuntimeOrchestrator for Canned {
    async fn deploy_app(&self, _: &DeployRequest) -> RtResult<AppStatus> {
        Err(cameleer_runtime::Error::Unsupported("bench"))
    }
    async fn stop_app(&self, _: &AppRef) -> RtResult<()> {
        Ok(())
    }
    async fn restart_app(&self, _: &AppRef) -> RtResult<AppStatus> {
        Err(cameleer_runtime::Error::Unsupported("bench"))
    }
    async fn app_logs(&self, _: &AppRef, _: &LogOptions) -> RtResult<LogStream> {
        Err(cameleer_runtime::Error::Unsupported("bench"))
    }
    async fn deployment_logs(
        &self,
        _: &AppRef,
        _: &DeploymentId,
        options: &LogOptions,
    ) -> RtResult<LogStream> {
        let lines = self.lines.clone();
        let since = options.since.map(OffsetDateTime::from);
        // Skip by time without copying the vector.
        let start = since.map_or(0, |s| lines.partition_point(|l| l.ts < s));
        let iter = (start..lines.len()).map(move |i| Ok(lines[i].clone()));
        Ok(Box::pin(futures::stream::iter(iter)))
    }
    async fn app_status(&self, app: &AppRef) -> RtResult<AppStatus> {
        Err(cameleer_runtime::Error::not_found("app", app))
    }
    async fn list_apps(&self, _: &TenantId) -> RtResult<Vec<AppSummary>> {
        Ok(Vec::new())
    }
}

fn app(name: &str) -> AppRef {
    AppRef::parse("acme", name, "prod").unwrap()
}

/// Ours: `lines` through a forwarder into a fresh table; lines per second.
async fn ours(server: &ClickHouseServer, db: &str, lines: Arc<Vec<LogLine>>, batch: usize) -> f64 {
    let store = Arc::new(connect(server, db).await);
    let orders = app("orders");
    let deployment = DeploymentId::new_random();
    let sources = ForwarderSources {
        orchestrator: Arc::new(Canned {
            lines: lines.clone(),
        }),
        deployments: Arc::new(MemoryDeploymentStore::new()),
    };
    let event = PlatformEvent::Status(StatusEvent {
        deployment,
        app: orders,
        version: 1,
        status: DeploymentStatus::Running,
        reason: None,
        at: OffsetDateTime::now_utc(),
    });
    let events = futures::stream::iter([event]).chain(futures::stream::pending());
    let options = ForwarderOptions {
        batch_lines: batch,
        // Room for the whole run: the canned source is faster than any
        // store, and a forwarder whose buffer fills counts the overflow
        // lost (by design), which would end the measurement early.
        buffer_lines: lines.len().max(batch * 2),
        buffer_bytes: 1 << 30,
        ..ForwarderOptions::default()
    };
    let start = Instant::now();
    let forwarder = LogForwarder::start_with(events, sources, store, options);
    // Until every line is stored or counted lost: never wait forever.
    while {
        let s = forwarder.stats();
        s.lines_stored + s.lines_lost < lines.len() as u64
    } {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed();
    let stats = forwarder.stats();
    assert_eq!(stats.lines_lost, 0, "{stats:?}");
    forwarder.kill();
    lines.len() as f64 / took.as_secs_f64()
}

use futures::StreamExt;

async fn connect(server: &ClickHouseServer, db: &str) -> ClickHouseLogStore {
    ClickHouseLogStore::connect(ClickHouseOptions::from_url(&server.store_url(db)).unwrap())
        .await
        .unwrap()
}

/// The JSONEachRow file of `lines` (what our store sends, all at once).
fn json_rows(lines: &[LogLine], deployment: DeploymentId) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len() * 200);
    for (seq, l) in lines.iter().enumerate() {
        let row = serde_json::json!({
            "tenant": "acme", "app": "orders", "env": "prod",
            "deployment": deployment.as_uuid().simple().to_string(),
            "version": 1, "ts": cameleer_runtime::logs::nanos(l.ts),
            "stream": 0, "seq": seq, "line": l.line,
        });
        out.extend_from_slice(row.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// The peer: `clickhouse-client` inserting `rows` into a fresh table of the
/// same schema; lines per second.
async fn peer(server: &ClickHouseServer, db: &str, rows: &[u8], n: usize) -> f64 {
    connect(server, db).await; // the same schema
    let start = Instant::now();
    let mut child = tokio::process::Command::new("clickhouse-client")
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &server.tcp_port().to_string(),
        ])
        .arg("--query")
        .arg(format!("INSERT INTO {db}.log_lines FORMAT JSONEachRow"))
        .stdin(Stdio::piped())
        .spawn()
        .expect("clickhouse-client");
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(rows).await.unwrap();
    drop(stdin);
    assert!(child.wait().await.unwrap().success());
    n as f64 / start.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn ingest(server: &ClickHouseServer) {
    let n = env_usize("LINES", 1_000_000);
    let runs = env_usize("RUNS", 3);
    let lines: Arc<Vec<LogLine>> = Arc::new(
        (0..n)
            .map(|i| LogLine {
                ts: from_nanos(T0 + i as i64 * 1_000),
                stream: LogSource::Stdout,
                line: text(i),
                instance: None,
            })
            .collect(),
    );
    let rows = json_rows(&lines, DeploymentId::new_random());
    let default_batch = ForwarderOptions::default().batch_lines;
    println!(
        "ingest: {n} lines ({} MB as JSONEachRow), {runs} interleaved runs",
        rows.len() >> 20
    );
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        c.push(peer(server, &format!("peer{run}"), &rows, n).await);
        a.push(ours(server, &format!("ours{run}"), lines.clone(), default_batch).await);
        b.push(ours(server, &format!("big{run}"), lines.clone(), 100_000).await);
        println!(
            "  run {run}: clickhouse-client {:.0}/s, forwarder {:.0}/s (batches of {default_batch}), {:.0}/s (batches of 100k)",
            c[run], a[run], b[run]
        );
    }
    let (a, b, c) = (median(&mut a), median(&mut b), median(&mut c));
    println!("ingest median: clickhouse-client {c:.0} lines/s");
    println!(
        "  forwarder, batches of {default_batch}: {a:.0} lines/s, ratio {:.2}",
        a / c
    );
    println!(
        "  forwarder, batches of 100k: {b:.0} lines/s, ratio {:.2}",
        b / c
    );
}

/// `STORED` lines over apps a..d, 7 days: line i of app k at
/// `T0 + i * 7 days / per_app`.
fn stored_line(i: usize, apps: &[(AppRef, DeploymentId)], per_app: usize) -> StoredLine {
    let (app, deployment) = &apps[i % apps.len()];
    let k = i / apps.len();
    let span = 7 * 24 * HOUR;
    StoredLine {
        app: app.clone(),
        deployment: *deployment,
        version: 1,
        timestamp: from_nanos(T0 + (k as i128 * span as i128 / per_app as i128) as i64),
        stream: if k.is_multiple_of(1000) {
            LogSource::Stderr
        } else {
            LogSource::Stdout
        },
        seq: k as u64,
        line: text(i),
    }
}

async fn load(store: &dyn LogStore, total: usize, apps: &[(AppRef, DeploymentId)]) -> Duration {
    let start = Instant::now();
    let per_app = total / apps.len();
    let batch = 100_000;
    let mut i = 0;
    while i < total {
        let end = (i + batch).min(total);
        let lines: Vec<StoredLine> = (i..end).map(|j| stored_line(j, apps, per_app)).collect();
        store.append(&lines).await.unwrap();
        i = end;
    }
    start.elapsed()
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn timed(store: &dyn LogStore, queries: &[LogQuery]) -> (Duration, Duration, usize) {
    let mut took = Vec::new();
    let mut found = 0;
    for q in queries {
        let start = Instant::now();
        let page = store.query(q).await.unwrap();
        took.push(start.elapsed());
        found += page.lines.len();
    }
    (pct(&mut took, 0.5), pct(&mut took, 0.99), found)
}

async fn query(server: &ClickHouseServer) {
    let total = env_usize("STORED", 10_000_000);
    let n = env_usize("QUERIES", 50);
    let apps: Vec<(AppRef, DeploymentId)> = ["orders", "billing", "stock", "shipping"]
        .iter()
        .map(|a| (app(a), DeploymentId::new_random()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteLogStore::open(dir.path().join("logs.sqlite")).unwrap();
    let clickhouse = connect(server, "query").await;
    let stores: [(&str, &dyn LogStore); 2] = [("clickhouse", &clickhouse), ("sqlite", &sqlite)];
    for (name, store) in stores {
        let took = load(store, total, &apps).await;
        println!(
            "query: loaded {total} lines into {name} in {:.1} s",
            took.as_secs_f64()
        );
    }
    // A rare order number (one WARN line) of app `orders`, and one-hour
    // pages at varied times.
    let per_app = total / apps.len();
    let search: Vec<LogQuery> = (0..n)
        .map(|k| {
            let mut q = LogQuery::new(apps[0].0.clone());
            let line = (k * 7919 * 50 * 4) % total / 200 * 200; // a WARN line of app 0
            q.text = Some(format!("order-{line} "));
            q.limit = 100;
            q
        })
        .collect();
    let pages: Vec<LogQuery> = (0..n)
        .map(|k| {
            let mut q = LogQuery::new(apps[0].0.clone());
            let from = T0 + (k as i64 * 13 % 160) * HOUR;
            q.from = Some(from_nanos(from));
            q.to = Some(from_nanos(from + HOUR));
            q.order = LogOrder::OldestFirst;
            q.limit = 100;
            q
        })
        .collect();
    let _ = per_app;
    for (name, store) in stores {
        let (m, p99, found) = timed(store, &search).await;
        println!(
            "query {name}: text search median {:.1} ms, p99 {:.1} ms ({found} lines found in {n} queries)",
            m.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        let (m, p99, found) = timed(store, &pages).await;
        println!(
            "query {name}: one-hour page median {:.1} ms, p99 {:.1} ms ({found} lines in {n} pages)",
            m.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("logstore: skipped (run it with cargo bench)");
        return ExitCode::SUCCESS;
    }
    let what: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| matches!(*a, "ingest" | "query"))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let server = match ClickHouseServer::start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("logstore: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        println!(
            "clickhouse-server {}",
            connect(&server, "meta")
                .await
                .server_version()
                .await
                .unwrap()
        );
        if what.is_empty() || what.contains(&"ingest") {
            ingest(&server).await;
        }
        if what.is_empty() || what.contains(&"query") {
            query(&server).await;
        }
    });
    ExitCode::SUCCESS
}
