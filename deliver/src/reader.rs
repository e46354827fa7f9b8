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
use redis::Value;
use redis::streams::StreamReadOptions;
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
            con.xread_options::<_, _, Value>(&[&self.key], &[">"], &self.opts),
        )
        .await;
        match read {
            Ok(Ok(reply)) => entries(reply).map_err(|e| {
                ctx.metrics.redis_errors.inc();
                tracing::warn!(%domain, error = %e, "XREADGROUP reply not understood");
                Failed::BackOff
            }),
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

/// The entries of an XREADGROUP reply, moved out of the reply as they are. (redis-rs's
/// `StreamReadReply` builds a HashMap per entry and copies its values: a tenth of deliver's
/// CPU under load.) A field whose name or value is not UTF-8 is left out; an entry that then
/// lacks a field it needs goes to the dead-letter stream.
fn entries(reply: Value) -> Result<Vec<Pending>, String> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .map(|s| match s {
                Value::Array(pair) => pair.into_iter().nth(1).ok_or("a stream without entries"),
                _ => Err("a stream that is not [key, entries]"),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        // Named by its kind only: the value could hold ciphertexts.
        _ => return Err("a reply that is neither a list nor a map of streams".into()),
    };
    let mut out = Vec::new();
    for list in streams {
        let Value::Array(list) = list else {
            return Err("entries that are not a list".into());
        };
        out.reserve(list.len());
        for entry in list {
            let Value::Array(entry) = entry else {
                return Err("an entry that is not [id, fields]".into());
            };
            let mut entry = entry.into_iter();
            let Some(entry_id) = entry.next().and_then(text) else {
                return Err("an entry without an id".into());
            };
            let fields = match entry.next() {
                Some(Value::Array(flat)) => {
                    let mut flat = flat.into_iter();
                    let mut fields = Vec::with_capacity(flat.len() / 2);
                    while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                        if let (Some(k), Some(v)) = (text(k), text(v)) {
                            fields.push((k, v));
                        }
                    }
                    fields
                }
                Some(Value::Map(pairs)) => pairs
                    .into_iter()
                    .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
                    .collect(),
                _ => Vec::new(),
            };
            out.push(Pending {
                entry_id,
                fields,
                attempt: 1,
            });
        }
    }
    Ok(out)
}

/// A string value, without copying it.
fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, flat: Vec<Value>) -> Value {
        Value::Array(vec![bulk(id), Value::Array(flat)])
    }

    /// A RESP2 reply for one stream.
    fn resp2(entries: Vec<Value>) -> Value {
        Value::Array(vec![Value::Array(vec![
            bulk("mb:{a.example}:stream"),
            Value::Array(entries),
        ])])
    }

    /// An entry's id, fields and attempt.
    type Summary<'a> = (&'a str, Vec<(&'a str, &'a str)>, u32);

    fn summary(items: &[Pending]) -> Vec<Summary<'_>> {
        items
            .iter()
            .map(|p| {
                let fields = p
                    .fields
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                (p.entry_id.as_str(), fields, p.attempt)
            })
            .collect()
    }

    #[test]
    fn a_resp2_reply_gives_its_entries_in_order() {
        let reply = resp2(vec![
            entry(
                "1-0",
                vec![bulk("message_id"), bulk("m1"), bulk("v"), bulk("1")],
            ),
            entry("2-0", vec![bulk("message_id"), bulk("m2")]),
        ]);
        let items = entries(reply).expect("a valid reply");
        assert_eq!(
            summary(&items),
            vec![
                ("1-0", vec![("message_id", "m1"), ("v", "1")], 1),
                ("2-0", vec![("message_id", "m2")], 1),
            ]
        );
    }

    #[test]
    fn a_resp3_map_reply_and_a_timeout_are_read_too() {
        let reply = Value::Map(vec![(
            bulk("mb:{a.example}:stream"),
            Value::Array(vec![entry("3-1", vec![bulk("k"), bulk("v")])]),
        )]);
        let items = entries(reply).expect("a valid reply");
        assert_eq!(summary(&items), vec![("3-1", vec![("k", "v")], 1)]);
        assert!(entries(Value::Nil).expect("a timeout").is_empty());
    }

    #[test]
    fn a_field_that_is_not_utf8_is_left_out_and_a_deleted_entry_has_none() {
        let reply = resp2(vec![
            entry(
                "1-0",
                vec![
                    bulk("body"),
                    Value::BulkString(vec![0xff, 0xfe]),
                    bulk("k"),
                    bulk("v"),
                ],
            ),
            Value::Array(vec![bulk("2-0"), Value::Nil]),
        ]);
        let items = entries(reply).expect("a valid reply");
        assert_eq!(
            summary(&items),
            vec![("1-0", vec![("k", "v")], 1), ("2-0", vec![], 1)]
        );
    }

    #[test]
    fn a_reply_of_another_shape_is_an_error() {
        assert!(entries(Value::Int(3)).is_err());
        assert!(entries(Value::Array(vec![Value::Array(vec![bulk("s")])])).is_err());
        assert!(entries(resp2(vec![Value::Array(vec![Value::Int(1)])])).is_err());
    }
}
