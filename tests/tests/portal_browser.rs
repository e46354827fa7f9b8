//! The portal in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
//! which `ops/test` installs), driven over WebDriver. A person signs in, filters, opens a
//! message; an administrator issues and revokes a certificate and looks at users, the queues
//! and the audit log; signing out sends `/messages` back to the sign-in page. Every page is
//! saved as a screenshot in `target/screenshots/` (the main ones are copied into `docs/`).

use mb_e2e::client::message;
use mb_e2e::proc::Proc;
use mb_e2e::webdriver::{Browser, By as Locator};
use mb_e2e::{Stack, StackOptions, free_port, wait_for_port};
use std::path::PathBuf;
use std::time::Duration;

const PASSWORD: &str = "correct horse battery staple";

fn screenshots() -> PathBuf {
    let dir = mb_e2e::repo_root().join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// Chromium's WebDriver on a free port.
async fn chromedriver(home: &std::path::Path) -> (Proc, u16) {
    let port = free_port();
    let mut p = Proc::new(
        "chromedriver",
        mb_e2e::redis_server::which("chromedriver"),
        vec![format!("--port={port}")],
        home.join("logs/chromedriver.log"),
    );
    p.start();
    wait_for_port(port, Duration::from_secs(20), "chromedriver").await;
    (p, port)
}

async fn browser(port: u16, profile: &std::path::Path, extra: &[&str]) -> Browser {
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        // The portal's certificate is signed by the broker's own CA, which this fresh profile
        // does not know; what is tested here is the portal, not the PKI.
        "--ignore-certificate-errors".into(),
        "--window-size=1280,900".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
    });
    Browser::start(port, caps)
        .await
        .expect("a WebDriver session with Chromium")
}

async fn shot(c: &Browser, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshots().join(format!("{name}.png")), png).expect("write screenshot");
}

async fn fill(c: &Browser, css: &str, text: &str) {
    let e = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.ok();
    e.send_keys(text).await.unwrap();
}

