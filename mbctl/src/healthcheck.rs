//! `mbctl healthcheck`: does every service answer? One line per check and an exit status for
//! scripts, timers and systemd (`ExecStartPost=`, a `.timer`, a watchdog script): 0 when all
//! answered, 1 otherwise.
//!
//! * ingest: `GET /readyz` (Redis reachable, access list loaded), store and portal:
//!   `GET /healthz`, over mutual TLS with a certificate of `<home>` (a service certificate of
//!   `certs/services/` unless `--cert`/`--key` name another), trusting `<home>/certs/ca.crt`;
//! * deliver: its plain-HTTP `/metrics` on 127.0.0.1 (it has no listener of its own);
//! * Redis: `PING`; MySQL: `SELECT 1`.
//!
//! The probes are shared with `mbctl doctor`.

use crate::cli::Cli;
use mb_shared::config::TlsFiles;
use mb_shared::internal::InternalClient;
use mb_shared::redis_conn::{RedisTarget, Timeouts};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What can be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Service {
    Ingest,
    Store,
    Portal,
    Deliver,
    Redis,
    Mysql,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Ingest => "ingest",
            Service::Store => "store",
            Service::Portal => "portal",
            Service::Deliver => "deliver",
            Service::Redis => "redis",
            Service::Mysql => "mysql",
        }
    }
}

/// Where the services are and how to reach them; shared by `healthcheck` and `doctor`.
#[derive(clap::Args, Clone, Debug)]
pub struct Endpoints {
    /// mb-ingest's HTTPS base URL.
    #[arg(long, env = "MB_INGEST_URL", default_value = "https://localhost:8001")]
    pub ingest_url: String,
    /// mb-store's HTTPS base URL.
    #[arg(long, env = "MB_STORE_URL", default_value = "https://localhost:8000")]
    pub store_url: String,
    /// mb-portal's HTTPS base URL.
    #[arg(long, env = "MB_PORTAL_URL", default_value = "https://localhost:8080")]
    pub portal_url: String,
    /// Metrics address of a deliver worker (`http://127.0.0.1:9201/metrics` or
    /// `127.0.0.1:9201`); repeat it (or separate with commas) for several workers.
    #[arg(
        long = "deliver-url",
        env = "MB_DELIVER_METRICS_URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:9100/metrics"
    )]
    pub deliver_urls: Vec<String>,
    /// What to check (repeatable); default: ingest, store, portal, deliver, and Redis and
    /// MySQL when their URLs are given.
    #[arg(long = "service", value_enum)]
    pub services: Vec<Service>,
    /// Client certificate presented to ingest, store and portal (default: the first of
    /// `<home>/certs/services/{deliver,ingest,store,portal}.crt`).
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key of `--cert`.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// How long each check may take (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = mb_shared::config::parse_duration)]
    pub timeout: Duration,
}

#[derive(clap::Args)]
pub struct HealthcheckArgs {
    #[command(flatten)]
    pub endpoints: Endpoints,
    /// Print nothing; only the exit status tells.
    #[arg(long, short)]
    pub quiet: bool,
}

/// One check's outcome: what answered (or why not) and how long it took.
pub struct Probe {
    pub service: Service,
    /// What was asked, without passwords.
    pub target: String,
    pub result: Result<String, String>,
    pub elapsed: Duration,
}

impl Endpoints {
    /// The services to check: those asked for, or every configured one.
    pub fn selected(&self, cli: &Cli) -> Vec<Service> {
        let mut s = if self.services.is_empty() {
            let mut all = vec![
                Service::Ingest,
                Service::Store,
                Service::Portal,
                Service::Deliver,
            ];
            if cli.redis_url.is_some() {
                all.push(Service::Redis);
            }
            if cli.mysql_url.is_some() {
                all.push(Service::Mysql);
            }
            all
        } else {
            self.services.clone()
        };
        s.sort_unstable();
        s.dedup();
        s
    }

