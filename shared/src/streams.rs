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
//!
//! The `{<domain>}` hash tag keeps all of a domain's keys in one Redis Cluster slot, which the
//! scripts and MULTI blocks require.

use crate::message::Domain;

/// The consumer group every deliver worker joins.
pub const GROUP: &str = "deliver";

pub fn stream_key(domain: &Domain) -> String {
    format!("mb:{{{domain}}}:messages")
}

pub fn dead_key(domain: &Domain) -> String {
    format!("mb:{{{domain}}}:dead")
}

/// `hashed_key` is the HMAC of the client's Idempotency-Key, so the key text never lands in Redis.
pub fn idempotency_key(domain: &Domain, client_id: &str, hashed_key: &str) -> String {
    format!("mb:{{{domain}}}:idem:{client_id}:{hashed_key}")
}

/// A client's rate-limit state in one `bucket` (`submit`, `status`).
pub fn rate_key(domain: &Domain, bucket: &str, client_id: &str) -> String {
    format!("mb:{{{domain}}}:rate:{bucket}:{client_id}")
}

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
/// XAUTOCLAIM, scripts). It connects lazily, so a service starts while Redis is down and
/// answers "unavailable" until Redis is back; every command has a response timeout.
pub fn connection_manager(
    url: &str,
    response_timeout: std::time::Duration,
) -> redis::RedisResult<redis::aio::ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(response_timeout))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_min_delay(std::time::Duration::from_millis(50))
        .set_max_delay(std::time::Duration::from_millis(1000));
    redis::aio::ConnectionManager::new_lazy_with_config(redis::Client::open(url)?, config)
}

/// The oldest Redis the broker runs on: XAUTOCLAIM (and its `deleted_ids`, 7.0) came in 6.2.
pub const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// Refuses a Redis older than [`MIN_REDIS_VERSION`]. A Redis that cannot be reached now is let
/// pass (services start while Redis is down and wait for it); one that answers with an older
/// version is an error that says so.
pub async fn require_redis_version(url: &str, timeout: std::time::Duration) -> Result<(), String> {
    let check = async {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
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
    }
}
