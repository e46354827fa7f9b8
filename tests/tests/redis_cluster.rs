//! The broker on a Redis Cluster (3 masters, 3 replicas, `redis/cluster/cluster.conf`), with
//! ingest answering 202 only once a replica holds the message (`redis_wait_replicas: 1`).
//! Under steady load the master that serves the domain's stream is replaced: once by a
//! manual `CLUSTER FAILOVER` on its replica, once by SIGKILL (its replica takes over after
//! `cluster-node-timeout`, the killed node comes back as a replica). Clients repeat requests
//! whose outcome is unknown with the same Idempotency-Key. Every 202 must be exactly one
//! delivered row, nothing may stay pending or dead. One JSON line reports each run.

use mb_e2e::load::{self, Load};
use mb_e2e::redis_server::{RedisCluster, TestRedis, node_query};
use mb_e2e::{Stack, StackOptions, eventually};
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 16;
const RATE: u64 = 300;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Failover {
    /// `CLUSTER FAILOVER` on the replica: the master hands over without losing a write.
    Manual,
    /// SIGKILL of the master; the replica is elected after `cluster-node-timeout`.
    Kill,
}

fn cluster(stack: &Stack) -> &RedisCluster {
    match &stack.redis {
        TestRedis::Cluster(c) => c,
        TestRedis::Single(_) => panic!("the stack runs a single Redis"),
    }
}

