//! One accepted connection: a bounded TLS handshake, the peer's identity, and the protocol ALPN
//! chose (HTTP/2 for `h2`, HTTP/1.1 otherwise) served until the client leaves, the connection
//! idles out, or a request head takes too long to arrive.
//!
//! Timeouts are kept by a watchdog beside the connection rather than by hyper, so that both
//! protocols get the same rules: while no request is in flight (a request is in flight from
//! its head until its response has been sent), an HTTP/1.1 connection that has begun sending a
//! request head must finish it within `header_read_timeout`, and a connection that sends no new
//! request is closed after `idle_timeout`. A request in flight is bounded by the body
//! middleware and the handlers themselves. A connection that breaks a rule, or is open when the
//! service shuts down, is closed gracefully: HTTP/2 gets a GOAWAY, so a client knows which
//! requests were not processed.

use super::{Limits, ListenerMetrics, Refusal};
use crate::identity::PeerIdentity;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tower::ServiceExt;

/// The peer of a request: its parsed client certificate, or why it is not usable. Attached to
/// every request as an extension.
pub type Peer = Arc<Result<PeerIdentity, String>>;

/// The address a request's connection came from. Attached to every request as an extension.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

/// How long a connection the watchdog closes may take to close gracefully.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long an open connection may take to finish its requests once shutdown began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// What every connection of a listener shares.
pub(crate) struct Shared {
    pub h1: auto::Builder<TokioExecutor>,
    pub h2: auto::Builder<TokioExecutor>,
    pub anchors: Arc<[CertificateDer<'static>]>,
    pub limits: Limits,
    pub metrics: ListenerMetrics,
}

/// A socket the accept loop admitted, with everything needed to serve it.
pub(crate) struct Accepted {
    pub tcp: TcpStream,
    pub remote: SocketAddr,
    pub tls: Arc<ServerConfig>,
    pub app: Router,
    pub shared: Arc<Shared>,
    /// Becomes true when the service shuts down.
    pub stop: tokio::sync::watch::Receiver<bool>,
    pub conn_permit: OwnedSemaphorePermit,
    pub handshake_permit: OwnedSemaphorePermit,
}

/// HTTP/1.1 only. The watchdog keeps the header timeout (hyper's is off).
pub(crate) fn http1_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new()).http1_only();
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes as usize);
    b
}

/// HTTP/2 only, with its streams, header lists and resets bounded.
pub(crate) fn http2_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new()).http2_only();
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes)
        .max_pending_accept_reset_streams(limits.h2_max_pending_reset_streams)
        .max_local_error_reset_streams(Some(1024));
    b
}

/// The identity of a client from the chain it sent. OpenSSL-based clients (curl, Python, most
/// SDKs) send the CA certificate after their own; that is accepted when it is, byte for byte,
/// one of the `anchors` this listener trusts. Any other extra certificate is an intermediate
/// CA, which our CAs never issue, so it is refused.
pub fn peer_identity(
    chain: Option<&[CertificateDer<'_>]>,
    anchors: &[CertificateDer<'_>],
) -> Result<PeerIdentity, String> {
    match chain {
        None | Some([]) => Err("no client certificate".to_owned()),
        Some([leaf, rest @ ..]) => {
            if rest.iter().all(|c| anchors.iter().any(|a| a == c)) {
                PeerIdentity::from_der(leaf)
            } else {
                Err("client certificate chains with intermediate CAs are not accepted".to_owned())
            }
        }
    }
}

pub(crate) async fn handle(a: Accepted) {
    let Accepted {
        tcp,
        remote,
        tls,
        app,
        shared,
        mut stop,
        conn_permit,
        handshake_permit,
    } = a;
    let _open = GaugeGuard::inc(&shared.metrics.open);
    let Some(stream) = handshake(tcp, remote, tls, &shared, handshake_permit).await else {
        return;
    };
    let session = stream.get_ref().1;
    let h2 = session.alpn_protocol() == Some(b"h2");
    let peer: Peer = Arc::new(peer_identity(session.peer_certificates(), &shared.anchors));
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Metered {
        inner: stream,
        activity: activity.clone(),
    });
    let svc = service(app, peer, RemoteAddr(remote), activity.clone());
    let builder = if h2 { &shared.h2 } else { &shared.h1 };
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let grace = tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
            return;
        }
        why = watchdog(&activity, !h2, &shared.limits) => {
            shared.metrics.refused(why);
            tracing::debug!(%remote, reason = why.as_str(), "closing connection");
            CLOSE_GRACE
        }
        _ = stop.wait_for(|s| *s) => SHUTDOWN_GRACE,
    };
    conn.as_mut().graceful_shutdown();
    if tokio::time::timeout(grace, conn).await.is_err() {
        tracing::debug!(%remote, "connection did not close gracefully in time; dropped");
    }
    drop(conn_permit);
}

/// The TLS handshake, bounded in time and counted while it runs; `None` if it failed.
async fn handshake(
    tcp: TcpStream,
    remote: SocketAddr,
    tls: Arc<ServerConfig>,
    shared: &Shared,
    permit: OwnedSemaphorePermit,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let result = {
        let _in_flight = GaugeGuard::inc(&shared.metrics.handshakes);
        tokio::time::timeout(
            shared.limits.handshake_timeout,
            tokio_rustls::TlsAcceptor::from(tls).accept(tcp),
        )
        .await
    };
    drop(permit);
    match result {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            shared.metrics.refused(Refusal::HandshakeFailed);
            tracing::debug!(%remote, error = %e, "TLS handshake refused");
            None
        }
        Err(_) => {
            shared.metrics.refused(Refusal::HandshakeTimeout);
            tracing::debug!(%remote, "TLS handshake timed out");
            None
        }
    }
}

