//! The HTTPS listener shared by every mb service (ingest, store, portal).
//!
//! [`HttpsListener::serve`] is the accept loop: it caps open connections and TLS handshakes in
//! flight (a connection over either cap is closed at once and counted), and hands each accepted
//! socket to [`connection::handle`], which bounds the handshake, identifies the peer from its
//! client certificate, and serves the protocol ALPN chose (HTTP/2 or HTTP/1.1, nothing else)
//! with the limits of [`Limits`]: an HTTP/1.1 request head must arrive within
//! `header_read_timeout`, a connection with no request in flight is closed after
//! `idle_timeout`, and HTTP/2 streams, header lists and resets are bounded. Request bodies are
//! read by the [`body`] middleware, which bounds their size and the time they may take.
//!
//! The TLS configuration is read from an `ArcSwap` per connection, so a new CRL takes effect on
//! the next handshake without a restart. On shutdown the listener closes, open connections are
//! asked to close gracefully (HTTP/2 GOAWAY, HTTP/1.1 after the request in flight), and the
//! loop returns once they have, or after a drain timeout.

pub mod body;
pub mod connection;
pub mod request_id;

use crate::config::{ConfigError, duration};
use arc_swap::ArcSwap;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use connection::{Peer, RemoteAddr, peer_identity};

/// How long open connections may take to finish their requests after shutdown began.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// The limits of one listener (the `limits:` key of each service's config).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// A TLS handshake must complete within this.
    #[serde(with = "duration")]
    pub handshake_timeout: Duration,
    /// An HTTP/1.1 request head (request line and headers) must arrive within this once its
    /// first byte did. (An HTTP/2 head arrives as frames that count as activity; the idle
    /// timeout and the header list limit bound it.)
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// A request body must arrive within this once its head did.
    #[serde(with = "duration")]
    pub body_read_timeout: Duration,
    /// A connection with no request in flight is closed after this.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Open connections; more are closed at once.
    pub max_connections: usize,
    /// TLS handshakes in progress; more connections are closed at once.
    pub max_handshakes: usize,
    /// HTTP/2: concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: largest header list; HTTP/1.1: the read buffer, so the largest request head
    /// (a larger one is answered 431). At least 8192.
    pub max_header_bytes: u32,
    /// HTTP/2: streams a client may open and reset before they are accepted (rapid reset,
    /// CVE-2023-44487); beyond this the connection is closed with GOAWAY.
    pub h2_max_pending_reset_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_handshakes: 1_024,
            h2_max_concurrent_streams: 128,
            max_header_bytes: 16 * 1024,
            h2_max_pending_reset_streams: 32,
        }
    }
}

impl crate::config::Validate for Limits {
    fn validate(&self, c: &crate::config::Check<'_>) -> Result<(), ConfigError> {
        for (key, d) in [
            ("handshake_timeout", self.handshake_timeout),
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            let ok = (Duration::from_millis(50)..=Duration::from_secs(3600)).contains(&d);
            c.that(ok, key, "must be between 50ms and 1h")?;
        }
        let count = 1..=1_000_000;
        c.that(
            count.contains(&self.max_connections),
            "max_connections",
            "must be between 1 and 1000000",
        )?;
        c.that(
            count.contains(&self.max_handshakes),
            "max_handshakes",
            "must be between 1 and 1000000",
        )?;
        c.that(
            self.h2_max_concurrent_streams >= 1,
            "h2_max_concurrent_streams",
            "must be at least 1",
        )?;
        c.that(
            (8192..=1024 * 1024).contains(&self.max_header_bytes),
            "max_header_bytes",
            "must be between 8192 and 1048576",
        )
    }
}

/// Why the listener cut a client off.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    MaxHandshakes,
    HandshakeTimeout,
    HandshakeFailed,
    HeaderTimeout,
    IdleTimeout,
    BodyTimeout,
    BodyTooLarge,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxHandshakes => "max_handshakes",
            Refusal::HandshakeTimeout => "handshake_timeout",
            Refusal::HandshakeFailed => "handshake_failed",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::IdleTimeout => "idle_timeout",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::BodyTooLarge => "body_too_large",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The listener's metrics, registered under the service's prefix
/// (`mb_ingest_connections_open`, `mb_ingest_listener_refusals_total{reason}`, …).
#[derive(Clone, Default)]
pub struct ListenerMetrics {
    open: Gauge,
    handshakes: Gauge,
    refusals: Family<ReasonLabel, Counter>,
}

