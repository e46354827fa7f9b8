//! mbctl: administer an mb broker. See `mbctl --help`; each verb group lives in a module of
//! its own (`cert`, `ca`, `user`, `streams`, `dead`, `init`, `config`, `keys`,
//! `healthcheck`, `doctor`).

mod ca;
mod cert;
mod cli;
mod config;
mod dead;
mod doctor;
mod healthcheck;
mod init;
mod keys;
mod seed;
mod streams;
mod user;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mb_shared::tls::install_crypto_provider();
    cli::run(cli::Cli::parse()).await
}