async fn fail_over_under_load(how: Failover) {
    let mut stack = Stack::start(StackOptions {
        redis_cluster: true,
        max_attempts: 1000,
        ..Default::default()
    })
    .await;
    let key = stack.stream_key();
    let master = cluster(&stack).master_of(&key).await;
    let replica = cluster(&stack).replica_of(master).await;
    let clients = (0..CONNECTIONS)
        .map(|_| stack.client("loader"))
        .collect::<Vec<_>>();
    let loader = load::start(
        clients,
        &Load {
            rate: RATE,
            duration: Duration::from_secs(14),
            settle_grace: Duration::from_secs(40),
            attempt_timeout: Duration::from_secs(5),
            retry_pause: Duration::from_millis(100),
            tag: "cluster",
        },
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let failed_at = Instant::now();
    let (master_port, replica_port) = {
        let c = cluster(&stack);
        (c.nodes[master].port, c.nodes[replica].port)
    };
    match how {
        Failover::Manual => {
            let ok = node_query(replica_port, &["CLUSTER", "FAILOVER"]).await;
            assert_eq!(ok.as_deref(), Some("OK"), "CLUSTER FAILOVER on the replica");
        }
        Failover::Kill => {
            let TestRedis::Cluster(c) = &mut stack.redis else {
                unreachable!()
            };
            c.nodes[master].kill();
        }
    }
    // The replica is the master now.
    let promoted = eventually(
        Duration::from_secs(30),
        "the replica to become master",
        || async move {
            let repl = node_query(replica_port, &["INFO", "replication"]).await?;
            repl.contains("role:master").then(Instant::now)
        },
    )
    .await;
    let promoted_after = promoted - failed_at;
    if how == Failover::Kill {
        // The killed node comes back; it rejoins as a replica of the new master (whose writes
        // are confirmed, and answered 202, again once it has a replica).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let TestRedis::Cluster(c) = &mut stack.redis else {
            unreachable!()
        };
        c.start_again().await;
        let repl = node_query(master_port, &["INFO", "replication"])
            .await
            .unwrap_or_default();
        assert!(
            repl.contains("role:slave"),
            "the old master did not rejoin as a replica: {repl}"
        );
    }
    let books = loader.finish().await;
    eventually(Duration::from_secs(120), "the stream to drain", || async {
        (stack.stream_state().await == (0, 0)).then_some(())
    })
    .await;
    let audit = load::audit(&stack.db, &books).await;
    let dead: u64 = redis::cmd("XLEN")
        .arg(stack.dead_key())
        .query_async(&mut stack.redis.connection().await)
        .await
        .expect("XLEN of the dead-letter stream");
    let first_unknown = books.unknown.iter().filter(|t| **t >= failed_at).min();
    let last_unknown = books.unknown.iter().filter(|t| **t >= failed_at).max();
    let report = serde_json::json!({
        "failover": format!("{how:?}"),
        "rate": RATE,
        "promoted_after_ms": promoted_after.as_millis() as u64,
        "unknown_attempts": books.unknown.len(),
        "unknown_window_ms": match (first_unknown, last_unknown) {
            (Some(a), Some(b)) => (*b - *a).as_millis() as u64,
            _ => 0,
        },
        "refused": books.refused,
        "unsettled": books.unsettled,
        "dead_letters": dead,
        "audit": audit.json(),
    });
    println!("{report}");
    assert_eq!(audit.lost, 0, "acknowledged messages lost: {report}");
    assert_eq!(audit.duplicates, 0, "messages stored twice: {report}");
    assert_eq!(audit.not_delivered, 0, "rows not delivered: {report}");
    assert_eq!(
        (books.refused, books.unsettled, dead),
        (0, 0, 0),
        "{report}"
    );
    assert!(
        audit.acknowledged >= RATE * 10,
        "too few messages went through the failover: {report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_failover_under_load_loses_and_duplicates_nothing() {
    fail_over_under_load(Failover::Manual).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_master_under_load_loses_and_duplicates_nothing() {
    fail_over_under_load(Failover::Kill).await;
}

/// `mbctl streams` and `mbctl healthcheck` against the cluster: the domains are found on
/// whichever master holds them, and the health check fails once a shard is gone.
#[tokio::test(flavor = "multi_thread")]
async fn mbctl_sees_every_domain_and_the_cluster_state() {
    let mut stack = Stack::start(StackOptions {
        redis_cluster: true,
        ..Default::default()
    })
    .await;
    let client = stack.client("alice");
    let a = client
        .submit(&mb_e2e::client::message("+14155550100", "to the cluster"))
        .await
        .expect("submit");
    assert_eq!(a.status, 202, "{}", a.text);
    stack.wait_delivered(1, Duration::from_secs(20)).await;
    let url = stack.redis.url();
    let mbctl = |args: &[&str]| {
        let out = std::process::Command::new(mb_e2e::binary("mbctl"))
            .arg("--redis-url")
            .arg(&url)
            .args(args)
            .output()
            .expect("run mbctl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = mbctl(&["streams"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("example.com"),
        "mbctl streams misses the domain: {text}"
    );
    let (ok, text) = mbctl(&["healthcheck", "--service", "redis"]);
    assert!(ok && text.starts_with("ok"), "{text}");

    // The shard of example.com loses its master and its replica: the cluster is down.
    let key = stack.stream_key();
    let TestRedis::Cluster(c) = &mut stack.redis else {
        unreachable!()
    };
    let master = c.master_of(&key).await;
    let replica = c.replica_of(master).await;
    c.nodes[master].kill();
    c.nodes[replica].kill();
    let text = eventually(Duration::from_secs(30), "the health check to fail", || {
        let (ok, text) = mbctl(&["healthcheck", "--service", "redis", "--timeout", "2s"]);
        async move { (!ok).then_some(text) }
    })
    .await;
    assert!(
        text.contains("FAIL") && text.contains("cluster_state"),
        "{text}"
    );
}

/// With `redis_wait_replicas: 1`, a message no replica confirmed is not a 202: with the
/// domain's replica frozen, a submit is answered 503 outcome_unknown, and so is its retry with
/// the same Idempotency-Key (the first message is in the stream, but still on the master only).
/// Once the replica is back, the retry gets the first message's 202, and it is one row.
#[tokio::test(flavor = "multi_thread")]
async fn no_202_before_a_replica_holds_the_message_not_even_for_a_retry() {
    let stack = Stack::start(StackOptions {
        redis_cluster: true,
        ..Default::default()
    })
    .await;
    let c = stack.client("alice");
    let body = mb_e2e::client::message("+14155550123", "replicated?").to_string();
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "order-9"),
    ];
    let master = cluster(&stack).master_of(&stack.stream_key()).await;
    let replica = cluster(&stack).replica_of(master).await;
    cluster(&stack).nodes[replica].signal("STOP");
    let first = c.submit_raw(&body, &headers).await.expect("answered");
    let retry = c.submit_raw(&body, &headers).await.expect("answered");
    cluster(&stack).nodes[replica].signal("CONT");
    for a in [&first, &retry] {
        assert_eq!(a.status, 503, "{}", a.text);
        assert_eq!(a.json["error"]["code"], "outcome_unknown", "{}", a.text);
    }
    let metrics = mb_e2e::scrape(stack.ingest_metrics_port).await;
    assert!(
        mb_e2e::metric(&metrics, "mb_ingest_not_replicated_total") >= 2.0,
        "{metrics}"
    );
    // The replica catches up; the retry now gets the first message.
    let accepted = eventually(Duration::from_secs(20), "a 202 for the retry", || {
        let c = c.clone();
        let body = body.clone();
        async move {
            let a = c.submit_raw(&body, &headers).await.ok()?;
            (a.status == 202).then_some(a)
        }
    })
    .await;
    let id = accepted.json["message_id"]
        .as_str()
        .expect("message_id")
        .to_owned();
    stack.wait_delivered(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    mb_e2e::assert_exactly_once(&stack.db, &[id]).await;
}
