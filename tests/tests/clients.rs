//! Real clients, as users have them: the README's curl and Python examples run as written,
//! Python's standard library against ingest and the store's /admin API, and every early
//! refusal reaching curl as its status and JSON body over HTTP/2 and HTTP/1.1 alike.
//!
//! curl and Python's `ssl` are OpenSSL clients: they send the CA certificate after their own,
//! which the rustls clients of the other tests never do.

use mb_e2e::readme::{example, user_dir};
use mb_e2e::{Stack, StackOptions};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn stdout_json(what: &str, out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what} failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{what} did not print JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_curl_examples_submit_and_read_status_as_written() {
    let stack = Stack::start(StackOptions::default()).await;
    let dir = user_dir(&stack);
    let submit = example("submit");
    let first = stdout_json("submit", &submit.run(&stack, dir.path(), |c| c));
    assert_eq!(first["status"], "queued", "{first}");
    assert_eq!(first["domain"], "example.com");
    let id = first["message_id"].as_str().expect("message_id").to_owned();
    // The same command again (same Idempotency-Key): the same message, nothing new.
    let again = stdout_json("submit again", &submit.run(&stack, dir.path(), |c| c));
    assert_eq!(again["message_id"], first["message_id"]);

    stack.wait_delivered(1, Duration::from_secs(20)).await;
    let status = stdout_json(
        "status",
        &example("status").run(&stack, dir.path(), |c| c.replace("<message_id>", &id)),
    );
    assert_eq!(status["status"], "delivered", "{status}");
    assert_eq!(status["attempt_count"], 1);
    assert_eq!(stack.db.count("SELECT COUNT(*) FROM messages").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_portal_example_signs_in_with_curl_and_lists_the_messages() {
    let stack = Stack::start(StackOptions {
        start_portal: true,
        ..Default::default()
    })
    .await;
    let dir = user_dir(&stack);
    // What ops/up does: the superadmin `admin`, its password in .local/admin-password (with
    // the newline a shell's echo leaves).
    let password = "a password from ops/up";
    stack.add_user("admin", "superadmin", None, None, password);
    std::fs::write(stack.home().join("admin-password"), format!("{password}\n")).unwrap();
    for i in 0..2 {
        let key = format!("order-{i}");
        let out = example("submit").run(&stack, dir.path(), |c| c.replace("order-42", &key));
        assert!(out.status.success());
    }
    stack.wait_delivered(2, Duration::from_secs(20)).await;
    let out = example("portal").run(&stack, dir.path(), |c| c);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            format!("303 -> https://localhost:{}/messages", stack.portal_port).as_str(),
            "2"
        ],
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_python_example_submits_with_the_standard_library() {
    let stack = Stack::start(StackOptions::default()).await;
    let dir = user_dir(&stack);
    let out = example("python").run(&stack, dir.path(), |c| c);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("202 {") && text.contains("'status': 'queued'"),
        "{text}"
    );
    stack.wait_delivered(1, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_admin_and_queue_examples_run_as_written() {
    let stack = Stack::start(StackOptions::default()).await;
    let dir = user_dir(&stack);
    let out = example("admin").run(&stack, dir.path(), |c| c);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = text.lines().last().unwrap_or_default();
    let certs: serde_json::Value =
        serde_json::from_str(listing).unwrap_or_else(|e| panic!("{e}: {text}"));
    let names: Vec<&str> = certs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["common_name"].as_str())
        .collect();
    assert!(
        names.contains(&"demo.example.com") && names.contains(&"root.example.com"),
        "{names:?}"
    );

    // Something in the queues to look at.
    let submit = example("submit").run(&stack, dir.path(), |c| c);
    assert!(submit.status.success());
    stack.wait_delivered(1, Duration::from_secs(20)).await;
    let out = example("streams").run(&stack, dir.path(), |c| c);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("example.com"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = example("redis-cli").run(&stack, dir.path(), |c| c);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("deliver"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `tests/clients/stdlib_client.py` and returns its JSON line.
fn python(args: &[&str]) -> serde_json::Value {
    let script = mb_e2e::repo_root().join("tests/clients/stdlib_client.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    stdout_json("stdlib_client.py", &out)
}

#[tokio::test(flavor = "multi_thread")]
async fn python_stdlib_client_submits_reads_status_and_uses_the_admin_api() {
    let stack = Stack::start(StackOptions::default()).await;
    let h = stack.home();
    let (crt, key) = stack.issue_client("py", "example.com");
    let ca = h.join("certs/ca.crt");
    let s = |p: &Path| p.display().to_string();
    let ingest_port = stack.ingest_port.to_string();
    let base = ["localhost", ingest_port.as_str()];
    let creds = [s(&ca), s(&crt), s(&key)];
    let mut args: Vec<&str> = vec!["submit"];
    args.extend(base);
    args.extend(creds.iter().map(String::as_str));
    args.push("py-order-1");
    let sent = python(&args);
    assert_eq!(sent["status"], 202, "{sent}");
    let id = sent["body"]["message_id"].as_str().unwrap().to_owned();
    assert_eq!(python(&args)["body"]["message_id"], id.as_str());

    stack.wait_delivered(1, Duration::from_secs(20)).await;
    let mut args: Vec<&str> = vec!["status"];
    args.extend(base);
    args.extend(creds.iter().map(String::as_str));
    args.push(&id);
    let status = python(&args);
    assert_eq!(status["status"], 200, "{status}");
    assert_eq!(status["body"]["status"], "delivered");

    let admins = h.join("admins");
    let out = stack.mbctl(&[
        "cert",
        "issue",
        "root",
        "--domain",
        "example.com",
        "--admin",
        "--out",
        &s(&admins),
    ]);
    assert!(out.status.success());
    let store_port = stack.store_port.to_string();
    let listed = python(&[
        "get",
        "localhost",
        &store_port,
        &s(&ca),
        &s(&admins.join("root.crt")),
        &s(&admins.join("root.key")),
        "/admin/certificates",
    ]);
    assert_eq!(listed["status"], 200, "{listed}");
    assert!(
        listed["body"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["common_name"] == "py.example.com")
    );
}

/// One curl request: (HTTP status, HTTP version, JSON body).
fn curl(
    args: &[&str],
    http: &str,
    url: &str,
    body_file: Option<&Path>,
) -> (u16, String, serde_json::Value) {
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "20", http])
        .arg("-o")
        .arg(out_file.path())
        .args(["-w", "%{http_code} %{http_version}"])
        .args(args);
    if let Some(f) = body_file {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(format!("@{}", f.display()));
    }
    let out = cmd.arg(url).output().expect("run curl");
    let w = String::from_utf8_lossy(&out.stdout).into_owned();
    let (code, version) = w.split_once(' ').unwrap_or((&w, ""));
    let body = std::fs::read(out_file.path()).unwrap_or_default();
    (
        code.parse().unwrap_or(0),
        version.to_owned(),
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_early_refusal_reaches_curl_as_its_status_and_json_over_http2_and_http1() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        rate_limit: Some("{max_requests: 1, window_seconds: 3600}"),
        ..Default::default()
    })
    .await;
    let h = stack.home().to_path_buf();
    let ca = h.join("certs/ca.crt").display().to_string();
    let url = format!("{}/api/v1/messages", stack.ingest_url());
    // A certificate signed with the CA key but never recorded: 403 before the body matters.
    let main_ca = mb_pki::ca::Ca::load(&h.join("certs/ca.crt"), &h.join("secrets/ca.key")).unwrap();
    main_ca
        .issue("ghost.example.com", mb_pki::ca::Profile::Client, 30)
        .unwrap()
        .write(&h, "ghost")
        .unwrap();
    let (crt, key) = stack.issue_client("demo", "example.com");
    let ghost = [
        "--cacert".to_owned(),
        ca.clone(),
        "--cert".to_owned(),
        h.join("ghost.crt").display().to_string(),
        "--key".to_owned(),
        h.join("ghost.key").display().to_string(),
    ];
    let demo = [
        "--cacert".to_owned(),
        ca.clone(),
        "--cert".to_owned(),
        crt.display().to_string(),
        "--key".to_owned(),
        key.display().to_string(),
    ];
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let p = files.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let small = write(
        "small.json",
        r#"{"sender_number": "+14155550123", "message_body": "hi"}"#.to_owned(),
    );
    // A valid-looking document with enough padding to span many HTTP/2 frames.
    let padded = |n: usize| {
        format!(
            r#"{{"sender_number": "+14155550123", "message_body": "hi", "pad": "{}"}}"#,
            "x".repeat(n)
        )
    };
    let within = write("within.json", padded(15_000));
    let big = write("big.json", padded(40_000));
    let huge = write("huge.json", padded(3_000_000));

    let first = curl(
        &demo.iter().map(String::as_str).collect::<Vec<_>>(),
        "--http2",
        &url,
        Some(&small),
    );
    assert_eq!(first.0, 202, "{first:?}");

    type Case<'a> = (&'a str, &'a [String], &'a Path, u16, &'a str);
    let cases: [Case; 5] = [
        ("unrecorded certificate", &ghost, &small, 403, "forbidden"),
        (
            "unrecorded certificate, 15 KB body",
            &ghost,
            &within,
            403,
            "forbidden",
        ),
        ("body over the limit", &demo, &big, 413, "payload_too_large"),
        (
            "body far over the limit",
            &demo,
            &huge,
            413,
            "payload_too_large",
        ),
        ("rate limited", &demo, &small, 429, "rate_limited"),
    ];
    for (what, creds, body, status, code) in cases {
        let creds: Vec<&str> = creds.iter().map(String::as_str).collect();
        for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
            for i in 0..10 {
                let (got, v, json) = curl(&creds, flag, &url, Some(body));
                assert_eq!(
                    (got, v.as_str()),
                    (status, version),
                    "{what}, {flag}, try {i}: {json}"
                );
                assert_eq!(json["error"]["code"], code, "{what}, {flag}, try {i}");
            }
        }
    }
    assert_eq!(stack.stream_state().await.0, 1, "only the first was queued");
}
