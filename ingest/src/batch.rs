//! `POST /api/v1/messages/batch`: up to `max_batch` messages in one request, for clients that
//! send a lot. Each message is checked on its own — the valid ones are accepted even when
//! others are refused — and may carry its own `idempotency_key`; the rate limit counts
//! messages, not requests. Every accepted message goes to Redis in one pipelined round trip,
//! and the answer, 207, has one result per message, in order: `202` with the message id as a
//! single submit answers it, or the message's own status and error.
//!
//! Refused as a whole (nothing accepted): a body that is not JSON or has no `messages` array
//! (400/422), more than `max_batch` messages (413), a full queue, Redis unavailable (503).

use crate::AppState;
use crate::caller::Caller;
use crate::error::ApiError;
use crate::messages::{Idempotency, MessageOut, build_entry, write_error};
use crate::ratelimit::Bucket;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mb_shared::message::MessageIn;
use mb_shared::server::request_id::RequestId;
use mb_shared::streams::{self, StreamEntry};
use std::sync::Arc;

pub(crate) const PATH: &str = "/api/v1/messages/batch";

/// One message's result in the answer.
#[derive(Debug, serde::Serialize)]
struct ItemOut {
    index: usize,
    /// The HTTP status a single submit of this message would have had: 202 when it is queued.
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<mb_shared::message::MessageId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queued_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<mb_shared::error_body::ErrorDetail>,
}

#[derive(Debug, serde::Serialize)]
struct BatchOut {
    accepted: usize,
    refused: usize,
    results: Vec<ItemOut>,
}

/// A valid message on its way to the stream.
struct Item {
    index: usize,
    msg: MessageIn,
    idempotency: Option<Idempotency>,
}

