//! Redis key names and the stream protocol, in one place.
//!
//! * `mb:{<domain>}:messages` — one stream per domain. Ingest appends with a plain XADD, or,
//!   for a request with an `Idempotency-Key`, with the [`SUBMIT`] script (idempotency check and
//!   XADD in one atomic step). Back-pressure: ingest refuses new entries while the stream holds
//!   `max_stream_len` undelivered ones (its length is polled, so the bound is approximate).
//! * Consumer group [`GROUP`] on each stream. Deliver workers `XREADGROUP … COUNT n BLOCK t`,
//!   hand the batch to the store, and only after the store confirmed run
//!   `MULTI; XACK; XDEL; EXEC`, so delivered entries do not accumulate and nothing
//!   still pending is ever removed.
//! * An entry not acked stays in the pending list; workers run `XAUTOCLAIM … <retry_interval>`
//!   with the cursor carried forward and retry what they claimed. The pending list's delivery
//!   count is the attempt count.
//! * `mb:{<domain>}:dead` — dead letters. The [`DEAD_LETTER`] script moves an entry there
//!   atomically (XACK, XADD to dead with the last error, XDEL); [`REDRIVE`] moves it back.
//! * `mb:{<domain>}:idem:<client_id>:<hmac(key)>` — an `Idempotency-Key` record, 24 h.
//! * `mb:{<domain>}:rate:<bucket>:<client_id>` — a client's rate-limit state (GCRA).
//! * `mb:{<domain>}:wait` — a counter ingest increments before `WAIT` (`redis_wait_replicas`).
//! * `mb:{<domain>}:delivered:<unix minute>` — messages delivered in that minute, counted by
//!   the workers in the same `MULTI` as their `XACK`, kept two hours (for the portal's
//!   "delivered in the last minute / hour").
//!
//! The `{<domain>}` hash tag keeps all of a domain's keys in one Redis Cluster slot, which the
//! scripts and MULTI blocks require.

use crate::domains::Domain;
use crate::message::{ClientId, MessageId};
use crate::redis_conn::{RedisConn, RedisTarget, Timeouts};
use serde::{Deserialize, Serialize};

/// Version of the stream entry layout, written as field `v`.
pub const ENTRY_VERSION: &str = "1";

