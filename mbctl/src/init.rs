//! `mbctl init`: everything a fresh deployment needs, created once. Existing files are kept,
//! so running it again never rotates a key or invalidates issued certificates.

use crate::cli::Cli;
use mb_pki::ca::{Ca, Profile};
use mb_shared::crypto::{Keyring, write_random_secret};
use std::path::Path;

/// The services that get a certificate, with their CNs.
pub const SERVICES: [(&str, &str); 4] = [
    ("store", "mb-store"),
    ("ingest", "mb-ingest"),
    ("deliver", "mb-deliver"),
    ("portal", "mb-portal"),
];

#[derive(clap::Args)]
pub struct InitArgs {
    /// Extra DNS names or IP addresses for the server certificates (localhost and 127.0.0.1
    /// are always included).
    #[arg(long = "san")]
    pub sans: Vec<String>,
    /// Validity of service certificates, in days.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
}

pub fn run(cli: &Cli, args: &InitArgs) -> anyhow::Result<()> {
    let certs = cli.certs_dir();
    let secrets = cli.secrets_dir();
    std::fs::create_dir_all(&secrets)?;
    set_mode(&secrets, 0o700)?;
    let ca_crt = certs.join("ca.crt");
    let ca_key = secrets.join("ca.key");
    let ca = if ca_crt.exists() {
        println!("kept     {}", ca_crt.display());
        Ca::load(&ca_crt, &ca_key)?
    } else {
        let ca = Ca::create(&ca_crt, &ca_key, "mb certificate authority")?;
        println!("created  {} (key {})", ca_crt.display(), ca_key.display());
        ca
    };
    let mut sans: Vec<&str> = vec!["localhost", "127.0.0.1", "::1"];
    sans.extend(args.sans.iter().map(String::as_str));
    let services_dir = certs.join("services");
    for (name, cn) in SERVICES {
        let crt = services_dir.join(format!("{name}.crt"));
        if crt.exists() {
            println!("kept     {}", crt.display());
            continue;
        }
        ca.issue(cn, Profile::Service { sans: &sans }, args.days)?
            .write(&services_dir, name)?;
        println!("created  {}", crt.display());
    }
    let keyring = secrets.join("keyring.json");
    if keyring.exists() {
        Keyring::load(&keyring)?;
        println!("kept     {}", keyring.display());
    } else {
        Keyring::add_key_to_file(&keyring)?;
        println!("created  {}", keyring.display());
    }
    for name in ["hmac.key", "jwt.key", "csrf.key"] {
        let path = secrets.join(name);
        if path.exists() {
            println!("kept     {}", path.display());
        } else {
            write_random_secret(&path)?;
            println!("created  {}", path.display());
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
