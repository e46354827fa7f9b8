//! Logs an operator can follow: with `MB_LOG_FORMAT=json` every line of every service is one
//! JSON object, and a submission's request id (the client's `X-Request-Id` or one ingest
//! chose) is in ingest's, deliver's and the store's lines about it. Sent with curl, as a client
//! would.

use mb_e2e::{Stack, StackOptions, eventually};
use std::process::Command;
use std::time::Duration;

const ENV: &[(&str, &str)] = &[
    ("MB_LOG_FORMAT", "json"),
    (
        "RUST_LOG",
        "info,mb_shared=debug,mb_ingest=debug,mb_deliver=debug,mb_store=debug",
    ),
];

/// Submits one message with curl; returns (status, X-Request-Id answered).
fn submit(
    stack: &Stack,
    cert: &std::path::Path,
    key: &std::path::Path,
    request_id: Option<&str>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}"])
        .arg("--cacert")
        .arg(stack.home().join("certs/ca.crt"))
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["-H", "Content-Type: application/json"])
        .args([
            "-d",
            r#"{"sender_number":"+14155550100","message_body":"logs test body 8812"}"#,
        ]);
    if let Some(id) = request_id {
        cmd.args(["-H", &format!("X-Request-Id: {id}")]);
    }
    let out = cmd
        .arg(format!("{}/api/v1/messages", stack.ingest_url()))
        .output()
        .expect("curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout);
    let status = text
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    let echoed = text
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("x-request-id"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, echoed)
}

/// The JSON lines of one log file that mention `id`; panics on any line that is not JSON.
fn lines_with(log: &str, id: &str) -> Vec<serde_json::Value> {
    log.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .filter(|v| v.to_string().contains(id))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_request_id_follows_a_message_through_ingest_deliver_and_store_in_json_logs() {
    let stack = Stack::start(StackOptions {
        service_env: ENV,
        ..Default::default()
    })
    .await;
    let (cert, key) = stack.issue_client("alice", "example.com");

    let (status, echoed) = submit(&stack, &cert, &key, Some("trace-me-1234"));
    assert_eq!(status, 202);
    assert_eq!(echoed, "trace-me-1234", "the request id is answered");
    // Without one (or with one that could forge log lines) ingest chooses it.
    let (status, chosen) = submit(&stack, &cert, &key, Some("bad id <forged>"));
    assert_eq!(status, 202);
    assert_eq!(chosen.len(), 24, "a fresh id: {chosen:?}");

    for id in ["trace-me-1234", chosen.as_str()] {
        eventually(
            Duration::from_secs(20),
            "the message's lines in every service",
            || async {
                let ingest = lines_with(&stack.ingest.log_text(), id);
                let deliver = lines_with(&stack.delivers[0].log_text(), id);
                let store = lines_with(&stack.store.log_text(), id);
                (!ingest.is_empty() && !deliver.is_empty() && !store.is_empty())
                    .then_some((ingest, deliver, store))
            },
        )
        .await;
    }
    let ingest = lines_with(&stack.ingest.log_text(), "trace-me-1234");
    // Every ingest line of the request sits in its `request` span.
    for l in &ingest {
        assert_eq!(l["span"]["request_id"], "trace-me-1234", "{l}");
    }
    assert!(ingest.iter().any(|l| l["fields"]["message"] == "accepted"));
    let deliver = lines_with(&stack.delivers[0].log_text(), "trace-me-1234");
    assert_eq!(deliver[0]["fields"]["request_id"], "trace-me-1234");
    let store = lines_with(&stack.store.log_text(), "trace-me-1234");
    assert_eq!(store[0]["fields"]["request_id"], "trace-me-1234");
    // The same message id in all three.
    let mid = ingest
        .iter()
        .find_map(|l| l["fields"]["message_id"].as_str())
        .expect("ingest logs the message id");
    assert_eq!(deliver[0]["fields"]["message_id"], mid);
    assert_eq!(store[0]["fields"]["message_id"], mid);

    // Whatever the level, nothing readable: not the body, not the number.
    let all = stack.all_logs();
    assert!(!all.contains("logs test body 8812"));
    assert!(!all.contains("4155550100"));
    for log in [
        stack.ingest.log_text(),
        stack.store.log_text(),
        stack.delivers[0].log_text(),
    ] {
        lines_with(&log, ""); // every line is JSON
    }
}