impl ListenerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "connections_open",
            "Open client connections",
            m.open.clone(),
        );
        registry.register(
            "tls_handshakes_in_flight",
            "TLS handshakes in progress",
            m.handshakes.clone(),
        );
        registry.register(
            "listener_refusals",
            "Connections and requests the listener cut off, by reason",
            m.refusals.clone(),
        );
        m
    }

    pub fn refused(&self, why: Refusal) {
        self.refusals
            .get_or_create(&ReasonLabel {
                reason: why.as_str(),
            })
            .inc();
    }
}

/// A bound TCP listener with everything needed to serve HTTPS on it: with client certificates
/// required (ingest, store) or not (the portal), as its TLS configuration says.
pub struct HttpsListener {
    pub tcp: TcpListener,
    /// Swapped when the CRL changes; read once per connection.
    pub tls: Arc<ArcSwap<ServerConfig>>,
    /// The CA certificates this listener trusts. A client may send them after its leaf (as
    /// OpenSSL-based clients do); any other extra certificate is an intermediate and refused.
    pub anchors: Arc<[CertificateDer<'static>]>,
    pub limits: Limits,
    pub metrics: ListenerMetrics,
}

impl HttpsListener {
    /// Serves `app` until `shutdown` completes, then lets open connections drain.
    pub async fn serve(self, app: Router, shutdown: impl Future<Output = ()>) {
        let max_connections = self.limits.max_connections;
        let conns = Arc::new(Semaphore::new(max_connections));
        let handshakes = Arc::new(Semaphore::new(self.limits.max_handshakes));
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let shared = Arc::new(connection::Shared {
            h1: connection::http1_builder(&self.limits),
            h2: connection::http2_builder(&self.limits),
            anchors: self.anchors,
            limits: self.limits,
            metrics: self.metrics,
        });
        tokio::pin!(shutdown);
        loop {
            let (tcp, remote) = tokio::select! {
                res = self.tcp.accept() => match res {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Over a cap the connection is closed at once: waiting would let a flood of idle
            // sockets queue up in front of real clients.
            let Ok(conn_permit) = conns.clone().try_acquire_owned() else {
                shared.metrics.refused(Refusal::MaxConnections);
                continue;
            };
            let Ok(handshake_permit) = handshakes.clone().try_acquire_owned() else {
                shared.metrics.refused(Refusal::MaxHandshakes);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(connection::handle(connection::Accepted {
                tcp,
                remote,
                tls: self.tls.load_full(),
                app: app.clone(),
                shared: shared.clone(),
                stop: stopping.clone(),
                conn_permit,
                handshake_permit,
            }));
        }
        drop(self.tcp);
        let _ = stop.send(true);
        // Every connection holds a permit until it is closed: all permits back means all closed.
        let drained =
            tokio::time::timeout(DRAIN_TIMEOUT, conns.acquire_many(max_connections as u32)).await;
        if drained.is_err() {
            tracing::warn!("connections still open after drain timeout");
        }
    }
}

/// The CA certificates in `paths` (PEM files), as [`HttpsListener::anchors`].
pub fn load_anchors(
    paths: &[&Path],
) -> Result<Arc<[CertificateDer<'static>]>, crate::tls::TlsError> {
    let mut out = Vec::new();
    for p in paths {
        out.extend(crate::tls::load_certs(p)?);
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_valid_and_bad_ones_name_the_key() {
        use crate::config::{Check, Validate};
        let path = Path::new("x.yaml");
        let c = Check::new(path).under("limits");
        Limits::default().validate(&c).unwrap();
        assert!(Limits::default().header_read_timeout <= Duration::from_secs(30));
        let bad = Limits {
            idle_timeout: Duration::ZERO,
            ..Default::default()
        };
        let err = bad.validate(&c).unwrap_err().to_string();
        assert!(err.contains("limits.idle_timeout"), "{err}");
        let bad = Limits {
            max_header_bytes: 1024,
            ..Default::default()
        };
        let err = bad.validate(&c).unwrap_err().to_string();
        assert!(err.contains("limits.max_header_bytes"), "{err}");
    }

    #[test]
    fn limits_parse_from_yaml_with_defaults_for_the_rest() {
        let l: Limits = crate::config::parse(
            Path::new("x.yaml"),
            "header_read_timeout: 2s\nmax_connections: 5\n",
        )
        .unwrap();
        assert_eq!(l.header_read_timeout, Duration::from_secs(2));
        assert_eq!(l.max_connections, 5);
        assert_eq!(l.idle_timeout, Limits::default().idle_timeout);
    }
}
