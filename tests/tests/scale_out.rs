//! Consumers on many hosts: several mb-deliver processes (each its own consumer, named after
//! its host and pid) share one consumer group per domain. They split a backlog without storing
//! anything twice; a killed one's pending entries are claimed by the others within
//! `retry_interval`; and a large backlog in one domain does not hold up a trickle in another.
//! (The drain rates of 1, 2 and 4 processes on a 200,000 backlog are `ops/bench`'s to measure:
//! `MB_BENCH_DELIVERS=N MB_BENCH_MODE=burst`; docs/capacity.md has them.)

use hyper::Method;
use mb_e2e::client::ApiClient;
use mb_e2e::{Stack, StackOptions, assert_exactly_once, eventually, metric, scrape};
use std::time::{Duration, Instant};

/// Submits `n` messages in batches of 500 over 4 connections; returns the accepted ids.
async fn backlog(client: &ApiClient, n: usize, tag: &str) -> Vec<String> {
    use futures::StreamExt;
    let batches: Vec<Vec<String>> = futures::stream::iter((0..n).step_by(500))
        .map(|first| {
            let client = client.clone();
            async move {
                let items: Vec<String> = (first..(first + 500).min(n))
                    .map(|i| {
                        format!(
                            r#"{{"sender_number":"+1415555{:04}","message_body":"{tag} {i}"}}"#,
                            i % 10_000
                        )
                    })
                    .collect();
                let body = format!(r#"{{"messages":[{}]}}"#, items.join(","));
                let a = client
                    .request(
                        Method::POST,
                        "/api/v1/messages/batch",
                        &[("content-type", "application/json")],
                        body,
                    )
                    .await
                    .expect("batch submit");
                assert_eq!(a.status, 207, "{}", a.text);
                assert_eq!(a.json["refused"], 0, "{}", a.text);
                a.json["results"]
                    .as_array()
                    .expect("results")
                    .iter()
                    .map(|r| r["message_id"].as_str().expect("message_id").to_owned())
                    .collect()
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    batches.into_iter().flatten().collect()
}

/// Pending entries per consumer of example.com's group: (name, pending).
async fn consumers(stack: &Stack) -> Vec<(String, u64)> {
    let mut con = stack.redis.connection().await;
    let reply: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stack.stream_key())
        .arg("deliver")
        .query_async(&mut con)
        .await
        .expect("XINFO CONSUMERS");
    reply
        .consumers
        .into_iter()
        .map(|c| (c.name, c.pending as u64))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_two_and_four_deliver_processes_share_a_backlog_and_store_each_message_once() {
    let mut stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let client = stack.client("bulk");
    let mut all = Vec::new();
    for n in [1, 2, 4] {
        for d in &mut stack.delivers {
            d.stop();
        }
        let ids = backlog(&client, 8_000, &format!("phase {n}")).await;
        all.extend(ids);
        let started = Instant::now();
        for i in 0..n {
            match stack.delivers.get_mut(i) {
                Some(d) => d.start(),
                None => {
                    stack.start_deliver().await;
                }
            }
        }
        stack
            .wait_delivered(all.len() as u64, Duration::from_secs(120))
            .await;
        let took = started.elapsed().as_secs_f64();
        eprintln!(
            "{n} deliver process(es): 8,000 messages in {took:.2} s ({:.0}/s)",
            8_000.0 / took
        );
        // Every process took part: each consumer's counter (it restarted for this phase).
        for (i, port) in stack.deliver_metrics_ports.iter().take(n).enumerate() {
            let delivered = metric(&scrape(*port).await, "mb_deliver_messages_delivered_total");
            assert!(
                delivered > 0.0,
                "deliver process {i} of {n} delivered nothing"
            );
        }
    }
    assert_exactly_once(&stack.db, &all).await;
    // Four processes were consumers of the one group: their names carry host and pid.
    let names: Vec<String> = consumers(&stack).await.into_iter().map(|c| c.0).collect();
    let host = hostname();
    for d in &stack.delivers {
        let pid = d.pid().expect("running");
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&format!("{host}:{pid}:"))),
            "no consumer named {host}:{pid}:… in {names:?}"
        );
    }
}

fn hostname() -> String {
    let out = std::process::Command::new("hostname")
        .output()
        .expect("hostname");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_deliver_process_has_its_pending_entries_claimed_by_the_others_within_retry_interval()
 {
    let retry = Duration::from_secs(2);
    let mut stack = Stack::start(StackOptions {
        start_deliver: false,
        retry_interval: "2s",
        batch_size: 32,
        ..Default::default()
    })
    .await;
    let ids = backlog(&stack.client("bulk"), 12_000, "claim").await;
    stack.start_deliver().await;
    stack.start_deliver().await;
    let pid = stack.delivers[0].pid().expect("running");
    let prefix = format!("{}:{pid}:", hostname());
    // Kill it while it holds entries it read but has not acknowledged.
    eventually(
        Duration::from_secs(30),
        "the first worker to hold entries",
        || {
            let prefix = prefix.clone();
            let stack = &stack;
            async move {
                let c = consumers(stack).await;
                c.iter()
                    .any(|(n, p)| n.starts_with(&prefix) && *p > 0)
                    .then_some(())
            }
        },
    )
    .await;
    stack.delivers[0].kill();
    let killed = Instant::now();
    let held: u64 = consumers(&stack)
        .await
        .iter()
        .filter(|(n, _)| n.starts_with(&prefix))
        .map(|(_, p)| *p)
        .sum();
    assert!(held > 0, "the killed worker held nothing: nothing to claim");
    eventually(
        Duration::from_secs(30),
        "the dead worker's entries to be claimed",
        || {
            let prefix = prefix.clone();
            let stack = &stack;
            async move {
                let c = consumers(stack).await;
                c.iter()
                    .all(|(n, p)| !n.starts_with(&prefix) || *p == 0)
                    .then_some(())
            }
        },
    )
    .await;
    let took = killed.elapsed();
    // An entry is claimed once idle for retry_interval (its idle time began before the kill);
    // the claimer looks every retry_interval / 4. Allow a second for a loaded machine.
    assert!(
        took <= retry + retry / 4 + Duration::from_secs(1),
        "{held} entries of the killed worker were claimed after {took:?} (retry_interval {retry:?})"
    );
    eprintln!("{held} entries held by the killed worker, claimed by the other in {took:.2?}");
    stack
        .wait_delivered(ids.len() as u64, Duration::from_secs(120))
        .await;
    assert_exactly_once(&stack.db, &ids).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_in_one_domain_does_not_hold_up_a_trickle_in_another() {
    let mut stack = Stack::start(StackOptions {
        start_deliver: false,
        // The bulk domain gets one reader per process (domains.yaml), the other the default.
        example_com_yaml: "    deliver_concurrency: 1\n",
        batch_size: 128,
        ..Default::default()
    })
    .await;
    let bulk = backlog(&stack.client("bulk"), 100_000, "bulk").await;
    let (cert, key) = stack.issue_client("shop", "other.org");
    let trickle_client = stack.client_with(&stack.ingest_url(), &cert, &key);
    stack.start_deliver().await;
    // 25 messages a second into other.org for as long as example.com's backlog lasts (at most
    // 4 s); how fast the backlog drains depends on the machine, so the trickle counts only what
    // it sent while the backlog was there.
    let mut trickle = Vec::new();
    let started = Instant::now();
    for i in 0..100u32 {
        tokio::time::sleep_until((started + Duration::from_millis(40 * u64::from(i))).into()).await;
        if stack.stream_state().await.0 == 0 {
            break;
        }
        let body = mb_e2e::client::message("+14155550199", &format!("trickle {i}"));
        let a = trickle_client.submit(&body).await.expect("trickle submit");
        assert_eq!(a.status, 202, "{}", a.text);
        trickle.push(a.json["message_id"].as_str().unwrap().to_owned());
    }
    let (left, _) = stack.stream_state().await;
    assert!(
        trickle.len() >= 20,
        "example.com's backlog of 100,000 was gone after {} trickle messages: the test proves nothing",
        trickle.len()
    );
    let sent = trickle.len() as u64;
    let db = &stack.db;
    eventually(
        Duration::from_secs(20),
        "the trickle to be stored",
        || async move {
            (db.count("SELECT COUNT(*) FROM messages WHERE domain = 'other.org'")
                .await
                >= sent)
                .then_some(())
        },
    )
    .await;
    let mut us: Vec<i64> = stack
        .db
        .query(
            "SELECT TIMESTAMPDIFF(MICROSECOND, queued_at, created_at) FROM messages \
             WHERE domain = 'other.org'",
        )
        .await;
    us.sort_unstable();
    let p99 = us[(us.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "other.org ({sent} messages) accept→row p50 {} ms, p99 {} ms; {left} example.com entries still queued after it",
        us[us.len() / 2] / 1000,
        p99 / 1000
    );
    assert!(
        p99 < 1_000_000,
        "the trickle waited behind the backlog: accept→row p99 {} ms",
        p99 / 1000
    );
    stack
        .wait_delivered(
            (bulk.len() + trickle.len()) as u64,
            Duration::from_secs(120),
        )
        .await;
    let mut all = bulk;
    all.extend(trickle);
    assert_exactly_once(&stack.db, &all).await;
}
