//! Ending the endless streams when the server shuts down.
//!
//! A graceful shutdown waits for every response to finish, and a log
//! follow or an event stream never does. The routes that stream without
//! end mark their response with [`EndsOnShutdown`]; the layer
//! [`end_streams_on`] cuts the body of a marked response when the
//! [`CancellationToken`] is cancelled, after one last line that says why:
//! an NDJSON `{"error": {"code": "shutting_down", …}}` line, or an SSE
//! `error` event with the same data. Every other response runs to its end.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use cameleer_runtime::Error;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::ApiError;

/// The marker of a response whose body streams until the client leaves
/// (a log follow, an event stream): it ends when the server shuts down.
#[derive(Debug, Clone, Copy)]
pub struct EndsOnShutdown;

/// Marks `response` as one that streams without end.
pub(crate) fn endless(mut response: Response) -> Response {
    response.extensions_mut().insert(EndsOnShutdown);
    response
}

/// The middleware (`axum::middleware::from_fn_with_state(token,
/// end_streams_on)`): the bodies of responses marked [`EndsOnShutdown`]
/// end when `shutdown` is cancelled, with a last `shutting_down` error.
pub async fn end_streams_on(
    State(shutdown): State<CancellationToken>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if response.extensions().get::<EndsOnShutdown>().is_none() {
        return response;
    }
    let sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let (parts, body) = response.into_parts();
    let cut = shutdown.clone();
    let last = futures::stream::once(async move { cut.is_cancelled() })
        .filter_map(move |cut| std::future::ready(cut.then(|| Ok(last_words(sse)))));
    let body = body
        .into_data_stream()
        .take_until(shutdown.cancelled_owned())
        .chain(last);
    Response::from_parts(parts, Body::from_stream(body))
}

/// The last line of a stream cut by a shutdown.
fn last_words(sse: bool) -> Bytes {
    let error = ApiError::from(Error::ShuttingDown);
    let json = serde_json::to_string(&error.body()).unwrap_or_default();
    Bytes::from(if sse {
        format!("event: error\ndata: {json}\n\n")
    } else {
        format!("{json}\n")
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use axum::Router;
    use axum::middleware::from_fn_with_state;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    /// A route whose marked body of `content_type` ticks without end.
    fn ticking(content_type: &'static str) -> axum::routing::MethodRouter {
        get(move || async move {
            let ticks =
                futures::stream::repeat_with(|| Ok::<_, Infallible>(Bytes::from("{\"tick\":1}\n")))
                    .then(|t| async {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        t
                    });
            endless(
                (
                    [(header::CONTENT_TYPE, content_type)],
                    Body::from_stream(ticks),
                )
                    .into_response(),
            )
        })
    }

    fn router(token: CancellationToken) -> Router {
        Router::new()
            .route("/endless", ticking("application/x-ndjson"))
            .route("/sse", ticking("text/event-stream"))
            .route("/finite", get(|| async { "whole answer" }))
            .layer(from_fn_with_state(token, end_streams_on))
    }

    async fn body_of(router: Router, path: &str, token: &CancellationToken) -> String {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let cancel = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cancel.cancel();
        });
        let bytes = tokio::time::timeout(
            Duration::from_secs(10),
            axum::body::to_bytes(response.into_body(), usize::MAX),
        )
        .await
        .expect("the stream ends on shutdown")
        .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn an_endless_ndjson_stream_ends_with_a_shutting_down_line() {
        let token = CancellationToken::new();
        let body = body_of(router(token.clone()), "/endless", &token).await;
        let lines: Vec<&str> = body.lines().collect();
        assert!(lines.len() >= 2, "{body}");
        assert!(
            lines[..lines.len() - 1]
                .iter()
                .all(|l| *l == "{\"tick\":1}"),
            "{body}"
        );
        let last: serde_json::Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
        assert_eq!(last["error"]["code"], "shutting_down", "{body}");
    }

    #[tokio::test]
    async fn an_sse_stream_ends_with_an_error_event() {
        let token = CancellationToken::new();
        let body = body_of(router(token.clone()), "/sse", &token).await;
        assert!(
            body.ends_with("event: error\ndata: {\"error\":{\"code\":\"shutting_down\",\"message\":\"the platform is shutting down\"}}\n\n"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn other_responses_are_left_whole() {
        let token = CancellationToken::new();
        token.cancel();
        let body = body_of(router(token.clone()), "/finite", &token).await;
        assert_eq!(body, "whole answer");
    }
}
