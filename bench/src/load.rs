//! The submitting side: keep-alive mutual-TLS connections to ingest, pulling message numbers
//! from a shared counter. HTTP/1.1: one request in flight per connection. HTTP/2 (`--http2`):
//! `--streams` requests in flight on each connection. `--batch N`: N messages per request, to
//! `/api/v1/messages/batch`. With `--timeline`, each answer is also recorded into the current
//! interval (`timeline::Live`).

use crate::Args;
use crate::timeline::Live;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpStream;

/// What the submitting phase saw.
pub struct Submitted {
    pub accepted_ids: Vec<String>,
    pub refused: usize,
    pub errors: usize,
    /// Submit latency in microseconds.
    pub latency_us: Histogram<u64>,
    pub elapsed: Duration,
    pub started_wall: SystemTime,
}

struct Target {
    host: String,
    port: u16,
    connector: tokio_rustls::TlsConnector,
    http2: bool,
    /// Messages per request (1: the single-message endpoint).
    batch: usize,
    /// The `--timeline` interval every answer is also recorded into.
    live: Option<Arc<Live>>,
}

/// A connection's request sender, either protocol.
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    /// Another handle on the same HTTP/2 connection.
    fn another_stream(&self) -> Sender {
        match self {
            Sender::H2(s) => Sender::H2(s.clone()),
            Sender::H1(_) => unreachable!("HTTP/1.1 carries one request at a time"),
        }
    }

    async fn send(
        &mut self,
        req: hyper::Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error> {
        match self {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }
}

pub async fn run(args: &Args, live: Option<Arc<Live>>) -> anyhow::Result<Submitted> {
    let target = Arc::new(target(args, live)?);
    let next = Arc::new(AtomicUsize::new(0));
    let bar = progress(args);
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let mut tasks = tokio::task::JoinSet::new();
    let streams = if args.http2 { args.streams.max(1) } else { 1 };
    for _ in 0..args.connections {
        let mut sender = Some(connect(&target).await?);
        for k in 0..streams {
            let (target, next, bar) = (target.clone(), next.clone(), bar.clone());
            let sender = if k + 1 == streams {
                sender.take().expect("the last stream takes it")
            } else {
                sender.as_ref().expect("not taken yet").another_stream()
            };
            let (n, rate) = (args.messages, args.rate);
            tasks.spawn(
                async move { connection(&target, sender, &next, n, rate, started, &bar).await },
            );
        }
    }
    let mut out = Submitted {
        accepted_ids: Vec::with_capacity(args.messages),
        refused: 0,
        errors: 0,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        elapsed: Duration::ZERO,
        started_wall,
    };
    while let Some(res) = tasks.join_next().await {
        let part = res??;
        out.accepted_ids.extend(part.accepted_ids);
        out.refused += part.refused;
        out.errors += part.errors;
        out.latency_us.add(&part.latency_us)?;
    }
    out.elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(out)
}

fn progress(args: &Args) -> indicatif::ProgressBar {
    if args.quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(args.messages as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("submit {bar:40} {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template"),
    );
    bar
}

fn target(args: &Args, live: Option<Arc<Live>>) -> anyhow::Result<Target> {
    let uri: hyper::Uri = args.url.parse()?;
    let host = uri
        .host()
        .ok_or_else(|| anyhow::anyhow!("--url has no host"))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let mut roots = rustls::RootCertStore::empty();
    for c in mb_shared::tls::load_certs(&args.ca)? {
        roots.add(c)?;
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            mb_shared::tls::load_certs(&args.cert)?,
            mb_shared::tls::load_key(&args.key)?,
        )?;
    if args.http2 {
        config.alpn_protocols = vec![b"h2".to_vec()];
    }
    Ok(Target {
        host,
        port,
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        http2: args.http2,
        batch: args.batch.max(1),
        live,
    })
}

/// The body of message `i`: realistic length, a distinct sender per message.
fn message_json(i: usize) -> String {
    format!(
        r#"{{"sender_number":"+1415{:07}","message_body":"Benchmark message {i}: your verification code is {:06}. It expires in ten minutes; do not share it with anyone."}}"#,
        i % 10_000_000,
        i % 1_000_000
    )
}

async fn connection(
    target: &Target,
    mut sender: Sender,
    next: &AtomicUsize,
    total: usize,
    rate: u64,
    started: Instant,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Submitted> {
    let mut out = Submitted {
        accepted_ids: Vec::new(),
        refused: 0,
        errors: 0,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        elapsed: Duration::ZERO,
        started_wall: SystemTime::now(),
    };
    loop {
        let first = next.fetch_add(target.batch, Ordering::Relaxed);
        if first >= total {
            return Ok(out);
        }
        let count = target.batch.min(total - first);
        // Open loop: message i is due at i/rate; latency counts from when it was due.
        let due = if rate > 0 {
            let due = started + Duration::from_secs_f64(first as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
            due
        } else {
            Instant::now()
        };
        let (path, body) = if target.batch == 1 {
            ("/api/v1/messages", message_json(first))
        } else {
            let items: Vec<String> = (first..first + count).map(message_json).collect();
            (
                "/api/v1/messages/batch",
                format!(r#"{{"messages":[{}]}}"#, items.join(",")),
            )
        };
        let mut req = hyper::Request::post(path)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        if target.http2 {
            *req.uri_mut() = format!("https://{}:{}{path}", target.host, target.port).parse()?;
        } else {
            req.headers_mut()
                .insert(hyper::header::HOST, target.host.parse()?);
        }
        match sender.send(req).await {
            Ok(resp) => {
                let status = resp.status();
                let bytes = resp.into_body().collect().await?.to_bytes();
                let latency_us = due.elapsed().as_micros().max(1) as u64;
                out.latency_us.record(latency_us)?;
                let accepted_before = out.accepted_ids.len();
                match status.as_u16() {
                    202 => {
                        let v: serde_json::Value = serde_json::from_slice(&bytes)?;
                        if let Some(id) = v["message_id"].as_str() {
                            out.accepted_ids.push(id.to_owned());
                        }
                    }
                    207 => {
                        let v: serde_json::Value = serde_json::from_slice(&bytes)?;
                        for r in v["results"].as_array().into_iter().flatten() {
                            match r["message_id"].as_str() {
                                Some(id) => out.accepted_ids.push(id.to_owned()),
                                None => out.refused += 1,
                            }
                        }
                    }
                    _ => out.refused += count,
                }
                if let Some(live) = &target.live {
                    let accepted = out.accepted_ids.len() - accepted_before;
                    live.record(latency_us, accepted, count - accepted);
                }
            }
            Err(_) => {
                out.errors += count;
                if let Some(live) = &target.live {
                    live.add(0, count);
                }
                if !target.http2 {
                    sender = connect(target).await?;
                }
            }
        }
        bar.inc(count as u64);
    }
}

async fn connect(target: &Target) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(target.host.clone())?;
    let tls = TokioIo::new(target.connector.connect(name, tcp).await?);
    if target.http2 {
        let (sender, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), tls)
                .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(tls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Sender::H1(sender))
    }
}
