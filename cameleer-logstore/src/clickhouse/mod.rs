//! [`ClickHouseLogStore`]: ClickHouse over its HTTP interface, for scale.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cameleer_runtime::logs::{
    LogOrder, LogPage, LogQuery, LogStore, LogStoreError, ResumePoint, StoredLine, from_nanos,
    nanos, page_of,
};
use cameleer_runtime::{AppRef, DeploymentId, LogSource};
use url::Url;

mod rows;

const NAME: &str = "clickhouse";

/// The oldest ClickHouse server this store is tested against: Debian 12's
/// `clickhouse-server` 18.16. It has custom partitioning keys but neither
/// table TTLs (19.6) nor query parameters (19.x), so retention drops whole
/// partitions ([`ClickHouseLogStore::drop_months_before`]) and literals are
/// escaped here.
pub const OLDEST_CLICKHOUSE: &str = "18.16";

/// Where a [`ClickHouseLogStore`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseOptions {
    /// The HTTP interface, `http://host:8123/`.
    pub url: Url,
    /// The database (created if missing). Default `cameleer`.
    pub database: String,
    /// The table (created if missing). Default `log_lines`.
    pub table: String,
    /// The user, if not `default`.
    pub user: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// Per-request timeout. Default 60 s.
    pub timeout: Duration,
}

impl ClickHouseOptions {
    /// Reads `clickhouse://[user[:password]@]host[:port][/database]`
    /// (the server's HTTP interface, port 8123 by default), or
    /// `clickhouses://…` for HTTPS (port 8443, the system's roots).
    ///
    /// ```
    /// use cameleer_logstore::ClickHouseOptions;
    ///
    /// let o = ClickHouseOptions::from_url("clickhouse://ops:pw@127.0.0.1/logs").unwrap();
    /// assert_eq!(o.url.as_str(), "http://127.0.0.1:8123/");
    /// assert_eq!((o.database.as_str(), o.user.as_deref()), ("logs", Some("ops")));
    /// assert!(ClickHouseOptions::from_url("mysql://x").is_err());
    /// ```
    pub fn from_url(s: &str) -> Result<Self, LogStoreError> {
        let bad = |why: String| LogStoreError::invalid_query("log-store", why);
        let u = Url::parse(s).map_err(|e| bad(format!("{s:?} is not a URL: {e}")))?;
        if u.scheme() != "clickhouse" {
            return Err(bad(format!(
                "{s:?}: expected clickhouse://host[:port][/database]"
            )));
        }
        let host = u
            .host_str()
            .ok_or_else(|| bad(format!("{s:?} has no host")))?;
        let http = Url::parse(&format!("http://{host}:{}/", u.port().unwrap_or(8123)))
            .map_err(|e| bad(format!("{s:?}: {e}")))?;
        let database = u.path().trim_matches('/');
        let database = if database.is_empty() {
            "cameleer"
        } else {
            database
        };
        if !database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(bad(format!(
                "database {database:?}: only letters, digits and _"
            )));
        }
        Ok(Self {
            url: http,
            database: database.to_owned(),
            user: (!u.username().is_empty()).then(|| u.username().to_owned()),
            password: u.password().map(str::to_owned),
            ..Self::new(Url::parse("http://127.0.0.1:8123/").expect("a valid URL"))
        })
    }

    /// The options for the server at `url` with the defaults.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            database: "cameleer".into(),
            table: "log_lines".into(),
            user: None,
            password: None,
            timeout: Duration::from_secs(60),
        }
    }
}

/// A [`LogStore`] in ClickHouse, over its HTTP interface.
///
/// The table is a `ReplacingMergeTree` partitioned by
/// `(tenant, toYYYYMM(time))` and ordered by
/// `(tenant, app, env, ts, deployment, seq)`: the per-app query by time
/// reads one contiguous range, and a tenant's month is one partition to
/// drop. Rows go as `RowBinary`, one batch in one `INSERT` (one block per
/// partition).
///
/// Appends are idempotent without a read per batch: one append runs at a
/// time, and the store remembers where each deployment it wrote ends. A
/// batch that continues exactly there is inserted as it is; any other (the
/// first of a deployment after a restart, the one after a failed or
/// abandoned append, an overlapping one) first reads the deployment's
/// stored seqs from the batch's lowest up and leaves those out. After a
/// check the store trusts its tail only if the table had nothing past the
/// batch. The replacing merge also folds any duplicate that a second
/// writer racing on the same deployment might make.
///
/// Text search is a case-insensitive substring match
/// (`position(lowerUTF8(line), …)`), a scan of the app's range.
#[derive(Debug, Clone)]
pub struct ClickHouseLogStore {
    options: ClickHouseOptions,
    client: reqwest::Client,
    table: String,
    /// Held through each append; see [`rows::Tails`].
    tails: Arc<tokio::sync::Mutex<rows::Tails>>,
}

