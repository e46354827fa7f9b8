//! Two ingests behind HAProxy (`ops/config/haproxy.cfg`, as `ops/up --ha` runs it): TCP
//! passthrough, so mutual TLS ends at ingest. What one ingest decides, the other must honour:
//! rate limits and idempotency keys live in Redis, revocations come from the store to each,
//! and a status lookup finds a message whichever ingest took it. Killing one ingest under load,
//! or hanging it, loses no acknowledged message, and HAProxy stops sending connections to it.

use mb_e2e::client::{ApiClient, assert_submit_refused_in_handshake, message};
use mb_e2e::haproxy::HaProxy;
use mb_e2e::load::{self, Load};
use mb_e2e::proc::Proc;
use mb_e2e::stack::DOMAIN;
use mb_e2e::{Stack, StackOptions, assert_exactly_once, eventually};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A stack with a second ingest and HAProxy in front of both. Dropped in field order:
/// HAProxy, the second ingest, then the stack.
struct Ha {
    haproxy: HaProxy,
    second: Proc,
    port2: u16,
    stack: Stack,
}

impl Ha {
    async fn start(opts: StackOptions) -> Self {
        let stack = Stack::start(opts).await;
        let (second, port2) = stack.start_extra_ingest("ingest-2").await;
        let haproxy = HaProxy::start(stack.home(), [stack.ingest_port, port2]).await;
        Self {
            haproxy,
            second,
            port2,
            stack,
        }
    }

    /// A client of ingest-1 (`1`) or ingest-2 (`2`) directly, not through HAProxy.
    fn direct(&self, ingest: u8, cert: &(PathBuf, PathBuf)) -> ApiClient {
        let port = match ingest {
            1 => self.stack.ingest_port,
            _ => self.port2,
        };
        self.client(&format!("https://localhost:{port}"), cert)
    }

    /// A client through HAProxy. Its connections are its own: a new client is a new
    /// connection, which HAProxy may give to either ingest.
    fn through(&self, cert: &(PathBuf, PathBuf)) -> ApiClient {
        self.client(&self.haproxy.url(), cert)
    }

    fn client(&self, base: &str, (cert, key): &(PathBuf, PathBuf)) -> ApiClient {
        self.stack.client_with(base, cert, key)
    }

    fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        self.stack.issue_client(name, DOMAIN)
    }
}

