//! The happy path and the API contract: storage, validation, status lookups, idempotency.

use mb_e2e::client::message;
use mb_e2e::{Stack, StackOptions};
use mb_shared::crypto::Keyring;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn submitted_message_is_stored_once_encrypted_with_one_attempt() {
    let stack = Stack::start(StackOptions::default()).await;
    let alice = stack.client("alice");
    let body = "Meet at the station at 9 — ü";
    let ans = alice.submit(&message("+14155550123", body)).await.unwrap();
    assert_eq!(ans.status, 202, "{:?}", ans.json);
    assert_eq!(ans.json["status"], "queued");
    assert_eq!(ans.json["domain"], "example.com");
    let id = ans.json["message_id"].as_str().unwrap().to_owned();

    stack.wait_delivered(1, Duration::from_secs(20)).await;
    type Row = (String, String, u32, String, String, String, String);
    let rows: Vec<Row> = stack
        .db
        .query("SELECT message_id, status, attempt_count, sender_hash, sender_mask, body_ciphertext, domain FROM messages")
        .await;
    assert_eq!(rows.len(), 1);
    let (mid, status, attempts, hash, mask, ciphertext, domain) = &rows[0];
    assert_eq!(mid, &id);
    assert_eq!(status, "delivered");
    assert_eq!(*attempts, 1);
    assert_eq!(domain, "example.com");
    assert_eq!(mask, "+141****0123");
    assert_eq!(hash.len(), 64);
    assert!(!hash.contains("4155550123") && !ciphertext.contains("station"));
    // The ciphertext is the real body: the keyring opens it, bound to this message id.
    let keyring = Keyring::load(&stack.home().join("secrets/keyring.json")).unwrap();
    assert_eq!(
        keyring.decrypt(id.as_bytes(), ciphertext).unwrap(),
        body.as_bytes()
    );

    let st = alice.get(&format!("/api/v1/messages/{id}")).await.unwrap();
    assert_eq!(st.status, 200, "{:?}", st.json);
    assert_eq!(st.json["status"], "delivered");
    assert_eq!(st.json["attempt_count"], 1);
    let bob = stack.client("bob");
    let other = bob.get(&format!("/api/v1/messages/{id}")).await.unwrap();
    assert_eq!(other.status, 404, "another client must not see the message");
    assert_eq!(
        stack.stream_state().await,
        (0, 0),
        "delivered entries are acked and removed"
    );

    let out = stack.mbctl(&["streams"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("example.com"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_submissions_get_their_status_and_name_the_field_and_enqueue_nothing() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let c = stack.client("alice");
    let json = [("content-type", "application/json")];
    // (what, request body, headers, expected status, field the error must name)
    type Case<'a> = (&'a str, String, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: Vec<Case> = vec![
        ("bad E.164", message("12345", "x").to_string(), &json, 422, "sender_number"),
        ("leading zero", message("+0123456", "x").to_string(), &json, 422, "sender_number"),
        ("empty body", message("+14155550123", "").to_string(), &json, 422, "message_body"),
        ("1001 characters", message("+14155550123", &"a".repeat(1001)).to_string(), &json, 422, "message_body"),
        (
            "unknown field",
            r#"{"sender_number":"+14155550123","message_body":"x","priority":"high"}"#.into(),
            &json,
            422,
            "priority",
        ),
        (
            "bad timestamp",
            r#"{"sender_number":"+14155550123","message_body":"x","metadata":{"timestamp":"soon"}}"#.into(),
            &json,
            422,
            "metadata.timestamp",
        ),
        ("missing sender", r#"{"message_body":"x"}"#.into(), &json, 422, "sender_number"),
        (
            "timestamp past year 9999 in UTC",
            r#"{"sender_number":"+14155550123","message_body":"x","metadata":{"timestamp":"9999-12-31T23:59:59-01:00"}}"#
                .into(),
            &json,
            422,
            "metadata.timestamp",
        ),
        ("malformed JSON", r#"{"sender_number": "+1415"#.into(), &json, 400, ""),
        ("wrong content type", message("+14155550123", "x").to_string(), &[("content-type", "text/plain")], 415, "content-type"),
        (
            "oversized request",
            format!(r#"{{"sender_number":"+14155550123","message_body":"{}"}}"#, "a".repeat(20_000)),
            &json,
            413,
            "",
        ),
    ];
    for (what, body, headers, status, field) in cases {
        let ans = c.submit_raw(&body, headers).await.unwrap();
        assert_eq!(ans.status.as_u16(), status, "{what}: {:?}", ans.json);
        let err = &ans.json["error"];
        assert!(
            err["code"].is_string() && err["message"].is_string(),
            "{what}: JSON error body {:?}",
            ans.json
        );
        if !field.is_empty() {
            assert!(
                err["fields"][field].is_string(),
                "{what}: field `{field}` not named in {:?}",
                ans.json
            );
        }
    }
    assert_eq!(
        stack.stream_state().await.0,
        0,
        "a rejected message must not be enqueued"
    );

    let wide = "😀".repeat(1000);
    let ans = c.submit(&message("+14155550123", &wide)).await.unwrap();
    assert_eq!(
        ans.status, 202,
        "1000 multi-byte characters are within the limit: {:?}",
        ans.json
    );
    assert_eq!(stack.stream_state().await.0, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn same_idempotency_key_returns_the_first_message_and_a_different_body_conflicts() {
    let stack = Stack::start(StackOptions::default()).await;
    let c = stack.client("alice");
    let body = message("+14155550123", "once only").to_string();
    let hdrs = [
        ("content-type", "application/json"),
        ("idempotency-key", "order-42"),
    ];
    let first = c.submit_raw(&body, &hdrs).await.unwrap();
    assert_eq!(first.status, 202);
    let again = c.submit_raw(&body, &hdrs).await.unwrap();
    assert_eq!(again.status, 202);
    assert_eq!(first.json["message_id"], again.json["message_id"]);
    let changed = c
        .submit_raw(
            &message("+14155550123", "something else").to_string(),
            &hdrs,
        )
        .await
        .unwrap();
    assert_eq!(changed.status, 409, "{:?}", changed.json);
    assert_eq!(changed.json["error"]["code"], "idempotency_conflict");
    // Keys belong to a client: another client's same key is a new message.
    let other = stack.client("bob").submit_raw(&body, &hdrs).await.unwrap();
    assert_eq!(other.status, 202);
    assert_ne!(other.json["message_id"], first.json["message_id"]);

    stack.wait_delivered(2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stack.db.count("SELECT COUNT(*) FROM messages").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_of_an_accepted_message_is_never_rate_limited_and_status_lookups_are() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        rate_limit: Some("{max_requests: 2, window_seconds: 3600}"),
        ..Default::default()
    })
    .await;
    let c = stack.client("alice");
    let send = |key: &'static str| {
        let c = c.clone();
        async move {
            c.submit_raw(
                &message("+14155550123", key).to_string(),
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", key),
                ],
            )
            .await
            .unwrap()
        }
    };
    let first = send("a").await;
    assert_eq!(first.status, 202);
    for _ in 0..3 {
        let again = send("a").await;
        assert_eq!(
            again.status, 202,
            "a retry is answered, not limited: {:?}",
            again.json
        );
        assert_eq!(again.json["message_id"], first.json["message_id"]);
    }
    assert_eq!(send("b").await.status, 202, "the second of two allowed");
    let limited = send("c").await;
    assert_eq!(limited.status, 429, "{:?}", limited.json);
    assert!(limited.headers.contains_key("retry-after"));

    // Status lookups have an allowance of their own, and it is enforced.
    let id = first.json["message_id"].as_str().unwrap();
    for _ in 0..2 {
        let st = c.get(&format!("/api/v1/messages/{id}")).await.unwrap();
        assert_eq!(st.status, 200, "{:?}", st.json);
        assert_eq!(st.json["status"], "queued");
    }
    let st = c.get(&format!("/api/v1/messages/{id}")).await.unwrap();
    assert_eq!(st.status, 429, "{:?}", st.json);
    assert_eq!(stack.stream_state().await.0, 2);
}
