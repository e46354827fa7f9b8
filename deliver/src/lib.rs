//! mb-deliver: the stream workers. For every configured domain this process runs
//! `concurrency` readers (XREADGROUP in batches → store → XACK), one claimer (XAUTOCLAIM of
//! entries idle past `retry_interval`, retried the same way) and a janitor for dead consumers.
//! See `mb_shared::streams` for the protocol.

mod backoff;
mod batch;
mod claim;
pub mod config;
mod janitor;
mod metrics;
mod reader;

use mb_shared::domains::Domain;
use mb_shared::domains::Domains;
use mb_shared::internal::InternalClient;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What every task of the worker shares.
pub(crate) struct Ctx {
    pub(crate) consumer: String,
    pub(crate) redis: mb_shared::redis_conn::RedisTarget,
    /// Multiplexed connection for everything that does not block.
    pub(crate) ctl: mb_shared::redis_conn::RedisConn,
    pub(crate) store: InternalClient,
    pub(crate) dead_script: redis::Script,
    pub(crate) janitor_script: redis::Script,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) batch_size: usize,
    pub(crate) block: Duration,
    pub(crate) retry_interval: Duration,
    pub(crate) claim_interval: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) max_backoff: Duration,
    pub(crate) redis_timeout: Duration,
    pub(crate) remove_idle_consumers_after: Duration,
}

pub struct Service {
    pub(crate) ctx: Arc<Ctx>,
    pub(crate) domains: Domains,
    pub(crate) concurrency: usize,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) registry: prometheus_client::registry::Registry,
}

/// A consumer name unique to this process: `host:pid:random`.
pub(crate) fn consumer_name() -> String {
    let host =
        hostname::get().map_or_else(|_| "unknown".into(), |h| h.to_string_lossy().into_owned());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

impl Service {
    pub fn load(cfg: &config::Config) -> anyhow::Result<Self> {
        let tls = mb_shared::tls::client_config(&cfg.tls)?;
        let mut registry = prometheus_client::registry::Registry::with_prefix("mb_deliver");
        let metrics = metrics::Metrics::register(&mut registry);
        let ctx = Ctx {
            consumer: consumer_name(),
            redis: mb_shared::redis_conn::RedisTarget::parse(&cfg.redis_url)?,
            ctl: mb_shared::streams::connection_manager(&cfg.redis_url, cfg.redis_timeout)?,
            store: InternalClient::new(&cfg.store_url, tls, cfg.store_timeout),
            dead_script: redis::Script::new(mb_shared::streams::DEAD_LETTER),
            janitor_script: redis::Script::new(mb_shared::streams::REMOVE_IDLE_CONSUMER),
            metrics,
            batch_size: cfg.batch_size,
            block: cfg.block,
            retry_interval: cfg.retry_interval,
            claim_interval: cfg.claim_interval(),
            max_attempts: cfg.max_attempts,
            max_backoff: cfg.max_backoff,
            redis_timeout: cfg.redis_timeout,
            remove_idle_consumers_after: cfg.remove_idle_consumers_after,
        };
        Ok(Self {
            ctx: Arc::new(ctx),
            domains: Domains::load(&cfg.domains_file)?,
            concurrency: cfg.concurrency,
            shutdown_timeout: cfg.shutdown_timeout,
            registry,
        })
    }
}

/// Runs the workers until `shutdown`; then stops reading, lets in-flight batches finish (up to
/// `shutdown_timeout`) and returns. Anything unfinished stays pending and is claimed by the
/// remaining workers, so nothing is lost either way.
pub async fn run(
    service: Service,
    metrics_listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = mb_shared::telemetry::MetricsServer::spawn(metrics_listener, service.registry);
    let ctx = service.ctx;
    tracing::info!(consumer = %ctx.consumer, domains = service.domains.iter().count(), "deliver starting");
    let mut tasks = tokio::task::JoinSet::new();
    for domain in service.domains.iter() {
        let readers = service
            .domains
            .deliver_concurrency(domain)
            .unwrap_or(service.concurrency);
        tracing::info!(%domain, readers, "reading");
        spawn_domain(&mut tasks, &ctx, domain, readers, &stop_rx);
    }
    shutdown.await;
    tracing::info!("stopping: finishing in-flight batches");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(service.shutdown_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "in-flight work did not finish in time; it stays pending and will be retried"
        );
        tasks.abort_all();
    } else {
        // Only after a clean drain: an aborted XREADGROUP may still be served, and deleting the
        // consumer would drop what it was given from the pending list.
        for domain in service.domains.iter() {
            janitor::remove_self_if_idle(&ctx, domain).await;
        }
    }
    metrics.stop().await;
    tracing::info!("deliver stopped");
    Ok(())
}

fn spawn_domain(
    tasks: &mut tokio::task::JoinSet<()>,
    ctx: &Arc<Ctx>,
    domain: &Domain,
    concurrency: usize,
    stop: &watch::Receiver<bool>,
) {
    for _ in 0..concurrency {
        tasks.spawn(reader::run(ctx.clone(), domain.clone(), stop.clone()));
    }
    tasks.spawn(claim::run(ctx.clone(), domain.clone(), stop.clone()));
    tasks.spawn(janitor::run(ctx.clone(), domain.clone(), stop.clone()));
}