pub(crate) async fn submit(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    request_id: Option<axum::Extension<RequestId>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let request_id = request_id.map(|axum::Extension(r)| r.0);
    let result = enqueue(&app, &caller, request_id, &headers, &body).await;
    let status = match &result {
        Ok(_) => 207,
        Err(e) => e.status().as_u16(),
    };
    app.metrics
        .batch_responses
        .get_or_create(&crate::metrics::StatusLabel { status })
        .inc();
    app.metrics
        .batch_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(out) => (StatusCode::MULTI_STATUS, Json(out)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn enqueue(
    app: &AppState,
    caller: &Caller,
    request_id: Option<String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<BatchOut, ApiError> {
    let values = parse(app, headers, body)?;
    let mut results: Vec<Option<Result<MessageOut, ApiError>>> =
        std::iter::repeat_with(|| None).take(values.len()).collect();
    app.metrics.batch_messages.observe(values.len() as f64);
    let mut items = Vec::with_capacity(values.len());
    for (index, v) in values.into_iter().enumerate() {
        match item(app, caller, index, v) {
            Ok(item) => items.push(item),
            Err(e) => results[index] = Some(Err(e)),
        }
    }
    // Repeated idempotency keys are answered from their records, before any limit.
    let items = answer_repeats(app, caller, items, &mut results).await?;
    // The rate limit counts messages; those beyond the allowance get 429.
    let (allowed, limited) = app
        .rate_limiter
        .take(&app.redis, caller, Bucket::Submit, items.len() as u64)
        .await
        .map_err(ApiError::Redis)?;
    let (items, over) = split_at(items, allowed as usize);
    if let Some(l) = limited {
        app.metrics.rate_limited.inc_by(over.len() as u64);
        for it in over {
            results[it.index] = Some(Err(ApiError::RateLimited {
                retry_after_secs: l.retry_after_secs,
            }));
        }
    }
    if !items.is_empty() && app.backlog.is_full(&caller.domain) {
        return Err(ApiError::QueueFull);
    }
    let entries: Vec<StreamEntry> = items
        .iter()
        .map(|it| build_entry(app, caller, &it.msg, request_id.clone()))
        .collect();
    append_all(app, caller, &items, &entries, &mut results).await?;
    Ok(answer(results))
}

/// The `messages` array, between 1 and `max_batch` long.
fn parse(
    app: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<serde_json::Value>, ApiError> {
    if !mb_shared::extract::is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let invalid = || {
        ApiError::Validation(
            [(
                "messages".to_owned(),
                format!(
                    "must be an array of 1 to {} messages",
                    app.max_batch_messages
                ),
            )]
            .into(),
        )
    };
    let serde_json::Value::Array(values) = value
        .get_mut("messages")
        .map(serde_json::Value::take)
        .ok_or_else(invalid)?
    else {
        return Err(invalid());
    };
    if values.is_empty() {
        return Err(invalid());
    }
    if values.len() > app.max_batch_messages {
        return Err(ApiError::BatchTooLarge {
            max: app.max_batch_messages,
        });
    }
    Ok(values)
}

/// One message of the batch, validated, with its idempotency key.
fn item(
    app: &AppState,
    caller: &Caller,
    index: usize,
    mut v: serde_json::Value,
) -> Result<Item, ApiError> {
    // The key is the batch's own field; the rest is a message as a single submit takes it.
    let key = v.as_object_mut().and_then(|o| o.remove("idempotency_key"));
    let msg = MessageIn::from_json(&v);
    let key = match key {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(k)) if crate::messages::valid_idempotency_key(&k) => {
            Ok(Some(k))
        }
        Some(_) => Err((
            "idempotency_key".to_owned(),
            "must be 1 to 255 visible ASCII characters".to_owned(),
        )),
    };
    let msg = match (msg, key) {
        (Ok(msg), Ok(key)) => (msg, key),
        (Err(mut fields), Err((k, m))) => {
            fields.insert(k, m);
            return Err(ApiError::Validation(fields));
        }
        (Err(fields), Ok(_)) => return Err(ApiError::Validation(fields)),
        (Ok(_), Err(field)) => return Err(ApiError::Validation([field].into())),
    };
    let (msg, key) = msg;
    Ok(Item {
        index,
        idempotency: key.map(|k| Idempotency::new(app, caller, &k, &msg)),
        msg,
    })
}

/// Looks up every idempotency key of the batch in one round trip; a key seen before is
/// answered with its first message (or 409), and the rest go on.
async fn answer_repeats(
    app: &AppState,
    caller: &Caller,
    items: Vec<Item>,
    results: &mut [Option<Result<MessageOut, ApiError>>],
) -> Result<Vec<Item>, ApiError> {
    let keyed: Vec<&Item> = items.iter().filter(|i| i.idempotency.is_some()).collect();
    if keyed.is_empty() {
        return Ok(items);
    }
    let mut pipe = redis::pipe();
    for it in &keyed {
        pipe.get(&it.idempotency.as_ref().expect("keyed").redis_key);
    }
    let mut con = app.redis.get();
    let records: Vec<Option<String>> = pipe.query_async(&mut con).await.map_err(ApiError::Redis)?;
    let mut seen: std::collections::HashMap<usize, String> = keyed
        .iter()
        .zip(records)
        .filter_map(|(it, r)| r.map(|r| (it.index, r)))
        .collect();
    if !seen.is_empty() && app.wait_replicas > 0 {
        // Repeats are answered 202 only once their first messages are on the replicas too:
        // their records are read again with the wait, on the node that holds them.
        let repeats: Vec<&Item> = keyed
            .iter()
            .copied()
            .filter(|it| seen.contains_key(&it.index))
            .collect();
        let mut pipe = redis::pipe();
        for it in &repeats {
            pipe.get(&it.idempotency.as_ref().expect("keyed").redis_key);
        }
        crate::messages::with_wait(app, &mut pipe, &caller.domain, true);
        let mut replies: Vec<redis::Value> = pipe
            .query_async(&mut con)
            .await
            .map_err(|e| write_error(e, true))?;
        let wait = crate::messages::take_wait_reply(app, &mut replies);
        let confirmed = crate::messages::replicated(app, wait, true);
        seen.clear();
        let mut unconfirmed = std::collections::HashSet::new();
        for (it, record) in repeats.iter().zip(replies) {
            // A record gone (lost in a failover) makes the message a new submission.
            let Ok(record) = redis::from_redis_value::<String>(record) else {
                continue;
            };
            if confirmed.is_ok() {
                seen.insert(it.index, record);
            } else {
                results[it.index] = Some(Err(crate::messages::not_replicated(true)));
                unconfirmed.insert(it.index);
            }
        }
        let items = items
            .into_iter()
            .filter(|it| !unconfirmed.contains(&it.index))
            .collect();
        return Ok(drop_seen(items, &seen, results, caller));
    }
    Ok(drop_seen(items, &seen, results, caller))
}

/// Answers the items whose key was `seen` from their records; returns the others.
fn drop_seen(
    items: Vec<Item>,
    seen: &std::collections::HashMap<usize, String>,
    results: &mut [Option<Result<MessageOut, ApiError>>],
    caller: &Caller,
) -> Vec<Item> {
    items
        .into_iter()
        .filter(|it| match (seen.get(&it.index), &it.idempotency) {
            (Some(record), Some(idem)) => {
                results[it.index] = Some(idem.first_message(Some(record), caller));
                false
            }
            _ => true,
        })
        .collect()
}

fn split_at(mut items: Vec<Item>, n: usize) -> (Vec<Item>, Vec<Item>) {
    let rest = items.split_off(n.min(items.len()));
    (items, rest)
}

/// Appends every entry in one pipeline: `XADD` for plain messages, the submit script for keyed
/// ones. A reply lost on the way (timeout, connection dropped) leaves every outcome unknown and
/// is answered 503 as a whole, like a single submit; an error reply refuses only its message.
async fn append_all(
    app: &AppState,
    caller: &Caller,
    items: &[Item],
    entries: &[StreamEntry],
    results: &mut [Option<Result<MessageOut, ApiError>>],
) -> Result<(), ApiError> {
    if items.is_empty() {
        return Ok(());
    }
    let stream = streams::stream_key(&caller.domain);
    let keyed = items.iter().any(|i| i.idempotency.is_some());
    let mut replies = pipeline(app, caller, &stream, items, entries).await;
    if keyed
        && let Ok(r) = &replies
        && r.iter().any(|r| matches!(r, Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)))
    {
        // Redis restarted without its script cache: nothing keyed was applied; load it, retry.
        let mut con = app.redis.get();
        app.submit_script
            .load_async(&mut con)
            .await
            .map_err(ApiError::Redis)?;
        replies = pipeline(app, caller, &stream, items, entries).await;
    }
    let mut replies = replies.map_err(|e| write_error(e, keyed))?;
    let wait = crate::messages::take_wait_reply(app, &mut replies);
    crate::messages::replicated(app, wait.and_then(Result::ok), keyed)?;
    let mut accepted = 0;
    for ((it, entry), reply) in items.iter().zip(entries).zip(replies) {
        let out = MessageOut {
            message_id: entry.message_id,
            status: "queued",
            domain: caller.domain.to_string(),
            queued_at: entry.queued_at.clone(),
        };
        results[it.index] = Some(match (reply, &it.idempotency) {
            (Ok(_), None) => {
                accepted += 1;
                Ok(out)
            }
            (Ok(v), Some(idem)) => {
                let reply: Vec<String> = redis::from_redis_value(v).unwrap_or_default();
                match reply.first().map(String::as_str) {
                    Some("ok") => {
                        accepted += 1;
                        Ok(out)
                    }
                    Some("dup") => idem.first_message(reply.get(1).map(String::as_str), caller),
                    _ => Err(ApiError::Redis(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "unexpected reply from submit script",
                    )))),
                }
            }
            (Err(e), _) => Err(ApiError::Redis(e)),
        });
    }
    app.metrics.accepted.inc_by(accepted);
    tracing::debug!(domain = %caller.domain, accepted, "batch appended");
    Ok(())
}

