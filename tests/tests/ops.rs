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

/// Runs an ops/ script with `env`; panics with its output unless it exits 0.
fn run_script(script: &str, args: &[&str], env: &[(&str, &std::path::Path)]) -> String {
    let mut cmd = std::process::Command::new(mb_e2e::repo_root().join(script));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} {args:?} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_restores_into_a_fresh_database_and_every_message_reads_back() {
    use hyper::Method;
    use mb_e2e::client::message;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::time::Duration;

    const PASSWORD: &str = "correct horse battery staple";
    let mut stack = Stack::start(StackOptions::default()).await;
    let h = stack.home().to_path_buf();

    // Messages from two senders (the HMAC key must come back for sender search), with bodies
    // that are not plain ASCII.
    let client = stack.client("alice");
    let mut sent: BTreeMap<String, (String, &str)> = BTreeMap::new();
    for i in 0..24 {
        let sender = if i % 3 == 0 {
            "+14155550111"
        } else {
            "+14155550122"
        };
        let body = format!("restore me {i}: grüße, 你好, \"quotes\" and 'apostrophes' 🙂");
        let a = client.submit(&message(sender, &body)).await.unwrap();
        assert_eq!(a.status, 202, "{:?}", a.json);
        sent.insert(
            a.json["message_id"].as_str().unwrap().to_owned(),
            (body, sender),
        );
    }
    stack.wait_delivered(24, Duration::from_secs(30)).await;
    stack.add_user("boss", "superadmin", None, None, PASSWORD);

    // Back up, as the operator's cron job does.
    let out_dir = tempfile::tempdir().unwrap();
    let dumps = out_dir.path().join("dumps");
    let keys = out_dir.path().join("keys");
    let db_url = stack.db.url();
    run_script(
        "ops/backup",
        &[],
        &[
            ("MB_MYSQL_URL", Path::new(&db_url)),
            ("MB_HOME", &h),
            ("MB_BACKUP_DIR", &dumps),
            ("MB_KEY_BACKUP_DIR", &keys),
        ],
    );
    let tar = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "tar"))
        .expect("a tar of certs/ and secrets/ in the key backup dir");
    assert_eq!(
        std::fs::metadata(&tar).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let dump = std::fs::read_dir(&dumps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".sql.gz"))
        .expect("a dump");

    // Disaster: the services stop, the database and every secret and certificate are gone.
    for d in &mut stack.delivers {
        d.stop();
    }
    stack.ingest.stop();
    stack.store.stop();
    let before: BTreeMap<String, Vec<u8>> = ["secrets/keyring.json", "secrets/ca.key"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(h.join(f)).unwrap()))
        .collect();
    {
        use mysql_async::prelude::Queryable;
        let mut c = stack.db.pool.get_conn().await.unwrap();
        c.query_drop(format!("DROP DATABASE {}", stack.db.name))
            .await
            .unwrap();
    }
    std::fs::remove_dir_all(h.join("secrets")).unwrap();
    std::fs::remove_dir_all(h.join("certs")).unwrap();

    // Restore into a fresh, empty database on the test MariaDB.
    let fresh = mb_e2e::testdb::TestDb::create().await;
    let fresh_url = fresh.url();
    let restore_env = [("MB_MYSQL_URL", Path::new(&fresh_url)), ("MB_HOME", &h)];
    let dump_arg = dump.display().to_string();
    let keys_arg = keys.display().to_string();
    let text = run_script("ops/restore", &[&dump_arg, &keys_arg], &restore_env);
    assert!(
        !text.contains(&fresh_url),
        "the URL (and its password) was printed:\n{text}"
    );
    for (f, bytes) in &before {
        assert_eq!(&std::fs::read(h.join(f)).unwrap(), bytes, "{f}");
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&h.join("secrets")), 0o700);
    for e in std::fs::read_dir(h.join("secrets")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    assert_eq!(mode(&h.join("certs/services/store.key")), 0o600);

    // A second restore into the now non-empty database is refused.
    let again = std::process::Command::new(mb_e2e::repo_root().join("ops/restore"))
        .args([&dump_arg, &keys_arg])
        .env("MB_MYSQL_URL", &fresh_url)
        .env("MB_HOME", &h)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("restore into an empty database"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // A store on the restored database and secrets.
    let cfg = h.join("store.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("mysql_url:") {
                format!("mysql_url: {fresh_url}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&cfg, text).unwrap();
    stack.start_store().await;

    // Every message, read back decrypted through the store's /api as the portal asks for it
    // (the portal's restored certificate, the restored superadmin, a token signed with the
    // restored JWT key).
    let tls = stack.service_tls("portal");
    let api = stack.client_with(
        &format!("https://localhost:{}", stack.store_port),
        &tls.cert,
        &tls.key,
    );
    let login =
        serde_json::json!({"username": "boss", "password": PASSWORD, "client_addr": "192.0.2.7"});
    let a = api
        .request(
            Method::POST,
            "/api/v1/login",
            &[("content-type", "application/json")],
            login.to_string(),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.json);
    let bearer = format!("Bearer {}", a.json["token"].as_str().unwrap());
    let get = |path: String| {
        let api = api.clone();
        let bearer = bearer.clone();
        async move {
            api.request(Method::GET, &path, &[("authorization", &bearer)], "")
                .await
                .unwrap()
        }
    };
    for (id, (body, _)) in &sent {
        let a = get(format!("/api/v1/messages/{id}")).await;
        assert_eq!(a.status, 200, "{id}: {:?}", a.json);
        assert_eq!(a.json["body"].as_str(), Some(body.as_str()), "{:?}", a.json);
        assert_eq!(a.json["status"], "delivered");
    }
    for sender in ["+14155550111", "+14155550122"] {
        let q: String = form_urlencoded::byte_serialize(sender.as_bytes()).collect();
        let a = get(format!("/api/v1/messages?limit=200&sender={q}")).await;
        assert_eq!(a.status, 200, "{:?}", a.json);
        let got: Vec<&str> = a.json["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message_id"].as_str().unwrap())
            .collect();
        let mut got = got;
        got.sort_unstable();
        let want: Vec<&str> = sent
            .iter()
            .filter(|(_, (_, s))| *s == sender)
            .map(|(id, _)| id.as_str())
            .collect();
        assert_eq!(got, want, "sender search for {sender} after the restore");
    }
}
