//! Per-client rate limits, enforced in Redis so that they hold across any number of ingest
//! instances: a GCRA (token bucket) per client — `max_requests` per `window_seconds`, bursts
//! of up to `max_requests` — in one atomic script using Redis' clock. Over the limit: 429 with
//! `Retry-After`. Submissions and status lookups have a bucket each, with the same limit, so
//! polling for status never eats into what a client may send.

use crate::caller::Caller;
use mb_shared::message::ClientId;
use mb_shared::streams;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Limit {
    /// Requests per window; 0 means unlimited.
    pub(crate) max_requests: u64,
    #[serde(default = "default_window")]
    pub(crate) window_seconds: u64,
}

fn default_window() -> u64 {
    1
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitConfig {
    #[serde(flatten)]
    pub(crate) default: Limit,
    /// Per-client limits, keyed by certificate CN (`demo.example.com`) or client id.
    #[serde(default)]
    pub(crate) overrides: HashMap<String, Limit>,
}

impl mb_shared::config::Validate for RateLimitConfig {
    fn validate(
        &self,
        c: &mb_shared::config::Check<'_>,
    ) -> Result<(), mb_shared::config::ConfigError> {
        let window = |c: &mb_shared::config::Check<'_>, l: &Limit| {
            c.that(
                (1..=86_400).contains(&l.window_seconds),
                "window_seconds",
                "must be between 1 and 86400",
            )
        };
        window(c, &self.default)?;
        for (who, l) in &self.overrides {
            window(&c.under("overrides").under(who), l)?;
        }
        Ok(())
    }
}

/// GCRA, taking `want` messages at once (a batch): as many as the allowance has room for.
/// KEYS: the client's key. ARGV: emission interval µs, burst tolerance µs, messages wanted.
/// Returns {messages allowed, µs until the next one would be}.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local room = math.floor((now + tolerance - tat) / interval) + 1
if room < 0 then room = 0 end
local n = math.min(want, room)
if n == 0 then return {0, tat - tolerance - now} end
local new_tat = tat + interval * n
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
if n < want then return {n, new_tat - tolerance - now} end
return {n, 0}
"#;

pub(crate) struct RateLimiter {
    config: Option<RateLimitConfig>,
    script: redis::Script,
}

/// Which allowance a request takes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bucket {
    Submit,
    Status,
}

impl Bucket {
    fn name(self) -> &'static str {
        match self {
            Bucket::Submit => "submit",
            Bucket::Status => "status",
        }
    }
}

/// How long to wait before retrying, when limited.
pub(crate) struct Limited {
    pub(crate) retry_after_secs: u64,
}

impl RateLimiter {
    pub(crate) fn new(config: Option<RateLimitConfig>) -> Self {
        Self {
            config,
            script: redis::Script::new(GCRA),
        }
    }

    fn limit_for(&self, cn: &str, client: &ClientId) -> Option<Limit> {
        let cfg = self.config.as_ref()?;
        let limit = cfg
            .overrides
            .get(cn)
            .or_else(|| cfg.overrides.get(client.as_str()))
            .copied()
            .unwrap_or(cfg.default);
        (limit.max_requests > 0).then_some(limit)
    }

    /// Takes one request from the client's allowance in `bucket`.
    pub(crate) async fn check(
        &self,
        redis: &mb_shared::redis_conn::RedisPool,
        caller: &Caller,
        bucket: Bucket,
    ) -> Result<Result<(), Limited>, redis::RedisError> {
        let (_, limited) = self.take(redis, caller, bucket, 1).await?;
        Ok(limited.map_or(Ok(()), Err))
    }

    /// Takes up to `want` messages from the client's allowance in `bucket` (a batch counts
    /// its messages, not one request): how many it may send now, and how long the rest wait.
    pub(crate) async fn take(
        &self,
        redis: &mb_shared::redis_conn::RedisPool,
        caller: &Caller,
        bucket: Bucket,
        want: u64,
    ) -> Result<(u64, Option<Limited>), redis::RedisError> {
        let Some(limit) = self.limit_for(&caller.common_name, &caller.client_id) else {
            return Ok((want, None));
        };
        if want == 0 {
            return Ok((0, None));
        }
        let (interval_us, tolerance_us) = gcra_params(limit);
        let mut call = self.script.key(streams::rate_key(
            &caller.domain,
            bucket.name(),
            caller.client_id.as_str(),
        ));
        call.arg(interval_us).arg(tolerance_us).arg(want);
        let mut con = redis.get();
        let (allowed, wait_us): (u64, u64) = match call.invoke_async(&mut con).await {
            Err(e) if redis.recover(&con, &e).await => call.invoke_async(&mut con).await?,
            r => r?,
        };
        let limited = (allowed < want).then(|| Limited {
            retry_after_secs: wait_us.div_ceil(1_000_000).max(1),
        });
        Ok((allowed, limited))
    }
}

/// (emission interval, burst tolerance) in microseconds: one request every `interval`, and up
/// to `max_requests` at once after a quiet spell.
fn gcra_params(limit: Limit) -> (u64, u64) {
    let interval_us = (limit.window_seconds * 1_000_000 / limit.max_requests).max(1);
    (interval_us, interval_us * (limit.max_requests - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_spreads_the_window_and_allows_a_full_burst() {
        let (i, t) = gcra_params(Limit {
            max_requests: 100,
            window_seconds: 1,
        });
        assert_eq!(i, 10_000);
        assert_eq!(t, 990_000);
        // 1 request per hour: a burst of one, nothing tolerated beyond it.
        let (i, t) = gcra_params(Limit {
            max_requests: 1,
            window_seconds: 3600,
        });
        assert_eq!((i, t), (3_600_000_000, 0));
        // More requests than microseconds in the window: never a zero interval.
        assert_eq!(
            gcra_params(Limit {
                max_requests: 5_000_000,
                window_seconds: 1
            })
            .0,
            1
        );
    }

    #[test]
    fn overrides_by_cn_or_client_id_win_and_zero_means_unlimited() {
        let cfg: RateLimitConfig = serde_norway::from_str(
            "max_requests: 10\noverrides:\n  bulk.example.com: {max_requests: 0}\n  abc: {max_requests: 99}\n",
        )
        .unwrap();
        let rl = RateLimiter::new(Some(cfg));
        let id = ClientId("abc".into());
        assert!(rl.limit_for("bulk.example.com", &id).is_none());
        assert_eq!(rl.limit_for("x.example.com", &id).unwrap().max_requests, 99);
        let other = ClientId("zzz".into());
        assert_eq!(
            rl.limit_for("x.example.com", &other).unwrap().max_requests,
            10
        );
        assert!(RateLimiter::new(None).limit_for("x", &other).is_none());
    }
}
