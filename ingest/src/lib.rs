//! mb-ingest: the client-facing HTTPS proxy. It authenticates clients by certificate,
//! validates submissions, encrypts them and enqueues them on their domain's Redis stream.

mod access;
mod backlog;
mod batch;
mod caller;
pub mod config;
mod error;
mod messages;
mod metrics;
mod ratelimit;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::routing::get;
use mb_shared::crypto::{HmacKey, LiveKeyring};
use mb_shared::domains::Domains;
use mb_shared::internal::InternalClient;
use mb_shared::server::HttpsListener;
use mb_shared::server::body::{BodyLimit, read_body};
use std::sync::Arc;
use tokio::net::TcpListener;

pub(crate) struct AppState {
    /// A write and the `WAIT` for it go in one pipeline, on one connection of the pool; a
    /// failed write asks the pool to `recover`.
    pub(crate) redis: mb_shared::redis_conn::RedisPool,
    pub(crate) submit_script: redis::Script,
    pub(crate) store: InternalClient,
    pub(crate) keyring: Arc<LiveKeyring>,
    pub(crate) hmac: HmacKey,
    pub(crate) domains: Domains,
    /// Subject DN of each domain's own CA → that domain.
    pub(crate) ca_domains: std::collections::HashMap<Vec<u8>, mb_shared::domains::Domain>,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_batch_messages: usize,
    pub(crate) max_batch_body_bytes: usize,
    pub(crate) backlog: backlog::Backlog,
    /// Who may submit, and the TLS configuration that goes with it.
    pub(crate) access: access::AccessControl,
    pub(crate) rate_limiter: ratelimit::RateLimiter,
    pub(crate) idempotency_ttl_secs: u64,
    /// `WAIT` for this many replicas before a 202 (0: do not wait), up to `wait_timeout`.
    pub(crate) wait_replicas: u32,
    pub(crate) wait_timeout: std::time::Duration,
}

/// Everything `run` needs, loaded and checked before any listener is bound.
pub struct Service {
    pub(crate) state: Arc<AppState>,
    /// The CAs client certificates may chain to (a client may send them after its own).
    pub(crate) anchors: Arc<[rustls_pki_types::CertificateDer<'static>]>,
    pub(crate) limits: mb_shared::server::Limits,
    pub(crate) listener_metrics: mb_shared::server::ListenerMetrics,
    pub(crate) revocation_poll: std::time::Duration,
    pub(crate) keyring_reload: std::time::Duration,
    pub(crate) registry: prometheus_client::registry::Registry,
}

impl Service {
    pub fn load(cfg: &config::Config) -> anyhow::Result<Self> {
        let domains = Domains::load(&cfg.domains_file)?;
        let tls = server_tls(&domains, &cfg.tls, Vec::new())?;
        let ca_domains = domain_ca_subjects(&domains, &cfg.tls.ca)?;
        let mut ca_paths = vec![cfg.tls.ca.as_path()];
        ca_paths.extend(domains.own_cas().iter().map(|c| c.cert.as_path()));
        let anchors = mb_shared::server::load_anchors(&ca_paths)?;
        let store = InternalClient::new(
            &cfg.store_url,
            mb_shared::tls::client_config(&cfg.client_tls)?,
            cfg.store_timeout,
        );
        let mut registry = prometheus_client::registry::Registry::with_prefix("mb_ingest");
        let metrics = metrics::Metrics::register(&mut registry);
        let listener_metrics = mb_shared::server::ListenerMetrics::register(&mut registry);
        let state = AppState {
            redis: mb_shared::streams::connection_pool(
                &cfg.redis_url,
                cfg.redis_timeout,
                cfg.redis_connections,
            )?,
            submit_script: redis::Script::new(mb_shared::streams::SUBMIT),
            store: store.clone(),
            keyring: Arc::new(LiveKeyring::load(&cfg.keyring)?),
            hmac: HmacKey::load(&cfg.hmac_key)?,
            backlog: backlog::Backlog::new(&domains, cfg.max_stream_len),
            access: access::AccessControl::new(
                tls,
                cfg.tls.clone(),
                domains.clone(),
                store.clone(),
            ),
            rate_limiter: ratelimit::RateLimiter::new(cfg.rate_limit.clone()),
            domains,
            ca_domains,
            metrics,
            max_body_bytes: cfg.max_body_bytes,
            max_batch_messages: cfg.max_batch_messages,
            max_batch_body_bytes: cfg.max_batch_body_bytes,
            idempotency_ttl_secs: cfg.idempotency_ttl.as_secs(),
            wait_replicas: cfg.redis_wait_replicas,
            wait_timeout: cfg.redis_wait_timeout,
        };
        Ok(Self {
            state: Arc::new(state),
            anchors,
            limits: cfg.limits.clone(),
            listener_metrics,
            revocation_poll: cfg.revocation_poll,
            keyring_reload: cfg.keyring_reload,
            registry,
        })
    }
}

/// Ingest's TLS: clients of the main CA and of the domains' own CAs, minus `crls`.
pub(crate) fn server_tls(
    domains: &Domains,
    files: &mb_shared::config::TlsFiles,
    crls: Vec<rustls_pki_types::CertificateRevocationListDer<'static>>,
) -> Result<rustls::ServerConfig, mb_shared::tls::TlsError> {
    let extra: Vec<&std::path::Path> = domains.own_cas().iter().map(|c| c.cert.as_path()).collect();
    mb_shared::tls::server_config(files, &extra, crls)
}

fn domain_ca_subjects(
    domains: &Domains,
    main_ca: &std::path::Path,
) -> anyhow::Result<std::collections::HashMap<Vec<u8>, mb_shared::domains::Domain>> {
    // Which CA signed a certificate is read from its issuer name, so every CA must have a name
    // of its own: the main CA's and each domain CA's.
    let mut out = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for der in mb_shared::tls::load_certs(main_ca)? {
        seen.insert(mb_shared::identity::subject_of(&der).map_err(anyhow::Error::msg)?);
    }
    for ca in domains.own_cas() {
        for der in mb_shared::tls::load_certs(&ca.cert)? {
            let subject = mb_shared::identity::subject_of(&der).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                seen.insert(subject.clone()),
                "the CA of domain {} ({}) has the same subject name as another CA; each CA needs its own",
                ca.domain,
                ca.cert.display()
            );
            out.insert(subject, ca.domain.clone());
        }
    }
    Ok(out)
}