/// One message as it sits in the domain stream: nothing readable about its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEntry {
    pub message_id: MessageId,
    pub client_id: ClientId,
    pub domain: Domain,
    /// RFC 3339, when ingest accepted it.
    pub queued_at: String,
    /// Client-supplied `metadata.timestamp`, normalised, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<String>,
    /// HMAC-SHA256 of the sender number, hex.
    pub sender_hash: String,
    pub sender_mask: String,
    /// AES-256-GCM-SIV ciphertext with its key id (see `crypto::Keyring`).
    pub body: String,
    /// The id of the request that submitted it (`server::request_id`), for the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl StreamEntry {
    /// The flat field list written with XADD.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("message_id", self.message_id.to_string()),
            ("client_id", self.client_id.0.clone()),
            ("domain", self.domain.as_str().to_owned()),
            ("queued_at", self.queued_at.clone()),
            ("sender_hash", self.sender_hash.clone()),
            ("sender_mask", self.sender_mask.clone()),
            ("body", self.body.clone()),
            ("v", ENTRY_VERSION.to_owned()),
        ];
        if let Some(t) = &self.submitted_at {
            f.push(("submitted_at", t.clone()));
        }
        if let Some(r) = &self.request_id {
            f.push(("request_id", r.clone()));
        }
        f
    }

    /// Reads an entry back from its fields; names the first missing or invalid field.
    pub fn from_fields<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut owned: Vec<(String, String)> = fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self::take_fields(&mut owned)
    }

    /// [`from_fields`](Self::from_fields) for fields read as owned strings (deliver's hot
    /// path): the values are moved into the entry, not copied, and only once every field
    /// checked out. On an error `fields` is left as it was (for the dead-letter stream).
    pub fn take_fields(fields: &mut [(String, String)]) -> Result<Self, String> {
        let mut at = [None::<usize>; FIELD_NAMES.len()];
        for (i, (k, _)) in fields.iter().enumerate() {
            if let Some(slot) = FIELD_NAMES.iter().position(|n| n == k) {
                at[slot] = Some(i);
            }
        }
        let [
            message_id,
            client_id,
            domain,
            queued_at,
            submitted_at,
            sender_hash,
            sender_mask,
            body,
            request_id,
            version,
        ] = at;
        // An entry of another layout is not read as this one (it would be stored wrong): it
        // stays readable in the dead-letter stream, to be redriven by a deliver that knows it.
        if let Some(v) = version
            .map(|i| fields[i].1.as_str())
            .filter(|v| *v != ENTRY_VERSION)
        {
            return Err(format!(
                "unsupported field `v`: entry layout {v:.16}, this deliver reads {ENTRY_VERSION}"
            ));
        }
        let need =
            |slot: Option<usize>, name: &str| slot.ok_or_else(|| format!("missing field `{name}`"));
        let message_id = MessageId::parse(&fields[need(message_id, "message_id")?].1)
            .ok_or_else(|| "invalid field `message_id`".to_owned())?;
        let client_id = need(client_id, "client_id")?;
        let domain = Domain::parse(&fields[need(domain, "domain")?].1)?;
        let queued_at = need(queued_at, "queued_at")?;
        let sender_hash = need(sender_hash, "sender_hash")?;
        let sender_mask = need(sender_mask, "sender_mask")?;
        let body = need(body, "body")?;
        let mut take = |i: usize| std::mem::take(&mut fields[i].1);
        Ok(Self {
            message_id,
            client_id: ClientId(take(client_id)),
            domain,
            queued_at: take(queued_at),
            submitted_at: submitted_at.map(&mut take),
            sender_hash: take(sender_hash),
            sender_mask: take(sender_mask),
            body: take(body),
            request_id: request_id.map(&mut take),
        })
    }
}

/// The fields [`StreamEntry::take_fields`] reads, in the order of its slots.
const FIELD_NAMES: [&str; 10] = [
    "message_id",
    "client_id",
    "domain",
    "queued_at",
    "submitted_at",
    "sender_hash",
    "sender_mask",
    "body",
    "request_id",
    "v",
];

/// The consumer group every deliver worker joins.
pub const GROUP: &str = "deliver";

pub fn stream_key(domain: &Domain) -> String {
    format!("mb:{{{domain}}}:messages")
}

/// A `SCAN … MATCH` pattern for every domain's stream.
pub const STREAM_KEY_PATTERN: &str = "mb:{*}:messages";

/// The domain whose stream `key` is, if it is one.
pub fn domain_of_stream_key(key: &str) -> Option<Domain> {
    key.strip_prefix("mb:{")
        .and_then(|r| r.strip_suffix("}:messages"))
        .and_then(|d| Domain::parse(d).ok())
}

pub fn dead_key(domain: &Domain) -> String {
    format!("mb:{{{domain}}}:dead")
}

/// `hashed_key` is the HMAC of the client's Idempotency-Key, so the key text never lands in Redis.
pub fn idempotency_key(domain: &Domain, client_id: &str, hashed_key: &str) -> String {
    format!("mb:{{{domain}}}:idem:{client_id}:{hashed_key}")
}

/// A counter ingest increments before `WAIT`, so the wait also covers a repeated
/// idempotency key's record, which it only read (see `redis_wait_replicas`).
pub fn wait_marker_key(domain: &Domain) -> String {
    format!("mb:{{{domain}}}:wait")
}

/// A client's rate-limit state in one `bucket` (`submit`, `status`).
pub fn rate_key(domain: &Domain, bucket: &str, client_id: &str) -> String {
    format!("mb:{{{domain}}}:rate:{bucket}:{client_id}")
}

