//! Removes consumers that are gone: idle longer than `remove_idle_consumers_after` and holding
//! no pending entries. A consumer with pending entries is never removed (XGROUP DELCONSUMER
//! would drop them from the pending list); the claimer moves them away first.

use crate::Ctx;
use crate::backoff::sleep_or_stop;
use mb_shared::message::Domain;
use mb_shared::streams::{self, GROUP};
use redis::AsyncCommands;
use redis::streams::StreamInfoConsumersReply;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub async fn run(ctx: Arc<Ctx>, domain: Domain, mut stop: watch::Receiver<bool>) {
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
            let _: i64 = con.xgroup_delconsumer(&key, GROUP, &c.name).await?;
            tracing::info!(%domain, consumer = %c.name, "removed idle consumer");
        }
    }
    Ok(())
}

/// On shutdown: leave the group if nothing is pending for this consumer.
pub async fn remove_self_if_idle(ctx: &Ctx, domain: &Domain) {
    let key = streams::stream_key(domain);
    let mut con = ctx.ctl.clone();
    let info: redis::RedisResult<StreamInfoConsumersReply> = con.xinfo_consumers(&key, GROUP).await;
    let Ok(info) = info else { return };
    if info
        .consumers
        .iter()
        .any(|c| c.name == ctx.consumer && c.pending == 0)
    {
        let _: redis::RedisResult<i64> = con.xgroup_delconsumer(&key, GROUP, &ctx.consumer).await;
    }
}
