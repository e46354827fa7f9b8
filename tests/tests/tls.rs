//! Who may connect: only clients with a certificate from our CA whose CN names a configured
//! domain.

use mb_e2e::client::{ApiClient, message};
use mb_e2e::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread")]
async fn handshake_without_certificate_or_from_another_ca_is_refused() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let ca = stack.home().join("certs/ca.crt");
    let msg = message("+14155550123", "hi");

    let anonymous = ApiClient::new(&stack.ingest_url(), &ca, None);
    let err = anonymous
        .submit(&msg)
        .await
        .expect_err("no client certificate must be refused");
    assert!(!err.is_empty());

    // A complete second CA with a client certificate that looks right but is signed elsewhere.
    let other = tempfile::tempdir().unwrap();
    let mbctl = mb_e2e::binary("mbctl");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&mbctl)
            .arg("--home")
            .arg(other.path())
            .args(args)
            .env_remove("MB_MYSQL_URL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["init"]);
    run(&[
        "cert",
        "issue",
        "mallory",
        "--domain",
        "example.com",
        "--offline",
    ]);
    let dir = other.path().join("certs/clients");
    let foreign = ApiClient::new(
        &stack.ingest_url(),
        &ca,
        Some((&dir.join("mallory.crt"), &dir.join("mallory.key"))),
    );
    assert!(
        foreign.submit(&msg).await.is_err(),
        "a certificate from another CA must be refused"
    );

    assert_eq!(stack.stream_state().await.0, 0);
    let ok = stack.client("alice").submit(&msg).await.unwrap();
    assert_eq!(ok.status, 202, "our own client still gets in");
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_of_unknown_domain_or_service_or_wrong_host_is_forbidden() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let ca = stack.home().join("certs/ca.crt");
    let msg = message("+14155550123", "hi");

    let (c, k) = stack.issue_client("eve", "unknown.net");
    let unknown = ApiClient::new(&stack.ingest_url(), &ca, Some((&c, &k)));
    let ans = unknown.submit(&msg).await.unwrap();
    assert_eq!(ans.status, 403, "{:?}", ans.json);

    let tls = stack.service_tls("deliver");
    let service = ApiClient::new(&stack.ingest_url(), &ca, Some((&tls.cert, &tls.key)));
    assert_eq!(service.submit(&msg).await.unwrap().status, 403);

    let alice = stack.client("alice");
    let wrong_host = alice
        .submit_raw(
            &msg.to_string(),
            &[("content-type", "application/json"), ("host", "other.org")],
        )
        .await
        .unwrap();
    assert_eq!(
        wrong_host.status, 403,
        "Host names another configured domain: {:?}",
        wrong_host.json
    );
    let right_host = alice
        .submit_raw(
            &msg.to_string(),
            &[
                ("content-type", "application/json"),
                ("host", "example.com"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(right_host.status, 202);
    assert_eq!(
        stack.stream_state().await.0,
        1,
        "only the allowed submission was enqueued"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificate_cannot_call_the_store_internal_api() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let (c, k) = stack.issue_client("alice", "example.com");
    let store = ApiClient::new(
        &format!("https://localhost:{}", stack.store_port),
        &stack.home().join("certs/ca.crt"),
        Some((&c, &k)),
    );
    let ans = store
        .request(
            hyper::Method::POST,
            mb_shared::internal::DELIVER_PATH,
            &[("content-type", "application/json")],
            r#"{"messages":[]}"#,
        )
        .await
        .unwrap();
    assert_eq!(ans.status, 403, "{:?}", ans.json);
    let tls = stack.service_tls("deliver");
    let deliver = ApiClient::new(
        &format!("https://localhost:{}", stack.store_port),
        &tls.ca,
        Some((&tls.cert, &tls.key)),
    );
    let ok = deliver
        .request(
            hyper::Method::POST,
            mb_shared::internal::DELIVER_PATH,
            &[("content-type", "application/json")],
            r#"{"messages":[]}"#,
        )
        .await
        .unwrap();
    assert_eq!(
        ok.status, 200,
        "the deliver service certificate is allowed: {:?}",
        ok.json
    );
}
