//! The command line: global options (where the state, Redis and MySQL are) and the verbs.

use crate::{ca, cert, config, dead, doctor, healthcheck, init, keys, seed, user};
use clap::{Parser, Subcommand};
use mb_db::Db;
use mb_pki::authorities::Authorities;
use mb_shared::domains::Domains;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "mbctl", version, about = "Administer an mb broker")]
pub struct Cli {
    /// State directory holding certs/ and secrets/ (the `.local` of ops/up).
    #[arg(long, env = "MB_HOME", default_value = ".local", global = true)]
    pub home: PathBuf,
    /// Redis of the broker, for `streams` and `dead`.
    #[arg(long, env = "MB_REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// domains.yaml: a domain with its own CA there has its client certificates signed by it.
    #[arg(long, env = "MB_DOMAINS_FILE", global = true)]
    pub domains: Option<PathBuf>,
    /// MySQL of the store, for `migrate` and to record issued certificates.
    #[arg(long, env = "MB_MYSQL_URL", global = true, hide_env_values = true)]
    pub mysql_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create the CA, service certificates, keyring, HMAC and JWT secrets (missing ones only).
    Init(init::InitArgs),
    /// Client and administrator certificates.
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Certificate authorities of individual domains.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Per-domain stream length, pending entries, consumers and dead letters.
    Streams,
    /// Dead letters of a domain.
    #[command(subcommand)]
    Dead(dead::DeadCommand),
    /// Apply pending database migrations.
    Migrate,
    /// The body encryption keyring: rotate, status, retire.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Portal users.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Fill `messages` with made-up rows, for load tests of the portal.
    Seed(seed::SeedArgs),
    /// Read the services' config files as they read them.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Do the services, Redis and MySQL answer? One line each; exit status 0 if all do, 1
    /// otherwise (for scripts, timers and systemd).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Diagnose the installation: ports, Redis and MariaDB versions and settings, migrations,
    /// file modes, certificate expiry, clock skew, keyring consistency; with a fix for each
    /// problem. Exit status 1 if anything FAILed.
    Doctor(doctor::DoctorArgs),
}

impl Cli {
    pub fn redis_url(&self) -> anyhow::Result<&str> {
        self.redis_url.as_deref().ok_or_else(|| {
            anyhow::anyhow!("--redis-url or MB_REDIS_URL is required for this command")
        })
    }

    /// A small pool on the store's database.
    pub fn db(&self) -> anyhow::Result<Db> {
        let url = self.mysql_url.as_deref().ok_or_else(|| {
            anyhow::anyhow!("--mysql-url or MB_MYSQL_URL is required for this command")
        })?;
        Ok(Db::connect(url, 2, 16)?)
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.home.join("certs")
    }

    pub fn secrets_dir(&self) -> PathBuf {
        self.home.join("secrets")
    }

    /// The configured domains, if `--domains` / `MB_DOMAINS_FILE` names them.
    pub fn domains(&self) -> anyhow::Result<Option<Domains>> {
        self.domains
            .as_deref()
            .map(Domains::load)
            .transpose()
            .map_err(Into::into)
    }

    /// The broker's CA in `<home>` and the domains' own, as `domains.yaml` names them.
    pub fn authorities(&self) -> anyhow::Result<Authorities> {
        let domains = match self.domains()? {
            Some(d) => d,
            None => Domains::none(),
        };
        Ok(Authorities::load(
            &self.certs_dir().join("ca.crt"),
            &self.secrets_dir().join("ca.key"),
            &domains,
        )?)
    }
}

/// Who the audit log names for what mbctl does: `mbctl:<login>`.
pub fn actor() -> String {
    format!(
        "mbctl:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Init(args) => init::run(&cli, args),
        Command::Cert(cmd) => cert::run(&cli, cmd).await,
        Command::Ca(cmd) => ca::run(&cli, cmd),
        Command::Streams => crate::streams::show(cli.redis_url()?).await,
        Command::Dead(cmd) => dead::run(&cli, cmd).await,
        Command::Config(cmd) => config::run(cmd),
        Command::User(cmd) => user::run(&cli, cmd).await,
        Command::Keys(cmd) => keys::run(&cli, cmd).await,
        Command::Seed(args) => seed::run(&cli, args).await,
        Command::Healthcheck(args) => exit_unless(healthcheck::run(&cli, args).await?),
        Command::Doctor(args) => exit_unless(doctor::run(&cli, args).await?),
        Command::Migrate => {
            let db = cli.db()?;
            let applied = db.migrate().await;
            db.close().await;
            applied?;
            println!("migrations applied");
            Ok(())
        }
    }
}

/// Ends the process with status 1 when a check failed (after what it printed).
fn exit_unless(ok: bool) -> anyhow::Result<()> {
    if !ok {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(1);
    }
    Ok(())
}
