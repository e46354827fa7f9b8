//! mb-store configuration (`ops/config/store.yaml`).

use mb_shared::config::{Check, ConfigError, TlsFiles, Validate, duration};
use mb_shared::secret::SecretString;
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
    /// `mysql://user:password@host:port/db`
    pub(crate) mysql_url: SecretString,
    #[serde(default = "default_pool_max")]
    pub(crate) mysql_pool_max: usize,
    pub(crate) tls: TlsFiles,
    /// The certificate authority the store runs: its certificate and key (mode 0600).
    pub(crate) ca_cert: PathBuf,
    pub(crate) ca_key: PathBuf,
    /// AES-256-GCM-SIV keyring (JSON, mode 0600): the store checks delivered ciphertext
    /// against it and decrypts bodies for the portal's authorised readers.
    pub(crate) keyring: PathBuf,
    /// How often to look for a changed keyring file (SIGHUP reloads at once).
    #[serde(
        default = "mb_shared::config::default_keyring_reload",
        with = "duration"
    )]
    pub(crate) keyring_reload: Duration,
    /// Background re-encryption after a key rotation.
    #[serde(default)]
    pub(crate) reencrypt: Reencrypt,
    /// The HMAC key (mode 0600), to look sender numbers up by their hash.
    pub(crate) hmac_key: PathBuf,
    /// The key that signs the portal's session tokens (mode 0600).
    pub(crate) jwt_key: PathBuf,
    /// How long a portal session lasts.
    #[serde(default = "default_session_ttl", with = "duration")]
    pub(crate) session_ttl: Duration,
    /// Sign-in throttling.
    #[serde(default)]
    pub(crate) login: LoginLimits,
    /// Redis, for the portal's view of the queues and for redriving dead letters.
    pub(crate) redis_url: String,
    #[serde(default = "default_redis_timeout", with = "duration")]
    pub(crate) redis_timeout: Duration,
    pub(crate) domains_file: PathBuf,
    /// Apply pending migrations at startup.
    #[serde(default = "default_true")]
    pub(crate) migrate_on_start: bool,
    /// Timeouts and caps of the HTTPS listener.
    #[serde(default)]
    pub(crate) limits: Limits,
    /// A MariaDB replica for the portal's reads (`/api` lists and details); unset: the primary.
    #[serde(default)]
    pub(crate) read_replica: Option<ReadReplica>,
}

/// A read replica (`ops/replica` sets one up with GTID replication). Its user needs `SELECT`
/// on the database and `SLAVE MONITOR` (to read its own replication state).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadReplica {
    pub(crate) mysql_url: SecretString,
    /// Reads go back to the primary while the replica is further behind than this, or while
    /// its replication is stopped.
    #[serde(default = "default_max_lag", with = "duration")]
    pub(crate) max_lag: Duration,
    /// How often the replica's state is checked.
    #[serde(default = "default_check_interval", with = "duration")]
    pub(crate) check_interval: Duration,
}

fn default_max_lag() -> Duration {
    Duration::from_secs(5)
}
fn default_check_interval() -> Duration {
    Duration::from_secs(1)
}

/// Re-encryption of stored bodies under the active key, after `mbctl keys rotate`: rows per
/// transaction, and a pause between transactions so live traffic keeps its share of MySQL.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Reencrypt {
    pub(crate) batch: u32,
    #[serde(with = "duration")]
    pub(crate) pause: Duration,
}

impl Default for Reencrypt {
    fn default() -> Self {
        Self {
            batch: 500,
            pause: Duration::from_millis(5),
        }
    }
}

/// Sign-in throttling: after `max_user_failures` wrong passwords in a row for one user name,
/// or `max_address_failures` from one address, sign-ins are refused for `lockout`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LoginLimits {
    pub(crate) max_user_failures: u32,
    pub(crate) max_address_failures: u32,
    #[serde(with = "duration")]
    pub(crate) lockout: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            max_user_failures: 10,
            max_address_failures: 50,
            lockout: Duration::from_secs(15 * 60),
        }
    }
}

fn default_session_ttl() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_redis_timeout() -> Duration {
    Duration::from_secs(2)
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
        c.scheme(
            &self.redis_url,
            "redis_url",
            &["redis", "rediss", "redis+cluster", "rediss+cluster"],
        )?;
        c.that(
            (Duration::from_secs(10)..=Duration::from_secs(24 * 3600)).contains(&self.session_ttl),
            "session_ttl",
            "must be between 10s and 24h",
        )?;
        let l = c.under("login");
        l.that(
            self.login.max_user_failures >= 1,
            "max_user_failures",
            "must be at least 1",
        )?;
        l.that(
            self.login.max_address_failures >= 1,
            "max_address_failures",
            "must be at least 1",
        )?;
        l.that(!self.login.lockout.is_zero(), "lockout", "must be positive")?;
        c.that(
            !self.keyring_reload.is_zero(),
            "keyring_reload",
            "must be positive",
        )?;
        if let Some(r) = &self.read_replica {
            let c = c.under("read_replica");
            c.scheme(r.mysql_url.expose(), "mysql_url", &["mysql"])?;
            c.that(
                r.check_interval >= Duration::from_millis(100),
                "check_interval",
                "must be at least 100ms",
            )?;
        }
        c.under("reencrypt").that(
            (1..=10_000).contains(&self.reencrypt.batch),
            "batch",
            "must be between 1 and 10000",
        )?;
        self.limits.validate(&c.under("limits"))
    }
}
