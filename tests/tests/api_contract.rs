//! The API contract: `docs/openapi/ingest.json` is what ingest serves at `/openapi.json`, every
//! documented operation answers, valid and invalid requests get the documented status and
//! body, and schemathesis (property-based, stateful and negative testing from the description)
//! finds no 5xx and no answer that breaks the description.
//!
//! schemathesis runs from the venv `ops/check-api` creates (`target/venv-schemathesis`);
//! `ops/test` creates it before the tests.

use mb_e2e::client::{ApiClient, message};
use mb_e2e::{Stack, StackOptions, repo_root};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Generated test cases per operation and phase: with coverage, fuzzing and stateful phases over
/// ingest's operations this comes to well over 5,000 requests.
const MAX_EXAMPLES: &str = "600";

/// `MB_SCHEMATHESIS_MAX_EXAMPLES` (set by `ops/fuzz-api` for long local runs), else
/// [`MAX_EXAMPLES`].
fn max_examples() -> String {
    std::env::var("MB_SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| MAX_EXAMPLES.to_owned())
}
/// Requests schemathesis must have made against ingest, at least.
const MIN_REQUESTS: u64 = 5_000;

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

/// Runs `schemathesis run` on `spec` against `base` with the given client certificate; returns
/// (success, output, requests made).
async fn run_schemathesis(
    stack: &Stack,
    spec: &Path,
    base: &str,
    cert: &Path,
    key: &Path,
    extra: &[&str],
) -> (bool, String, u64) {
    let dir = stack.home().join("schemathesis");
    std::fs::create_dir_all(&dir).expect("report dir");
    let ndjson = dir.join("events.ndjson");
    let mut cmd = Command::new(schemathesis());
    cmd.current_dir(&dir)
        .env("SCHEMATHESIS_HOOKS", "")
        .arg("--config-file")
        .arg(repo_root().join("docs/openapi/schemathesis.toml"))
        .arg("run")
        .arg(spec)
        .args(["--url", base])
        .arg("--request-cert")
        .arg(cert)
        .arg("--request-cert-key")
        .arg(key)
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
            &max_examples(),
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
        .args(extra);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run schemathesis");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let requests = std::fs::read_to_string(&ndjson)
        .map(|s| count_requests(&s))
        .unwrap_or(0);
    (out.status.success(), text, requests)
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

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_wrong_with_ingest() {
    let schemathesis = schemathesis();
    let stack = Stack::start(StackOptions::default()).await;
    let (cert, key) = stack.issue_client("alice", "example.com");
    let started = std::time::Instant::now();
    let spec = repo_root().join("docs/openapi/ingest.json");
    let (ok, out, requests) =
        run_schemathesis(&stack, &spec, &stack.ingest_url(), &cert, &key, &[]).await;
    let tail: String = out
        .lines()
        .rev()
        .take(120)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        ok,
        "{} found problems with ingest (reproduce: ops/check-api; the stack is under {}):\n{tail}",
        schemathesis.display(),
        stack.home().display()
    );
    eprintln!(
        "schemathesis: {requests} requests against ingest in {:.0?}\n{tail}",
        started.elapsed()
    );
    assert!(
        requests >= MIN_REQUESTS,
        "schemathesis made only {requests} requests (want {MIN_REQUESTS}):\n{tail}"
    );
    // No answer was a 5xx other than the documented 503s, and nothing leaked into the logs
    // (Stack's drop checks that no sender number or body is in a log).
    assert!(
        !stack.ingest.log_text().contains("panicked"),
        "ingest panicked:\n{}",
        stack.ingest.log_text()
    );
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
fn conforms(doc: &Value, path: &str, method: &str, a: &mb_e2e::client::Answer) {
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

async fn post(c: &ApiClient, path: &str, ctype: &str, body: &str) -> mb_e2e::client::Answer {
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
