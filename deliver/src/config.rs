//! mb-deliver configuration (`ops/config/deliver.yaml`).

use mb_shared::config::{ConfigError, TlsFiles, duration};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: SocketAddr,
    pub redis_url: String,
    pub store_url: String,
    /// The CA that signed the store (pinned) and deliver's own service certificate.
    pub tls: TlsFiles,
    pub domains_file: PathBuf,
    /// Entries per XREADGROUP / XAUTOCLAIM and per store request.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Concurrent readers per domain stream in this process.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long one XREADGROUP blocks waiting for new entries.
    #[serde(default = "default_block", with = "duration")]
    pub block: Duration,
    /// An entry pending (unacknowledged) this long is claimed and retried.
    #[serde(default = "default_retry_interval", with = "duration")]
    pub retry_interval: Duration,
    /// An entry the store refuses once it has been delivered this many times (the pending
    /// list's delivery count) is dead-lettered. A store that is unreachable never causes a
    /// dead letter: those entries are retried until it answers, though their delivery count grows.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Timeout of one store request; must be well under `retry_interval`.
    #[serde(default = "default_store_timeout", with = "duration")]
    pub store_timeout: Duration,
    #[serde(default = "default_redis_timeout", with = "duration")]
    pub redis_timeout: Duration,
    /// Longest pause after consecutive errors.
    #[serde(default = "default_max_backoff", with = "duration")]
    pub max_backoff: Duration,
    /// Consumers idle this long with nothing pending are removed from the group.
    #[serde(default = "default_consumer_idle", with = "duration")]
    pub remove_idle_consumers_after: Duration,
    /// How long SIGTERM waits for in-flight batches before exiting anyway.
    #[serde(default = "default_shutdown_timeout", with = "duration")]
    pub shutdown_timeout: Duration,
}

fn default_metrics_listen() -> SocketAddr {
    ([127, 0, 0, 1], 9100).into()
}
fn default_batch_size() -> usize {
    256
}
fn default_concurrency() -> usize {
    4
}
fn default_block() -> Duration {
    Duration::from_secs(1)
}
fn default_retry_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_max_attempts() -> u32 {
    5
}
fn default_store_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_redis_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(5)
}
fn default_consumer_idle() -> Duration {
    Duration::from_secs(3600)
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(20)
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let cfg: Self = mb_shared::config::load(path)?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, msg: &str| Err(ConfigError::invalid(path, key, msg));
        if !(1..=1000).contains(&self.batch_size) {
            return bad("batch_size", "must be between 1 and 1000");
        }
        if !(1..=256).contains(&self.concurrency) {
            return bad("concurrency", "must be between 1 and 256");
        }
        if self.max_attempts == 0 {
            return bad("max_attempts", "must be at least 1");
        }
        if self.retry_interval < Duration::from_millis(100) {
            return bad("retry_interval", "must be at least 100ms");
        }
        if self.block.is_zero() || self.block > Duration::from_secs(60) {
            return bad("block", "must be between 1ms and 60s");
        }
        if self.store_timeout >= self.retry_interval {
            return bad(
                "store_timeout",
                "must be shorter than retry_interval, or a slow write would be retried while still running",
            );
        }
        if !self.store_url.starts_with("https://") {
            return bad("store_url", "must start with https://");
        }
        if !self.redis_url.starts_with("redis://") && !self.redis_url.starts_with("rediss://") {
            return bad("redis_url", "must start with redis:// or rediss://");
        }
        Ok(())
    }

    /// How often the claimer scans the pending list.
    pub fn claim_interval(&self) -> Duration {
        (self.retry_interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
    }
}
