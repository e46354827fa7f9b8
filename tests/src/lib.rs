//! Test harness for the end-to-end tests in `tests/tests/`: a private Redis per test (random
//! port, temporary data dir, the project's `redis/redis.conf`), a database of its own per test
//! on the MariaDB that `ops/test` starts (`MB_TEST_MYSQL_URL`), and the real release binaries
//! (`mb-store`, `mb-ingest`, `mb-deliver`, `mbctl`) talking real mutual TLS.
//!
//! Everything a test starts is stopped and removed in `Drop`.

pub mod client;
pub mod haproxy;
pub mod load;
pub mod mariadb_server;
pub mod proc;
pub mod readme;
pub mod redis_server;
pub mod stack;
pub mod testdb;
pub mod web;
pub mod webdriver;

pub use client::ApiClient;
pub use stack::{Stack, StackOptions};

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Directory holding the built binaries: the profile directory this test binary lives in.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("MB_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(|p| p.parent())
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Path of a built binary; fails with instructions when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built. Run the tests with ops/test, or `cargo build --release --workspace --bins` \
         before `cargo nextest run --release`.",
        path.display()
    );
    path
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A free TCP port on 127.0.0.1, below the kernel's ephemeral range (32768+), so that no
/// outgoing connection can take it between this check and the service binding it. Each test
/// process starts at its own offset to keep parallel tests apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 10_000 + (std::process::id() * 97) % 20_000;
    for _ in 0..20_000 {
        let port = 10_000 + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % 22_000;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free port between 10000 and 32000");
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub async fn wait_for_port(port: u16, timeout: Duration, what: &str) {
    eventually(timeout, what, || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await
}

/// The Prometheus text a service serves on 127.0.0.1:`port`/metrics.
pub async fn scrape(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connect to metrics port {port}: {e}"));
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send metrics request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read metrics");
    out
}

/// The value of one sample (`name{labels}` exactly as exported, or a bare name), 0 if absent.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// Submits `n` distinct messages over `concurrency` connections; returns the ids of the
/// accepted ones (202) and how many were refused with 503.
pub async fn submit_many(client: &ApiClient, n: usize, concurrency: usize) -> (Vec<String>, usize) {
    use futures::StreamExt;
    let results: Vec<Option<String>> = futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let body = client::message("+14155550100", &format!("load message {i}"));
                match client.submit(&body).await {
                    Ok(a) if a.status == 202 => a.json["message_id"].as_str().map(str::to_owned),
                    Ok(a) => {
                        assert_eq!(a.status, 503, "unexpected answer {:?}", a.json);
                        None
                    }
                    Err(_) => None,
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let refused = results.iter().filter(|r| r.is_none()).count();
    (results.into_iter().flatten().collect(), refused)
}

/// Asserts that MySQL holds exactly the `accepted` messages, each once, all delivered.
pub async fn assert_exactly_once(db: &testdb::TestDb, accepted: &[String]) {
    let rows: Vec<(String, String)> = db.query("SELECT message_id, status FROM messages").await;
    let mut ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, ids.len(), "duplicate rows in messages");
    let mut want: Vec<&str> = accepted.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(ids.len(), want.len(), "rows in MySQL vs messages accepted");
    assert_eq!(ids, want, "the stored messages are not the accepted ones");
    assert!(
        rows.iter().all(|(_, s)| s == "delivered"),
        "every message must be delivered"
    );
}
