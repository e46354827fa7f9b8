//! A private HAProxy in front of two ingest instances, run from the project's own
//! `ops/config/haproxy.cfg` (the file `ops/up --ha` runs), so the tests check that config and
//! not a copy of it. It runs in the foreground (`haproxy -db`) under a [`Proc`], so dropping it
//! stops it; its log (connections, health-check state changes) is `<home>/logs/haproxy.log`,
//! and its admin socket `<home>/run/haproxy.sock` tells which ingest it considers up and how
//! many connections it gave each.

use crate::proc::Proc;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct HaProxy {
    pub proc: Proc,
    /// The port clients connect to.
    pub port: u16,
    socket: PathBuf,
}

/// One ingest as HAProxy sees it (a row of `show stat`).
#[derive(Debug, Clone)]
pub struct Server {
    /// `ingest-1` or `ingest-2`.
    pub name: String,
    /// `UP`, `DOWN`, `UP 1/2` (going down), `DOWN 1/2` (coming up), `MAINT`, …
    pub status: String,
    /// Connections HAProxy has given it so far.
    pub sessions: u64,
    /// The last health check's result, e.g. `L7OK`, `L4CON`.
    pub check: String,
}

/// The installed haproxy binary, or a failure that says how to install it.
fn haproxy_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "haproxy is not installed: apt-get install haproxy (ops/test and `ops/up --ha` \
                 install it)"
            )
        })
}

impl HaProxy {
    /// Starts HAProxy on a free port, passing TLS through to ingest-1 and ingest-2 on
    /// 127.0.0.1:`backends`; `home` is the stack's. Its health checks present the ingest
    /// service certificate, in one file with its key as `ops/up --ha` writes it. Returns once
    /// both ingests passed a health check.
    pub async fn start(home: &Path, backends: [u16; 2]) -> Self {
        let port = crate::free_port();
        std::fs::create_dir_all(home.join("run")).expect("run dir");
        let mut pem = std::fs::read(home.join("certs/services/ingest.crt")).expect("ingest.crt");
        pem.extend(std::fs::read(home.join("certs/services/ingest.key")).expect("ingest.key"));
        mb_shared::secret::write_private_file(&home.join("secrets/haproxy-check.pem"), &pem)
            .expect("write haproxy-check.pem");
        let config = crate::repo_root().join("ops/config/haproxy.cfg");
        let mut proc = Proc::new(
            "haproxy",
            haproxy_binary(),
            vec!["-db".into(), "-f".into(), config.display().to_string()],
            home.join("logs/haproxy.log"),
        );
        proc.env = vec![
            ("MB_HA_LISTEN".into(), format!("127.0.0.1:{port}")),
            (
                "MB_HA_INGEST_1".into(),
                format!("127.0.0.1:{}", backends[0]),
            ),
            (
                "MB_HA_INGEST_2".into(),
                format!("127.0.0.1:{}", backends[1]),
            ),
            ("MB_HOME".into(), home.display().to_string()),
        ];
        proc.start();
        let ha = Self {
            proc,
            port,
            socket: home.join("run/haproxy.sock"),
        };
        for name in ["ingest-1", "ingest-2"] {
            ha.wait_server(name, Duration::from_secs(20), |s| {
                s.status == "UP" && s.check.starts_with("L7OK")
            })
            .await;
        }
        ha
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Every ingest as HAProxy sees it now.
    pub async fn servers(&self) -> Vec<Server> {
        let csv = self.command("show stat").await;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .and_then(|h| h.strip_prefix("# "))
            .unwrap_or_else(|| panic!("no `show stat` header in {csv:?}"))
            .split(',')
            .collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .unwrap_or_else(|| panic!("no {name} column in `show stat`"))
        };
        let (px, sv, status, stot, check) = (
            col("pxname"),
            col("svname"),
            col("status"),
            col("stot"),
            col("check_status"),
        );
        lines
            .map(csv_fields)
            .filter(|f| f.len() == header.len() && f[px] == "ingest")
            .filter(|f| f[sv] != "FRONTEND" && f[sv] != "BACKEND")
            .map(|f| Server {
                name: f[sv].to_owned(),
                status: f[status].to_owned(),
                sessions: f[stot].parse().unwrap_or(0),
                check: f[check].to_owned(),
            })
            .collect()
    }

    /// One ingest as HAProxy sees it now.
    pub async fn server(&self, name: &str) -> Server {
        let servers = self.servers().await;
        servers
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("HAProxy has no server {name}: {servers:?}"))
    }

    /// Waits until `ready` holds for server `name`; fails with HAProxy's log if it does not.
    pub async fn wait_server(
        &self,
        name: &str,
        timeout: Duration,
        ready: impl Fn(&Server) -> bool,
    ) -> Server {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.socket.exists() {
                let s = self.server(name).await;
                if ready(&s) {
                    return s;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "HAProxy's {name} is {s:?} after {timeout:?}; its log:\n{}",
                    self.proc.log_text()
                );
            } else {
                assert!(
                    std::time::Instant::now() < deadline,
                    "HAProxy did not start within {timeout:?}; its log:\n{}",
                    self.proc.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One command on the admin socket; its whole answer.
    async fn command(&self, cmd: &str) -> String {
        let mut s = tokio::net::UnixStream::connect(&self.socket)
            .await
            .unwrap_or_else(|e| panic!("HAProxy's socket {}: {e}", self.socket.display()));
        s.write_all(format!("{cmd}\n").as_bytes())
            .await
            .expect("write to HAProxy's socket");
        let mut out = String::new();
        s.read_to_string(&mut out)
            .await
            .expect("read HAProxy's socket");
        out
    }
}

/// The fields of one CSV line; a field in double quotes may hold commas (`check_desc` does).
fn csv_fields(line: &str) -> Vec<&str> {
    let mut fields = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, b) in line.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                fields.push(line[start..i].trim_matches('"'));
                start = i + 1;
            }
            _ => {}
        }
    }
    fields.push(line[start..].trim_matches('"'));
    fields
}