async fn pipeline(
    app: &AppState,
    caller: &Caller,
    stream: &str,
    items: &[Item],
    entries: &[StreamEntry],
) -> redis::RedisResult<Vec<redis::RedisResult<redis::Value>>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for (it, entry) in items.iter().zip(entries) {
        match &it.idempotency {
            None => {
                pipe.cmd("XADD").arg(stream).arg("*").arg(entry.to_fields());
            }
            Some(idem) => {
                let cmd = pipe
                    .cmd("EVALSHA")
                    .arg(app.submit_script.get_hash())
                    .arg(2)
                    .arg(stream)
                    .arg(&idem.redis_key)
                    .arg(app.idempotency_ttl_secs)
                    .arg(idem.record(entry));
                for (k, v) in entry.to_fields() {
                    cmd.arg(k).arg(v);
                }
            }
        }
    }
    let keyed = items.iter().any(|it| it.idempotency.is_some());
    crate::messages::with_wait(app, &mut pipe, &caller.domain, keyed);
    let mut con = app.redis.get();
    match pipe.query_async(&mut con).await {
        // Nothing was sent (see RedisPool::recover).
        Err(e) if app.redis.recover(&con, &e).await => pipe.query_async(&mut con).await,
        other => other,
    }
}

fn answer(results: Vec<Option<Result<MessageOut, ApiError>>>) -> BatchOut {
    let mut accepted = 0;
    let results: Vec<ItemOut> = results
        .into_iter()
        .enumerate()
        .map(|(index, r)| match r.expect("every message has a result") {
            Ok(out) => {
                accepted += 1;
                ItemOut {
                    index,
                    status: 202,
                    message_id: Some(out.message_id),
                    domain: Some(out.domain),
                    queued_at: Some(out.queued_at),
                    error: None,
                }
            }
            Err(e) => ItemOut {
                index,
                status: e.status().as_u16(),
                message_id: None,
                domain: None,
                queued_at: None,
                error: Some(e.detail()),
            },
        })
        .collect();
    BatchOut {
        accepted,
        refused: results.len() - accepted,
        results,
    }
}
