//! mb-store configuration (`ops/config/store.yaml`).

use mb_shared::config::{ConfigError, TlsFiles};
use mb_shared::secret::SecretString;
use mb_shared::server::Limits;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: SocketAddr,
    /// `mysql://user:password@host:port/db`
    pub mysql_url: SecretString,
    #[serde(default = "default_pool_max")]
    pub mysql_pool_max: usize,
    pub tls: TlsFiles,
    /// The certificate authority the store runs: its certificate and key (mode 0600).
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// AES-256-GCM-SIV keyring (JSON, mode 0600).
    pub keyring: PathBuf,
    pub domains_file: PathBuf,
    /// Apply pending migrations at startup.
    #[serde(default = "default_true")]
    pub migrate_on_start: bool,
    /// Timeouts and caps of the HTTPS listener.
    #[serde(default)]
    pub limits: Limits,
}

fn default_listen() -> SocketAddr {
    ([0, 0, 0, 0], 8000).into()
}
fn default_metrics_listen() -> SocketAddr {
    ([127, 0, 0, 1], 9102).into()
}
fn default_pool_max() -> usize {
    16
}
fn default_true() -> bool {
    true
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let cfg: Self = mb_shared::config::load(path)?;
        if !cfg.mysql_url.expose().starts_with("mysql://") {
            return Err(ConfigError::invalid(
                path,
                "mysql_url",
                "must start with mysql://",
            ));
        }
        if cfg.mysql_pool_max == 0 {
            return Err(ConfigError::invalid(
                path,
                "mysql_pool_max",
                "must be at least 1",
            ));
        }
        cfg.limits.validate(path, "limits")?;
        Ok(cfg)
    }
}
