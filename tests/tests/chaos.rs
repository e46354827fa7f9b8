//! The chaos run (`ops/chaos`; `ops/test` runs a 60 s version): clients submit at a steady
//! rate from many connections while, on a schedule, deliver, store, ingest, Redis, MariaDB and
//! its read replica are each killed with SIGKILL and restarted. Then the pipeline drains and the books are
//! checked: every acknowledged message is exactly one delivered row; rows that no 202 names
//! can only come from requests whose outcome stayed unknown; nothing is left in a pending list
//! or the dead-letter stream. One JSON line reports it.
//!
//! The clients behave as the API asks (`mb_e2e::load`): a request whose outcome is unknown
//! (connection lost, timeout, 503) is repeated with the same `Idempotency-Key` until it is
//! answered, so the first answer that settles it names the one message it made.
//!
//! `MB_CHAOS_SECONDS` (default 60 here, 600 in `ops/chaos`) sets how long the load runs,
//! `MB_CHAOS_RATE` the offered messages per second (default 300), `MB_CHAOS_OUT` a file to
//! write the JSON line to.

use mb_e2e::load::{self, Load};
use mb_e2e::redis_server::TestRedis;
use mb_e2e::{Stack, StackOptions, eventually};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Concurrent client connections.
const CONNECTIONS: usize = 16;
/// How long a client keeps repeating an unsettled request after the load phase ended.
const SETTLE_GRACE: Duration = Duration::from_secs(60);
/// The components, in the order the schedule kills them.
const VICTIMS: [&str; 6] = ["deliver", "store", "ingest", "redis", "mariadb", "replica"];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

/// SIGKILL `victim`, leave it down for `down`, start it again.
async fn kill_and_restart(stack: &mut Stack, victim: &str, down: Duration) {
    let stream_key = stack.stream_key();
    match victim {
        "deliver" => stack.delivers[0].kill(),
        "store" => stack.store.kill(),
        "ingest" => stack.ingest.kill(),
        // On a cluster (MB_TEST_REDIS=cluster), the master of the domain's stream: its replica
        // takes over, and the killed node comes back as a replica.
        "redis" => match &mut stack.redis {
            TestRedis::Cluster(c) => {
                let master = c.master_of(&stream_key).await;
                c.nodes[master].kill();
            }
            single => single.kill(),
        },
        "mariadb" => stack.mariadb.as_mut().expect("own MariaDB").kill(),
        "replica" => stack.replica.as_mut().expect("read replica").kill(),
        _ => unreachable!("unknown victim {victim}"),
    }
    // A cluster's master stays down past cluster-node-timeout (2 s in the tests), so that its
    // replica is elected.
    let down = match (victim, &stack.redis) {
        ("redis", TestRedis::Cluster(_)) => down.max(Duration::from_secs(4)),
        _ => down,
    };
    tokio::time::sleep(down).await;
    match victim {
        "deliver" => stack.delivers[0].start(),
        "store" => stack.start_store().await,
        "ingest" => stack.start_ingest().await,
        "redis" => stack.redis.start_again().await,
        "mariadb" => {
            stack
                .mariadb
                .as_mut()
                .expect("own MariaDB")
                .start_again()
                .await
        }
        "replica" => {
            stack
                .replica
                .as_mut()
                .expect("read replica")
                .start_again()
                .await
        }
        _ => unreachable!(),
    }
}

