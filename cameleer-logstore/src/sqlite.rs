//! [`SqliteLogStore`]: the embedded default.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use cameleer_runtime::logs::{
    LogOrder, LogPage, LogQuery, LogStore, LogStoreError, ResumePoint, StoredLine, from_nanos,
    nanos, page_of,
};
use cameleer_runtime::{AppRef, DeploymentId, LogSource};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

const NAME: &str = "sqlite";

const SCHEMA: &str = r#"
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS log_lines (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    app TEXT NOT NULL,
    env TEXT NOT NULL,
    deployment BLOB NOT NULL,
    version INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    line TEXT NOT NULL,
    instance INTEGER,
    UNIQUE (deployment, seq)
);
CREATE INDEX IF NOT EXISTS log_lines_by_app
    ON log_lines (tenant, app, env, ts, deployment, seq);
CREATE VIRTUAL TABLE IF NOT EXISTS log_text USING fts5(
    line, content = 'log_lines', content_rowid = 'id', tokenize = 'trigram'
);
-- Appends index their lines in one statement (see `insert`): a trigger
-- per row made FTS5 flush its pending terms at every row, ~8x slower.
DROP TRIGGER IF EXISTS log_lines_ai;
CREATE TRIGGER IF NOT EXISTS log_lines_ad AFTER DELETE ON log_lines BEGIN
    INSERT INTO log_text (log_text, rowid, line) VALUES ('delete', old.id, old.line);
END;
"#;

/// A [`LogStore`] in one SQLite file: a table keyed by `(deployment, seq)`
/// (so appends are idempotent), an index for the per-app query by time, and
/// an FTS5 index with the trigram tokenizer for text search (substrings of
/// three characters or more; shorter ones scan the app's lines).
///
/// Appends run in one transaction each, on one writer connection, which
/// indexes the batch's text in one statement at the end; queries
/// on a small pool of readers (WAL lets them run beside the writer). Every
/// call runs on tokio's blocking pool.
///
/// # Examples
///
/// ```
/// use cameleer_logstore::SqliteLogStore;
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteLogStore::open(dir.path().join("logs.db")).unwrap();
/// assert_eq!(store.path(), dir.path().join("logs.db"));
/// ```
#[derive(Clone)]
pub struct SqliteLogStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLogStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn unavailable(what: impl Into<String>, e: impl Into<cameleer_runtime::BoxError>) -> LogStoreError {
    LogStoreError::unavailable(NAME, what, e)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SqliteLogStore {
    /// Opens (creating if needed) the store in the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LogStoreError> {
        let path = path.as_ref().to_path_buf();
        let writer = Connection::open(&path)
            .map_err(|e| unavailable(format!("opening {}", path.display()), e))?;
        writer
            .execute_batch(SCHEMA)
            .and_then(|()| add_instance_column(&writer))
            .map_err(|e| unavailable(format!("creating the schema in {}", path.display()), e))?;
        writer
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| unavailable("setting the busy timeout", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Deletes every line older than `before` (retention); returns how many.
    pub async fn delete_before(&self, before: time::OffsetDateTime) -> Result<u64, LogStoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            let conn = lock(&inner.writer);
            let n = conn
                .execute("DELETE FROM log_lines WHERE ts < ?1", [nanos(before)])
                .map_err(|e| unavailable("deleting old lines", e))?;
            Ok(n as u64)
        })
        .await
    }

    fn reader(&self) -> Result<Connection, LogStoreError> {
        if let Some(c) = lock(&self.inner.readers).pop() {
            return Ok(c);
        }
        let c = Connection::open_with_flags(
            &self.inner.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| unavailable(format!("opening {} to read", self.inner.path.display()), e))?;
        c.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| unavailable("setting the busy timeout", e))?;
        Ok(c)
    }

    fn give_back(&self, c: Connection) {
        let mut readers = lock(&self.inner.readers);
        if readers.len() < 4 {
            readers.push(c);
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogStoreError> + Send + 'static,
) -> Result<T, LogStoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| unavailable("the blocking task failed", e))?
}

fn stream_code(s: LogSource) -> i64 {
    match s {
        LogSource::Stdout => 0,
        LogSource::Stderr => 1,
    }
}

