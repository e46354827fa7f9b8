//! The chaos run (`ops/chaos`; `ops/test` runs a 60 s version): clients submit at a steady
//! rate from many connections while, on a schedule, deliver, store, ingest, Redis, MariaDB and
//! its read replica are each killed with SIGKILL and restarted. Then the pipeline drains and the books are
//! checked: every acknowledged message is exactly one delivered row; rows that no 202 names
//! can only come from requests whose outcome stayed unknown; nothing is left in a pending list
//! or the dead-letter stream. One JSON line reports it.
//!
//! The clients behave as the API asks: a request whose outcome is unknown (connection lost,
//! timeout, 503) is repeated with the same `Idempotency-Key` until it is answered, so the
//! first answer that settles it names the one message it made.
//!
//! `MB_CHAOS_SECONDS` (default 60 here, 600 in `ops/chaos`) sets how long the load runs,
//! `MB_CHAOS_RATE` the offered messages per second (default 300), `MB_CHAOS_OUT` a file to
//! write the JSON line to.

use mb_e2e::client::ApiClient;
use mb_e2e::{Stack, StackOptions, eventually};
use std::collections::{BTreeMap, HashSet};
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

/// What one client connection saw.
#[derive(Default)]
struct Books {
    /// message_id of every 202.
    acked: Vec<String>,
    /// Requests answered with a refusal that settles them (4xx other than 429).
    refused: u64,
    /// Requests whose outcome was still unknown when the client gave up.
    unsettled: u64,
    /// Attempts answered "unknown" or not at all, later repeated.
    retries: u64,
}

enum Answer {
    Accepted(String),
    Refused,
    Unknown,
}

async fn attempt(client: &ApiClient, body: &str, key: &str) -> Answer {
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", key),
    ];
    let sent = tokio::time::timeout(Duration::from_secs(10), client.submit_raw(body, &headers));
    match sent.await {
        Ok(Ok(a)) if a.status == 202 => match a.json["message_id"].as_str() {
            Some(id) => Answer::Accepted(id.to_owned()),
            None => panic!("202 without message_id: {}", a.text),
        },
        // 429 and 5xx settle nothing: the client is asked to try again.
        Ok(Ok(a)) if a.status == 429 || a.status.is_server_error() => Answer::Unknown,
        Ok(Ok(a)) => {
            eprintln!("refused {}: {}", a.status, a.text);
            Answer::Refused
        }
        Ok(Err(_)) | Err(_) => Answer::Unknown,
    }
}

/// One client connection: message `i` (i = first, first + step, …) is due at `i / rate`.
async fn client_loop(
    client: ApiClient,
    first: u64,
    step: u64,
    rate: u64,
    started: Instant,
    load_for: Duration,
) -> Books {
    let mut books = Books::default();
    let mut i = first;
    loop {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        if due >= started + load_for {
            return books;
        }
        tokio::time::sleep_until(due.into()).await;
        let body = format!(
            r#"{{"sender_number":"+1415555{:04}","message_body":"chaos message {i}"}}"#,
            i % 10_000
        );
        let key = format!("chaos-{i}");
        let give_up = started + load_for + SETTLE_GRACE;
        loop {
            match attempt(&client, &body, &key).await {
                Answer::Accepted(id) => {
                    books.acked.push(id);
                    break;
                }
                Answer::Refused => {
                    books.refused += 1;
                    break;
                }
                Answer::Unknown if Instant::now() > give_up => {
                    books.unsettled += 1;
                    break;
                }
                Answer::Unknown => {
                    books.retries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        i += step;
    }
}

/// SIGKILL `victim`, leave it down for `down`, start it again.
async fn kill_and_restart(stack: &mut Stack, victim: &str, down: Duration) {
    match victim {
        "deliver" => stack.delivers[0].kill(),
        "store" => stack.store.kill(),
        "ingest" => stack.ingest.kill(),
        "redis" => stack.redis.kill(),
        "mariadb" => stack.mariadb.as_mut().expect("own MariaDB").kill(),
        "replica" => stack.replica.as_mut().expect("read replica").kill(),
        _ => unreachable!("unknown victim {victim}"),
    }
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

    let started = Instant::now();
    let loaders: Vec<_> = (0..CONNECTIONS as u64)
        .map(|c| {
            tokio::spawn(client_loop(
                client.clone(),
                c,
                CONNECTIONS as u64,
                rate,
                started,
                load_for,
            ))
        })
        .collect();
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
    let mut books = Books::default();
    for l in loaders {
        let b = l.await.expect("client task");
        books.acked.extend(b.acked);
        books.refused += b.refused;
        books.unsettled += b.unsettled;
        books.retries += b.retries;
    }
    let load_seconds = started.elapsed().as_secs_f64();

    // The drain: every entry delivered and acknowledged, nothing pending.
    let drain_started = Instant::now();
    eventually(Duration::from_secs(180), "the streams to drain", || async {
        (stack.stream_state().await == (0, 0)).then_some(())
    })
    .await;
    let drain_seconds = drain_started.elapsed().as_secs_f64();

    let rows: Vec<(String, String)> = stack
        .db
        .query("SELECT message_id, status FROM messages")
        .await;
    let mut seen = HashSet::with_capacity(rows.len());
    let duplicate_ids = rows
        .iter()
        .filter(|(id, _)| !seen.insert(id.as_str()))
        .count() as u64;
    let acked: HashSet<&str> = books.acked.iter().map(String::as_str).collect();
    let lost = acked.iter().filter(|id| !seen.contains(*id)).count() as u64;
    let extra = seen.iter().filter(|id| !acked.contains(*id)).count() as u64;
    // A row no 202 names is only allowed for a request never settled (at most one each).
    let duplicates = duplicate_ids
        + (books.acked.len() - acked.len()) as u64
        + extra.saturating_sub(books.unsettled);
    let not_delivered = rows.iter().filter(|(_, s)| s != "delivered").count() as u64;
    // The replica, killed and restarted, resumed replication and holds every row.
    let db_name = stack.db.name.clone();
    let replica_rows = eventually(Duration::from_secs(60), "the replica to catch up", || {
        let sql = format!("SELECT COUNT(*) FROM {db_name}.messages");
        let replica = stack.replica.as_ref().expect("read replica");
        let want = rows.len().to_string();
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
        "acknowledged": acked.len(),
        "refused": books.refused,
        "retried_attempts": books.retries,
        "unsettled": books.unsettled,
        "rows": rows.len(),
        "lost": lost,
        "duplicates": duplicates,
        "extra_rows": extra,
        "not_delivered": not_delivered,
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

    assert_eq!(lost, 0, "acknowledged messages lost: {report}");
    assert_eq!(duplicates, 0, "messages stored twice: {report}");
    assert_eq!(not_delivered, 0, "rows not delivered: {report}");
    assert_eq!((pending, dead), (0, 0), "entries stranded: {report}");
    assert_eq!(
        books.refused, 0,
        "the clients send only valid messages: {report}"
    );
    assert!(
        books.retries > 0,
        "no client ever had to repeat a request: the kills did not happen? {report}"
    );
    for v in VICTIMS {
        assert!(
            kills.get(v).copied().unwrap_or(0) >= 1,
            "{v} was never killed: {report}"
        );
    }
}
