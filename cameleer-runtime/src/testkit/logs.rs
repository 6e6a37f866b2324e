//! The suite every [`LogStore`] passes, and [`FlakyLogStore`] for failure
//! tests.
//!
//! Run the suite with [`log_store_conformance_tests!`](crate::log_store_conformance_tests)
//! over an async function that returns a fresh, empty store.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::logs::{
    LogCursor, LogOrder, LogPage, LogQuery, LogStore, LogStoreError, ResumePoint, StoredLine,
};
use crate::{AppRef, DeploymentId, LogSource};

/// Generates one `#[tokio::test]` per check of the suite, each on a fresh
/// store from `$make` (an async fn returning a `LogStore`).
///
/// ```ignore
/// async fn fresh() -> MemoryLogStore { MemoryLogStore::new() }
/// cameleer_runtime::log_store_conformance_tests!(fresh);
/// ```
#[macro_export]
macro_rules! log_store_conformance_tests {
    ($make:path) => {
        $crate::log_store_conformance_tests!(@each $make,
            lines_come_back_whole_in_both_orders,
            pages_cover_every_line_once,
            appending_twice_stores_once,
            batches_after_an_overlap_store_each_line_once,
            the_resume_point_is_where_the_store_ends,
            filters_narrow_the_lines,
            text_matches_substrings_ignoring_case,
            apps_envs_and_tenants_stay_apart,
            bad_queries_are_refused_with_their_code
        );
    };
    (@each $make:path, $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let store = $make().await;
                $crate::testkit::logs::$check(&store).await;
            }
        )+
    };
}

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

/// A line of `app` at `T0 + ns` nanoseconds.
pub fn line(
    app: &AppRef,
    deployment: DeploymentId,
    version: u64,
    seq: u64,
    ns: i64,
    text: &str,
) -> StoredLine {
    StoredLine {
        app: app.clone(),
        deployment,
        version,
        timestamp: crate::logs::from_nanos(T0 + ns),
        stream: if seq % 3 == 2 {
            LogSource::Stderr
        } else {
            LogSource::Stdout
        },
        seq,
        // Some lines with an instance, some without: both round-trip.
        instance: (!seq.is_multiple_of(4)).then_some((seq % 3) as u32),
        line: text.to_owned(),
    }
}

/// For a store opened over data an older release wrote: `store` holds
/// `before`, a line of `app` at seq 0 with no instance (the old schema had
/// none); appends seq 1 with its instance and checks both read back, oldest
/// first, with the instance only on the new one.
pub async fn check_upgraded_store(store: &dyn LogStore, app: &AppRef, deployment: DeploymentId) {
    let new = line(app, deployment, 1, 1, 1000, "after");
    assert_eq!(new.instance, Some(1));
    store.append(std::slice::from_ref(&new)).await.unwrap();
    let mut q = LogQuery::new(app.clone());
    q.order = LogOrder::OldestFirst;
    let page = store.query(&q).await.unwrap();
    let got: Vec<_> = page
        .lines
        .iter()
        .map(|l| (l.line.as_str(), l.instance))
        .collect();
    assert_eq!(got, [("before", None), ("after", Some(1))]);
}

fn orders() -> AppRef {
    AppRef::parse("acme", "orders", "prod").unwrap()
}

