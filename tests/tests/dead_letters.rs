//! What the store cannot take: a malformed message is retried, then dead-lettered and marked
//! failed; a message the store cannot take *yet* (it lacks the key id, a configuration
//! mismatch between services) stays pending and is delivered once the store has the key; dead
//! letters can be redriven.

use mb_e2e::client::message;
use mb_e2e::{Stack, StackOptions, eventually, metric, scrape};
use mb_shared::crypto::Keyring;
use std::time::Duration;

async fn xlen(stack: &Stack, key: &str) -> u64 {
    let mut con = stack.redis.connection().await;
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut con)
        .await
        .unwrap()
}

/// The delivery count of the first pending entry of the domain stream.
async fn first_delivery_count(stack: &Stack) -> u64 {
    let mut con = stack.redis.connection().await;
    let reply: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(stack.stream_key())
        .arg("deliver")
        .arg("-")
        .arg("+")
        .arg(1)
        .query_async(&mut con)
        .await
        .unwrap();
    reply.ids.first().map_or(0, |p| p.times_delivered as u64)
}

#[tokio::test(flavor = "multi_thread")]
async fn store_lacking_the_key_keeps_messages_pending_and_delivers_them_once_it_has_it() {
    let mut stack = Stack::start(StackOptions {
        max_attempts: 3,
        separate_store_keyring: true,
        ..Default::default()
    })
    .await;
    // Ingest rotates to key 2; the store's keyring only has key 1 (it was not restarted).
    let keyring = stack.home().join("secrets/keyring.json");
    assert_eq!(Keyring::add_key_to_file(&keyring).unwrap(), 2);
    stack.ingest.stop();
    stack.ingest.start();
    stack.wait_ingest_ready(stack.ingest_port).await;

    let c = stack.client("alice");
    let ans = c
        .submit(&message("+14155550123", "needs key 2"))
        .await
        .unwrap();
    assert_eq!(ans.status, 202);

    // Retried well past max_attempts, and still pending, not dead.
    eventually(
        Duration::from_secs(30),
        "five delivery attempts",
        || async { (first_delivery_count(&stack).await >= 5).then_some(()) },
    )
    .await;
    assert_eq!(xlen(&stack, &stack.dead_key()).await, 0, "no dead letter");
    assert_eq!(stack.db.count("SELECT COUNT(*) FROM messages").await, 0);
    let deliver = scrape(stack.deliver_metrics_ports[0]).await;
    assert!(
        metric(&deliver, "mb_deliver_messages_deferred_total") >= 3.0,
        "deferrals are counted for the alert"
    );
    let store = scrape(stack.store_metrics_port).await;
    assert!(metric(&store, "mb_store_messages_deferred_total") >= 3.0);

    // The store learns key 2 (restarted with the new keyring): the message is delivered.
    std::fs::copy(&keyring, stack.home().join("secrets/store-keyring.json")).unwrap();
    stack.store.stop();
    stack.start_store().await;
    stack.wait_delivered(1, Duration::from_secs(20)).await;
    let rows: Vec<(String, u32)> = stack
        .db
        .query("SELECT status, attempt_count FROM messages")
        .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "delivered");
    assert!(rows[0].1 >= 5, "attempts are counted: {}", rows[0].1);
    assert_eq!(xlen(&stack, &stack.dead_key()).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_entry_is_dead_lettered_after_max_attempts_and_recorded_failed() {
    let stack = Stack::start(StackOptions {
        max_attempts: 3,
        ..Default::default()
    })
    .await;
    // An entry whose "mask" is a whole phone number: the store must never keep it.
    let mut con = stack.redis.connection().await;
    let id = uuid::Uuid::now_v7().to_string();
    let hex = "ab".repeat(32);
    let _: String = redis::cmd("XADD")
        .arg(stack.stream_key())
        .arg("*")
        .arg(&[
            ("message_id", id.as_str()),
            ("client_id", hex.as_str()),
            ("domain", "example.com"),
            ("queued_at", "2026-01-01T00:00:00.000Z"),
            ("sender_hash", hex.as_str()),
            ("sender_mask", "+14155550123"),
            ("body", "k1:AAAA"),
            ("v", "1"),
        ])
        .query_async(&mut con)
        .await
        .unwrap();

    eventually(Duration::from_secs(30), "the dead letter", || async {
        (xlen(&stack, &stack.dead_key()).await == 1).then_some(())
    })
    .await;
    let rows: Vec<(String, String, u32, Option<String>)> = stack
        .db
        .query("SELECT message_id, status, attempt_count, last_error FROM messages")
        .await;
    assert_eq!(rows.len(), 1);
    let (mid, status, attempts, error) = &rows[0];
    assert_eq!((mid.as_str(), status.as_str()), (id.as_str(), "failed"));
    assert_eq!(*attempts, 3, "dead-lettered at max_attempts");
    assert!(error.as_deref().unwrap_or("").contains("mask"), "{error:?}");
    assert_eq!(
        stack
            .db
            .count("SELECT COUNT(*) FROM messages WHERE sender_mask LIKE '%4155550123%'")
            .await,
        0,
        "the unmasked number is not stored"
    );
    assert_eq!(stack.stream_state().await, (0, 0), "it left the stream");

    let out = stack.mbctl(&["dead", "list", "example.com"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && listing.contains(&id), "{listing}");
    assert!(
        listing.contains("mask"),
        "the last error is shown: {listing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redrive_puts_dead_letters_back_and_they_are_delivered() {
    let mut stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let c = stack.client("alice");
    let ans = c
        .submit(&message("+14155550123", "second chance"))
        .await
        .unwrap();
    assert_eq!(ans.status, 202);
    let id = ans.json["message_id"].as_str().unwrap().to_owned();

    // Make it a dead letter as a worker would have: its fields plus why it died.
    let mut con = stack.redis.connection().await;
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stack.stream_key())
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .unwrap();
    let entry = &entries.ids[0];
    let mut fields = mb_shared::streams::entry_fields(entry);
    fields.extend([
        ("error".to_owned(), "store was misconfigured".to_owned()),
        ("attempts".to_owned(), "5".to_owned()),
        ("failed_at".to_owned(), mb_shared::time::now_rfc3339()),
        ("source_id".to_owned(), entry.id.clone()),
    ]);
    let _: String = redis::cmd("XADD")
        .arg(stack.dead_key())
        .arg("*")
        .arg(&fields)
        .query_async(&mut con)
        .await
        .unwrap();
    let _: u64 = redis::cmd("XDEL")
        .arg(stack.stream_key())
        .arg(&entry.id)
        .query_async(&mut con)
        .await
        .unwrap();

    let out = stack.mbctl(&["dead", "redrive", "example.com"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("redrove 1"));
    assert_eq!(xlen(&stack, &stack.dead_key()).await, 0);
    stack.start_deliver().await;
    stack.wait_delivered(1, Duration::from_secs(20)).await;
    let ids: Vec<String> = stack.db.query("SELECT message_id FROM messages").await;
    assert_eq!(ids, [id]);
}
