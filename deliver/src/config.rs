//! mb-deliver configuration (`ops/config/deliver.yaml`).

use mb_shared::config::{Check, ConfigError, TlsFiles, Validate, duration};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: SocketAddr,
    pub redis_url: String,
    pub(crate) store_url: String,
    /// The CA that signed the store (pinned) and deliver's own service certificate.
    pub(crate) tls: TlsFiles,
    pub(crate) domains_file: PathBuf,
    /// Entries per XREADGROUP / XAUTOCLAIM and per store request.
    #[serde(default = "default_batch_size")]
    pub(crate) batch_size: usize,
    /// Concurrent readers per domain stream in this process; a domain's `deliver_concurrency`
    /// in `domains.yaml` overrides it for that domain.
    #[serde(default = "default_concurrency")]
    pub(crate) concurrency: usize,
    /// How long one XREADGROUP blocks waiting for new entries.
    #[serde(default = "default_block", with = "duration")]
    pub(crate) block: Duration,
    /// An entry pending (unacknowledged) this long is claimed and retried.
    #[serde(default = "default_retry_interval", with = "duration")]
    pub(crate) retry_interval: Duration,
    /// An entry the store refuses once it has been delivered this many times (the pending
    /// list's delivery count) is dead-lettered. A store that is unreachable never causes a
    /// dead letter: those entries are retried until it answers, though their delivery count grows.
    #[serde(default = "default_max_attempts")]
    pub(crate) max_attempts: u32,
    /// Timeout of one store request; must be well under `retry_interval`.
    #[serde(default = "default_store_timeout", with = "duration")]
    pub(crate) store_timeout: Duration,
    #[serde(default = "default_redis_timeout", with = "duration")]
    pub redis_timeout: Duration,
    /// Longest pause after consecutive errors.
    #[serde(default = "default_max_backoff", with = "duration")]
    pub(crate) max_backoff: Duration,
    /// Consumers idle this long with nothing pending are removed from the group.
    #[serde(default = "default_consumer_idle", with = "duration")]
    pub(crate) remove_idle_consumers_after: Duration,
    /// How long SIGTERM waits for in-flight batches before exiting anyway.
    #[serde(default = "default_shutdown_timeout", with = "duration")]
    pub(crate) shutdown_timeout: Duration,
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
        mb_shared::config::load_checked(path)
    }

    /// How often the claimer scans the pending list.
    pub fn claim_interval(&self) -> Duration {
        (self.retry_interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
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
            (1..=1000).contains(&self.batch_size),
            "batch_size",
            "must be between 1 and 1000",
        )?;
        c.that(
            (1..=256).contains(&self.concurrency),
            "concurrency",
            "must be between 1 and 256",
        )?;
        c.that(self.max_attempts >= 1, "max_attempts", "must be at least 1")?;
        c.that(
            self.retry_interval >= Duration::from_millis(100),
            "retry_interval",
            "must be at least 100ms",
        )?;
        c.that(
            !self.block.is_zero() && self.block <= Duration::from_secs(60),
            "block",
            "must be between 1ms and 60s",
        )?;
        c.that(
            self.store_timeout < self.retry_interval,
            "store_timeout",
            "must be shorter than retry_interval, or a slow write would be retried while still running",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "redis_url: redis://127.0.0.1:6379\nstore_url: https://localhost:8000\n\
             tls: {{ca: a, cert: b, key: c}}\ndomains_file: d\n{extra}"
        );
        let path = Path::new("deliver.yaml");
        let cfg: Config = mb_shared::config::parse(path, &text)?;
        cfg.validate(&Check::new(path))?;
        Ok(cfg)
    }

    #[test]
    fn the_store_timeout_must_stay_under_the_retry_interval() {
        assert!(parse("").is_ok());
        let err = parse("retry_interval: 5s\nstore_timeout: 5s\n").unwrap_err();
        assert!(err.to_string().contains("store_timeout"), "{err}");
        assert!(parse("retry_interval: 5s\nstore_timeout: 4s\n").is_ok());
    }

    #[test]
    fn each_range_check_names_its_key() {
        for (extra, key) in [
            ("batch_size: 0\n", "batch_size"),
            ("concurrency: 1000\n", "concurrency"),
            ("max_attempts: 0\n", "max_attempts"),
            ("block: 2m\n", "block"),
            (
                "retry_interval: 10ms\nstore_timeout: 5ms\n",
                "retry_interval",
            ),
        ] {
            let err = parse(extra).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
    }

    #[test]
    fn the_claimer_scans_often_enough_but_not_in_a_spin() {
        let cfg = parse("retry_interval: 100ms\nstore_timeout: 50ms\n").unwrap();
        assert_eq!(cfg.claim_interval(), Duration::from_millis(50));
        let cfg = parse("retry_interval: 10m\n").unwrap();
        assert_eq!(cfg.claim_interval(), Duration::from_secs(5));
    }
}
