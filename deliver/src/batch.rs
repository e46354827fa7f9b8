//! One batch of stream entries, from a reader or the claimer: deliver to the store, then ack
//! what it stored; dead-letter what it refused as malformed `max_attempts` times; leave
//! everything else pending for a later retry — including what the store deferred because it
//! lacks the entry's key id or domain (a configuration mismatch, not a bad message).
//!
//! Order matters for "never lost, never duplicated": XACK happens only after the store
//! confirmed, and the store's upsert by `message_id` makes a re-delivery after a crash between
//! the two harmless.

use crate::Ctx;
use mb_shared::domains::Domain;
use mb_shared::internal::{
    DELIVER_PATH, DeliverIn, DeliverOut, Delivery, FAILED_PATH, FailedIn, Failure, ItemResult,
    Outcome,
};
use mb_shared::message::MessageId;
use mb_shared::streams::StreamEntry;
use mb_shared::streams::{self, GROUP};
use redis::streams::StreamId;
use std::time::Instant;

/// A stream entry to deliver, with the attempt number it is on.
#[derive(Clone)]
pub(crate) struct Pending {
    pub(crate) entry_id: String,
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) attempt: u32,
}

impl Pending {
    pub(crate) fn new(id: StreamId, attempt: u32) -> Self {
        Self {
            entry_id: id.id.clone(),
            fields: streams::into_entry_fields(id),
            attempt,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BatchError {
    #[error("store unavailable: {0}")]
    Store(#[from] mb_shared::internal::ClientError),
    #[error("store answered {got} results for {sent} messages")]
    StoreReply { sent: usize, got: usize },
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

pub(crate) async fn process(
    ctx: &Ctx,
    domain: &Domain,
    items: Vec<Pending>,
) -> Result<(), BatchError> {
    let (entry_ids, messages) = decode(ctx, domain, items).await?;
    if messages.is_empty() {
        return Ok(());
    }
    let (messages, results) = send(ctx, messages).await?;
    let verdicts = sort(ctx, entry_ids, messages, results);
    ack(ctx, domain, &verdicts.stored).await?;
    ctx.metrics.delivered.inc_by(verdicts.stored.len() as u64);
    if !verdicts.doomed.is_empty() {
        dead_letter(ctx, domain, verdicts.doomed).await?;
    }
    Ok(())
}

/// The entries as deliveries, with their stream ids; an entry that is not a message at all
/// goes straight to the dead-letter stream.
async fn decode(
    ctx: &Ctx,
    domain: &Domain,
    items: Vec<Pending>,
) -> Result<(Vec<String>, Vec<Delivery>), BatchError> {
    let mut entry_ids = Vec::with_capacity(items.len());
    let mut messages = Vec::with_capacity(items.len());
    for mut p in items {
        match StreamEntry::take_fields(&mut p.fields) {
            Ok(entry) => {
                entry_ids.push(p.entry_id);
                messages.push(Delivery {
                    entry,
                    attempt: p.attempt,
                });
            }
            Err(reason) => dead_letter_malformed(ctx, domain, &p, &reason).await?,
        }
    }
    Ok((entry_ids, messages))
}

/// One request to the store; its answer has a result per message, in order.
async fn send(
    ctx: &Ctx,
    messages: Vec<Delivery>,
) -> Result<(Vec<Delivery>, Vec<ItemResult>), BatchError> {
    ctx.metrics.batch_size.observe(messages.len() as f64);
    let request = DeliverIn { messages };
    let started = Instant::now();
    let reply: Result<DeliverOut, _> = ctx.store.post(DELIVER_PATH, &request).await;
    ctx.metrics
        .store_seconds
        .observe(started.elapsed().as_secs_f64());
    let reply = reply.inspect_err(|_| {
        ctx.metrics.store_errors.inc();
    })?;
    if reply.results.len() != request.messages.len() {
        ctx.metrics.store_errors.inc();
        return Err(BatchError::StoreReply {
            sent: request.messages.len(),
            got: reply.results.len(),
        });
    }
    Ok((request.messages, reply.results))
}

/// What to do with each message after the store answered.
struct Verdicts {
    /// Stored: ack (entry id, message id).
    stored: Vec<(String, MessageId)>,
    /// Refused at its last attempt: dead-letter.
    doomed: Vec<(String, Failure)>,
}

/// Everything neither stored nor doomed stays pending, to be claimed and retried.
fn sort(
    ctx: &Ctx,
    entry_ids: Vec<String>,
    messages: Vec<Delivery>,
    results: Vec<ItemResult>,
) -> Verdicts {
    let mut v = Verdicts {
        stored: Vec::with_capacity(messages.len()),
        doomed: Vec::new(),
    };
    for ((entry_id, delivery), result) in entry_ids.into_iter().zip(messages).zip(results) {
        if result.message_id != delivery.entry.message_id {
            // The store answered out of order: trust nothing, leave it pending.
            ctx.metrics.store_errors.inc();
            continue;
        }
        let error = result
            .error
            .unwrap_or_else(|| "store refused the message".into());
        match result.outcome {
            Outcome::Stored => {
                tracing::debug!(message_id = %delivery.entry.message_id,
                    request_id = delivery.entry.request_id.as_deref().unwrap_or("-"),
                    attempt = delivery.attempt, "stored; acknowledging");
                v.stored.push((entry_id, delivery.entry.message_id));
            }
            // A configuration mismatch (the store lacks the key id or domain): never a dead
            // letter; it stays pending until the store knows them.
            Outcome::Deferred => {
                ctx.metrics.deferred.inc();
                tracing::warn!(message_id = %delivery.entry.message_id,
                    request_id = delivery.entry.request_id.as_deref().unwrap_or("-"),
                    attempt = delivery.attempt, %error, "store cannot take the message yet (configuration mismatch); it stays pending");
            }
            Outcome::Rejected if delivery.attempt >= ctx.max_attempts => {
                ctx.metrics.rejected.inc();
                v.doomed.push((entry_id, Failure { delivery, error }));
            }
            Outcome::Rejected => {
                ctx.metrics.rejected.inc();
                tracing::warn!(message_id = %delivery.entry.message_id,
                    request_id = delivery.entry.request_id.as_deref().unwrap_or("-"),
                    attempt = delivery.attempt, %error, "store refused message; will retry");
            }
        }
    }
    v
}

/// `MULTI; XACK; XDEL; INCRBY delivered:<minute>; EXEC` for entries the store confirmed: the
/// count of deliveries per minute moves with the acks, in the same transaction.
async fn ack(ctx: &Ctx, domain: &Domain, stored: &[(String, MessageId)]) -> Result<(), BatchError> {
    if stored.is_empty() {
        return Ok(());
    }
    let key = streams::stream_key(domain);
    let ids: Vec<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    let minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60);
    let counter = streams::delivered_key(domain, minute);
    let mut con = ctx.ctl.clone();
    redis::pipe()
        .atomic()
        .cmd("XACK")
        .arg(&key)
        .arg(GROUP)
        .arg(&ids)
        .ignore()
        .cmd("XDEL")
        .arg(&key)
        .arg(&ids)
        .ignore()
        .cmd("INCRBY")
        .arg(&counter)
        .arg(ids.len())
        .ignore()
        .cmd("EXPIRE")
        .arg(&counter)
        .arg(streams::DELIVERED_KEY_TTL_SECS)
        .ignore()
        .query_async::<()>(&mut con)
        .await
        .inspect_err(|_| {
            ctx.metrics.redis_errors.inc();
        })?;
    Ok(())
}

/// Records the failures in the store, then moves each entry to the dead-letter stream in one
/// atomic step. If the store cannot record them, they stay pending and are retried.
async fn dead_letter(
    ctx: &Ctx,
    domain: &Domain,
    doomed: Vec<(String, Failure)>,
) -> Result<(), BatchError> {
    let request = FailedIn {
        messages: doomed.iter().map(|(_, f)| f.clone()).collect(),
    };
    ctx.store
        .post::<_, serde_json::Value>(FAILED_PATH, &request)
        .await
        .inspect_err(|_| {
            ctx.metrics.store_errors.inc();
        })?;
    for (entry_id, failure) in &doomed {
        let entry = &failure.delivery.entry;
        let mut fields: Vec<(&str, String)> = entry.to_fields();
        fields.push(("error", failure.error.clone()));
        fields.push(("attempts", failure.delivery.attempt.to_string()));
        fields.push(("failed_at", mb_shared::time::now_rfc3339()));
        fields.push(("source_id", entry_id.clone()));
        move_to_dead(ctx, domain, entry_id, &fields).await?;
        tracing::warn!(message_id = %entry.message_id,
            request_id = entry.request_id.as_deref().unwrap_or("-"),
            attempts = failure.delivery.attempt, error = %failure.error, "dead-lettered");
    }
    Ok(())
}

/// An entry that is not a valid message at all cannot be stored; it goes straight to the
/// dead-letter stream with its fields as they were.
async fn dead_letter_malformed(
    ctx: &Ctx,
    domain: &Domain,
    p: &Pending,
    reason: &str,
) -> Result<(), BatchError> {
    let mut fields: Vec<(&str, String)> = p
        .fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    fields.push(("error", format!("malformed stream entry: {reason}")));
    fields.push(("attempts", p.attempt.to_string()));
    fields.push(("failed_at", mb_shared::time::now_rfc3339()));
    fields.push(("source_id", p.entry_id.clone()));
    move_to_dead(ctx, domain, &p.entry_id, &fields).await?;
    tracing::warn!(entry_id = %p.entry_id, %reason, "malformed entry dead-lettered");
    Ok(())
}

async fn move_to_dead(
    ctx: &Ctx,
    domain: &Domain,
    entry_id: &str,
    fields: &[(&str, String)],
) -> Result<(), BatchError> {
    let mut inv = ctx.dead_script.prepare_invoke();
    inv.key(streams::stream_key(domain))
        .key(streams::dead_key(domain))
        .arg(GROUP)
        .arg(entry_id);
    for (k, v) in fields {
        inv.arg(*k).arg(v);
    }
    let mut con = ctx.ctl.clone();
    let moved: i64 = inv.invoke_async(&mut con).await.inspect_err(|_| {
        ctx.metrics.redis_errors.inc();
    })?;
    if moved == 1 {
        ctx.metrics.dead_lettered.inc();
    }
    Ok(())
}
