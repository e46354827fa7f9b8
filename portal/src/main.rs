use clap::Parser;
use std::path::PathBuf;

/// mb-portal: the web portal over the store's API.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// YAML configuration file.
    #[arg(
        long,
        env = "MB_PORTAL_CONFIG",
        default_value = "ops/config/portal.yaml"
    )]
    config: PathBuf,
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mb_shared::tls::install_crypto_provider();
    mb_shared::telemetry::init_tracing();
    let cli = Cli::parse();
    let cfg = mb_portal::config::Config::load(&cli.config)?;
    let service = mb_portal::Service::load(&cfg)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let metrics = tokio::net::TcpListener::bind(cfg.metrics_listen).await?;
    mb_portal::run(
        service,
        listener,
        metrics,
        mb_shared::shutdown::shutdown_signal(),
    )
    .await
}
