//! Messages the store keeps refusing end in the dead-letter stream, marked failed, and can be
//! redriven once the cause is fixed.

use mb_e2e::client::message;
use mb_e2e::{Stack, StackOptions, eventually};
use mb_shared::crypto::Keyring;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn refused_message_is_dead_lettered_after_max_attempts_and_redrive_delivers_it() {
    let mut stack = Stack::start(StackOptions {
        max_attempts: 3,
        separate_store_keyring: true,
        ..Default::default()
    })
    .await;
    // Ingest rotates to key 2; the store's keyring only has key 1, so it refuses the body.
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
    let id = ans.json["message_id"].as_str().unwrap().to_owned();

    let mut con = stack.redis.connection().await;
    let dead_key = stack.dead_key();
    eventually(
        Duration::from_secs(30),
        "the message in the dead-letter stream",
        || {
            let mut con = con.clone();
            let key = dead_key.clone();
            async move {
                let n: u64 = redis::cmd("XLEN")
                    .arg(key)
                    .query_async(&mut con)
                    .await
                    .ok()?;
                (n == 1).then_some(())
            }
        },
    )
    .await;
    let rows: Vec<(String, u32, Option<String>)> = stack
        .db
        .query("SELECT status, attempt_count, last_error FROM messages")
        .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "failed");
    assert_eq!(rows[0].1, 3, "dead-lettered at max_attempts");
    assert!(
        rows[0].2.as_deref().unwrap_or("").contains("key 2"),
        "{:?}",
        rows[0].2
    );
    assert_eq!(
        stack.stream_state().await,
        (0, 0),
        "the dead letter left the stream"
    );
    let st = c.get(&format!("/api/v1/messages/{id}")).await.unwrap();
    assert_eq!(st.json["status"], "failed");

    let out = stack.mbctl(&["dead", "list", "example.com"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && listing.contains(&id), "{listing}");
    assert!(
        listing.contains("key 2"),
        "the last error is shown: {listing}"
    );

    // Fix the cause: the store gets the full keyring. Then redrive.
    std::fs::copy(&keyring, stack.home().join("secrets/store-keyring.json")).unwrap();
    stack.store.stop();
    stack.start_store().await;
    let out = stack.mbctl(&["dead", "redrive", "example.com"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stack.wait_delivered(1, Duration::from_secs(20)).await;
    assert_eq!(stack.db.count("SELECT COUNT(*) FROM messages").await, 1);
    let n: u64 = redis::cmd("XLEN")
        .arg(stack.dead_key())
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(n, 0, "redriven letters leave the dead-letter stream");
}