fn insert(conn: &mut Connection, lines: &[StoredLine]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        // Rows get ids above the largest (one writer, in a transaction),
        // so the new ones are those above it.
        let before: i64 = tx
            .prepare_cached("SELECT coalesce(max(id), 0) FROM log_lines")?
            .query_row([], |r| r.get(0))?;
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO log_lines \
             (tenant, app, env, deployment, version, ts, stream, seq, line, instance) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for l in lines {
            stmt.execute(params![
                l.app.tenant.as_str(),
                l.app.app.as_str(),
                l.app.env.as_str(),
                &l.deployment.as_uuid().as_bytes()[..],
                i64::try_from(l.version).unwrap_or(i64::MAX),
                l.timestamp_nanos(),
                stream_code(l.stream),
                i64::try_from(l.seq).unwrap_or(i64::MAX),
                l.line,
                l.instance,
            ])?;
        }
        // One statement for the batch's text: FTS5 builds its terms in
        // memory and writes one segment.
        tx.prepare_cached(
            "INSERT INTO log_text (rowid, line) SELECT id, line FROM log_lines WHERE id > ?1",
        )?
        .execute([before])?;
    }
    tx.commit()
}

/// Up to this many lines holding a text, a query reads them by id; past
/// it, it walks the app's lines in order and stops at its limit.
const FEW_MATCHES: usize = 2_000;

/// How a query finds the lines that hold its text (three characters or
/// more, through the trigram index).
#[derive(Debug, Clone, PartialEq, Eq)]
enum TextPlan {
    /// Few lines hold it: their ids, as a JSON array.
    Ids(String),
    /// Many do: the app's lines in the query's order, each looked up in
    /// the index (a rare text would walk them all).
    Walk,
}

/// The trigram FTS5 phrase of `text`: it matches the substring, ignoring
/// case.
fn phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// Asks the index how many lines hold `text` (stopping past
/// [`FEW_MATCHES`]).
fn text_plan(conn: &Connection, text: &str) -> rusqlite::Result<TextPlan> {
    let mut stmt =
        conn.prepare_cached("SELECT rowid FROM log_text WHERE log_text MATCH ?1 LIMIT ?2")?;
    let ids = stmt
        .query_map(params![phrase(text), FEW_MATCHES as i64 + 1], |r| {
            r.get::<_, i64>(0)
        })?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    if ids.len() > FEW_MATCHES {
        return Ok(TextPlan::Walk);
    }
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    Ok(TextPlan::Ids(format!("[{}]", list.join(","))))
}

/// The SQL and parameters of `query`, fetching one line more than the
/// limit (to know whether there is a next page). `plan` is how its text,
/// if of three characters or more, is found.
fn select(query: &LogQuery, plan: Option<&TextPlan>) -> (String, Vec<Value>) {
    let a = &query.app;
    // By id, the columns' indexes must not be used (`+column`): SQLite
    // would walk the app's lines instead of reading a few rows.
    let by_id = if matches!(plan, Some(TextPlan::Ids(_))) {
        "+"
    } else {
        ""
    };
    let mut sql = format!(
        "SELECT deployment, version, ts, stream, seq, line, instance FROM log_lines \
         WHERE {by_id}tenant = ? AND {by_id}app = ? AND {by_id}env = ?"
    );
    let mut args: Vec<Value> = vec![
        a.tenant.as_str().to_owned().into(),
        a.app.as_str().to_owned().into(),
        a.env.as_str().to_owned().into(),
    ];
    if let Some(d) = query.deployment {
        sql.push_str(&format!(" AND {by_id}deployment = ?"));
        args.push(d.as_uuid().as_bytes().to_vec().into());
    }
    if let Some(v) = query.version {
        sql.push_str(" AND version = ?");
        args.push(Value::Integer(i64::try_from(v).unwrap_or(i64::MAX)));
    }
    if let Some(f) = query.from {
        sql.push_str(" AND ts >= ?");
        args.push(Value::Integer(nanos(f)));
    }
    if let Some(t) = query.to {
        sql.push_str(" AND ts < ?");
        args.push(Value::Integer(nanos(t)));
    }
    if let Some(s) = query.stream {
        sql.push_str(" AND stream = ?");
        args.push(Value::Integer(stream_code(s)));
    }
    if let Some(text) = &query.text {
        match plan {
            Some(TextPlan::Ids(ids)) => {
                sql.push_str(" AND id IN (SELECT value FROM json_each(?))");
                args.push(ids.clone().into());
            }
            Some(TextPlan::Walk) => {
                sql.push_str(" AND id IN (SELECT rowid FROM log_text WHERE log_text MATCH ?)");
                args.push(phrase(text).into());
            }
            None => {
                sql.push_str(" AND instr(lower(line), lower(?)) > 0");
                args.push(text.clone().into());
            }
        }
    }
    let (cmp, dir) = match query.order {
        LogOrder::OldestFirst => (">", "ASC"),
        LogOrder::NewestFirst => ("<", "DESC"),
    };
    if let Some(c) = &query.cursor {
        sql.push_str(&format!(" AND (ts, deployment, seq) {cmp} (?, ?, ?)"));
        args.push(Value::Integer(c.timestamp_nanos()));
        args.push(c.deployment().as_uuid().as_bytes().to_vec().into());
        args.push(Value::Integer(i64::try_from(c.seq()).unwrap_or(i64::MAX)));
    }
    sql.push_str(&format!(
        " ORDER BY ts {dir}, deployment {dir}, seq {dir} LIMIT {}",
        query.limit + 1
    ));
    (sql, args)
}

