//! A reader: `XREADGROUP GROUP deliver <consumer> COUNT n BLOCK t STREAMS <stream> >` on a
//! connection of its own with no response timeout (a blocking read must neither trip the
//! client's timeout nor stall the shared multiplexed connection), then hands the batch on.

use crate::Ctx;
use crate::backoff::Backoff;
use crate::batch::{self, Pending};
use mb_shared::message::Domain;
use mb_shared::streams::{self, GROUP};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use std::sync::Arc;
use tokio::sync::watch;

pub async fn run(ctx: Arc<Ctx>, domain: Domain, mut stop: watch::Receiver<bool>) {
    let key = streams::stream_key(&domain);
    let mut con: Option<MultiplexedConnection> = None;
    let mut backoff = Backoff::new(ctx.max_backoff);
    let opts = StreamReadOptions::default()
        .group(GROUP, &ctx.consumer)
        .count(ctx.batch_size)
        .block(ctx.block.as_millis() as usize);
    // A blocked read returns within `block`; anything far longer means a dead connection.
    let read_deadline = ctx.block + ctx.redis_timeout + std::time::Duration::from_secs(5);
    while !*stop.borrow() {
        let c = match con.as_mut() {
            Some(c) => c,
            None => match connect(&ctx).await {
                Ok(c) => con.insert(c),
                Err(e) => {
                    ctx.metrics.redis_errors.inc();
                    tracing::warn!(%domain, error = %e, "cannot connect to redis");
                    backoff.wait(&mut stop).await;
                    continue;
                }
            },
        };
        let read = tokio::time::timeout(
            read_deadline,
            c.xread_options::<_, _, Option<StreamReadReply>>(&[&key], &[">"], &opts),
        )
        .await;
        let reply = match read {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) if e.code() == Some("NOGROUP") => {
                recreate_group(&ctx, &domain).await;
                continue;
            }
            Ok(Err(e)) => {
                ctx.metrics.redis_errors.inc();
                tracing::warn!(%domain, error = %e, "XREADGROUP failed");
                con = None;
                backoff.wait(&mut stop).await;
                continue;
            }
            Err(_) => {
                tracing::warn!(%domain, "XREADGROUP did not return; reconnecting");
                con = None;
                continue;
            }
        };
        let items: Vec<Pending> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|id| Pending::new(&id, 1))
            .collect();
        if items.is_empty() {
            continue;
        }
        match batch::process(&ctx, &domain, items).await {
            Ok(()) => backoff.reset(),
            Err(e) => {
                tracing::warn!(%domain, error = %e, "batch left pending for retry");
                backoff.wait(&mut stop).await;
            }
        }
    }
}

async fn connect(ctx: &Ctx) -> redis::RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(ctx.redis_timeout))
        .set_response_timeout(None);
    ctx.redis_client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// NOGROUP: Redis lost its data or the domain is new. Recreate the group from the start of
/// the stream so nothing already in it is skipped.
pub async fn recreate_group(ctx: &Ctx, domain: &Domain) {
    let mut ctl = ctx.ctl.clone();
    match streams::ensure_group(&mut ctl, domain).await {
        Ok(()) => tracing::info!(%domain, "consumer group (re)created"),
        Err(e) => {
            ctx.metrics.redis_errors.inc();
            tracing::warn!(%domain, error = %e, "cannot create consumer group");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}
