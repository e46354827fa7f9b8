//! Per-client rate limits, enforced in Redis so that they hold across any number of ingest
//! instances: a GCRA (token bucket) per client — `max_requests` per `window_seconds`, bursts
//! of up to `max_requests` — in one atomic script using Redis' clock. Over the limit: 429 with
//! `Retry-After`.

use mb_shared::message::{ClientId, Domain};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Requests per window; 0 means unlimited.
    pub max_requests: u64,
    #[serde(default = "default_window")]
    pub window_seconds: u64,
}

fn default_window() -> u64 {
    1
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    #[serde(flatten)]
    pub default: Limit,
    /// Per-client limits, keyed by certificate CN (`demo.example.com`) or client id.
    #[serde(default)]
    pub overrides: HashMap<String, Limit>,
}

/// GCRA. KEYS: the client's key. ARGV: emission interval µs, burst tolerance µs.
/// Returns 0 when allowed, else the µs to wait.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if now < tat - tolerance then return tat - tolerance - now end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
"#;

pub struct RateLimiter {
    config: Option<RateLimitConfig>,
    script: redis::Script,
}

/// How long to wait before retrying, when limited.
pub struct Limited {
    pub retry_after_secs: u64,
}

impl RateLimiter {
    pub fn new(config: Option<RateLimitConfig>) -> Self {
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

    /// Takes one request from the client's allowance.
    pub async fn check(
        &self,
        redis: &redis::aio::ConnectionManager,
        domain: &Domain,
        cn: &str,
        client: &ClientId,
    ) -> Result<Result<(), Limited>, redis::RedisError> {
        let Some(limit) = self.limit_for(cn, client) else {
            return Ok(Ok(()));
        };
        let interval_us = limit.window_seconds * 1_000_000 / limit.max_requests;
        let tolerance_us = interval_us * (limit.max_requests - 1);
        let mut con = redis.clone();
        let wait_us: u64 = self
            .script
            .key(format!("mb:{{{domain}}}:rate:{client}"))
            .arg(interval_us.max(1))
            .arg(tolerance_us)
            .invoke_async(&mut con)
            .await?;
        Ok(if wait_us == 0 {
            Ok(())
        } else {
            Err(Limited {
                retry_after_secs: wait_us.div_ceil(1_000_000).max(1),
            })
        })
    }
}
