//! Crashes, kills and outages of every component: nothing acknowledged is lost, nothing is
//! stored twice.

use mb_e2e::client::message;
use mb_e2e::{Stack, StackOptions, assert_exactly_once, eventually, submit_many};
use mb_shared::internal::{DELIVER_PATH, DeliverIn, DeliverOut, Delivery, InternalClient};
use mb_shared::streams::StreamEntry;
use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_means_503_and_nothing_accepted_then_accepts_again() {
    let mut stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let c = stack.client("alice");
    assert_eq!(
        c.submit(&message("+14155550123", "before"))
            .await
            .unwrap()
            .status,
        202
    );
    stack.redis.stop();

    // The first request may find the connection just lost, with its fate unknown; once the
    // loss is known, the answer is that nothing was accepted.
    let mut codes = Vec::new();
    while codes.last().is_none_or(|c| c != "queue_unavailable") {
        assert!(codes.len() < 20, "never queue_unavailable: {codes:?}");
        let a = c.submit(&message("+14155550123", "during")).await.unwrap();
        assert_eq!(a.status, 503, "{:?}", a.json);
        assert!(a.headers.contains_key("retry-after"));
        codes.push(a.json["error"]["code"].as_str().unwrap().to_owned());
    }
    assert!(
        codes[..codes.len() - 1]
            .iter()
            .all(|c| c == "outcome_unknown")
            && codes.len() <= 2,
        "only the first answer may be uncertain: {codes:?}"
    );
    assert_eq!(c.get("/readyz").await.unwrap().status, 503);

    stack.redis.start_again().await;
    let c2 = c.clone();
    eventually(Duration::from_secs(15), "ingest to accept again", || {
        let c = c2.clone();
        async move {
            let a = c.submit(&message("+14155550123", "after")).await.ok()?;
            (a.status == 202).then_some(())
        }
    })
    .await;
    assert_eq!(c.get("/readyz").await.unwrap().status, 200);
    assert_eq!(
        stack.stream_state().await.0,
        2,
        "exactly the two accepted messages are queued, the refused one is not"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn store_outage_delays_but_loses_nothing_and_retries_count_attempts() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let c = stack.client("alice");
    // A client ingest knows (it has submitted before) goes on submitting while the store is down.
    let (mut accepted, _) = submit_many(&c, 1, 1).await;
    assert_eq!(accepted.len(), 1);
    stack.wait_delivered(1, Duration::from_secs(20)).await;
    stack.store.stop();
    let (during, refused) = submit_many(&c, 40, 8).await;
    assert_eq!(
        (during.len(), refused),
        (40, 0),
        "ingest accepts while the store is down"
    );
    accepted.extend(during);
    // Let the workers try and fail, so entries go through the pending list.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(stack.db.count("SELECT COUNT(*) FROM messages").await, 1);
    stack.start_store().await;
    stack.wait_delivered(41, Duration::from_secs(30)).await;
    assert_exactly_once(&stack.db, &accepted).await;
    let retried = stack
        .db
        .count("SELECT COUNT(*) FROM messages WHERE attempt_count > 1")
        .await;
    assert!(
        retried > 0,
        "messages tried while the store was down must show more than one attempt"
    );
    assert_eq!(stack.stream_state().await, (0, 0));
}

/// Reads entries as a consumer that will never ack them, like a worker about to die.
async fn read_as_doomed_worker(stack: &Stack, n: usize) -> Vec<(String, StreamEntry)> {
    let mut con = stack.redis.connection().await;
    mb_shared::streams::ensure_group(&mut con, &Stack::domain())
        .await
        .unwrap();
    let opts = StreamReadOptions::default()
        .group(mb_shared::streams::GROUP, "doomed:1:0")
        .count(n);
    let reply: StreamReadReply = con
        .xread_options(&[stack.stream_key()], &[">"], &opts)
        .await
        .unwrap();
    reply
        .keys
        .into_iter()
        .flat_map(|k| k.ids)
        .map(|id| {
            let fields = mb_shared::streams::entry_fields(&id);
            let entry =
                StreamEntry::from_fields(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .unwrap();
            (id.id, entry)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_dying_after_the_store_write_before_xack_leaves_one_row_per_message() {
    let mut stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let (accepted, _) = submit_many(&stack.client("alice"), 3, 3).await;
    let taken = read_as_doomed_worker(&stack, 10).await;
    assert_eq!(taken.len(), 3);
    // The doomed worker writes the batch to the store with deliver's own certificate…
    let tls = mb_shared::tls::client_config(&stack.service_tls("deliver")).unwrap();
    let store = InternalClient::new(
        &format!("https://localhost:{}", stack.store_port),
        tls,
        Duration::from_secs(5),
    );
    let batch = DeliverIn {
        messages: taken
            .iter()
            .map(|(_, e)| Delivery {
                entry: e.clone(),
                attempt: 1,
            })
            .collect(),
    };
    let out: DeliverOut = store.post(DELIVER_PATH, &batch).await.unwrap();
    assert_eq!(out.results.len(), 3);
    assert_eq!(stack.db.count("SELECT COUNT(*) FROM messages").await, 3);
    // …and dies before XACK. A real worker claims the entries after the retry interval.
    stack.start_deliver().await;
    eventually(
        Duration::from_secs(20),
        "pending entries to be retried and acked",
        || async { (stack.stream_state().await == (0, 0)).then_some(()) },
    )
    .await;
    assert_exactly_once(&stack.db, &accepted).await;
    assert_eq!(
        stack
            .db
            .count("SELECT COUNT(*) FROM messages WHERE attempt_count = 2")
            .await,
        3,
        "the re-delivery is the second attempt"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_dying_before_the_store_write_has_its_messages_delivered_by_another() {
    let mut stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let (accepted, _) = submit_many(&stack.client("alice"), 5, 5).await;
    assert_eq!(read_as_doomed_worker(&stack, 10).await.len(), 5);
    stack.start_deliver().await;
    stack.wait_delivered(5, Duration::from_secs(20)).await;
    assert_exactly_once(&stack.db, &accepted).await;
    assert_eq!(
        stack
            .db
            .count("SELECT COUNT(*) FROM messages WHERE attempt_count >= 2")
            .await,
        5
    );
    assert_eq!(stack.stream_state().await, (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_killed_with_sigkill_under_load_loses_and_duplicates_nothing() {
    let mut stack = Stack::start(StackOptions {
        batch_size: 16,
        ..Default::default()
    })
    .await;
    let c = stack.client("alice");
    let load = tokio::spawn(async move { submit_many(&c, 800, 16).await });
    eventually(Duration::from_secs(30), "deliveries under way", || async {
        (stack.db.count("SELECT COUNT(*) FROM messages").await >= 100).then_some(())
    })
    .await;
    stack.delivers[0].kill();
    let (accepted, refused) = load.await.unwrap();
    assert_eq!(refused, 0);
    stack.start_deliver().await;
    stack
        .wait_delivered(accepted.len() as u64, Duration::from_secs(60))
        .await;
    assert_exactly_once(&stack.db, &accepted).await;
    eventually(Duration::from_secs(10), "stream drained", || async {
        (stack.stream_state().await == (0, 0)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_and_restarted_from_its_aof_delivers_every_acknowledged_message() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let c = stack.client("alice");
    let (mut accepted, _) = submit_many(&c, 150, 8).await;
    stack.redis.kill();
    let (during, _) = submit_many(&c, 5, 1).await;
    assert!(during.is_empty(), "nothing is accepted while Redis is down");
    stack.redis.start_again().await;
    let c2 = c.clone();
    eventually(Duration::from_secs(15), "ingest to accept again", || {
        let c = c2.clone();
        async move { (c.get("/readyz").await.ok()?.status == 200).then_some(()) }
    })
    .await;
    let (after, _) = submit_many(&c, 150, 8).await;
    accepted.extend(after);
    assert!(accepted.len() >= 290, "only {} accepted", accepted.len());
    stack
        .wait_delivered(accepted.len() as u64, Duration::from_secs(60))
        .await;
    assert_exactly_once(&stack.db, &accepted).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_to_deliver_under_load_exits_promptly_and_loses_nothing() {
    let mut stack = Stack::start(StackOptions::default()).await;
    let c = stack.client("alice");
    let load = tokio::spawn(async move { submit_many(&c, 1500, 16).await });
    eventually(Duration::from_secs(30), "deliveries under way", || async {
        (stack.db.count("SELECT COUNT(*) FROM messages").await >= 200).then_some(())
    })
    .await;
    let started = Instant::now();
    stack.delivers[0].signal("TERM");
    let status = stack.delivers[0].wait_exit(Duration::from_secs(10));
    let took = started.elapsed();
    let status = status.expect("deliver must exit within 10 s of SIGTERM");
    assert!(status.success(), "clean exit, got {status:?}");
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    let (accepted, _) = load.await.unwrap();
    stack.start_deliver().await;
    stack
        .wait_delivered(accepted.len() as u64, Duration::from_secs(60))
        .await;
    assert_exactly_once(&stack.db, &accepted).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unconfirmed_write_is_answered_outcome_unknown_and_a_retry_with_the_same_key_finds_it() {
    let stack = Stack::start(StackOptions::default()).await;
    let c = stack.client("alice");
    let body = message("+14155550123", "did it arrive?").to_string();
    let hdrs = [
        ("content-type", "application/json"),
        ("idempotency-key", "order-7"),
    ];
    // Redis holds back writes for 3 s (as a slow disk or a long command would): ingest's lookup
    // of the key is answered, its write is not, within its 1 s timeout.
    stack.redis.pause_writes(Duration::from_secs(3)).await;
    let ans = c.submit_raw(&body, &hdrs).await.unwrap();
    assert_eq!(ans.status, 503, "{:?}", ans.json);
    assert_eq!(
        ans.json["error"]["code"], "outcome_unknown",
        "{:?}",
        ans.json
    );
    assert!(
        ans.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("same Idempotency-Key")
    );
    // Redis did apply it. The retry the answer asks for finds that message and adds nothing.
    let retry = eventually(Duration::from_secs(10), "the retry to be answered", || {
        let c = c.clone();
        let body = body.clone();
        async move {
            let a = c.submit_raw(&body, &hdrs).await.ok()?;
            (a.status == 202).then_some(a)
        }
    })
    .await;
    let id = retry.json["message_id"].as_str().unwrap().to_owned();
    stack.wait_delivered(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_exactly_once(&stack.db, &[id]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_janitor_never_removes_a_consumer_that_holds_entries() {
    let dir = tempfile::tempdir().unwrap();
    let redis = mb_e2e::redis_server::RedisServer::start(dir.path().join("redis")).await;
    let mut con = redis.connection().await;
    let domain = mb_shared::domains::Domain::parse("example.com").unwrap();
    let key = mb_shared::streams::stream_key(&domain);
    mb_shared::streams::ensure_group(&mut con, &domain)
        .await
        .unwrap();
    let _: String = con.xadd(&key, "*", &[("f", "v")]).await.unwrap();
    // "busy" reads the entry (it is pending), "empty" exists and holds nothing.
    let opts = StreamReadOptions::default()
        .group("deliver", "busy")
        .count(1);
    let _: Option<StreamReadReply> = con.xread_options(&[&key], &[">"], &opts).await.unwrap();
    let _: i64 = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(&key)
        .arg("deliver")
        .arg("empty")
        .query_async(&mut con)
        .await
        .unwrap();
    let script = redis::Script::new(mb_shared::streams::REMOVE_IDLE_CONSUMER);
    // Even told that any idleness will do, the script keeps the consumer with an entry: the
    // check and the removal are one step, so a read in between cannot be lost.
    let kept: i64 = script
        .key(&key)
        .arg("deliver")
        .arg("busy")
        .arg(0)
        .invoke_async(&mut con)
        .await
        .unwrap();
    assert_eq!(kept, -1);
    let removed: i64 = script
        .key(&key)
        .arg("deliver")
        .arg("empty")
        .arg(0)
        .invoke_async(&mut con)
        .await
        .unwrap();
    assert_eq!(removed, 0, "removed, dropping nothing");
    let too_fresh: i64 = script
        .key(&key)
        .arg("deliver")
        .arg("busy")
        .arg(3_600_000)
        .invoke_async(&mut con)
        .await
        .unwrap();
    assert_eq!(too_fresh, -1);
    let consumers: redis::streams::StreamInfoConsumersReply =
        con.xinfo_consumers(&key, "deliver").await.unwrap();
    let names: Vec<&str> = consumers
        .consumers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["busy"]);
    assert_eq!(
        consumers.consumers[0].pending, 1,
        "its entry is still pending"
    );
}
