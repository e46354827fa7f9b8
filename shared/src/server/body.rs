//! Request bodies are read in full, within a size and a time limit, before any handler or
//! extractor runs.
//!
//! Why before: an answer given before the body was read (a 403 for the client's certificate, a
//! 413, a 429) reaches HTTP/2 clients only if the request stream is not reset first, and hyper
//! resets it (`RST_STREAM(CANCEL)`, which curl reports as no response at all) when the unread
//! body is dropped before the answer is sent. So every body is read here; one that is too large
//! is drained up to a bound and answered 413, one that is too slow is answered 408. Whatever
//! could not be drained (a body over the bound, or too slow) is kept alive until the answer has
//! been sent, so HTTP/2 then ends the stream with `NO_ERROR`, as RFC 9113 §8.1 asks.

use super::{ListenerMetrics, Refusal};
use crate::error_body::error_response;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The body rules of a group of routes (`axum::middleware::from_fn_with_state(limit, read_body)`).
#[derive(Clone)]
pub struct BodyLimit {
    pub max_bytes: usize,
    pub timeout: Duration,
    pub metrics: ListenerMetrics,
}

impl BodyLimit {
    /// How much of a too-large body is read (and discarded) before answering 413. Reading it
    /// costs only bandwidth (and `timeout` bounds the time), and clients need it: curl, for
    /// one, shows no answer at all when an HTTP/2 stream is reset while it is still uploading,
    /// even after a complete response.
    fn drain_cap(&self) -> usize {
        self.max_bytes.saturating_mul(4).max(16 << 20)
    }
}

enum Read {
    Complete(Bytes),
    TooLarge,
    TimedOut,
    Broken,
}

/// Middleware: reads the body, then runs the rest of the stack with it in memory.
pub async fn read_body(State(limit): State<BodyLimit>, req: Request, next: Next) -> Response {
    let (parts, mut body) = req.into_parts();
    let version = parts.version;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let read = if declared.is_some_and(|n| n > limit.drain_cap()) {
        Read::TooLarge
    } else {
        read_limited(&mut body, &limit, declared).await
    };
    match read {
        Read::Complete(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Read::TooLarge => {
            limit.metrics.refused(Refusal::BodyTooLarge);
            let resp = error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body exceeds {} bytes", limit.max_bytes),
                Default::default(),
            );
            hold_until_sent(resp, body)
        }
        Read::TimedOut => {
            limit.metrics.refused(Refusal::BodyTimeout);
            let mut resp = error_response(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    limit.timeout.as_secs_f64()
                ),
                Default::default(),
            );
            if version <= Version::HTTP_11 {
                resp.headers_mut()
                    .insert(header::CONNECTION, "close".parse().expect("valid header"));
            }
            hold_until_sent(resp, body)
        }
        Read::Broken => error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request body could not be read",
            Default::default(),
        ),
    }
}

async fn read_limited(body: &mut Body, limit: &BodyLimit, declared: Option<usize>) -> Read {
    let deadline = tokio::time::Instant::now() + limit.timeout;
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit.max_bytes));
    let mut seen = 0usize;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Read::TimedOut,
            Ok(None) => break,
            Ok(Some(Err(_))) => return Read::Broken,
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    seen += data.len();
                    if seen <= limit.max_bytes {
                        buf.extend_from_slice(&data);
                    } else if seen > limit.drain_cap() {
                        return Read::TooLarge;
                    }
                }
            }
        }
    }
    if seen > limit.max_bytes {
        Read::TooLarge
    } else {
        Read::Complete(buf.into())
    }
}

/// Keeps the unread request body until the response has been sent.
fn hold_until_sent(resp: Response, request_body: Body) -> Response {
    keep_until_sent(resp, request_body)
}

/// Keeps `thing` alive until the response body has been sent (or dropped unsent).
pub(crate) fn keep_until_sent<T: Send + Unpin + 'static>(resp: Response, thing: T) -> Response {
    resp.map(|inner| {
        Body::new(Held {
            inner,
            _kept: thing,
        })
    })
}

struct Held<T> {
    inner: Body,
    _kept: T,
}

impl<T: Send + Unpin + 'static> http_body::Body for Held<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        // `inner` is an axum `Body` (Unpin); the kept value is never pinned.
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::post;
    use tower::ServiceExt;

    fn app(max_bytes: usize, timeout: Duration) -> Router {
        let limit = BodyLimit {
            max_bytes,
            timeout,
            metrics: ListenerMetrics::default(),
        };
        Router::new()
            .route("/", post(|b: Bytes| async move { b.len().to_string() }))
            .layer(axum::middleware::from_fn_with_state(limit, read_body))
    }

    async fn status_of(app: Router, body: Body) -> (StatusCode, String) {
        let resp = app
            .oneshot(Request::post("/").body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&text).into_owned())
    }

    #[tokio::test]
    async fn a_body_within_the_limit_reaches_the_handler() {
        let (s, t) = status_of(app(10, Duration::from_secs(1)), Body::from("0123456789")).await;
        assert_eq!((s, t.as_str()), (StatusCode::OK, "10"));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_answered_413_in_json() {
        let (s, t) = status_of(app(10, Duration::from_secs(1)), Body::from("01234567890")).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(t.contains("\"payload_too_large\""), "{t}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_is_answered_408() {
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, axum::Error>>(1);
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"{"))))
            .await
            .unwrap();
        let body = Body::new(http_body_util::StreamBody::new(tokio_stream_from(rx)));
        let (s, t) = status_of(app(100, Duration::from_secs(2)), body).await;
        assert_eq!(s, StatusCode::REQUEST_TIMEOUT);
        assert!(t.contains("request_timeout"), "{t}");
        drop(tx);
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures::Stream<Item = T> + Send {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
