//! The submitting side: one task per connection, each a hyper HTTP/1.1 connection over
//! tokio-rustls with the client certificate, pulling message numbers from a shared counter.

use crate::Args;
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
}

pub async fn run(args: &Args) -> anyhow::Result<Submitted> {
    let target = Arc::new(target(args)?);
    let next = Arc::new(AtomicUsize::new(0));
    let bar = progress(args);
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let (target, next, bar) = (target.clone(), next.clone(), bar.clone());
        let (n, rate) = (args.messages, args.rate);
        tasks.spawn(async move { connection(&target, &next, n, rate, started, &bar).await });
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

fn target(args: &Args) -> anyhow::Result<Target> {
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
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            mb_shared::tls::load_certs(&args.cert)?,
            mb_shared::tls::load_key(&args.key)?,
        )?;
    Ok(Target {
        host,
        port,
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
    })
}

async fn connection(
    target: &Target,
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
    let mut sender = connect(target).await?;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return Ok(out);
        }
        // Open loop: message i is due at i/rate; latency counts from when it was due.
        let due = if rate > 0 {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
            due
        } else {
            Instant::now()
        };
        let body = format!(
            r#"{{"sender_number":"+1415{:07}","message_body":"Benchmark message {i}: your verification code is {:06}. It expires in ten minutes; do not share it with anyone."}}"#,
            i % 10_000_000,
            i % 1_000_000
        );
        let req = hyper::Request::post("/api/v1/messages")
            .header(hyper::header::HOST, &target.host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        if sender.ready().await.is_err() {
            sender = connect(target).await?;
        }
        match sender.send_request(req).await {
            Ok(resp) => {
                let status = resp.status();
                let bytes = resp.into_body().collect().await?.to_bytes();
                out.latency_us
                    .record(due.elapsed().as_micros().max(1) as u64)?;
                if status == 202 {
                    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
                    if let Some(id) = v["message_id"].as_str() {
                        out.accepted_ids.push(id.to_owned());
                    }
                } else {
                    out.refused += 1;
                }
            }
            Err(_) => {
                out.errors += 1;
                sender = connect(target).await?;
            }
        }
        bar.inc(1);
    }
}

async fn connect(
    target: &Target,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(target.host.clone())?;
    let tls = target.connector.connect(name, tcp).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
