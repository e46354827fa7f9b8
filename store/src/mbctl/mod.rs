//! `mbctl`, the operator's command line: set up secrets and certificates, issue client
//! certificates, look at the streams and dead letters, apply migrations.

mod ca;
mod cert;
mod init;
mod streams;

use clap::{Parser, Subcommand};
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
    /// Client certificates.
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Certificate authorities of individual domains.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Per-domain stream length, pending entries, consumers and dead letters.
    Streams,
    /// Dead letters of a domain.
    #[command(subcommand)]
    Dead(streams::DeadCommand),
    /// Apply pending database migrations.
    Migrate,
}

impl Cli {
    fn redis_url(&self) -> anyhow::Result<&str> {
        self.redis_url.as_deref().ok_or_else(|| {
            anyhow::anyhow!("--redis-url or MB_REDIS_URL is required for this command")
        })
    }

    pub fn mysql_url(&self) -> anyhow::Result<&str> {
        self.mysql_url.as_deref().ok_or_else(|| {
            anyhow::anyhow!("--mysql-url or MB_MYSQL_URL is required for this command")
        })
    }

    pub fn certs_dir(&self) -> PathBuf {
        self.home.join("certs")
    }

    pub fn secrets_dir(&self) -> PathBuf {
        self.home.join("secrets")
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Init(args) => init::run(&cli, args),
        Command::Cert(cmd) => cert::run(&cli, cmd).await,
        Command::Ca(cmd) => ca::run(&cli, cmd),
        Command::Streams => streams::show(cli.redis_url()?).await,
        Command::Dead(cmd) => streams::dead(cli.redis_url()?, cmd).await,
        Command::Migrate => {
            let db = crate::db::Db::connect(cli.mysql_url()?, 2)?;
            db.migrate().await?;
            db.close().await;
            println!("migrations applied");
            Ok(())
        }
    }
}
