//! The mutual-TLS accept loop shared by the HTTPS services.
//!
//! Each accepted connection gets a bounded TLS handshake; the peer certificate is parsed once
//! and attached to every request on that connection as an `Arc<PeerIdentity>` extension. The
//! TLS configuration is read from an `ArcSwap` per connection, so a new CRL takes effect on the
//! next handshake without a restart. On shutdown the listener closes, open connections finish
//! their in-flight requests, and the loop returns.

use crate::identity::PeerIdentity;
use arc_swap::ArcSwap;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// The peer of a request: parsed client certificate, or why it could not be parsed.
pub type Peer = Arc<Result<PeerIdentity, String>>;

/// Serves `app` over mutual TLS on `listener` until `shutdown` completes, then drains.
pub async fn serve_mtls(
    listener: TcpListener,
    tls: Arc<ArcSwap<ServerConfig>>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            res = listener.accept() => match res {
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
        let _ = tcp.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.load_full());
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            // Our CAs sign client certificates directly: a chain with intermediates could name
            // any issuer it likes, so it is not accepted.
            let peer: Peer = Arc::new(match stream.get_ref().1.peer_certificates() {
                Some([leaf]) => PeerIdentity::from_der(leaf),
                Some([]) | None => Err("no client certificate".to_owned()),
                Some(_) => {
                    Err("client certificates with intermediates are not accepted".to_owned())
                }
            });
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    app.clone().oneshot(req)
                },
            );
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("connections still open after drain timeout"),
    }
}
