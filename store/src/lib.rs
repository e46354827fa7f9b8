//! mb-store: the HTTPS service that owns MySQL. It serves the internal API that deliver
//! workers write through (batch idempotent upsert, mark failed, status) and ingest polls (the
//! access list), the portal's `/api` (sign-in, a person's messages, decrypted for them only),
//! the administrators' `/admin` API (certificates through [`mb_pki`], users, queues, dead
//! letters, audit log), and the CRL; it applies the schema migrations at startup.

mod access;
mod admin;
mod api;
mod auth;
mod clients;
pub mod config;
mod error;
mod internal;
mod jwt;
mod messages;
mod metrics;
mod reencrypt;
mod replica;

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::get;
use mb_db::Db;
use mb_db::users::Throttle;
use mb_pki::authorities::Authorities;
use mb_shared::crypto::{HmacKey, LiveKeyring};
use mb_shared::domains::Domains;
use mb_shared::error_body::{no_such_method, no_such_path};
use mb_shared::server::body::{BodyLimit, read_body};
use mb_shared::server::{HttpsListener, Limits, ListenerMetrics};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Shared state of the store's handlers.
pub(crate) struct AppState {
    /// The primary: every write, and reads that must see the latest writes.
    pub(crate) db: Db,
    /// Where the portal's lists and details are read: the read replica while it keeps up.
    pub(crate) reads: Arc<replica::Reads>,
    pub(crate) redis: mb_shared::redis_conn::RedisConn,
    pub(crate) cas: Authorities,
    pub(crate) access: access::AccessCache,
    pub(crate) client_names: clients::ClientNames,
    pub(crate) keyring: Arc<LiveKeyring>,
    pub(crate) hmac: HmacKey,
    pub(crate) jwt: jwt::Jwt,
    pub(crate) throttle: Throttle,
    pub(crate) domains: Domains,
    pub(crate) metrics: metrics::Metrics,
}

/// Everything `run` needs, loaded and checked before any listener is bound.
pub struct Service {
    state: Arc<AppState>,
    tls: rustls::ServerConfig,
    anchors: Arc<[rustls_pki_types::CertificateDer<'static>]>,
    limits: Limits,
    listener_metrics: ListenerMetrics,
    registry: prometheus_client::registry::Registry,
    keyring_reload: std::time::Duration,
    reencrypt: config::Reencrypt,
}

impl Service {
    pub async fn load(cfg: &config::Config) -> anyhow::Result<Self> {
        let keyring = Arc::new(LiveKeyring::load(&cfg.keyring)?);
        let domains = Domains::load(&cfg.domains_file)?;
        let tls = mb_shared::tls::server_config(&cfg.tls, &[], Vec::new())?;
        let anchors = mb_shared::server::load_anchors(&[cfg.tls.ca.as_path()])?;
        let db = Db::connect(
            cfg.mysql_url.expose(),
            cfg.mysql_pool_max,
            messages::STATEMENT_CACHE,
        )?;
        if cfg.migrate_on_start {
            db.migrate().await?;
        }
        let cas = Authorities::load(&cfg.ca_cert, &cfg.ca_key, &domains)?;
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = metrics::Metrics::register(&mut registry);
        let listener_metrics = mb_shared::server::ListenerMetrics::register(
            registry.sub_registry_with_prefix("mb_store"),
        );
        let throttle = Throttle {
            max_user_failures: cfg.login.max_user_failures,
            max_address_failures: cfg.login.max_address_failures,
            lockout: cfg.login.lockout,
        };
        let reads = replica::Reads::new(
            db.clone(),
            cfg.read_replica.as_ref(),
            messages::STATEMENT_CACHE,
            &mut registry,
        )?;
        Ok(Self {
            state: Arc::new(AppState {
                reads: Arc::new(reads),
                db,
                redis: mb_shared::streams::connection_manager(&cfg.redis_url, cfg.redis_timeout)?,
                cas,
                access: Default::default(),
                client_names: Default::default(),
                keyring,
                hmac: HmacKey::load(&cfg.hmac_key)?,
                jwt: jwt::Jwt::load(&cfg.jwt_key, cfg.session_ttl)?,
                throttle,
                domains,
                metrics,
            }),
            tls,
            anchors,
            limits: cfg.limits.clone(),
            listener_metrics,
            registry,
            keyring_reload: cfg.keyring_reload,
            reencrypt: cfg.reencrypt.clone(),
        })
    }
}

/// Largest request body of the internal API: a full deliver batch (1000 entries of at most
/// ~7 KiB each) fits.
const INTERNAL_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest request body anywhere else (admin requests are small JSON documents).
const ADMIN_BODY_BYTES: usize = 64 * 1024;
/// Where a caller who asked for a path or method the store does not serve can look.
const DESCRIBED: &str = "/admin and /api are described in docs/openapi/store.json";

fn router(state: Arc<AppState>, limits: &Limits, metrics: &ListenerMetrics) -> Router {
    let body = |max_bytes| {
        axum::middleware::from_fn_with_state(
            BodyLimit {
                max_bytes,
                timeout: limits.body_read_timeout,
                metrics: metrics.clone(),
            },
            read_body,
        )
    };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/crl", get(access::crl))
        .merge(admin::router())
        .merge(api::router())
        // Unknown paths and methods answer in the API's JSON, like every other refusal, and
        // only once the body is read, like every other answer (see `read_body`): answered
        // before, hyper closes the connection on the unread body, which resets it under a
        // client still sending, and that client sees no answer at all.
        .fallback(|| async { no_such_path(DESCRIBED) })
        .method_not_allowed_fallback(|| async { no_such_method(DESCRIBED) })
        .layer(body(ADMIN_BODY_BYTES))
        .merge(
            internal::router()
                .method_not_allowed_fallback(|| async { no_such_method(DESCRIBED) })
                .layer(body(INTERNAL_BODY_BYTES)),
        )
        // The body middleware enforces the limits; extractors take what it read.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(
            mb_shared::server::request_id::layer,
        ))
        .with_state(state)
}

/// Serves the store on an already-bound listener until `shutdown`, then drains and closes the
/// database pool.
pub async fn run(
    service: Service,
    listener: TcpListener,
    metrics_listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = mb_shared::telemetry::MetricsServer::spawn(metrics_listener, service.registry);
    let expiry = tokio::spawn(metrics::watch_certificate_expiry(service.state.clone()));
    service.state.keyring.spawn_watch(service.keyring_reload);
    let reencrypt = tokio::spawn(reencrypt::run(service.state.clone(), service.reencrypt));
    let replica = tokio::spawn(service.state.reads.clone().watch());
    let tls = Arc::new(ArcSwap::from_pointee(service.tls));
    let app = router(
        service.state.clone(),
        &service.limits,
        &service.listener_metrics,
    );
    tracing::info!(addr = %listener.local_addr()?, "store listening");
    HttpsListener {
        tcp: listener,
        tls,
        anchors: service.anchors,
        limits: service.limits,
        metrics: service.listener_metrics,
    }
    .serve(app, shutdown)
    .await;
    expiry.abort();
    reencrypt.abort();
    replica.abort();
    metrics.stop().await;
    service.state.db.close().await;
    Ok(())
}
