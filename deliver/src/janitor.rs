//! Removes consumers that are gone: idle longer than `remove_idle_consumers_after` and holding
//! no pending entries. A consumer with pending entries is never removed (XGROUP DELCONSUMER
//! would drop them from the pending list); the claimer moves them away first.
//!
//! The check and the removal are one Lua script ([`streams::REMOVE_IDLE_CONSUMER`]): read
//! separately, a consumer could read new entries between the check and the removal and lose
//! them from the pending list. The script answers how many pending entries the removal dropped,
//! which is counted and can only be 0.

use crate::Ctx;
use crate::backoff::sleep_or_stop;
use mb_shared::domains::Domain;
use mb_shared::streams::{self, GROUP};
use redis::AsyncCommands;
use redis::streams::StreamInfoConsumersReply;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub(crate) async fn run(ctx: Arc<Ctx>, domain: Domain, mut stop: watch::Receiver<bool>) {
    let every = (ctx.remove_idle_consumers_after / 4)
        .clamp(Duration::from_secs(1), Duration::from_secs(300));
    while !sleep_or_stop(every, &mut stop).await {
        if let Err(e) = sweep(&ctx, &domain).await {
            tracing::debug!(%domain, error = %e, "janitor sweep failed");
        }
    }
}

async fn sweep(ctx: &Ctx, domain: &Domain) -> redis::RedisResult<()> {
    let key = streams::stream_key(domain);
    let mut con = ctx.ctl.clone();
    let info: StreamInfoConsumersReply = con.xinfo_consumers(&key, GROUP).await?;
    let idle_ms = ctx.remove_idle_consumers_after.as_millis() as usize;
    for c in info.consumers {
        if c.name != ctx.consumer && c.pending == 0 && c.idle >= idle_ms {
            remove_if_idle(ctx, domain, &c.name, idle_ms).await?;
        }
    }
    Ok(())
}

/// Removes `consumer` if, at this moment, it holds nothing and has been idle `idle_ms`.
async fn remove_if_idle(
    ctx: &Ctx,
    domain: &Domain,
    consumer: &str,
    idle_ms: usize,
) -> redis::RedisResult<()> {
    let mut con = ctx.ctl.clone();
    let dropped: i64 = ctx
        .janitor_script
        .key(streams::stream_key(domain))
        .arg(GROUP)
        .arg(consumer)
        .arg(idle_ms)
        .invoke_async(&mut con)
        .await?;
    match dropped {
        -1 => {}
        0 => tracing::info!(%domain, %consumer, "removed idle consumer"),
        n => {
            ctx.metrics.janitor_dropped.inc_by(n as u64);
            tracing::error!(%domain, %consumer, dropped = n, "removing a consumer dropped pending entries");
        }
    }
    Ok(())
}

/// On shutdown: leave the group if nothing is pending for this consumer.
pub(crate) async fn remove_self_if_idle(ctx: &Ctx, domain: &Domain) {
    let _ = remove_if_idle(ctx, domain, &ctx.consumer, 0).await;
}
