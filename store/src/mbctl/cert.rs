//! `mbctl cert …`: the certificate lifecycle from the command line. Certificates are signed by
//! the CA in `<home>`; with a database (`--mysql-url`) they are recorded in `clients` and every
//! change is audited. Revocations reach ingest through the store within seconds.

use super::Cli;
use crate::ca::Ca;
use crate::certs::{self, Request, Scope, Selector};
use crate::db::Db;
use mb_shared::message::Domain;
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

fn actor() -> String {
    format!(
        "mbctl:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

fn domain(d: &str) -> anyhow::Result<Domain> {
    Domain::parse(d).map_err(anyhow::Error::msg)
}

pub async fn run(cli: &Cli, cmd: &CertCommand) -> anyhow::Result<()> {
    let main_ca = || main_ca(cli);
    let db = || -> anyhow::Result<Db> { Ok(Db::connect(cli.mysql_url()?, 2)?) };
    match cmd {
        CertCommand::Issue {
            name,
            domain: d,
            out,
            days,
            admin,
            superadmin,
        } => {
            let d = domain(d)?;
            let kind = match (admin, superadmin) {
                (_, true) => ClientKind::Superadmin,
                (true, _) => ClientKind::Admin,
                _ => ClientKind::Client,
            };
            let main = main_ca()?;
            let own = own_ca(cli, &d)?;
            let ca = match (&own, kind) {
                (Some(own), ClientKind::Client) => own,
                _ => &main,
            };
            let req = Request {
                name,
                domain: &d,
                kind,
                days: *days,
            };
            let db = db()?;
            let issued = certs::issue(&db, ca, req, &actor()).await;
            db.close().await;
            print_issued(cli, &req, out, &issued?)
        }
        CertCommand::Renew {
            name,
            domain: d,
            out,
            days,
        } => {
            let d = domain(d)?;
            let db = db()?;
            let renewed = renew(cli, &db, name, &d, *days).await;
            db.close().await;
            let (req, issued) = renewed?;
            print_issued(cli, &req, out, &issued)
        }
        CertCommand::Revoke {
            name,
            domain: d,
            serial,
        } => {
            let d = d.as_deref().map(domain).transpose()?;
            let which = match (name, serial) {
                (Some(name), None) => Selector::Name {
                    name,
                    domain: d.as_ref(),
                },
                (None, Some(serial)) => Selector::Serial(serial),
                _ => anyhow::bail!("give a NAME or --serial"),
            };
            let db = db()?;
            let revoked = certs::revoke(&db, &which, Scope::All, &actor()).await;
            if revoked.is_ok() {
                write_crl(cli, &db).await?;
            }
            db.close().await;
            for s in revoked? {
                println!("revoked serial {s}");
            }
            Ok(())
        }
        CertCommand::Disable { name, domain: d } | CertCommand::Enable { name, domain: d } => {
            let disable = matches!(cmd, CertCommand::Disable { .. });
            let d = d.as_deref().map(domain).transpose()?;
            let db = db()?;
            let which = Selector::Name {
                name,
                domain: d.as_ref(),
            };
            let changed = certs::set_disabled(&db, &which, Scope::All, disable, &actor()).await;
            db.close().await;
            let verb = if disable { "disabled" } else { "enabled" };
            for s in changed? {
                println!("{verb} serial {s}");
            }
            Ok(())
        }
        CertCommand::List => {
            let db = db()?;
            let rows = certs::list(&db, Scope::All).await;
            db.close().await;
            println!(
                "{:<40} {:<7} {:<9} {:<34} {:<21} {:>9}",
                "COMMON NAME", "KIND", "STATUS", "SERIAL", "EXPIRES", "DAYS LEFT"
            );
            for r in rows? {
                println!(
                    "{:<40} {:<7} {:<9} {:<34} {:<21} {:>9}",
                    r.common_name, r.kind, r.status, r.serial, r.not_after, r.days_left
                );
            }
            Ok(())
        }
    }
}

/// The CA of `domain` as `domains.yaml` names it (`--domains` / `MB_DOMAINS_FILE`), if any.
fn own_ca(cli: &Cli, domain: &Domain) -> anyhow::Result<Option<Ca>> {
    let Some(path) = &cli.domains else {
        return Ok(None);
    };
    let domains = mb_shared::domains::Domains::load(path)?;
    let Some(own) = domains.own_ca(domain) else {
        return Ok(None);
    };
    let key = own.key.as_ref().ok_or_else(|| {
        anyhow::anyhow!("{}: domain {domain} has a ca but no ca_key", path.display())
    })?;
    Ok(Some(Ca::load(&own.cert, key)?))
}

/// Renews `<name>.<domain>` with the CA that issues its kind.
async fn renew<'a>(
    cli: &Cli,
    db: &Db,
    name: &'a str,
    d: &'a Domain,
    days: i64,
) -> anyhow::Result<(Request<'a>, crate::ca::Issued)> {
    let kind = certs::active_kind(db, name, d)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no active certificate for {name}.{d} to renew"))?;
    let ca = match (own_ca(cli, d)?, kind) {
        (Some(own), ClientKind::Client) => own,
        _ => main_ca(cli)?,
    };
    let req = Request {
        name,
        domain: d,
        kind,
        days,
    };
    Ok((req, certs::renew(db, &ca, req, &actor()).await?))
}

fn main_ca(cli: &Cli) -> Result<Ca, crate::ca::CaError> {
    Ca::load(
        &cli.certs_dir().join("ca.crt"),
        &cli.secrets_dir().join("ca.key"),
    )
}

fn print_issued(
    cli: &Cli,
    req: &Request<'_>,
    out: &Option<PathBuf>,
    issued: &crate::ca::Issued,
) -> anyhow::Result<()> {
    let dir = out
        .clone()
        .unwrap_or_else(|| cli.certs_dir().join("clients"));
    let name = req.name;
    issued.write(&dir, name)?;
    println!("issued      {}", req.common_name());
    println!("certificate {}", dir.join(format!("{name}.crt")).display());
    println!("key         {}", dir.join(format!("{name}.key")).display());
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
    let mut cas = vec![main_ca(cli)?];
    if let Some(path) = &cli.domains {
        for own in mb_shared::domains::Domains::load(path)?.own_cas() {
            if let Some(key) = &own.key {
                cas.push(Ca::load(&own.cert, key)?);
            }
        }
    }
    let list = certs::access_list(db).await?;
    let pem = certs::signed_crls(&cas, &list.revoked)?;
    std::fs::write(cli.certs_dir().join("crl.pem"), pem)?;
    Ok(())
}
