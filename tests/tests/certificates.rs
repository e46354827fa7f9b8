//! The certificate lifecycle and access control: issue (CLI and admin API), live revocation and
//! disabling, renewal, expiry, audit, and per-client rate limits across ingest instances.

use mb_e2e::client::{ApiClient, assert_submit_refused_in_handshake, message};
use mb_e2e::{Stack, StackOptions, eventually};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn no_deliver() -> StackOptions {
    StackOptions {
        start_deliver: false,
        ..Default::default()
    }
}

/// Writes a PEM certificate and key returned by the admin API to files.
fn save(dir: &std::path::Path, name: &str, json: &serde_json::Value) -> (PathBuf, PathBuf) {
    let crt = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&crt, json["certificate"].as_str().unwrap()).unwrap();
    mb_shared::secret::write_private_file(&key, json["private_key"].as_str().unwrap().as_bytes())
        .unwrap();
    (crt, key)
}

fn admin_client(stack: &Stack) -> ApiClient {
    let dir = stack.home().join("admins");
    let out = stack.mbctl(&[
        "cert",
        "issue",
        "root",
        "--domain",
        "example.com",
        "--admin",
        "--out",
        &dir.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stack.client_with(
        &format!("https://localhost:{}", stack.store_port),
        &dir.join("root.crt"),
        &dir.join("root.key"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_from_mbctl_and_the_admin_api_both_submit_and_are_listed_and_audited() {
    let stack = Stack::start(no_deliver()).await;
    let cli_client = stack.client("alice");
    assert_eq!(
        cli_client
            .submit(&message("+14155550123", "hi"))
            .await
            .unwrap()
            .status,
        202
    );

    let admin = admin_client(&stack);
    let issued = admin
        .request(
            hyper::Method::POST,
            "/admin/certificates",
            &[("content-type", "application/json")],
            r#"{"name": "apiclient", "domain": "example.com", "days": 30}"#,
        )
        .await
        .unwrap();
    assert_eq!(issued.status, 201, "{:?}", issued.json);
    assert_eq!(issued.json["common_name"], "apiclient.example.com");
    let (crt, key) = save(stack.home(), "apiclient", &issued.json);
    let api_client = stack.client_with(&stack.ingest_url(), &crt, &key);
    assert_eq!(
        api_client
            .submit(&message("+14155550123", "hi"))
            .await
            .unwrap()
            .status,
        202
    );

    // A plain client certificate is not an administrator.
    let (c, k) = stack.issue_client("mallory", "example.com");
    let not_admin = stack.client_with(&format!("https://localhost:{}", stack.store_port), &c, &k);
    assert_eq!(
        not_admin.get("/admin/certificates").await.unwrap().status,
        403
    );

    let out = stack.mbctl(&["cert", "list"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for cn in [
        "alice.example.com",
        "apiclient.example.com",
        "root.example.com",
    ] {
        let line = listing
            .lines()
            .find(|l| l.starts_with(cn))
            .unwrap_or_else(|| panic!("{cn} not listed: {listing}"));
        assert!(line.contains("active"), "{line}");
    }
    let api_line = listing
        .lines()
        .find(|l| l.starts_with("apiclient.example.com"))
        .unwrap();
    assert!(
        api_line.trim_end().ends_with("29") || api_line.trim_end().ends_with("30"),
        "days left: {api_line}"
    );
    let listed = admin.get("/admin/certificates").await.unwrap();
    assert!(
        listed
            .json
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["common_name"] == "apiclient.example.com")
    );

    // A revoked administrator loses the admin API at once.
    assert!(
        stack
            .mbctl(&["cert", "revoke", "root", "--domain", "example.com"])
            .status
            .success()
    );
    assert_eq!(admin.get("/admin/certificates").await.unwrap().status, 403);

    let audit: Vec<(String, String, String)> = stack
        .db
        .query("SELECT actor, action, target FROM audit_log ORDER BY id")
        .await;
    assert!(audit.iter().any(|(a, act, t)| a.starts_with("mbctl:")
        && act == "cert.issue"
        && t == "alice.example.com"));
    assert!(audit.iter().any(|(a, act, t)| a == "admin:root.example.com"
        && act == "cert.issue"
        && t == "apiclient.example.com"));
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_certificate_is_refused_within_two_seconds_on_new_and_open_connections() {
    let mut stack = Stack::start(no_deliver()).await;
    let (c, k) = stack.issue_client("alice", "example.com");
    let alice = stack.client_with(&stack.ingest_url(), &c, &k);
    let bob = stack.client("bob");
    // Opens a keep-alive connection that stays in alice's pool.
    assert_eq!(
        alice
            .submit(&message("+14155550123", "before"))
            .await
            .unwrap()
            .status,
        202
    );
    let ingest_pid = stack.ingest.pid();

    let out = stack.mbctl(&["cert", "revoke", "alice", "--domain", "example.com"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked_at = Instant::now();
    // On the connection opened before the revocation: 403 (a new handshake would not answer).
    let answered = eventually(Duration::from_secs(3), "403 on the open connection", || {
        let alice = alice.clone();
        async move {
            let a = alice.submit(&message("+14155550123", "after")).await.ok()?;
            (a.status == 403).then_some(a)
        }
    })
    .await;
    let took = revoked_at.elapsed();
    assert!(took <= Duration::from_secs(2), "revocation took {took:?}");
    assert!(
        answered.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    // A new handshake with the revoked certificate is refused.
    let fresh = stack.client_with(&stack.ingest_url(), &c, &k);
    assert_submit_refused_in_handshake(&fresh, "CertificateRevoked").await;
    // Others are unaffected, and ingest was not restarted.
    assert_eq!(
        bob.submit(&message("+14155550123", "bob"))
            .await
            .unwrap()
            .status,
        202
    );
    assert!(stack.ingest.is_running() && stack.ingest.pid() == ingest_pid);

    // The store publishes the CRL.
    let (bc, bk) = stack.issue_client("carol", "example.com");
    let store = stack.client_with(&format!("https://localhost:{}", stack.store_port), &bc, &bk);
    let crl = store
        .request(hyper::Method::GET, "/crl", &[], "")
        .await
        .unwrap();
    assert_eq!(crl.status, 200);
    let audit: Vec<(String, String)> = stack
        .db
        .query("SELECT action, target FROM audit_log WHERE action = 'cert.revoke'")
        .await;
    assert_eq!(
        audit,
        [("cert.revoke".to_owned(), "alice.example.com".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_client_is_refused_and_enabled_again_without_restart() {
    let stack = Stack::start(no_deliver()).await;
    let alice = stack.client("alice");
    assert_eq!(
        alice
            .submit(&message("+14155550123", "1"))
            .await
            .unwrap()
            .status,
        202
    );
    assert!(
        stack
            .mbctl(&["cert", "disable", "alice", "--domain", "example.com"])
            .status
            .success()
    );
    eventually(Duration::from_secs(3), "disabled client refused", || {
        let alice = alice.clone();
        async move {
            (alice
                .submit(&message("+14155550123", "2"))
                .await
                .ok()?
                .status
                == 403)
                .then_some(())
        }
    })
    .await;
    assert!(
        stack
            .mbctl(&["cert", "enable", "alice", "--domain", "example.com"])
            .status
            .success()
    );
    eventually(Duration::from_secs(3), "enabled client accepted", || {
        let alice = alice.clone();
        async move {
            (alice
                .submit(&message("+14155550123", "3"))
                .await
                .ok()?
                .status
                == 202)
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn renewed_and_old_certificates_both_work_and_an_expired_one_is_refused() {
    let stack = Stack::start(no_deliver()).await;
    let (old_c, old_k) = stack.issue_client("alice", "example.com");
    let renewed_dir = stack.home().join("renewed");
    let out = stack.mbctl(&[
        "cert",
        "renew",
        "alice",
        "--domain",
        "example.com",
        "--out",
        &renewed_dir.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old = stack.client_with(&stack.ingest_url(), &old_c, &old_k);
    let new = stack.client_with(
        &stack.ingest_url(),
        &renewed_dir.join("alice.crt"),
        &renewed_dir.join("alice.key"),
    );
    assert_eq!(
        old.submit(&message("+14155550123", "old"))
            .await
            .unwrap()
            .status,
        202
    );
    assert_eq!(
        new.submit(&message("+14155550123", "new"))
            .await
            .unwrap()
            .status,
        202
    );
    let active = stack
        .db
        .count("SELECT COUNT(*) FROM clients WHERE common_name = 'alice.example.com' AND status = 'active'")
        .await;
    assert_eq!(active, 2);

    // An expired certificate from our own CA.
    let ca = mb_pki::ca::Ca::load(
        &stack.home().join("certs/ca.crt"),
        &stack.home().join("secrets/ca.key"),
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let expired = ca
        .issue_valid(
            "late.example.com",
            mb_pki::ca::Profile::Client,
            now - time::Duration::days(10),
            now - time::Duration::days(1),
        )
        .unwrap();
    let dir = stack.home().join("expired");
    expired.write(&dir, "late").unwrap();
    let late = stack.client_with(
        &stack.ingest_url(),
        &dir.join("late.crt"),
        &dir.join("late.key"),
    );
    assert_submit_refused_in_handshake(&late, "CertificateExpired").await;
    assert_eq!(stack.stream_state().await.0, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_holds_across_two_ingest_instances_and_spares_other_clients() {
    const LIMIT: f64 = 40.0;
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        rate_limit: Some("{max_requests: 40, window_seconds: 1}"),
        ..Default::default()
    })
    .await;
    let (_second, port2) = stack.start_extra_ingest("ingest-2").await;
    let (c, k) = stack.issue_client("greedy", "example.com");
    let a = stack.client_with(&stack.ingest_url(), &c, &k);
    let b = stack.client_with(&format!("https://localhost:{port2}"), &c, &k);
    let polite = stack.client("polite");

    let started = Instant::now();
    let run_for = Duration::from_secs(5);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut limited = 0;
            while started.elapsed() < run_for {
                let ans = client
                    .submit(&message("+14155550123", "flood"))
                    .await
                    .unwrap();
                match ans.status.as_u16() {
                    202 => accepted.push(started.elapsed()),
                    429 => {
                        assert!(ans.headers.contains_key("retry-after"));
                        assert_eq!(ans.json["error"]["code"], "rate_limited");
                        limited += 1;
                    }
                    s => panic!("unexpected {s}: {:?}", ans.json),
                }
            }
            (accepted, limited)
        }));
    }
    // Another client, meanwhile, is served promptly.
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(
            polite
                .submit(&message("+14155550123", "polite"))
                .await
                .unwrap()
                .status,
            202
        );
        assert!(t.elapsed() < Duration::from_millis(500));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut accepted = Vec::new();
    let mut limited = 0;
    for t in tasks {
        let (acc, lim) = t.await.unwrap();
        accepted.extend(acc);
        limited += lim;
    }
    assert!(limited > 0, "the flood must be limited");
    // Steady state, after the initial burst allowance: from 1 s to 5 s.
    let window = (Duration::from_secs(1), run_for);
    let in_window = accepted
        .iter()
        .filter(|t| **t >= window.0 && **t < window.1)
        .count() as f64;
    let rate = in_window / (window.1 - window.0).as_secs_f64();
    assert!(
        (rate - LIMIT).abs() <= LIMIT * 0.05,
        "combined rate {rate:.1}/s, limit {LIMIT}/s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_started_while_the_store_is_down_admits_nobody_until_it_knows_the_revocations() {
    let mut stack = Stack::start(no_deliver()).await;
    let alice = stack.client("alice");
    stack.store.stop();
    stack.ingest.stop();
    stack.ingest.start();
    let ingest_port = stack.ingest_port;
    let c = alice.clone();
    let refused = eventually(Duration::from_secs(20), "ingest to answer", || {
        let c = c.clone();
        async move { c.submit(&message("+14155550123", "early")).await.ok() }
    })
    .await;
    assert_eq!(refused.status, 503, "{:?}", refused.json);
    assert_eq!(refused.json["error"]["code"], "starting");
    stack.start_store().await;
    stack.wait_ingest_ready(ingest_port).await;
    assert_eq!(
        alice
            .submit(&message("+14155550123", "later"))
            .await
            .unwrap()
            .status,
        202
    );
    assert_eq!(stack.stream_state().await.0, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_domain_with_its_own_ca_takes_certificates_from_that_ca_only() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        other_org_own_ca: true,
        ..Default::default()
    })
    .await;
    let h = stack.home().to_path_buf();
    let (c, k) = stack.issue_client("alice", "other.org");
    let alice = stack.client_with(&stack.ingest_url(), &c, &k);
    let ok = alice
        .submit(&message("+14155550123", "own CA"))
        .await
        .unwrap();
    assert_eq!(ok.status, 202, "{:?}", ok.json);
    assert_eq!(ok.json["domain"], "other.org");
    assert_eq!(
        stack
            .client("bob")
            .submit(&message("+14155550123", "main CA"))
            .await
            .unwrap()
            .status,
        202
    );

    let issue = |ca: &mb_pki::ca::Ca, cn: &str, name: &str| {
        let dir = h.join("rogue");
        ca.issue(cn, mb_pki::ca::Profile::Client, 30)
            .unwrap()
            .write(&dir, name)
            .unwrap();
        stack.client_with(
            &stack.ingest_url(),
            &dir.join(format!("{name}.crt")),
            &dir.join(format!("{name}.key")),
        )
    };
    let main_ca = mb_pki::ca::Ca::load(&h.join("certs/ca.crt"), &h.join("secrets/ca.key")).unwrap();
    let domain_ca = mb_pki::ca::Ca::load(
        &h.join("certs/domains/other.org.crt"),
        &h.join("secrets/domains/other.org.key"),
    )
    .unwrap();
    let eve = issue(&main_ca, "eve.other.org", "eve");
    assert_eq!(
        eve.submit(&message("+14155550123", "x"))
            .await
            .unwrap()
            .status,
        403,
        "main CA for other.org"
    );
    let mallory = issue(&domain_ca, "mallory.example.com", "mallory");
    assert_eq!(
        mallory
            .submit(&message("+14155550123", "x"))
            .await
            .unwrap()
            .status,
        403,
        "other.org's CA for example.com"
    );

    // Administrators of that domain still get certificates the store accepts (the broker's CA).
    let dir = h.join("admins");
    let out = stack.mbctl(&[
        "cert",
        "issue",
        "ops",
        "--domain",
        "other.org",
        "--admin",
        "--out",
        &dir.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = stack.client_with(
        &format!("https://localhost:{}", stack.store_port),
        &dir.join("ops.crt"),
        &dir.join("ops.key"),
    );
    assert_eq!(admin.get("/admin/certificates").await.unwrap().status, 200);

    // Revocation covers the domain CA's certificates too, at the handshake.
    assert!(
        stack
            .mbctl(&["cert", "revoke", "alice", "--domain", "other.org"])
            .status
            .success()
    );
    eventually(Duration::from_secs(3), "new handshakes refused", || async {
        let fresh = stack.client_with(&stack.ingest_url(), &c, &k);
        let res = fresh.submit(&message("+14155550123", "x")).await;
        res.is_err().then_some(())
    })
    .await;
    let fresh = stack.client_with(&stack.ingest_url(), &c, &k);
    assert_submit_refused_in_handshake(&fresh, "CertificateRevoked").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_chain_with_an_intermediate_ca_is_refused() {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let stack = Stack::start(no_deliver()).await;
    let h = stack.home().to_path_buf();
    // Someone holding a CA key mints an intermediate and signs a client below it.
    let root_key =
        KeyPair::from_pem(&std::fs::read_to_string(h.join("secrets/ca.key")).unwrap()).unwrap();
    let root = Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(h.join("certs/ca.crt")).unwrap(),
        root_key,
    )
    .unwrap();
    let mut inter_params = CertificateParams::default();
    inter_params
        .distinguished_name
        .push(DnType::CommonName, "sneaky intermediate");
    inter_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    inter_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let inter_key = KeyPair::generate().unwrap();
    let inter_cert = inter_params.signed_by(&inter_key, &root).unwrap();
    let inter = Issuer::new(inter_params, inter_key);
    let mut leaf_params = CertificateParams::default();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "eve.example.com");
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &inter).unwrap();
    let crt = h.join("eve-chain.crt");
    let key = h.join("eve-chain.key");
    std::fs::write(&crt, format!("{}{}", leaf.pem(), inter_cert.pem())).unwrap();
    mb_shared::secret::write_private_file(&key, leaf_key.serialize_pem().as_bytes()).unwrap();

    let eve = stack.client_with(&stack.ingest_url(), &crt, &key);
    // The chain verifies (the intermediate is signed by our CA), so the handshake succeeds;
    // the listener's rule refuses it: extra certificates must be one of our CAs, byte for byte.
    let ans = eve
        .submit(&message("+14155550123", "through the back door"))
        .await
        .unwrap();
    assert_eq!(ans.status, 403, "{:?}", ans.json);
    assert!(
        ans.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("intermediate CAs are not accepted"),
        "{:?}",
        ans.json
    );
    assert_eq!(
        stack.stream_state().await.0,
        0,
        "nothing from the intermediate's client is enqueued"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_signed_with_the_ca_key_but_never_recorded_is_refused() {
    let stack = Stack::start(no_deliver()).await;
    let h = stack.home().to_path_buf();
    let ca = mb_pki::ca::Ca::load(&h.join("certs/ca.crt"), &h.join("secrets/ca.key")).unwrap();
    ca.issue("ghost.example.com", mb_pki::ca::Profile::Client, 30)
        .unwrap()
        .write(&h, "ghost")
        .unwrap();
    let ghost = stack.client_with(
        &stack.ingest_url(),
        &h.join("ghost.crt"),
        &h.join("ghost.key"),
    );
    let ans = ghost.submit(&message("+14155550123", "x")).await.unwrap();
    assert_eq!(ans.status, 403, "{:?}", ans.json);
    assert!(
        ans.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not issued to a client of this broker"),
        "{:?}",
        ans.json
    );
    // mbctl has no way left to sign without recording.
    let out = stack.mbctl(&["cert", "issue", "x", "--domain", "example.com", "--offline"]);
    assert!(!out.status.success());
    assert_eq!(stack.stream_state().await.0, 0);
}

/// Issues an administrator certificate (`--admin` or `--superadmin`) and returns a client of
/// the store's /admin API with it.
fn admin_of(stack: &Stack, name: &str, domain: &str, flag: &str) -> ApiClient {
    let dir = stack.home().join("admins");
    let out = stack.mbctl(&[
        "cert",
        "issue",
        name,
        "--domain",
        domain,
        flag,
        "--out",
        &dir.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stack.client_with(
        &format!("https://localhost:{}", stack.store_port),
        &dir.join(format!("{name}.crt")),
        &dir.join(format!("{name}.key")),
    )
}

async fn post(c: &ApiClient, path: &str, body: serde_json::Value) -> mb_e2e::client::Answer {
    c.request(
        hyper::Method::POST,
        path,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn administrators_are_scoped_to_their_domain_and_cannot_submit() {
    let stack = Stack::start(no_deliver()).await;
    let (_, _) = stack.issue_client("alice", "example.com");
    let (_, _) = stack.issue_client("olga", "other.org");
    let admin = admin_of(&stack, "root", "example.com", "--admin");
    let superadmin = admin_of(&stack, "boss", "other.org", "--superadmin");
    // A superadmin whose home domain is the admin's own: still out of the admin's reach.
    let _chief = admin_of(&stack, "chief", "example.com", "--superadmin");

    // Listing: own domain only, or everything.
    let names = |a: &mb_e2e::client::Answer| -> Vec<String> {
        a.json
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["common_name"].as_str().unwrap().to_owned())
            .collect()
    };
    let mine = admin.get("/admin/certificates").await.unwrap();
    assert_eq!(mine.status, 200);
    assert!(names(&mine).contains(&"alice.example.com".to_owned()));
    assert!(
        !names(&mine).contains(&"chief.example.com".to_owned()),
        "a domain admin does not see superadmin certificates"
    );
    for (path, body) in [
        (
            "/admin/certificates/revoke",
            serde_json::json!({"name": "chief", "domain": "example.com"}),
        ),
        (
            "/admin/clients/disable",
            serde_json::json!({"name": "chief", "domain": "example.com"}),
        ),
        (
            "/admin/certificates/renew",
            serde_json::json!({"name": "chief", "domain": "example.com"}),
        ),
    ] {
        let a = post(&admin, path, body).await;
        assert!(
            [403, 404].contains(&a.status.as_u16()),
            "{path} on a superadmin: {} {:?}",
            a.status,
            a.json
        );
    }
    assert_eq!(
        stack
            .db
            .count("SELECT COUNT(*) FROM clients WHERE common_name = 'chief.example.com' AND status = 'active'")
            .await,
        1
    );
    assert!(
        !names(&mine).iter().any(|n| n.ends_with("other.org")),
        "{:?}",
        names(&mine)
    );
    let all = superadmin.get("/admin/certificates").await.unwrap();
    assert!(names(&all).contains(&"olga.other.org".to_owned()));

    // Another domain's certificates are out of reach: issue, revoke (by name or serial), disable.
    let a = post(
        &admin,
        "/admin/certificates",
        serde_json::json!({"name": "x", "domain": "other.org"}),
    )
    .await;
    assert_eq!(a.status, 404, "{:?}", a.json);
    let a = post(
        &admin,
        "/admin/certificates/revoke",
        serde_json::json!({"name": "olga", "domain": "other.org"}),
    )
    .await;
    assert_eq!(a.status, 404, "{:?}", a.json);
    let olga_serial = all
        .json
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["common_name"] == "olga.other.org")
        .unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = post(
        &admin,
        "/admin/certificates/revoke",
        serde_json::json!({"serial": olga_serial}),
    )
    .await;
    assert_eq!(a.status, 404, "{:?}", a.json);
    let a = post(
        &admin,
        "/admin/clients/disable",
        serde_json::json!({"name": "olga", "domain": "other.org"}),
    )
    .await;
    assert_eq!(a.status, 404, "{:?}", a.json);
    assert_eq!(
        stack
            .db
            .count("SELECT COUNT(*) FROM clients WHERE common_name = 'olga.other.org' AND status = 'active'")
            .await,
        1
    );
    // A domain admin cannot mint a superadmin; its own domain's work goes through.
    let a = post(
        &admin,
        "/admin/certificates",
        serde_json::json!({"name": "up", "domain": "example.com", "kind": "superadmin"}),
    )
    .await;
    assert_eq!(a.status, 403, "{:?}", a.json);
    let a = post(
        &admin,
        "/admin/certificates",
        serde_json::json!({"name": "bob", "domain": "example.com"}),
    )
    .await;
    assert_eq!(a.status, 201, "{:?}", a.json);
    // The superadmin reaches every domain.
    let a = post(
        &superadmin,
        "/admin/certificates/revoke",
        serde_json::json!({"serial": olga_serial}),
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.json);

    // Administrator certificates are not senders.
    let dir = stack.home().join("admins");
    let as_sender = stack.client_with(
        &stack.ingest_url(),
        &dir.join("root.crt"),
        &dir.join("root.key"),
    );
    let ans = as_sender
        .submit(&message("+14155550123", "x"))
        .await
        .unwrap();
    assert_eq!(ans.status, 403, "{:?}", ans.json);
    assert!(
        ans.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("administrator")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_refuses_a_validity_outside_1_to_3650_days() {
    let stack = Stack::start(no_deliver()).await;
    stack.issue_client("alice", "example.com");
    for days in ["0", "-5", "100000", "9223372036854775807"] {
        let days_arg = format!("--days={days}");
        let out = stack.mbctl(&[
            "cert",
            "renew",
            "alice",
            "--domain",
            "example.com",
            &days_arg,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--days {days} was accepted");
        assert!(err.contains("1 to 3650"), "--days {days}: {err}");
    }
    let admin = admin_of(&stack, "root", "example.com", "--admin");
    for days in [
        serde_json::json!(-1),
        serde_json::json!(0),
        serde_json::json!(4000),
    ] {
        let a = post(
            &admin,
            "/admin/certificates/renew",
            serde_json::json!({"name": "alice", "domain": "example.com", "days": days}),
        )
        .await;
        assert_eq!(a.status, 422, "days {days}: {:?}", a.json);
    }
    // A number no integer holds is a 422 naming the field, and the connection survives it.
    let a = admin
        .request(
            hyper::Method::POST,
            "/admin/certificates/renew",
            &[("content-type", "application/json")],
            r#"{"name": "alice", "domain": "example.com", "days": 1e300}"#,
        )
        .await
        .unwrap();
    assert_eq!(a.status, 422, "{:?}", a.json);
    assert!(
        a.json["error"]["fields"]["days"].is_string(),
        "{:?}",
        a.json
    );
    assert_eq!(admin.get("/admin/certificates").await.unwrap().status, 200);
    assert_eq!(
        stack
            .db
            .count("SELECT COUNT(*) FROM clients WHERE common_name = 'alice.example.com'")
            .await,
        1,
        "nothing was issued"
    );
}

/// Found by schemathesis: a serial with a character outside ASCII made MariaDB refuse the
/// comparison with the ASCII `serial` column (error 1267), which the store answered 503
/// "database unavailable" (with `Retry-After`, so clients would retry it for ever). No
/// certificate has such a serial: it is a 404, and the database is not asked.
#[tokio::test(flavor = "multi_thread")]
async fn a_serial_that_is_not_ascii_selects_no_certificate_rather_than_failing_the_database() {
    let stack = Stack::start(no_deliver()).await;
    stack.issue_client("alice", "example.com");
    let superadmin = admin_of(&stack, "boss", "other.org", "--superadmin");
    for path in [
        "/admin/certificates/revoke",
        "/admin/clients/disable",
        "/admin/clients/enable",
    ] {
        for serial in ["§#", "\u{2f9a6}", "0a\u{e9}"] {
            let a = post(&superadmin, path, serde_json::json!({"serial": serial})).await;
            assert_eq!(a.status, 404, "{path} {serial:?}: {}", a.text);
            assert_eq!(a.json["error"]["code"], "not_found", "{}", a.text);
            assert!(!a.headers.contains_key("retry-after"), "{path}");
        }
    }
    assert!(
        !stack.store.log_text().contains("database error"),
        "{}",
        stack.store.log_text()
    );
    assert_eq!(
        stack
            .db
            .count("SELECT COUNT(*) FROM clients WHERE status = 'active'")
            .await,
        2,
        "nothing was revoked or disabled"
    );
}
