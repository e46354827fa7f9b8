//! Ingest's HTTP/2 limits against clients that abuse them, over real mutual TLS: a client that
//! opens and cancels streams as fast as it can (rapid reset, CVE-2023-44487) is sent away while
//! another client's submits keep being answered; a connection gets at most the 128 concurrent
//! streams the server advertises (more are refused, held ones are all answered); a header list
//! over 16 KiB is refused and the server stays usable.
//!
//! The tests drive the `h2` crate directly (and, where `h2` is too polite, write frames
//! themselves) and watch the decrypted frames on the wire: what the server advertised in
//! SETTINGS, its GOAWAY and RST_STREAM frames, how many HEADERS the client actually sent. So
//! what they assert is what the server did, not what a client library chose.

use bytes::Bytes;
use h2::Reason;
use h2::client::{ResponseFuture, SendRequest};
use hyper::StatusCode;
use mb_e2e::client::{ApiClient, message};
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
    fn note_inbound(&mut self, f: Frame<'_>) {
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

    fn note_outbound(&mut self, f: Frame<'_>) {
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
            this.inbound.feed(new, |f| wire.note_inbound(f));
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
            this.outbound.feed(&buf[..n], |f| wire.note_outbound(f));
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

/// Waits up to 5 s until the frames seen on a connection satisfy `done`.
async fn wait_wire(wire: &Mutex<Wire>, what: &str, done: impl Fn(&Wire) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        {
            let w = wire.lock().unwrap();
            if done(&w) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {w:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
/// Attack connections in parallel.
const ATTACKERS: usize = 3;

/// How one attack connection ended.
#[derive(Debug)]
struct Attack {
    /// Streams the client opened and cancelled.
    issued: usize,
    /// RST_STREAM frames that reached the socket.
    resets_out: usize,
    /// The server's GOAWAY: (last stream id, error code).
    goaway: Option<(u32, u32)>,
    /// The connection still answered a PING after the client had cancelled all its streams.
    still_open: bool,
    /// How the `h2` client saw the connection end, when it did.
    ended: Option<Result<(), String>>,
}

impl Attack {
    fn sent_away(&self) -> bool {
        matches!(self.goaway, Some((_, ENHANCE_YOUR_CALM)))
            && matches!(self.ended, Some(Err(_)))
            && !self.still_open
    }

    /// Streams the server read before its GOAWAY: client stream ids are odd and consecutive,
    /// so the last stream id it names is the ((id + 1) / 2)-th stream.
    fn processed(&self) -> usize {
        self.goaway.map_or(0, |(last, _)| last.div_ceil(2) as usize)
    }
}

/// Opens streams (POST headers, no body) and cancels each at once, `burst` at a time, until
/// the server ends the connection or `max` streams were cancelled. After each burst a PING
/// waits for the server to have read it: a client that never stops writing would not read
/// the server's GOAWAY (`h2` reads only once its writes are flushed, and a server that closes
/// with the rest of the flood unread resets the TCP connection, dropping the GOAWAY).
async fn rapid_reset(
    c: &tokio_rustls::TlsConnector,
    port: u16,
    burst: usize,
    max: usize,
) -> Attack {
    let (send, mut conn, wire) = open(c, port).await;
    let mut ping = conn
        .ping_pong()
        .expect("a new connection has its ping handle");
    let (mut driver, _) = drive(conn);
    let mut send = Some(send);
    let mut issued = 0;
    let mut refused = false;
    'attack: while issued < max {
        for _ in 0..burst {
            let Some(s) = send.take() else { break 'attack };
            let Ok(mut s) = s.ready().await else {
                refused = true;
                break 'attack;
            };
            let Ok((_response, mut stream)) = s.send_request(post(port), false) else {
                refused = true;
                break 'attack;
            };
            stream.send_reset(Reason::CANCEL);
            issued += 1;
            send = Some(s);
        }
        if ping.ping(h2::Ping::opaque()).await.is_err() {
            refused = true;
            break;
        }
    }
    // `send` stays alive until the end: without it the client would end the connection itself.
    let (still_open, ended) = if refused {
        let ended = tokio::time::timeout(Duration::from_secs(5), &mut driver)
            .await
            .map(|r| r.unwrap().map_err(|e| e.to_string()))
            .unwrap_or_else(|_| Err("no end 5 s after the server refused a stream".to_owned()));
        (false, Some(ended))
    } else {
        driver.abort();
        (true, None)
    };
    drop(send);
    let w = wire.lock().unwrap();
    Attack {
        issued,
        resets_out: w.resets_out,
        goaway: w.goaway,
        still_open,
        ended,
    }
}

/// `ATTACKERS` tasks, each attacking on connection after connection until `until` or until it
/// has used `connections` connections.
async fn attack(
    c: &tokio_rustls::TlsConnector,
    port: u16,
    burst: usize,
    max: usize,
    until: Instant,
    connections: usize,
) -> Vec<Attack> {
    let tasks: Vec<_> = (0..ATTACKERS)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut attacks = Vec::new();
                while Instant::now() < until && attacks.len() < connections {
                    attacks.push(rapid_reset(&c, port, burst, max).await);
                }
                attacks
            })
        })
        .collect();
    let mut attacks = Vec::new();
    for t in tasks {
        attacks.extend(t.await.unwrap());
    }
    attacks
}

/// What the other client got while an attack ran.
struct Served {
    latencies: Vec<Duration>,
    failures: Vec<String>,
}

impl Served {
    fn p(&self, p: f64) -> Duration {
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1]
    }

    fn summary(&self) -> String {
        format!(
            "{} submits answered 202, {} failed; p50 {:.1?} p99 {:.1?} max {:.1?}",
            self.latencies.len(),
            self.failures.len(),
            self.p(0.5),
            self.p(0.99),
            self.p(1.0)
        )
    }

    /// Every submit answered 202, at least `min` of them, p99 under 500 ms.
    fn assert_unharmed(&self, min: usize, during: &str) {
        assert!(
            self.failures.is_empty(),
            "submits failed during {during}: {:?}",
            self.failures
        );
        assert!(
            self.latencies.len() >= min,
            "only {} submits during {during}",
            self.latencies.len()
        );
        assert!(
            self.p(0.99) < Duration::from_millis(500),
            "during {during}: {}",
            self.summary()
        );
    }
}