fn json_headers(key: &str) -> [(&str, &str); 2] {
    [
        ("content-type", "application/json"),
        ("idempotency-key", key),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn one_rate_limit_budget_holds_across_both_ingests_behind_haproxy() {
    const LIMIT: usize = 10;
    let ha = Ha::start(StackOptions {
        start_deliver: false,
        // A budget of 10 that does not refill during the test.
        rate_limit: Some("{max_requests: 10, window_seconds: 3600}"),
        ..Default::default()
    })
    .await;
    let greedy = ha.issue("greedy");
    let (mut accepted, mut limited) = (0, 0);
    for i in 0..3 * LIMIT {
        // A new connection each time, so HAProxy spreads them over both ingests.
        let client = ha.through(&greedy);
        let a = client
            .submit(&message("+14155550123", &format!("flood number {i}")))
            .await
            .expect("an answer through HAProxy");
        match a.status.as_u16() {
            202 => accepted += 1,
            429 => {
                assert!(a.headers.contains_key("retry-after"), "{:?}", a.headers);
                assert_eq!(a.json["error"]["code"], "rate_limited");
                limited += 1;
            }
            s => panic!("unexpected {s}: {}", a.text),
        }
    }
    let servers = ha.haproxy.servers().await;
    for s in &servers {
        assert!(
            s.sessions >= LIMIT as u64 / 2,
            "HAProxy must spread the connections over both ingests: {servers:?}"
        );
    }
    assert_eq!(
        (accepted, limited),
        (LIMIT, 2 * LIMIT),
        "one budget of {LIMIT} for both ingests, not {LIMIT} each"
    );
    assert_eq!(ha.stack.stream_state().await.0, LIMIT as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_idempotency_key_sent_to_each_ingest_makes_one_message() {
    let ha = Ha::start(StackOptions::default()).await;
    let alice = ha.issue("alice");
    let body = message("+14155550123", "sent twice").to_string();
    let mut ids = Vec::new();
    for client in [
        ha.direct(1, &alice),
        ha.direct(2, &alice),
        ha.through(&alice),
    ] {
        let a = client
            .submit_raw(&body, &json_headers("order-42"))
            .await
            .unwrap();
        assert_eq!(a.status, 202, "{}", a.text);
        ids.push(
            a.json["message_id"]
                .as_str()
                .expect("message_id")
                .to_owned(),
        );
    }
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the same key must name the same message on both ingests: {ids:?}"
    );
    // Another body under the same key is a conflict on the other ingest too.
    let other = message("+14155550123", "something else").to_string();
    let conflict = ha
        .direct(2, &alice)
        .submit_raw(&other, &json_headers("order-42"))
        .await
        .unwrap();
    assert_eq!(conflict.status, 409, "{}", conflict.text);

    ha.stack.wait_delivered(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_exactly_once(&ha.stack.db, &ids[..1]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_certificate_is_refused_by_both_ingests_within_the_revocation_poll() {
    // Each ingest fetches revocations from the store every `revocation_poll` (1 s, as in
    // ops/config/ingest.yaml), on its own schedule.
    const POLL: Duration = Duration::from_secs(1);
    let ha = Ha::start(StackOptions {
        start_deliver: false,
        ingest_extra: "revocation_poll: 1s\n",
        ..Default::default()
    })
    .await;
    let alice = ha.issue("alice");
    let bob = ha.issue("bob");
    // Open keep-alive connections of alice to each ingest.
    let open = [ha.direct(1, &alice), ha.direct(2, &alice)];
    for c in &open {
        let a = c.submit(&message("+14155550123", "before")).await.unwrap();
        assert_eq!(a.status, 202, "{}", a.text);
    }

    let out = ha
        .stack
        .mbctl(&["cert", "revoke", "alice", "--domain", DOMAIN]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked_at = Instant::now();
    for (i, c) in open.iter().enumerate() {
        let answered = eventually(
            Duration::from_secs(5),
            &format!("403 from ingest-{}", i + 1),
            || async move {
                let a = c.submit(&message("+14155550123", "after")).await.ok()?;
                (a.status == 403).then_some(a)
            },
        )
        .await;
        let took = revoked_at.elapsed();
        assert!(
            took <= POLL + Duration::from_secs(1),
            "ingest-{} refused the revoked certificate only after {took:?}",
            i + 1
        );
        assert!(
            answered.json["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("revoked"),
            "{}",
            answered.text
        );
    }
    // New handshakes are refused by each ingest, and through HAProxy.
    for c in [
        ha.direct(1, &alice),
        ha.direct(2, &alice),
        ha.through(&alice),
    ] {
        assert_submit_refused_in_handshake(&c, "CertificateRevoked").await;
    }
    // Bob is unaffected on both.
    for c in [ha.direct(1, &bob), ha.direct(2, &bob)] {
        let a = c.submit(&message("+14155550123", "bob")).await.unwrap();
        assert_eq!(a.status, 202, "{}", a.text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_accepted_by_one_ingest_is_found_through_the_other() {
    let ha = Ha::start(StackOptions::default()).await;
    let alice = ha.issue("alice");
    let carol = ha.issue("carol");
    let clients = [ha.direct(1, &alice), ha.direct(2, &alice)];
    let mut ids = Vec::new();
    for (took, looks) in [(0, 1), (1, 0)] {
        let a = clients[took]
            .submit(&message("+14155550123", "where is it"))
            .await
            .unwrap();
        assert_eq!(a.status, 202, "{}", a.text);
        let id = a.json["message_id"].as_str().unwrap().to_owned();
        let st = clients[looks]
            .get(&format!("/api/v1/messages/{id}"))
            .await
            .unwrap();
        assert_eq!(
            st.status,
            200,
            "ingest-{} does not find what ingest-{} took: {}",
            looks + 1,
            took + 1,
            st.text
        );
        assert_eq!(st.json["message_id"], id.as_str());
        ids.push(id);
    }
    // Once delivered, the other ingest reports that too (from the store), and HAProxy's
    // either ingest does.
    for id in &ids {
        let path = format!("/api/v1/messages/{id}");
        for c in clients.iter().chain([&ha.through(&alice)]) {
            eventually(Duration::from_secs(20), "status delivered", || async {
                let st = c.get(&path).await.ok()?;
                (st.json["status"] == "delivered").then_some(())
            })
            .await;
        }
        // Another client of the same domain does not see it, on either ingest.
        for i in [1, 2] {
            let st = ha.direct(i, &carol).get(&path).await.unwrap();
            assert_eq!(st.status, 404, "{}", st.text);
        }
    }
}

/// Concurrent client connections of the load.
const CONNECTIONS: usize = 16;
/// Messages per second offered by all of them together.
const RATE: u64 = 150;

/// How ingest-2 fails under load.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Failure {
    /// SIGKILL: the process is gone, connections to its port are refused.
    Kill,
    /// SIGSTOP: the process hangs; the kernel still accepts connections, nothing answers.
    Hang,
}

/// Loads both ingests through HAProxy, fails ingest-2 after 3 s, and checks: HAProxy marks it
/// down, sends it no new connection once it has, no request fails after that, and every
/// acknowledged message is exactly one delivered row.
async fn fail_ingest_2_under_load(failure: Failure) {
    let mut ha = Ha::start(StackOptions::default()).await;
    let loader = ha.issue("loader");
    let load_for = Duration::from_secs(8);
    let running = load::start(
        (0..CONNECTIONS).map(|_| ha.through(&loader)).collect(),
        &Load {
            rate: RATE,
            duration: load_for,
            settle_grace: Duration::from_secs(20),
            attempt_timeout: Duration::from_secs(5),
            retry_pause: Duration::from_millis(100),
            tag: "ha",
        },
    );
    let started = running.started;

    tokio::time::sleep_until((started + Duration::from_secs(3)).into()).await;
    let before = ha.haproxy.server("ingest-2").await;
    assert!(
        before.sessions > 0,
        "HAProxy gave ingest-2 no connection before it failed: {before:?}"
    );
    match failure {
        Failure::Kill => ha.second.kill(),
        Failure::Hang => ha.second.signal("STOP"),
    }
    let failed_at = Instant::now();
    // Killed: the first refused connections mark it down. Hung: two health checks time out
    // (`timeout check` 2 s).
    let down = ha
        .haproxy
        .wait_server("ingest-2", Duration::from_secs(8), |s| s.status == "DOWN")
        .await;
    let noticed_at = Instant::now();
    eprintln!(
        "ingest-2 {failure:?}: HAProxy marked it down after {:?} ({down:?})",
        noticed_at - failed_at
    );

    // From now on HAProxy sends nothing to it: fresh connections all succeed at the first
    // attempt, and none of them is even tried on ingest-2.
    let dead_sessions = ha.haproxy.server("ingest-2").await.sessions;
    let probe = ha.issue("probe");
    let mut probed = Vec::new();
    for i in 0..20 {
        let a = ha
            .through(&probe)
            .submit(&message("+14155550199", &format!("after the failure {i}")))
            .await
            .expect("HAProxy answers after marking ingest-2 down");
        assert_eq!(a.status, 202, "{}", a.text);
        probed.push(a.json["message_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        ha.haproxy.server("ingest-2").await.sessions,
        dead_sessions,
        "HAProxy still sent connections to the failed ingest"
    );
    if failure == Failure::Kill {
        // The health checks agree: nothing listens there.
        ha.haproxy
            .wait_server("ingest-2", Duration::from_secs(5), |s| {
                s.status == "DOWN" && s.check.contains("L4CON")
            })
            .await;
    }

    let books = running.finish().await;
    let acked = books.acked_ids();
    let acked_after = books.acked.iter().filter(|(t, _)| *t > failed_at).count();
    let late_unknown = books
        .unknown
        .iter()
        .filter(|t| **t > noticed_at + Duration::from_millis(500))
        .count();
    eprintln!(
        "{}",
        serde_json::json!({
            "failure": format!("{failure:?}"),
            "acknowledged": acked.len(),
            "acknowledged_after_failure": acked_after,
            "unknown_attempts": books.unknown.len(),
            "unknown_after_down": late_unknown,
            "refused": books.refused,
            "unsettled": books.unsettled,
            "down_after_ms": (noticed_at - failed_at).as_millis(),
        })
    );
    assert_eq!(
        (books.refused, books.unsettled),
        (0, 0),
        "every request is answered"
    );
    assert!(
        acked_after > 100,
        "the load went on after the failure: {acked_after}"
    );
    assert_eq!(
        late_unknown, 0,
        "requests failed after HAProxy had marked ingest-2 down"
    );

    if failure == Failure::Hang {
        // Woken up, it may still answer what it had read (requests the clients repeated
        // elsewhere under the same key); two passing checks take it back.
        ha.second.signal("CONT");
        ha.haproxy
            .wait_server("ingest-2", Duration::from_secs(8), |s| {
                s.status == "UP" && s.check.starts_with("L7OK")
            })
            .await;
    }

    // Every acknowledged message (and each probe) is exactly one delivered row.
    let mut all = acked;
    all.extend(probed);
    ha.stack
        .wait_delivered(all.len() as u64, Duration::from_secs(30))
        .await;
    eventually(Duration::from_secs(10), "the stream to drain", || async {
        (ha.stack.stream_state().await == (0, 0)).then_some(())
    })
    .await;
    assert_exactly_once(&ha.stack.db, &all).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_one_ingest_under_load_loses_no_acknowledged_message_and_haproxy_routes_around_it()
{
    fail_ingest_2_under_load(Failure::Kill).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_ingest_is_taken_out_by_the_health_check_and_loses_no_acknowledged_message() {
    fail_ingest_2_under_load(Failure::Hang).await;
}
