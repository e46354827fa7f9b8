//! The API contract: `docs/openapi/ingest.json` is what ingest serves at `/openapi.json`, and
//! `docs/openapi/store.json` describes the store's `/admin` and `/api`; every documented
//! operation answers, valid and invalid requests get the documented status and body, paths and
//! methods not described are refused in the same JSON, and schemathesis (property-based,
//! stateful and negative testing from the description) finds no 5xx and no answer that breaks
//! the description: against ingest with a client certificate, against the store's `/admin` with
//! an administrator certificate as `mbctl cert issue --superadmin` makes it, and against its
//! `/api/v1` with the portal's certificate and a signed-in user's token.
//!
//! schemathesis runs from the venv `ops/check-api` creates (`target/venv-schemathesis`);
//! `ops/test` creates it before the tests.

use mb_e2e::client::{Answer, ApiClient, message};
use mb_e2e::{Stack, StackOptions, repo_root};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Generated test cases per operation and phase: with coverage, fuzzing and stateful phases over
/// ingest's operations this comes to well over 5,000 requests.
const MAX_EXAMPLES: &str = "600";
/// Requests schemathesis must have made against ingest, at least.
const MIN_REQUESTS: u64 = 5_000;
/// The same for the store's 16 `/admin` operations: some 2,700 requests in 30 to 60 seconds
/// (certificates are signed and passwords hashed for real).
const STORE_ADMIN_MAX_EXAMPLES: &str = "120";
const STORE_ADMIN_MIN_REQUESTS: u64 = 2_000;
/// And for its `/api/v1` (four operations; the run's session must outlive it, so no logout).
const STORE_API_MAX_EXAMPLES: &str = "100";
const STORE_API_MIN_REQUESTS: u64 = 800;

/// `MB_SCHEMATHESIS_MAX_EXAMPLES` (set by `ops/fuzz-api` for long local runs), else `default`.
fn max_examples(default: &str) -> String {
    std::env::var("MB_SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| default.to_owned())
}

fn schemathesis() -> PathBuf {
    let bin = repo_root().join("target/venv-schemathesis/bin/schemathesis");
    assert!(
        bin.exists(),
        "{} is missing: run ops/check-api once (it creates the venv with schemathesis from PyPI); \
         ops/test does this before the tests",
        bin.display()
    );
    bin
}

fn description(name: &str) -> Value {
    let path = repo_root().join(format!("docs/openapi/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read description"))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// One schemathesis run: which description, its settings, against what, as whom.
struct Run<'a> {
    /// `docs/openapi/<spec>.json`.
    spec: &'a str,
    /// `docs/openapi/<config>`: per-operation settings, dictionaries.
    config: &'a str,
    base: String,
    cert: &'a Path,
    key: &'a Path,
    max_examples: String,
    /// More arguments: which operations, headers.
    extra: Vec<String>,
}

/// What a run found and did.
struct Outcome {
    ok: bool,
    /// The end of schemathesis' output (its findings and summary).
    tail: String,
    requests: u64,
    /// Statuses answered, by operation (`POST /admin/certificates`).
    answers: BTreeMap<String, BTreeMap<u16, u64>>,
    elapsed: Duration,
}

impl Outcome {
    /// Fails with schemathesis' findings unless it found nothing, then checks the run was as
    /// large as it should be and prints what it did.
    fn assert_clean(&self, what: &str, stack: &Stack, min_requests: u64) {
        assert!(
            self.ok,
            "schemathesis found problems with {what} (reproduce: ops/check-api; the stack is \
             under {}):\n{}",
            stack.home().display(),
            self.tail
        );
        eprintln!(
            "schemathesis: {} requests against {what} in {:.0?}; statuses by operation:",
            self.requests, self.elapsed
        );
        let mut refused_methods = 0;
        for (op, statuses) in &self.answers {
            if statuses.keys().all(|s| *s == 405) {
                refused_methods += statuses.values().sum::<u64>();
            } else {
                eprintln!("  {op}: {statuses:?}");
            }
        }
        eprintln!("  (and {refused_methods} requests with undocumented methods, answered 405)");
        eprintln!("{}", self.tail);
        assert!(
            self.requests >= min_requests,
            "schemathesis made only {} requests against {what} (want {min_requests}):\n{}",
            self.requests,
            self.tail
        );
    }

    /// Whether `op` answered `status` at least once.
    fn answered(&self, op: &str, status: u16) -> bool {
        self.answers
            .get(op)
            .is_some_and(|s| s.get(&status).is_some_and(|n| *n > 0))
    }
}

/// Runs `schemathesis run` with the client certificate of `run` (and the stack's CA), in the
/// stack's home.
async fn run_schemathesis(stack: &Stack, run: Run<'_>) -> Outcome {
    let dir = stack.home().join(format!("schemathesis-{}", run.spec));
    std::fs::create_dir_all(&dir).expect("report dir");
    let ndjson = dir.join("events.ndjson");
    let docs = repo_root().join("docs/openapi");
    let mut cmd = Command::new(schemathesis());
    cmd.current_dir(&dir)
        .env("SCHEMATHESIS_HOOKS", "")
        .arg("--config-file")
        .arg(docs.join(run.config))
        .arg("run")
        .arg(docs.join(format!("{}.json", run.spec)))
        .args(["--url", &run.base])
        .arg("--request-cert")
        .arg(run.cert)
        .arg("--request-cert-key")
        .arg(run.key)
        .arg("--tls-verify")
        .arg(stack.home().join("certs/ca.crt"))
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,\
             content_type_conformance,negative_data_rejection",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--mode",
            "all",
            "--max-examples",
            &run.max_examples,
            // One worker: Python 3.11's parser is not thread-safe (CPython gh-106905), which
            // Hypothesis trips over with several.
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--suppress-health-check",
            "all",
            "--no-color",
            "--report",
            "ndjson",
            "--report-ndjson-path",
        ])
        .arg(&ndjson)
        .args(&run.extra);
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run schemathesis");
    let elapsed = started.elapsed();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(120)..].join("\n");
    let events = std::fs::read_to_string(&ndjson).unwrap_or_default();
    Outcome {
        ok: out.status.success(),
        tail,
        requests: count_requests(&events),
        answers: answers(&events),
        elapsed,
    }
}