async fn click(c: &Browser, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn page_text(c: &Browser) -> String {
    c.find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits (up to 15 s) for the browser to be on `path`: a click that submits a form returns
/// before the next page has loaded.
async fn on_path(c: &Browser, path: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = c.current_url().await.unwrap();
        if now.path() == path || (path.ends_with('/') && now.path().starts_with(path)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {path}, still on {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 15 s) for the page's `main` to contain `needle`; returns its text.
async fn main_with(c: &Browser, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = match c.find(Locator::Css("main")).await {
            Ok(main) => main.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(needle) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {needle:?} on the page, found: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sign_in(c: &Browser, base: &str, user: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(c, "input[name=username]", user).await;
    fill(c, "input[name=password]", PASSWORD).await;
    click(c, "form button[type=submit]").await;
    on_path(c, "/messages").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_and_an_administrator_use_the_portal_in_headless_chromium() {
    let stack = Stack::start(StackOptions {
        start_portal: true,
        ..Default::default()
    })
    .await;
    let (c, k) = stack.issue_client("demo", "example.com");
    let demo = stack.client_with(&stack.ingest_url(), &c, &k);
    let bodies = [
        ("+14155550123", "Your verification code is 482 913."),
        (
            "+14155550999",
            "Meet at the station at 9 — bring the <b>tickets</b>.",
        ),
        ("+4930123456", "Paket kommt morgen zwischen 10 und 12 Uhr."),
    ];
    for (sender, body) in bodies {
        assert_eq!(
            demo.submit(&message(sender, body)).await.unwrap().status,
            202
        );
    }
    stack.wait_delivered(3, Duration::from_secs(20)).await;
    stack.add_user("alice", "user", Some("demo"), Some("example.com"), PASSWORD);
    stack.add_user("admin", "superadmin", None, None, PASSWORD);
    let base = stack.portal_url();
    let (_driver, port) = chromedriver(stack.home()).await;
    let profile = tempfile::tempdir().unwrap();
    let b = browser(port, profile.path(), &[]).await;

    // Not signed in: the sign-in page, and back to where the person was going.
    b.goto(&format!("{base}/messages")).await.unwrap();
    assert_eq!(b.current_url().await.unwrap().path(), "/login");
    shot(&b, "login").await;
    fill(&b, "input[name=username]", "alice").await;
    fill(&b, "input[name=password]", PASSWORD).await;
    click(&b, "form button[type=submit]").await;
    on_path(&b, "/messages").await;
    let text = main_with(&b, "Your verification code is 482 913.").await;
    assert!(text.contains("+141****0123"), "masked sender: {text}");
    shot(&b, "messages").await;

    // Filter by status, then by sender number.
    click(&b, "input[name=status][value=delivered]").await;
    click(&b, "form.filters button[type=submit]").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !b
        .current_url()
        .await
        .unwrap()
        .query()
        .unwrap_or_default()
        .contains("status=delivered")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the filter was not applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        b.find_all(Locator::Css("table.messages tbody tr"))
            .await
            .unwrap()
            .len(),
        3
    );
    fill(&b, "input[name=sender]", "+14155550999").await;
    click(&b, "form.filters button[type=submit]").await;
    main_with(&b, "+141****0999").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !b
        .current_url()
        .await
        .unwrap()
        .query()
        .unwrap_or_default()
        .contains("sender=")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the sender filter was not applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = b
        .find_all(Locator::Css("table.messages tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one message from that number");
    shot(&b, "messages-filtered").await;

    // Open it: the decrypted body, as text, and the masked number.
    click(&b, "table.messages tbody tr td a").await;
    on_path(&b, "/messages/").await;
    let body = b
        .find(Locator::Css("pre.body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "Meet at the station at 9 — bring the <b>tickets</b>.");
    assert!(page_text(&b).await.contains("+141****0999"));
    assert!(
        b.find(Locator::Css("time + .local")).await.is_ok(),
        "the script adds the reader's local time beside UTC"
    );
    shot(&b, "message").await;
    click(&b, "header form button").await;
    on_path(&b, "/login").await;

    // The administrator: issue a certificate, see it listed, revoke it.
    sign_in(&b, &base, "admin").await;
    b.goto(&format!("{base}/admin/certificates")).await.unwrap();
    fill(&b, "form.stacked input[name=name]", "acme").await;
    fill(&b, "form.stacked input[name=domain]", "example.com").await;
    fill(&b, "form.stacked input[name=days]", "20").await;
    click(&b, "form.stacked button[type=submit]").await;
    let issued = main_with(&b, "only time").await;
    assert!(issued.contains("acme.example.com"), "{issued}");
    assert!(
        b.find(Locator::Css("a[download]")).await.is_ok(),
        "the one download link"
    );
    shot(&b, "certificate-issued").await;
    b.goto(&format!("{base}/admin/certificates")).await.unwrap();
    let row = b
        .find(Locator::XPath("//tr[td[1][text()='acme.example.com']]"))
        .await
        .expect("the new certificate is listed");
    assert!(
        row.text().await.unwrap().contains("⚠"),
        "expiry warning under 30 days"
    );
    shot(&b, "certificates").await;
    row.find(Locator::Css("button[value=revoke]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    main_with(&b, "Revoked 1 certificate").await;
    assert_eq!(
        stack
            .db
            .count("SELECT COUNT(*) FROM clients WHERE common_name = 'acme.example.com' AND status = 'revoked'")
            .await,
        1
    );
    for (path, name, expect) in [
        ("/admin/users", "users", "alice"),
        ("/admin/system", "system", "Backlog"),
        ("/admin/audit", "audit", "cert.revoke"),
    ] {
        b.goto(&format!("{base}{path}")).await.unwrap();
        main_with(&b, expect).await;
        shot(&b, name).await;
    }

    // On a phone's width.
    b.set_window_size(390, 844).await.unwrap();
    b.goto(&format!("{base}/messages")).await.unwrap();
    shot(&b, "messages-phone").await;
    b.set_window_size(1280, 900).await.unwrap();

    // Sign out: /messages goes to the sign-in page again.
    click(&b, "header form button").await;
    on_path(&b, "/login").await;
    b.goto(&format!("{base}/messages")).await.unwrap();
    assert_eq!(b.current_url().await.unwrap().path(), "/login");
    b.close().await.unwrap();

    // Dark mode follows the system setting.
    let profile = tempfile::tempdir().unwrap();
    let dark = browser(
        port,
        profile.path(),
        &["--blink-settings=preferredColorScheme=0"],
    )
    .await;
    sign_in(&dark, &base, "alice").await;
    main_with(&dark, "Paket kommt morgen").await;
    shot(&dark, "messages-dark").await;
    dark.close().await.unwrap();
}
