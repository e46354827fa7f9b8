//! `mbctl cert …`: client certificates signed by the broker's CA, recorded in the `clients`
//! table (with an `audit_log` row) when a database is configured.

use super::Cli;
use crate::ca::{Ca, Issued, Profile};
use mb_shared::message::Domain;
use mysql_async::prelude::*;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum CertCommand {
    /// Issue a client certificate with CN `<NAME>.<DOMAIN>`.
    Issue {
        name: String,
        #[arg(long)]
        domain: String,
        /// Where to write `<NAME>.crt` and `<NAME>.key` (default: <home>/certs/clients).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
}

pub async fn run(cli: &Cli, cmd: &CertCommand) -> anyhow::Result<()> {
    match cmd {
        CertCommand::Issue {
            name,
            domain,
            out,
            days,
        } => {
            let domain = Domain::parse(domain).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "client name may contain letters, digits, - and _ only"
            );
            anyhow::ensure!(*days > 0, "--days must be positive");
            let ca = Ca::load(
                &cli.certs_dir().join("ca.crt"),
                &cli.secrets_dir().join("ca.key"),
            )?;
            let cn = format!("{name}.{domain}");
            let issued = ca.issue(&cn, Profile::Client, *days)?;
            let dir = out
                .clone()
                .unwrap_or_else(|| cli.certs_dir().join("clients"));
            issued.write(&dir, name)?;
            if let Some(url) = &cli.mysql_url {
                record(url, name, &domain, &cn, &issued).await?;
            }
            println!("issued      {cn}");
            println!("certificate {}", dir.join(format!("{name}.crt")).display());
            println!("key         {}", dir.join(format!("{name}.key")).display());
            println!("fingerprint {}", issued.fingerprint);
            println!("serial      {}", issued.serial);
            println!(
                "expires     {}",
                mb_shared::format_rfc3339(issued.not_after)
            );
            Ok(())
        }
    }
}

async fn record(
    url: &str,
    name: &str,
    domain: &Domain,
    cn: &str,
    c: &Issued,
) -> anyhow::Result<()> {
    let db = crate::db::Db::connect(url, 1)?;
    let mut conn = db.pool().get_conn().await?;
    let fmt = |t: time::OffsetDateTime| crate::db::to_mysql_datetime(&mb_shared::format_rfc3339(t));
    conn.exec_drop(
        "INSERT INTO clients (name, domain, common_name, fingerprint, serial, not_before, not_after) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        (name, domain.as_str(), cn, &c.fingerprint, &c.serial, fmt(c.not_before), fmt(c.not_after)),
    )
    .await?;
    let actor = std::env::var("USER").unwrap_or_else(|_| "mbctl".into());
    conn.exec_drop(
        "INSERT INTO audit_log (actor, action, target, details) VALUES (?, 'cert.issue', ?, ?)",
        (
            format!("mbctl:{actor}"),
            cn,
            format!("serial={} fingerprint={}", c.serial, c.fingerprint),
        ),
    )
    .await?;
    drop(conn);
    db.close().await;
    Ok(())
}
