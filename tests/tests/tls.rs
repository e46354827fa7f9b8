//! Who may connect: only clients with a certificate from our CA whose CN names a configured
//! domain.

use mb_e2e::client::{ApiClient, assert_submit_refused_in_handshake, message};
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
    assert_submit_refused_in_handshake(&anonymous, "CertificateRequired").await;

    // A complete second CA with a client certificate that looks right but is signed elsewhere.
    let other = tempfile::tempdir().unwrap();
    let foreign_ca = mb_pki::ca::Ca::create(
        &other.path().join("ca.crt"),
        &other.path().join("ca.key"),
        "mallory's certificate authority",
    )
    .unwrap();
    foreign_ca
        .issue("mallory.example.com", mb_pki::ca::Profile::Client, 30)
        .unwrap()
        .write(other.path(), "mallory")
        .unwrap();
    let foreign = ApiClient::new(
        &stack.ingest_url(),
        &ca,
        Some((
            &other.path().join("mallory.crt"),
            &other.path().join("mallory.key"),
        )),
    );
    assert_submit_refused_in_handshake(&foreign, "UnknownCA").await;
    // A CA that copies our CA's name: found as the issuer, but the signature does not verify.
    let impostor = mb_pki::ca::Ca::create(
        &other.path().join("impostor.crt"),
        &other.path().join("impostor.key"),
        "mb certificate authority",
    )
    .unwrap();
    impostor
        .issue("eve.example.com", mb_pki::ca::Profile::Client, 30)
        .unwrap()
        .write(other.path(), "eve")
        .unwrap();
    let eve = ApiClient::new(
        &stack.ingest_url(),
        &ca,
        Some((&other.path().join("eve.crt"), &other.path().join("eve.key"))),
    );
    assert_submit_refused_in_handshake(&eve, "DecryptError").await;

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

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_that_repeats_the_ca_after_the_leaf_is_accepted_from_any_client() {
    // What OpenSSL clients send, here from rustls, so the rule is tested apart from curl.
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        other_org_own_ca: true,
        ..Default::default()
    })
    .await;
    let h = stack.home().to_path_buf();
    let chained = |name: &str, domain: &str, ca: &std::path::Path| {
        let (crt, key) = stack.issue_client(name, domain);
        let both = h.join(format!("{name}-chain.crt"));
        std::fs::write(
            &both,
            std::fs::read_to_string(&crt).unwrap() + &std::fs::read_to_string(ca).unwrap(),
        )
        .unwrap();
        stack.client_with(&stack.ingest_url(), &both, &key)
    };
    let main = chained("alice", "example.com", &h.join("certs/ca.crt"));
    let ans = main
        .submit(&message("+14155550123", "leaf + CA"))
        .await
        .unwrap();
    assert_eq!(ans.status, 202, "{:?}", ans.json);
    let own = chained("olga", "other.org", &h.join("certs/domains/other.org.crt"));
    let ans = own
        .submit(&message("+14155550123", "leaf + domain CA"))
        .await
        .unwrap();
    assert_eq!(ans.status, 202, "{:?}", ans.json);
    assert_eq!(ans.json["domain"], "other.org");
}
