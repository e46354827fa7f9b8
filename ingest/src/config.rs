//! mb-ingest configuration (`ops/config/ingest.yaml`).

use mb_shared::config::{Check, ConfigError, TlsFiles, Validate, duration};
use mb_shared::server::Limits;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: SocketAddr,
    pub redis_url: String,
    /// The store, for status lookups of delivered messages.
    pub(crate) store_url: String,
    pub(crate) tls: TlsFiles,
    /// The service certificate ingest presents to the store.
    pub(crate) client_tls: TlsFiles,
    pub(crate) keyring: PathBuf,
    /// How often to look for a changed keyring file (SIGHUP reloads at once).
    #[serde(
        default = "mb_shared::config::default_keyring_reload",
        with = "duration"
    )]
    pub(crate) keyring_reload: Duration,
    pub(crate) hmac_key: PathBuf,
    pub(crate) domains_file: PathBuf,
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_max_body")]
    pub(crate) max_body_bytes: usize,
    /// Most messages in one batch submit.
    #[serde(default = "default_max_batch_messages")]
    pub(crate) max_batch_messages: usize,
    /// Largest batch request body, in bytes.
    #[serde(default = "default_max_batch_body")]
    pub(crate) max_batch_body_bytes: usize,
    /// Back-pressure: a domain stream holding this many undelivered entries refuses new ones
    /// with 503 instead of growing without bound (0 = no limit).
    #[serde(default = "default_max_stream_len")]
    pub(crate) max_stream_len: u64,
    #[serde(default = "default_idempotency_ttl", with = "duration")]
    pub(crate) idempotency_ttl: Duration,
    #[serde(default = "default_redis_timeout", with = "duration")]
    pub redis_timeout: Duration,
    /// Connections to Redis, each request on one of them in turn. Redis reads 16 KiB from a
    /// connection per pass of its event loop and, with `appendfsync always`, fsyncs once per
    /// pass: more connections let more messages share each fsync.
    #[serde(default = "default_redis_connections")]
    pub(crate) redis_connections: usize,
    /// Answer 202 only once this many Redis replicas hold the message (`WAIT`); 0 = once the
    /// master has it. See docs/operations.md, "What a 202 promises".
    #[serde(default)]
    pub(crate) redis_wait_replicas: u32,
    /// How long `WAIT` may take before the answer is 503 `outcome_unknown`.
    #[serde(default = "default_redis_wait_timeout", with = "duration")]
    pub(crate) redis_wait_timeout: Duration,
    #[serde(default = "default_store_timeout", with = "duration")]
    pub(crate) store_timeout: Duration,
    /// How often to fetch revocations (CRL, disabled clients) from the store.
    #[serde(default = "default_revocation_poll", with = "duration")]
    pub(crate) revocation_poll: Duration,
    /// Per-client rate limits; absent means unlimited.
    #[serde(default)]
    pub(crate) rate_limit: Option<crate::ratelimit::RateLimitConfig>,
    /// Timeouts and caps of the HTTPS listener.
    #[serde(default)]
    pub(crate) limits: Limits,
}

fn default_revocation_poll() -> Duration {
    Duration::from_secs(1)
}

fn default_listen() -> SocketAddr {
    ([0, 0, 0, 0], 8001).into()
}
fn default_metrics_listen() -> SocketAddr {
    ([127, 0, 0, 1], 9101).into()
}
fn default_max_body() -> usize {
    16 * 1024
}
fn default_max_batch_messages() -> usize {
    500
}
fn default_max_batch_body() -> usize {
    4 * 1024 * 1024
}
fn default_max_stream_len() -> u64 {
    5_000_000
}
fn default_idempotency_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_redis_wait_timeout() -> Duration {
    Duration::from_millis(500)
}

fn default_redis_connections() -> usize {
    8
}
fn default_redis_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_store_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        mb_shared::config::load_checked(path)
    }
}

impl Validate for Config {
    fn validate(&self, c: &Check<'_>) -> Result<(), ConfigError> {
        c.scheme(
            &self.redis_url,
            "redis_url",
            &["redis", "rediss", "redis+cluster", "rediss+cluster"],
        )?;
        c.scheme(&self.store_url, "store_url", &["https"])?;
        c.that(
            !self.keyring_reload.is_zero(),
            "keyring_reload",
            "must be positive",
        )?;
        c.that(
            (1024..=1024 * 1024).contains(&self.max_body_bytes),
            "max_body_bytes",
            "must be between 1024 and 1048576",
        )?;
        c.that(
            (1..=10_000).contains(&self.max_batch_messages),
            "max_batch_messages",
            "must be between 1 and 10000",
        )?;
        c.that(
            (self.max_body_bytes..=256 * 1024 * 1024).contains(&self.max_batch_body_bytes),
            "max_batch_body_bytes",
            "must be at least max_body_bytes and at most 268435456",
        )?;
        c.that(
            self.idempotency_ttl >= Duration::from_secs(1),
            "idempotency_ttl",
            "must be at least 1s",
        )?;
        c.that(
            !self.redis_timeout.is_zero(),
            "redis_timeout",
            "must be positive",
        )?;
        c.that(
            (1..=64).contains(&self.redis_connections),
            "redis_connections",
            "must be from 1 to 64",
        )?;
        c.that(
            self.redis_wait_replicas == 0
                || (Duration::from_millis(10)..self.redis_timeout)
                    .contains(&self.redis_wait_timeout),
            "redis_wait_timeout",
            "must be at least 10ms (WAIT 0 would wait forever) and shorter than redis_timeout \
             (the WAIT itself must be answered in time)",
        )?;
        c.that(
            self.revocation_poll >= Duration::from_millis(100),
            "revocation_poll",
            "must be at least 100ms",
        )?;
        if let Some(rl) = &self.rate_limit {
            rl.validate(&c.under("rate_limit"))?;
        }
        self.limits.validate(&c.under("limits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "redis_url: redis://127.0.0.1:6379\nstore_url: https://localhost:8000\n\
             tls: {{ca: a, cert: b, key: c}}\nclient_tls: {{ca: a, cert: b, key: c}}\n\
             keyring: k\nhmac_key: h\ndomains_file: d\n{extra}"
        );
        let path = Path::new("ingest.yaml");
        let cfg: Config = mb_shared::config::parse(path, &text)?;
        cfg.validate(&Check::new(path))?;
        Ok(cfg)
    }

    #[test]
    fn defaults_are_valid_and_each_check_names_its_key() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.max_body_bytes, 16 * 1024);
        for (extra, key) in [
            ("max_body_bytes: 10\n", "max_body_bytes"),
            ("idempotency_ttl: 0s\n", "idempotency_ttl"),
            ("revocation_poll: 10ms\n", "revocation_poll"),
            ("redis_connections: 0\n", "redis_connections"),
            (
                "rate_limit: {max_requests: 5, window_seconds: 0}\n",
                "rate_limit.window_seconds",
            ),
            ("limits: {idle_timeout: 0s}\n", "limits.idle_timeout"),
        ] {
            let err = parse(extra).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
        let text = "redis_url: http://x\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("redis_url"), "{err}");
    }
}
