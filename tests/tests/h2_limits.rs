//! Ingest's HTTP/2 limits against clients that abuse them, over real mutual TLS: a client that
//! opens and cancels streams as fast as it can (rapid reset, CVE-2023-44487) is sent away while
//! another client's submits keep being answered; a connection gets at most the 128 concurrent
//! streams the server advertises (more are refused, held ones are all answered); a header list
//! over 16 KiB is refused and the server stays usable.
//!
//! The tests drive the `h2` crate directly and watch the decrypted frames on the wire (what the
//! server advertised in SETTINGS, its GOAWAY and RST_STREAM frames, how many HEADERS the client
//! actually sent), so what they assert is what the server did, not what a client library chose.

use bytes::Bytes;
use h2::Reason;
use h2::client::{ResponseFuture, SendRequest};
use hyper::StatusCode;
use mb_e2e::client::message;
use mb_e2e::{Stack, StackOptions};
use rustls_pki_types::ServerName;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The limits of `Limits::default()` that these tests check.
const MAX_STREAMS: u32 = 128;
const MAX_HEADER_LIST: u32 = 16 * 1024;

/// HTTP/2 error codes (RFC 9113 §7).
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

const VALID: &str = r#"{"sender_number":"+14155550100","message_body":"x"}"#;

type Tls = tokio_rustls::client::TlsStream<TcpStream>;
type Conn = h2::client::Connection<Tap<Tls>, Bytes>;

// ---------------------------------------------------------------------------------------------
// What crossed the wire

/// The frames of one connection, as far as the tests care.
#[derive(Debug, Default)]
struct Wire {
    /// SETTINGS_MAX_CONCURRENT_STREAMS the server advertised.
    max_concurrent_streams: Option<u32>,
    /// SETTINGS_MAX_HEADER_LIST_SIZE the server advertised.
    max_header_list_size: Option<u32>,
    /// The server's GOAWAY: (last stream id, error code).
    goaway: Option<(u32, u32)>,
    /// RST_STREAM frames from the server: (stream id, error code).
    resets_in: Vec<(u32, u32)>,
    /// Streams the server sent response HEADERS on.
    responses: Vec<u32>,
    /// HEADERS / RST_STREAM frames the client wrote to the socket.
    headers_out: usize,
    resets_out: usize,
}

impl Wire {
    fn from_server(&mut self, f: Frame<'_>) {
        let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        match f.kind {
            // SETTINGS, not an ACK.
            0x4 if f.flags & 0x1 == 0 => {
                for p in f.payload.chunks_exact(6) {
                    match u16::from_be_bytes([p[0], p[1]]) {
                        0x3 => self.max_concurrent_streams = Some(be32(&p[2..])),
                        0x6 => self.max_header_list_size = Some(be32(&p[2..])),
                        _ => {}
                    }
                }
            }
            0x7 if f.payload.len() >= 8 => {
                self.goaway = Some((be32(f.payload) & 0x7fff_ffff, be32(&f.payload[4..])));
            }
            0x3 if f.payload.len() >= 4 => self.resets_in.push((f.stream, be32(f.payload))),
            0x1 => self.responses.push(f.stream),
            _ => {}
        }
    }

    fn from_client(&mut self, f: Frame<'_>) {
        match f.kind {
            0x1 => self.headers_out += 1,
            0x3 => self.resets_out += 1,
            _ => {}
        }
    }
}

#[derive(Clone, Copy)]
struct Frame<'a> {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &'a [u8],
}

/// Splits one direction of a connection into frames (RFC 9113 §4.1).
struct Frames {
    /// Bytes still to skip before the first frame (the client's connection preface).
    skip: usize,
    buf: Vec<u8>,
}

impl Frames {
    fn new(skip: usize) -> Self {
        Self {
            skip,
            buf: Vec::new(),
        }
    }

