//! Request ids: one id per HTTP request, in every log line written while handling it and in
//! the `X-Request-Id` answer header. Ingest also writes it into the stream entry
//! (`StreamEntry::request_id`), so deliver's and the store's lines about the message carry the
//! same id: `grep <id>` over the JSON logs of all services follows one submission end to end.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

/// The id of the request being handled (a request extension).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The client's `X-Request-Id` if it is 1–64 characters of `[A-Za-z0-9._:-]` (anything else
/// could forge log lines), else a new random id.
pub fn choose(offered: Option<&str>) -> String {
    offered
        .filter(|s| {
            (1..=64).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        })
        .map_or_else(
            || hex::encode(crate::crypto::random_bytes::<12>()),
            str::to_owned,
        )
}

/// Middleware: gives the request its id and runs the rest of it in a `request` span. The span
/// is at `debug` level (`RUST_LOG=…,mb_shared=debug` puts the id in every line of a request):
/// an `info` span costs ingest about 14 µs a message, over half of what a submit costs. At any
/// level, a request that ends in a 5xx is logged with its id.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = choose(req.headers().get(HEADER).and_then(|v| v.to_str().ok()));
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::debug_span!("request", request_id = %id);
    let mut resp = next.run(req).instrument(span).await;
    if resp.status().is_server_error() {
        tracing::warn!(request_id = %id, status = resp.status().as_u16(), "request failed");
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::choose;

    #[test]
    fn a_clean_offered_id_is_kept_anything_else_replaced() {
        assert_eq!(choose(Some("req-42.a:b_c")), "req-42.a:b_c");
        for bad in ["", "a b", "x\ny", "ü", &"a".repeat(65)] {
            let id = choose(Some(bad));
            assert_eq!(id.len(), 24, "{bad:?} -> {id}");
            assert_ne!(id, bad);
        }
        assert_ne!(choose(None), choose(None));
    }
}
