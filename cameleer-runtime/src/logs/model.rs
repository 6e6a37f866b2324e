//! What a [`LogStore`](super::LogStore) keeps and how it is asked.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::LogStoreError;
use crate::{AppRef, DeploymentId, LogSource};

/// One line of one deployment, as a [`LogStore`](super::LogStore) keeps it.
///
/// `(deployment, seq)` is the line's key: the forwarder numbers each
/// deployment's lines from 0 in the order the backend wrote them, and a
/// store ignores a line whose key it already has, so a batch sent twice
/// (a retry, a resumed forwarder) is stored once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLine {
    /// Tenant, app and environment.
    pub app: AppRef,
    /// The deployment that wrote it.
    pub deployment: DeploymentId,
    /// Its version.
    pub version: u64,
    /// When the backend received it, to the nanosecond (stores keep
    /// nanoseconds since the Unix epoch).
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// stdout or stderr.
    pub stream: LogSource,
    /// The line's number within its deployment, from 0.
    pub seq: u64,
    /// Which instance of the deployment wrote it (`0..replicas`), when
    /// the backend says; absent on the wire when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    /// The text, without the trailing newline.
    pub line: String,
}

impl StoredLine {
    /// Nanoseconds since the Unix epoch, the stores' time column. Times
    /// outside the `i64` range (before 1677, after 2262) are clamped.
    pub fn timestamp_nanos(&self) -> i64 {
        nanos(self.timestamp)
    }

    /// Where this line sorts: time, then deployment, then seq.
    pub fn position(&self) -> LogCursor {
        LogCursor {
            timestamp: self.timestamp_nanos(),
            deployment: self.deployment,
            seq: self.seq,
        }
    }
}

/// Nanoseconds since the Unix epoch of `t`, clamped to `i64`.
pub fn nanos(t: OffsetDateTime) -> i64 {
    let n = t.unix_timestamp_nanos();
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

/// The time of `nanos` nanoseconds since the Unix epoch.
pub fn from_nanos(nanos: i64) -> OffsetDateTime {
    // Every i64 of nanoseconds is a valid OffsetDateTime (years 1677..2262).
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Which end of the time range a page starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogOrder {
    /// The newest line first (what an operator reading "what just
    /// happened" wants; the default).
    #[default]
    NewestFirst,
    /// The oldest line first (reading forward, or following).
    OldestFirst,
}

/// The most lines one page may hold.
pub const MAX_PAGE_LINES: usize = 10_000;

/// A question to a [`LogStore`](super::LogStore): the lines of one app in
/// one environment, narrowed by the optional filters, one page at a time.
///
/// # Examples
///
/// ```
/// use cameleer_runtime::logs::{LogOrder, LogQuery};
/// use cameleer_runtime::{AppRef, LogSource};
///
/// let mut q = LogQuery::new(AppRef::parse("acme", "orders", "prod").unwrap());
/// q.text = Some("Exception".into());
/// q.stream = Some(LogSource::Stderr);
/// q.limit = 50;
/// assert_eq!(q.order, LogOrder::NewestFirst);
/// q.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// Tenant, app and environment (required).
    pub app: AppRef,
    /// Only this deployment.
    pub deployment: Option<DeploymentId>,
    /// Only this version.
    pub version: Option<u64>,
    /// Only lines at or after this time.
    pub from: Option<OffsetDateTime>,
    /// Only lines before this time.
    pub to: Option<OffsetDateTime>,
    /// Only this stream.
    pub stream: Option<LogSource>,
    /// Only lines containing this text, ignoring case (a substring, not
    /// words; no operators).
    pub text: Option<String>,
    /// At most this many lines (1 to [`MAX_PAGE_LINES`]).
    pub limit: usize,
    /// Continue after the page that returned this cursor (same query).
    pub cursor: Option<LogCursor>,
    /// Newest or oldest first.
    pub order: LogOrder,
}

impl LogQuery {
    /// Every line of `app`, newest first, 100 a page.
    pub fn new(app: AppRef) -> Self {
        Self {
            app,
            deployment: None,
            version: None,
            from: None,
            to: None,
            stream: None,
            text: None,
            limit: 100,
            cursor: None,
            order: LogOrder::default(),
        }
    }

    /// Checks the limit and the text; every store calls it first.
    pub fn validate(&self) -> Result<(), LogStoreError> {
        if self.limit == 0 || self.limit > MAX_PAGE_LINES {
            return Err(LogStoreError::invalid_query(
                "limit",
                format!("must be 1 to {MAX_PAGE_LINES}, got {}", self.limit),
            ));
        }
        if self.text.as_deref() == Some("") {
            return Err(LogStoreError::invalid_query("q", "must not be empty"));
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from > to
        {
            return Err(LogStoreError::invalid_query(
                "from",
                "must not be after `to`",
            ));
        }
        Ok(())
    }

    /// Whether `line` matches every filter (not the cursor). The memory
    /// store uses it, and tests hold the other stores to it.
    pub fn matches(&self, line: &StoredLine) -> bool {
        line.app == self.app
            && self.deployment.is_none_or(|d| d == line.deployment)
            && self.version.is_none_or(|v| v == line.version)
            && self.from.is_none_or(|f| line.timestamp >= f)
            && self.to.is_none_or(|t| line.timestamp < t)
            && self.stream.is_none_or(|s| s == line.stream)
            && self
                .text
                .as_deref()
                .is_none_or(|t| line.line.to_lowercase().contains(&t.to_lowercase()))
    }

    /// Whether `position` comes after the cursor in this query's order
    /// (true without a cursor).
    pub fn after_cursor(&self, position: &LogCursor) -> bool {
        match &self.cursor {
            None => true,
            Some(c) => match self.order {
                LogOrder::OldestFirst => position.key() > c.key(),
                LogOrder::NewestFirst => position.key() < c.key(),
            },
        }
    }
}

/// One page of lines, in the query's order, and where the next starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    /// The lines.
    pub lines: Vec<StoredLine>,
    /// Pass it as [`LogQuery::cursor`] for the next page; `None` when this
    /// page was the last.
    pub next: Option<LogCursor>,
}

/// Where a page ended: the position of its last line. Opaque to clients,
/// who get it as a string ([`Display`](fmt::Display) and
/// [`FromStr`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogCursor {
    /// Nanoseconds since the Unix epoch.
    pub(crate) timestamp: i64,
    pub(crate) deployment: DeploymentId,
    pub(crate) seq: u64,
}

