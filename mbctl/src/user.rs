//! `mbctl user add|disable|enable|passwd|list`: portal users. mbctl holds the database
//! password, so it manages every domain's users; every change is audited as `mbctl:<login>`.
//! Passwords come from a file (`--password-file`, e.g. `.local/admin-password`) or standard
//! input (`--password-stdin`), never from the command line, where other users could read them.

use crate::cli::Cli;
use mb_db::Db;
use mb_db::users::{self, Change, Profile, UserScope};
use mb_shared::status::Role;
use std::io::Read;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct PasswordSource {
    /// Read the password from the first line of this file.
    #[arg(long, conflicts_with = "password_stdin")]
    password_file: Option<PathBuf>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
}

impl PasswordSource {
    fn read(&self) -> anyhow::Result<String> {
        let text = match (&self.password_file, self.password_stdin) {
            (Some(f), _) => std::fs::read_to_string(f)?,
            (None, true) => {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                s
            }
            (None, false) => anyhow::bail!("give --password-file FILE or --password-stdin"),
        };
        Ok(text.lines().next().unwrap_or_default().to_owned())
    }
}

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Create a portal user.
    Add {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The client (certificate name) a `user` reads.
        #[arg(long)]
        client: Option<String>,
        /// The domain of a `user` or `admin`.
        #[arg(long)]
        domain: Option<String>,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Refuse a user's sign-ins and end their sessions.
    Disable { name: String },
    /// Let a disabled user sign in again.
    Enable { name: String },
    /// Set a new password; the user's sessions end.
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// All users with role, client, domain and last sign-in.
    List,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

pub async fn run(cli: &Cli, cmd: &UserCommand) -> anyhow::Result<()> {
    let db = cli.db()?;
    let result = dispatch(&db, cmd).await;
    db.close().await;
    result
}

async fn dispatch(db: &Db, cmd: &UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add {
            name,
            role,
            client,
            domain,
            password,
        } => {
            let profile = Profile {
                role: *role,
                client_name: client.clone(),
                domain: domain.clone(),
            };
            users::create(db, name, &password.read()?, &profile, &crate::cli::actor()).await?;
            println!("created {role} {name}");
        }
        UserCommand::Disable { name } => {
            users::change(
                db,
                name,
                UserScope::All,
                Change::Disable,
                &crate::cli::actor(),
            )
            .await?;
            println!("disabled {name}; their sessions ended");
        }
        UserCommand::Enable { name } => {
            users::change(
                db,
                name,
                UserScope::All,
                Change::Enable,
                &crate::cli::actor(),
            )
            .await?;
            println!("enabled {name}");
        }
        UserCommand::Passwd { name, password } => {
            let pw = password.read()?;
            users::change(
                db,
                name,
                UserScope::All,
                Change::Password(&pw),
                &crate::cli::actor(),
            )
            .await?;
            println!("password of {name} changed; their sessions ended");
        }
        UserCommand::List => list(db).await?,
    }
    Ok(())
}

async fn list(db: &Db) -> anyhow::Result<()> {
    println!(
        "{:<24} {:<10} {:<16} {:<24} {:<8} LAST SIGN-IN",
        "USER", "ROLE", "CLIENT", "DOMAIN", "STATE"
    );
    for u in users::list(db, UserScope::All).await? {
        println!(
            "{:<24} {:<10} {:<16} {:<24} {:<8} {}",
            u.username,
            u.role.as_str(),
            u.client_name.as_deref().unwrap_or("-"),
            u.domain.as_deref().unwrap_or("-"),
            if u.disabled { "disabled" } else { "active" },
            u.last_login_ms
                .map(mb_shared::time::from_unix_millis)
                .unwrap_or_else(|| "never".into())
        );
    }
    Ok(())
}
