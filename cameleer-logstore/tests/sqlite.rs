//! The log store suite against SQLite, and what only a file shows.

use cameleer_logstore::SqliteLogStore;
use cameleer_runtime::logs::{LogQuery, LogStore};
use cameleer_runtime::testkit::logs::line;
use cameleer_runtime::{AppRef, DeploymentId};

/// A fresh store in a directory that lives as long as the test process
/// (leaked on purpose: each test's store must outlive the call).
async fn fresh() -> SqliteLogStore {
    let dir = tempfile::tempdir().unwrap().keep();
    SqliteLogStore::open(dir.join("logs.db")).unwrap()
}

cameleer_runtime::log_store_conformance_tests!(fresh);

#[tokio::test]
async fn lines_survive_reopening_and_old_ones_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    let app = AppRef::parse("acme", "orders", "prod").unwrap();
    let d = DeploymentId::new_random();
    {
        let store = SqliteLogStore::open(&path).unwrap();
        let lines: Vec<_> = (0..3)
            .map(|i| line(&app, d, 1, i, i as i64 * 1000, "kept"))
            .collect();
        store.append(&lines).await.unwrap();
    }
    let store = SqliteLogStore::open(&path).unwrap();
    assert_eq!(store.resume_point(&d).await.unwrap().unwrap().last_seq, 2);
    let cut = cameleer_runtime::logs::from_nanos(1_767_225_600_000_000_000 + 1500);
    assert_eq!(store.delete_before(cut).await.unwrap(), 2);
    let mut q = LogQuery::new(app);
    q.text = Some("kept".into());
    let page = store.query(&q).await.unwrap();
    assert_eq!(
        page.lines.len(),
        1,
        "the text index forgot the deleted lines"
    );
    assert_eq!(page.lines[0].seq, 2);
}

#[tokio::test]
async fn an_unwritable_path_is_a_typed_error_naming_it() {
    let e = SqliteLogStore::open("/proc/nope/logs.db").unwrap_err();
    assert_eq!(e.code(), "log_store_unavailable");
    assert!(e.to_string().contains("/proc/nope/logs.db"), "{e}");
}

#[tokio::test]
async fn a_common_text_and_a_rare_one_both_page_right() {
    // More lines hold "common" than the store reads by id (2,000): that
    // query walks the app's lines instead; "rare" is read by id.
    let store = fresh().await;
    let app = AppRef::parse("acme", "orders", "prod").unwrap();
    let d = DeploymentId::new_random();
    let lines: Vec<_> = (0..2_500u64)
        .map(|i| {
            let text = if i == 1_234 {
                format!("a Rare line {i}")
            } else {
                format!("a common line {i}")
            };
            line(&app, d, 1, i, i as i64, &text)
        })
        .collect();
    store.append(&lines).await.unwrap();
    let mut q = LogQuery::new(app.clone());
    q.text = Some("COMMON".into());
    q.limit = 10;
    let page = store.query(&q).await.unwrap();
    let seqs: Vec<u64> = page.lines.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, (2_490..2_500).rev().collect::<Vec<_>>());
    assert!(page.next.is_some());
    q.text = Some("rare".into());
    let page = store.query(&q).await.unwrap();
    assert_eq!(page.lines.len(), 1);
    assert_eq!(page.lines[0].seq, 1_234);
    assert_eq!(page.next, None);
    // Another app's line with the rare text stays out.
    let other = AppRef::parse("acme", "billing", "prod").unwrap();
    let od = DeploymentId::new_random();
    store
        .append(&[line(&other, od, 1, 0, 5, "rare too")])
        .await
        .unwrap();
    assert_eq!(store.query(&q).await.unwrap().lines.len(), 1);
}

#[tokio::test]
async fn a_file_made_before_instances_gets_the_column_and_keeps_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    let app = AppRef::parse("acme", "orders", "prod").unwrap();
    let d = DeploymentId::new_random();
    let old = line(&app, d, 1, 0, 0, "before");
    {
        // The table as the first release made it, with one line in it.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE log_lines (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, \
             app TEXT NOT NULL, env TEXT NOT NULL, deployment BLOB NOT NULL, \
             version INTEGER NOT NULL, ts INTEGER NOT NULL, stream INTEGER NOT NULL, \
             seq INTEGER NOT NULL, line TEXT NOT NULL, UNIQUE (deployment, seq))",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO log_lines (tenant, app, env, deployment, version, ts, stream, seq, line) \
             VALUES ('acme', 'orders', 'prod', ?1, 1, ?2, 0, 0, 'before')",
            rusqlite::params![&d.as_uuid().as_bytes()[..], old.timestamp_nanos()],
        )
        .unwrap();
    }
    let store = SqliteLogStore::open(&path).unwrap();
    cameleer_runtime::testkit::logs::check_upgraded_store(&store, &app, d).await;
}
