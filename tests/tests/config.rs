//! Startup checks: an invalid configuration value or a secret file others can read stops the
//! service with a message that names the problem.

use std::process::Command;

fn init_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(mb_e2e::binary("mbctl"))
        .arg("--home")
        .arg(home.path())
        .arg("init")
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(
        home.path().join("domains.yaml"),
        "domains:\n  - name: example.com\n",
    )
    .unwrap();
    home
}

fn ingest_config(home: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let h = home.display();
    let path = home.join("ingest.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:0\nmetrics_listen: 127.0.0.1:0\nredis_url: redis://127.0.0.1:1\n\
             store_url: https://localhost:1\n\
             tls: {{ca: {h}/certs/ca.crt, cert: {h}/certs/services/ingest.crt, key: {h}/certs/services/ingest.key}}\n\
             client_tls: {{ca: {h}/certs/ca.crt, cert: {h}/certs/services/ingest.crt, key: {h}/certs/services/ingest.key}}\n\
             keyring: {h}/secrets/keyring.json\nhmac_key: {h}/secrets/hmac.key\ndomains_file: {h}/domains.yaml\n{extra}"
        ),
    )
    .unwrap();
    path
}

fn run_ingest(config: &std::path::Path) -> (bool, String) {
    let out = Command::new(mb_e2e::binary("mb-ingest"))
        .arg("--config")
        .arg(config)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_config_value_stops_the_service_naming_the_key() {
    let home = init_home();
    let (ok, err) = run_ingest(&ingest_config(home.path(), "max_body_bytes: 10\n"));
    assert!(!ok);
    assert!(err.contains("max_body_bytes"), "{err}");
    let (ok, err) = run_ingest(&ingest_config(home.path(), "redis_timeout: soon\n"));
    assert!(!ok);
    assert!(err.contains("redis_timeout"), "{err}");
    let (ok, err) = run_ingest(&ingest_config(home.path(), "colour: blue\n"));
    assert!(!ok);
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn secret_file_readable_by_others_stops_the_service() {
    use std::os::unix::fs::PermissionsExt;
    let home = init_home();
    let key = home.path().join("secrets/hmac.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, err) = run_ingest(&ingest_config(home.path(), ""));
    assert!(!ok);
    assert!(
        err.contains("hmac.key") && err.contains("chmod 600"),
        "{err}"
    );
}

/// A server that speaks just enough RESP to claim it is Redis 6.0.16.
async fn old_redis() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let req = String::from_utf8_lossy(&buf[..n]).to_ascii_uppercase();
                    let commands = req.matches("\r\n*").count() + usize::from(req.starts_with('*'));
                    let mut reply = String::new();
                    for _ in 0..commands.saturating_sub(usize::from(req.contains("INFO"))) {
                        reply.push_str("+OK\r\n");
                    }
                    if req.contains("INFO") {
                        let info = "# Server\r\nredis_version:6.0.16\r\n";
                        reply.push_str(&format!("${}\r\n{info}\r\n", info.len()));
                    }
                    if s.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn services_refuse_to_start_on_a_redis_older_than_6_2() {
    let home = init_home();
    let port = old_redis().await;
    let cfg = ingest_config(home.path(), "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("redis://127.0.0.1:1", &format!("redis://127.0.0.1:{port}"));
    std::fs::write(&cfg, text).unwrap();
    let (ok, err) = tokio::task::spawn_blocking(move || run_ingest(&cfg))
        .await
        .unwrap();
    assert!(!ok, "ingest started on Redis 6.0");
    assert!(err.contains("6.0.16") && err.contains("6.2"), "{err}");
}
