//! `mbctl healthcheck` and `mbctl doctor` against a real stack: all well, then a service
//! down, a Redis that fsyncs its AOF only once a second, a secret file others may read, and a
//! stored row whose key is not in the keyring.

use mb_e2e::client::message;
use mb_e2e::{Stack, StackOptions};
use mysql_async::prelude::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

/// Where this stack's services are, as flags.
fn endpoints(stack: &Stack) -> Vec<String> {
    vec![
        "--ingest-url".into(),
        stack.ingest_url(),
        "--store-url".into(),
        format!("https://localhost:{}", stack.store_port),
        "--portal-url".into(),
        stack.portal_url(),
        "--deliver-url".into(),
        format!(
            "http://127.0.0.1:{}/metrics",
            stack.deliver_metrics_ports[0]
        ),
    ]
}

fn run(stack: &Stack, verb: &str, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec![verb.to_owned()];
    args.extend(endpoints(stack));
    if verb == "doctor" {
        args.push("--config-dir".into());
        args.push(stack.home().display().to_string());
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out: Output = stack.mbctl(&refs);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "$ mbctl {}\n{stdout}{}",
        refs.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), stdout)
}

fn lines_starting<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_passes_with_every_service_up_and_names_the_store_when_it_is_down() {
    let mut stack = Stack::start(StackOptions {
        start_portal: true,
        ..Default::default()
    })
    .await;

    let (code, out) = run(&stack, "healthcheck", &[]);
    assert_eq!(code, Some(0), "{out}");
    let ok = lines_starting(&out, "ok ");
    assert_eq!(ok.len(), 6, "one line per check:\n{out}");
    for service in ["ingest", "store", "portal", "deliver", "redis", "mysql"] {
        assert!(
            ok.iter()
                .any(|l| l.split_whitespace().nth(1) == Some(service)),
            "no ok line for {service}:\n{out}"
        );
    }
    assert!(
        out.contains(&format!("{}/readyz", stack.ingest_url())),
        "{out}"
    );
    // The MySQL password is not shown.
    assert!(!out.contains("devpw") && !out.contains(":pass"), "{out}");

    let (code, out) = run(&stack, "healthcheck", &["--quiet"]);
    assert_eq!((code, out.as_str()), (Some(0), ""));

    stack.store.kill();
    let (code, out) = run(&stack, "healthcheck", &["--timeout", "2s"]);
    assert_eq!(code, Some(1), "{out}");
    let failed = lines_starting(&out, "FAIL");
    assert_eq!(failed.len(), 1, "only the store fails:\n{out}");
    assert!(
        failed[0].contains("store") && failed[0].contains("/healthz"),
        "{out}"
    );

    let (code, out) = run(&stack, "healthcheck", &["--quiet"]);
    assert_eq!((code, out.as_str()), (Some(1), ""));

    // --service chooses what is checked.
    let (code, out) = run(
        &stack,
        "healthcheck",
        &["--service", "redis", "--service", "ingest"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_on_a_fresh_stack_and_names_the_file_and_the_key_that_are_wrong() {
    let stack = Stack::start(StackOptions {
        start_portal: true,
        ..Default::default()
    })
    .await;
    // A stored message, for the keyring checks.
    let client = stack.client("alice");
    let answer = client
        .submit(&message("+1234567890", "hello doctor"))
        .await
        .expect("submit");
    assert_eq!(answer.status, 202);
    stack.wait_delivered(1, Duration::from_secs(30)).await;

    let (code, out) = run(&stack, "doctor", &[]);
    assert_eq!(code, Some(0), "a fresh stack has nothing to FAIL:\n{out}");
    assert!(lines_starting(&out, "FAIL").is_empty(), "{out}");
    assert!(out.contains(", 0 FAIL"), "summary:\n{out}");
    for area in [
        "ingest", "store", "portal", "deliver", "redis", "mysql", "clock", "files", "certs",
        "keyring",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok") && l.split_whitespace().nth(1) == Some(area)),
            "no ok line for {area}:\n{out}"
        );
    }
    assert!(out.contains("schema up to date"), "{out}");
    assert!(out.contains("all use"), "keyring paths compared:\n{out}");
    assert!(
        lines_starting(&out, "ok    redis")
            .iter()
            .any(|l| l.contains("appendfsync always")),
        "the AOF policy is checked:\n{out}"
    );

    // A Redis that answers before its AOF is on disk: a warning with its fix.
    let mut redis = stack.redis.connection().await;
    let set_fsync = |policy: &str| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("appendfsync")
            .arg(policy)
            .clone()
    };
    set_fsync("everysec")
        .query_async::<()>(&mut redis)
        .await
        .expect("CONFIG SET appendfsync everysec");
    let (code, out) = run(&stack, "doctor", &[]);
    assert_eq!(code, Some(0), "a warning is not a failure:\n{out}");
    let warned = lines_starting(&out, "warn  redis");
    assert!(
        warned.iter().any(|l| l.contains("appendfsync everysec")),
        "{out}"
    );
    assert!(out.contains("fix: set `appendfsync always`"), "{out}");
    set_fsync("always")
        .query_async::<()>(&mut redis)
        .await
        .expect("CONFIG SET appendfsync always");

    // A secret others may read.
    let hmac = stack.home().join("secrets/hmac.key");
    std::fs::set_permissions(&hmac, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = run(&stack, "doctor", &[]);
    assert_eq!(code, Some(1), "{out}");
    let failed = lines_starting(&out, "FAIL");
    assert_eq!(failed.len(), 1, "{out}");
    assert!(
        failed[0].contains(&hmac.display().to_string()) && failed[0].contains("0644"),
        "{out}"
    );
    assert!(
        out.contains(&format!("fix: chmod 600 {}", hmac.display())),
        "{out}"
    );
    std::fs::set_permissions(&hmac, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A stored row under a key the keyring does not have.
    stack
        .db
        .pool
        .get_conn()
        .await
        .unwrap()
        .query_drop(
            "UPDATE messages SET key_id = 9, \
             body_ciphertext = CONCAT('k9', SUBSTRING(body_ciphertext, LOCATE(':', body_ciphertext))) \
             LIMIT 1",
        )
        .await
        .unwrap();
    let (code, out) = run(&stack, "doctor", &[]);
    assert_eq!(code, Some(1), "{out}");
    let failed = lines_starting(&out, "FAIL");
    assert_eq!(failed.len(), 1, "{out}");
    assert!(
        failed[0].contains("1 stored row uses key 9") && failed[0].contains("keyring"),
        "{out}"
    );
}