/// Messages of `domain` delivered in the minute `unix_minute` (seconds since the epoch / 60).
pub fn delivered_key(domain: &Domain, unix_minute: u64) -> String {
    format!("mb:{{{domain}}}:delivered:{unix_minute}")
}

/// How long a per-minute delivery counter is kept.
pub const DELIVERED_KEY_TTL_SECS: u64 = 7200;

/// Atomic submit with an idempotency key. KEYS: stream, idempotency. ARGV: idem_ttl,
/// idem_value, then the entry's field/value pairs.
/// Returns `{"ok", entry_id}` or `{"dup", idem_value}`.
pub const SUBMIT: &str = r#"
local prev = redis.call('GET', KEYS[2])
if prev then return {'dup', prev} end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[1])
return {'ok', id}
"#;

/// Atomic move to the dead-letter stream. KEYS: stream, dead. ARGV: group, entry id, then the
/// dead entry's field/value pairs. Does nothing (returns 0) if the entry is no longer pending,
/// i.e. another worker already finished it.
pub const DEAD_LETTER: &str = r#"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
"#;

/// Atomic redrive of one dead letter. KEYS: dead, stream. ARGV: dead entry id, then the stream
/// entry's field/value pairs.
pub const REDRIVE: &str = r#"
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
return 1
"#;

/// Removes a consumer only if it holds no pending entry and has been idle long enough, in one
/// atomic step (a separate check could race with the consumer reading new entries). KEYS:
/// stream. ARGV: group, consumer, minimum idle ms. Returns -1 when it was kept, else the
/// number of pending entries the removal dropped (always 0).
pub const REMOVE_IDLE_CONSUMER: &str = r#"
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, c in ipairs(consumers) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] == ARGV[2] then
    if f['pending'] == 0 and f['idle'] >= tonumber(ARGV[3]) then
      return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
    end
    return -1
  end
end
return -1
"#;

/// Fields a dead letter carries besides the original entry's.
pub const DEAD_FIELDS: [&str; 4] = ["error", "attempts", "failed_at", "source_id"];

/// Every field of a stream entry, as text, in the order Redis gave them.
pub fn entry_fields(entry: &redis::streams::StreamId) -> Vec<(String, String)> {
    entry
        .map
        .keys()
        .filter_map(|k| entry.get::<String>(k).map(|v| (k.clone(), v)))
        .collect()
}

/// [`entry_fields`], taking the entry's values instead of copying them.
pub fn into_entry_fields(entry: redis::streams::StreamId) -> Vec<(String, String)> {
    entry
        .map
        .into_iter()
        .filter_map(|(k, v)| {
            redis::FromRedisValue::from_redis_value(v)
                .ok()
                .map(|v| (k, v))
        })
        .collect()
}

/// Moves every dead letter of `domain` back onto its stream (each in one atomic step, without
/// the fields the dead letter added) and makes sure the consumer group exists. Returns the
/// message ids moved.
pub async fn redrive_all<C: redis::aio::ConnectionLike + Send>(
    con: &mut C,
    domain: &Domain,
) -> redis::RedisResult<Vec<String>> {
    let letters: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(dead_key(domain))
        .arg("-")
        .arg("+")
        .query_async(con)
        .await?;
    let script = redis::Script::new(REDRIVE);
    let mut moved = Vec::new();
    for letter in &letters.ids {
        let fields = entry_fields(letter);
        let mut inv = script.prepare_invoke();
        inv.key(dead_key(domain))
            .key(stream_key(domain))
            .arg(&letter.id);
        for (k, v) in fields
            .iter()
            .filter(|(k, _)| !DEAD_FIELDS.contains(&k.as_str()))
        {
            inv.arg(k).arg(v);
        }
        let n: u64 = inv.invoke_async(con).await?;
        if n == 1
            && let Some((_, id)) = fields.iter().find(|(k, _)| k == "message_id")
        {
            moved.push(id.clone());
        }
    }
    ensure_group(con, domain).await?;
    Ok(moved)
}

