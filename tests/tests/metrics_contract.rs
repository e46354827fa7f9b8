//! The metrics contract: every metric that `ops/prometheus/alerts.yml` and the Grafana
//! dashboard (`ops/grafana/mb-dashboard.json`) query is really exported by some mb service.
//! An alert on a metric nobody exports never fires, and nothing tells the operator.
//!
//! The test starts the whole stack (store, ingest, a deliver worker, the portal), drives the
//! traffic the alerts and panels are about (accepted messages, a refusal, a store outage and
//! the retries after it, a dead letter, portal sign-ins and pages), scrapes every service's
//! `/metrics`, and checks each metric name the PromQL expressions use against the samples
//! the services exposed. Metrics of external exporters are allowed by name in [`EXTERNAL`].

use mb_e2e::client::message;
use mb_e2e::{Stack, StackOptions, eventually, metric, repo_root, scrape};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Metrics the alerts and the dashboard read from outside mb's services. Each is listed by
/// name, so a new external metric is a decision, not an accident.
const EXTERNAL: &[&str] = &[
    // Prometheus itself: 1 when a target was scraped, 0 when not (MbServiceDown,
    // MbExporterDown, MbStreamMetricsMissing, the "Services up" panel).
    "up",
    // oliver006/redis_exporter run with -check-streams='mb:*' (ops/prometheus/prometheus.yml):
    // stream length (backlog of mb:{domain}:messages, dead letters in mb:{domain}:dead) and the
    // deliver group's pending entries.
    "redis_stream_length",
    "redis_stream_group_messages_pending",
];

/// Prefixes of the exporters in [`EXTERNAL`]; a metric with one of them must be listed there.
const EXTERNAL_PREFIXES: &[&str] = &["redis_", "mysql_"];

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_alerts_and_the_dashboard_use_is_exported() {
    let mut stack = Stack::start(StackOptions {
        start_portal: true,
        max_attempts: 2,
        ..Default::default()
    })
    .await;
    let deliver_port = stack.deliver_metrics_ports[0];

    // Accepted messages, delivered.
    let alice = stack.client("alice");
    for i in 0..5 {
        let a = alice
            .submit(&message("+14155550123", &format!("contract {i}")))
            .await
            .unwrap();
        assert_eq!(a.status, 202, "{:?}", a.json);
    }
    stack.wait_delivered(5, Duration::from_secs(20)).await;

    // A refusal: an invalid sender number is a 422.
    let a = alice
        .submit(&message("not a number", "refused"))
        .await
        .unwrap();
    assert_eq!(a.status, 422, "{:?}", a.json);

    // A retry: the store is down while messages arrive; deliver's requests fail, the entries
    // stay pending and are claimed and delivered once the store is back.
    stack.store.stop();
    for i in 0..3 {
        let a = alice
            .submit(&message("+14155550123", &format!("during the outage {i}")))
            .await
            .unwrap();
        assert_eq!(
            a.status, 202,
            "ingest accepts while the store is down: {:?}",
            a.json
        );
    }
    eventually(
        Duration::from_secs(20),
        "deliver to count failed store requests",
        || async move {
            let text = scrape(deliver_port).await;
            (metric(&text, "mb_deliver_store_errors_total") >= 1.0).then_some(())
        },
    )
    .await;
    stack.start_store().await;
    stack.wait_delivered(8, Duration::from_secs(30)).await;

    // A dead letter: an entry the store refuses as malformed (its "mask" is a whole phone
    // number), rejected max_attempts (2) times, then moved to the dead-letter stream.
    let mut con = stack.redis.connection().await;
    let id = uuid::Uuid::now_v7().to_string();
    let hex = "ab".repeat(32);
    let _: String = redis::cmd("XADD")
        .arg(stack.stream_key())
        .arg("*")
        .arg(&[
            ("message_id", id.as_str()),
            ("client_id", hex.as_str()),
            ("domain", "example.com"),
            ("queued_at", "2026-01-01T00:00:00.000Z"),
            ("sender_hash", hex.as_str()),
            ("sender_mask", "+14155550123"),
            ("body", "k1:AAAA"),
            ("v", "1"),
        ])
        .query_async(&mut con)
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "a dead letter", || async move {
        let text = scrape(deliver_port).await;
        (metric(&text, "mb_deliver_messages_dead_lettered_total") >= 1.0).then_some(())
    })
    .await;

    // The portal: a wrong password, a sign-in, the message list.
    stack.add_user("boss", "superadmin", None, None, PASSWORD);
    let web = stack.web();
    assert_eq!(web.sign_in("boss", "wrong password!").await.status, 401);
    let a = web.sign_in("boss", PASSWORD).await;
    assert_eq!(a.status, 303, "{}", a.text);
    let page = web.get("/messages").await;
    assert_eq!(page.status, 200, "{}", page.text);

    // The store refreshes the certificate-expiry gauge at start (it was restarted after
    // alice's certificate was issued) and every 30 s.
    let store_port = stack.store_metrics_port;
    eventually(
        Duration::from_secs(40),
        "the certificate expiry gauge",
        || async move {
            let text = scrape(store_port).await;
            text.contains("mb_certificate_expiry_timestamp_seconds{")
                .then_some(())
        },
    )
    .await;

    // Every service's /metrics.
    let mut scraped = vec![
        Exposition::parse("mb-ingest", &scrape(stack.ingest_metrics_port).await),
        Exposition::parse("mb-store", &scrape(stack.store_metrics_port).await),
        Exposition::parse("mb-portal", &scrape(stack.portal_metrics_port).await),
    ];
    for (i, port) in stack.deliver_metrics_ports.iter().enumerate() {
        scraped.push(Exposition::parse(
            &format!("mb-deliver-{i}"),
            &scrape(*port).await,
        ));
    }

    // The traffic above did what it was meant to: each kind of event was counted.
    let value = |service: &str, sample: &str| {
        scraped
            .iter()
            .find(|e| e.service == service)
            .map_or(0.0, |e| metric(&e.text, sample))
    };
    for (service, sample) in [
        ("mb-ingest", "mb_ingest_messages_accepted_total"),
        ("mb-ingest", "mb_ingest_responses_total{status=\"422\"}"),
        ("mb-deliver-0", "mb_deliver_messages_delivered_total"),
        ("mb-deliver-0", "mb_deliver_store_errors_total"),
        ("mb-deliver-0", "mb_deliver_messages_claimed_total"),
        ("mb-deliver-0", "mb_deliver_messages_rejected_total"),
        ("mb-deliver-0", "mb_deliver_messages_dead_lettered_total"),
        ("mb-store", "mb_store_messages_failed_total"),
        ("mb-store", "mb_store_logins_total{outcome=\"refused\"}"),
        ("mb-store", "mb_store_logins_total{outcome=\"ok\"}"),
        ("mb-portal", "mb_portal_responses_total{status=\"200\"}"),
    ] {
        assert!(
            value(service, sample) >= 1.0,
            "{service} did not count {sample} after the test's traffic"
        );
    }

    let used = used_metrics();
    let failures = check_contract(&used, &scraped);
    assert!(
        failures.is_empty(),
        "metrics used by ops/prometheus/alerts.yml or ops/grafana/mb-dashboard.json that no mb \
         service exports (scraped: {}):\n{}",
        scraped
            .iter()
            .map(|e| e.service.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        failures.join("\n")
    );
}

