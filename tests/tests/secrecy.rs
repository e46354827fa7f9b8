//! Nothing readable at rest or in logs: bodies and sender numbers appear nowhere in Redis
//! (stream entries, AOF), MySQL rows or service logs.

use mb_e2e::client::message;
use mb_e2e::{Stack, StackOptions};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn bodies_and_sender_numbers_appear_nowhere_in_redis_mysql_or_logs() {
    let mut stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let c = stack.client("alice");
    let secrets: Vec<(String, String)> = (0..5)
        .map(|i| {
            (
                format!("+1555{:07}", 1_234_567 + i),
                format!("topsecret-{}-{i}", uuid::Uuid::new_v4()),
            )
        })
        .collect();
    for (sender, body) in &secrets {
        let a = c.submit(&message(sender, body)).await.unwrap();
        assert_eq!(a.status, 202);
    }
    let hdrs = [
        ("content-type", "application/json"),
        ("idempotency-key", "secret-key-123"),
    ];
    let (s0, b0) = &secrets[0];
    assert_eq!(
        c.submit_raw(&message(s0, b0).to_string(), &hdrs)
            .await
            .unwrap()
            .status,
        202
    );

    let mut con = stack.redis.connection().await;
    let entries: redis::Value = redis::cmd("XRANGE")
        .arg(stack.stream_key())
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .unwrap();
    let in_stream = format!("{entries:?}");
    assert!(
        in_stream.contains("sender_hash"),
        "the stream holds the entries"
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut con)
        .await
        .unwrap();
    let all_keys = keys.join(" ");
    // The AOF is written before Redis answers the XADD; read it while the entries are queued.
    let persisted = String::from_utf8_lossy(&stack.redis.persisted_bytes()).into_owned();
    assert!(
        persisted.contains("sender_hash"),
        "the AOF holds the queued entries"
    );
    stack.start_deliver().await;
    stack.wait_delivered(6, Duration::from_secs(20)).await;
    let rows: Vec<String> = stack
        .db
        .query("SELECT CONCAT_WS('|', message_id, client_id, sender_hash, sender_mask, body_ciphertext, COALESCE(last_error, '')) FROM messages")
        .await;
    let mysql = rows.join("\n");
    let logs = stack.all_logs();
    assert!(!logs.is_empty());

    for (sender, body) in &secrets {
        let digits = &sender[1..];
        for (place, text) in [
            ("stream", &in_stream),
            ("AOF", &persisted),
            ("MySQL", &mysql),
            ("logs", &logs),
            ("keys", &all_keys),
        ] {
            assert!(
                !text.contains(body.as_str()),
                "a message body is readable in {place}"
            );
            assert!(
                !text.contains(digits),
                "a sender number is readable in {place}"
            );
        }
    }
    for place in [&in_stream, &persisted, &all_keys, &logs] {
        assert!(
            !place.contains("secret-key-123"),
            "the idempotency key is stored in the clear"
        );
    }
}
