//! mb-store configuration (`ops/config/store.yaml`).

use mb_shared::config::{Check, ConfigError, TlsFiles, Validate};
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
    pub(crate) mysql_url: SecretString,
    #[serde(default = "default_pool_max")]
    pub(crate) mysql_pool_max: usize,
    pub(crate) tls: TlsFiles,
    /// The certificate authority the store runs: its certificate and key (mode 0600).
    pub(crate) ca_cert: PathBuf,
    pub(crate) ca_key: PathBuf,
    /// AES-256-GCM-SIV keyring (JSON, mode 0600).
    pub(crate) keyring: PathBuf,
    pub(crate) domains_file: PathBuf,
    /// Apply pending migrations at startup.
    #[serde(default = "default_true")]
    pub(crate) migrate_on_start: bool,
    /// Timeouts and caps of the HTTPS listener.
    #[serde(default)]
    pub(crate) limits: Limits,
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
        mb_shared::config::load_checked(path)
    }
}

impl Validate for Config {
    fn validate(&self, c: &Check<'_>) -> Result<(), ConfigError> {
        c.scheme(self.mysql_url.expose(), "mysql_url", &["mysql"])?;
        c.that(
            (1..=1000).contains(&self.mysql_pool_max),
            "mysql_pool_max",
            "must be between 1 and 1000",
        )?;
        self.limits.validate(&c.under("limits"))
    }
}