/// One consumer of a domain's group, as an operator sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumerStats {
    pub name: String,
    pub pending: u64,
    /// Milliseconds since it last read or claimed anything.
    pub idle_ms: u64,
}

/// A domain's queue, in numbers an operator can act on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DomainStats {
    pub domain: String,
    /// Entries in the stream: delivered ones are deleted, so this is the backlog (pending
    /// ones included).
    pub backlog: u64,
    /// Entries read by a worker and not yet acknowledged.
    pub pending: u64,
    /// Entries no worker has read yet (the backlog less the pending ones).
    pub lag: u64,
    /// Age of the oldest entry no worker has read yet, in milliseconds: how far behind the
    /// workers are.
    pub oldest_waiting_ms: Option<u64>,
    /// Age of the oldest pending entry, in milliseconds.
    pub oldest_pending_ms: Option<u64>,
    pub consumers: Vec<ConsumerStats>,
    pub dead_letters: u64,
    pub delivered_last_minute: u64,
    pub delivered_last_hour: u64,
}

/// The numbers of one domain's queue.
pub async fn stats<C: redis::aio::ConnectionLike + Send>(
    con: &mut C,
    domain: &Domain,
) -> redis::RedisResult<DomainStats> {
    let key = stream_key(domain);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let minute = now_ms / 60_000;
    let mut pipe = redis::pipe();
    pipe.cmd("XLEN").arg(&key).cmd("XLEN").arg(dead_key(domain));
    pipe.cmd("MGET");
    for m in (minute - 59)..=minute {
        pipe.arg(delivered_key(domain, m));
    }
    let (backlog, dead_letters, counts): (u64, u64, Vec<Option<u64>>) =
        pipe.query_async(con).await?;
    let counts: Vec<u64> = counts.into_iter().map(Option::unwrap_or_default).collect();
    let group = match group_state(con, &key, now_ms).await {
        Ok(state) => state,
        // No group yet (nothing was ever read), or no stream at all.
        Err(e) if e.code() == Some("NOGROUP") || e.code() == Some("ERR") => GroupState {
            last_delivered: "0-0".into(),
            ..GroupState::default()
        },
        Err(e) => return Err(e),
    };
    // The first entry after the last one handed to a worker is the oldest one waiting.
    let first_waiting: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&key)
        .arg(format!("({}", group.last_delivered))
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(con)
        .await?;
    let oldest_waiting_ms = first_waiting
        .ids
        .first()
        .and_then(|e| id_millis(&e.id))
        .map(|t| now_ms.saturating_sub(t));
    Ok(DomainStats {
        domain: domain.to_string(),
        backlog,
        pending: group.pending,
        // Acknowledged entries are deleted, so what is in the stream is pending or waiting.
        lag: backlog.saturating_sub(group.pending),
        oldest_waiting_ms,
        oldest_pending_ms: group.oldest_pending_ms,
        consumers: group.consumers,
        dead_letters,
        delivered_last_minute: last_minute(
            counts[counts.len() - 2],
            counts[counts.len() - 1],
            now_ms % 60_000,
        ),
        delivered_last_hour: counts.iter().sum(),
    })
}

/// Deliveries in the last 60 s, from the per-minute counters: this minute's count so far plus
/// the share of the previous minute's that still falls in the window (as if spread evenly
/// over it), so a burst that straddles the turn of a minute is counted whole.
fn last_minute(previous: u64, current: u64, ms_into_minute: u64) -> u64 {
    let left = 60_000u64.saturating_sub(ms_into_minute);
    current + (previous * left + 30_000) / 60_000
}