    fn feed(&mut self, mut data: &[u8], mut each: impl FnMut(Frame<'_>)) {
        let skipped = self.skip.min(data.len());
        self.skip -= skipped;
        data = &data[skipped..];
        self.buf.extend_from_slice(data);
        let mut at = 0;
        while self.buf.len() - at >= 9 {
            let h = &self.buf[at..at + 9];
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            if self.buf.len() - at < 9 + len {
                break;
            }
            each(Frame {
                kind: h[3],
                flags: h[4],
                stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                payload: &self.buf[at + 9..at + 9 + len],
            });
            at += 9 + len;
        }
        self.buf.drain(..at);
    }
}

/// The decrypted stream, with every frame in either direction noted in a [`Wire`].
struct Tap<S> {
    inner: S,
    wire: Arc<Mutex<Wire>>,
    inbound: Frames,
    outbound: Frames,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            let mut wire = this.wire.lock().unwrap();
            this.inbound.feed(new, |f| wire.from_server(f));
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            let mut wire = this.wire.lock().unwrap();
            this.outbound.feed(&buf[..n], |f| wire.from_client(f));
        }
        res
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------------
// Connections

/// A TLS connector presenting `<name>.example.com`'s certificate and offering only `h2`.
fn connector(stack: &Stack, name: &str) -> tokio_rustls::TlsConnector {
    mb_shared::tls::install_crypto_provider();
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
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// An HTTP/2 client handshake over a new mTLS connection; the connection is not driven yet.
async fn open(
    c: &tokio_rustls::TlsConnector,
    port: u16,
) -> (SendRequest<Bytes>, Conn, Arc<Mutex<Wire>>) {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = c
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ingest must negotiate h2"
    );
    let wire = Arc::new(Mutex::new(Wire::default()));
    let tap = Tap {
        inner: tls,
        wire: wire.clone(),
        inbound: Frames::new(0),
        outbound: Frames::new(24), // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    };
    let (send, conn) = h2::client::handshake(tap).await.expect("h2 handshake");
    (send, conn, wire)
}

/// Drives a connection; the receiver follows the max concurrent streams the client may open
/// (as the `h2` client understood the server's SETTINGS).
fn drive(mut conn: Conn) -> (JoinHandle<Result<(), h2::Error>>, watch::Receiver<usize>) {
    let (tx, rx) = watch::channel(conn.max_concurrent_send_streams());
    let task = tokio::spawn(std::future::poll_fn(move |cx| {
        let res = Pin::new(&mut conn).poll(cx);
        let now = conn.max_concurrent_send_streams();
        tx.send_if_modified(|v| std::mem::replace(v, now) != now);
        res
    }));
    (task, rx)
}

/// Opens and drives a connection and waits for the server's SETTINGS to take effect.
async fn connect(
    c: &tokio_rustls::TlsConnector,
    port: u16,
) -> (
    SendRequest<Bytes>,
    JoinHandle<Result<(), h2::Error>>,
    Arc<Mutex<Wire>>,
) {
    let (send, conn, wire) = open(c, port).await;
    let (driver, mut max) = drive(conn);
    tokio::time::timeout(
        Duration::from_secs(5),
        max.wait_for(|m| *m == MAX_STREAMS as usize),
    )
    .await
    .expect("the server's SETTINGS did not arrive")
    .expect("connection driver ended");
    (send, driver, wire)
}

fn post(port: u16) -> hyper::Request<()> {
    hyper::Request::post(format!("https://localhost:{port}/api/v1/messages"))
        .header("content-type", "application/json")
        .body(())
        .unwrap()
}

/// A response's status and body text.
async fn answer(resp: ResponseFuture) -> Result<(StatusCode, String), h2::Error> {
    let resp = resp.await?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    Ok((status, String::from_utf8_lossy(&text).into_owned()))
}

/// One complete request with `body` on an open connection.
async fn submit(
    send: SendRequest<Bytes>,
    port: u16,
    body: &'static str,
) -> Result<(StatusCode, String), h2::Error> {
    let mut send = send.ready().await?;
    let (resp, mut stream) = send.send_request(post(port), false)?;
    stream.send_data(Bytes::from_static(body.as_bytes()), true)?;
    tokio::time::timeout(Duration::from_secs(10), answer(resp))
        .await
        .expect("no answer within 10 s")
}

// ---------------------------------------------------------------------------------------------
// 1. Rapid reset

/// Streams one attack connection opens and cancels at most.
const MAX_RESETS: usize = 20_000;
/// Attack connections in parallel, and how long each attacker keeps reconnecting.
const ATTACKERS: usize = 3;
const ATTACK_FOR: Duration = Duration::from_secs(3);

/// How one attack connection ended.
#[derive(Debug)]
struct Attack {
    /// Streams the client opened and reset before its connection failed.
    issued: usize,
    /// RST_STREAM frames that reached the socket.
    resets_out: usize,
    /// The server's GOAWAY: (last stream id, error code).
    goaway: Option<(u32, u32)>,
    /// What the `h2` client saw end the connection.
    ended: Result<(), String>,
}

impl Attack {
    /// Streams the server processed before it sent the client away: client stream ids are
    /// odd and consecutive, so `last_stream_id` is the (n-1)·2+1-th.
    fn tolerated(&self) -> usize {
        self.goaway.map_or(0, |(last, _)| last.div_ceil(2) as usize)
    }
}

/// Opens streams (POST headers, no body) and cancels each at once, until the server ends the
/// connection or `MAX_RESETS` streams were cancelled.
async fn rapid_reset(c: &tokio_rustls::TlsConnector, port: u16) -> Attack {
    let (send, conn, wire) = open(c, port).await;
    let (mut driver, _) = drive(conn);
    let mut send = Some(send);
    let mut issued = 0;
    while issued < MAX_RESETS {
        let Some(s) = send.take() else { break };
        let Ok(mut s) = s.ready().await else { break };
        match s.send_request(post(port), false) {
            Ok((_response, mut stream)) => {
                stream.send_reset(Reason::CANCEL);
                issued += 1;
                send = Some(s);
            }
            Err(_) => break,
        }
    }
    // Keep `send` alive: with it gone, the client would end the connection itself.
    let ended = match tokio::time::timeout(Duration::from_secs(5), &mut driver).await {
        Ok(res) => res.unwrap().map_err(|e| e.to_string()),
        Err(_) => {
            driver.abort();
            Err("still open 5 s after the last reset".to_owned())
        }
    };
    drop(send);
    let w = wire.lock().unwrap();
    Attack {
        issued,
        resets_out: w.resets_out,
        goaway: w.goaway,
        ended,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rapid_reset_connections_are_sent_away_while_other_clients_are_served() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let port = stack.ingest_port;
    let alice = stack.client("alice");
    let probe = message("+14155550100", "submitted during the reset flood");
    assert_eq!(alice.submit(&probe).await.unwrap().status, 202);

    // The other client: a submit every 5 ms (one at a time, over HTTP/1.1) until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let normal = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = Vec::new();
            let mut every = tokio::time::interval(Duration::from_millis(5));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Acquire) && latencies.len() + failures.len() < 10_000 {
                every.tick().await;
                let started = Instant::now();
                match alice.submit(&probe).await {
                    Ok(a) if a.status == 202 => latencies.push(started.elapsed()),
                    Ok(a) => failures.push(format!("HTTP {}: {}", a.status, a.text)),
                    Err(e) => failures.push(e),
                }
            }
            (latencies, failures)
        })
    };

    // The attackers: each reconnects as soon as it is sent away, for ATTACK_FOR.
    let c = connector(&stack, "mallory");
    let started = Instant::now();
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut attacks = Vec::new();
                while started.elapsed() < ATTACK_FOR && attacks.len() < 1_000 {
                    attacks.push(rapid_reset(&c, port).await);
                }
                attacks
            })
        })
        .collect();
    let mut attacks = Vec::new();
    for a in attackers {
        attacks.extend(a.await.unwrap());
    }
    let attack_took = started.elapsed();
    stop.store(true, Ordering::Release);
    let (mut latencies, failures) = normal.await.unwrap();

    // Every attack connection was ended by the server with ENHANCE_YOUR_CALM, long before
    // the client ran out of streams to cancel.
    for a in &attacks {
        assert!(
            matches!(a.goaway, Some((_, ENHANCE_YOUR_CALM))) && a.ended.is_err(),
            "an attack connection was not sent away by the server: {a:?}"
        );
        assert!(a.issued < MAX_RESETS, "{a:?}");
    }
    let mut tolerated: Vec<usize> = attacks.iter().map(Attack::tolerated).collect();
    tolerated.sort_unstable();
    let total_resets: usize = attacks.iter().map(|a| a.resets_out).sum();
    let issued: usize = attacks.iter().map(|a| a.issued).sum();
    println!(
        "rapid reset: {} connections in {attack_took:?}, {total_resets} RST_STREAM frames sent \
         ({issued} streams cancelled by the client); streams the server processed before its \
         GOAWAY(ENHANCE_YOUR_CALM), per connection: min {} median {} max {}",
        attacks.len(),
        tolerated[0],
        tolerated[tolerated.len() / 2],
        tolerated[tolerated.len() - 1],
    );
    assert!(
        attacks.len() >= ATTACKERS,
        "{} attack connections",
        attacks.len()
    );
    assert!(
        tolerated[tolerated.len() - 1] <= 1_000,
        "the server let a connection open and cancel {} streams",
        tolerated[tolerated.len() - 1]
    );

    // The other client was served throughout.
    latencies.sort_unstable();
    assert!(
        failures.is_empty(),
        "submits failed during the attack: {failures:?}"
    );
    assert!(
        latencies.len() >= 100,
        "only {} submits in {attack_took:?}",
        latencies.len()
    );
    let (p50, p99, max) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    println!(
        "other client during the attack: {} submits, all 202; p50 {p50:?} p99 {p99:?} max {max:?}",
        latencies.len()
    );
    assert!(p99 < Duration::from_millis(500), "p99 {p99:?}");

    // Only the other client's messages were queued, and the attacker's certificate still
    // works for a well-behaved HTTP/2 connection.
    assert_eq!(stack.stream_state().await.0, latencies.len() as u64 + 1);
    let (send, _driver, _) = connect(&c, port).await;
    let (status, text) = submit(send, port, VALID).await.unwrap();
    assert_eq!(status, 202, "{text}");
}

