//! A private MariaDB server for one test (random port, temporary data dir), for tests that kill
//! and restart the database itself — the shared one that `ops/test` starts must stay up for
//! every other test. Started like `ops/lib.sh` starts its own: `mariadb-install-db`, then
//! `mariadbd` with the project's durability settings (`innodb_flush_log_at_trx_commit=1`, the
//! default), under this process's control so a test can SIGKILL it.

use crate::proc::Proc;
use crate::redis_server::which;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct MariaDbServer {
    pub port: u16,
    pub dir: PathBuf,
    password: String,
    proc: Proc,
}

impl MariaDbServer {
    pub async fn start(dir: PathBuf) -> Self {
        Self::start_with(dir, &[]).await
    }

    /// Started with extra server options (e.g. `--log-bin` and `--server-id` for a primary).
    pub async fn start_with(dir: PathBuf, extra: &[&str]) -> Self {
        std::fs::create_dir_all(&dir).expect("mariadb dir");
        let user = os_user();
        let data = dir.join("data");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("mariadb tmpdir");
        let install = Command::new(which("mariadb-install-db"))
            .args([
                "--no-defaults",
                &format!("--datadir={}", data.display()),
                &format!("--user={user}"),
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                // Its own temporary directory: bootstraps running at once in /tmp collide.
                &format!("--tmpdir={}", tmp.display()),
            ])
            .output()
            .expect("run mariadb-install-db (apt-get install mariadb-server)");
        assert!(
            install.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&install.stderr)
        );
        let port = crate::free_port();
        let args = [
            "--no-defaults".to_owned(),
            format!("--datadir={}", data.display()),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".into(),
            format!("--socket={}", dir.join("mysqld.sock").display()),
            format!("--user={user}"),
            "--skip-name-resolve".into(),
            format!("--tmpdir={}", tmp.display()),
            "--innodb-buffer-pool-size=64M".into(),
            "--max-connections=300".into(),
            "--character-set-server=utf8mb4".into(),
        ];
        let args: Vec<String> = args
            .into_iter()
            .chain(extra.iter().map(|a| (*a).to_owned()))
            .collect();
        let mut server = Self {
            port,
            password: format!("{:032x}", rand::random::<u128>()),
            proc: Proc::new("mariadb", which("mariadbd"), args, dir.join("mysqld.log")),
            dir,
        };
        server.start_again().await;
        let sql = format!(
            "CREATE USER 'mbtest'@'127.0.0.1' IDENTIFIED BY '{pw}'; \
             GRANT ALL PRIVILEGES ON *.* TO 'mbtest'@'127.0.0.1' WITH GRANT OPTION;",
            pw = server.password
        );
        server.sql(&sql);
        server
    }

    /// Runs SQL as the server's superuser (over its socket); returns what it printed
    /// (tab-separated, no column names). Panics with the server's message on an error.
    pub fn sql(&self, sql: &str) -> String {
        sql_at(&self.dir.join("mysqld.sock"), sql)
    }

    /// Makes this (fresh) server a GTID replica of `primary` (started with `--log-bin`) from
    /// the primary's current position on: what the primary writes from now on is replicated.
    /// (A primary that already holds data would be cloned first, with `mariadb-dump --gtid`.)
    pub fn replicate_from(&self, primary: &MariaDbServer) {
        primary.sql(&format!(
            "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY '{pw}'; \
             GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';",
            pw = primary.password
        ));
        let pos = primary.sql("SELECT @@gtid_current_pos");
        self.sql(&format!(
            "SET GLOBAL gtid_slave_pos = '{pos}'; \
             CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {port}, \
             MASTER_USER = 'repl', MASTER_PASSWORD = '{pw}', MASTER_USE_GTID = slave_pos; \
             START SLAVE;",
            port = primary.port,
            pw = primary.password
        ));
    }

    /// The server URL (no database), as `MB_TEST_MYSQL_URL` would be.
    pub fn url(&self) -> String {
        format!("mysql://mbtest:{}@127.0.0.1:{}", self.password, self.port)
    }

    /// Starts it again on the same port and data directory (after `kill`): InnoDB recovers
    /// from its redo log what was committed.
    pub async fn start_again(&mut self) {
        self.proc.start();
        crate::wait_for_port(self.port, Duration::from_secs(60), "mariadb").await;
    }

    /// SIGKILL: what survives is what InnoDB made durable at commit.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }
}

/// Runs SQL as the superuser of the MariaDB server listening on `socket` (one this process did
/// not start, e.g. a replica `ops/replica` made); returns what it printed (tab-separated, no
/// column names). Panics with the server's message on an error.
pub fn sql_at(socket: &std::path::Path, sql: &str) -> String {
    let out = Command::new(which("mariadb"))
        .args(["--no-defaults", &format!("-u{}", os_user()), "-N", "-B"])
        .arg(format!("--socket={}", socket.display()))
        .args(["-e", sql])
        .output()
        .expect("run mariadb client");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn os_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