/// The milliseconds of a stream entry id (`<ms>-<seq>`).
fn id_millis(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

#[derive(Default)]
struct GroupState {
    pending: u64,
    oldest_pending_ms: Option<u64>,
    consumers: Vec<ConsumerStats>,
    /// The id of the last entry handed to a worker.
    last_delivered: String,
}

/// What the domain's consumer group holds.
async fn group_state<C: redis::aio::ConnectionLike + Send>(
    con: &mut C,
    key: &str,
    now_ms: u64,
) -> redis::RedisResult<GroupState> {
    let summary: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
        .arg(key)
        .arg(GROUP)
        .query_async(con)
        .await?;
    let (pending, oldest_pending_ms) = match summary {
        redis::streams::StreamPendingReply::Data(d) => (
            d.count as u64,
            id_millis(&d.start_id).map(|t| now_ms.saturating_sub(t)),
        ),
        _ => (0, None),
    };
    let groups: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(key)
        .query_async(con)
        .await?;
    let last_delivered = groups
        .groups
        .into_iter()
        .find(|g| g.name == GROUP)
        .map_or_else(|| "0-0".into(), |g| g.last_delivered_id);
    let info: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(key)
        .arg(GROUP)
        .query_async(con)
        .await?;
    let consumers = info
        .consumers
        .into_iter()
        .map(|c| ConsumerStats {
            name: c.name,
            pending: c.pending as u64,
            idle_ms: c.idle as u64,
        })
        .collect();
    Ok(GroupState {
        pending,
        oldest_pending_ms,
        consumers,
        last_delivered,
    })
}

/// Creates the consumer group (and the stream) if missing; an existing group is fine.
pub async fn ensure_group<C: redis::aio::ConnectionLike + Send>(
    con: &mut C,
    domain: &Domain,
) -> redis::RedisResult<()> {
    let res: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream_key(domain))
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(con)
        .await;
    match res {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// A multiplexed, auto-reconnecting connection for non-blocking commands (XADD, XACK,
/// XAUTOCLAIM, scripts), to a single Redis or a cluster (see [`crate::redis_conn`]). It
/// connects lazily, so a service starts while Redis is down and answers "unavailable" until
/// Redis is back; every command has a response timeout.
pub fn connection_manager(
    url: &str,
    response_timeout: std::time::Duration,
) -> redis::RedisResult<RedisConn> {
    RedisTarget::parse(url)?.lazy(Timeouts {
        connect: response_timeout,
        response: Some(response_timeout),
    })
}

/// `size` connections handed out in turn, made on first use like [`connection_manager`]'s.
pub fn connection_pool(
    url: &str,
    response_timeout: std::time::Duration,
    size: usize,
) -> redis::RedisResult<crate::redis_conn::RedisPool> {
    crate::redis_conn::RedisPool::lazy(
        &RedisTarget::parse(url)?,
        Timeouts {
            connect: response_timeout,
            response: Some(response_timeout),
        },
        size,
    )
}

/// The oldest Redis the broker runs on: XAUTOCLAIM (and its `deleted_ids`, 7.0) came in 6.2.
pub const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// Refuses a Redis older than [`MIN_REDIS_VERSION`]. A Redis that cannot be reached now is let
/// pass (services start while Redis is down and wait for it); one that answers with an older
/// version is an error that says so.
pub async fn require_redis_version(url: &str, timeout: std::time::Duration) -> Result<(), String> {
    let check = async {
        // One node answers for all: a cluster runs one version (INFO on a cluster connection
        // would ask every node).
        let target = RedisTarget::parse(url).map_err(|e| e.to_string())?;
        let t = Timeouts {
            connect: timeout,
            response: Some(timeout),
        };
        let mut con = target.any_node(t).await.map_err(|e| e.to_string())?;
        redis::cmd("INFO")
            .arg("server")
            .query_async::<String>(&mut con)
            .await
            .map_err(|e| e.to_string())
    };
    let info = match tokio::time::timeout(timeout, check).await {
        Ok(Ok(info)) => info,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot check the Redis version now; will run without");
            return Ok(());
        }
        Err(_) => {
            tracing::warn!("Redis did not answer INFO in time; cannot check its version now");
            return Ok(());
        }
    };
    check_version(&info)
}

/// Checks `redis_version:` in the output of `INFO server`.
fn check_version(info: &str) -> Result<(), String> {
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(str::trim)
        .ok_or("Redis did not report its version (INFO server has no redis_version)")?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if have >= MIN_REDIS_VERSION {
        Ok(())
    } else {
        Err(format!(
            "Redis {version} is too old: mb needs Redis {}.{} or newer (XAUTOCLAIM); \
             upgrade redis-server",
            MIN_REDIS_VERSION.0, MIN_REDIS_VERSION.1
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_minute_counts_the_previous_minute_by_the_share_still_in_the_window() {
        // Two delivered just before the turn of the minute, three just after.
        assert_eq!(last_minute(2, 3, 1_000), 5);
        assert_eq!(last_minute(60, 0, 30_000), 30);
        assert_eq!(last_minute(60, 7, 59_999), 7);
        assert_eq!(last_minute(0, 4, 0), 4);
    }

    /// An entry with neither `submitted_at` nor `request_id`.
    fn entry() -> StreamEntry {
        StreamEntry {
            message_id: MessageId::new(),
            client_id: ClientId("ab".into()),
            domain: Domain::parse("example.com").unwrap(),
            queued_at: crate::time::now_rfc3339(),
            submitted_at: None,
            sender_hash: "00".into(),
            sender_mask: "+1****90".into(),
            body: "k1:xyz".into(),
            request_id: None,
        }
    }

    #[test]
    fn stream_entry_round_trips_through_fields() {
        let e = StreamEntry {
            request_id: Some("r-1".into()),
            ..entry()
        };
        let fields = e.to_fields();
        let back = StreamEntry::from_fields(fields.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn taking_fields_moves_them_only_when_the_entry_is_whole() {
        let e = StreamEntry {
            submitted_at: Some("2026-11-30T00:00:00Z".into()),
            ..entry()
        };
        let whole: Vec<(String, String)> = e
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let mut broken: Vec<(String, String)> =
            whole.iter().filter(|(k, _)| k != "body").cloned().collect();
        let before = broken.clone();
        assert_eq!(
            StreamEntry::take_fields(&mut broken),
            Err("missing field `body`".to_owned())
        );
        assert_eq!(
            broken, before,
            "a refused entry keeps its fields for the dead letter"
        );
        let mut fields = whole.clone();
        assert_eq!(StreamEntry::take_fields(&mut fields), Ok(e));
    }

    #[test]
    fn an_entry_of_another_layout_is_refused_and_one_without_a_version_is_read() {
        let e = entry();
        let fields = e.to_fields();
        let with_v = |v: Option<&'static str>| {
            let mut f: Vec<(&str, String)> =
                fields.iter().filter(|(k, _)| *k != "v").cloned().collect();
            if let Some(v) = v {
                f.push(("v", v.to_owned()));
            }
            StreamEntry::from_fields(f.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>())
        };
        assert_eq!(with_v(Some("1")).as_ref(), Ok(&e));
        assert_eq!(with_v(None).as_ref(), Ok(&e));
        let err = with_v(Some("2")).unwrap_err();
        assert!(err.contains("`v`") && err.contains('2'), "{err}");
    }

    #[test]
    fn redis_older_than_6_2_is_refused_by_name() {
        assert!(check_version("# Server\r\nredis_version:7.0.15\r\n").is_ok());
        assert!(check_version("redis_version:6.2.0\n").is_ok());
        let err = check_version("redis_version:6.0.16\n").unwrap_err();
        assert!(err.contains("6.0.16") && err.contains("6.2"), "{err}");
        assert!(check_version("redis_mode:standalone\n").is_err());
    }

    #[test]
    fn keys_share_the_domain_hash_tag() {
        let d = Domain::parse("example.com").unwrap();
        assert_eq!(stream_key(&d), "mb:{example.com}:messages");
        assert_eq!(dead_key(&d), "mb:{example.com}:dead");
        assert!(idempotency_key(&d, "c", "h").starts_with("mb:{example.com}:"));
        assert_eq!(domain_of_stream_key(&stream_key(&d)), Some(d.clone()));
        assert_eq!(domain_of_stream_key(&dead_key(&d)), None);
    }
}