/// Every metric name the alert rules and the dashboard query, with where each is used.
fn used_metrics() -> BTreeMap<String, BTreeSet<String>> {
    let root = repo_root();
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |expr: &str, place: String| {
        for name in metric_names(expr) {
            used.entry(name).or_default().insert(place.clone());
        }
    };

    let path = root.join("ops/prometheus/alerts.yml");
    let text = std::fs::read_to_string(&path).expect("read alerts.yml");
    let rules: serde_norway::Value = serde_norway::from_str(&text).expect("alerts.yml is YAML");
    let mut recorded = BTreeSet::new();
    let mut alerts = 0;
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let expr = rule["expr"].as_str().expect("every rule has an expr");
            let name = rule["alert"]
                .as_str()
                .or_else(|| rule["record"].as_str())
                .expect("a rule is an alert or a recording rule");
            if rule["record"].as_str().is_some() {
                recorded.insert(name.to_owned());
            } else {
                alerts += 1;
            }
            add(expr, format!("alert {name}"));
        }
    }
    assert!(
        alerts >= 10,
        "only {alerts} alerts found in {}",
        path.display()
    );

    let path = root.join("ops/grafana/mb-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut queries = 0;
    let mut panels: Vec<&serde_json::Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    // Collapsed rows hold their panels inside.
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries += 1;
                add(
                    expr,
                    format!("panel \"{}\"", panel["title"].as_str().unwrap_or("?")),
                );
            }
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(q) = var["query"].as_str().filter(|_| var["type"] == "query") {
            add(q, format!("variable {}", var["name"]));
        }
    }
    assert!(
        queries >= 20,
        "only {queries} panel queries found in {}",
        path.display()
    );

    // Recording rules' outputs are Prometheus's own series, not the services'.
    used.retain(|name, _| !recorded.contains(name));
    used
}

