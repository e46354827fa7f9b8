//! Crashes, kills and outages of every component: nothing acknowledged is lost, nothing is
//! stored twice.

use mb_e2e::client::message;
use mb_e2e::{Stack, StackOptions, assert_exactly_once, eventually, submit_many};
use mb_shared::internal::{DELIVER_PATH, DeliverIn, DeliverOut, Delivery, InternalClient};
use mb_shared::message::StreamEntry;
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

    let ans = c.submit(&message("+14155550123", "during")).await.unwrap();
    assert_eq!(ans.status, 503, "{:?}", ans.json);
    assert_eq!(ans.json["error"]["code"], "queue_unavailable");
    assert!(ans.headers.contains_key("retry-after"));
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
    stack.store.stop();
    let (accepted, refused) = submit_many(&c, 40, 8).await;
    assert_eq!(
        (accepted.len(), refused),
        (40, 0),
        "ingest accepts while the store is down"
    );
    // Let the workers try and fail, so entries go through the pending list.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(stack.db.count("SELECT COUNT(*) FROM messages").await, 0);
    stack.start_store().await;
    stack.wait_delivered(40, Duration::from_secs(30)).await;
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
    let _: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stack.stream_key())
        .arg("deliver")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut con)
        .await;
    let opts = StreamReadOptions::default()
        .group("deliver", "doomed:1:0")
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
            let fields: Vec<(String, String)> = id
                .map
                .keys()
                .map(|k| (k.clone(), id.get::<String>(k).unwrap()))
                .collect();
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
