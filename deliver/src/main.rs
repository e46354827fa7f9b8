use clap::Parser;
use std::path::PathBuf;

/// mb-deliver: moves messages from the Redis streams into the store.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// YAML configuration file.
    #[arg(
        long,
        env = "MB_DELIVER_CONFIG",
        default_value = "ops/config/deliver.yaml"
    )]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mb_shared::tls::install_crypto_provider();
    mb_shared::telemetry::init_tracing();
    let cli = Cli::parse();
    let cfg = mb_deliver::config::Config::load(&cli.config)?;
    let service = mb_deliver::Service::load(&cfg)?;
    mb_shared::streams::require_redis_version(&cfg.redis_url, cfg.redis_timeout)
        .await
        .map_err(anyhow::Error::msg)?;
    let metrics = tokio::net::TcpListener::bind(cfg.metrics_listen).await?;
    mb_deliver::run(service, metrics, mb_shared::shutdown::shutdown_signal()).await
}
