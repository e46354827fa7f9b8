use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mb_shared::tls::install_crypto_provider();
    mb_store::mbctl::run(mb_store::mbctl::Cli::parse()).await
}
