//! The log stores side by side with ClickHouse's own client (see
//! `benches/scripts/logstore_vs_clickhouse.sh`):
//!
//! - `ingest`: lines of one deployment through the [`LogForwarder`] into a
//!   [`ClickHouseLogStore`] (batches of `BATCHES`, a comma-separated list,
//!   default the core's default), against `clickhouse-client` inserting
//!   the same lines (one invocation, as JSONEachRow and as TabSeparated)
//!   into the same schema, interleaved run by run; the ratio of medians
//!   to each (target ≥ 0.5 of the faster).
//! - `query`: `STORED` lines (default 10 M) over 4 apps and 7 days loaded
//!   into each store through `append` (100k-line batches); a text search
//!   (a rare order number, newest 100) and a one-hour page (oldest 100) of
//!   one app, each query on both stores in turn, median and p99 of
//!   `QUERIES` (default 50).
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

/// `lines` as the peer gets them: JSONEachRow, or TabSeparated.
fn peer_rows(lines: &[LogLine], deployment: DeploymentId, format: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len() * 200);
    let d = deployment.as_uuid().simple().to_string();
    for (seq, l) in lines.iter().enumerate() {
        let ts = cameleer_runtime::logs::nanos(l.ts);
        if format == "JSONEachRow" {
            let row = serde_json::json!({
                "tenant": "acme", "app": "orders", "env": "prod",
                "deployment": d, "version": 1, "ts": ts,
                "stream": 0, "seq": seq, "line": l.line, "instance": l.instance,
            });
            out.extend_from_slice(row.to_string().as_bytes());
        } else {
            // The bench's lines have no tab, newline or backslash to escape.
            let instance = l.instance.map_or("\\N".to_owned(), |i| i.to_string());
            let row = format!(
                "acme\torders\tprod\t{d}\t1\t{ts}\t0\t{seq}\t{}\t{instance}",
                l.line
            );
            out.extend_from_slice(row.as_bytes());
        }
        out.push(b'\n');
    }
    out
}

/// The peer: `clickhouse-client` inserting `rows` (in `format`) into a
/// fresh table of the same schema; lines per second.
async fn peer(server: &ClickHouseServer, db: &str, rows: &[u8], format: &str, n: usize) -> f64 {
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
        .arg(format!("INSERT INTO {db}.log_lines FORMAT {format}"))
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
    let default_batch = ForwarderOptions::default().batch_lines;
    let batches: Vec<usize> = std::env::var("BATCHES")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|b| b.trim().replace('_', "").parse().ok())
                .collect()
        })
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![default_batch]);
    let lines: Arc<Vec<LogLine>> = Arc::new(
        (0..n)
            .map(|i| LogLine {
                ts: from_nanos(T0 + i as i64 * 1_000),
                stream: LogSource::Stdout,
                line: text(i),
                instance: Some((i % 2) as u32),
            })
            .collect(),
    );
    let formats = ["JSONEachRow", "TabSeparated"];
    let peer_rows: Vec<Vec<u8>> = formats
        .iter()
        .map(|f| peer_rows(&lines, DeploymentId::new_random(), f))
        .collect();
    println!(
        "ingest: {n} lines ({} MB as JSONEachRow), {runs} interleaved runs, forwarder batches {batches:?} (core default {default_batch})",
        peer_rows[0].len() >> 20
    );
    let mut peers: Vec<Vec<f64>> = vec![Vec::new(); formats.len()];
    let mut ours_by: Vec<Vec<f64>> = vec![Vec::new(); batches.len()];
    for run in 0..runs {
        let mut line = format!("  run {run}, load {}:", load_avg());
        for (k, f) in formats.iter().enumerate() {
            let r = peer(server, &format!("peer{k}_{run}"), &peer_rows[k], f, n).await;
            peers[k].push(r);
            line.push_str(&format!(" clickhouse-client {f} {r:.0}/s,"));
        }
        for (k, b) in batches.iter().enumerate() {
            let r = ours(server, &format!("ours{k}_{run}"), lines.clone(), *b).await;
            ours_by[k].push(r);
            line.push_str(&format!(" forwarder {b} {r:.0}/s,"));
        }
        println!("{}", line.trim_end_matches(','));
    }
    let peers: Vec<f64> = peers.iter_mut().map(|v| median(v)).collect();
    let best = peers.iter().copied().fold(0.0, f64::max);
    println!("ingest medians, load {}:", load_avg());
    for (f, p) in formats.iter().zip(&peers) {
        println!("  clickhouse-client {f}: {p:.0} lines/s");
    }
    for (b, v) in batches.iter().zip(ours_by.iter_mut()) {
        let r = median(v);
        println!(
            "  forwarder, batches of {b}{}: {r:.0} lines/s, ratio {:.2} (JSONEachRow client), {:.2} (fastest client)",
            if *b == default_batch {
                " (default)"
            } else {
                ""
            },
            r / peers[0],
            r / best
        );
    }
}

/// The 1-minute load average, for the record.
fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
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
        instance: Some((k % 2) as u32),
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

/// Runs each query on each store in turn (so both see the same load);
/// per store, the median and p99 latency and the lines found.
async fn timed(
    stores: &[(&str, &dyn LogStore)],
    queries: &[LogQuery],
) -> Vec<(Duration, Duration, usize)> {
    let mut took = vec![Vec::new(); stores.len()];
    let mut found = vec![0; stores.len()];
    for q in queries {
        for (k, (_, store)) in stores.iter().enumerate() {
            let start = Instant::now();
            let page = store.query(q).await.unwrap();
            took[k].push(start.elapsed());
            found[k] += page.lines.len();
        }
    }
    took.iter_mut()
        .zip(found)
        .map(|(t, f)| (pct(t, 0.5), pct(t, 0.99), f))
        .collect()
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
        let load_before = load_avg();
        let took = load(store, total, &apps).await;
        println!(
            "query: loaded {total} lines into {name} in {:.1} s ({:.0} lines/s; load {load_before} before, {} after)",
            took.as_secs_f64(),
            total as f64 / took.as_secs_f64(),
            load_avg()
        );
    }
    let bytes: u64 = std::fs::read_dir(dir.path())
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    println!(
        "query: the SQLite file (with its WAL) holds {} MB",
        bytes >> 20
    );
    // A rare order number (one WARN line) of app `orders`, and one-hour
    // pages at varied times.
    let search: Vec<LogQuery> = (0..n)
        .map(|k| {
            let mut q = LogQuery::new(apps[0].0.clone());
            // A WARN line of app 0: a multiple of 200 (so of 4 and 50)
            // that is not one of 1,000 (an ERROR line, without an order).
            let line = (k * 7919) % (total / 1000).max(1) * 1000 + 200 * (1 + k % 4);
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
    for (what, queries) in [("text search", &search), ("one-hour page", &pages)] {
        let load_before = load_avg();
        let results = timed(&stores, queries).await;
        for ((name, _), (m, p99, found)) in stores.iter().zip(results) {
            println!(
                "query {name}: {what} median {:.1} ms, p99 {:.1} ms ({found} lines in {n} queries, load {load_before})",
                m.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
        }
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
