//! mb-portal: the web portal. People sign in and read their own messages; administrators
//! manage users, certificates and the queues, and read the audit log. Every page is HTML
//! rendered on the server (maud) from the store's `/api` and `/admin`, called over mutual TLS
//! with the portal's certificate and the person's token ([`store`]); the store decides what
//! each person may see and do.
//!
//! Security: the token lives in an `HttpOnly; Secure; SameSite=Strict` cookie; every form
//! carries a CSRF token bound to the session ([`session`]); every response carries a CSP
//! without `unsafe-inline` (`default-src 'self'`, `frame-ancestors 'none'`), HSTS,
//! `X-Content-Type-Options`, `Referrer-Policy`, and pages are not cached. Assets are served
//! by the portal itself.

pub mod config;
mod pages;
mod session;
mod store;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use mb_shared::crypto::HmacKey;
use mb_shared::internal::InternalClient;
use mb_shared::server::body::{BodyLimit, read_body};
use mb_shared::server::{HttpsListener, Limits, ListenerMetrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub(crate) struct AppState {
    pub(crate) store: store::Store,
    pub(crate) csrf: HmacKey,
    pub(crate) downloads: pages::certificates::Downloads,
    pub(crate) download_ttl: Duration,
    pub(crate) responses: Family<StatusLabel, Counter>,
    pub(crate) page_seconds: Family<PageLabel, Histogram, fn() -> Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabel {
    status: u16,
}

/// A route, as written in the router (`/messages/{id}`), so the label's values are few.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PageLabel {
    route: String,
}

fn page_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 13))
}

/// Everything `run` needs, loaded and checked before any listener is bound.
pub struct Service {
    state: Arc<AppState>,
    tls: rustls::ServerConfig,
    limits: Limits,
    listener_metrics: ListenerMetrics,
    registry: prometheus_client::registry::Registry,
}

impl Service {
    pub fn load(cfg: &config::Config) -> anyhow::Result<Self> {
        let tls = mb_shared::tls::browser_server_config(&cfg.tls)?;
        let store = InternalClient::new(
            &cfg.store_url,
            mb_shared::tls::client_config(&cfg.tls)?,
            cfg.store_timeout,
        );
        let mut registry = prometheus_client::registry::Registry::with_prefix("mb_portal");
        let listener_metrics = ListenerMetrics::register(&mut registry);
        let responses = Family::default();
        registry.register("responses", "Portal responses by status", responses.clone());
        let page_seconds: Family<PageLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(page_histogram);
        registry.register(
            "page_seconds",
            "Time to answer, by route (the store's work included)",
            page_seconds.clone(),
        );
        Ok(Self {
            state: Arc::new(AppState {
                store: store::Store::new(store),
                csrf: HmacKey::load(&cfg.csrf_key)?,
                downloads: Default::default(),
                download_ttl: cfg.download_ttl,
                responses,
                page_seconds,
            }),
            tls,
            limits: cfg.limits.clone(),
            listener_metrics,
            registry,
        })
    }
}

/// Largest form the portal takes.
const FORM_BYTES: usize = 64 * 1024;

fn router(state: Arc<AppState>, limits: &Limits, metrics: &ListenerMetrics) -> Router {
    use pages::{audit, certificates, login, messages, system, users};
    let body = BodyLimit {
        max_bytes: FORM_BYTES,
        timeout: limits.body_read_timeout,
        metrics: metrics.clone(),
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/messages") }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/login", get(login::show).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/messages", get(messages::list))
        .route("/messages/{id}", get(messages::detail))
        .route("/admin/users", get(users::list).post(users::create))
        .route("/admin/users/{name}", post(users::act))
        .route(
            "/admin/certificates",
            get(certificates::list).post(certificates::issue),
        )
        .route("/admin/certificates/action", post(certificates::act))
        .route(
            "/admin/certificates/download/{token}",
            get(certificates::download),
        )
        .route("/admin/system", get(system::show))
        .route("/admin/dead/{domain}/redrive", post(system::redrive))
        .route("/admin/audit", get(audit::show))
        .route("/static/style.css", get(style))
        .route("/static/app.js", get(script))
        .layer(axum::middleware::from_fn_with_state(body, read_body))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .layer(axum::middleware::from_fn(
            mb_shared::server::request_id::layer,
        ))
        .with_state(state)
}

const STYLE: &str = include_str!("../assets/style.css");
const SCRIPT: &str = include_str!("../assets/app.js");

async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SCRIPT,
    )
}

/// The headers every response carries, a count by status and the time by route.
async fn security_headers(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let started = std::time::Instant::now();
    let mut resp = next.run(req).await;
    app.page_seconds
        .get_or_create(&PageLabel { route })
        .observe(started.elapsed().as_secs_f64());
    app.responses
        .get_or_create(&StatusLabel {
            status: resp.status().as_u16(),
        })
        .inc();
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
    );
    set(
        h,
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    resp
}

/// Serves the portal on already-bound listeners until `shutdown`, then drains.
pub async fn run(
    service: Service,
    listener: TcpListener,
    metrics_listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = mb_shared::telemetry::MetricsServer::spawn(metrics_listener, service.registry);
    let app = router(service.state, &service.limits, &service.listener_metrics);
    tracing::info!(addr = %listener.local_addr()?, "portal listening");
    HttpsListener {
        tcp: listener,
        tls: Arc::new(arc_swap::ArcSwap::from_pointee(service.tls)),
        anchors: Arc::from(Vec::new()),
        limits: service.limits,
        metrics: service.listener_metrics,
    }
    .serve(app, shutdown)
    .await;
    metrics.stop().await;
    Ok(())
}