// ---------------------------------------------------------------------------------------------
// 2. Concurrent streams

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_gets_at_most_128_concurrent_streams_and_every_held_stream_is_answered() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let port = stack.ingest_port;
    let c = connector(&stack, "bob");

    // A client that opens 200 streams before it has read the server's SETTINGS: every HEADERS
    // frame goes out, and the server refuses exactly the streams beyond its limit.
    let (mut send, conn, wire) = open(&c, port).await;
    let mut streams = Vec::new();
    for _ in 0..200 {
        let (resp, body) = send.send_request(post(port), false).unwrap();
        streams.push((resp, body));
    }
    let (_driver, _) = drive(conn);
    let refused = mb_e2e::eventually(Duration::from_secs(5), "72 refused streams", || {
        let wire = wire.clone();
        async move {
            let w = wire.lock().unwrap();
            (w.headers_out == 200 && w.resets_in.len() >= 200 - MAX_STREAMS as usize)
                .then(|| w.resets_in.clone())
        }
    })
    .await;
    {
        let w = wire.lock().unwrap();
        assert_eq!(w.max_concurrent_streams, Some(MAX_STREAMS), "{w:?}");
        assert_eq!(w.goaway, None, "{w:?}");
    }
    let expected: Vec<(u32, u32)> = (MAX_STREAMS..200)
        .map(|i| (2 * i + 1, REFUSED_STREAM))
        .collect();
    let mut refused = refused;
    refused.sort_unstable();
    assert_eq!(
        refused, expected,
        "the 129th to 200th streams must be refused"
    );
    let over = streams.split_off(MAX_STREAMS as usize);
    for (resp, _) in over {
        let err = tokio::time::timeout(Duration::from_secs(5), answer(resp))
            .await
            .expect("a refused stream got no error")
            .expect_err("a stream over the limit was answered");
        assert_eq!(err.reason(), Some(Reason::REFUSED_STREAM), "{err}");
    }

    // The 128 held streams are still open: none has been answered or reset. End them, half
    // with a valid message and half with an empty object, and every one is answered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    {
        let w = wire.lock().unwrap();
        assert!(w.responses.is_empty(), "{w:?}");
        assert_eq!(w.resets_in.len(), 200 - MAX_STREAMS as usize, "{w:?}");
    }
    let mut answers = Vec::new();
    for (i, (resp, mut body)) in streams.into_iter().enumerate() {
        let data = if i % 2 == 0 { VALID } else { "{}" };
        body.send_data(Bytes::from_static(data.as_bytes()), true)
            .unwrap();
        answers.push(tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(10), answer(resp)).await
        }));
    }
    for (i, a) in answers.into_iter().enumerate() {
        let (status, text) = a
            .await
            .unwrap()
            .expect("a held stream was not answered")
            .unwrap();
        let want = if i % 2 == 0 { 202 } else { 422 };
        assert_eq!(status, want, "stream {i}: {text}");
    }
    assert_eq!(stack.stream_state().await.0, u64::from(MAX_STREAMS / 2));

    // A client that read the SETTINGS first: it sees 128, and its 129th stream does not go out
    // until one of the 128 it holds is finished.
    let (send, _driver, wire) = connect(&c, port).await;
    let mut send = send;
    let mut streams = Vec::new();
    for _ in 0..MAX_STREAMS {
        send = send.ready().await.unwrap();
        streams.push(send.send_request(post(port), false).unwrap());
    }
    send = send.ready().await.unwrap();
    let (resp129, mut body129) = send.send_request(post(port), false).unwrap();
    body129
        .send_data(Bytes::from_static(VALID.as_bytes()), true)
        .unwrap();
    // (`ready` on this handle, not a clone: the handle remembers the stream it queued.)
    let next = tokio::time::timeout(Duration::from_millis(300), send.ready()).await;
    assert!(next.is_err(), "a 130th stream could be started");
    let early = tokio::time::timeout(Duration::from_millis(100), answer(resp129)).await;
    assert!(
        early.is_err(),
        "the 129th stream was answered while 128 were held"
    );
    assert_eq!(wire.lock().unwrap().headers_out, MAX_STREAMS as usize);
    let (resp1, mut body1) = streams.remove(0);
    body1.send_data(Bytes::from_static(b"{}"), true).unwrap();
    assert_eq!(answer(resp1).await.unwrap().0, 422);
    // The 129th goes out now; that it was answered is seen on the wire (its response future
    // was consumed by the timeout above).
    mb_e2e::eventually(Duration::from_secs(5), "the 129th stream answered", || {
        let wire = wire.clone();
        async move {
            let w = wire.lock().unwrap();
            (w.headers_out == MAX_STREAMS as usize + 1
                && w.responses.contains(&(2 * MAX_STREAMS + 1)))
            .then_some(())
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. Header list size

/// A request with one `x-padding` header of `len` bytes.
fn padded(port: u16, len: usize) -> hyper::Request<()> {
    let mut req = post(port);
    let value: String = (0..len)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    req.headers_mut()
        .insert("x-padding", value.parse().unwrap());
    req
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_list_over_16_kib_is_refused_and_the_server_stays_usable() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let port = stack.ingest_port;
    let c = connector(&stack, "carol");

    let (send, driver, wire) = connect(&c, port).await;
    assert_eq!(
        wire.lock().unwrap().max_header_list_size,
        Some(MAX_HEADER_LIST)
    );

    // 20 KiB: over the limit, so refused with 431 (or a reset); the connection stays usable.
    let mut s = send.clone().ready().await.unwrap();
    let (resp, mut body) = s.send_request(padded(port, 20 * 1024), false).unwrap();
    let _ = body.send_data(Bytes::from_static(VALID.as_bytes()), true);
    match tokio::time::timeout(Duration::from_secs(5), answer(resp))
        .await
        .expect("no answer to a 20 KiB header")
    {
        Ok((status, _)) => assert_eq!(status, 431),
        Err(e) => assert!(e.is_reset() && e.is_remote(), "{e}"),
    }
    let (status, text) = submit(send.clone(), port, VALID).await.unwrap();
    assert_eq!(
        status, 202,
        "the same connection after a refused header: {text}"
    );
    assert!(wire.lock().unwrap().goaway.is_none());
    assert_eq!(
        stack.stream_state().await.0,
        1,
        "only the valid request may be queued"
    );

    // 64 KiB: four times the limit; refused (h2 treats a header list this far over its limit
    // as abuse and ends the connection).
    let mut s = send.ready().await.unwrap();
    let (resp, mut body) = s.send_request(padded(port, 64 * 1024), false).unwrap();
    let _ = body.send_data(Bytes::from_static(VALID.as_bytes()), true);
    match tokio::time::timeout(Duration::from_secs(5), answer(resp))
        .await
        .expect("no answer to a 64 KiB header")
    {
        Ok((status, _)) => assert_eq!(status, 431),
        Err(e) => assert!(e.is_remote() || e.is_go_away() || e.is_io(), "{e}"),
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), driver).await;
    println!(
        "64 KiB header: server sent {:?} (GOAWAY last stream, code); connection {}",
        wire.lock().unwrap().goaway,
        match &ended {
            Ok(Ok(Ok(()))) => "closed cleanly".to_owned(),
            Ok(Ok(Err(e))) => format!("ended: {e}"),
            Ok(Err(e)) => format!("driver failed: {e}"),
            Err(_) => "still open".to_owned(),
        }
    );

    // The server is still there for a new connection.
    let (send, _driver, _) = connect(&c, port).await;
    let (status, text) = submit(send, port, VALID).await.unwrap();
    assert_eq!(status, 202, "{text}");
    assert_eq!(stack.stream_state().await.0, 2);
}
