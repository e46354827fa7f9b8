//! A private Redis for one test: random port, temporary data dir, the project's redis.conf.

use crate::proc::Proc;
use std::path::PathBuf;
use std::time::Duration;

pub struct RedisServer {
    pub port: u16,
    pub dir: PathBuf,
    proc: Proc,
}

impl RedisServer {
    pub async fn start(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).expect("redis dir");
        let port = crate::free_port();
        let program = which("redis-server");
        let conf = crate::repo_root().join("redis/redis.conf");
        let args = vec![
            conf.display().to_string(),
            "--port".into(),
            port.to_string(),
            "--dir".into(),
            dir.display().to_string(),
            "--daemonize".into(),
            "no".into(),
        ];
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
