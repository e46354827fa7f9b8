//! A whole broker for one test: its own Redis, its own database, `mbctl init` in a temporary
//! home, and mb-store, mb-ingest and any number of mb-deliver processes on random ports.
//! Retry timings are shortened (retry interval 1 s) so fault tests run in seconds.

use crate::client::ApiClient;
use crate::mariadb_server::MariaDbServer;
use crate::proc::Proc;
use crate::redis_server::TestRedis;
use crate::testdb::TestDb;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

pub const DOMAIN: &str = "example.com";

#[derive(Clone)]
pub struct StackOptions {
    pub retry_interval: &'static str,
    pub max_attempts: u32,
    pub start_deliver: bool,
    pub deliver_concurrency: usize,
    pub batch_size: usize,
    /// Give the store a keyring file of its own (a copy taken at start), so a test can make
    /// the store refuse ciphertext from a key it lacks.
    pub separate_store_keyring: bool,
    /// YAML for ingest's `rate_limit` key, e.g. `{max_requests: 50, window_seconds: 1}`.
    pub rate_limit: Option<&'static str>,
    /// Give the second domain, other.org, a CA of its own (`mbctl ca create-domain`).
    pub other_org_own_ca: bool,
    /// Extra YAML lines for ingest's and the store's configs (e.g. a `limits:` block).
    pub ingest_extra: &'static str,
    pub store_extra: &'static str,
    /// Start mb-portal too.
    pub start_portal: bool,
    /// Extra environment of every service, e.g. `MB_LOG_FORMAT=json`.
    pub service_env: &'static [(&'static str, &'static str)],
    /// Also a MariaDB read replica (GTID replication from the stack's own primary, which then
    /// writes a binlog), configured as the store's `read_replica` (max_lag 2s, checked every
    /// 200ms). Implies `own_mariadb`.
    pub read_replica: bool,
    /// Extra YAML lines for example.com's entry in `domains.yaml` (e.g.
    /// `    deliver_concurrency: 1\n`).
    pub example_com_yaml: &'static str,
    /// Run a MariaDB server of the stack's own (`Stack::mariadb`), which the test may kill,
    /// instead of a database on the shared one.
    pub own_mariadb: bool,
    /// A Redis Cluster (3 masters, 3 replicas) whatever `MB_TEST_REDIS` says.
    pub redis_cluster: bool,
    /// With `own_mariadb`: the own MariaDB writes a binary log (server_id 1, ROW format), so a
    /// replica can be made of it later (`ops/replica`).
    pub mariadb_binlog: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            retry_interval: "1s",
            max_attempts: 5,
            start_deliver: true,
            deliver_concurrency: 2,
            batch_size: 64,
            separate_store_keyring: false,
            rate_limit: None,
            other_org_own_ca: false,
            ingest_extra: "",
            store_extra: "",
            start_portal: false,
            service_env: &[],
            own_mariadb: false,
            read_replica: false,
            example_com_yaml: "",
            redis_cluster: false,
            mariadb_binlog: false,
        }
    }
}

pub struct Stack {
    pub opts: StackOptions,
    pub redis: TestRedis,
    pub db: TestDb,
    /// The stack's own MariaDB server, when `own_mariadb` (dropped after `db`).
    pub mariadb: Option<MariaDbServer>,
    /// Its read replica, when `read_replica`.
    pub replica: Option<MariaDbServer>,
    pub store: Proc,
    pub ingest: Proc,
    /// mb-portal, when `start_portal` (not started otherwise).
    pub portal: Proc,
    pub portal_port: u16,
    pub portal_metrics_port: u16,
    pub delivers: Vec<Proc>,
    pub ingest_port: u16,
    pub store_port: u16,
    pub ingest_metrics_port: u16,
    pub store_metrics_port: u16,
    /// Metrics port of each deliver process, by index.
    pub deliver_metrics_ports: Vec<u16>,
    // Dropped last: everything above lives in it.
    pub home: tempfile::TempDir,
}

/// The ports of one stack's store and ingest.
struct Ports {
    store: u16,
    ingest: u16,
    portal: u16,
    portal_metrics: u16,
    store_metrics: u16,
    ingest_metrics: u16,
}

