//! `POST /api/v1/messages` and `GET /api/v1/messages/{id}`.
//!
//! A submission goes through four steps: **parse** (content type, JSON, validation, the
//! `Idempotency-Key` header), **admit** (a repeated idempotency key is answered from its record
//! before anything else, so a retry of an accepted message never meets a rate limit or a full
//! queue; then the client's rate limit and the domain's back-pressure), **build** the stream
//! entry (body encrypted, sender number HMAC'd), and **append** it to the domain's stream. 202 is
//! answered only after Redis acknowledged the append.

use crate::AppState;
use crate::caller::Caller;
use crate::error::ApiError;
use crate::ratelimit::Bucket;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use mb_shared::domains::Domain;
use mb_shared::internal::StatusOut;
use mb_shared::message::{MessageId, MessageIn, mask_sender};
use mb_shared::server::request_id::RequestId;
use mb_shared::streams;
use mb_shared::streams::StreamEntry;
use std::sync::Arc;

pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/messages", post(submit))
        .route("/api/v1/messages/{id}", get(status))
}

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct MessageOut {
    pub(crate) message_id: MessageId,
    pub(crate) status: &'static str,
    pub(crate) domain: String,
    pub(crate) queued_at: String,
}

const IDEMPOTENCY_HEADER: &str = "idempotency-key";

async fn submit(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<MessageOut>), ApiError> {
    let started = std::time::Instant::now();
    let request_id = request_id.map(|Extension(r)| r.0);
    let result = enqueue(&app, &caller, request_id, &headers, &body).await;
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
    request_id: Option<String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<MessageOut, ApiError> {
    let (msg, key) = parse(headers, body)?;
    let idempotency = key.map(|k| Idempotency::new(app, caller, &k, &msg));
    if let Some(idem) = &idempotency
        && let Some(first) = idem.lookup(app, caller).await?
    {
        return Ok(first);
    }
    admit(app, caller, Bucket::Submit).await?;
    if app.backlog.is_full(&caller.domain) {
        return Err(ApiError::QueueFull);
    }
    let entry = build_entry(app, caller, &msg, request_id);
    append(app, caller, &entry, idempotency.as_ref()).await
}

/// The validated message and its `Idempotency-Key`, if any.
fn parse(headers: &HeaderMap, body: &[u8]) -> Result<(MessageIn, Option<String>), ApiError> {
    if !mb_shared::extract::is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let msg = MessageIn::from_json(&value).map_err(ApiError::Validation)?;
    Ok((msg, idempotency_key(headers)?))
}

/// Takes one request from the client's allowance, or refuses it with 429.
pub(crate) async fn admit(app: &AppState, caller: &Caller, bucket: Bucket) -> Result<(), ApiError> {
    let limited = app
        .rate_limiter
        .check(&app.redis, caller, bucket)
        .await
        .map_err(ApiError::Redis)?;
    if let Err(l) = limited {
        app.metrics.rate_limited.inc();
        return Err(ApiError::RateLimited {
            retry_after_secs: l.retry_after_secs,
        });
    }
    Ok(())
}

pub(crate) fn build_entry(
    app: &AppState,
    caller: &Caller,
    msg: &MessageIn,
    request_id: Option<String>,
) -> StreamEntry {
    let message_id = MessageId::issue(&app.hmac, &caller.client_id);
    StreamEntry {
        message_id,
        client_id: caller.client_id.clone(),
        domain: caller.domain.clone(),
        queued_at: message_id
            .created_at()
            .unwrap_or_else(mb_shared::time::now_rfc3339),
        submitted_at: msg.timestamp.clone(),
        sender_hash: app.hmac.sender_hash(&msg.sender_number),
        sender_mask: mask_sender(&msg.sender_number),
        body: app.keyring.get().encrypt(
            message_id.to_string().as_bytes(),
            msg.message_body.as_bytes(),
        ),
        request_id,
    }
}

/// Appends the entry: a plain XADD, or with an idempotency key the submit script, which
/// records the key and appends in one atomic step (and answers with the first message if
/// another request with the same key got there first). With `redis_wait_replicas`, the same
/// pipeline waits for the replicas (see [`with_wait`]).
async fn append(
    app: &AppState,
    caller: &Caller,
    entry: &StreamEntry,
    idempotency: Option<&Idempotency>,
) -> Result<MessageOut, ApiError> {
    let out = MessageOut {
        message_id: entry.message_id,
        status: "queued",
        domain: caller.domain.to_string(),
        queued_at: entry.queued_at.clone(),
    };
    let stream = streams::stream_key(&caller.domain);
    let keyed = idempotency.is_some();
    let pipeline = || {
        let mut pipe = redis::pipe();
        match idempotency {
            None => {
                pipe.cmd("XADD")
                    .arg(&stream)
                    .arg("*")
                    .arg(entry.to_fields());
            }
            Some(idem) => {
                let cmd = pipe
                    .cmd("EVALSHA")
                    .arg(app.submit_script.get_hash())
                    .arg(2)
                    .arg(&stream)
                    .arg(&idem.redis_key)
                    .arg(app.idempotency_ttl_secs)
                    .arg(idem.record(entry));
                for (k, v) in entry.to_fields() {
                    cmd.arg(k).arg(v);
                }
            }
        }
        with_wait(app, &mut pipe, &caller.domain, keyed);
        pipe
    };
    let mut con = app.redis.get();
    let replies: redis::RedisResult<Vec<redis::Value>> =
        match pipeline().query_async(&mut con).await {
            // Nothing was sent (see RedisPool::recover).
            Err(e) if app.redis.recover(&con, &e).await => pipeline().query_async(&mut con).await,
            other => other,
        };
    let mut replies: Vec<redis::Value> = match replies {
        // Redis restarted (or failed over) without its script cache: nothing was applied.
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            app.submit_script
                .load_async(&mut con)
                .await
                .map_err(ApiError::Redis)?;
            pipeline().query_async(&mut con).await
        }
        other => other,
    }
    .map_err(|e| write_error(e, keyed))?;
    let wait = take_wait_reply(app, &mut replies);
    replicated(app, wait, keyed)?;
    let reply = replies.into_iter().next().unwrap_or(redis::Value::Nil);
    if let Some(idem) = idempotency {
        let reply: Vec<String> = redis::from_redis_value(reply).unwrap_or_default();
        match reply.first().map(String::as_str) {
            Some("ok") => {}
            Some("dup") => {
                return idem.first_message(reply.get(1).map(String::as_str), caller);
            }
            _ => {
                return Err(ApiError::Redis(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "unexpected reply from submit script",
                ))));
            }
        }
    }
    app.metrics.accepted.inc();
    tracing::debug!(message_id = %entry.message_id, domain = %caller.domain, "accepted");
    Ok(out)
}

