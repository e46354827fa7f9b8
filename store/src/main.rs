use clap::Parser;
use std::path::PathBuf;

/// mb-store: the message store, internal API and certificate authority.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// YAML configuration file.
    #[arg(long, env = "MB_STORE_CONFIG", default_value = "ops/config/store.yaml")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mb_shared::tls::install_crypto_provider();
    mb_shared::telemetry::init_tracing();
    let cli = Cli::parse();
    let cfg = mb_store::config::Config::load(&cli.config)?;
    let service = mb_store::Service::load(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let metrics = tokio::net::TcpListener::bind(cfg.metrics_listen).await?;
    mb_store::run(
        service,
        listener,
        metrics,
        mb_shared::shutdown::shutdown_signal(),
    )
    .await
}