pub(crate) fn router(state: Arc<AppState>, body: BodyLimit) -> Router {
    let batch_body = BodyLimit {
        max_bytes: state.max_batch_body_bytes,
        ..body.clone()
    };
    Router::new()
        .route(
            batch::PATH,
            axum::routing::post(batch::submit)
                .layer(axum::middleware::from_fn_with_state(batch_body, read_body)),
        )
        .merge(
            messages::router()
                .route("/healthz", get(|| async { "ok" }))
                .route("/readyz", get(readyz))
                .route(
                    "/openapi.json",
                    get(|| async {
                        (
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            include_str!("../../docs/openapi/ingest.json"),
                        )
                    }),
                )
                .layer(axum::middleware::from_fn_with_state(
                    body.clone(),
                    read_body,
                )),
        )
        // Unknown paths and methods answer in the API's JSON, like every other refusal, and
        // only once the body is read, like every other answer: answered before, hyper closes
        // the connection on the unread body, and a client still sending sees no answer.
        .fallback(
            (|| async {
                mb_shared::error_body::error_response(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such path; see /openapi.json",
                    Default::default(),
                )
            })
            .layer(axum::middleware::from_fn_with_state(
                body.clone(),
                read_body,
            )),
        )
        .method_not_allowed_fallback(
            (|| async {
                mb_shared::error_body::error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "this path does not take that method; see /openapi.json",
                    Default::default(),
                )
            })
            .layer(axum::middleware::from_fn_with_state(body, read_body)),
        )
        // The body middleware enforces the limits; extractors take what it read.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(
            mb_shared::server::request_id::layer,
        ))
        .with_state(state)
}

/// Ready when the access list is loaded and Redis answers PING on every connection.
async fn readyz(State(app): State<Arc<AppState>>) -> (StatusCode, &'static str) {
    if app.access.current().is_none() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "access list not loaded yet",
        );
    }
    match app.redis.ping_all().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis unavailable"),
    }
}

/// Serves ingest on already-bound listeners until `shutdown`, then drains open requests.
pub async fn run(
    service: Service,
    listener: TcpListener,
    metrics_listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = mb_shared::telemetry::MetricsServer::spawn(metrics_listener, service.registry);
    let state = service.state;
    state.keyring.spawn_watch(service.keyring_reload);
    let backlog = {
        let state = state.clone();
        tokio::spawn(async move { state.backlog.watch(state.redis.get()).await })
    };
    let access = {
        let (state, every) = (state.clone(), service.revocation_poll);
        tokio::spawn(async move { state.access.watch(every).await })
    };
    tracing::info!(addr = %listener.local_addr()?, "ingest listening");
    let body = BodyLimit {
        max_bytes: state.max_body_bytes,
        timeout: service.limits.body_read_timeout,
        metrics: service.listener_metrics.clone(),
    };
    let app = router(state.clone(), body);
    HttpsListener {
        tcp: listener,
        tls: state.access.tls.clone(),
        anchors: service.anchors,
        limits: service.limits,
        metrics: service.listener_metrics,
    }
    .serve(app, shutdown)
    .await;
    backlog.abort();
    access.abort();
    metrics.stop().await;
    Ok(())
}
