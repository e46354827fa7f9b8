//! The ingest API's errors: one match from variant to status code and JSON body. Redis and
//! store errors are logged with their text and answered generically. Two kinds of 503 are told
//! apart: `queue_unavailable` (nothing was accepted) and `outcome_unknown` (Redis may have
//! applied the write but did not confirm it; retry with the same `Idempotency-Key`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mb_shared::error_body::error_response;
use mb_shared::message::FieldErrors;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("unsupported content type")]
    UnsupportedMediaType,
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("idempotency key reused with a different request")]
    IdempotencyConflict,
    #[error("stream full")]
    QueueFull,
    #[error("too many messages in a batch")]
    BatchTooLarge { max: usize },
    #[error("access list not loaded")]
    AccessListNotLoaded,
    #[error("certificate unknown and the access list cannot be refreshed")]
    AccessListStale,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("redis unavailable: {0}")]
    Redis(redis::RedisError),
    #[error("redis did not confirm the write: {source}")]
    OutcomeUnknown {
        source: redis::RedisError,
        /// Whether the request carried an `Idempotency-Key` to retry with.
        keyed: bool,
    },
    #[error("store unavailable: {0}")]
    Store(#[from] mb_shared::internal::ClientError),
}

impl ApiError {
    /// The one place that maps a variant to its HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::IdempotencyConflict => StatusCode::CONFLICT,
            ApiError::BatchTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::QueueFull
            | ApiError::AccessListNotLoaded
            | ApiError::AccessListStale
            | ApiError::Redis(_)
            | ApiError::OutcomeUnknown { .. }
            | ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            ApiError::RateLimited { retry_after_secs } => Some(retry_after_secs.to_string()),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some("1".to_owned()),
            _ => None,
        };
        let (code, message, fields) = self.describe();
        let mut resp = error_response(status, code, message, fields);
        if let Some(secs) = retry_after.and_then(|s| HeaderValue::from_str(&s).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, secs);
        }
        resp
    }
}

impl ApiError {
    /// The error as one message's result in a batch answer.
    pub(crate) fn detail(self) -> mb_shared::error_body::ErrorDetail {
        let (code, message, fields) = self.describe();
        mb_shared::error_body::ErrorDetail {
            code: code.to_owned(),
            message,
            fields,
        }
    }

    /// The body's `code`, `message` and `fields`. Internal failures are logged here with their
    /// text and described to the client in general terms.
    fn describe(self) -> (&'static str, String, FieldErrors) {
        match self {
            ApiError::MalformedJson(m) => (
                "malformed_json",
                format!("request body is not valid JSON: {m}"),
                FieldErrors::new(),
            ),
            ApiError::UnsupportedMediaType => (
                "unsupported_media_type",
                "Content-Type must be application/json".to_owned(),
                [(
                    "content-type".to_owned(),
                    "must be application/json".to_owned(),
                )]
                .into(),
            ),
            ApiError::Validation(fields) => (
                "validation_failed",
                "the message is invalid; see fields".to_owned(),
                fields,
            ),
            ApiError::Forbidden(m) => ("forbidden", m, FieldErrors::new()),
            ApiError::NotFound => (
                "not_found",
                "no such message".to_owned(),
                FieldErrors::new(),
            ),
            ApiError::IdempotencyConflict => (
                "idempotency_conflict",
                "this Idempotency-Key was used for a different message".to_owned(),
                FieldErrors::new(),
            ),
            ApiError::RateLimited { retry_after_secs } => (
                "rate_limited",
                format!("too many requests from this client; retry after {retry_after_secs} s"),
                FieldErrors::new(),
            ),
            ApiError::AccessListNotLoaded => (
                "starting",
                "ingest has not loaded the access list from the store yet; retry later".to_owned(),
                FieldErrors::new(),
            ),
            ApiError::AccessListStale => (
                "cannot_verify",
                "this certificate is not in the access list ingest holds, and the store cannot be \
                 asked for a newer one right now; retry later"
                    .to_owned(),
                FieldErrors::new(),
            ),
            ApiError::BatchTooLarge { max } => (
                "batch_too_large",
                format!("a batch holds at most {max} messages; split it"),
                [("messages".to_owned(), format!("at most {max} messages"))].into(),
            ),
            ApiError::QueueFull => (
                "queue_full",
                "the domain's queue is full; retry later".to_owned(),
                FieldErrors::new(),
            ),
            ApiError::Redis(e) => {
                tracing::warn!(error = %e, "redis unavailable");
                (
                    "queue_unavailable",
                    "the queue is unavailable; nothing was accepted, retry later".to_owned(),
                    FieldErrors::new(),
                )
            }
            ApiError::OutcomeUnknown { source, keyed } => {
                tracing::warn!(error = %source, "redis did not confirm a write");
                let advice = if keyed {
                    "Retry with the same Idempotency-Key to find out without creating a duplicate"
                } else {
                    "A retry may store it twice; send an Idempotency-Key with every message so \
                     that retries are safe"
                };
                (
                    "outcome_unknown",
                    format!(
                        "the queue did not confirm in time: the message may or may not have been \
                         accepted. {advice}"
                    ),
                    FieldErrors::new(),
                )
            }
            ApiError::Store(e) => {
                tracing::warn!(error = %e, "store unavailable");
                (
                    "store_unavailable",
                    "message status is unavailable; retry later".to_owned(),
                    FieldErrors::new(),
                )
            }
        }
    }
}
