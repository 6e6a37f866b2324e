//! The logs of an app that runs several instances: one stream of every
//! instance's lines.

use futures::StreamExt;

use crate::{LogLine, LogStream, Result};

/// Merges the line streams of several instances, each in time order, into
/// one in time order (ties go to the earlier stream). Memory holds one line
/// per stream. An error is passed on as soon as a stream yields it.
///
/// For streams that end (reading what was written so far); a followed
/// stream that waits for its next line would hold the others back, so
/// merge followed streams in arrival order instead
/// ([`futures::stream::select_all()`]).
///
/// ```
/// use cameleer_runtime::{LogLine, LogSource, instance_logs::merge_in_time_order};
/// use futures::StreamExt;
///
/// let line = |s: i64, i: u32| Ok(LogLine {
///     ts: time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s),
///     stream: LogSource::Stdout,
///     line: format!("{s}"),
///     instance: Some(i),
/// });
/// let a = futures::stream::iter(vec![line(1, 0), line(4, 0)]).boxed();
/// let b = futures::stream::iter(vec![line(2, 1), line(3, 1)]).boxed();
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let merged: Vec<String> = merge_in_time_order(vec![a, b])
///     .map(|l| l.unwrap().line)
///     .collect()
///     .await;
/// assert_eq!(merged, ["1", "2", "3", "4"]);
/// # });
/// ```
pub fn merge_in_time_order(streams: Vec<LogStream>) -> LogStream {
    if streams.len() == 1 {
        return streams.into_iter().next().expect("one stream");
    }
    struct Head {
        stream: LogStream,
        next: Option<Result<LogLine>>,
    }
    let state: (Vec<Head>, bool) = (
        streams
            .into_iter()
            .map(|stream| Head { stream, next: None })
            .collect(),
        false,
    );
    futures::stream::unfold(state, |(mut heads, mut primed)| async move {
        if !primed {
            for h in &mut heads {
                h.next = h.stream.next().await;
            }
            heads.retain(|h| h.next.is_some());
            primed = true;
        }
        let pick = heads
            .iter()
            .enumerate()
            .min_by_key(|(i, h)| match &h.next {
                // An error first, then the earliest line.
                Some(Err(_)) => (0, None, *i),
                Some(Ok(line)) => (1, Some(line.ts), *i),
                None => (2, None, *i),
            })
            .map(|(i, _)| i)?;
        let item = heads[pick].next.take()?;
        heads[pick].next = heads[pick].stream.next().await;
        if heads[pick].next.is_none() {
            heads.remove(pick);
        }
        Some((item, (heads, primed)))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, LogSource};

    fn at(s: i64, i: u32) -> Result<LogLine> {
        Ok(LogLine {
            ts: time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s),
            stream: LogSource::Stdout,
            line: format!("{i}@{s}"),
            instance: Some(i),
        })
    }

    #[tokio::test]
    async fn three_instances_merge_in_time_order_and_nothing_is_lost() {
        let streams = vec![
            futures::stream::iter(vec![at(1, 0), at(5, 0), at(9, 0)]).boxed(),
            futures::stream::iter(vec![at(2, 1), at(5, 1)]).boxed(),
            futures::stream::iter(Vec::new()).boxed(),
            futures::stream::iter(vec![at(0, 2), at(10, 2)]).boxed(),
        ];
        let merged: Vec<String> = merge_in_time_order(streams)
            .map(|l| l.unwrap().line)
            .collect()
            .await;
        assert_eq!(merged, ["2@0", "0@1", "1@2", "0@5", "1@5", "0@9", "2@10"]);
    }

    #[tokio::test]
    async fn an_error_is_passed_on() {
        let streams = vec![
            futures::stream::iter(vec![at(1, 0)]).boxed(),
            futures::stream::iter(vec![Err(Error::not_found("app", "x"))]).boxed(),
        ];
        let merged: Vec<Result<LogLine>> = merge_in_time_order(streams).collect().await;
        assert_eq!(merged.len(), 2);
        assert!(merged[0].is_err());
    }
}
