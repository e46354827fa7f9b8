//! The claimer: `XAUTOCLAIM <stream> deliver <consumer> <retry_interval> <cursor> COUNT n`,
//! with the cursor carried forward (each call scans at most COUNT×10 pending entries), so
//! entries left pending by a failed attempt or a dead worker are retried. The attempt number
//! is the delivery count from the pending list. Entries the reply lists as deleted are logged
//! and counted.

use crate::Ctx;
use crate::backoff::{Backoff, sleep_or_stop};
use crate::batch::{self, Pending};
use mb_shared::domains::Domain;
use mb_shared::streams::{self, GROUP};
use redis::AsyncCommands;
use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamPendingCountReply};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;

pub(crate) async fn run(ctx: Arc<Ctx>, domain: Domain, mut stop: watch::Receiver<bool>) {
    let key = streams::stream_key(&domain);
    let mut cursor = "0-0".to_owned();
    let mut backoff = Backoff::new(ctx.max_backoff);
    let min_idle = ctx.retry_interval.as_millis() as u64;
    loop {
        if *stop.borrow() {
            return;
        }
        let mut con = ctx.ctl.clone();
        let opts = StreamAutoClaimOptions::default().count(ctx.batch_size);
        let reply: redis::RedisResult<StreamAutoClaimReply> = con
            .xautoclaim_options(&key, GROUP, &ctx.consumer, min_idle, &cursor, opts)
            .await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) if e.code() == Some("NOGROUP") => {
                crate::reader::recreate_group(&ctx, &domain).await;
                continue;
            }
            Err(e) => {
                ctx.metrics.redis_errors.inc();
                tracing::warn!(%domain, error = %e, "XAUTOCLAIM failed");
                backoff.wait(&mut stop).await;
                continue;
            }
        };
        cursor = reply.next_stream_id;
        if !reply.deleted_ids.is_empty() {
            ctx.metrics
                .claim_deleted
                .inc_by(reply.deleted_ids.len() as u64);
            tracing::warn!(%domain, ids = ?reply.deleted_ids,
                "pending entries were deleted from the stream before delivery");
        }
        if !reply.claimed.is_empty() {
            ctx.metrics.claimed.inc_by(reply.claimed.len() as u64);
            match retry(&ctx, &domain, &key, reply.claimed).await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    tracing::warn!(%domain, error = %e, "claimed batch left pending for retry");
                    backoff.wait(&mut stop).await;
                    continue;
                }
            }
        }
        if cursor == "0-0" && sleep_or_stop(ctx.claim_interval, &mut stop).await {
            return;
        }
    }
}

async fn retry(
    ctx: &Ctx,
    domain: &Domain,
    key: &str,
    claimed: Vec<redis::streams::StreamId>,
) -> Result<(), batch::BatchError> {
    let attempts = delivery_counts(ctx, key, &claimed).await?;
    let items: Vec<Pending> = claimed
        .into_iter()
        .map(|id| {
            let attempt = attempts.get(&id.id).copied().unwrap_or(2);
            Pending::new(id, attempt)
        })
        .collect();
    if items.len() == 1 {
        return batch::process(ctx, domain, items).await;
    }
    let singles: Vec<Pending> = items.clone();
    match batch::process(ctx, domain, items).await {
        // The store answered but refused the whole batch (not an outage): retry one by one, so
        // that a single entry it cannot take gets its own answer instead of holding back its
        // neighbours on every retry. Stop at the first sign of an outage.
        Err(batch::BatchError::Store(e)) if e.is_definite_failure() => {
            tracing::warn!(%domain, error = %e, "claimed batch failed as a whole; retrying entries one by one");
            let mut last = Ok(());
            for p in singles {
                match batch::process(ctx, domain, vec![p]).await {
                    Err(batch::BatchError::Store(e)) if !e.is_definite_failure() => {
                        return Err(batch::BatchError::Store(e));
                    }
                    Err(e) => last = Err(e),
                    Ok(()) => {}
                }
            }
            last
        }
        other => other,
    }
}

/// The pending list's delivery count of each claimed entry (one pipelined round trip).
async fn delivery_counts(
    ctx: &Ctx,
    key: &str,
    claimed: &[redis::streams::StreamId],
) -> redis::RedisResult<HashMap<String, u32>> {
    let mut pipe = redis::pipe();
    for id in claimed {
        pipe.cmd("XPENDING")
            .arg(key)
            .arg(GROUP)
            .arg(&id.id)
            .arg(&id.id)
            .arg(1);
    }
    let mut con = ctx.ctl.clone();
    let replies: Vec<StreamPendingCountReply> = pipe.query_async(&mut con).await?;
    Ok(replies
        .into_iter()
        .flat_map(|r| r.ids)
        .map(|p| (p.id, p.times_delivered as u32))
        .collect())
}