/// The connection's service: every request carries the peer, and counts as in flight until
/// its response has been sent (not just computed).
fn service(
    app: Router,
    peer: Peer,
    remote: RemoteAddr,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>>
             + Send
             + 'static,
> + Clone {
    hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer.clone());
        req.extensions_mut().insert(remote);
        let in_flight = activity.begin();
        let response = app.clone().oneshot(req);
        async move {
            let resp = response.await?;
            Ok(super::body::keep_until_sent(resp, in_flight))
        }
    })
}

/// Completes when the connection has broken a timeout rule; dropping the connection then
/// closes it.
async fn watchdog(a: &Activity, h1: bool, limits: &Limits) -> Refusal {
    let tick = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_millis(500));
    let mut every = tokio::time::interval(tick);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Some(why) = a.check(Instant::now(), h1, limits) {
            return why;
        }
    }
}

/// What the watchdog knows about a connection: bytes received, requests in flight, and when
/// it last went idle.
struct Activity {
    start: Instant,
    bytes_in: AtomicU64,
    in_flight: AtomicUsize,
    /// `bytes_in` when the last request finished: more than that means a new head is arriving.
    bytes_at_idle: AtomicU64,
    /// Milliseconds since `start`.
    idle_since_ms: AtomicU64,
    head_began_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            bytes_in: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            bytes_at_idle: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_began_ms: AtomicU64::new(0),
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_millis() as u64
    }

    fn received(&self, n: usize) {
        let before = self.bytes_in.fetch_add(n as u64, Ordering::AcqRel);
        if before == self.bytes_at_idle.load(Ordering::Acquire) {
            self.head_began_ms
                .store(self.ms(Instant::now()), Ordering::Release);
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// The rule the connection breaks at `now`, if any.
    fn check(&self, now: Instant, h1: bool, limits: &Limits) -> Option<Refusal> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let now = self.ms(now);
        let elapsed = |since: &AtomicU64| {
            Duration::from_millis(now.saturating_sub(since.load(Ordering::Acquire)))
        };
        let head_arriving =
            self.bytes_in.load(Ordering::Acquire) > self.bytes_at_idle.load(Ordering::Acquire);
        if h1 && head_arriving {
            (elapsed(&self.head_began_ms) >= limits.header_read_timeout)
                .then_some(Refusal::HeaderTimeout)
        } else {
            (elapsed(&self.idle_since_ms) >= limits.idle_timeout).then_some(Refusal::IdleTimeout)
        }
    }
}

/// A request in flight; when it is dropped the connection is idle again (if it was the last).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.bytes_at_idle
            .store(a.bytes_in.load(Ordering::Acquire), Ordering::Release);
        a.idle_since_ms
            .store(a.ms(Instant::now()), Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The decrypted stream, counting the bytes the client sends.
struct Metered<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity.received(n);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Increments a gauge for as long as it lives.
struct GaugeGuard(prometheus_client::metrics::gauge::Gauge);

impl GaugeGuard {
    fn inc(g: &prometheus_client::metrics::gauge::Gauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_head_times_out_before_an_idle_connection_does() {
        let a = Arc::new(Activity::new());
        let l = limits();
        tokio::time::advance(Duration::from_secs(1)).await;
        a.received(20); // "POST / HTTP/1.1\r\nHost"
        tokio::time::advance(Duration::from_millis(1900)).await;
        assert_eq!(a.check(Instant::now(), true, &l), None);
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(
            a.check(Instant::now(), true, &l),
            Some(Refusal::HeaderTimeout)
        );
        // HTTP/2 has no partial heads: only the idle rule applies.
        assert_eq!(a.check(Instant::now(), false, &l), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_timed_out_and_idleness_counts_from_its_end() {
        let a = Arc::new(Activity::new());
        let l = limits();
        a.received(100);
        let req = a.begin();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(a.check(Instant::now(), true, &l), None);
        drop(req);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(a.check(Instant::now(), true, &l), None);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            a.check(Instant::now(), true, &l),
            Some(Refusal::IdleTimeout)
        );
    }

    #[test]
    fn a_chain_may_repeat_a_trusted_ca_but_not_add_an_intermediate() {
        let ca = CertificateDer::from(vec![1, 2, 3]);
        let other = CertificateDer::from(vec![4, 5, 6]);
        let leaf = CertificateDer::from(vec![9]);
        assert!(
            peer_identity(None, std::slice::from_ref(&ca))
                .unwrap_err()
                .contains("no client certificate")
        );
        let err =
            peer_identity(Some(&[leaf.clone(), other]), std::slice::from_ref(&ca)).unwrap_err();
        assert!(err.contains("intermediate"), "{err}");
        // With the trusted CA after it, the leaf itself is parsed (this one is not a
        // certificate, so parsing is what fails).
        let err = peer_identity(Some(&[leaf, ca.clone()]), std::slice::from_ref(&ca)).unwrap_err();
        assert!(err.contains("unparseable"), "{err}");
    }
}
