//! Steady load from many connections, sent the way the API asks clients to behave: a request
//! whose outcome is unknown (connection lost, timeout, 5xx, 429) is repeated with the same
//! `Idempotency-Key` until it is answered, so the first answer that settles it names the one
//! message it made. The chaos, HAProxy and Redis Cluster failover tests all count on it.

use crate::client::ApiClient;
use std::time::{Duration, Instant};

/// What the load offers.
#[derive(Clone, Debug)]
pub struct Load {
    /// Messages per second over all connections.
    pub rate: u64,
    /// How long messages are sent.
    pub duration: Duration,
    /// How long an unsettled request is still repeated after `duration`.
    pub settle_grace: Duration,
    /// The longest one attempt may take before it counts as unknown.
    pub attempt_timeout: Duration,
    /// The pause before an unknown request is repeated.
    pub retry_pause: Duration,
    /// Idempotency keys and bodies carry it, so runs are told apart.
    pub tag: &'static str,
}

/// What the clients saw, merged over all connections.
#[derive(Default, Debug)]
pub struct Books {
    /// Every 202: when it came, and the message it names.
    pub acked: Vec<(Instant, String)>,
    /// Requests refused for good (4xx other than 429).
    pub refused: u64,
    /// Requests whose outcome was still unknown when the client gave up.
    pub unsettled: u64,
    /// When each attempt began whose outcome was unknown (later repeated).
    pub unknown: Vec<Instant>,
}

impl Books {
    pub fn acked_ids(&self) -> Vec<String> {
        self.acked.iter().map(|(_, id)| id.clone()).collect()
    }

    fn merge(&mut self, other: Books) {
        self.acked.extend(other.acked);
        self.refused += other.refused;
        self.unsettled += other.unsettled;
        self.unknown.extend(other.unknown);
    }
}

enum Answer {
    Accepted(String),
    Refused,
    Unknown,
}

async fn attempt(client: &ApiClient, body: &str, key: &str, timeout: Duration) -> Answer {
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", key),
    ];
    match tokio::time::timeout(timeout, client.submit_raw(body, &headers)).await {
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

/// One connection: message `i` (i = first, first + step, …) is due at `i / rate`.
async fn client_loop(
    client: ApiClient,
    first: u64,
    step: u64,
    load: Load,
    started: Instant,
) -> Books {
    let mut books = Books::default();
    let give_up = started + load.duration + load.settle_grace;
    let mut i = first;
    loop {
        let due = started + Duration::from_secs_f64(i as f64 / load.rate as f64);
        if due >= started + load.duration {
            return books;
        }
        tokio::time::sleep_until(due.into()).await;
        let body = format!(
            r#"{{"sender_number":"+1415555{:04}","message_body":"{} message {i}"}}"#,
            i % 10_000,
            load.tag
        );
        let key = format!("{}-{i}", load.tag);
        loop {
            let began = Instant::now();
            match attempt(&client, &body, &key, load.attempt_timeout).await {
                Answer::Accepted(id) => {
                    books.acked.push((Instant::now(), id));
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
                    books.unknown.push(began);
                    tokio::time::sleep(load.retry_pause).await;
                }
            }
        }
        i += step;
    }
}

/// A running load: one task per client.
pub struct Running {
    pub started: Instant,
    tasks: Vec<tokio::task::JoinHandle<Books>>,
}

/// Starts the load, one connection per client.
pub fn start(clients: Vec<ApiClient>, load: &Load) -> Running {
    let started = Instant::now();
    let step = clients.len() as u64;
    let tasks = clients
        .into_iter()
        .enumerate()
        .map(|(c, client)| tokio::spawn(client_loop(client, c as u64, step, load.clone(), started)))
        .collect();
    Running { started, tasks }
}

impl Running {
    /// Waits for every client to finish and merges what they saw.
    pub async fn finish(self) -> Books {
        let mut books = Books::default();
        for t in self.tasks {
            books.merge(t.await.expect("client task"));
        }
        books
    }
}

/// The books against the `messages` table, once the pipeline has drained.
#[derive(Debug)]
pub struct Audit {
    pub acknowledged: u64,
    pub rows: u64,
    /// Acknowledged messages without a row.
    pub lost: u64,
    /// Rows stored twice, 202s naming the same message twice, and rows no 202 names beyond
    /// one for each request never settled.
    pub duplicates: u64,
    /// Rows no 202 names (allowed: at most one per unsettled request).
    pub extra_rows: u64,
    pub not_delivered: u64,
}

impl Audit {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "acknowledged": self.acknowledged,
            "rows": self.rows,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "extra_rows": self.extra_rows,
            "not_delivered": self.not_delivered,
        })
    }
}

pub async fn audit(db: &crate::testdb::TestDb, books: &Books) -> Audit {
    use std::collections::HashSet;
    let rows: Vec<(String, String)> = db.query("SELECT message_id, status FROM messages").await;
    let mut seen = HashSet::with_capacity(rows.len());
    let duplicate_ids = rows
        .iter()
        .filter(|(id, _)| !seen.insert(id.as_str()))
        .count() as u64;
    let acked: HashSet<&str> = books.acked.iter().map(|(_, id)| id.as_str()).collect();
    let lost = acked.iter().filter(|id| !seen.contains(*id)).count() as u64;
    let extra_rows = seen.iter().filter(|id| !acked.contains(*id)).count() as u64;
    Audit {
        acknowledged: acked.len() as u64,
        rows: rows.len() as u64,
        lost,
        duplicates: duplicate_ids
            + (books.acked.len() - acked.len()) as u64
            + extra_rows.saturating_sub(books.unsettled),
        extra_rows,
        not_delivered: rows.iter().filter(|(_, s)| s != "delivered").count() as u64,
    }
}
