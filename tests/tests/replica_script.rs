//! `ops/replica`: a MariaDB GTID read replica of a running primary that already holds data,
//! run as an operator runs it. The primary is a stack's own MariaDB with a binary log whose
//! old binlogs were purged before the replica is made, so what the replica holds of the
//! earlier messages can only come from the clone (the dump), not from replaying the binlog;
//! clients keep submitting while it is cloned, so the clone's GTID position must match its
//! snapshot exactly for the tables to end up identical.

use mb_e2e::client::message;
use mb_e2e::mariadb_server::{MariaDbServer, sql_at};
use mb_e2e::{Stack, StackOptions, eventually, submit_many};
use mysql_async::prelude::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Kills the replica's mariadbd that `ops/replica` started (its pid file in DIR) when the test
/// ends, whatever happened.
struct ReplicaGuard {
    dir: PathBuf,
}

impl Drop for ReplicaGuard {
    fn drop(&mut self) {
        let Ok(pid) = std::fs::read_to_string(self.dir.join("mysqld.pid")) else {
            return;
        };
        let pid = pid.trim();
        if pid.is_empty() {
            return;
        }
        let _ = Command::new("kill").args(["-KILL", pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gone_or_zombie(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn gone_or_zombie(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // pid (comm) STATE ...: the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn run_replica(args: &[&str]) -> (Output, String) {
    let out = Command::new(mb_e2e::repo_root().join("ops/replica"))
        .args(args)
        .output()
        .expect("run ops/replica");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `CHECKSUM TABLE` of every table of `db`, as the server on `socket` answers it.
fn checksums(socket: &Path, db: &str, tables: &str) -> String {
    sql_at(socket, &format!("USE {db}; CHECKSUM TABLE {tables}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_script_clones_a_primary_with_data_and_keeps_replicating() {
    let started = Instant::now();
    let stack = Stack::start(StackOptions {
        own_mariadb: true,
        mariadb_binlog: true,
        ..Default::default()
    })
    .await;
    let primary = stack.mariadb.as_ref().unwrap();
    let psock = primary.dir.join("mysqld.sock");
    let db = stack.db.name.clone();

    // Data before any replica exists: delivered messages (encrypted bodies, sender HMACs).
    let client = stack.client("alice");
    let (ids, _) = submit_many(&client, 20, 4).await;
    assert_eq!(ids.len(), 20);
    stack.wait_delivered(20, Duration::from_secs(30)).await;
    // The binlog that recorded those writes is purged: only the clone can bring them over.
    primary.sql("FLUSH BINARY LOGS");
    let current = primary.sql("SHOW MASTER STATUS");
    let current = current.split('\t').next().unwrap().to_owned();
    // (MariaDB may keep a binlog a little longer, until InnoDB no longer needs it.)
    eventually(
        Duration::from_secs(20),
        "the old binlogs to be purged",
        || {
            primary.sql(&format!("PURGE BINARY LOGS TO '{current}'"));
            let logs = primary.sql("SHOW BINARY LOGS").lines().count();
            async move { (logs == 1).then_some(()) }
        },
    )
    .await;

    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("replica");
    let pw_file = work.path().join("reader-password");
    let _guard = ReplicaGuard { dir: dir.clone() };
    let port = mb_e2e::free_port().to_string();
    let args = [
        "--primary-socket",
        psock.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
        "--port",
        &port,
        "--database",
        &db,
        "--buffer-pool",
        "64M",
        "--timeout",
        "60",
        "--store-user",
        "mb_reader",
        "--store-password-file",
        pw_file.to_str().unwrap(),
    ];
    // Cloned while the primary is busy: clients submit and deliver updates rows meanwhile.
    let t = Instant::now();
    let owned: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let script = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        run_replica(&args)
    });
    let (during, _) = submit_many(&client, 60, 2).await;
    assert_eq!(during.len(), 60);
    let (out, text) = script.await.unwrap();
    assert!(out.status.success(), "ops/replica failed:\n{text}");
    eprintln!("ops/replica took {:?}", t.elapsed());
    stack.wait_delivered(80, Duration::from_secs(30)).await;

    // Secrets: 0600 files, never in the output, never in the primary's binary log.
    let repl_pw = std::fs::read_to_string(dir.join("replication-password")).unwrap();
    let reader_pw = std::fs::read_to_string(&pw_file).unwrap();
    let (repl_pw, reader_pw) = (repl_pw.trim(), reader_pw.trim());
    assert!(repl_pw.len() >= 16 && reader_pw.len() >= 16);
    assert_eq!(mode(&dir.join("replication-password")), 0o600);
    assert_eq!(mode(&pw_file), 0o600);
    for pw in [repl_pw, reader_pw] {
        assert!(!text.contains(pw), "a password in the output:\n{text}");
    }
    for entry in std::fs::read_dir(primary.dir.join("data")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("mysql-bin.0")
        {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes
                    .windows(repl_pw.len())
                    .any(|w| w == repl_pw.as_bytes()),
                "the replication password in {}",
                path.display()
            );
        }
    }
    assert!(text.contains("Slave_IO_Running:        Yes"), "{text}");
    assert!(text.contains("Slave_SQL_Running:       Yes"), "{text}");
    assert!(text.contains("Seconds_Behind_Master:   0"), "{text}");

    // The store's block, with the password left to the environment.
    let url_line =
        format!("mysql_url: mysql://mb_reader:${{MB_READ_REPLICA_PASSWORD}}@127.0.0.1:{port}/{db}");
    assert!(text.contains("read_replica:"), "{text}");
    assert!(text.contains(&url_line), "{text}");

    // The clone: every table exactly as on the primary.
    let rsock = dir.join("mysqld.sock");
    let tables = primary.sql(&format!(
        "SELECT GROUP_CONCAT(table_name ORDER BY table_name) FROM information_schema.tables \
         WHERE table_schema = '{db}' AND table_type = 'BASE TABLE'"
    ));
    assert!(tables.contains("messages"), "{tables}");
    let count = |sock: &Path| sql_at(sock, &format!("SELECT COUNT(*) FROM {db}.messages"));
    eventually(Duration::from_secs(10), "the same checksums", || {
        let (p, r) = (
            checksums(&psock, &db, &tables),
            checksums(&rsock, &db, &tables),
        );
        async move { (p == r).then_some(()) }
    })
    .await;
    assert_eq!(count(&rsock), "80");
    assert_eq!(count(&psock), "80");
    assert_eq!(sql_at(&rsock, "SELECT @@read_only, @@server_id"), "1\t2");

    // Written on the primary after the clone: replicated within seconds.
    let late = client
        .submit(&message("+14155550123", "after the clone"))
        .await
        .unwrap();
    assert_eq!(late.status, 202, "{}", late.text);
    let late_id = late.json["message_id"].as_str().unwrap().to_owned();
    let t = Instant::now();
    let find = format!("SELECT COUNT(*) FROM {db}.messages WHERE message_id = '{late_id}'");
    eventually(
        Duration::from_secs(5),
        "the new message on the replica",
        || {
            let n = sql_at(&rsock, &find);
            async move { (n == "1").then_some(()) }
        },
    )
    .await;
    eprintln!("a new message reached the replica in {:?}", t.elapsed());

    // The store's reader, with the URL the script printed: it sees the replication state and
    // the messages, and can write nothing.
    let url = format!("mysql://mb_reader:{reader_pw}@127.0.0.1:{port}/{db}");
    let pool = mysql_async::Pool::new(url.as_str());
    let mut conn = pool
        .get_conn()
        .await
        .expect("connect as the store's reader");
    let status: mysql_async::Row = conn
        .query_first("SHOW SLAVE STATUS")
        .await
        .unwrap()
        .expect("a replica");
    let text_of = |k: &str| status.get_opt::<String, _>(k).unwrap().unwrap();
    assert_eq!(text_of("Slave_IO_Running"), "Yes");
    assert_eq!(text_of("Slave_SQL_Running"), "Yes");
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM messages")
        .await
        .unwrap();
    assert_eq!(n, Some(81));
    assert!(
        conn.query_drop("DELETE FROM messages").await.is_err(),
        "the reader must not write"
    );
    drop(conn);
    let _ = pool.disconnect().await;

    // Again on the same directory: no second clone, the same server.
    let pid = std::fs::read_to_string(dir.join("mysqld.pid")).unwrap();
    let (out, text) = run_replica(&args);
    assert!(out.status.success(), "second run failed:\n{text}");
    assert!(text.contains("not cloning again"), "{text}");
    assert_eq!(
        std::fs::read_to_string(dir.join("mysqld.pid")).unwrap(),
        pid
    );

    // Stopped, the primary writes on; started again, it catches up.
    let (out, text) = run_replica(&["--stop", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "--stop failed:\n{text}");
    assert!(!dir.join("mysqld.pid").exists());
    assert!(
        gone_or_zombie(pid.trim()),
        "the replica's mariadbd still runs"
    );
    let (ids, _) = submit_many(&client, 5, 2).await;
    assert_eq!(ids.len(), 5);
    let (out, text) = run_replica(&["--dir", dir.to_str().unwrap(), "--timeout", "60"]);
    assert!(out.status.success(), "restart failed:\n{text}");
    let primary_count = count(&psock);
    eventually(Duration::from_secs(5), "the replica to catch up", || {
        let r = count(&rsock);
        let want = primary_count.clone();
        async move { (r == want).then_some(()) }
    })
    .await;
    eprintln!("test took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_script_refuses_a_primary_without_binary_log() {
    let work = tempfile::tempdir().unwrap();
    let primary = MariaDbServer::start(work.path().join("primary")).await;
    primary.sql("CREATE DATABASE mb");
    let dir = work.path().join("replica");
    let _guard = ReplicaGuard { dir: dir.clone() };
    let sock = primary.dir.join("mysqld.sock");
    let port = mb_e2e::free_port().to_string();
    let (out, text) = run_replica(&[
        "--primary-socket",
        sock.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
        "--port",
        &port,
    ]);
    assert!(!out.status.success(), "ops/replica succeeded:\n{text}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--log-bin"), "{stderr}");
    assert!(stderr.contains("binary log"), "{stderr}");
    assert!(
        !dir.join("data").exists(),
        "no replica datadir for a refused primary"
    );
    assert!(!dir.join("mysqld.pid").exists());
}
