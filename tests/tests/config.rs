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