/// Every page of `query`, following cursors.
pub async fn all_pages(store: &dyn LogStore, query: &LogQuery) -> Vec<StoredLine> {
    let mut q = query.clone();
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let LogPage { lines, next } = store.query(&q).await.unwrap();
        assert!(lines.len() <= q.limit, "a page is at most its limit");
        out.extend(lines);
        match next {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
    panic!("pages never ended");
}

fn texts(lines: &[StoredLine]) -> Vec<&str> {
    lines.iter().map(|l| l.line.as_str()).collect()
}

/// Two deployments of one app: v1 wrote `a0..a9` (times 0..9 ms), v2
/// `b0..b9` (times 5..14 ms, interleaved with v1's).
async fn two_versions(store: &dyn LogStore) -> (DeploymentId, DeploymentId, Vec<StoredLine>) {
    let (d1, d2) = (DeploymentId::new_random(), DeploymentId::new_random());
    let app = orders();
    let mut all = Vec::new();
    for i in 0..10u64 {
        all.push(line(&app, d1, 1, i, i as i64 * 1_000_000, &format!("a{i}")));
        all.push(line(
            &app,
            d2,
            2,
            i,
            (i as i64 + 5) * 1_000_000,
            &format!("b{i}"),
        ));
    }
    store.append(&all).await.unwrap();
    (d1, d2, all)
}

/// Appended lines come back field for field, oldest first and newest
/// first.
pub async fn lines_come_back_whole_in_both_orders(store: &dyn LogStore) {
    let (_, _, mut all) = two_versions(store).await;
    all.sort_by_key(|l| l.position().key());
    let mut q = LogQuery::new(orders());
    q.order = LogOrder::OldestFirst;
    q.limit = 1000;
    let page = store.query(&q).await.unwrap();
    assert_eq!(page.lines.len(), 20);
    assert_eq!(page.lines, all, "oldest first, every field kept");
    assert_eq!(page.next, None);
    q.order = LogOrder::NewestFirst;
    let page = store.query(&q).await.unwrap();
    all.reverse();
    assert_eq!(page.lines, all, "newest first");
}

/// Following the cursor visits every line once, in order, in both orders,
/// also when many lines share one nanosecond.
pub async fn pages_cover_every_line_once(store: &dyn LogStore) {
    let app = orders();
    let (d1, d2) = (DeploymentId::new_random(), DeploymentId::new_random());
    let mut all = Vec::new();
    for i in 0..37u64 {
        // Groups of lines with the very same time, across two deployments.
        let ns = (i / 4) as i64;
        all.push(line(
            &app,
            if i % 2 == 0 { d1 } else { d2 },
            1,
            i,
            ns,
            &format!("l{i}"),
        ));
    }
    store.append(&all).await.unwrap();
    all.sort_by_key(|l| l.position().key());
    for order in [LogOrder::OldestFirst, LogOrder::NewestFirst] {
        let mut q = LogQuery::new(app.clone());
        q.order = order;
        q.limit = 5;
        let got = all_pages(store, &q).await;
        let mut want = all.clone();
        if order == LogOrder::NewestFirst {
            want.reverse();
        }
        assert_eq!(texts(&got), texts(&want), "{order:?}");
    }
    // A page that ends exactly at the end says so.
    let mut q = LogQuery::new(app);
    q.limit = 37;
    assert_eq!(store.query(&q).await.unwrap().next, None);
    q.limit = 36;
    let page = store.query(&q).await.unwrap();
    q.cursor = page.next;
    let last = store.query(&q).await.unwrap();
    assert_eq!(last.lines.len(), 1);
    assert_eq!(last.next, None);
}

/// A batch sent again, or overlapping a stored one, adds only new keys.
pub async fn appending_twice_stores_once(store: &dyn LogStore) {
    let app = orders();
    let d = DeploymentId::new_random();
    let batch: Vec<StoredLine> = (0..10)
        .map(|i| line(&app, d, 1, i, i as i64, &format!("x{i}")))
        .collect();
    store.append(&batch).await.unwrap();
    store.append(&batch).await.unwrap();
    // Overlapping: 5..15, where 5..10 already exist (with other text, which
    // must not replace the stored one).
    let overlap: Vec<StoredLine> = (5..15)
        .map(|i| line(&app, d, 1, i, i as i64, &format!("y{i}")))
        .collect();
    store.append(&overlap).await.unwrap();
    store.append(&[]).await.unwrap();
    let mut q = LogQuery::new(app);
    q.order = LogOrder::OldestFirst;
    q.limit = 100;
    let got = store.query(&q).await.unwrap().lines;
    assert_eq!(got.len(), 15);
    let seqs: BTreeSet<u64> = got.iter().map(|l| l.seq).collect();
    assert_eq!(seqs.len(), 15, "no seq twice");
    assert_eq!(got[7].line, "x7", "a stored line is never replaced");
    assert_eq!(got[12].line, "y12");
}

/// What a forwarder restarted mid-batch sends: a writer that resumed
/// before the last batch landed sends an overlapping batch, then batches
/// that continue it, the first of them still partly stored. Each key is
/// stored once, with its first text.
pub async fn batches_after_an_overlap_store_each_line_once(store: &dyn LogStore) {
    let app = orders();
    let d = DeploymentId::new_random();
    let batch = |from: u64, to: u64, tag: &str| -> Vec<StoredLine> {
        (from..to)
            .map(|i| line(&app, d, 1, i, i as i64, &format!("{tag}{i}")))
            .collect()
    };
    store.append(&batch(0, 100, "old")).await.unwrap();
    store.append(&batch(50, 60, "new")).await.unwrap();
    store.append(&batch(60, 150, "new")).await.unwrap();
    store.append(&batch(150, 160, "new")).await.unwrap();
    let mut q = LogQuery::new(app.clone());
    q.order = LogOrder::OldestFirst;
    q.limit = 1000;
    let got = store.query(&q).await.unwrap().lines;
    let seqs: Vec<u64> = got.iter().map(|l| l.seq).collect();
    assert_eq!(
        seqs,
        (0..160).collect::<Vec<_>>(),
        "every seq once, in order"
    );
    assert_eq!(got[99].line, "old99", "a stored line is never replaced");
    assert_eq!(got[100].line, "new100");
    assert_eq!(store.resume_point(&d).await.unwrap().unwrap().last_seq, 159);
}

/// `resume_point` is `None` for an unknown deployment, and the last seq,
/// newest time and lines of that time for a known one.
pub async fn the_resume_point_is_where_the_store_ends(store: &dyn LogStore) {
    let app = orders();
    let d = DeploymentId::new_random();
    assert_eq!(store.resume_point(&d).await.unwrap(), None);
    let lines = [
        line(&app, d, 1, 0, 10, "a"),
        line(&app, d, 1, 1, 20, "b"),
        line(&app, d, 1, 2, 20, "c"),
    ];
    store.append(&lines).await.unwrap();
    let other = DeploymentId::new_random();
    store
        .append(&[line(&app, other, 2, 7, 99, "z")])
        .await
        .unwrap();
    assert_eq!(
        store.resume_point(&d).await.unwrap(),
        Some(ResumePoint {
            last_seq: 2,
            last_timestamp: T0 + 20,
            lines_at_last_timestamp: 2,
        })
    );
    assert_eq!(
        store
            .resume_point(&other)
            .await
            .unwrap()
            .map(|p| p.last_seq),
        Some(7)
    );
}

/// Deployment, version, stream and time range narrow the lines, alone and
/// together.
pub async fn filters_narrow_the_lines(store: &dyn LogStore) {
    let (d1, d2, all) = two_versions(store).await;
    let check = |q: LogQuery| {
        let all = all.clone();
        async move {
            let got = all_pages(store, &q).await;
            let mut want: Vec<StoredLine> = all.into_iter().filter(|l| q.matches(l)).collect();
            want.sort_by_key(|l| std::cmp::Reverse(l.position().key()));
            assert!(!want.is_empty(), "the check must select something: {q:?}");
            assert_eq!(texts(&got), texts(&want), "{q:?}");
        }
    };
    let base = || {
        let mut q = LogQuery::new(orders());
        q.limit = 3;
        q
    };
    check(LogQuery {
        deployment: Some(d1),
        ..base()
    })
    .await;
    check(LogQuery {
        deployment: Some(d2),
        ..base()
    })
    .await;
    check(LogQuery {
        version: Some(2),
        ..base()
    })
    .await;
    check(LogQuery {
        stream: Some(LogSource::Stderr),
        ..base()
    })
    .await;
    check(LogQuery {
        stream: Some(LogSource::Stdout),
        version: Some(1),
        ..base()
    })
    .await;
    let at = |ms: i64| crate::logs::from_nanos(T0 + ms * 1_000_000);
    check(LogQuery {
        from: Some(at(3)),
        to: Some(at(8)),
        ..base()
    })
    .await;
    check(LogQuery {
        from: Some(at(12)),
        ..base()
    })
    .await;
    check(LogQuery {
        to: Some(at(1)),
        ..base()
    })
    .await;
    // An empty range is an empty page, not an error.
    let none = store
        .query(&LogQuery {
            from: Some(at(100)),
            ..base()
        })
        .await
        .unwrap();
    assert!(none.lines.is_empty() && none.next.is_none());
}

/// Text search finds substrings in any case, also shorter than three
/// characters and with characters SQL or FTS treat specially.
pub async fn text_matches_substrings_ignoring_case(store: &dyn LogStore) {
    let app = orders();
    let d = DeploymentId::new_random();
    let texts_in = [
        "INFO Route order-42 started",
        "ERROR java.lang.IllegalStateException: boom",
        "WARN retrying order-42 (attempt 2)",
        "100% done_ok \"quoted\" it's",
        "nothing here",
    ];
    let lines: Vec<StoredLine> = texts_in
        .iter()
        .enumerate()
        .map(|(i, t)| line(&app, d, 1, i as u64, i as i64, t))
        .collect();
    store.append(&lines).await.unwrap();
    let find = |text: &str| {
        let mut q = LogQuery::new(app.clone());
        q.text = Some(text.to_owned());
        q.order = LogOrder::OldestFirst;
        async move {
            let got = all_pages(store, &q).await;
            got.into_iter().map(|l| l.seq).collect::<Vec<u64>>()
        }
    };
    assert_eq!(find("order-42").await, [0, 2]);
    assert_eq!(find("illegalstate").await, [1], "case is ignored");
    assert_eq!(find("EXCEPTION: BOOM").await, [1]);
    assert_eq!(find("ng").await, [1, 2, 4], "two characters");
    assert_eq!(find("%").await, [3], "% is no wildcard");
    assert_eq!(find("_").await, [3], "_ is no wildcard");
    assert_eq!(find("\"quoted\" it's").await, [3]);
    assert_eq!(find("nowhere").await, Vec::<u64>::new());
}

/// Another environment, app or tenant never sees the lines.
pub async fn apps_envs_and_tenants_stay_apart(store: &dyn LogStore) {
    let d = DeploymentId::new_random();
    let mine = orders();
    store
        .append(&[line(&mine, d, 1, 0, 0, "secret")])
        .await
        .unwrap();
    for other in [
        AppRef::parse("acme", "orders", "dev").unwrap(),
        AppRef::parse("acme", "billing", "prod").unwrap(),
        AppRef::parse("globex", "orders", "prod").unwrap(),
    ] {
        let page = store.query(&LogQuery::new(other.clone())).await.unwrap();
        assert!(page.lines.is_empty(), "{other} sees {:?}", page.lines);
    }
    assert_eq!(
        store.query(&LogQuery::new(mine)).await.unwrap().lines.len(),
        1
    );
}

/// A zero limit, an empty text and a range that ends before it starts are
/// refused with `invalid_query`; a cursor that was never handed out does
/// not parse.
pub async fn bad_queries_are_refused_with_their_code(store: &dyn LogStore) {
    let mut q = LogQuery::new(orders());
    q.limit = 0;
    assert_eq!(store.query(&q).await.unwrap_err().code(), "invalid_query");
    let mut q = LogQuery::new(orders());
    q.text = Some(String::new());
    assert_eq!(store.query(&q).await.unwrap_err().code(), "invalid_query");
    let mut q = LogQuery::new(orders());
    q.from = Some(OffsetDateTime::now_utc());
    q.to = Some(OffsetDateTime::UNIX_EPOCH);
    assert_eq!(store.query(&q).await.unwrap_err().code(), "invalid_query");
    assert_eq!(
        "c1.zz".parse::<LogCursor>().unwrap_err().code(),
        "invalid_cursor"
    );
}

/// A [`LogStore`] wrapper that fails, stalls or half-stores on demand, for
/// the forwarder's failure tests.
pub struct FlakyLogStore<S> {
    inner: S,
    down: AtomicBool,
    half_then_fail: AtomicBool,
    gate: Arc<Semaphore>,
    gated: AtomicBool,
    appends: AtomicU64,
    failures: AtomicU64,
}

impl<S: LogStore> FlakyLogStore<S> {
    /// A wrapper that passes everything to `inner` until told otherwise.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            down: AtomicBool::new(false),
            half_then_fail: AtomicBool::new(false),
            gate: Arc::new(Semaphore::new(0)),
            gated: AtomicBool::new(false),
            appends: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Every call fails while `down`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The next appends store the first half of their batch, then fail (a
    /// store that died in the middle of a write).
    pub fn set_half_then_fail(&self, on: bool) {
        self.half_then_fail.store(on, Ordering::SeqCst);
    }

    /// While gated, appends wait (a stalled store) until [`open_gate`](Self::open_gate).
    pub fn close_gate(&self) {
        self.gated.store(true, Ordering::SeqCst);
    }

    /// Lets waiting and future appends through.
    pub fn open_gate(&self) {
        self.gated.store(false, Ordering::SeqCst);
        self.gate.add_permits(1 << 20);
    }

    /// Appends that reached the wrapped store (whole or half).
    pub fn appends(&self) -> u64 {
        self.appends.load(Ordering::SeqCst)
    }

    /// Calls that failed on purpose.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    fn fail(&self, what: &str) -> LogStoreError {
        self.failures.fetch_add(1, Ordering::SeqCst);
        LogStoreError::unavailable(
            "flaky",
            format!("{what}: down on purpose"),
            std::io::Error::other("flaky"),
        )
    }
}

#[async_trait]
impl<S: LogStore> LogStore for FlakyLogStore<S> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn append(&self, lines: &[StoredLine]) -> Result<(), LogStoreError> {
        if self.gated.load(Ordering::SeqCst) {
            let _permit = self.gate.acquire().await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(self.fail("append"));
        }
        self.appends.fetch_add(1, Ordering::SeqCst);
        if self.half_then_fail.load(Ordering::SeqCst) && lines.len() > 1 {
            self.inner.append(&lines[..lines.len() / 2]).await?;
            return Err(self.fail("append (half stored)"));
        }
        self.inner.append(lines).await
    }

    async fn resume_point(
        &self,
        deployment: &DeploymentId,
    ) -> Result<Option<ResumePoint>, LogStoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(self.fail("resume_point"));
        }
        self.inner.resume_point(deployment).await
    }

    async fn query(&self, query: &LogQuery) -> Result<LogPage, LogStoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(self.fail("query"));
        }
        self.inner.query(query).await
    }
}
