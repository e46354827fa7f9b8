//! mb-ingest configuration (`ops/config/ingest.yaml`).

use mb_shared::config::{ConfigError, TlsFiles, duration};
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
    pub store_url: String,
    pub tls: TlsFiles,
    /// The service certificate ingest presents to the store.
    pub client_tls: TlsFiles,
    pub keyring: PathBuf,
    pub hmac_key: PathBuf,
    pub domains_file: PathBuf,
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Back-pressure: a domain stream holding this many undelivered entries refuses new ones
    /// with 503 instead of growing without bound (0 = no limit).
    #[serde(default = "default_max_stream_len")]
    pub max_stream_len: u64,
    #[serde(default = "default_idempotency_ttl", with = "duration")]
    pub idempotency_ttl: Duration,
    #[serde(default = "default_redis_timeout", with = "duration")]
    pub redis_timeout: Duration,
    #[serde(default = "default_store_timeout", with = "duration")]
    pub store_timeout: Duration,
    /// How often to fetch revocations (CRL, disabled clients) from the store.
    #[serde(default = "default_revocation_poll", with = "duration")]
    pub revocation_poll: Duration,
    /// Per-client rate limits; absent means unlimited.
    #[serde(default)]
    pub rate_limit: Option<crate::ratelimit::RateLimitConfig>,
    /// Timeouts and caps of the HTTPS listener.
    #[serde(default)]
    pub limits: Limits,
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
fn default_max_stream_len() -> u64 {
    5_000_000
}
fn default_idempotency_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_redis_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_store_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let cfg: Self = mb_shared::config::load(path)?;
        if !(1024..=1024 * 1024).contains(&cfg.max_body_bytes) {
            return Err(ConfigError::invalid(
                path,
                "max_body_bytes",
                "must be between 1024 and 1048576",
            ));
        }
        if cfg.idempotency_ttl.as_secs() == 0 {
            return Err(ConfigError::invalid(
                path,
                "idempotency_ttl",
                "must be at least 1s",
            ));
        }
        if cfg.redis_timeout.is_zero() {
            return Err(ConfigError::invalid(
                path,
                "redis_timeout",
                "must be positive",
            ));
        }
        if !cfg.redis_url.starts_with("redis://") && !cfg.redis_url.starts_with("rediss://") {
            return Err(ConfigError::invalid(
                path,
                "redis_url",
                "must start with redis:// or rediss://",
            ));
        }
        if let Some(rl) = &cfg.rate_limit {
            let limits = std::iter::once(("rate_limit".to_owned(), rl.default)).chain(
                rl.overrides
                    .iter()
                    .map(|(k, l)| (format!("rate_limit.overrides.{k}"), *l)),
            );
            for (key, l) in limits {
                if l.window_seconds == 0 || l.window_seconds > 86_400 {
                    return Err(ConfigError::invalid(
                        path,
                        &format!("{key}.window_seconds"),
                        "must be between 1 and 86400",
                    ));
                }
            }
        }
        if cfg.revocation_poll < Duration::from_millis(100) {
            return Err(ConfigError::invalid(
                path,
                "revocation_poll",
                "must be at least 100ms",
            ));
        }
        cfg.limits.validate(path, "limits")?;
        if !cfg.store_url.starts_with("https://") {
            return Err(ConfigError::invalid(
                path,
                "store_url",
                "must start with https://",
            ));
        }
        Ok(cfg)
    }
}
