//! `mbctl ca create-domain DOMAIN`: a certificate authority of a domain's own. Once it is named
//! in `domains.yaml` (`ca`, `ca_key`), ingest accepts that domain's clients only with
//! certificates from it, and `mbctl cert issue … --domain DOMAIN` signs with it.

use crate::cli::Cli;
use mb_pki::ca::Ca;
use mb_shared::domains::Domain;

#[derive(clap::Subcommand)]
pub enum CaCommand {
    /// Create the CA of DOMAIN under <home>/certs/domains and <home>/secrets/domains.
    CreateDomain { domain: String },
}

pub fn run(cli: &Cli, cmd: &CaCommand) -> anyhow::Result<()> {
    match cmd {
        CaCommand::CreateDomain { domain } => {
            let domain = Domain::parse(domain).map_err(anyhow::Error::msg)?;
            let cert = cli.certs_dir().join(format!("domains/{domain}.crt"));
            let key = cli.secrets_dir().join(format!("domains/{domain}.key"));
            anyhow::ensure!(!cert.exists(), "{} exists already", cert.display());
            Ca::create(
                &cert,
                &key,
                &format!("mb certificate authority for {domain}"),
            )?;
            println!("created {} (key {})", cert.display(), key.display());
            println!("add to domains.yaml:");
            println!(
                "  - name: {domain}\n    ca: {}\n    ca_key: {}",
                cert.display(),
                key.display()
            );
            Ok(())
        }
    }
}