async fn stream_len(stack: &Stack, key: &str) -> u64 {
    let mut con = stack.redis.connection().await;
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut con)
        .await
        .expect("XLEN")
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_kills_every_component_on_a_schedule_and_loses_and_duplicates_nothing() {
    let seconds = env_u64("MB_CHAOS_SECONDS", 60);
    let rate = env_u64("MB_CHAOS_RATE", 300).max(1);
    assert!(seconds >= 10, "MB_CHAOS_SECONDS must be at least 10");
    let mut stack = Stack::start(StackOptions {
        own_mariadb: true,
        // The store reads the portal's pages from a replica, which is killed in turn too.
        read_replica: true,
        // Outages are short; an entry is retried through all of them (an unreachable store
        // never dead-letters, and a refusal does not happen here).
        max_attempts: 1000,
        ..Default::default()
    })
    .await;
    let client = stack.client("chaos");
    let load_for = Duration::from_secs(seconds);
    // Kills spread over the run, the last one well before its end: every component at least
    // twice in the 60 s run.
    let every = Duration::from_secs((seconds / 12).clamp(4, 15));
    let down = Duration::from_millis(1500);

    let running = load::start(
        vec![client; CONNECTIONS],
        &Load {
            rate,
            duration: load_for,
            settle_grace: SETTLE_GRACE,
            attempt_timeout: Duration::from_secs(10),
            retry_pause: Duration::from_millis(200),
            tag: "chaos",
        },
    );
    let started = running.started;
    let mut kills: BTreeMap<&str, u32> = BTreeMap::new();
    let mut next = started + every;
    let mut n = 0;
    while next + every < started + load_for {
        tokio::time::sleep_until(next.into()).await;
        let victim = VICTIMS[n % VICTIMS.len()];
        kill_and_restart(&mut stack, victim, down).await;
        *kills.entry(victim).or_default() += 1;
        n += 1;
        next += every;
    }
    let books = running.finish().await;
    let load_seconds = started.elapsed().as_secs_f64();

    // The drain: every entry delivered and acknowledged, nothing pending.
    let drain_started = Instant::now();
    eventually(Duration::from_secs(180), "the streams to drain", || async {
        (stack.stream_state().await == (0, 0)).then_some(())
    })
    .await;
    let drain_seconds = drain_started.elapsed().as_secs_f64();

    let audit = load::audit(&stack.db, &books).await;
    // The replica, killed and restarted, resumed replication and holds every row.
    let db_name = stack.db.name.clone();
    let replica_rows = eventually(Duration::from_secs(60), "the replica to catch up", || {
        let sql = format!("SELECT COUNT(*) FROM {db_name}.messages");
        let replica = stack.replica.as_ref().expect("read replica");
        let want = audit.rows.to_string();
        let got = replica.sql(&sql);
        async move { (got == want).then_some(got) }
    })
    .await;
    let pending = stack.stream_state().await.1;
    let dead = stream_len(&stack, &stack.dead_key()).await;

    let report = serde_json::json!({
        "chaos_seconds": seconds,
        "rate": rate,
        "connections": CONNECTIONS,
        "kills": kills,
        "acknowledged": audit.acknowledged,
        "refused": books.refused,
        "retried_attempts": books.unknown.len(),
        "unsettled": books.unsettled,
        "rows": audit.rows,
        "lost": audit.lost,
        "duplicates": audit.duplicates,
        "extra_rows": audit.extra_rows,
        "not_delivered": audit.not_delivered,
        "pending": pending,
        "dead_letters": dead,
        "replica_rows": replica_rows.parse::<u64>().unwrap_or(0),
        "load_seconds": (load_seconds * 10.0).round() / 10.0,
        "drain_seconds": (drain_seconds * 10.0).round() / 10.0,
    });
    println!("{report}");
    if let Ok(path) = std::env::var("MB_CHAOS_OUT") {
        std::fs::write(&path, format!("{report}\n")).expect("write MB_CHAOS_OUT");
    }

    assert_eq!(audit.lost, 0, "acknowledged messages lost: {report}");
    assert_eq!(audit.duplicates, 0, "messages stored twice: {report}");
    assert_eq!(audit.not_delivered, 0, "rows not delivered: {report}");
    assert_eq!((pending, dead), (0, 0), "entries stranded: {report}");
    assert_eq!(
        books.refused, 0,
        "the clients send only valid messages: {report}"
    );
    assert!(
        !books.unknown.is_empty(),
        "no client ever had to repeat a request: the kills did not happen? {report}"
    );
    for v in VICTIMS {
        assert!(
            kills.get(v).copied().unwrap_or(0) >= 1,
            "{v} was never killed: {report}"
        );
    }
}