/// Runs `attack` while `client` submits a message every 5 ms (one at a time).
async fn served_during<T>(client: &ApiClient, attack: impl Future<Output = T>) -> (T, Served) {
    let stop = AtomicBool::new(false);
    let attack = async {
        let out = attack.await;
        stop.store(true, Ordering::Release);
        out
    };
    let normal = async {
        let probe = message("+14155550100", "submitted during the reset flood");
        let mut served = Served {
            latencies: Vec::new(),
            failures: Vec::new(),
        };
        let mut every = tokio::time::interval(Duration::from_millis(5));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stop.load(Ordering::Acquire) && served.latencies.len() < 10_000 {
            every.tick().await;
            let started = Instant::now();
            match client.submit(&probe).await {
                Ok(a) if a.status == 202 => served.latencies.push(started.elapsed()),
                Ok(a) => served
                    .failures
                    .push(format!("HTTP {}: {}", a.status, a.text)),
                Err(e) => served.failures.push(e),
            }
        }
        served.latencies.sort_unstable();
        served
    };
    tokio::join!(attack, normal)
}

fn spread(attacks: &[Attack], f: impl Fn(&Attack) -> usize) -> String {
    let mut v: Vec<usize> = attacks.iter().map(f).collect();
    v.sort_unstable();
    format!(
        "min {} median {} max {}",
        v[0],
        v[v.len() / 2],
        v[v.len() - 1]
    )
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
    assert_eq!(
        alice
            .submit(&message("+14155550100", "before"))
            .await
            .unwrap()
            .status,
        202
    );
    let c = connector(&stack, "mallory");

    // CVE-2023-44487: bursts of 100 streams, each cancelled as soon as it is opened. The server
    // reads a burst at once, finds more than 32 cancelled streams it has not yet accepted, and
    // sends the connection away. The attackers reconnect at once, for 2 s.
    let started = Instant::now();
    let (attacks, served) = served_during(
        &alice,
        attack(
            &c,
            port,
            100,
            MAX_RESETS,
            started + Duration::from_secs(2),
            5_000,
        ),
    )
    .await;
    let took = started.elapsed();
    let sent_away = attacks.iter().filter(|a| a.sent_away()).count();
    println!(
        "rapid reset in bursts of 100, {ATTACKERS} attackers for {took:.1?}: {} connections, \
         {sent_away} sent away with GOAWAY(ENHANCE_YOUR_CALM); {} RST_STREAM frames written; \
         streams read by the server before its GOAWAY, per connection: {}; streams cancelled \
         per connection: {}",
        attacks.len(),
        attacks.iter().map(|a| a.resets_out).sum::<usize>(),
        spread(&attacks, Attack::processed),
        spread(&attacks, |a| a.issued),
    );
    println!("other client meanwhile: {}", served.summary());
    assert!(attacks.len() >= ATTACKERS, "{attacks:?}");
    for a in &attacks {
        assert!(
            a.sent_away() && a.issued <= 100,
            "an attack connection was not sent away after its first burst: {a:?}"
        );
    }
    served.assert_unharmed(100, "the rapid reset attack");
    let accepted = 1 + served.latencies.len() as u64;

    // One stream at a time, cancelled, then a PING round trip: never more than one cancelled
    // stream waiting for the server, so h2's limit on those never trips, and the server
    // serves it like a client sending one request per round trip (what each costs the
    // server is bounded by the 128 concurrent streams). Measured, and the other client must
    // not notice; whether the connection is ended is reported, not required.
    let paced = 10_000;
    let until = Instant::now() + Duration::from_secs(10);
    let (attacks, served) = served_during(&alice, attack(&c, port, 1, paced, until, 1)).await;
    println!(
        "paced resets (1 per round trip), {ATTACKERS} connections: {} still open after {paced} \
         cancelled streams each, {} sent away; {} RST_STREAM frames written",
        attacks.iter().filter(|a| a.still_open).count(),
        attacks.iter().filter(|a| a.sent_away()).count(),
        attacks.iter().map(|a| a.resets_out).sum::<usize>(),
    );
    println!("other client meanwhile: {}", served.summary());
    served.assert_unharmed(20, "paced resets");
    let accepted = accepted + served.latencies.len() as u64;

    // Only the other client's messages were queued, and the attacker's certificate still
    // works for a well-behaved HTTP/2 connection.
    assert_eq!(stack.stream_state().await.0, accepted);
    let (send, _driver, _) = connect(&c, port).await;
    let (status, text) = submit(send, port, VALID).await.unwrap();
    assert_eq!(status, 202, "{text}");
}

