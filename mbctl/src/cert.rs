//! `mbctl cert …`: the certificate lifecycle from the command line. Certificates are signed by
//! the CA in `<home>` (or a domain's own, see `domains.yaml`), recorded in `clients` and every
//! change audited. Revocations reach ingest through the store within seconds. mbctl holds the
//! database password, so it acts on every domain.

use crate::cli::Cli;
use mb_db::Db;
use mb_pki::ca::Issued;
use mb_pki::lifecycle::{self as certs, Request, Scope, Selector};
use mb_shared::domains::Domain;
use mb_shared::status::ClientKind;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum CertCommand {
    /// Issue a certificate with CN `<NAME>.<DOMAIN>`.
    Issue {
        name: String,
        #[arg(long)]
        domain: String,
        /// Where to write `<NAME>.crt` and `<NAME>.key` (default: <home>/certs/clients).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// An administrator certificate for the store's /admin API (this domain's
        /// certificates) instead of an ingest client.
        #[arg(long)]
        admin: bool,
        /// An administrator certificate for every domain's certificates.
        #[arg(long, conflicts_with = "admin")]
        superadmin: bool,
    },
    /// A new certificate with the same CN; the old one stays valid until it expires.
    Renew {
        name: String,
        #[arg(long)]
        domain: String,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Revoke every certificate of NAME (or one serial); ingest refuses them within seconds.
    Revoke {
        name: Option<String>,
        #[arg(long)]
        domain: Option<String>,
        #[arg(long, conflicts_with = "name")]
        serial: Option<String>,
    },
    /// Refuse a client's certificates until it is enabled again.
    Disable {
        name: String,
        #[arg(long)]
        domain: Option<String>,
    },
    /// Accept a disabled client's certificates again.
    Enable {
        name: String,
        #[arg(long)]
        domain: Option<String>,
    },
    /// All certificates with status and days to expiry.
    List,
}

pub async fn run(cli: &Cli, cmd: &CertCommand) -> anyhow::Result<()> {
    let db = cli.db()?;
    let result = match cmd {
        CertCommand::Issue {
            name,
            domain,
            out,
            days,
            admin,
            superadmin,
        } => {
            let kind = match (admin, superadmin) {
                (_, true) => ClientKind::Superadmin,
                (true, _) => ClientKind::Admin,
                _ => ClientKind::Client,
            };
            issue(cli, &db, name, &parse(domain)?, kind, *days, out).await
        }
        CertCommand::Renew {
            name,
            domain,
            out,
            days,
        } => renew(cli, &db, name, &parse(domain)?, *days, out).await,
        CertCommand::Revoke {
            name,
            domain,
            serial,
        } => {
            revoke(
                cli,
                &db,
                name.as_deref(),
                domain.as_deref(),
                serial.as_deref(),
            )
            .await
        }
        CertCommand::Disable { name, domain } => {
            set_disabled(&db, name, domain.as_deref(), true).await
        }
        CertCommand::Enable { name, domain } => {
            set_disabled(&db, name, domain.as_deref(), false).await
        }
        CertCommand::List => list(&db).await,
    };
    db.close().await;
    result
}

fn parse(d: &str) -> anyhow::Result<Domain> {
    Domain::parse(d).map_err(anyhow::Error::msg)
}

async fn issue(
    cli: &Cli,
    db: &Db,
    name: &str,
    domain: &Domain,
    kind: ClientKind,
    days: i64,
    out: &Option<PathBuf>,
) -> anyhow::Result<()> {
    let cas = cli.authorities()?;
    let req = Request {
        name,
        domain,
        kind,
        days,
    };
    let issued = certs::issue(db, cas.issuer(domain, kind), req, &crate::cli::actor()).await?;
    print_issued(cli, &req, out, &issued)
}

async fn renew(
    cli: &Cli,
    db: &Db,
    name: &str,
    domain: &Domain,
    days: i64,
    out: &Option<PathBuf>,
) -> anyhow::Result<()> {
    let kind = certs::active_kind(db, name, domain)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no active certificate for {name}.{domain} to renew"))?;
    let cas = cli.authorities()?;
    let req = Request {
        name,
        domain,
        kind,
        days,
    };
    let issued = certs::renew(db, cas.issuer(domain, kind), req, &crate::cli::actor()).await?;
    print_issued(cli, &req, out, &issued)
}

async fn revoke(
    cli: &Cli,
    db: &Db,
    name: Option<&str>,
    domain: Option<&str>,
    serial: Option<&str>,
) -> anyhow::Result<()> {
    let domain = domain.map(parse).transpose()?;
    let which = match (name, serial) {
        (Some(name), None) => Selector::Name {
            name,
            domain: domain.as_ref(),
        },
        (None, Some(serial)) => Selector::Serial(serial),
        _ => anyhow::bail!("give a NAME or --serial"),
    };
    for s in certs::revoke(db, &which, Scope::All, &crate::cli::actor()).await? {
        println!("revoked serial {s}");
    }
    write_crl(cli, db).await
}

async fn set_disabled(
    db: &Db,
    name: &str,
    domain: Option<&str>,
    disabled: bool,
) -> anyhow::Result<()> {
    let domain = domain.map(parse).transpose()?;
    let which = Selector::Name {
        name,
        domain: domain.as_ref(),
    };
    let verb = if disabled { "disabled" } else { "enabled" };
    for s in certs::set_disabled(db, &which, Scope::All, disabled, &crate::cli::actor()).await? {
        println!("{verb} serial {s}");
    }
    Ok(())
}

async fn list(db: &Db) -> anyhow::Result<()> {
    println!(
        "{:<40} {:<10} {:<9} {:<34} {:<21} {:>9}",
        "COMMON NAME", "KIND", "STATUS", "SERIAL", "EXPIRES", "DAYS LEFT"
    );
    for r in certs::list(db, Scope::All).await? {
        println!(
            "{:<40} {:<10} {:<9} {:<34} {:<21} {:>9}",
            r.common_name,
            r.kind.as_str(),
            r.status.as_str(),
            r.serial,
            r.not_after,
            r.days_left
        );
    }
    Ok(())
}

fn print_issued(
    cli: &Cli,
    req: &Request<'_>,
    out: &Option<PathBuf>,
    issued: &Issued,
) -> anyhow::Result<()> {
    let dir = out
        .clone()
        .unwrap_or_else(|| cli.certs_dir().join("clients"));
    issued.write(&dir, req.name)?;
    println!("issued      {}", req.common_name());
    println!(
        "certificate {}",
        dir.join(format!("{}.crt", req.name)).display()
    );
    println!(
        "key         {}",
        dir.join(format!("{}.key", req.name)).display()
    );
    println!("fingerprint {}", issued.fingerprint);
    println!("serial      {}", issued.serial);
    println!(
        "expires     {}",
        mb_shared::time::format_rfc3339(issued.not_after)
    );
    Ok(())
}

/// Keeps a copy of the current CRLs in `<home>/certs/crl.pem` for operators; the store
/// publishes the live ones at `GET /crl`.
async fn write_crl(cli: &Cli, db: &Db) -> anyhow::Result<()> {
    let list = certs::access_list(db).await?;
    let pem = certs::signed_crls(&cli.authorities()?, &list.revoked)?;
    std::fs::write(cli.certs_dir().join("crl.pem"), pem)?;
    Ok(())
}