/// Requests recorded in schemathesis' ndjson event stream (one `interactions` entry per request).
fn count_requests(ndjson: &str) -> u64 {
    ndjson
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| count_key(&v, "interactions"))
        .sum()
}

fn count_key(v: &Value, key: &str) -> u64 {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match (k == key, v) {
                (true, Value::Object(i)) => i.len() as u64,
                (true, Value::Array(i)) => i.len() as u64,
                _ => count_key(v, key),
            })
            .sum(),
        Value::Array(a) => a.iter().map(|v| count_key(v, key)).sum(),
        _ => 0,
    }
}

/// The statuses each operation answered, from the ndjson event stream: every recorder there
/// holds its generated `cases` (with the operation's method and path template) and the
/// `interactions` they led to, by case id.
fn answers(ndjson: &str) -> BTreeMap<String, BTreeMap<u16, u64>> {
    let mut out = BTreeMap::new();
    for v in ndjson
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        collect_answers(&v, &mut out);
    }
    out
}

fn collect_answers(v: &Value, out: &mut BTreeMap<String, BTreeMap<u16, u64>>) {
    match v {
        Value::Object(m) => {
            if let (Some(Value::Object(cases)), Some(Value::Object(interactions))) =
                (m.get("cases"), m.get("interactions"))
            {
                for (id, i) in interactions {
                    let case = &cases.get(id).unwrap_or(&Value::Null)["value"];
                    if let (Some(method), Some(path), Some(status)) = (
                        case["method"].as_str(),
                        case["path"].as_str(),
                        i["response"]["status_code"].as_u64(),
                    ) {
                        *out.entry(format!("{method} {path}"))
                            .or_default()
                            .entry(status as u16)
                            .or_default() += 1;
                    }
                }
                return;
            }
            m.values().for_each(|x| collect_answers(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_answers(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_wrong_with_ingest() {
    schemathesis();
    let stack = Stack::start(StackOptions::default()).await;
    let (cert, key) = stack.issue_client("alice", "example.com");
    let run = Run {
        spec: "ingest",
        config: "schemathesis.toml",
        base: stack.ingest_url(),
        cert: &cert,
        key: &key,
        max_examples: max_examples(MAX_EXAMPLES),
        extra: Vec::new(),
    };
    let out = run_schemathesis(&stack, run).await;
    out.assert_clean("ingest", &stack, MIN_REQUESTS);
    // No answer was a 5xx other than the documented 503s, and nothing leaked into the logs
    // (Stack's drop checks that no sender number or body is in a log).
    assert!(
        !stack.ingest.log_text().contains("panicked"),
        "ingest panicked:\n{}",
        stack.ingest.log_text()
    );
}

fn store_url(stack: &Stack) -> String {
    format!("https://localhost:{}", stack.store_port)
}

/// An administrator certificate as `mbctl cert issue NAME --domain D --admin|--superadmin`
/// makes it (what an operator's tools present to `/admin`): (certificate, key).
fn admin_certificate(stack: &Stack, name: &str, domain: &str, flag: &str) -> (PathBuf, PathBuf) {
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
        "cert issue {name} {flag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_wrong_with_the_store_admin_api() {
    schemathesis();
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    stack.issue_client("alice", "example.com");
    // The client the description's examples name, so the example to disable it is answered
    // 200 whether or not the run issued it first (the random requests may never hit one).
    stack.issue_client("gateway-1", "example.com");
    // A superadmin reaches every operation in every domain. Its name is not one the run
    // generates, so revoking or disabling generated names never locks the run out.
    let (cert, key) = admin_certificate(&stack, "contract-root-7q", "other.org", "--superadmin");
    let run = Run {
        spec: "store",
        config: "schemathesis-store.toml",
        base: store_url(&stack),
        cert: &cert,
        key: &key,
        max_examples: max_examples(STORE_ADMIN_MAX_EXAMPLES),
        extra: ["--include-path-regex", "^/admin/"]
            .map(String::from)
            .to_vec(),
    };
    let out = run_schemathesis(&stack, run).await;
    out.assert_clean("the store's /admin", &stack, STORE_ADMIN_MIN_REQUESTS);
    // The run got past validation: following the description's links it issued, renewed,
    // revoked and disabled certificates; it created a user and changed one, and listed dead
    // letters. (It enables the certificates it disabled too, but not in every run.)
    for (op, status) in [
        ("POST /admin/certificates", 201),
        ("POST /admin/certificates/renew", 201),
        ("POST /admin/certificates/revoke", 200),
        ("POST /admin/clients/disable", 200),
        ("POST /admin/users", 201),
        ("POST /admin/users/{name}/disable", 200),
        ("POST /admin/users/{name}/password", 200),
        ("GET /admin/dead/{domain}", 200),
        ("GET /admin/audit", 200),
    ] {
        assert!(
            out.answered(op, status),
            "{op} never answered {status}: {:?}",
            out.answers.get(op)
        );
    }
    // Its own certificate survived the run, so every request was made as an administrator.
    let admin = stack.client_with(&store_url(&stack), &cert, &key);
    assert_eq!(admin.get("/admin/certificates").await.unwrap().status, 200);
    assert!(
        !stack.store.log_text().contains("panicked"),
        "the store panicked:\n{}",
        stack.store.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_wrong_with_the_store_portal_api() {
    schemathesis();
    let stack = Stack::start(StackOptions::default()).await;
    // Messages to list and read.
    let alice = stack.client("alice");
    for i in 0..3 {
        let a = alice
            .submit(&message(
                &format!("+1415555013{i}"),
                &format!("portal api {i}"),
            ))
            .await
            .unwrap();
        assert_eq!(a.status, 202, "{}", a.text);
    }
    stack.wait_delivered(3, Duration::from_secs(30)).await;
    // The portal's certificate with a superadmin's session, as the portal makes its calls.
    stack.add_user("contract-boss", "superadmin", None, None, PASSWORD);
    let portal_tls = stack.service_tls("portal");
    let portal = stack.client_with(&store_url(&stack), &portal_tls.cert, &portal_tls.key);
    let token = sign_in(&portal, "contract-boss").await;
    let run = Run {
        spec: "store",
        config: "schemathesis-store.toml",
        base: store_url(&stack),
        cert: &portal_tls.cert,
        key: &portal_tls.key,
        max_examples: max_examples(STORE_API_MAX_EXAMPLES),
        // Signing out would end the session every other request needs; the conformance test
        // below signs out.
        extra: [
            "--include-path-regex",
            "^/api/v1/",
            "--exclude-path",
            "/api/v1/logout",
            "--header",
            &format!("Authorization: Bearer {token}"),
        ]
        .map(String::from)
        .to_vec(),
    };
    let out = run_schemathesis(&stack, run).await;
    out.assert_clean("the store's /api/v1", &stack, STORE_API_MIN_REQUESTS);
    for (op, status) in [
        ("GET /api/v1/me", 200),
        ("GET /api/v1/messages", 200),
        ("GET /api/v1/messages/{id}", 200),
        ("POST /api/v1/login", 401),
    ] {
        assert!(
            out.answered(op, status),
            "{op} never answered {status}: {:?}",
            out.answers.get(op)
        );
    }
    let me = get_as(&portal, "/api/v1/me", &token).await;
    assert_eq!(
        me.status, 200,
        "the session ended during the run: {}",
        me.text
    );
    assert!(
        !stack.store.log_text().contains("panicked"),
        "the store panicked:\n{}",
        stack.store.log_text()
    );
}

/// The password of the users these tests make.
const PASSWORD: &str = "a long enough password";

/// Signs `user` in through the portal's certificate; returns the session token.
async fn sign_in(portal: &ApiClient, user: &str) -> String {
    let body = json!({"username": user, "password": PASSWORD, "client_addr": "192.0.2.1"});
    let a = post(
        portal,
        "/api/v1/login",
        "application/json",
        &body.to_string(),
    )
    .await;
    assert_eq!(a.status, 200, "sign-in of {user}: {}", a.text);
    a.json["token"].as_str().expect("token").to_owned()
}

async fn get_as(c: &ApiClient, path: &str, token: &str) -> Answer {
    let bearer = format!("Bearer {token}");
    c.request(
        hyper::Method::GET,
        path,
        &[("authorization", &bearer)],
        String::new(),
    )
    .await
    .expect("request")
}

/// A tiny JSON Schema checker for what the descriptions use: `$ref`, `allOf`, `oneOf`,
/// `anyOf`, `type`, `const`, `enum`, `required`, `properties`, `additionalProperties`, `items`.
/// Returns what does not match, by path.
fn check(doc: &Value, schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {r}"));
        return check(doc, target, v, path, errs);
    }
    for s in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        check(doc, s, v, path, errs);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let fits = alts
                .iter()
                .filter(|s| {
                    let mut e = Vec::new();
                    check(doc, s, v, path, &mut e);
                    e.is_empty()
                })
                .count();
            if fits == 0 || (key == "oneOf" && fits > 1) {
                errs.push(format!("{path}: {fits} of the {key} alternatives fit {v}"));
            }
        }
    }
    if let Some(c) = schema.get("const")
        && c != v
    {
        errs.push(format!("{path}: {v} is not {c}"));
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errs.push(format!("{path}: {v} is not one of {e:?}"));
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let is = |t: &str| match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => true,
        };
        if !types.iter().any(|t| is(t)) {
            errs.push(format!("{path}: {v} is not of type {t}"));
            return;
        }
    }
    if let Value::Object(obj) = v {
        let props = schema.get("properties").and_then(Value::as_object);
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !obj.contains_key(r) {
                errs.push(format!("{path}: documented field `{r}` is missing"));
            }
        }
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(doc, s, val, &format!("{path}.{k}"), errs),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errs.push(format!("{path}: undocumented field `{k}`"))
                    }
                    Some(s @ Value::Object(_)) => check(doc, s, val, &format!("{path}.{k}"), errs),
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (v, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(doc, s, item, &format!("{path}[{i}]"), errs);
        }
    }
}

/// Checks one answer against the description of `method path`: the status is documented, the
/// content type is the documented one, the JSON body fits its schema, `X-Request-Id` is there.
fn conforms(doc: &Value, path: &str, method: &str, a: &Answer) {
    let op = &doc["paths"][path][method];
    let status = a.status.as_u16().to_string();
    let mut resp = op["responses"]
        .get(&status)
        .unwrap_or_else(|| {
            panic!(
                "{method} {path} answered {status}, which is not documented: {}",
                a.text
            )
        })
        .clone();
    if let Some(r) = resp.get("$ref").and_then(Value::as_str) {
        resp = doc.pointer(r.trim_start_matches('#')).expect("ref").clone();
    }
    assert!(
        a.headers.contains_key("x-request-id"),
        "{method} {path} {status}: no X-Request-Id"
    );
    let ctype = a
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .to_owned();
    let content = resp["content"]
        .get(&ctype)
        .unwrap_or_else(|| panic!("{method} {path} {status}: content type {ctype:?} undocumented"));
    if ctype == "application/json" {
        let mut errs = Vec::new();
        check(doc, &content["schema"], &a.json, "$", &mut errs);
        assert!(
            errs.is_empty(),
            "{method} {path} {status} does not fit the description: {errs:#?}\n{}",
            a.text
        );
    }
}

async fn post(c: &ApiClient, path: &str, ctype: &str, body: &str) -> Answer {
    c.request(
        hyper::Method::POST,
        path,
        &[("content-type", ctype)],
        body.to_owned(),
    )
    .await
    .expect("request")
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_serves_its_description_and_answers_as_it_says() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let alice = stack.client("alice");
    let doc = description("ingest");

    // The served description is the one in the repository.
    let served = alice.get("/openapi.json").await.unwrap();
    assert_eq!(served.status, 200);
    assert_eq!(
        served.headers["content-type"], "application/json",
        "content type of /openapi.json"
    );
    assert_eq!(
        served.json, doc,
        "/openapi.json differs from docs/openapi/ingest.json"
    );
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["mutualTLS"]["type"],
        "mutualTLS"
    );
    conforms(&doc, "/openapi.json", "get", &served);

    // Valid requests get their documented success status and body.
    let accepted = alice
        .submit(&message("+14155550100", "contract check"))
        .await
        .unwrap();
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    conforms(&doc, "/api/v1/messages", "post", &accepted);
    let id = accepted.json["message_id"].as_str().unwrap().to_owned();
    let status = alice.get(&format!("/api/v1/messages/{id}")).await.unwrap();
    assert_eq!(status.status, 200, "{}", status.text);
    conforms(&doc, "/api/v1/messages/{id}", "get", &status);
    let batch = json!({"messages": [
        message("+14155550101", "batch one"),
        {"sender_number": "12", "message_body": "refused"},
        {"sender_number": "+14155550102", "message_body": "keyed", "idempotency_key": "k-1"},
    ]});
    let b = post(
        &alice,
        "/api/v1/messages/batch",
        "application/json",
        &batch.to_string(),
    )
    .await;
    assert_eq!(b.status, 207, "{}", b.text);
    conforms(&doc, "/api/v1/messages/batch", "post", &b);
    assert_eq!(
        (b.json["accepted"].as_u64(), b.json["refused"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(b.json["results"][1]["status"], 422, "{}", b.text);
    for (path, want) in [("/healthz", 200), ("/readyz", 200)] {
        let a = alice.get(path).await.unwrap();
        assert_eq!(a.status, want, "{path}");
        conforms(&doc, path, "get", &a);
    }

    // Invalid requests get their documented error status and body.
    let single = "/api/v1/messages";
    let cases: &[(&str, &str, &str, u16)] = &[
        (single, "application/json", "{\"sender_number\": ", 400),
        (single, "text/plain", "{}", 415),
        (
            single,
            "application/json",
            r#"{"sender_number": "0", "message_body": "", "x": 1}"#,
            422,
        ),
        (PATH_BATCH, "application/json", "[", 400),
        (PATH_BATCH, "text/plain", "{}", 415),
        (PATH_BATCH, "application/json", r#"{"messages": []}"#, 422),
    ];
    for (path, ctype, body, want) in cases {
        let a = post(&alice, path, ctype, body).await;
        assert_eq!(a.status.as_u16(), *want, "{path} {body}: {}", a.text);
        conforms(&doc, path, "post", &a);
    }
    let too_many = json!({"messages": vec![message("+14155550103", "x"); 501]});
    let a = post(
        &alice,
        PATH_BATCH,
        "application/json",
        &too_many.to_string(),
    )
    .await;
    assert_eq!(a.status, 413, "{}", a.text);
    conforms(&doc, PATH_BATCH, "post", &a);
    let huge = json!({"sender_number": "+14155550104", "message_body": "y".repeat(20_000)});
    let a = post(&alice, single, "application/json", &huge.to_string()).await;
    assert_eq!(a.status, 413, "{}", a.text);
    conforms(&doc, single, "post", &a);
    // An idempotency key reused with another message.
    let key = [
        ("content-type", "application/json"),
        ("idempotency-key", "same"),
    ];
    let first = alice
        .submit_raw(&message("+14155550105", "first").to_string(), &key)
        .await
        .unwrap();
    assert_eq!(first.status, 202);
    let again = alice
        .submit_raw(&message("+14155550105", "second").to_string(), &key)
        .await
        .unwrap();
    assert_eq!(again.status, 409, "{}", again.text);
    conforms(&doc, single, "post", &again);
    let unknown = alice
        .get(&format!("/api/v1/messages/{}", uuid::Uuid::now_v7()))
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    conforms(&doc, "/api/v1/messages/{id}", "get", &unknown);

    // Every documented path and method answers (no 404/405 for a valid request).
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let p = path.replace("{id}", &id);
            let a = match method.as_str() {
                "get" => alice.get(&p).await.unwrap(),
                "post" if p.ends_with("/batch") => {
                    let body = json!({"messages": [message("+14155550106", "all paths")]});
                    post(&alice, &p, "application/json", &body.to_string()).await
                }
                "post" => {
                    let body = message("+14155550106", "all paths");
                    post(&alice, &p, "application/json", &body.to_string()).await
                }
                m => panic!("{m} {path}: method not covered by this test"),
            };
            assert!(
                ![404, 405].contains(&a.status.as_u16()),
                "{method} {path} answered {}",
                a.status
            );
            conforms(&doc, path, method, &a);
        }
    }
    // The documented operations are exactly ingest's routes.
    let mut paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/v1/messages",
            "/api/v1/messages/batch",
            "/api/v1/messages/{id}",
            "/healthz",
            "/openapi.json",
            "/readyz"
        ]
    );
}

const PATH_BATCH: &str = "/api/v1/messages/batch";

/// A request body: its content type and text.
type Body = Option<(&'static str, String)>;

fn json_body(v: Value) -> Body {
    Some(("application/json", v.to_string()))
}

/// Checks the store's answers against `docs/openapi/store.json` and remembers which statuses
/// each documented operation (method, path template) gave.
struct Contract {
    doc: Value,
    seen: BTreeMap<(String, String), BTreeSet<u16>>,
}

impl Contract {
    /// Sends `method path` (an instance of the documented `template`) as `who`, with the session
    /// `token` if any; the answer must be `want`, and as described.
    async fn expect(
        &mut self,
        who: &ApiClient,
        token: Option<&str>,
        (method, template): (&str, &str),
        path: &str,
        body: Body,
        want: u16,
    ) -> Answer {
        let a = send(who, method, path, token, body).await;
        assert_eq!(a.status.as_u16(), want, "{method} {path}: {}", a.text);
        conforms(&self.doc, template, &method.to_ascii_lowercase(), &a);
        self.seen
            .entry((template.to_owned(), method.to_ascii_lowercase()))
            .or_default()
            .insert(want);
        a
    }
}

async fn send(
    who: &ApiClient,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Body,
) -> Answer {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    let (ctype, text) = body.unwrap_or(("", String::new()));
    if !ctype.is_empty() {
        headers.push(("content-type", ctype));
    }
    let method = hyper::Method::from_bytes(method.as_bytes()).expect("method");
    who.request(method, path, &headers, text)
        .await
        .expect("request")
}

/// Checks `a` is the error body with `code`.
fn is_error(doc: &Value, a: &Answer, code: &str) {
    let mut errs = Vec::new();
    check(
        doc,
        &doc["components"]["schemas"]["ErrorBody"],
        &a.json,
        "$",
        &mut errs,
    );
    assert!(errs.is_empty(), "{errs:?}: {}", a.text);
    assert_eq!(a.json["error"]["code"], code, "{}", a.text);
    assert_eq!(a.headers["content-type"], "application/json");
    assert!(a.headers.contains_key("x-request-id"));
}

#[tokio::test(flavor = "multi_thread")]
async fn store_answers_as_its_description_says() {
    let stack = Stack::start(StackOptions::default()).await;
    let doc = description("store");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["mutualTLS"]["type"],
        "mutualTLS"
    );
    let base = store_url(&stack);
    let (c, k) = admin_certificate(&stack, "root", "other.org", "--superadmin");
    let root = stack.client_with(&base, &c, &k);
    let (c, k) = admin_certificate(&stack, "warden", "example.com", "--admin");
    let warden = stack.client_with(&base, &c, &k);
    let (c, k) = stack.issue_client("alice", "example.com");
    let not_admin = stack.client_with(&base, &c, &k);
    let alice = stack.client_with(&stack.ingest_url(), &c, &k);
    let tls = stack.service_tls("portal");
    let portal = stack.client_with(&base, &tls.cert, &tls.key);
    let mut t = Contract {
        doc: doc.clone(),
        seen: BTreeMap::new(),
    };
    let big = Some(("application/json", "x".repeat(70 * 1024)));
    let broken = || Some(("application/json", "{".to_owned()));
    let text = || Some(("text/plain", "{}".to_owned()));

    // Certificates: issue, list, renew, disable, enable, revoke, and every way to be refused.
    const CERTS: &str = "/admin/certificates";
    let issue = ("POST", CERTS);
    let gw = || json_body(json!({"name": "gw", "domain": "example.com"}));
    let issued = t.expect(&root, None, issue, CERTS, gw(), 201).await;
    let serial = issued.json["serial"].as_str().unwrap().to_owned();
    t.expect(&root, None, issue, CERTS, broken(), 400).await;
    t.expect(&portal, None, issue, CERTS, gw(), 401).await;
    t.expect(&not_admin, None, issue, CERTS, gw(), 403).await;
    let elsewhere = json_body(json!({"name": "gw", "domain": "other.org"}));
    t.expect(&warden, None, issue, CERTS, elsewhere, 404).await;
    t.expect(&root, None, issue, CERTS, big.clone(), 413).await;
    t.expect(&root, None, issue, CERTS, text(), 415).await;
    for bad in [
        json!({"name": "gw", "domain": "example.com", "days": 0}),
        json!({"name": "g w", "domain": "example.com"}),
        json!({"name": "gw", "domain": "example.net"}),
        json!({"name": "gw", "domain": "example.com", "colour": "red"}),
    ] {
        t.expect(&root, None, issue, CERTS, json_body(bad), 422)
            .await;
    }
    let list = t
        .expect(&root, None, ("GET", CERTS), CERTS, None, 200)
        .await;
    assert!(
        list.json
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["serial"] == serial.as_str()),
        "{}",
        list.text
    );
    t.expect(&not_admin, None, ("GET", CERTS), CERTS, None, 403)
        .await;
    let renew = ("POST", "/admin/certificates/renew");
    t.expect(&root, None, renew, renew.1, gw(), 201).await;
    let nobody = json_body(json!({"name": "nobody", "domain": "example.com"}));
    t.expect(&root, None, renew, renew.1, nobody, 404).await;
    for (path, want) in [
        ("/admin/clients/disable", 200),
        ("/admin/clients/enable", 200),
        ("/admin/clients/enable", 404),
    ] {
        let a = t
            .expect(&root, None, ("POST", path), path, gw(), want)
            .await;
        if want == 200 {
            assert_eq!(a.json["serials"].as_array().unwrap().len(), 2, "{}", a.text);
        }
    }
    let revoke = ("POST", "/admin/certificates/revoke");
    let by_serial = || json_body(json!({"serial": serial}));
    let a = t
        .expect(&root, None, revoke, revoke.1, by_serial(), 200)
        .await;
    assert_eq!(a.json["serials"], json!([serial]));
    t.expect(&root, None, revoke, revoke.1, by_serial(), 404)
        .await;
    let both = json_body(json!({"serial": serial, "name": "gw"}));
    t.expect(&root, None, revoke, revoke.1, both, 422).await;

    // Users.
    const USERS: &str = "/admin/users";
    let reader = json!({"username": "reader", "password": PASSWORD, "role": "user",
                        "client": "alice", "domain": "example.com"});
    let created = t
        .expect(
            &root,
            None,
            ("POST", USERS),
            USERS,
            json_body(reader.clone()),
            201,
        )
        .await;
    assert_eq!(created.json["username"], "reader");
    t.expect(&root, None, ("POST", USERS), USERS, json_body(reader), 409)
        .await;
    let no_client = json!({"username": "r2", "password": PASSWORD, "role": "user"});
    t.expect(
        &root,
        None,
        ("POST", USERS),
        USERS,
        json_body(no_client),
        422,
    )
    .await;
    t.expect(&root, None, ("GET", USERS), USERS, None, 200)
        .await;
    let password = ("POST", "/admin/users/{name}/password");
    let pw = || json_body(json!({"password": PASSWORD}));
    let reader_pw = "/admin/users/reader/password";
    t.expect(&root, None, password, reader_pw, pw(), 200).await;
    t.expect(&root, None, password, reader_pw, broken(), 400)
        .await;
    // Found by schemathesis: a path parameter that is not UTF-8 was answered in plain text.
    let a = t
        .expect(
            &root,
            None,
            password,
            "/admin/users/%FF/password",
            pw(),
            400,
        )
        .await;
    assert!(a.json["error"]["fields"]["name"].is_string(), "{}", a.text);
    t.expect(&portal, None, password, reader_pw, pw(), 401)
        .await;
    t.expect(&not_admin, None, password, reader_pw, pw(), 403)
        .await;
    let nobody_pw = "/admin/users/nobody/password";
    t.expect(&root, None, password, nobody_pw, pw(), 404).await;
    t.expect(&root, None, password, reader_pw, big.clone(), 413)
        .await;
    t.expect(&root, None, password, reader_pw, text(), 415)
        .await;
    let short = json_body(json!({"password": "short"}));
    t.expect(&root, None, password, reader_pw, short, 422).await;
    let profile = ("POST", "/admin/users/{name}/profile");
    let p = json_body(json!({"role": "user", "client": "alice", "domain": "example.com"}));
    t.expect(&root, None, profile, "/admin/users/reader/profile", p, 200)
        .await;
    for action in ["disable", "enable"] {
        let template = format!("/admin/users/{{name}}/{action}");
        let op = ("POST", template.as_str());
        let path = format!("/admin/users/reader/{action}");
        let a = t.expect(&root, None, op, &path, None, 200).await;
        assert_eq!(a.json["username"], "reader");
        let path = format!("/admin/users/nobody/{action}");
        t.expect(&root, None, op, &path, None, 404).await;
    }

    // Queues, dead letters, the audit log.
    t.expect(
        &root,
        None,
        ("GET", "/admin/system"),
        "/admin/system",
        None,
        200,
    )
    .await;
    let dead = ("GET", "/admin/dead/{domain}");
    t.expect(&root, None, dead, "/admin/dead/example.com", None, 200)
        .await;
    t.expect(&portal, None, dead, "/admin/dead/example.com", None, 401)
        .await;
    t.expect(&not_admin, None, dead, "/admin/dead/example.com", None, 403)
        .await;
    t.expect(&root, None, dead, "/admin/dead/example.net", None, 404)
        .await;
    t.expect(&warden, None, dead, "/admin/dead/other.org", None, 404)
        .await;
    // Found by schemathesis: answered in plain text.
    let a = t
        .expect(&root, None, dead, "/admin/dead/%FF", None, 400)
        .await;
    assert!(
        a.json["error"]["fields"]["domain"].is_string(),
        "{}",
        a.text
    );
    let redrive = ("POST", "/admin/dead/{domain}/redrive");
    let a = t
        .expect(
            &root,
            None,
            redrive,
            "/admin/dead/example.com/redrive",
            None,
            200,
        )
        .await;
    assert_eq!(a.json["redriven"], 0);
    let audit = ("GET", "/admin/audit");
    let a = t
        .expect(&root, None, audit, "/admin/audit?limit=3", None, 200)
        .await;
    assert_eq!(a.json["entries"].as_array().unwrap().len(), 3, "{}", a.text);
    let next = a.json["next_before"].as_u64().expect("a next page");
    let path = format!("/admin/audit?before={next}&limit=200");
    t.expect(&root, None, audit, &path, None, 200).await;
    t.expect(&portal, None, audit, "/admin/audit", None, 401)
        .await;
    t.expect(&not_admin, None, audit, "/admin/audit", None, 403)
        .await;
    // Found by schemathesis: query parameters that do not fit were answered 400 in plain text.
    for (query, field) in [
        ("limit=4294967296", "limit"),
        ("limit=many", "limit"),
        ("before=-1", "before"),
    ] {
        let path = format!("/admin/audit?{query}");
        let a = t.expect(&root, None, audit, &path, None, 422).await;
        assert!(a.json["error"]["fields"][field].is_string(), "{}", a.text);
    }

    // The portal's API: sign-in, the session, messages.
    let sent = alice
        .submit(&message("+14155550140", "store contract"))
        .await
        .unwrap();
    assert_eq!(sent.status, 202, "{}", sent.text);
    let id = sent.json["message_id"].as_str().unwrap().to_owned();
    stack.wait_delivered(1, Duration::from_secs(30)).await;
    let login = ("POST", "/api/v1/login");
    let creds = |user: &str, password: &str, addr: &str| {
        json_body(json!({"username": user, "password": password, "client_addr": addr}))
    };
    let a = t
        .expect(
            &portal,
            None,
            login,
            login.1,
            creds("reader", PASSWORD, "192.0.2.1"),
            200,
        )
        .await;
    let token = a.json["token"].as_str().unwrap().to_owned();
    let wrong = || creds("reader", "not the password", "192.0.2.2");
    t.expect(&portal, None, login, login.1, wrong(), 401).await;
    t.expect(&root, None, login, login.1, wrong(), 403).await;
    t.expect(&portal, None, login, login.1, broken(), 400).await;
    t.expect(&portal, None, login, login.1, big.clone(), 413)
        .await;
    t.expect(&portal, None, login, login.1, text(), 415).await;
    let half = json_body(json!({"username": "reader"}));
    t.expect(&portal, None, login, login.1, half, 422).await;
    stack.add_user("gone", "superadmin", None, None, PASSWORD);
    let disable_gone = ("POST", "/admin/users/{name}/disable");
    t.expect(
        &root,
        None,
        disable_gone,
        "/admin/users/gone/disable",
        None,
        200,
    )
    .await;
    let gone = creds("gone", PASSWORD, "192.0.2.3");
    t.expect(&portal, None, login, login.1, gone, 403).await;
    for _ in 0..10 {
        let a = send(
            &portal,
            "POST",
            login.1,
            None,
            creds("locked", "x", "192.0.2.4"),
        )
        .await;
        assert_eq!(a.status, 401, "{}", a.text);
    }
    let a = t
        .expect(
            &portal,
            None,
            login,
            login.1,
            creds("locked", "x", "192.0.2.4"),
            429,
        )
        .await;
    assert!(a.headers.contains_key("retry-after"));
    let tok = Some(token.as_str());
    let me = ("GET", "/api/v1/me");
    let a = t.expect(&portal, tok, me, me.1, None, 200).await;
    assert_eq!(a.json["username"], "reader");
    t.expect(&portal, None, me, me.1, None, 401).await;
    t.expect(&portal, Some("not.a.token"), me, me.1, None, 401)
        .await;
    t.expect(&root, tok, me, me.1, None, 403).await;
    let list = ("GET", "/api/v1/messages");
    let a = t.expect(&portal, tok, list, list.1, None, 200).await;
    assert_eq!(
        a.json["messages"][0]["message_id"],
        id.as_str(),
        "{}",
        a.text
    );
    assert_eq!(a.json["messages"][0]["body"], "store contract");
    let a = t
        .expect(
            &portal,
            tok,
            list,
            "/api/v1/messages?status=delivered&limit=1",
            None,
            200,
        )
        .await;
    assert_eq!(
        a.json["messages"].as_array().unwrap().len(),
        1,
        "{}",
        a.text
    );
    // Found by schemathesis: answered 400 in plain text.
    let a = t
        .expect(&portal, tok, list, "/api/v1/messages?limit=many", None, 422)
        .await;
    assert!(a.json["error"]["fields"]["limit"].is_string(), "{}", a.text);
    for query in [
        "limit=0",
        "limit=201",
        "status=lost",
        "sender=12",
        "from=yesterday",
    ] {
        let path = format!("/api/v1/messages?{query}");
        t.expect(&portal, tok, list, &path, None, 422).await;
    }
    t.expect(&portal, None, list, list.1, None, 401).await;
    t.expect(&not_admin, tok, list, list.1, None, 403).await;
    let one = ("GET", "/api/v1/messages/{id}");
    let path = format!("/api/v1/messages/{id}");
    let a = t.expect(&portal, tok, one, &path, None, 200).await;
    assert_eq!(a.json["redis"]["state"], "none", "{}", a.text);
    let unknown = format!("/api/v1/messages/{}", uuid::Uuid::now_v7());
    t.expect(&portal, tok, one, &unknown, None, 404).await;
    t.expect(&portal, tok, one, "/api/v1/messages/not-an-id", None, 404)
        .await;
    t.expect(&portal, tok, one, "/api/v1/messages/%FF", None, 400)
        .await;
    t.expect(&portal, None, one, &path, None, 401).await;
    t.expect(&root, tok, one, &path, None, 403).await;
    let logout = ("POST", "/api/v1/logout");
    let a = t.expect(&portal, tok, logout, logout.1, None, 200).await;
    assert_eq!(a.json["signed_out"], "reader");
    t.expect(&portal, tok, logout, logout.1, None, 401).await;
    t.expect(&portal, tok, me, me.1, None, 401).await;

    // Every documented operation answered as described, with success among its answers;
    // for these, every documented status was seen (all but 500 and 503, which need a failing
    // CA, hash or database).
    let mut operations = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let statuses = t
                .seen
                .get(&(path.clone(), method.clone()))
                .unwrap_or_else(|| panic!("{method} {path} was not called"));
            assert!(
                statuses.iter().any(|s| (200..300).contains(s)),
                "{method} {path} never succeeded: {statuses:?}"
            );
            operations.insert(format!("{} {path}", method.to_ascii_uppercase()));
        }
    }
    for (path, method) in [
        ("/admin/certificates", "post"),
        ("/admin/users/{name}/password", "post"),
        ("/admin/dead/{domain}", "get"),
        ("/admin/audit", "get"),
        ("/api/v1/login", "post"),
        ("/api/v1/messages/{id}", "get"),
    ] {
        let documented: BTreeSet<u16> = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|s| s.parse().unwrap())
            .filter(|s| ![500, 503].contains(s))
            .collect();
        let seen = &t.seen[&(path.to_owned(), method.to_owned())];
        assert!(
            documented.is_subset(seen),
            "{method} {path}: documented {documented:?}, seen {seen:?}"
        );
    }

    // Nothing undocumented is answered: other paths are a JSON 404, other methods a JSON 405.
    for path in ["/admin", "/admin/nope", "/api/v2/messages", "/openapi.json"] {
        let a = send(&root, "GET", path, None, None).await;
        assert_eq!(a.status, 404, "{path}: {}", a.text);
        is_error(&doc, &a, "not_found");
    }
    for (method, path) in [
        ("DELETE", "/admin/users"),
        ("GET", "/admin/certificates/revoke"),
        ("PUT", "/admin/audit"),
        ("POST", "/api/v1/me"),
    ] {
        let a = send(&root, method, path, None, None).await;
        assert_eq!(a.status, 405, "{method} {path}: {}", a.text);
        is_error(&doc, &a, "method_not_allowed");
        assert!(a.headers.contains_key("allow"), "{method} {path}");
    }
    // The documented operations are exactly the store's /admin and /api routes.
    assert_eq!(
        operations.into_iter().collect::<Vec<_>>(),
        [
            "GET /admin/audit",
            "GET /admin/certificates",
            "GET /admin/dead/{domain}",
            "GET /admin/system",
            "GET /admin/users",
            "GET /api/v1/me",
            "GET /api/v1/messages",
            "GET /api/v1/messages/{id}",
            "POST /admin/certificates",
            "POST /admin/certificates/renew",
            "POST /admin/certificates/revoke",
            "POST /admin/clients/disable",
            "POST /admin/clients/enable",
            "POST /admin/dead/{domain}/redrive",
            "POST /admin/users",
            "POST /admin/users/{name}/disable",
            "POST /admin/users/{name}/enable",
            "POST /admin/users/{name}/password",
            "POST /admin/users/{name}/profile",
            "POST /api/v1/login",
            "POST /api/v1/logout",
        ]
    );
}