// ---------------------------------------------------------------------------------------------
// 2. Concurrent streams

/// A client that writes its HTTP/2 frames itself, so that it can do what the `h2` client
/// never does: open more streams than the server allows.
struct Raw {
    tls: Tls,
    frames: Frames,
    wire: Wire,
}

fn push_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The HPACK block of `POST /api/v1/messages` with a JSON content type: static-table entries
/// and literals without indexing or Huffman coding, so every block is the same and
/// independent of the others.
fn request_block(port: u16) -> Vec<u8> {
    let authority = format!("localhost:{port}");
    let mut b = vec![0x83, 0x87]; // :method POST, :scheme https
    b.push(0x04); // :path (static name 4), literal value
    b.push(16);
    b.extend_from_slice(b"/api/v1/messages");
    b.push(0x01); // :authority (static name 1)
    b.push(authority.len() as u8);
    b.extend_from_slice(authority.as_bytes());
    b.extend_from_slice(&[0x0f, 0x10]); // content-type (static name 31)
    b.push(16);
    b.extend_from_slice(b"application/json");
    b
}

impl Raw {
    async fn open(c: &tokio_rustls::TlsConnector, port: u16) -> Self {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let tls = c
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut raw = Self {
            tls,
            frames: Frames::new(0),
            wire: Wire::default(),
        };
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        push_frame(&mut out, 0x4, 0, 0, &[]); // our SETTINGS: the defaults
        raw.send(&out).await;
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.tls.write_all(bytes).await.unwrap();
        self.tls.flush().await.unwrap();
    }

