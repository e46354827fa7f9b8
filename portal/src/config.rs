//! mb-portal configuration (`ops/config/portal.yaml`).

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
    /// The store, whose `/api` and `/admin` the portal calls for the signed-in person.
    pub(crate) store_url: String,
    /// The portal's certificate: shown to browsers, and presented to the store (`ca` is the
    /// CA that signed the store).
    pub(crate) tls: TlsFiles,
    /// The key of the forms' CSRF tokens (mode 0600).
    pub(crate) csrf_key: PathBuf,
    #[serde(default = "default_store_timeout", with = "duration")]
    pub(crate) store_timeout: Duration,
    /// How long an issued certificate's key waits for its one download.
    #[serde(default = "default_download_ttl", with = "duration")]
    pub(crate) download_ttl: Duration,
    #[serde(default)]
    pub(crate) limits: Limits,
}

fn default_listen() -> SocketAddr {
    ([0, 0, 0, 0], 8080).into()
}
fn default_metrics_listen() -> SocketAddr {
    ([127, 0, 0, 1], 9103).into()
}
fn default_store_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_download_ttl() -> Duration {
    Duration::from_secs(600)
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        mb_shared::config::load_checked(path)
    }
}

impl Validate for Config {
    fn validate(&self, c: &Check<'_>) -> Result<(), ConfigError> {
        c.scheme(&self.store_url, "store_url", &["https"])?;
        c.that(
            !self.store_timeout.is_zero(),
            "store_timeout",
            "must be positive",
        )?;
        c.that(
            (Duration::from_secs(10)..=Duration::from_secs(86_400)).contains(&self.download_ttl),
            "download_ttl",
            "must be between 10s and 24h",
        )?;
        self.limits.validate(&c.under("limits"))
    }
}