impl Stack {
    pub async fn start(opts: StackOptions) -> Self {
        let home = init_home(&opts);
        let h = home.path().to_path_buf();
        let redis = TestRedis::start(h.join("redis"), opts.redis_cluster).await;
        let mariadb = match (opts.own_mariadb, opts.read_replica) {
            (true, false) if opts.mariadb_binlog => Some(
                MariaDbServer::start_with(
                    h.join("mariadb"),
                    &[
                        "--server-id=1",
                        "--log-bin=mysql-bin",
                        "--binlog-format=ROW",
                    ],
                )
                .await,
            ),
            (_, true) => Some(
                MariaDbServer::start_with(
                    h.join("mariadb"),
                    &[
                        "--server-id=1",
                        "--log-bin=mysql-bin",
                        "--binlog-format=ROW",
                    ],
                )
                .await,
            ),
            (true, false) => Some(MariaDbServer::start(h.join("mariadb")).await),
            (false, false) => None,
        };
        let replica = match (&mariadb, opts.read_replica) {
            (Some(primary), true) => {
                let r = MariaDbServer::start_with(h.join("replica"), &["--server-id=2"]).await;
                r.replicate_from(primary);
                Some(r)
            }
            _ => None,
        };
        let db = match &mariadb {
            Some(m) => TestDb::create_on(&m.url()).await,
            None => TestDb::create().await,
        };
        let ports = Ports {
            store: crate::free_port(),
            ingest: crate::free_port(),
            portal: crate::free_port(),
            portal_metrics: crate::free_port(),
            store_metrics: crate::free_port(),
            ingest_metrics: crate::free_port(),
        };
        let replica_url = replica.as_ref().map(|r| format!("{}/{}", r.url(), db.name));
        write_store_config(
            &h,
            &ports,
            &db.url(),
            &redis.url(),
            &opts,
            replica_url.as_deref(),
        );
        write_ingest_config(&h, &ports, &redis, &opts);
        write_portal_config(&h, &ports);
        let service = |name: &str, bin: &str| {
            let mut p = Proc::new(
                name,
                crate::binary(bin),
                vec![
                    "--config".into(),
                    h.join(format!("{name}.yaml")).display().to_string(),
                ],
                h.join(format!("logs/{name}.log")),
            );
            p.env = env_of(&opts);
            p
        };
        let mut stack = Self {
            store: service("store", "mb-store"),
            ingest: service("ingest", "mb-ingest"),
            portal: service("portal", "mb-portal"),
            portal_port: ports.portal,
            portal_metrics_port: ports.portal_metrics,
            delivers: Vec::new(),
            opts: opts.clone(),
            redis,
            db,
            mariadb,
            replica,
            ingest_port: ports.ingest,
            store_port: ports.store,
            ingest_metrics_port: ports.ingest_metrics,
            store_metrics_port: ports.store_metrics,
            deliver_metrics_ports: Vec::new(),
            home,
        };
        stack.start_store().await;
        stack.start_ingest().await;
        stack.wait_ingest_ready(ports.ingest).await;
        if opts.start_deliver {
            stack.start_deliver().await;
        }
        if opts.start_portal {
            stack.portal.start();
            wait_for(&mut stack.portal, ports.portal).await;
        }
        stack
    }

    pub fn portal_url(&self) -> String {
        format!("https://localhost:{}", self.portal_port)
    }

    /// A cookie-keeping HTTP client of the portal (no client certificate, as a browser).
    pub fn web(&self) -> crate::web::Web {
        crate::web::Web::new(&self.portal_url(), &self.home().join("certs/ca.crt"))
    }