/// One service's `/metrics`: its sample names and the type of each metric family.
struct Exposition {
    service: String,
    text: String,
    samples: BTreeSet<String>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    fn parse(service: &str, response: &str) -> Self {
        // `scrape` returns the whole HTTP response; the exposition is its body.
        let text = response
            .split_once("\r\n\r\n")
            .map_or(response, |(_, body)| body)
            .to_owned();
        let mut samples = BTreeSet::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((name, kind)) = rest.split_once(' ') {
                    types.insert(name.to_owned(), kind.trim().to_owned());
                }
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                samples.insert(line[..end].to_owned());
            }
        }
        assert!(
            !samples.is_empty(),
            "{service} exposed no samples:\n{response}"
        );
        Self {
            service: service.to_owned(),
            text,
            samples,
            types,
        }
    }

    /// The family `sample` belongs to and its type, when the suffix fits the type: `_total` a
    /// counter, `_bucket` a histogram, `_sum`/`_count` a histogram or summary, no suffix a
    /// gauge (or untyped).
    fn family_of(&self, sample: &str) -> Option<(String, String)> {
        const SUFFIXES: &[(&str, &[&str])] = &[
            ("_total", &["counter"]),
            ("_created", &["counter", "histogram", "summary"]),
            ("_bucket", &["histogram", "gaugehistogram"]),
            ("_sum", &["histogram", "summary"]),
            ("_count", &["histogram", "summary"]),
        ];
        for (suffix, kinds) in SUFFIXES {
            if let Some(base) = sample.strip_suffix(suffix)
                && let Some(kind) = self.types.get(base)
                && kinds.contains(&kind.as_str())
            {
                return Some((base.to_owned(), kind.clone()));
            }
        }
        self.types
            .get(sample)
            .filter(|k| matches!(k.as_str(), "gauge" | "unknown" | "untyped" | "info"))
            .map(|k| (sample.to_owned(), k.clone()))
    }
}

/// One line per metric that is used but not exported (or external and not allow-listed);
/// empty when the contract holds.
fn check_contract(
    used: &BTreeMap<String, BTreeSet<String>>,
    scraped: &[Exposition],
) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, places) in used {
        let places = places.iter().cloned().collect::<Vec<_>>().join(", ");
        if EXTERNAL.contains(&name.as_str()) {
            continue;
        }
        if EXTERNAL_PREFIXES.iter().any(|p| name.starts_with(p)) {
            failures.push(format!(
                "  - {name} (used by {places}): an external exporter's metric that is not in \
                 the EXTERNAL allow-list of tests/tests/metrics_contract.rs"
            ));
            continue;
        }
        if scraped
            .iter()
            .any(|e| e.samples.contains(name) && e.family_of(name).is_some())
        {
            continue;
        }
        let why = if let Some((e, (family, kind))) = scraped
            .iter()
            .find_map(|e| e.family_of(name).map(|f| (e, f)))
        {
            format!(
                "{} declares the {kind} {family} but exposed no {name} sample after the test's \
                 traffic",
                e.service
            )
        } else if let Some(e) = scraped.iter().find(|e| e.samples.contains(name)) {
            format!(
                "{} exposes {name}, but not as the type its suffix implies (# TYPE: {:?})",
                e.service,
                e.types.iter().find(|(f, _)| name.starts_with(*f))
            )
        } else {
            let similar: BTreeSet<&str> = scraped
                .iter()
                .flat_map(|e| e.samples.iter())
                .filter(|s| {
                    let stem = name.trim_end_matches("_total");
                    s.starts_with(stem) || stem.starts_with(s.trim_end_matches("_total"))
                })
                .map(String::as_str)
                .collect();
            if similar.is_empty() {
                "no mb service exports it".to_owned()
            } else {
                format!(
                    "no mb service exports it; exported: {}",
                    similar.into_iter().collect::<Vec<_>>().join(", ")
                )
            }
        };
        failures.push(format!("  - {name} (used by {places}): {why}"));
    }
    for name in EXTERNAL {
        if !used.contains_key(*name) {
            failures.push(format!(
                "  - {name} is in the EXTERNAL allow-list but no alert or panel uses it any more: \
                 remove it"
            ));
        }
    }
    failures
}