/// `s` as a ClickHouse string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn dep_hex(d: &DeploymentId) -> String {
    d.as_uuid().simple().to_string()
}

fn stream_code(s: LogSource) -> u8 {
    match s {
        LogSource::Stdout => 0,
        LogSource::Stderr => 1,
    }
}

fn app_filter(app: &AppRef) -> String {
    format!(
        "tenant = {} AND app = {} AND env = {}",
        quote(app.tenant.as_str()),
        quote(app.app.as_str()),
        quote(app.env.as_str())
    )
}

impl ClickHouseLogStore {
    /// Connects and creates the database and table if they are missing.
    pub async fn connect(options: ClickHouseOptions) -> Result<Self, LogStoreError> {
        // rustls on ring, passed explicitly: nothing process-wide is
        // installed (the workspace's reqwest has no default provider).
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| LogStoreError::unavailable(NAME, "setting up TLS", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(options.timeout)
            .build()
            .map_err(|e| LogStoreError::unavailable(NAME, "building the HTTP client", e))?;
        let table = format!("{}.{}", options.database, options.table);
        let store = Self {
            options,
            client,
            table,
            tails: Arc::default(),
        };
        store
            .run(&format!(
                "CREATE DATABASE IF NOT EXISTS {}",
                store.options.database
            ))
            .await?;
        store
            .run(&format!(
                "CREATE TABLE IF NOT EXISTS {} (\
                 tenant String, app String, env String, deployment String, \
                 version UInt64, ts Int64, stream UInt8, seq UInt64, line String, \
                 instance Nullable(UInt32)\
                 ) ENGINE = ReplacingMergeTree() \
                 PARTITION BY (tenant, toYYYYMM(toDateTime(intDiv(ts, 1000000000)))) \
                 ORDER BY (tenant, app, env, ts, deployment, seq)",
                store.table
            ))
            .await?;
        store.add_instance_column().await?;
        Ok(store)
    }

    /// Tables made before lines knew their instance lack the column: it is
    /// added (empty for the old lines). Asked of `system.columns` first, as
    /// `ADD COLUMN IF NOT EXISTS` is younger than the oldest server
    /// supported.
    async fn add_instance_column(&self) -> Result<(), LogStoreError> {
        let has = self
            .run(&format!(
                "SELECT count() FROM system.columns WHERE database = {} AND table = {} \
                 AND name = 'instance'",
                quote(&self.options.database),
                quote(&self.options.table)
            ))
            .await?;
        if has.trim() == "0" {
            self.run(&format!(
                "ALTER TABLE {} ADD COLUMN instance Nullable(UInt32)",
                self.table
            ))
            .await?;
        }
        Ok(())
    }

    /// The server's version (`SELECT version()`).
    pub async fn server_version(&self) -> Result<String, LogStoreError> {
        Ok(self.run("SELECT version()").await?.trim().to_owned())
    }

    /// Retention: drops every tenant's partitions of the months before the
    /// month of `before` (whole months: a partition is a tenant's month).
    /// Returns how many partitions were dropped.
    pub async fn drop_months_before(
        &self,
        before: time::OffsetDateTime,
    ) -> Result<usize, LogStoreError> {
        let month = before.year() * 100 + i32::from(u8::from(before.month()));
        let parts = self
            .run(&format!(
                "SELECT DISTINCT partition FROM system.parts WHERE active AND database = {} \
                 AND table = {} FORMAT TabSeparatedRaw",
                quote(&self.options.database),
                quote(&self.options.table)
            ))
            .await?;
        let mut dropped = 0;
        for p in parts.lines().filter(|p| !p.is_empty()) {
            // `('tenant',202601)`: the month is after the last comma.
            let m: Option<i32> = p
                .trim_end_matches(')')
                .rsplit(',')
                .next()
                .and_then(|m| m.trim().parse().ok());
            if m.is_some_and(|m| m < month) {
                self.run(&format!("ALTER TABLE {} DROP PARTITION {p}", self.table))
                    .await?;
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Sends `sql` (in the body) and returns the answer's text.
    async fn run(&self, sql: &str) -> Result<String, LogStoreError> {
        self.send(self.options.url.clone(), sql.to_owned()).await
    }

    async fn send(
        &self,
        url: Url,
        body: impl Into<reqwest::Body>,
    ) -> Result<String, LogStoreError> {
        let mut req = self.client.post(url).body(body);
        if let Some(user) = &self.options.user {
            req = req.basic_auth(user, self.options.password.as_deref());
        }
        let what = || format!("ClickHouse at {}", self.options.url);
        let resp = req
            .send()
            .await
            .map_err(|e| LogStoreError::unavailable(NAME, what(), e))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| LogStoreError::unavailable(NAME, what(), e))?;
        if !status.is_success() {
            let short: String = text.chars().take(500).collect();
            return Err(LogStoreError::Unavailable {
                store: NAME,
                message: format!("{} answered {status}: {}", what(), short.trim()),
                source: None,
            });
        }
        Ok(text)
    }

    /// The stored seqs of `spans`' deployments from each span's lowest
    /// seq up (in the span's app: the table's key narrows the read to it).
    async fn stored_from(
        &self,
        spans: &[(rows::Key, rows::Span)],
    ) -> Result<HashSet<(DeploymentId, u64)>, LogStoreError> {
        let mut sql = format!("SELECT deployment, seq FROM {} WHERE ", self.table);
        for (i, ((app, d), span)) in spans.iter().enumerate() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            let _ = write!(
                sql,
                "({} AND deployment = {} AND seq >= {})",
                app_filter(app),
                quote(&dep_hex(d)),
                span.min
            );
        }
        sql.push_str(" FORMAT TabSeparated");
        let text = self.run(&sql).await?;
        let mut out = HashSet::new();
        for row in text.lines().filter(|r| !r.is_empty()) {
            let (d, s) = row.split_once('\t').ok_or_else(|| corrupt(row))?;
            let d: DeploymentId = d.parse().map_err(|_| corrupt(row))?;
            out.insert((d, s.parse().map_err(|_| corrupt(row))?));
        }
        Ok(out)
    }
}

fn corrupt(what: &str) -> LogStoreError {
    LogStoreError::Corrupt {
        store: NAME,
        message: what.chars().take(200).collect(),
    }
}

/// A JSON number ClickHouse may send quoted (64-bit integers).
fn int(v: &serde_json::Value) -> Option<i128> {
    match v {
        serde_json::Value::Number(n) => n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn read_row(app: &AppRef, row: &str) -> Result<StoredLine, LogStoreError> {
    let v: serde_json::Value = serde_json::from_str(row).map_err(|_| corrupt(row))?;
    let deployment: DeploymentId = v["deployment"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| corrupt(row))?;
    let n = |k: &str| int(&v[k]).ok_or_else(|| corrupt(row));
    Ok(StoredLine {
        app: app.clone(),
        deployment,
        version: u64::try_from(n("version")?).map_err(|_| corrupt(row))?,
        timestamp: from_nanos(i64::try_from(n("ts")?).map_err(|_| corrupt(row))?),
        stream: if n("stream")? == 1 {
            LogSource::Stderr
        } else {
            LogSource::Stdout
        },
        seq: u64::try_from(n("seq")?).map_err(|_| corrupt(row))?,
        instance: match &v["instance"] {
            serde_json::Value::Null => None,
            i => Some(
                int(i)
                    .and_then(|i| u32::try_from(i).ok())
                    .ok_or_else(|| corrupt(row))?,
            ),
        },
        line: v["line"].as_str().ok_or_else(|| corrupt(row))?.to_owned(),
    })
}

#[async_trait]
impl LogStore for ClickHouseLogStore {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn append(&self, lines: &[StoredLine]) -> Result<(), LogStoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        // One append at a time: a check and its insert are not split by
        // another append of this store.
        let mut tails = self.tails.lock().await;
        let spans = rows::spans(lines);
        let unknown = tails.take(&spans);
        let stored = if unknown.is_empty() {
            HashSet::new()
        } else {
            self.stored_from(&unknown).await?
        };
        let (body, rows) = rows::row_binary(lines, &spans, &stored);
        if rows > 0 {
            let mut url = self.options.url.clone();
            url.query_pairs_mut().append_pair(
                "query",
                &format!(
                    "INSERT INTO {} ({}) FORMAT RowBinary",
                    self.table,
                    rows::COLUMNS
                ),
            );
            self.send(url, body).await?;
        }
        let mut stored_max: HashMap<DeploymentId, u64> = HashMap::new();
        for (d, seq) in stored {
            let m = stored_max.entry(d).or_insert(seq);
            *m = (*m).max(seq);
        }
        tails.stored(spans, &stored_max);
        Ok(())
    }

    async fn resume_point(
        &self,
        deployment: &DeploymentId,
    ) -> Result<Option<ResumePoint>, LogStoreError> {
        let d = quote(&dep_hex(deployment));
        let text = self
            .run(&format!(
                "SELECT count(), max(seq), max(ts) FROM {} WHERE deployment = {d} FORMAT TabSeparated",
                self.table
            ))
            .await?;
        let cols: Vec<&str> = text.trim().split('\t').collect();
        let [count, seq, ts] = cols[..] else {
            return Err(corrupt(&text));
        };
        if count == "0" {
            return Ok(None);
        }
        let ts: i64 = ts.parse().map_err(|_| corrupt(&text))?;
        let at = self
            .run(&format!(
                "SELECT count() FROM {} WHERE deployment = {d} AND ts = {ts} FORMAT TabSeparated",
                self.table
            ))
            .await?;
        Ok(Some(ResumePoint {
            last_seq: seq.parse().map_err(|_| corrupt(&text))?,
            last_timestamp: ts,
            lines_at_last_timestamp: at.trim().parse().map_err(|_| corrupt(&at))?,
        }))
    }

    async fn query(&self, query: &LogQuery) -> Result<LogPage, LogStoreError> {
        query.validate()?;
        let mut sql = format!(
            "SELECT deployment, version, ts, stream, seq, line, instance FROM {} WHERE {}",
            self.table,
            app_filter(&query.app)
        );
        if let Some(d) = &query.deployment {
            let _ = write!(sql, " AND deployment = {}", quote(&dep_hex(d)));
        }
        if let Some(v) = query.version {
            let _ = write!(sql, " AND version = {v}");
        }
        if let Some(f) = query.from {
            let _ = write!(sql, " AND ts >= {}", nanos(f));
        }
        if let Some(t) = query.to {
            let _ = write!(sql, " AND ts < {}", nanos(t));
        }
        if let Some(s) = query.stream {
            let _ = write!(sql, " AND stream = {}", stream_code(s));
        }
        if let Some(text) = &query.text {
            let _ = write!(
                sql,
                " AND position(lowerUTF8(line), lowerUTF8({})) > 0",
                quote(text)
            );
        }
        let (cmp, dir) = match query.order {
            LogOrder::OldestFirst => (">", "ASC"),
            LogOrder::NewestFirst => ("<", "DESC"),
        };
        if let Some(c) = &query.cursor {
            let (ts, d, seq) = (
                c.timestamp_nanos(),
                quote(&dep_hex(&c.deployment())),
                c.seq(),
            );
            let _ = write!(
                sql,
                " AND (ts {cmp} {ts} OR (ts = {ts} AND (deployment {cmp} {d} OR \
                 (deployment = {d} AND seq {cmp} {seq}))))"
            );
        }
        let _ = write!(
            sql,
            " ORDER BY ts {dir}, deployment {dir}, seq {dir} LIMIT {} FORMAT JSONEachRow",
            query.limit + 1
        );
        let text = self.run(&sql).await?;
        let lines = text
            .lines()
            .filter(|r| !r.is_empty())
            .map(|r| read_row(&query.app, r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page_of(lines, query))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped() {
        assert_eq!(quote(r"it's \ a"), r"'it\'s \\ a'");
        assert_eq!(quote("a\nb\tc"), r"'a\nb\tc'");
    }

    #[test]
    fn urls_are_checked() {
        for bad in ["clickhouse://", "clickhouse://h/bad-db;", "http://h:8123"] {
            let e = ClickHouseOptions::from_url(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_query", "{bad}");
        }
        let o = ClickHouseOptions::from_url("clickhouse://h:9123").unwrap();
        assert_eq!(o.url.as_str(), "http://h:9123/");
        assert_eq!(o.database, "cameleer");
        assert_eq!(o.user, None);
    }
}