    /// The TLS files presented to the HTTPS services.
    pub fn tls_files(&self, cli: &Cli) -> Result<TlsFiles, String> {
        let ca = cli.certs_dir().join("ca.crt");
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            return Ok(TlsFiles {
                ca,
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        let dir = cli.certs_dir().join("services");
        ["deliver", "ingest", "store", "portal"]
            .iter()
            .map(|n| (dir.join(format!("{n}.crt")), dir.join(format!("{n}.key"))))
            .find(|(c, k)| c.is_file() && std::fs::File::open(k).is_ok())
            .map(|(cert, key)| TlsFiles { ca, cert, key })
            .ok_or_else(|| {
                format!(
                    "no readable service certificate in {} (run mbctl init, or give --cert and \
                     --key, or --home)",
                    dir.display()
                )
            })
    }

    /// Runs the probes of `services` concurrently; results in the order of `services`.
    pub async fn probe_all(&self, cli: &Cli, services: &[Service]) -> Vec<Probe> {
        let mut tasks = Vec::new();
        let https = services
            .iter()
            .any(|s| matches!(s, Service::Ingest | Service::Store | Service::Portal));
        let tls = if https {
            Some(
                self.tls_files(cli)
                    .and_then(|f| mb_shared::tls::client_config(&f).map_err(|e| e.to_string())),
            )
        } else {
            None
        };
        for &service in services {
            let timeout = self.timeout;
            match service {
                Service::Ingest | Service::Store | Service::Portal => {
                    let (base, path) = match service {
                        Service::Ingest => (&self.ingest_url, "/readyz"),
                        Service::Store => (&self.store_url, "/healthz"),
                        _ => (&self.portal_url, "/healthz"),
                    };
                    let base = base.trim_end_matches('/').to_owned();
                    let target = format!("{base}{path}");
                    let tls = tls.clone().expect("tls is loaded for https services");
                    tasks.push((
                        service,
                        tokio::spawn(async move {
                            timed(service, target, async move {
                                let tls = tls?;
                                probe_https(&base, path, tls, timeout).await
                            })
                            .await
                        }),
                    ));
                }
                Service::Deliver => {
                    for url in &self.deliver_urls {
                        let url = url.clone();
                        tasks.push((
                            service,
                            tokio::spawn(async move {
                                let target = metrics_url(&url).map_or_else(
                                    |_| url.clone(),
                                    |(h, p, path)| format!("http://{h}:{p}{path}"),
                                );
                                timed(service, target, probe_metrics(&url, timeout)).await
                            }),
                        ));
                    }
                }
                Service::Redis => {
                    let url = cli.redis_url.clone();
                    tasks.push((
                        service,
                        tokio::spawn(async move {
                            let target = url.as_deref().map_or("(no --redis-url)".into(), redact);
                            timed(service, target, async move {
                                let url =
                                    url.ok_or("no Redis URL: give --redis-url or MB_REDIS_URL")?;
                                probe_redis(&url, timeout).await
                            })
                            .await
                        }),
                    ));
                }
                Service::Mysql => {
                    let url = cli.mysql_url.clone();
                    tasks.push((
                        service,
                        tokio::spawn(async move {
                            let target = url.as_deref().map_or("(no --mysql-url)".into(), redact);
                            timed(service, target, async move {
                                let url =
                                    url.ok_or("no MySQL URL: give --mysql-url or MB_MYSQL_URL")?;
                                probe_mysql(&url, timeout).await
                            })
                            .await
                        }),
                    ));
                }
            }
        }
        let mut out = Vec::new();
        for (service, t) in tasks {
            out.push(t.await.unwrap_or_else(|e| Probe {
                service,
                target: String::new(),
                result: Err(format!("check failed: {e}")),
                elapsed: Duration::ZERO,
            }));
        }
        out
    }
}

/// Prints one line per check unless `quiet`; whether all passed.
pub async fn run(cli: &Cli, args: &HealthcheckArgs) -> anyhow::Result<bool> {
    let services = args.endpoints.selected(cli);
    let probes = args.endpoints.probe_all(cli, &services).await;
    let ok = probes.iter().all(|p| p.result.is_ok());
    if !args.quiet {
        for p in &probes {
            match &p.result {
                Ok(_) => println!(
                    "ok    {:<8} {}  {} ms",
                    p.service.name(),
                    p.target,
                    p.elapsed.as_millis()
                ),
                Err(reason) => println!("FAIL  {:<8} {}  {reason}", p.service.name(), p.target),
            }
        }
    }
    Ok(ok)
}

async fn timed(
    service: Service,
    target: String,
    check: impl Future<Output = Result<String, String>>,
) -> Probe {
    let started = Instant::now();
    let result = check.await;
    Probe {
        service,
        target,
        result,
        elapsed: started.elapsed(),
    }
}

/// `GET base+path` over mutual TLS must answer 200.
pub async fn probe_https(
    base: &str,
    path: &str,
    tls: rustls::ClientConfig,
    timeout: Duration,
) -> Result<String, String> {
    let client = InternalClient::new(base, tls, timeout);
    let answer = client
        .send(hyper::Method::GET, path, None, None)
        .await
        .map_err(|e| match e {
            // `request to /x failed: client error (Connect): tcp connect error: …`: the cause.
            mb_shared::internal::ClientError::Transport { source, .. } => error_chain(&source)
                .split(": ")
                .filter(|part| !part.starts_with("client error ("))
                .collect::<Vec<_>>()
                .join(": "),
            other => error_chain(&other),
        })?;
    let body = String::from_utf8_lossy(&answer.body);
    let body = body.trim();
    if answer.status == hyper::StatusCode::OK {
        Ok(format!("{} {body}", answer.status.as_u16()))
    } else {
        Err(format!(
            "answered {}{}",
            answer.status,
            if body.is_empty() {
                String::new()
            } else {
                format!(": {}", body.chars().take(200).collect::<String>())
            }
        ))
    }
}

/// (host, port, path) of a deliver metrics address: `http://h:p/path`, `h:p/path` or `h:p`.
pub fn metrics_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    if rest.contains("://") {
        return Err(format!("{url}: only plain http:// metrics addresses"));
    }
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| format!("{url}: no port (e.g. 127.0.0.1:9100)"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{url}: invalid port `{port}`"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_owned(), port, path.to_owned()))
}

/// `GET /metrics` of a deliver worker (plain HTTP/1.1) must answer 200 with `mb_deliver_`
/// metrics, so that another program on the port is not taken for a worker.
pub async fn probe_metrics(url: &str, timeout: Duration) -> Result<String, String> {
    let (host, port, path) = metrics_url(url)?;
    let check = async {
        let mut s = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
        let mut buf = Vec::new();
        s.take(16 << 20)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        let text = String::from_utf8_lossy(&buf);
        let status = text.lines().next().unwrap_or_default();
        let code = status.split_whitespace().nth(1).unwrap_or_default();
        if !status.starts_with("HTTP/") {
            return Err("no HTTP answer: is this a deliver worker's metrics address?".into());
        }
        if code != "200" {
            return Err(format!("answered `{}`", status.trim()));
        }
        if !text.contains("mb_deliver_") {
            return Err(
                "answered, but with no mb_deliver_ metrics: another program on this \
                        port?"
                    .into(),
            );
        }
        Ok("200".to_owned())
    };
    tokio::time::timeout(timeout, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

/// A Redis connection, within `timeout`.
pub async fn redis_connect(
    url: &str,
    timeout: Duration,
) -> Result<mb_shared::redis_conn::RedisConn, String> {
    // One node of a cluster (the first seed that answers): INFO, TIME and PING answer for it,
    // CLUSTER INFO for the whole cluster.
    let target = RedisTarget::parse(url).map_err(|e| e.to_string())?;
    let t = Timeouts {
        connect: timeout,
        response: Some(timeout),
    };
    let first_master = target.any_node(t);
    tokio::time::timeout(timeout, first_master)
        .await
        .map_err(|_| format!("no connection within {timeout:?}"))?
        .map_err(|e| e.to_string())
}

/// One Redis command with a deadline.
pub async fn redis_query<T: redis::FromRedisValue>(
    con: &mut mb_shared::redis_conn::RedisConn,
    cmd: &redis::Cmd,
    timeout: Duration,
) -> Result<T, String> {
    tokio::time::timeout(timeout, cmd.query_async::<T>(con))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())
}

pub async fn probe_redis(url: &str, timeout: Duration) -> Result<String, String> {
    let mut con = redis_connect(url, timeout).await?;
    let pong = redis_query::<String>(&mut con, &redis::cmd("PING"), timeout).await?;
    if RedisTarget::parse(url).is_ok_and(|t| t.is_cluster()) {
        let info: String =
            redis_query(&mut con, redis::cmd("CLUSTER").arg("INFO"), timeout).await?;
        let state = info
            .lines()
            .find_map(|l| l.strip_prefix("cluster_state:"))
            .map_or("unknown", str::trim);
        if state != "ok" {
            return Err(format!("cluster_state is {state}, not ok"));
        }
        return Ok(format!("{pong} (cluster_state:ok)"));
    }
    Ok(pong)
}

/// A MySQL connection, within `timeout`.
pub async fn mysql_connect(url: &str, timeout: Duration) -> Result<mysql_async::Conn, String> {
    let opts = mysql_async::Opts::from_url(url).map_err(|e| e.to_string())?;
    tokio::time::timeout(timeout, mysql_async::Conn::new(opts))
        .await
        .map_err(|_| format!("no connection within {timeout:?}"))?
        .map_err(|e| error_chain(&e))
}

pub async fn probe_mysql(url: &str, timeout: Duration) -> Result<String, String> {
    use mysql_async::prelude::Queryable;
    let mut con = mysql_connect(url, timeout).await?;
    let one: Option<i64> = tokio::time::timeout(timeout, con.query_first("SELECT 1"))
        .await
        .map_err(|_| format!("SELECT 1: no answer within {timeout:?}"))?
        .map_err(|e| format!("SELECT 1: {}", error_chain(&e)))?;
    let _ = con.disconnect().await;
    match one {
        Some(1) => Ok("1".into()),
        other => Err(format!("SELECT 1 answered {other:?}")),
    }
}

/// A URL without its password: `mysql://mb@host:3306/mb`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth_end, host_part) = match rest.find('/') {
        Some(slash) => (slash, &rest[..slash]),
        None => (rest.len(), rest),
    };
    match host_part.rfind('@') {
        Some(at) => {
            let user = host_part[..at].split(':').next().unwrap_or_default();
            let user = if user.is_empty() {
                String::new()
            } else {
                format!("{user}@")
            };
            format!(
                "{scheme}://{user}{}{}",
                &host_part[at + 1..],
                &rest[auth_end..]
            )
        }
        None => url.to_owned(),
    }
}

/// An error with its causes: `…: tcp connect error: Connection refused (os error 111)`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("mysql://mb:secret@127.0.0.1:3307/mb"),
            "mysql://mb@127.0.0.1:3307/mb"
        );
        assert_eq!(
            redact("redis://:secret@127.0.0.1:6380"),
            "redis://127.0.0.1:6380"
        );
        assert_eq!(
            redact("redis://127.0.0.1:6380/0"),
            "redis://127.0.0.1:6380/0"
        );
    }

    #[test]
    fn metrics_addresses() {
        assert_eq!(
            metrics_url("http://127.0.0.1:9201/metrics").unwrap(),
            ("127.0.0.1".into(), 9201, "/metrics".into())
        );
        assert_eq!(
            metrics_url("127.0.0.1:9100").unwrap(),
            ("127.0.0.1".into(), 9100, "/metrics".into())
        );
        assert!(metrics_url("https://x:1/metrics").is_err());
        assert!(metrics_url("localhost").is_err());
    }
}
