//! The HTTPS listener's limits against clients that hold on: a request head that never ends, a
//! body sent a byte a second, thousands of idle connections, more connections and handshakes
//! than the caps allow. Each is cut off in its configured time and counted, and a new client
//! still gets in.

use mb_e2e::client::message;
use mb_e2e::{Stack, StackOptions, eventually, metric, scrape};
use rustls_pki_types::ServerName;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS connector presenting `<name>.example.com`'s certificate, speaking HTTP/1.1.
fn connector(stack: &Stack, name: &str) -> tokio_rustls::TlsConnector {
    let (crt, key) = stack.issue_client(name, "example.com");
    let mut roots = rustls::RootCertStore::empty();
    for c in mb_shared::tls::load_certs(&stack.home().join("certs/ca.crt")).unwrap() {
        roots.add(c).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            mb_shared::tls::load_certs(&crt).unwrap(),
            mb_shared::tls::load_key(&key).unwrap(),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn open(c: &tokio_rustls::TlsConnector, port: u16) -> Tls {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    c.connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads until the server closes; returns what it sent and when it closed.
async fn read_to_close(s: &mut Tls, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(limit, s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for more than {limit:?}"
    );
    (
        String::from_utf8_lossy(&buf).into_owned(),
        started.elapsed(),
    )
}

fn refusals(text: &str, reason: &str) -> f64 {
    metric(
        text,
        &format!("mb_ingest_listener_refusals_total{{reason=\"{reason}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_head_that_never_ends_is_cut_off_within_the_header_timeout() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ingest_extra: "limits:\n  header_read_timeout: 2s\n  idle_timeout: 30s\n",
        ..Default::default()
    })
    .await;
    let c = connector(&stack, "slowloris");
    let mut s = open(&c, stack.ingest_port).await;
    s.write_all(b"POST /api/v1/messages HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    s.flush().await.unwrap();
    let (_, took) = read_to_close(&mut s, Duration::from_secs(6)).await;
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "closed after {took:?}, expected about 2 s"
    );
    let m = scrape(stack.ingest_metrics_port).await;
    assert_eq!(refusals(&m, "header_timeout"), 1.0, "{m}");
    // A connection that says nothing at all lasts until the idle timeout, not the header one.
    let mut quiet = open(&c, stack.ingest_port).await;
    let early = tokio::time::timeout(Duration::from_secs(3), quiet.read(&mut [0u8; 16])).await;
    assert!(early.is_err(), "an idle connection was closed early");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_sent_a_byte_a_second_is_answered_408_and_closed() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ingest_extra: "limits:\n  body_read_timeout: 2s\n",
        ..Default::default()
    })
    .await;
    let c = connector(&stack, "trickle");
    let mut s = open(&c, stack.ingest_port).await;
    s.write_all(
        b"POST /api/v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 60\r\n\r\n",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (mut rd, mut wr) = tokio::io::split(s);
    let trickle = tokio::spawn(async move {
        for b in br#"{"sender_number": "+14155550123", "message_body": "slow"}   "# {
            if wr.write_all(&[*b]).await.is_err() || wr.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), rd.read_to_end(&mut buf)).await;
    let took = started.elapsed();
    trickle.abort();
    assert!(read.is_ok(), "the slow body was not cut off");
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.starts_with("HTTP/1.1 408") && text.contains("request_timeout"),
        "{text}"
    );
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    let m = scrape(stack.ingest_metrics_port).await;
    assert_eq!(refusals(&m, "body_timeout"), 1.0);
    assert_eq!(stack.stream_state().await.0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn five_thousand_idle_connections_do_not_stop_a_new_client_and_are_closed_when_idle() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ingest_extra: "limits:\n  idle_timeout: 8s\n",
        ..Default::default()
    })
    .await;
    let c = connector(&stack, "idler");
    let port = stack.ingest_port;
    let mut idle = Vec::with_capacity(5000);
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..5000 {
        let c = c.clone();
        opening.spawn(async move { open(&c, port).await });
        if opening.len() >= 64 {
            idle.push(opening.join_next().await.unwrap().unwrap());
        }
    }
    while let Some(s) = opening.join_next().await {
        idle.push(s.unwrap());
    }
    let m = scrape(stack.ingest_metrics_port).await;
    assert!(
        metric(&m, "mb_ingest_connections_open") >= 5000.0,
        "{}",
        metric(&m, "mb_ingest_connections_open")
    );
    let started = Instant::now();
    let ans = stack
        .client("newcomer")
        .submit(&message("+14155550123", "still served"))
        .await
        .unwrap();
    assert_eq!(ans.status, 202, "{:?}", ans.json);
    assert!(started.elapsed() < Duration::from_secs(3));
    // Nobody sends anything: the idle timeout closes them all, and counts each. (Both are
    // waited for: the last few are closed a tick after the gauge first shows fewer than 10.)
    eventually(
        Duration::from_secs(20),
        "idle connections closed and counted as idle_timeout",
        || async {
            let m = scrape(stack.ingest_metrics_port).await;
            (metric(&m, "mb_ingest_connections_open") < 10.0
                && refusals(&m, "idle_timeout") >= 5000.0)
                .then_some(())
        },
    )
    .await;
    drop(idle);
}