/// Sends one whole HTTP/1.1 request, head and body, before reading anything, as most clients
/// do (Python's requests, which schemathesis uses; curl): returns the answer's status, or how
/// the connection failed.
async fn send_whole_request(
    port: u16,
    (cert, key): (&Path, &Path),
    ca: &Path,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<u16, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    mb_shared::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in mb_shared::tls::load_certs(ca).expect("CA") {
        roots.add(c).expect("add CA");
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            mb_shared::tls::load_certs(cert).expect("certificate"),
            mb_shared::tls::load_key(key).expect("key"),
        )
        .expect("client auth");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let mut s = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| format!("writing the head: {e}"))?;
    s.write_all(body)
        .await
        .map_err(|e| format!("writing the body: {e}"))?;
    s.flush().await.map_err(|e| format!("flushing: {e}"))?;
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no answer ({read:?}): {text:?}"))
}

/// Found by schemathesis (a "network error" on one of its requests, now and then): a path or
/// method the store does not serve was answered before the request body was read, so hyper
/// closed the connection on the unread body, which reset it under a client still sending its
/// body: the client saw no answer at all. Now the body is read first, as for every route.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_path_or_method_is_answered_to_a_client_that_sends_its_whole_body_first() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let (cert, key) = admin_certificate(&stack, "root", "other.org", "--superadmin");
    let ca = stack.home().join("certs/ca.crt");
    let body = vec![b'x'; 40 * 1024];
    for (method, path, want) in [
        ("POST", "/admin/nope", 404),
        ("PUT", "/admin/users/x/password", 405),
        ("DELETE", "/admin/certificates", 405),
        ("GET", "/internal/v1/deliver", 405),
        // A route's own refusal, for comparison: it always read the body first.
        ("POST", "/admin/users/x/password", 400),
    ] {
        for _ in 0..5 {
            let got =
                send_whole_request(stack.store_port, (&cert, &key), &ca, method, path, &body).await;
            assert_eq!(got, Ok(want), "{method} {path}");
        }
    }
}

/// The same for ingest: its unknown paths and methods read the body before answering too.
#[tokio::test(flavor = "multi_thread")]
async fn ingest_answers_an_unknown_path_or_method_to_a_client_that_sends_its_whole_body_first() {
    let stack = Stack::start(StackOptions {
        start_deliver: false,
        ..Default::default()
    })
    .await;
    let (cert, key) = stack.issue_client("whole", "example.com");
    let ca = stack.home().join("certs/ca.crt");
    let body = vec![b'x'; 15 * 1024];
    for (method, path, want) in [
        ("POST", "/api/v1/nope", 404),
        ("PUT", "/api/v1/messages", 405),
        ("DELETE", "/api/v1/messages/batch", 405),
        // A route's own refusal, for comparison: it always read the body first.
        ("POST", "/api/v1/messages", 400),
    ] {
        for _ in 0..5 {
            let got =
                send_whole_request(stack.ingest_port, (&cert, &key), &ca, method, path, &body)
                    .await;
            assert_eq!(got, Ok(want), "{method} {path}");
        }
    }
}
