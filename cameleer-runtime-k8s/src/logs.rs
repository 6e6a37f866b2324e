//! The logs of an app's pods: every replica, since a time, following new
//! lines, each line stamped by the kubelet.
//!
//! Kubernetes merges a container's stdout and stderr into one log, so every
//! line is [`LogSource::Stdout`]. When the app has more than one pod, each
//! line starts with `[{pod}] ` and carries the pod's place among the app's
//! pods (oldest first) as its instance, so the replicas can be told apart.
//! Memory stays bounded: lines are read one at a time (a line longer than
//! [`MAX_LINE_BYTES`] is cut there), without following the pods' lines are
//! merged in time order holding one line per pod, and when following each
//! pod's stream is read only as fast as the caller reads.

use std::time::SystemTime;

use cameleer_runtime::{LogLine, LogOptions, LogSource, LogStream};
use futures::io::AsyncBufRead;
use futures::{AsyncBufReadExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::LogParams;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::api::Kube;
use crate::error::K8sError;
use crate::workload::CONTAINER;

/// The longest line kept, in bytes; the rest of a longer line is dropped.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Splits a line of a log read with `timestamps=true` into its time and
/// text: `2026-01-01T00:00:00.123456789Z [app] line 1`.
pub fn parse_line(raw: &str) -> (Option<OffsetDateTime>, &str) {
    match raw.split_once(' ') {
        Some((ts, text)) => match OffsetDateTime::parse(ts, &Rfc3339) {
            Ok(at) => (Some(at), text),
            Err(_) => (None, raw),
        },
        None => match OffsetDateTime::parse(raw, &Rfc3339) {
            Ok(at) => (Some(at), ""),
            Err(_) => (None, raw),
        },
    }
}

/// The log parameters of `options`: the app's container, timestamps, and
/// `since` rounded down to the second (the API's precision; finer is
/// filtered here).
pub fn log_params(options: &LogOptions) -> LogParams {
    let since_time = options.since.and_then(|since| {
        let secs = since.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
        Timestamp::from_second(i64::try_from(secs).ok()?).ok()
    });
    LogParams {
        container: Some(CONTAINER.to_string()),
        follow: options.follow,
        since_time,
        timestamps: true,
        ..LogParams::default()
    }
}

/// Reads lines of at most [`MAX_LINE_BYTES`] from `reader`.
fn bounded_lines<R: AsyncBufRead + Unpin + Send + 'static>(
    reader: R,
) -> impl Stream<Item = std::io::Result<String>> + Send {
    futures::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut line: Vec<u8> = Vec::new();
        loop {
            let buf = match reader.fill_buf().await {
                Ok(buf) => buf,
                Err(e) => return Some((Err(e), None)),
            };
            if buf.is_empty() {
                if line.is_empty() {
                    return None;
                }
                return Some((Ok(String::from_utf8_lossy(&line).into_owned()), None));
            }
            let (chunk, done) = match memchr(buf) {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            let room = MAX_LINE_BYTES.saturating_sub(line.len());
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let used = done.unwrap_or(buf.len());
            reader.consume_unpin(used);
            if done.is_some() {
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_string();
                return Some((Ok(text), Some(reader)));
            }
        }
    })
}

fn memchr(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|b| *b == b'\n')
}

/// The lines of one pod's log, from `since`, each prefixed with `prefix`
/// and tagged with `instance`.
pub(crate) fn pod_lines<R: AsyncBufRead + Unpin + Send + 'static>(
    reader: R,
    since: Option<SystemTime>,
    prefix: Option<String>,
    instance: Option<u32>,
) -> impl Stream<Item = cameleer_runtime::Result<LogLine>> + Send {
    let since = since.map(OffsetDateTime::from);
    bounded_lines(reader).filter_map(move |line| {
        let prefix = prefix.clone();
        async move {
            let raw = match line {
                Ok(raw) => raw,
                Err(e) => {
                    return Some(Err(cameleer_runtime::Error::backend(
                        "reading a pod's log",
                        e,
                    )));
                }
            };
            let (at, text) = parse_line(&raw);
            if let (Some(since), Some(at)) = (since, at)
                && at < since
            {
                return None;
            }
            Some(Ok(LogLine {
                ts: at.unwrap_or_else(OffsetDateTime::now_utc),
                stream: LogSource::Stdout,
                line: match prefix {
                    Some(p) => format!("{p}{text}"),
                    None => text.to_string(),
                },
                instance,
            }))
        }
    })
}

/// Whether a pod has a container that ran (one still waiting to start has
/// no log yet).
fn has_log(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .any(|c| {
            c.name == CONTAINER
                && (c.restart_count > 0
                    || c.state
                        .as_ref()
                        .is_some_and(|s| s.running.is_some() || s.terminated.is_some()))
        })
}

/// The logs of `pods` (sorted oldest first), as one stream.
pub(crate) async fn logs_of(
    kube: &Kube,
    mut pods: Vec<Pod>,
    options: &LogOptions,
) -> cameleer_runtime::Result<LogStream> {
    pods.retain(has_log);
    pods.sort_by(|a, b| {
        (&a.metadata.creation_timestamp, &a.metadata.name)
            .cmp(&(&b.metadata.creation_timestamp, &b.metadata.name))
    });
    let named = pods.len() > 1;
    let params = log_params(options);
    let mut streams = Vec::with_capacity(pods.len());
    for (index, pod) in pods.iter().enumerate() {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let reader = match kube.log_stream(&ns, &name, &params).await {
            Ok(r) => r,
            // Gone or not started since the list: nothing to read.
            Err(K8sError::NotFound { .. } | K8sError::Rejected { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let prefix = named.then(|| format!("[{name}] "));
        // Pods have names, not indexes: the instance is the pod's place
        // among the app's pods, oldest first.
        let instance = u32::try_from(index).ok();
        streams.push(pod_lines(reader, options.since, prefix, instance).boxed());
    }
    Ok(if options.follow {
        futures::stream::select_all(streams).boxed()
    } else {
        cameleer_runtime::instance_logs::merge_in_time_order(streams)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_kubelets_time() {
        let (at, text) = parse_line("2026-01-01T00:00:01.5Z [app] line 1");
        assert_eq!(text, "[app] line 1");
        assert_eq!(at.unwrap().unix_timestamp(), 1_767_225_601);
        assert_eq!(parse_line("no time here"), (None, "no time here"));
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_since_is_exact() {
        let long = "x".repeat(MAX_LINE_BYTES + 100);
        let text = format!(
            "2026-01-01T00:00:00.2Z early\n2026-01-01T00:00:00.9Z {long}\n2026-01-01T00:00:01Z last"
        );
        let since = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_767_225_600_500);
        let lines: Vec<LogLine> = pod_lines(
            futures::io::Cursor::new(text.into_bytes()),
            Some(since),
            Some("[p] ".into()),
            Some(1),
        )
        .map(|l| l.unwrap())
        .collect()
        .await;
        assert_eq!(lines.len(), 2);
        assert!(lines[0].line.starts_with("[p] xxx"));
        assert!(lines.iter().all(|l| l.instance == Some(1)));
        // The timestamp and the space count against the limit.
        assert!(lines[0].line.len() <= MAX_LINE_BYTES + 4);
        assert_eq!(lines[1].line, "[p] last");
    }
}