#[tokio::test(flavor = "multi_thread")]
async fn handshakes_over_the_cap_are_refused_counted_and_then_served_again() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ingest_extra: "limits:\n  max_handshakes: 10\n  handshake_timeout: 1s\n",
        ..Default::default()
    })
    .await;
    // Sockets that connect and never start TLS hold handshake slots until the timeout.
    let mut raw = Vec::new();
    for _ in 0..30 {
        raw.push(
            TcpStream::connect(("127.0.0.1", stack.ingest_port))
                .await
                .unwrap(),
        );
    }
    eventually(Duration::from_secs(5), "refusals counted", || async {
        let m = scrape(stack.ingest_metrics_port).await;
        (refusals(&m, "max_handshakes") >= 10.0).then_some(())
    })
    .await;
    // After the handshake timeout the slots are free again, and a real client gets in.
    let after = stack.client("after");
    eventually(Duration::from_secs(10), "a client served again", || {
        let after = after.clone();
        async move {
            let ans = after.submit(&message("+14155550123", "after")).await;
            ans.ok().filter(|a| a.status == 202).map(|_| ())
        }
    })
    .await;
    let m = scrape(stack.ingest_metrics_port).await;
    assert!(refusals(&m, "handshake_timeout") >= 10.0, "{m}");
    drop(raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_are_closed_at_once_and_counted() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ingest_extra: "limits:\n  max_connections: 20\n",
        ..Default::default()
    })
    .await;
    let c = connector(&stack, "many");
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(open(&c, stack.ingest_port).await);
    }
    // The 21st: accepted by the kernel, closed by the listener before any TLS.
    let tcp = TcpStream::connect(("127.0.0.1", stack.ingest_port))
        .await
        .unwrap();
    let refused = c
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    assert!(refused.is_err(), "a connection over the cap was served");
    let m = scrape(stack.ingest_metrics_port).await;
    assert_eq!(refusals(&m, "max_connections"), 1.0, "{m}");
    // One leaves, one more gets in.
    drop(held.pop());
    let newcomer = stack.client("newcomer");
    eventually(Duration::from_secs(5), "a free slot used", || {
        let newcomer = newcomer.clone();
        async move {
            let a = newcomer.submit(&message("+14155550123", "in")).await.ok()?;
            (a.status == 202).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_connections_close_when_idle_over_http1_and_http2() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ingest_extra: "limits:\n  idle_timeout: 2s\n",
        ..Default::default()
    })
    .await;
    // HTTP/1.1: one request, then nothing.
    let c = connector(&stack, "h1");
    let mut s = open(&c, stack.ingest_port).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (text, took) = read_to_close(&mut s, Duration::from_secs(6)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}");

    // HTTP/2: one request, then nothing; the server says GOAWAY and closes.
    let (crt, key) = stack.issue_client("h2", "example.com");
    let mut roots = rustls::RootCertStore::empty();
    for cert in mb_shared::tls::load_certs(&stack.home().join("certs/ca.crt")).unwrap() {
        roots.add(cert).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            mb_shared::tls::load_certs(&crt).unwrap(),
            mb_shared::tls::load_key(&key).unwrap(),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tls = open(
        &tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        stack.ingest_port,
    )
    .await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let resp = sender
        .send_request(
            hyper::Request::get(format!("https://localhost:{}/healthz", stack.ingest_port))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    drop(resp);
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(6), conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");
    assert!(started.elapsed() >= Duration::from_millis(1000));
    let m = scrape(stack.ingest_metrics_port).await;
    assert_eq!(refusals(&m, "idle_timeout"), 2.0, "{m}");
}