fn read_line(app: &AppRef, row: &rusqlite::Row<'_>) -> Result<StoredLine, LogStoreError> {
    let corrupt = |what: &str| LogStoreError::Corrupt {
        store: NAME,
        message: what.to_owned(),
    };
    let get = |e: rusqlite::Error| unavailable("reading a row", e);
    let deployment: Vec<u8> = row.get(0).map_err(get)?;
    let deployment = uuid::Uuid::from_slice(&deployment)
        .map_err(|_| corrupt("a deployment id that is not 16 bytes"))?;
    let deployment: DeploymentId = deployment
        .to_string()
        .parse()
        .map_err(|_| corrupt("a deployment id"))?;
    let stream = match row.get::<_, i64>(3).map_err(get)? {
        0 => LogSource::Stdout,
        1 => LogSource::Stderr,
        other => return Err(corrupt(&format!("stream code {other}"))),
    };
    Ok(StoredLine {
        app: app.clone(),
        deployment,
        version: row.get::<_, i64>(1).map_err(get)?.max(0) as u64,
        timestamp: from_nanos(row.get(2).map_err(get)?),
        stream,
        seq: row.get::<_, i64>(4).map_err(get)?.max(0) as u64,
        line: row.get(5).map_err(get)?,
        instance: row.get(6).map_err(get)?,
    })
}

/// Files made before lines knew their instance lack the column: it is added
/// (empty for the old lines).
fn add_instance_column(conn: &Connection) -> rusqlite::Result<()> {
    let has: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('log_lines') WHERE name = 'instance'")?
        .exists([])?;
    if !has {
        conn.execute_batch("ALTER TABLE log_lines ADD COLUMN instance INTEGER")?;
    }
    Ok(())
}

#[async_trait]
impl LogStore for SqliteLogStore {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn append(&self, lines: &[StoredLine]) -> Result<(), LogStoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let inner = self.inner.clone();
        let lines = lines.to_vec();
        blocking(move || {
            let mut conn = lock(&inner.writer);
            insert(&mut conn, &lines).map_err(|e| unavailable("appending lines", e))
        })
        .await
    }

    async fn resume_point(
        &self,
        deployment: &DeploymentId,
    ) -> Result<Option<ResumePoint>, LogStoreError> {
        let this = self.clone();
        let key = deployment.as_uuid().as_bytes().to_vec();
        blocking(move || {
            let conn = this.reader()?;
            let found = conn
                .query_row(
                    "SELECT max(seq), max(ts) FROM log_lines WHERE deployment = ?1",
                    [&key],
                    |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?)),
                )
                .and_then(|(seq, ts)| {
                    let (Some(seq), Some(ts)) = (seq, ts) else {
                        return Ok(None);
                    };
                    let at: i64 = conn.query_row(
                        "SELECT count(*) FROM log_lines WHERE deployment = ?1 AND ts = ?2",
                        params![&key, ts],
                        |r| r.get(0),
                    )?;
                    Ok(Some(ResumePoint {
                        last_seq: seq.max(0) as u64,
                        last_timestamp: ts,
                        lines_at_last_timestamp: at.max(0) as u64,
                    }))
                })
                .optional()
                .map(Option::flatten)
                .map_err(|e| unavailable("reading the resume point", e));
            this.give_back(conn);
            found
        })
        .await
    }

    async fn query(&self, query: &LogQuery) -> Result<LogPage, LogStoreError> {
        query.validate()?;
        let this = self.clone();
        let query = query.clone();
        blocking(move || {
            let conn = this.reader()?;
            let lines = (|| {
                let plan = match &query.text {
                    Some(t) if t.chars().count() >= 3 => Some(
                        text_plan(&conn, t).map_err(|e| unavailable("searching the text", e))?,
                    ),
                    _ => None,
                };
                let (sql, args) = select(&query, plan.as_ref());
                let mut stmt = conn
                    .prepare_cached(&sql)
                    .map_err(|e| unavailable("preparing the query", e))?;
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(args))
                    .map_err(|e| unavailable("querying lines", e))?;
                let mut lines = Vec::new();
                while let Some(row) = rows.next().map_err(|e| unavailable("querying lines", e))? {
                    lines.push(read_line(&query.app, row)?);
                }
                Ok::<_, LogStoreError>(lines)
            })();
            this.give_back(conn);
            Ok(page_of(lines?, &query))
        })
        .await
    }
}
