//! A private Redis for one test: random port, temporary data dir, the project's redis.conf;
//! or a private Redis Cluster (3 masters, 3 replicas, `redis/cluster/cluster.conf`).
//!
//! [`TestRedis`] is what a stack uses: a single server, or a cluster when the tests run with
//! `MB_TEST_REDIS=cluster` (ops/test runs the end-to-end suite both ways).

use crate::proc::Proc;
use mb_shared::redis_conn::{RedisConn, RedisTarget, Timeouts};
use std::path::PathBuf;
use std::time::Duration;

pub struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    proc: Proc,
}

impl RedisServer {
    pub async fn start(dir: PathBuf) -> Self {
        Self::start_with(dir, Vec::new()).await
    }

    /// With more config directives after the project's redis.conf (`--name value` each).
    pub async fn start_with(dir: PathBuf, extra: Vec<String>) -> Self {
        std::fs::create_dir_all(&dir).expect("redis dir");
        let port = crate::free_port();
        let program = which("redis-server");
        let conf = crate::repo_root().join("redis/redis.conf");
        let mut args = vec![
            conf.display().to_string(),
            "--port".into(),
            port.to_string(),
            "--dir".into(),
            dir.display().to_string(),
            "--daemonize".into(),
            "no".into(),
        ];
        args.extend(extra);
        let log = dir.join("redis.log");
        let mut server = Self {
            port,
            dir,
            proc: Proc::new("redis", program, args, log),
        };
        server.start_again().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port and data directory (after `stop` or `kill`).
    pub async fn start_again(&mut self) {
        self.proc.start();
        crate::wait_for_port(self.port, Duration::from_secs(20), "redis").await;
        let client = redis::Client::open(self.url()).expect("redis url");
        crate::eventually(Duration::from_secs(20), "redis to load its data", || {
            let client = client.clone();
            async move {
                let mut con = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .ok()
            }
        })
        .await;
    }

    /// Sends a signal by name (STOP freezes it with its sockets open, CONT resumes it).
    pub fn signal(&self, sig: &str) {
        self.proc.signal(sig);
    }

    pub fn stop(&mut self) {
        self.proc.stop();
    }

    /// SIGKILL: what survives is what reached the AOF.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to test redis")
    }

    /// Every byte Redis persisted (AOF directory and any RDB).
    pub fn persisted_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_none_or(|x| x != "log") {
                    out.extend(std::fs::read(&p).unwrap_or_default());
                }
            }
        }
        out
    }
}

/// Finds a program on PATH (or /usr/sbin), failing with how to install it.
pub fn which(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin"])
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{name} not found: run the tests with ops/test, which installs it")
        })
}

/// The Redis of a test stack: one server, or a cluster with `MB_TEST_REDIS=cluster`.
pub enum TestRedis {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl TestRedis {
    /// A cluster when `cluster` or `MB_TEST_REDIS=cluster`, else a single server.
    pub async fn start(dir: PathBuf, cluster: bool) -> Self {
        match std::env::var("MB_TEST_REDIS").as_deref() {
            _ if cluster => Self::Cluster(RedisCluster::start(dir).await),
            Ok("cluster") => Self::Cluster(RedisCluster::start(dir).await),
            Ok("single") | Err(_) => Self::Single(RedisServer::start(dir).await),
            Ok(other) => panic!("MB_TEST_REDIS={other}: use `single` or `cluster`"),
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The services' `redis_url`.
    pub fn url(&self) -> String {
        match self {
            Self::Single(r) => r.url(),
            Self::Cluster(c) => c.url(),
        }
    }

    /// A port `redis-cli` can be pointed at (with `-c` for a cluster).
    pub fn port(&self) -> u16 {
        match self {
            Self::Single(r) => r.port,
            Self::Cluster(c) => c.nodes[0].port,
        }
    }

    /// A connection as the services make it (cluster-aware).
    pub async fn connection(&self) -> RedisConn {
        RedisTarget::parse(&self.url())
            .expect("redis url")
            .connect(Timeouts {
                connect: Duration::from_secs(5),
                response: Some(Duration::from_secs(10)),
            })
            .await
            .expect("connect to test redis")
    }

    /// Starts it again after `stop` or `kill` (every node of a cluster) and waits until it
    /// serves.
    pub async fn start_again(&mut self) {
        match self {
            Self::Single(r) => r.start_again().await,
            Self::Cluster(c) => c.start_again().await,
        }
    }

    pub fn signal(&self, sig: &str) {
        match self {
            Self::Single(r) => r.signal(sig),
            Self::Cluster(c) => c.nodes.iter().for_each(|n| n.signal(sig)),
        }
    }

    pub fn stop(&mut self) {
        match self {
            Self::Single(r) => r.stop(),
            Self::Cluster(c) => c.nodes.iter_mut().for_each(RedisServer::stop),
        }
    }

    /// SIGKILL (every node of a cluster).
    pub fn kill(&mut self) {
        match self {
            Self::Single(r) => r.kill(),
            Self::Cluster(c) => c.nodes.iter_mut().for_each(RedisServer::kill),
        }
    }

    /// `CLIENT PAUSE … WRITE` on every node: reads are answered, writes wait.
    pub async fn pause_writes(&self, how_long: Duration) {
        let ms = how_long.as_millis().to_string();
        let ports: Vec<u16> = match self {
            Self::Single(r) => vec![r.port],
            Self::Cluster(c) => c.nodes.iter().map(|n| n.port).collect(),
        };
        for port in ports {
            let ok = node_query(port, &["CLIENT", "PAUSE", &ms, "WRITE"]).await;
            assert_eq!(ok.as_deref(), Some("OK"), "CLIENT PAUSE on {port}");
        }
    }

    /// Every byte persisted (every node's).
    pub fn persisted_bytes(&self) -> Vec<u8> {
        match self {
            Self::Single(r) => r.persisted_bytes(),
            Self::Cluster(c) => c
                .nodes
                .iter()
                .flat_map(RedisServer::persisted_bytes)
                .collect(),
        }
    }
}

/// A private Redis Cluster: 3 masters and 3 replicas on loopback.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub async fn start(dir: PathBuf) -> Self {
        let include = crate::repo_root().join("redis/cluster/cluster.conf");
        let mut nodes = Vec::new();
        for i in 0..6 {
            let extra = vec![
                "--include".into(),
                include.display().to_string(),
                // Fail over in 2 s, not the shipped 5 s.
                "--cluster-node-timeout".into(),
                "2000".into(),
                "--cluster-port".into(),
                crate::free_port().to_string(),
            ];
            nodes.push(RedisServer::start_with(dir.join(format!("node{i}")), extra).await);
        }
        let mut create = std::process::Command::new(which("redis-cli"));
        create.args(["--cluster", "create"]);
        create.args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = create.output().expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes };
        cluster.wait_ready().await;
        cluster
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    pub async fn start_again(&mut self) {
        for n in &mut self.nodes {
            if !n.proc.is_running() {
                n.start_again().await;
            }
        }
        self.wait_ready().await;
    }