/// With `redis_wait_replicas`, a write counts only once that many replicas hold it, so a
/// master that dies after the 202 cannot take the message with it. The wait goes at the end
/// of the same pipeline as the write, so it runs on the connection and the node that applied
/// it (a pipeline the cluster client sends again after a failover is sent again whole): a
/// marker write (`INCR mb:{domain}:wait`) moves the connection's replication offset past
/// everything before it — also past a repeated key's record, which the submit script only
/// reads — and `WAIT n timeout` returns once n replicas have that offset.
///
/// The marker is only needed where the pipeline may not write (`reads_only`: a repeated key,
/// or the submit script, which only reads a record it finds); an `XADD` moves the offset
/// itself, and a `PING` takes the marker's place so the replies keep their layout.
pub(crate) fn with_wait(
    app: &AppState,
    pipe: &mut redis::Pipeline,
    domain: &Domain,
    reads_only: bool,
) {
    if app.wait_replicas > 0 {
        if reads_only {
            pipe.cmd("INCR").arg(streams::wait_marker_key(domain));
        } else {
            pipe.cmd("PING");
        }
        pipe.cmd("WAIT")
            .arg(app.wait_replicas)
            .arg(app.wait_timeout.as_millis() as u64);
    }
}

/// Takes the replies [`with_wait`] added off the end: WAIT's (the marker's or PING's is dropped).
pub(crate) fn take_wait_reply<T>(app: &AppState, replies: &mut Vec<T>) -> Option<T> {
    if app.wait_replicas == 0 {
        return None;
    }
    let wait = replies.pop();
    replies.pop();
    wait
}

/// Whether enough replicas confirmed; when they did not within `redis_wait_timeout`, the
/// write is in the stream but may not survive a failover, so the answer is "outcome unknown",
/// not "accepted".
pub(crate) fn replicated(
    app: &AppState,
    wait_reply: Option<redis::Value>,
    keyed: bool,
) -> Result<(), ApiError> {
    if app.wait_replicas == 0 {
        return Ok(());
    }
    let got: u32 = wait_reply
        .and_then(|v| redis::from_redis_value(v).ok())
        .unwrap_or(0);
    if got < app.wait_replicas {
        app.metrics.not_replicated.inc();
        return Err(not_replicated(keyed));
    }
    Ok(())
}

