//! A MariaDB read replica for the portal's reads: the store sends `/api` lists and details to
//! it while replication runs within `max_lag`, and to the primary while the replica lags,
//! has replication stopped or is down; writes and the clients' status lookups stay on the
//! primary. To tell which server answered, the tests change a row on the replica alone.

use hyper::Method;
use mb_e2e::client::{Answer, ApiClient, message};
use mb_e2e::{Stack, StackOptions, eventually, metric, scrape, submit_many};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery staple";
const MARK: &str = "changed on the replica only";

struct Portal {
    api: ApiClient,
    token: String,
}

impl Portal {
    async fn sign_in(stack: &Stack) -> Self {
        stack.add_user("root", "superadmin", None, None, PASSWORD);
        let tls = stack.service_tls("portal");
        let api = stack.client_with(
            &format!("https://localhost:{}", stack.store_port),
            &tls.cert,
            &tls.key,
        );
        let body = serde_json::json!({"username": "root", "password": PASSWORD, "client_addr": "192.0.2.7"});
        let a = api
            .request(
                Method::POST,
                "/api/v1/login",
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{}", a.text);
        Self {
            token: a.json["token"].as_str().unwrap().to_owned(),
            api,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        let bearer = format!("Bearer {}", self.token);
        self.api
            .request(Method::GET, path, &[("authorization", &bearer)], "")
            .await
            .unwrap()
    }

    /// Waits until the detail of message `id` shows `want` as `last_error` (a read may go to
    /// the primary for a moment while the store connects to the replica).
    async fn wait_last_error(&self, id: &str, want: Option<&str>, what: &str) {
        eventually(Duration::from_secs(10), what, || async move {
            (self.last_error(id).await.as_deref() == want).then_some(())
        })
        .await;
    }

    /// `last_error` of message `id` as the portal's detail page reads it.
    async fn last_error(&self, id: &str) -> Option<String> {
        let a = self.get(&format!("/api/v1/messages/{id}")).await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.json["last_error"].as_str().map(str::to_owned)
    }
}

async fn replica_in_use(stack: &Stack) -> f64 {
    metric(
        &scrape(stack.store_metrics_port).await,
        "mb_store_replica_in_use",
    )
}

async fn wait_in_use(stack: &Stack, want: f64, what: &str) {
    eventually(Duration::from_secs(20), what, || async move {
        (replica_in_use(stack).await == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn portal_reads_go_to_the_replica_while_it_keeps_up_and_to_the_primary_otherwise() {
    let mut stack = Stack::start(StackOptions {
        read_replica: true,
        ..Default::default()
    })
    .await;
    let client = stack.client("alice");
    let (ids, _) = submit_many(&client, 20, 4).await;
    assert_eq!(ids.len(), 20);
    stack.wait_delivered(20, Duration::from_secs(30)).await;
    let portal = Portal::sign_in(&stack).await;
    wait_in_use(&stack, 1.0, "the store to read from the replica").await;

    // A row changed on the replica alone shows in the portal: the read went there.
    let id = &ids[0];
    let replica = stack.replica.as_ref().unwrap();
    let changed = replica.sql(&format!(
        "UPDATE {db}.messages SET last_error = '{MARK}', status = 'failed' \
         WHERE message_id = '{id}'; SELECT ROW_COUNT()",
        db = stack.db.name
    ));
    assert_eq!(changed, "1", "the replica has the row");
    portal
        .wait_last_error(id, Some(MARK), "the detail to be read from the replica")
        .await;
    let list = portal.get("/api/v1/messages?limit=200").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json["messages"].as_array().unwrap().len(), 20);
    // The client's own status lookup (through ingest) reads the primary: still delivered.
    let status = client.get(&format!("/api/v1/messages/{id}")).await.unwrap();
    assert_eq!(status.status, 200, "{}", status.text);
    assert_eq!(status.json["status"], "delivered", "{}", status.text);

    // Replication stopped: the replica is no longer trusted, reads go to the primary.
    replica.sql("STOP SLAVE SQL_THREAD");
    wait_in_use(&stack, 0.0, "the store to notice replication stopped").await;
    assert_eq!(
        metric(
            &scrape(stack.store_metrics_port).await,
            "mb_store_replica_lag_seconds"
        ),
        -1.0
    );
    assert_eq!(portal.last_error(id).await, None, "read from the primary");
    assert_eq!(replica_in_use(&stack).await, 0.0);
    replica.sql("START SLAVE SQL_THREAD");
    wait_in_use(&stack, 1.0, "the replica to be used again").await;
    portal
        .wait_last_error(id, Some(MARK), "the replica to be read again")
        .await;

    // A replica further behind than max_lag (2 s): deliberately delayed by 6 s, it is not used
    // while a new message waits to be applied, and that message is read from the primary.
    replica.sql("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 6; START SLAVE");
    let late = client
        .submit(&message("+14155550123", "written while the replica lags"))
        .await
        .unwrap();
    assert_eq!(late.status, 202);
    let late_id = late.json["message_id"].as_str().unwrap().to_owned();
    stack.wait_delivered(21, Duration::from_secs(30)).await;
    wait_in_use(&stack, 0.0, "the store to notice the lag").await;
    let lag = metric(
        &scrape(stack.store_metrics_port).await,
        "mb_store_replica_lag_seconds",
    );
    assert!(lag > 2.0 || lag == -1.0, "lag metric {lag}");
    let a = portal.get(&format!("/api/v1/messages/{late_id}")).await;
    assert_eq!(
        a.status, 200,
        "the lagging replica's answer was used: {}",
        a.text
    );
    replica.sql("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE");
    wait_in_use(&stack, 1.0, "the replica to catch up and be used again").await;

    // The replica down: reads fall back to the primary and keep answering.
    stack.replica.as_mut().unwrap().kill();
    eventually(
        Duration::from_secs(20),
        "reads from the primary",
        || async {
            let a = portal.get(&format!("/api/v1/messages/{id}")).await;
            (a.status == 200 && a.json["last_error"].is_null()).then_some(())
        },
    )
    .await;
    for _ in 0..20 {
        let a = portal.get("/api/v1/messages?limit=200").await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.json["messages"].as_array().unwrap().len(), 21);
    }
    assert_eq!(replica_in_use(&stack).await, 0.0);
}
