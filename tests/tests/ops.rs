//! The operator's scripts in `ops/`, run as an operator runs them.

use mb_e2e::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread")]
async fn backup_writes_the_dump_and_keeps_the_keyring_and_the_hmac_key_apart() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let h = stack.home();
    let out_dir = tempfile::tempdir().unwrap();
    let dumps = out_dir.path().join("dumps");
    let keys = out_dir.path().join("keys");
    let out = std::process::Command::new(mb_e2e::repo_root().join("ops/backup"))
        .env("MB_MYSQL_URL", stack.db.url())
        .env("MB_KEYRING", h.join("secrets/keyring.json"))
        .env("MB_HMAC_KEY", h.join("secrets/hmac.key"))
        .env("MB_BACKUP_DIR", &dumps)
        .env("MB_KEY_BACKUP_DIR", &keys)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let names = |d: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect()
    };
    assert!(names(&dumps).iter().any(|n| n.ends_with(".sql.gz")));
    let key_copies = names(&keys);
    let copy = |prefix: &str| {
        key_copies
            .iter()
            .find(|n| n.starts_with(prefix))
            .map(|n| keys.join(n))
            .unwrap_or_else(|| panic!("no {prefix} copy in {key_copies:?}"))
    };
    assert_eq!(
        std::fs::read(copy("keyring-")).unwrap(),
        std::fs::read(h.join("secrets/keyring.json")).unwrap()
    );
    assert_eq!(
        std::fs::read(copy("hmac-")).unwrap(),
        std::fs::read(h.join("secrets/hmac.key")).unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(copy("hmac-"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}