    /// Reads frames (acknowledging SETTINGS and PINGs) until `done`, or for `wait` if `done`
    /// is `None`. Fails if the server closes the connection or `done` takes over 5 s.
    async fn read(&mut self, what: &str, wait: Duration, done: Option<&dyn Fn(&Wire) -> bool>) {
        use tokio::io::AsyncReadExt;
        let until = Instant::now()
            + if done.is_some() {
                Duration::from_secs(5)
            } else {
                wait
            };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if done.is_some_and(|d| d(&self.wire)) {
                return;
            }
            let left = until.saturating_duration_since(Instant::now());
            let Ok(n) = tokio::time::timeout(left, self.tls.read(&mut buf)).await else {
                assert!(
                    done.is_none(),
                    "timed out waiting for {what}: {:?}",
                    self.wire
                );
                return;
            };
            let n = n.unwrap();
            assert!(n > 0, "the server closed the connection: {:?}", self.wire);
            let mut replies = Vec::new();
            let wire = &mut self.wire;
            self.frames.feed(&buf[..n], |f| {
                match (f.kind, f.flags & 0x1) {
                    (0x4, 0) => push_frame(&mut replies, 0x4, 0x1, 0, &[]),
                    (0x6, 0) => push_frame(&mut replies, 0x6, 0x1, 0, f.payload),
                    _ => {}
                }
                wire.note_inbound(f);
            });
            if !replies.is_empty() {
                self.send(&replies).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_gets_at_most_128_concurrent_streams_and_every_held_stream_is_answered() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let port = stack.ingest_port;
    let c = connector(&stack, "bob");
    let over = 200 - MAX_STREAMS as usize;

    // A client that opens 200 streams at once without waiting for the server's SETTINGS: the
    // server advertises 128 and refuses exactly the 72 streams beyond them, not the
    // connection.
    let mut raw = Raw::open(&c, port).await;
    let block = request_block(port);
    let mut out = Vec::new();
    for i in 0..200 {
        push_frame(&mut out, 0x1, 0x4, 2 * i + 1, &block); // HEADERS, END_HEADERS
    }
    raw.send(&out).await;
    raw.read(
        "72 refused streams",
        Duration::ZERO,
        Some(&|w| w.resets_in.len() >= over),
    )
    .await;
    // Anything else the server would send about the held streams comes now.
    raw.read("", Duration::from_millis(300), None).await;
    assert_eq!(raw.wire.max_concurrent_streams, Some(MAX_STREAMS));
    let expected: Vec<(u32, u32)> = (MAX_STREAMS..200)
        .map(|i| (2 * i + 1, REFUSED_STREAM))
        .collect();
    let mut refused = raw.wire.resets_in.clone();
    refused.sort_unstable();
    assert_eq!(
        refused, expected,
        "exactly the 129th to 200th streams must be refused"
    );
    assert_eq!(raw.wire.goaway, None);
    assert!(raw.wire.responses.is_empty(), "{:?}", raw.wire);

    // The 128 held streams are open: ending their bodies gets each an answer.
    let mut out = Vec::new();
    for i in 0..MAX_STREAMS {
        let body = if i % 2 == 0 { VALID } else { "{}" };
        push_frame(&mut out, 0x0, 0x1, 2 * i + 1, body.as_bytes()); // DATA, END_STREAM
    }
    raw.send(&out).await;
    let held = MAX_STREAMS as usize;
    raw.read(
        "128 answers",
        Duration::ZERO,
        Some(&|w| w.responses.len() >= held),
    )
    .await;
    let mut answered = raw.wire.responses.clone();
    answered.sort_unstable();
    assert_eq!(
        answered,
        (0..MAX_STREAMS).map(|i| 2 * i + 1).collect::<Vec<_>>()
    );
    assert_eq!((raw.wire.resets_in.len(), raw.wire.goaway), (over, None));
    assert_eq!(stack.stream_state().await.0, u64::from(MAX_STREAMS / 2));

    // The `h2` client reads the SETTINGS first: it may open 128 streams, and its 129th does
    // not go out until one of the 128 it holds is finished.
    let (mut send, _driver, wire) = connect(&c, port).await;
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
    wait_wire(&wire, "128 streams opened", |w| {
        w.headers_out >= MAX_STREAMS as usize
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        let w = wire.lock().unwrap();
        assert_eq!(
            w.headers_out, MAX_STREAMS as usize,
            "the 129th stream went out: {w:?}"
        );
        assert!(w.responses.is_empty(), "{w:?}");
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
    let (status, text) = tokio::time::timeout(Duration::from_secs(10), answer(resp129))
        .await
        .expect("the 129th stream was not answered")
        .unwrap();
    assert_eq!(status, 202, "{text}");
    assert_eq!(wire.lock().unwrap().headers_out, MAX_STREAMS as usize + 1);
    assert_eq!(stack.stream_state().await.0, u64::from(MAX_STREAMS + 1));
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
        Ok((status, _)) => {
            println!("20 KiB header: HTTP {status}");
            assert_eq!(status, 431);
        }
        Err(e) => {
            println!("20 KiB header: {e}");
            assert!(e.is_reset() && e.is_remote(), "{e}");
        }
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
    let big = u32::from(body.stream_id());
    let _ = body.send_data(Bytes::from_static(VALID.as_bytes()), true);
    match tokio::time::timeout(Duration::from_secs(5), answer(resp))
        .await
        .expect("no answer to a 64 KiB header")
    {
        Ok((status, _)) => assert_eq!(status, 431),
        Err(e) => assert!(e.is_remote() || e.is_go_away() || e.is_io(), "{e}"),
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), driver).await;
    if let Some((last, code)) = wire.lock().unwrap().goaway {
        assert!(
            last < big && code == ENHANCE_YOUR_CALM,
            "GOAWAY({last}, {code:#x}) for the request on stream {big}"
        );
    }
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
