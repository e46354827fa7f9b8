//! `POST /api/v1/messages` and `GET /api/v1/messages/{id}`.
//!
//! A submission is validated, its body encrypted and its sender number HMAC'd, then enqueued
//! with the atomic submit script; 202 is answered only after Redis acknowledged it.

use crate::AppState;
use crate::caller::Caller;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use mb_shared::internal::StatusOut;
use mb_shared::message::{MessageId, MessageIn, StreamEntry, mask_sender};
use mb_shared::streams;
use std::sync::Arc;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/messages", post(submit))
        .route("/api/v1/messages/{id}", get(status))
}

#[derive(Debug, serde::Serialize)]
pub struct MessageOut {
    pub message_id: MessageId,
    pub status: &'static str,
    pub domain: String,
    pub queued_at: String,
}

const IDEMPOTENCY_HEADER: &str = "idempotency-key";

async fn submit(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<MessageOut>), ApiError> {
    let started = std::time::Instant::now();
    let result = enqueue(&app, &caller, &headers, body).await;
    let status = match &result {
        Ok(_) => 202,
        Err(e) => e.status().as_u16(),
    };
    app.metrics
        .responses
        .get_or_create(&crate::metrics::StatusLabel { status })
        .inc();
    app.metrics
        .submit_seconds
        .observe(started.elapsed().as_secs_f64());
    result.map(|out| (StatusCode::ACCEPTED, Json(out)))
}

async fn enqueue(
    app: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<MessageOut, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge {
                limit: app.max_body_bytes,
            }
        } else {
            ApiError::MalformedJson(e.body_text())
        }
    })?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let msg = MessageIn::from_json(&value).map_err(ApiError::Validation)?;
    let idempotency_key = idempotency_key(headers)?;

    let message_id = MessageId::issue(&app.hmac, &caller.client_id);
    let entry = StreamEntry {
        message_id,
        client_id: caller.client_id.clone(),
        domain: caller.domain.clone(),
        queued_at: message_id
            .created_at()
            .unwrap_or_else(mb_shared::now_rfc3339),
        submitted_at: msg.timestamp.clone(),
        sender_hash: app.hmac.sender_hash(&msg.sender_number),
        sender_mask: mask_sender(&msg.sender_number),
        body: app.keyring.encrypt(
            message_id.to_string().as_bytes(),
            msg.message_body.as_bytes(),
        ),
    };
    let limited = app
        .rate_limiter
        .check(
            &app.redis,
            &caller.domain,
            &caller.common_name,
            &caller.client_id,
        )
        .await?;
    if let Err(l) = limited {
        app.metrics.rate_limited.inc();
        return Err(ApiError::RateLimited {
            retry_after_secs: l.retry_after_secs,
        });
    }
    if app.backlog.is_full(&caller.domain) {
        return Err(ApiError::QueueFull);
    }
    let out = MessageOut {
        message_id,
        status: "queued",
        domain: caller.domain.to_string(),
        queued_at: entry.queued_at.clone(),
    };
    match &idempotency_key {
        None => {
            let mut con = app.redis.clone();
            let _: String = redis::cmd("XADD")
                .arg(streams::stream_key(&caller.domain))
                .arg("*")
                .arg(entry.to_fields())
                .query_async(&mut con)
                .await?;
        }
        Some(key) => {
            if let Some(first) = submit_idempotent(app, caller, key, &msg, &entry).await? {
                return Ok(first);
            }
        }
    }
    app.metrics.accepted.inc();
    tracing::debug!(%message_id, domain = %caller.domain, "accepted");
    Ok(out)
}

/// Enqueues with the idempotency record in one atomic script. Returns the first message when
/// the key was seen before with the same request; a different request under it is a conflict.
async fn submit_idempotent(
    app: &AppState,
    caller: &Caller,
    key: &str,
    msg: &MessageIn,
    entry: &StreamEntry,
) -> Result<Option<MessageOut>, ApiError> {
    let fingerprint = app.hmac.hex(&[
        b"request",
        msg.sender_number.as_bytes(),
        msg.message_body.as_bytes(),
        msg.timestamp.as_deref().unwrap_or("").as_bytes(),
    ]);
    let hashed_key = app.hmac.hex(&[b"idempotency-key", key.as_bytes()]);
    let mut inv = app.submit_script.prepare_invoke();
    inv.key(streams::stream_key(&caller.domain))
        .key(streams::idempotency_key(
            &caller.domain,
            caller.client_id.as_str(),
            &hashed_key,
        ))
        .arg(app.idempotency_ttl_secs)
        .arg(format!(
            "{fingerprint} {} {}",
            entry.message_id, entry.queued_at
        ));
    for (k, v) in entry.to_fields() {
        inv.arg(k).arg(v);
    }
    let mut con = app.redis.clone();
    let reply: Vec<String> = inv.invoke_async(&mut con).await?;
    match reply.first().map(String::as_str) {
        Some("ok") => Ok(None),
        Some("dup") => {
            let prev = reply.get(1).map(String::as_str).unwrap_or_default();
            let mut parts = prev.splitn(3, ' ');
            match (
                parts.next(),
                parts.next().and_then(MessageId::parse),
                parts.next(),
            ) {
                (Some(fp), Some(id), Some(at)) if fp == fingerprint => Ok(Some(MessageOut {
                    message_id: id,
                    status: "queued",
                    domain: caller.domain.to_string(),
                    queued_at: at.to_owned(),
                })),
                _ => Err(ApiError::IdempotencyConflict),
            }
        }
        _ => Err(ApiError::Redis(redis::RedisError::from((
            redis::ErrorKind::Client,
            "unexpected reply from submit script",
        )))),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    match raw.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 => Ok(Some(k.to_owned())),
        _ => Err(ApiError::Validation(
            [(
                "Idempotency-Key".to_owned(),
                "must be 1 to 255 visible ASCII characters".to_owned(),
            )]
            .into(),
        )),
    }
}

async fn status(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<StatusOut>, ApiError> {
    let id = MessageId::parse(&id).ok_or(ApiError::NotFound)?;
    let path = format!(
        "{}/{id}?client_id={}",
        mb_shared::internal::MESSAGES_PATH,
        caller.client_id
    );
    match app.store.get::<StatusOut>(&path).await {
        Ok(s) => Ok(Json(s)),
        // Not in the store yet: if ingest issued this id to this caller, it is still queued
        // (an acknowledged message is never dropped); otherwise it is not theirs to ask about.
        Err(e) if e.is_not_found() && id.is_issued_to(&app.hmac, &caller.client_id) => {
            let queued_at = id.created_at().unwrap_or_default();
            Ok(Json(StatusOut {
                message_id: id,
                client_id: caller.client_id,
                status: "queued".into(),
                attempt_count: 0,
                queued_at: queued_at.clone(),
                delivered_at: None,
                updated_at: queued_at,
            }))
        }
        Err(e) if e.is_not_found() => Err(ApiError::NotFound),
        Err(e) => Err(e.into()),
    }
}