    /// Until all six nodes say `cluster_state:ok`, three of them are masters and each master
    /// has an online replica (a 202 waits for one).
    pub async fn wait_ready(&self) {
        let ports: Vec<u16> = self.nodes.iter().map(|n| n.port).collect();
        crate::eventually(
            Duration::from_secs(60),
            "the Redis cluster to be ready",
            || {
                let ports = ports.clone();
                async move {
                    let mut masters = Vec::new();
                    for port in &ports {
                        let info = node_query(*port, &["CLUSTER", "INFO"]).await?;
                        if !info.contains("cluster_state:ok") {
                            return None;
                        }
                        let repl = node_query(*port, &["INFO", "replication"]).await?;
                        if repl.contains("role:master") {
                            let online = repl
                                .lines()
                                .any(|l| l.starts_with("slave0:") && l.contains("state=online"));
                            if !online {
                                return None;
                            }
                            masters.push(*port);
                        }
                    }
                    (masters.len() == 3).then_some(())
                }
            },
        )
        .await;
    }

    /// The node that is master of `key`'s slot now.
    pub async fn master_of(&self, key: &str) -> usize {
        let slot: u16 = {
            let reply = node_query(self.nodes[0].port, &["CLUSTER", "KEYSLOT", key])
                .await
                .expect("CLUSTER KEYSLOT");
            reply.trim().parse().expect("slot number")
        };
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(repl) = node_query(n.port, &["INFO", "replication"]).await else {
                continue;
            };
            if !repl.contains("role:master") {
                continue;
            }
            let nodes = node_query(n.port, &["CLUSTER", "NODES"])
                .await
                .unwrap_or_default();
            let mine = nodes.lines().find(|l| l.contains("myself"));
            if mine.is_some_and(|l| owns_slot(l, slot)) {
                return i;
            }
        }
        panic!("no master serves the slot of {key}");
    }

    /// The replica of the master `master` (index into `nodes`).
    pub async fn replica_of(&self, master: usize) -> usize {
        let nodes = node_query(self.nodes[master].port, &["CLUSTER", "NODES"])
            .await
            .expect("CLUSTER NODES");
        let master_id = nodes
            .lines()
            .find(|l| l.contains("myself"))
            .and_then(|l| l.split(' ').next())
            .expect("own node id")
            .to_owned();
        let replica_port = nodes
            .lines()
            .find(|l| l.split(' ').nth(3) == Some(master_id.as_str()) && !l.contains("fail"))
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|addr| addr.split(['@', ':']).nth(1))
            .and_then(|p| p.parse::<u16>().ok())
            .expect("a replica of the master");
        self.nodes
            .iter()
            .position(|n| n.port == replica_port)
            .expect("replica is one of the nodes")
    }
}

/// Whether a `CLUSTER NODES` line lists `slot` among its ranges.
fn owns_slot(line: &str, slot: u16) -> bool {
    line.split(' ').skip(8).any(|range| {
        let mut ends = range.split('-').map(|x| x.parse::<u16>());
        match (ends.next(), ends.next()) {
            (Some(Ok(a)), Some(Ok(b))) => (a..=b).contains(&slot),
            (Some(Ok(a)), None) => a == slot,
            _ => false,
        }
    })
}

/// One command to one node (not cluster-routed), as text; `None` when it does not answer.
pub async fn node_query(port: u16, args: &[&str]) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .ok()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let v: redis::Value = cmd.query_async(&mut con).await.ok()?;
    match v {
        redis::Value::Int(n) => Some(n.to_string()),
        redis::Value::Okay => Some("OK".into()),
        other => redis::from_redis_value::<String>(other).ok(),
    }
}
