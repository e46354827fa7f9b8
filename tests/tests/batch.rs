//! `POST /api/v1/messages/batch`, with the clients users have: the README's curl and Python
//! examples as written, then the rules — each message judged on its own, per-message
//! idempotency keys, a rate limit that counts messages, limits on the batch itself — and every
//! accepted message stored exactly once.

use mb_e2e::readme::{example, user_dir};
use mb_e2e::{Stack, StackOptions, eventually};
use std::process::Command;
use std::time::Duration;

fn stdout_json(what: &str, out: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{what} did not print JSON ({e}): {text}"))
}

/// POSTs `body` to the batch endpoint with curl: (status, JSON answer).
fn curl_batch(
    stack: &Stack,
    cert: &std::path::Path,
    key: &std::path::Path,
    body: &str,
) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(stack.home().join("certs/ca.crt"))
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
        ])
        .arg(format!("{}/api/v1/messages/batch", stack.ingest_url()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(body.as_bytes())?;
            child.wait_with_output()
        })
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (json, status) = text.rsplit_once('\n').expect("status line");
    (
        status.trim().parse().unwrap_or(0),
        serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
    )
}

fn message(i: usize) -> serde_json::Value {
    serde_json::json!({"sender_number": "+14155550100", "message_body": format!("batch body {i}")})
}

#[tokio::test(flavor = "multi_thread")]
async fn readme_batch_examples_run_as_written() {
    let stack = Stack::start(StackOptions::default()).await;
    let dir = user_dir(&stack);
    let curl = example("batch");
    let first = stdout_json("batch", &curl.run(&stack, dir.path(), |c| c));
    assert_eq!(
        (first["accepted"].as_u64(), first["refused"].as_u64()),
        (Some(2), Some(1)),
        "{first}"
    );
    let results = first["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], 202);
    assert_eq!(results[0]["domain"], "example.com");
    assert_eq!(results[2]["status"], 422);
    assert_eq!(results[2]["error"]["code"], "validation_failed");
    assert!(results[2]["error"]["fields"]["sender_number"].is_string());
    // Again: the keyed messages are the same ones, nothing new.
    let again = stdout_json("batch again", &curl.run(&stack, dir.path(), |c| c));
    assert_eq!(again["results"][0]["message_id"], results[0]["message_id"]);
    assert_eq!(again["results"][1]["message_id"], results[1]["message_id"]);

    let out = example("batch-python").run(&stack, dir.path(), |c| c);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.trim(), "207 100 0");
    stack.wait_delivered(102, Duration::from_secs(30)).await;
    assert_eq!(stack.db.count("SELECT COUNT(*) FROM messages").await, 102);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_accepts_its_valid_messages_counts_them_against_the_rate_limit_and_stores_each_once()
 {
    let stack = Stack::start(StackOptions {
        rate_limit: Some("{max_requests: 40, window_seconds: 60}"),
        ingest_extra: "max_batch_messages: 50\n",
        ..Default::default()
    })
    .await;
    let (cert, key) = stack.issue_client("alice", "example.com");

    // Mixed: valid, invalid in two ways, a keyed one, a key with a different message.
    let mut keyed = message(3);
    keyed["idempotency_key"] = "k-3".into();
    let mut clash = message(4);
    clash["idempotency_key"] = "k-3".into();
    let mut bad_key = message(5);
    bad_key["idempotency_key"] = 7.into();
    let batch = serde_json::json!({"messages": [
        message(0),
        {"sender_number": "+1", "message_body": ""},
        {"sender_number": "+14155550100", "message_body": "x", "extra": true},
        keyed,
        bad_key,
    ]});
    let (status, a) = curl_batch(&stack, &cert, &key, &batch.to_string());
    assert_eq!(status, 207, "{a}");
    let r = a["results"].as_array().unwrap();
    let statuses: Vec<u64> = r.iter().map(|x| x["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [202, 422, 422, 202, 422], "{a}");
    assert_eq!(
        r.iter()
            .map(|x| x["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert!(r[1]["error"]["fields"]["sender_number"].is_string(), "{a}");
    assert!(r[1]["error"]["fields"]["message_body"].is_string(), "{a}");
    assert!(r[2]["error"]["fields"]["extra"].is_string(), "{a}");
    assert!(
        r[4]["error"]["fields"]["idempotency_key"].is_string(),
        "{a}"
    );
    assert_eq!(
        (a["accepted"].as_u64(), a["refused"].as_u64()),
        (Some(2), Some(3))
    );

    // The key again: its first message; with a different message: 409 for that one only.
    let (_, b) = curl_batch(
        &stack,
        &cert,
        &key,
        &serde_json::json!({"messages": [batch["messages"][3], clash]}).to_string(),
    );
    assert_eq!(b["results"][0]["status"], 202);
    assert_eq!(b["results"][0]["message_id"], r[3]["message_id"]);
    assert_eq!(b["results"][1]["status"], 409);
    assert_eq!(b["results"][1]["error"]["code"], "idempotency_conflict");

    // Over the batch limit: refused whole. Not a batch: refused whole.
    let big = serde_json::json!({"messages": (0..51).map(message).collect::<Vec<_>>()});
    let (status, e) = curl_batch(&stack, &cert, &key, &big.to_string());
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (413, Some("batch_too_large")),
        "{e}"
    );
    for (body, code, want) in [
        ("{\"messages\": []}", "validation_failed", 422),
        ("{\"messages\": {}}", "validation_failed", 422),
        ("[1,2]", "validation_failed", 422),
        ("not json", "malformed_json", 400),
    ] {
        let (status, e) = curl_batch(&stack, &cert, &key, body);
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (want, Some(code)),
            "{body}: {e}"
        );
    }

    // The rate limit counts messages: 40 a minute, 2 used above; 45 more → 38 in, 7 refused.
    let many = serde_json::json!({"messages": (100..145).map(message).collect::<Vec<_>>()});
    let (status, c) = curl_batch(&stack, &cert, &key, &many.to_string());
    assert_eq!(status, 207);
    assert_eq!(
        (c["accepted"].as_u64(), c["refused"].as_u64()),
        (Some(38), Some(7)),
        "{c}"
    );
    let last = &c["results"][44];
    assert_eq!(last["status"], 429);
    assert_eq!(last["error"]["code"], "rate_limited");
    // Nothing left in the allowance: the next batch is all 429, still a 207.
    let (status, d) = curl_batch(
        &stack,
        &cert,
        &key,
        &serde_json::json!({"messages": [message(9)]}).to_string(),
    );
    assert_eq!(
        (status, d["results"][0]["status"].as_u64()),
        (207, Some(429))
    );

    // Every accepted message became exactly one row.
    let accepted: Vec<&str> = r
        .iter()
        .chain(c["results"].as_array().unwrap())
        .filter_map(|x| x["message_id"].as_str())
        .collect();
    assert_eq!(accepted.len(), 40);
    eventually(Duration::from_secs(30), "40 rows", || async {
        (stack.db.count("SELECT COUNT(*) FROM messages").await == 40).then_some(())
    })
    .await;
    let rows: Vec<(String,)> = stack.db.query("SELECT message_id FROM messages").await;
    let mut rows: Vec<String> = rows.into_iter().map(|(i,)| i).collect();
    rows.sort();
    let mut want: Vec<String> = accepted.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(rows, want);
}
