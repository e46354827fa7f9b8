//! A reader: `XREADGROUP GROUP deliver <consumer> COUNT n BLOCK t STREAMS <stream> >` on a
//! connection of its own with no response timeout (a blocking read must neither trip the
//! client's timeout nor stall the shared multiplexed connection), then hands the batch on.

use crate::Ctx;
use crate::backoff::Backoff;
use crate::batch::{self, Pending};
use mb_shared::domains::Domain;
use mb_shared::redis_conn::{RedisConn, Timeouts};
use mb_shared::streams::{self, GROUP};
use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};
use std::sync::Arc;
use tokio::sync::watch;

pub(crate) async fn run(ctx: Arc<Ctx>, domain: Domain, mut stop: watch::Receiver<bool>) {
    let mut reader = Reader::new(&ctx, &domain);
    let mut backoff = Backoff::new(ctx.max_backoff);
    while !*stop.borrow() {
        let items = match reader.read().await {
            Ok(items) => items,
            Err(Failed::Retry) => continue,
            Err(Failed::BackOff) => {
                backoff.wait(&mut stop).await;
                continue;
            }
        };
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

/// Why a read gave nothing: try again at once, or after backing off.
enum Failed {
    Retry,
    BackOff,
}

/// One reader's connection and read options.
struct Reader<'a> {
    ctx: &'a Ctx,
    domain: &'a Domain,
    key: String,
    con: Option<RedisConn>,
    opts: StreamReadOptions,
    /// A blocked read returns within `block`; anything far longer means a dead connection.
    deadline: std::time::Duration,
}

impl<'a> Reader<'a> {
    fn new(ctx: &'a Ctx, domain: &'a Domain) -> Self {
        Self {
            ctx,
            domain,
            key: streams::stream_key(domain),
            con: None,
            opts: StreamReadOptions::default()
                .group(GROUP, &ctx.consumer)
                .count(ctx.batch_size)
                .block(ctx.block.as_millis() as usize),
            deadline: ctx.block + ctx.redis_timeout + std::time::Duration::from_secs(5),
        }
    }

    /// The next batch of new entries (empty when `block` passed without any).
    async fn read(&mut self) -> Result<Vec<Pending>, Failed> {
        let (ctx, domain) = (self.ctx, self.domain);
        let con = match self.con.as_mut() {
            Some(c) => c,
            None => match connect(ctx).await {
                Ok(c) => self.con.insert(c),
                Err(e) => {
                    ctx.metrics.redis_errors.inc();
                    tracing::warn!(%domain, error = %e, "cannot connect to redis");
                    return Err(Failed::BackOff);
                }
            },
        };
        let read = tokio::time::timeout(
            self.deadline,
            con.xread_options::<_, _, Option<StreamReadReply>>(&[&self.key], &[">"], &self.opts),
        )
        .await;
        match read {
            Ok(Ok(reply)) => Ok(reply
                .into_iter()
                .flat_map(|r| r.keys)
                .flat_map(|k| k.ids)
                .map(|id| Pending::new(id, 1))
                .collect()),
            Ok(Err(e)) if e.code() == Some("NOGROUP") => {
                recreate_group(ctx, domain).await;
                Err(Failed::Retry)
            }
            Ok(Err(e)) => {
                ctx.metrics.redis_errors.inc();
                tracing::warn!(%domain, error = %e, "XREADGROUP failed");
                self.con = None;
                Err(Failed::BackOff)
            }
            Err(_) => {
                tracing::warn!(%domain, "XREADGROUP did not return; reconnecting");
                self.con = None;
                Err(Failed::Retry)
            }
        }
    }
}

async fn connect(ctx: &Ctx) -> redis::RedisResult<RedisConn> {
    ctx.redis
        .connect(Timeouts {
            connect: ctx.redis_timeout,
            response: None,
        })
        .await
}

/// NOGROUP: Redis lost its data or the domain is new. Recreate the group from the start of
/// the stream so nothing already in it is skipped.
pub(crate) async fn recreate_group(ctx: &Ctx, domain: &Domain) {
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