impl LogCursor {
    /// The cursor after the line at this position.
    pub fn new(timestamp_nanos: i64, deployment: DeploymentId, seq: u64) -> Self {
        Self {
            timestamp: timestamp_nanos,
            deployment,
            seq,
        }
    }

    /// Nanoseconds since the Unix epoch of the last line of the page.
    pub fn timestamp_nanos(&self) -> i64 {
        self.timestamp
    }

    /// The deployment of that line.
    pub fn deployment(&self) -> DeploymentId {
        self.deployment
    }

    /// Its seq.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The sort key: time, deployment (as its UUID's bytes), seq.
    pub fn key(&self) -> (i64, [u8; 16], u64) {
        (
            self.timestamp,
            *self.deployment.as_uuid().as_bytes(),
            self.seq,
        )
    }
}

impl fmt::Display for LogCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "c1.{}.{}.{:x}",
            self.timestamp,
            self.deployment.as_uuid().simple(),
            self.seq
        )
    }
}

impl fmt::Debug for LogCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogCursor({self})")
    }
}

impl FromStr for LogCursor {
    type Err = LogStoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LogStoreError::InvalidCursor(s.chars().take(100).collect());
        let mut parts = s.split('.');
        if parts.next() != Some("c1") {
            return Err(bad());
        }
        let timestamp = parts
            .next()
            .and_then(|p| p.parse::<i64>().ok())
            .ok_or_else(bad)?;
        let deployment = parts
            .next()
            .and_then(|p| p.parse::<DeploymentId>().ok())
            .ok_or_else(bad)?;
        let seq = parts
            .next()
            .and_then(|p| u64::from_str_radix(p, 16).ok())
            .ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            timestamp,
            deployment,
            seq,
        })
    }
}

impl Serialize for LogCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LogCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a [`LogStore`](super::LogStore) ends for one deployment: what a
/// resumed forwarder needs to skip what is stored and number what is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePoint {
    /// The highest seq stored; the next line gets `last_seq + 1`.
    pub last_seq: u64,
    /// The newest stored line's time, in nanoseconds since the Unix epoch.
    pub last_timestamp: i64,
    /// How many stored lines have exactly that time: a re-read from that
    /// time skips as many lines of it.
    pub lines_at_last_timestamp: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_its_string_and_rejects_garbage() {
        let c = LogCursor::new(-5, DeploymentId::new_random(), 42);
        let back: LogCursor = c.to_string().parse().unwrap();
        assert_eq!(back, c);
        for bad in ["", "c1", "c2.1.2.3", "c1.zz.x.1", "c1.1.2.3.4"] {
            let e = bad.parse::<LogCursor>().unwrap_err();
            assert_eq!(e.code(), "invalid_cursor", "{bad}");
        }
    }

    #[test]
    fn nanos_round_trip_and_clamp() {
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::nanoseconds(1_234_567_891);
        assert_eq!(from_nanos(nanos(t)), t);
        let far = OffsetDateTime::new_utc(
            time::Date::from_calendar_date(9999, time::Month::January, 1).unwrap(),
            time::Time::MIDNIGHT,
        );
        assert_eq!(nanos(far), i64::MAX);
    }

    #[test]
    fn a_query_checks_its_limit_and_range() {
        let mut q = LogQuery::new(AppRef::parse("acme", "orders", "dev").unwrap());
        q.limit = 0;
        assert_eq!(q.validate().unwrap_err().code(), "invalid_query");
        q.limit = MAX_PAGE_LINES + 1;
        assert!(q.validate().unwrap_err().to_string().contains("limit"));
        q.limit = 10;
        q.from = Some(OffsetDateTime::now_utc());
        q.to = Some(OffsetDateTime::UNIX_EPOCH);
        assert!(q.validate().unwrap_err().to_string().contains("from"));
    }
}