/// The metric names in a PromQL expression: identifiers that are not functions (followed by
/// `(`), aggregation operators, keywords, label names (inside `{}`, and the lists after
/// `by`, `without`, `on`, `ignoring`, `group_left`, `group_right`), strings, numbers,
/// durations (inside `[]`) or Grafana variables (`$__rate_interval`, `${DS}`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &[
        "bool", "and", "or", "unless", "offset", "atan2", "inf", "nan",
    ];
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    let b = expr.as_bytes();
    let ident_start = |c: u8| c.is_ascii_alphabetic() || c == b'_' || c == b':';
    let ident = |c: u8| ident_start(c) || c.is_ascii_digit();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, b'"' | b'\'' | b'`') {
            i = skip_string(b, i);
        } else if c == b'{' {
            i = skip_group(b, i, b'{', b'}');
        } else if c == b'[' {
            i = skip_group(b, i, b'[', b']');
        } else if c == b'#' {
            // A comment, to the end of the line.
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'$' {
            i += 1;
            if b.get(i) == Some(&b'{') {
                i = skip_group(b, i, b'{', b'}');
            } else {
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            // A number or a duration (0.99, 86400, 1e3, 0x1f, 5m).
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if ident_start(c) {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let mut next = i;
            while next < b.len() && b[next].is_ascii_whitespace() {
                next += 1;
            }
            let lower = word.to_ascii_lowercase();
            if LABEL_LISTS.contains(&lower.as_str()) {
                if b.get(next) == Some(&b'(') {
                    i = skip_group(b, next, b'(', b')');
                }
            } else if b.get(next) == Some(&b'(')
                || KEYWORDS.contains(&lower.as_str())
                || AGGREGATIONS.contains(&lower.as_str())
            {
                // A function call, an operator or a keyword.
            } else {
                names.insert(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The index just past the string literal that starts at `i`.
fn skip_string(b: &[u8], mut i: usize) -> usize {
    let quote = b[i];
    i += 1;
    while i < b.len() && b[i] != quote {
        if b[i] == b'\\' && quote != b'`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// The index just past the `close` that matches the `open` at `i` (strings inside skipped).
fn skip_group(b: &[u8], mut i: usize, open: u8, close: u8) -> usize {
    let mut depth = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, b'"' | b'\'' | b'`') {
            i = skip_string(b, i);
            continue;
        }
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    i
}

#[test]
fn metric_names_are_found_in_promql_and_nothing_else_is() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(names(r#"up{job=~"mb-.*"} == 0"#), ["up"]);
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le) (rate(mb_portal_page_seconds_bucket{route=~"/messages.*"}[5m]))) > 0.5
               and on ()
               sum(rate(mb_portal_page_seconds_count{route=~"/messages.*"}[$__rate_interval])) > 0.05"#
        ),
        [
            "mb_portal_page_seconds_bucket",
            "mb_portal_page_seconds_count"
        ]
    );
    assert_eq!(
        names(
            r#"label_replace(
                 deriv(redis_stream_group_messages_pending{stream=~"mb:.*:messages", group="deliver"}[10m]) > 0
                 and redis_stream_length > 1000,
                 "domain", "$1", "stream", "mb:[{](.+)[}]:messages")"#
        ),
        ["redis_stream_group_messages_pending", "redis_stream_length"]
    );
    assert_eq!(
        names(
            "bottomk(10, max by (cn, kind) (mb_certificate_expiry_timestamp_seconds) - time()) < 30 * 86400 \
             unless sum without (instance) (a_metric offset 5m) / ignoring (x) group_left (y) b:recorded"
        ),
        [
            "a_metric",
            "b:recorded",
            "mb_certificate_expiry_timestamp_seconds"
        ]
    );
    assert_eq!(
        names("(sum(rate(mb_deliver_messages_delivered_total[5m])) or vector(0)) == 0"),
        ["mb_deliver_messages_delivered_total"]
    );
}

#[test]
fn a_missing_or_mistyped_metric_is_named_in_the_failure() {
    let exposition = Exposition::parse(
        "mb-test",
        "HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\n\
         # HELP mb_test_messages Messages.\n# TYPE mb_test_messages counter\n\
         mb_test_messages_total 3\n\
         # HELP mb_test_seconds Time.\n# TYPE mb_test_seconds histogram\n\
         mb_test_seconds_bucket{le=\"+Inf\"} 1\nmb_test_seconds_sum 0.1\nmb_test_seconds_count 1\n\
         # HELP mb_test_logins Sign-ins.\n# TYPE mb_test_logins counter\n# EOF\n",
    );
    let used = |names: &[&str]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = names
            .iter()
            .map(|n| (n.to_string(), BTreeSet::from(["alert MbTest".to_owned()])))
            .collect();
        for e in EXTERNAL {
            m.insert(e.to_string(), BTreeSet::new());
        }
        m
    };
    let ok = [
        "mb_test_messages_total",
        "mb_test_seconds_bucket",
        "mb_test_seconds_count",
    ];
    assert_eq!(
        check_contract(&used(&ok), std::slice::from_ref(&exposition)),
        Vec::<String>::new()
    );
    for (name, why) in [
        ("mb_test_messagez_total", "no mb service exports it"),
        ("mb_test_messages", "exported: mb_test_messages_total"),
        (
            "mb_test_logins_total",
            "exposed no mb_test_logins_total sample",
        ),
        ("mysql_up", "not in the EXTERNAL allow-list"),
    ] {
        let failures = check_contract(&used(&[name]), std::slice::from_ref(&exposition));
        assert_eq!(failures.len(), 1, "{name}: {failures:?}");
        assert!(
            failures[0].contains(&format!("- {name} (used by alert MbTest)"))
                && failures[0].contains(why),
            "{name}: {}",
            failures[0]
        );
    }
}
