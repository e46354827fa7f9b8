//! The portal and the store's `/api`, over HTTP as the portal and a browser use them: who sees
//! which messages, what a session token must be, forms and their CSRF tokens, sign-in
//! throttling, what a body can and cannot do to a page, and the indexes the list reads.

use hyper::Method;
use mb_e2e::client::{Answer, ApiClient, message};
use mb_e2e::web::csrf_of;
use mb_e2e::{Stack, StackOptions, eventually};
use std::collections::BTreeSet;
use std::time::Duration;

const PASSWORD: &str = "correct horse battery staple";

fn portal_stack() -> StackOptions {
    StackOptions {
        start_portal: true,
        ..Default::default()
    }
}

/// The store's `/api` as the portal calls it: the portal's certificate plus a person's token.
struct AsPortal {
    api: ApiClient,
}

impl AsPortal {
    fn new(stack: &Stack) -> Self {
        let tls = stack.service_tls("portal");
        Self {
            api: stack.client_with(
                &format!("https://localhost:{}", stack.store_port),
                &tls.cert,
                &tls.key,
            ),
        }
    }

    async fn login(&self, user: &str, password: &str) -> Answer {
        let body =
            serde_json::json!({"username": user, "password": password, "client_addr": "192.0.2.7"});
        self.api
            .request(
                Method::POST,
                "/api/v1/login",
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await
            .unwrap()
    }

    async fn token(&self, user: &str) -> String {
        let a = self.login(user, PASSWORD).await;
        assert_eq!(a.status, 200, "{user}: {:?}", a.json);
        a.json["token"].as_str().unwrap().to_owned()
    }

    async fn get(&self, path: &str, token: &str) -> Answer {
        let bearer = format!("Bearer {token}");
        self.api
            .request(Method::GET, path, &[("authorization", &bearer)], "")
            .await
            .unwrap()
    }

    async fn ids(&self, token: &str) -> BTreeSet<String> {
        let a = self.get("/api/v1/messages?limit=200", token).await;
        assert_eq!(a.status, 200, "{:?}", a.json);
        a.json["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Submits `n` messages as `<name>.<domain>`; returns their ids.
async fn submit(stack: &Stack, name: &str, domain: &str, n: usize) -> BTreeSet<String> {
    let (c, k) = stack.issue_client(name, domain);
    let client = stack.client_with(&stack.ingest_url(), &c, &k);
    let mut ids = BTreeSet::new();
    for i in 0..n {
        let a = client
            .submit(&message("+14155550123", &format!("{name} {i}")))
            .await
            .unwrap();
        assert_eq!(a.status, 202, "{:?}", a.json);
        ids.insert(a.json["message_id"].as_str().unwrap().to_owned());
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn users_see_their_clients_messages_admins_their_domains_superadmins_all() {
    let stack = Stack::start(portal_stack()).await;
    let alice = submit(&stack, "alice", "example.com", 3).await;
    let bob = submit(&stack, "bob", "example.com", 2).await;
    let olga = submit(&stack, "olga", "other.org", 2).await;
    stack.wait_delivered(7, Duration::from_secs(20)).await;
    stack.add_user("ua", "user", Some("alice"), Some("example.com"), PASSWORD);
    stack.add_user("ub", "user", Some("bob"), Some("example.com"), PASSWORD);
    stack.add_user("ex-admin", "admin", None, Some("example.com"), PASSWORD);
    stack.add_user("org-admin", "admin", None, Some("other.org"), PASSWORD);
    stack.add_user("boss", "superadmin", None, None, PASSWORD);
    let p = AsPortal::new(&stack);

    let ua = p.token("ua").await;
    assert_eq!(p.ids(&ua).await, alice);
    let ub = p.token("ub").await;
    assert_eq!(p.ids(&ub).await, bob);
    let ex = p.token("ex-admin").await;
    assert_eq!(p.ids(&ex).await, alice.union(&bob).cloned().collect());
    let org = p.token("org-admin").await;
    assert_eq!(p.ids(&org).await, olga);
    let boss = p.token("boss").await;
    let all: BTreeSet<String> = alice.iter().chain(&bob).chain(&olga).cloned().collect();
    assert_eq!(p.ids(&boss).await, all);

    // By detail, and by guessing: another's message is not found, as if it did not exist.
    let bobs = bob.iter().next().unwrap();
    let olgas = olga.iter().next().unwrap();
    for (token, id) in [(&ua, bobs), (&ua, olgas), (&ex, olgas), (&org, bobs)] {
        let a = p.get(&format!("/api/v1/messages/{id}"), token).await;
        assert_eq!(a.status, 404, "{:?}", a.json);
    }
    let guess = uuid::Uuid::now_v7();
    assert_eq!(
        p.get(&format!("/api/v1/messages/{guess}"), &boss)
            .await
            .status,
        404
    );
    // A user's own client filter cannot be widened to another client.
    let a = p.get("/api/v1/messages?client=bob", &ua).await;
    assert_eq!(
        a.json["messages"].as_array().unwrap().len(),
        3,
        "a user's client filter stays their own"
    );
    let own = alice.iter().next().unwrap();
    let a = p.get(&format!("/api/v1/messages/{own}"), &ua).await;
    assert_eq!(a.status, 200);
    assert!(a.json["body"].as_str().unwrap().starts_with("alice "));
    assert_eq!(a.json["sender_mask"], "+141****0123");
    let a = p.get(&format!("/api/v1/messages/{olgas}"), &boss).await;
    assert_eq!(a.status, 200, "the superadmin reads every domain");

    // Only the portal may act for people: the same token from a client certificate is refused.
    let (c, k) = stack.issue_client("carol", "example.com");
    let not_portal = stack.client_with(&format!("https://localhost:{}", stack.store_port), &c, &k);
    let a = not_portal
        .request(
            Method::GET,
            "/api/v1/messages",
            &[("authorization", &format!("Bearer {ua}"))],
            "",
        )
        .await
        .unwrap();
    assert_eq!(a.status, 403, "{:?}", a.json);
}

fn forge(claims: &serde_json::Value, key: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_expired_unsigned_foreign_and_missing_tokens_are_refused() {
    use base64::Engine;
    let stack = Stack::start(portal_stack()).await;
    stack.add_user("ua", "user", Some("alice"), Some("example.com"), PASSWORD);
    let p = AsPortal::new(&stack);
    let good = p.token("ua").await;
    assert_eq!(p.get("/api/v1/me", &good).await.status, 200);

    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    let key = mb_shared::crypto::read_secret_key(&stack.home().join("secrets/jwt.key")).unwrap();

    let mut raised = claims.clone();
    raised["role"] = "superadmin".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(raised.to_string()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(raised.to_string())
    );
    let other_key = forge(&raised, &[9u8; 32]);
    claims["exp"] = (jsonwebtoken::get_current_timestamp() - 5).into();
    let expired = forge(&claims, &key);
    for (what, token) in [
        ("tampered", tampered.as_str()),
        ("alg none", none.as_str()),
        ("another key", other_key.as_str()),
        ("expired", expired.as_str()),
        ("empty", ""),
    ] {
        let a = p.get("/api/v1/messages", token).await;
        assert_eq!(a.status, 401, "{what}: {:?}", a.json);
    }
    // The good one still works: nothing above was a fluke of the server.
    assert_eq!(p.get("/api/v1/messages", &good).await.status, 200);

    // Through the portal: no cookie, or a forged one, leads to the sign-in page.
    let web = stack.web();
    let a = web.get("/messages").await;
    assert_eq!(a.status, 303);
    assert!(
        a.headers["location"]
            .to_str()
            .unwrap()
            .starts_with("/login?next=")
    );
    web.set_cookie("mb_session", &tampered);
    let a = web.get("/messages").await;
    assert_eq!(a.status, 303, "a tampered cookie gets no page");
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_need_this_sessions_csrf_token_and_a_logout_ends_the_session() {
    let stack = Stack::start(portal_stack()).await;
    stack.add_user("boss", "superadmin", None, None, PASSWORD);
    stack.add_user("other", "superadmin", None, None, PASSWORD);
    let web = stack.web();
    let a = web.sign_in("boss", PASSWORD).await;
    assert_eq!(a.status, 303, "{}", a.text);
    let page = web.get("/admin/users").await;
    assert_eq!(page.status, 200);
    let csrf = csrf_of(&page.text);
    let new_user = [
        ("username", "newbie"),
        ("password", "a long enough password"),
        ("role", "admin"),
        ("client", ""),
        ("domain", "example.com"),
    ];
    // No token, a made-up one, and another session's: refused, nothing created.
    let other = stack.web();
    other.sign_in("other", PASSWORD).await;
    let others_csrf = csrf_of(&other.get("/admin/users").await.text);
    for token in ["", "0".repeat(64).as_str(), others_csrf.as_str()] {
        let mut form = vec![("csrf", token)];
        form.extend(new_user);
        let a = web.post("/admin/users", &form).await;
        assert_eq!(a.status, 403, "csrf {token:?}: {}", a.text);
    }
    assert_eq!(
        stack
            .db
            .count("SELECT COUNT(*) FROM users WHERE username = 'newbie'")
            .await,
        0
    );
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend(new_user);
    let a = web.post("/admin/users", &form).await;
    assert_eq!(a.status, 303, "{}", a.text);
    assert_eq!(
        stack
            .db
            .count("SELECT COUNT(*) FROM users WHERE username = 'newbie'")
            .await,
        1
    );
    let audit: Vec<(String, String)> = stack
        .db
        .query("SELECT actor, action FROM audit_log WHERE target = 'newbie'")
        .await;
    assert_eq!(audit, [("user:boss".to_owned(), "user.create".to_owned())]);

    // Sign out, then replay the old cookie: the store no longer honours it.
    let old = web.cookie("mb_session").unwrap();
    let a = web.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(a.status, 303);
    assert_eq!(a.headers["location"], "/login");
    web.set_cookie("mb_session", &old);
    let a = web.get("/messages").await;
    assert_eq!(a.status, 303, "the replayed cookie is refused: {}", a.text);
    assert!(
        a.headers["location"]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_a_user_or_resetting_their_password_ends_their_sessions_at_once() {
    let stack = Stack::start(portal_stack()).await;
    stack.add_user("ua", "user", Some("alice"), Some("example.com"), PASSWORD);
    stack.add_user("ub", "user", Some("bob"), Some("example.com"), PASSWORD);
    let a = stack.web();
    assert_eq!(a.sign_in("ua", PASSWORD).await.status, 303);
    assert_eq!(a.get("/messages").await.status, 200);
    assert!(stack.mbctl(&["user", "disable", "ua"]).status.success());
    let r = a.get("/messages").await;
    assert_eq!(
        r.status, 303,
        "a disabled user is signed out on their next request"
    );
    // And cannot sign in again.
    let r = a.sign_in("ua", PASSWORD).await;
    assert_eq!(r.status, 403);
    assert!(r.text.contains("disabled"), "{}", r.text);

    let b = stack.web();
    assert_eq!(b.sign_in("ub", PASSWORD).await.status, 303);
    let pw = stack.home().join("pw-new");
    std::fs::write(&pw, "another long password").unwrap();
    let out = stack.mbctl(&[
        "user",
        "passwd",
        "ub",
        "--password-file",
        &pw.display().to_string(),
    ]);
    assert!(out.status.success());
    assert_eq!(b.get("/messages").await.status, 303);
    assert_eq!(
        b.sign_in("ub", PASSWORD).await.status,
        401,
        "the old password is gone"
    );
    assert_eq!(b.sign_in("ub", "another long password").await.status, 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tenth_wrong_password_locks_sign_in_for_a_while_and_the_page_says_so() {
    let stack = Stack::start(StackOptions {
        start_portal: true,
        store_extra: "login: {max_user_failures: 10, max_address_failures: 1000, lockout: 3s}\n",
        ..Default::default()
    })
    .await;
    stack.add_user("ua", "user", Some("alice"), Some("example.com"), PASSWORD);
    let web = stack.web();
    for i in 1..=10 {
        let a = web.sign_in("ua", "wrong password!").await;
        assert_eq!(a.status, 401, "try {i}: {}", a.text);
        assert!(a.text.contains("Wrong user name or password"));
    }
    // Locked: even the right password is refused, before any hashing, and the page says why.
    let a = web.sign_in("ua", PASSWORD).await;
    assert_eq!(a.status, 429, "{}", a.text);
    assert!(a.text.contains("Too many failed sign-ins"), "{}", a.text);
    let locked: Vec<(String, u32)> = stack
        .db
        .query("SELECT scope, failures FROM login_failures WHERE subject = 'ua'")
        .await;
    assert_eq!(locked, [("user".to_owned(), 10)]);
    // After the lockout the right password works, and the count starts again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a = web.sign_in("ua", PASSWORD).await;
    assert_eq!(a.status, 303, "{}", a.text);
    assert_eq!(
        stack
            .db
            .count("SELECT COUNT(*) FROM login_failures WHERE subject = 'ua'")
            .await,
        0
    );
    let last_login = stack
        .db
        .count("SELECT COUNT(*) FROM users WHERE username = 'ua' AND last_login_at IS NOT NULL")
        .await;
    assert_eq!(last_login, 1, "the sign-in is recorded");

    // Locked out again, and given a new password by an operator: in at once.
    for _ in 1..=10 {
        assert_eq!(web.sign_in("ua", "wrong password!").await.status, 401);
    }
    assert_eq!(web.sign_in("ua", PASSWORD).await.status, 429);
    let pw = stack.home().join("pw-ua");
    std::fs::write(&pw, "a brand new password").unwrap();
    let out = stack.mbctl(&[
        "user",
        "passwd",
        "ua",
        "--password-file",
        &pw.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(web.sign_in("ua", "a brand new password").await.status, 303);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_is_shown_as_text_and_search_fields_match_exactly() {
    let stack = Stack::start(portal_stack()).await;
    let (c, k) = stack.issue_client("demo", "example.com");
    let demo = stack.client_with(&stack.ingest_url(), &c, &k);
    let nasty = "<script>alert('x')</script><b>bold</b><img src=x onerror=alert(1)> \u{202E}txet desrever\u{202C} zero\u{200B}width";
    let a = demo.submit(&message("+14155550123", nasty)).await.unwrap();
    let id = a.json["message_id"].as_str().unwrap().to_owned();
    let plain = demo
        .submit(&message("+14155550999", "plain"))
        .await
        .unwrap();
    assert_eq!(plain.status, 202);
    let (c2, k2) = stack.issue_client("dem_", "example.com");
    let other = stack.client_with(&stack.ingest_url(), &c2, &k2);
    assert_eq!(
        other
            .submit(&message("+14155550123", "x"))
            .await
            .unwrap()
            .status,
        202
    );
    stack.wait_delivered(3, Duration::from_secs(20)).await;
    stack.add_user("ex-admin", "admin", None, Some("example.com"), PASSWORD);
    let web = stack.web();
    assert_eq!(web.sign_in("ex-admin", PASSWORD).await.status, 303);

    for page in [
        web.get("/messages").await,
        web.get(&format!("/messages/{id}")).await,
    ] {
        assert_eq!(page.status, 200);
        assert!(
            page.text.contains("&lt;script&gt;alert("),
            "escaped in {}",
            page.text
        );
        for raw in ["<script>alert", "<b>bold", "<img src=x"] {
            assert!(!page.text.contains(raw), "{raw} reached the page as markup");
        }
        assert!(
            page.text.contains('\u{202E}') && page.text.contains('\u{200B}'),
            "kept as text"
        );
    }
    let detail = web.get(&format!("/messages/{id}")).await;
    assert!(
        detail.text.contains("<pre class=\"body\">"),
        "the body is preformatted text"
    );

    // Search fields: exact matches, wildcards and SQL are just text.
    let rows = |text: &str| text.matches("href=\"/messages/0").count();
    let q = |s: &str| -> String { form_urlencoded::byte_serialize(s.as_bytes()).collect() };
    assert_eq!(
        rows(
            &web.get(&format!("/messages?client={}", q("demo")))
                .await
                .text
        ),
        2
    );
    assert_eq!(
        rows(
            &web.get(&format!("/messages?client={}", q("dem_")))
                .await
                .text
        ),
        1,
        "_ is a letter here"
    );
    assert_eq!(
        rows(&web.get(&format!("/messages?client={}", q("%"))).await.text),
        0
    );
    assert_eq!(
        rows(
            &web.get(&format!("/messages?client={}", q("demo' OR '1'='1")))
                .await
                .text
        ),
        0
    );
    assert_eq!(
        rows(
            &web.get(&format!("/messages?sender={}", q("+14155550999")))
                .await
                .text
        ),
        1
    );
    let bad = web
        .get(&format!("/messages?sender={}", q("+1415555%")))
        .await;
    assert_eq!(bad.status, 200);
    assert!(
        bad.text.contains("must be an E.164 number"),
        "named in the form"
    );
    assert_eq!(rows(&bad.text), 0);
    let bad = web
        .get(&format!("/messages?id={}", q("1' OR 1=1 --")))
        .await;
    assert!(bad.text.contains("must be a message id"));
    // A status filter with several values.
    let both = web.get("/messages?status=delivered&status=failed").await;
    assert_eq!(rows(&both.text), 3);
    assert_eq!(rows(&web.get("/messages?status=failed").await.text), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_carries_the_security_headers_and_the_session_cookie_is_locked_down() {
    let stack = Stack::start(portal_stack()).await;
    stack.add_user("boss", "superadmin", None, None, PASSWORD);
    let web = stack.web();
    let login = web.get("/login").await;
    let signed = web.sign_in("boss", PASSWORD).await;
    let cookie = signed
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("mb_session="))
        .expect("a session cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    for page in [
        login,
        web.get("/messages").await,
        web.get("/admin/system").await,
        web.get("/static/style.css").await,
    ] {
        let h = &page.headers;
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-inline"));
        assert!(
            h["strict-transport-security"]
                .to_str()
                .unwrap()
                .contains("max-age=")
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }
    // Every answer is timed by route, and counted by status.
    let metrics = mb_e2e::scrape(stack.portal_metrics_port).await;
    for line in [
        "mb_portal_page_seconds_count{route=\"/messages\"} 1",
        "mb_portal_page_seconds_count{route=\"/login\"} 3",
        "mb_portal_responses_total{status=\"303\"}",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let page = web.get("/messages").await;
    assert!(
        !page.text.contains("style=\""),
        "no inline styles under the CSP"
    );
    assert!(
        !page.text.contains("<script>"),
        "no inline scripts under the CSP"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issued_key_is_offered_once_and_admin_actions_are_audited() {
    let stack = Stack::start(portal_stack()).await;
    stack.add_user("ex-admin", "admin", None, Some("example.com"), PASSWORD);
    let web = stack.web();
    web.sign_in("ex-admin", PASSWORD).await;
    let csrf = csrf_of(&web.get("/admin/certificates").await.text);
    let a = web
        .post(
            "/admin/certificates",
            &[
                ("csrf", &csrf),
                ("name", "acme"),
                ("domain", "example.com"),
                ("kind", "client"),
                ("days", "20"),
            ],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let start = a
        .text
        .find("/admin/certificates/download/")
        .expect("a download link");
    let link: String = a.text[start..].chars().take_while(|c| *c != '"').collect();
    let first = web.get(&link).await;
    assert_eq!(first.status, 200);
    assert!(first.text.contains("BEGIN CERTIFICATE") && first.text.contains("PRIVATE KEY"));
    assert!(
        first.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("acme.example.com.pem")
    );
    assert_eq!(web.get(&link).await.status, 410, "never twice");

    // The downloaded file works as a client certificate (certificate and key in one PEM).
    let pem = stack.home().join("acme.pem");
    mb_shared::secret::write_private_file(&pem, first.text.as_bytes()).unwrap();
    let acme = stack.client_with(&stack.ingest_url(), &pem, &pem);
    let ans = acme
        .submit(&message("+14155550123", "from the portal's certificate"))
        .await
        .unwrap();
    assert_eq!(ans.status, 202, "{:?}", ans.json);

    // The list warns under 30 days; an admin of example.com cannot issue for other.org.
    let list = web.get("/admin/certificates").await.text;
    assert!(
        list.contains("class=\"num warn\""),
        "a warning for 20 days left"
    );
    let a = web
        .post(
            "/admin/certificates",
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("domain", "other.org"),
                ("kind", "client"),
                ("days", "20"),
            ],
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.text);
    // Revoke it from the portal: ingest refuses it within seconds.
    let serial = stack
        .db
        .query::<String>("SELECT serial FROM clients WHERE common_name = 'acme.example.com'")
        .await
        .remove(0);
    let a = web
        .post(
            "/admin/certificates/action",
            &[
                ("csrf", &csrf),
                ("action", "revoke"),
                ("name", "acme"),
                ("domain", "example.com"),
                ("serial", &serial),
            ],
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.text);
    eventually(
        Duration::from_secs(5),
        "the revoked certificate refused",
        || async {
            let a = acme.submit(&message("+14155550123", "again")).await;
            a.map_or(true, |a| a.status == 403).then_some(())
        },
    )
    .await;
    let audit = web.get("/admin/audit").await.text;
    for action in ["cert.issue", "cert.revoke"] {
        assert!(audit.contains(action), "{action} audited");
    }
    assert!(audit.contains("user:ex-admin"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_list_query_reads_only_its_page_from_a_descending_index() {
    use mb_db::listing::{ListIn, Visibility, list_query};
    use mysql_async::prelude::*;
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    // A few thousand rows of two domains and several clients, so the optimizer has a choice:
    // one in five from the searched number, one in ten failed, one in four retried.
    let hmac = mb_shared::crypto::HmacKey::from_bytes(&[1; 32]);
    let searched = hmac.sender_hash("+14155550123");
    let mut conn = stack.db.pool.get_conn().await.unwrap();
    for chunk in 0..20 {
        let rows: Vec<String> = (0..200)
            .map(|i| {
                let n = chunk * 200 + i;
                format!(
                    "('{}', '{:064}', 'c{}', '{}', '{}', '+1****{:02}', 'k1:AA', 1, '{}', {}, UTC_TIMESTAMP(3))",
                    uuid::Uuid::now_v7(),
                    n % 7,
                    n % 7,
                    if n % 3 == 0 { "other.org" } else { "example.com" },
                    if n % 5 == 0 { searched.clone() } else { format!("{n:064x}") },
                    n % 100,
                    if n % 10 == 0 { "failed" } else { "delivered" },
                    1 + u32::from(n % 4 == 0)
                )
            })
            .collect();
        conn.query_drop(format!(
            "INSERT INTO messages (message_id, client_id, client_name, domain, sender_hash, sender_mask, \
             body_ciphertext, key_id, status, attempt_count, queued_at) VALUES {}",
            rows.join(",")
        ))
        .await
        .unwrap();
    }
    conn.query_drop("ANALYZE TABLE messages").await.unwrap();
    let user = Visibility::Client {
        domain: "example.com".into(),
        client: "c1".into(),
    };
    let admin = Visibility::Domain("example.com".into());
    // A real deep cursor: 1,000 rows into the domain.
    let deep: String = conn
        .query_first(
            "SELECT message_id FROM messages WHERE domain = 'example.com' \
             ORDER BY message_id DESC LIMIT 1 OFFSET 1000",
        )
        .await
        .unwrap()
        .unwrap();
    let cursor = mb_db::listing::encode_cursor(&deep);
    let cases: Vec<(&str, Visibility, ListIn, &str)> = vec![
        (
            "user",
            user.clone(),
            ListIn::default(),
            "ix_messages_client",
        ),
        (
            "admin",
            admin.clone(),
            ListIn::default(),
            "ix_messages_domain",
        ),
        (
            "superadmin",
            Visibility::All,
            ListIn::default(),
            "ix_messages_recent",
        ),
        (
            "deep page",
            admin.clone(),
            ListIn {
                cursor: cursor.clone(),
                ..Default::default()
            },
            "ix_messages_domain",
        ),
        (
            "deep page of a user",
            user.clone(),
            ListIn {
                cursor: cursor.clone(),
                ..Default::default()
            },
            "ix_messages_client",
        ),
        (
            "date range",
            user.clone(),
            ListIn {
                from: Some("2020-01-01".into()),
                to: Some("2099-01-01".into()),
                ..Default::default()
            },
            "ix_messages_client",
        ),
        (
            "sender",
            admin.clone(),
            ListIn {
                sender: Some("+14155550123".into()),
                ..Default::default()
            },
            "ix_messages_sender",
        ),
        (
            "client",
            admin.clone(),
            ListIn {
                client: Some("c2".into()),
                ..Default::default()
            },
            "ix_messages_client",
        ),
        (
            "status",
            admin.clone(),
            ListIn {
                status: Some("failed,queued".into()),
                ..Default::default()
            },
            "ix_messages_domain",
        ),
        (
            "status, everything",
            Visibility::All,
            ListIn {
                status: Some("failed".into()),
                cursor: cursor.clone(),
                ..Default::default()
            },
            "ix_messages_recent",
        ),
        (
            "attempts",
            user.clone(),
            ListIn {
                min_attempts: Some(2),
                ..Default::default()
            },
            "ix_messages_client",
        ),
    ];
    for (what, v, input, index) in cases {
        let from_cursor = input.cursor.is_some() || input.from.is_some();
        let filter = input.check(&hmac).unwrap();
        let (sql, params) = list_query(&v, &filter);
        // ANALYZE runs the query and says what it read.
        let plan: String = conn
            .exec_first(format!("ANALYZE FORMAT=JSON {sql}"), params)
            .await
            .unwrap()
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&plan).unwrap();
        let table = &json["query_block"]["nested_loop"][0]["table"];
        assert_eq!(table["key"], index, "{what}: {plan}");
        if from_cursor {
            // A range read that starts at the cursor, not a read of the whole scope (`ref`)
            // down to it. (That the cost does not grow with depth is measured at a million
            // rows by `ops/bench --portal`.)
            assert_eq!(table["access_type"], "range", "{what}: {plan}");
        }
        assert!(
            !plan.contains("filesort"),
            "{what}: the page must come in index order: {plan}"
        );
        // Only the page's rows (limit + 1) reach the table, however deep the cursor and
        // however rare the status: the filters are checked in the index.
        // (A number's messages in other scopes are read and skipped: the sender index does
        // not hold the scope, so that the superadmin's search needs no sort.)
        let read = table["r_rows"].as_f64().unwrap();
        assert!(
            what == "sender" || read <= f64::from(filter.limit + 1),
            "{what}: read {read} rows for a page of {}: {plan}",
            filter.limit
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_system_view_counts_what_waits_what_is_pending_and_what_was_delivered() {
    let mut stack = Stack::start(StackOptions {
        start_deliver: false,
        start_portal: true,
        retry_interval: "1s",
        ..Default::default()
    })
    .await;
    stack.add_user("boss", "superadmin", None, None, PASSWORD);
    let portal = AsPortal::new(&stack);
    let token = portal.token("boss").await;
    let example = |a: &Answer| {
        a.json
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["domain"] == "example.com")
            .cloned()
            .expect("example.com is listed")
    };
    submit(&stack, "demo", "example.com", 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Nobody has read anything: five wait, for at least the time slept.
    let st = example(&portal.get("/admin/system", &token).await);
    assert_eq!(
        (&st["backlog"], &st["lag"], &st["pending"]),
        (&5.into(), &5.into(), &0.into()),
        "{st}"
    );
    assert!(st["oldest_waiting_ms"].as_u64().unwrap() >= 300, "{st}");

    // A worker that reads two and dies: two pending, held by it, three still waiting.
    let mut con = stack.redis.connection().await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stack.stream_key())
        .arg("deliver")
        .arg("0")
        .query_async(&mut con)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("deliver")
        .arg("gone")
        .arg("COUNT")
        .arg(2)
        .arg("STREAMS")
        .arg(stack.stream_key())
        .arg(">")
        .query_async(&mut con)
        .await
        .unwrap();
    let st = example(&portal.get("/admin/system", &token).await);
    assert_eq!(
        (&st["backlog"], &st["lag"], &st["pending"]),
        (&5.into(), &3.into(), &2.into()),
        "{st}"
    );
    assert!(st["oldest_pending_ms"].as_u64().unwrap() >= 300, "{st}");
    let gone = st["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "gone")
        .cloned()
        .expect("the reader is listed");
    assert_eq!(gone["pending"], 2);

    // A worker starts: it reads the three and claims the two; all five are delivered and
    // counted in the last minute and hour.
    stack.start_deliver().await;
    stack.wait_delivered(5, Duration::from_secs(20)).await;
    let st = eventually(Duration::from_secs(10), "an empty queue", || async {
        let st = example(&portal.get("/admin/system", &token).await);
        (st["backlog"] == 0).then_some(st)
    })
    .await;
    assert_eq!(
        (
            &st["lag"],
            &st["pending"],
            &st["delivered_last_minute"],
            &st["delivered_last_hour"]
        ),
        (&0.into(), &0.into(), &5.into(), &5.into()),
        "{st}"
    );
    assert!(st["oldest_waiting_ms"].is_null() && st["oldest_pending_ms"].is_null());

    // The page shows the same, and `mbctl streams` too.
    let web = stack.web();
    web.sign_in("boss", PASSWORD).await;
    let page = web.get("/admin/system").await.text;
    assert!(
        page.contains("Waiting (lag)") && page.contains("gone"),
        "{page}"
    );
    let out = stack.mbctl(&["streams"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("example.com"))
        .expect("a line for example.com");
    let cols: Vec<&str> = line.split_whitespace().collect();
    // DOMAIN BACKLOG WAITING WAIT-AGE PENDING PEND-AGE DEAD LIVE/ALL DONE/MIN
    assert_eq!(
        (cols[1], cols[2], cols[4], cols[8]),
        ("0", "0", "0", "5"),
        "{text}"
    );
    let (live, all) = cols[7].split_once('/').expect("LIVE/ALL");
    let (live, all): (u32, u32) = (live.parse().unwrap(), all.parse().unwrap());
    assert!(live <= all && all >= 1, "{text}");
}