/// "Outcome unknown": the write is in the stream, fewer replicas than asked confirmed it.
pub(crate) fn not_replicated(keyed: bool) -> ApiError {
    ApiError::OutcomeUnknown {
        source: redis::RedisError::from((
            redis::ErrorKind::Io,
            "fewer replicas than redis_wait_replicas confirmed the write in time",
        )),
        keyed,
    }
}

/// A failed write to Redis. An error reply or a refused connection means nothing was applied;
/// a timeout or a connection lost mid-command may have been applied, so the outcome is unknown
/// (a client that sent an `Idempotency-Key` finds out by retrying with it).
pub(crate) fn write_error(e: redis::RedisError, keyed: bool) -> ApiError {
    if e.is_io_error() && !e.is_connection_refusal() {
        ApiError::OutcomeUnknown { source: e, keyed }
    } else {
        ApiError::Redis(e)
    }
}

/// An `Idempotency-Key` of one client: where its record lives and what it must match.
pub(crate) struct Idempotency {
    pub(crate) redis_key: String,
    /// HMAC of the request, so a different message under the same key is a conflict.
    fingerprint: String,
}

impl Idempotency {
    pub(crate) fn new(app: &AppState, caller: &Caller, key: &str, msg: &MessageIn) -> Self {
        let fingerprint = app.hmac.hex(&[
            b"request",
            msg.sender_number.as_bytes(),
            msg.message_body.as_bytes(),
            msg.timestamp.as_deref().unwrap_or("").as_bytes(),
        ]);
        let hashed_key = app.hmac.hex(&[b"idempotency-key", key.as_bytes()]);
        Self {
            redis_key: streams::idempotency_key(
                &caller.domain,
                caller.client_id.as_str(),
                &hashed_key,
            ),
            fingerprint,
        }
    }

    /// The record kept for the key: `<fingerprint> <message id> <queued at>`.
    pub(crate) fn record(&self, entry: &StreamEntry) -> String {
        format!(
            "{} {} {}",
            self.fingerprint, entry.message_id, entry.queued_at
        )
    }

    /// The message first accepted under this key, if there is one.
    async fn lookup(
        &self,
        app: &AppState,
        caller: &Caller,
    ) -> Result<Option<MessageOut>, ApiError> {
        let mut con = app.redis.get();
        let prev: Option<String> = redis::cmd("GET")
            .arg(&self.redis_key)
            .query_async(&mut con)
            .await
            .map_err(ApiError::Redis)?;
        if prev.is_none() || app.wait_replicas == 0 {
            return prev
                .map(|p| self.first_message(Some(&p), caller))
                .transpose();
        }
        // A repeat is answered 202 only once the first message is on the replicas too: read
        // the record again, with the wait, on the node that holds it.
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&self.redis_key);
        with_wait(app, &mut pipe, &caller.domain, true);
        let mut replies: Vec<redis::Value> = pipe
            .query_async(&mut con)
            .await
            .map_err(|e| write_error(e, true))?;
        let wait = take_wait_reply(app, &mut replies);
        let record: Option<String> = replies.pop().and_then(|v| redis::from_redis_value(v).ok());
        let Some(record) = record else {
            // Gone (a failover lost it before it reached the replica): a new submission.
            return Ok(None);
        };
        replicated(app, wait, true)?;
        self.first_message(Some(&record), caller).map(Some)
    }

    /// The answer for a repeated key: the first message, or 409 if the request differs.
    pub(crate) fn first_message(
        &self,
        record: Option<&str>,
        caller: &Caller,
    ) -> Result<MessageOut, ApiError> {
        let mut parts = record.unwrap_or_default().splitn(3, ' ');
        match (
            parts.next(),
            parts.next().and_then(MessageId::parse),
            parts.next(),
        ) {
            (Some(fp), Some(id), Some(at)) if fp == self.fingerprint => Ok(MessageOut {
                message_id: id,
                status: "queued",
                domain: caller.domain.to_string(),
                queued_at: at.to_owned(),
            }),
            _ => Err(ApiError::IdempotencyConflict),
        }
    }
}

/// 1 to 255 visible ASCII characters (what an HTTP header value may carry).
pub(crate) fn valid_idempotency_key(k: &str) -> bool {
    (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    match raw.to_str() {
        Ok(k) if valid_idempotency_key(k) => Ok(Some(k.to_owned())),
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
    admit(&app, &caller, Bucket::Status).await?;
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
                status: mb_shared::status::MessageStatus::Queued,
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