    /// Creates a portal user with `mbctl user add`; `client` and `domain` as the role needs.
    pub fn add_user(
        &self,
        name: &str,
        role: &str,
        client: Option<&str>,
        domain: Option<&str>,
        password: &str,
    ) {
        let file = self.home().join(format!("pw-{name}"));
        std::fs::write(&file, password).expect("password file");
        let mut args = vec!["user", "add", name, "--role", role, "--password-file"];
        let file_arg = file.display().to_string();
        args.push(&file_arg);
        if let Some(c) = client {
            args.extend(["--client", c]);
        }
        if let Some(d) = domain {
            args.extend(["--domain", d]);
        }
        let out = self.mbctl(&args);
        assert!(
            out.status.success(),
            "user add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub async fn start_store(&mut self) {
        self.store.start();
        wait_for(&mut self.store, self.store_port).await;
    }

    /// Starts ingest (again, after `ingest.kill()`) and waits until it listens.
    pub async fn start_ingest(&mut self) {
        self.ingest.start();
        wait_for(&mut self.ingest, self.ingest_port).await;
    }

    /// Starts one more deliver worker (its own config and metrics port); returns its index.
    pub async fn start_deliver(&mut self) -> usize {
        let i = self.delivers.len();
        let h = self.home().to_path_buf();
        let metrics_port = crate::free_port();
        let cfg = h.join(format!("deliver-{i}.yaml"));
        write(
            &cfg,
            &format!(
                "metrics_listen: 127.0.0.1:{metrics_port}\nredis_url: {}\nstore_url: https://localhost:{}\n\
                 tls:\n  ca: {h}/certs/ca.crt\n  cert: {h}/certs/services/deliver.crt\n  key: {h}/certs/services/deliver.key\n\
                 domains_file: {h}/domains.yaml\nbatch_size: {}\nconcurrency: {}\nblock: 200ms\n\
                 retry_interval: {}\nmax_attempts: {}\nstore_timeout: 800ms\nredis_timeout: 1s\nmax_backoff: 300ms\n\
                 shutdown_timeout: 10s\n",
                self.redis.url(),
                self.store_port,
                self.opts.batch_size,
                self.opts.deliver_concurrency,
                self.opts.retry_interval,
                self.opts.max_attempts,
                h = h.display()
            ),
        );
        let mut p = Proc::new(
            &format!("deliver-{i}"),
            crate::binary("mb-deliver"),
            vec!["--config".into(), cfg.display().to_string()],
            h.join(format!("logs/deliver-{i}.log")),
        );
        p.env = env_of(&self.opts);
        p.start();
        wait_for(&mut p, metrics_port).await;
        self.delivers.push(p);
        self.deliver_metrics_ports.push(metrics_port);
        i
    }

    /// Starts a second ingest instance (same Redis, store and config, its own ports).
    pub async fn start_extra_ingest(&self, name: &str) -> (Proc, u16) {
        let h = self.home();
        let port = crate::free_port();
        let text = std::fs::read_to_string(h.join("ingest.yaml")).expect("ingest.yaml");
        let text = text
            .lines()
            .map(|l| {
                if l.starts_with("listen:") {
                    format!("listen: 127.0.0.1:{port}")
                } else if l.starts_with("metrics_listen:") {
                    format!("metrics_listen: 127.0.0.1:{}", crate::free_port())
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let cfg = h.join(format!("{name}.yaml"));
        write(&cfg, &text);
        let mut p = Proc::new(
            name,
            crate::binary("mb-ingest"),
            vec!["--config".into(), cfg.display().to_string()],
            h.join(format!("logs/{name}.log")),
        );
        p.start();
        wait_for(&mut p, port).await;
        self.wait_ingest_ready(port).await;
        (p, port)
    }

    /// Waits until the ingest on `port` answers /readyz with 200 (Redis reachable, revocation
    /// list loaded from the store).
    pub async fn wait_ingest_ready(&self, port: u16) {
        let tls = self.service_tls("deliver");
        let probe = self.client_with(&format!("https://localhost:{port}"), &tls.cert, &tls.key);
        crate::eventually(Duration::from_secs(30), "ingest /readyz", || {
            let probe = probe.clone();
            async move { (probe.get("/readyz").await.ok()?.status == 200).then_some(()) }
        })
        .await;
    }

    /// An API client for `base` with the given certificate files.
    pub fn client_with(&self, base: &str, cert: &Path, key: &Path) -> ApiClient {
        ApiClient::new(base, &self.home().join("certs/ca.crt"), Some((cert, key)))
    }

    /// Runs mbctl against this stack.
    pub fn mbctl(&self, args: &[&str]) -> Output {
        run_mbctl(
            self.home(),
            args,
            &[
                ("MB_REDIS_URL", &self.redis.url()),
                ("MB_MYSQL_URL", &self.db.url()),
                (
                    "MB_DOMAINS_FILE",
                    &self.home().join("domains.yaml").display().to_string(),
                ),
            ],
        )
    }

    /// Issues a client certificate `<name>.<domain>` and returns (cert, key) paths.
    pub fn issue_client(&self, name: &str, domain: &str) -> (PathBuf, PathBuf) {
        let dir = self.home().join("clients");
        let out = self.mbctl(&[
            "cert",
            "issue",
            name,
            "--domain",
            domain,
            "--out",
            &dir.display().to_string(),
        ]);
        assert!(
            out.status.success(),
            "cert issue failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        )
    }

    pub fn ingest_url(&self) -> String {
        format!("https://localhost:{}", self.ingest_port)
    }

    /// An API client with a fresh certificate for `<name>.example.com`.
    pub fn client(&self, name: &str) -> ApiClient {
        let (c, k) = self.issue_client(name, DOMAIN);
        ApiClient::new(
            &self.ingest_url(),
            &self.home().join("certs/ca.crt"),
            Some((&c, &k)),
        )
    }

    /// The TLS files of one of our services, as that service uses them.
    pub fn service_tls(&self, service: &str) -> mb_shared::config::TlsFiles {
        let h = self.home();
        mb_shared::config::TlsFiles {
            ca: h.join("certs/ca.crt"),
            cert: h.join(format!("certs/services/{service}.crt")),
            key: h.join(format!("certs/services/{service}.key")),
        }
    }

    pub fn domain() -> mb_shared::domains::Domain {
        mb_shared::domains::Domain::parse(DOMAIN).expect("valid domain")
    }

    pub fn stream_key(&self) -> String {
        mb_shared::streams::stream_key(&Self::domain())
    }

    pub fn dead_key(&self) -> String {
        mb_shared::streams::dead_key(&Self::domain())
    }

    /// Waits until `n` messages are `delivered` in MySQL.
    /// On a timeout it panics with what it saw: rows, the stream's length and pending count,
    /// and the end of every deliver worker's log.
    pub async fn wait_delivered(&self, n: u64, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = self
                .db
                .count("SELECT COUNT(*) FROM messages WHERE status = 'delivered'")
                .await;
            if got >= n {
                return;
            }
            if std::time::Instant::now() >= deadline {
                let (len, pending) = self.stream_state().await;
                let mut logs = String::new();
                for d in &self.delivers {
                    let text = d.log_text();
                    let lines: Vec<&str> = text.lines().collect();
                    logs += &lines[lines.len().saturating_sub(40)..].join("\n");
                    logs += "\n";
                }
                panic!(
                    "timed out after {timeout:?} waiting for {n} delivered rows: {got} rows, \
                     stream length {len}, {pending} pending; deliver logs end with:\n{logs}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// (length, pending) of the domain stream.
    pub async fn stream_state(&self) -> (u64, u64) {
        let mut con = self.redis.connection().await;
        let len: u64 = redis::cmd("XLEN")
            .arg(self.stream_key())
            .query_async(&mut con)
            .await
            .unwrap_or(0);
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg(self.stream_key())
            .arg("deliver")
            .query_async(&mut con)
            .await
            .unwrap_or(redis::Value::Nil);
        let pending = match pending {
            redis::Value::Array(v) => match v.first() {
                Some(redis::Value::Int(n)) => *n as u64,
                _ => 0,
            },
            _ => 0,
        };
        (len, pending)
    }

    /// Everything every service logged so far.
    pub fn all_logs(&self) -> String {
        let mut s = self.store.log_text() + &self.ingest.log_text() + &self.portal.log_text();
        for d in &self.delivers {
            s += &d.log_text();
        }
        s
    }
}

/// Every stack checks its services' logs when it goes: no sender number (any `+` and eight
/// or more digits: masks have fewer) and no submitted body may be in them. So the whole
/// suite's traffic is checked, not just one test's.
impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let logs = self.all_logs();
        if let Some(number) = e164_in(&logs) {
            panic!(
                "a phone number ({number}) is in a service log under {}",
                self.home().display()
            );
        }
        let seen = crate::client::SUBMITTED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for secret in seen.0.iter().filter(|n| n.len() >= 8).chain(&seen.1) {
            assert!(
                !logs.contains(secret.as_str()),
                "a submitted sender number or body is in a service log: {secret:?}"
            );
        }
    }
}

/// The first `+` followed by at least eight digits.
fn e164_in(text: &str) -> Option<&str> {
    text.match_indices('+').find_map(|(i, _)| {
        let digits = text[i + 1..].bytes().take_while(u8::is_ascii_digit).count();
        (digits >= 8).then(|| &text[i..=i + digits])
    })
}

fn env_of(opts: &StackOptions) -> Vec<(String, String)> {
    opts.service_env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A temporary home as `mbctl init` makes it, with `domains.yaml` (example.com and other.org).
fn init_home(opts: &StackOptions) -> tempfile::TempDir {
    let home = tempfile::Builder::new()
        .prefix("mb-e2e-")
        .tempdir()
        .expect("tempdir");
    let h = home.path();
    std::fs::create_dir_all(h.join("logs")).expect("logs dir");
    let out = run_mbctl(h, &["init"], &[]);
    assert!(
        out.status.success(),
        "mbctl init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut other = "  - name: other.org\n".to_owned();
    if opts.other_org_own_ca {
        let out = run_mbctl(h, &["ca", "create-domain", "other.org"], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        other += &format!(
            "    ca: {h}/certs/domains/other.org.crt\n    ca_key: {h}/secrets/domains/other.org.key\n",
            h = h.display()
        );
    }
    write(
        &h.join("domains.yaml"),
        &format!(
            "domains:\n  - name: {DOMAIN}\n{}{other}",
            opts.example_com_yaml
        ),
    );
    if opts.separate_store_keyring {
        copy_private(
            &h.join("secrets/keyring.json"),
            &h.join("secrets/store-keyring.json"),
        );
    }
    home
}

fn write_store_config(
    h: &Path,
    ports: &Ports,
    db_url: &str,
    redis_url: &str,
    opts: &StackOptions,
    replica_url: Option<&str>,
) {
    let replica = replica_url
        .map(|u| {
            format!("read_replica:\n  mysql_url: {u}\n  max_lag: 2s\n  check_interval: 200ms\n")
        })
        .unwrap_or_default();
    let keyring = if opts.separate_store_keyring {
        "store-keyring.json"
    } else {
        "keyring.json"
    };
    write(
        &h.join("store.yaml"),
        &format!(
            "listen: 127.0.0.1:{}\nmetrics_listen: 127.0.0.1:{}\nmysql_url: {db_url}\n\
             tls:\n  ca: {h}/certs/ca.crt\n  cert: {h}/certs/services/store.crt\n  key: {h}/certs/services/store.key\n\
             keyring: {h}/secrets/{keyring}\nhmac_key: {h}/secrets/hmac.key\njwt_key: {h}/secrets/jwt.key\n\
             domains_file: {h}/domains.yaml\nredis_url: {redis_url}\n\
             ca_cert: {h}/certs/ca.crt\nca_key: {h}/secrets/ca.key\n{replica}{}",
            ports.store,
            ports.store_metrics,
            opts.store_extra,
            h = h.display()
        ),
    );
}

fn write_portal_config(h: &Path, ports: &Ports) {
    write(
        &h.join("portal.yaml"),
        &format!(
            "listen: 127.0.0.1:{}\nmetrics_listen: 127.0.0.1:{}\nstore_url: https://localhost:{}\n\
             tls:\n  ca: {h}/certs/ca.crt\n  cert: {h}/certs/services/portal.crt\n  key: {h}/certs/services/portal.key\n\
             csrf_key: {h}/secrets/csrf.key\n",
            ports.portal,
            ports.portal_metrics,
            ports.store,
            h = h.display()
        ),
    );
}

fn write_ingest_config(h: &Path, ports: &Ports, redis: &TestRedis, opts: &StackOptions) {
    let redis_url = redis.url();
    // A cluster runs as production should: a 202 only once a replica holds the message.
    let wait = if redis.is_cluster() {
        "redis_wait_replicas: 1\nredis_wait_timeout: 500ms\n"
    } else {
        ""
    };
    let rate_limit = opts
        .rate_limit
        .map(|r| format!("rate_limit: {r}\n"))
        .unwrap_or_default();
    write(
        &h.join("ingest.yaml"),
        &format!(
            "listen: 127.0.0.1:{}\nmetrics_listen: 127.0.0.1:{}\nredis_url: {redis_url}\n\
             store_url: https://localhost:{}\n\
             tls:\n  ca: {h}/certs/ca.crt\n  cert: {h}/certs/services/ingest.crt\n  key: {h}/certs/services/ingest.key\n\
             client_tls:\n  ca: {h}/certs/ca.crt\n  cert: {h}/certs/services/ingest.crt\n  key: {h}/certs/services/ingest.key\n\
             keyring: {h}/secrets/keyring.json\nhmac_key: {h}/secrets/hmac.key\ndomains_file: {h}/domains.yaml\n\
             redis_timeout: 1s\n{wait}{rate_limit}{}",
            ports.ingest,
            ports.ingest_metrics,
            ports.store,
            opts.ingest_extra,
            h = h.display()
        ),
    );
}

/// Waits until `p` listens on `port`; if it exits first, fails with its log.
async fn wait_for(p: &mut Proc, port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            p.is_running(),
            "{} exited before listening on {port}:\n{}",
            p.name,
            p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{} did not listen on {port} within 60 s:\n{}",
        p.name,
        p.log_text()
    );
}

fn run_mbctl(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(crate::binary("mbctl"));
    cmd.arg("--home").arg(home).args(args);
    cmd.env_remove("MB_REDIS_URL")
        .env_remove("MB_MYSQL_URL")
        .env_remove("MB_DOMAINS_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run mbctl")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn copy_private(from: &Path, to: &Path) {
    let bytes = std::fs::read(from).expect("read secret");
    mb_shared::secret::write_private_file(to, &bytes).expect("write secret");
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_phone_number_is_found_and_a_mask_is_not() {
        assert_eq!(super::e164_in("sender +1415****0100 at +00:00"), None);
        assert_eq!(
            super::e164_in(r#"{"msg":"x","n":"+14155550100"}"#),
            Some("+14155550100")
        );
    }
}
