//! mb-portal-bench: how fast the portal's message pages answer, as a browser asks for them.
//!
//! For each `--account` it signs `--users` people in through the sign-in form (each its own
//! session and keep-alive HTTPS connection, like a browser tab), then measures, one after the
//! other, `--seconds` of every page below with all of them asking at once (closed loop, no
//! think time): the first page of `/messages`; a filtered page (a sender number and a status);
//! a date-range page of the rare `failed` status; and a deep page, whose cursor was found by
//! following "Older »" links 10,000 rows in. Every answer must be a 200 with the message table
//! in it. It prints a table and one JSON line; it exits non-zero on any error or, with
//! `--fail-over-ms`, when a p99 is over it.

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Latency of the portal's message pages under concurrent users"
)]
struct Args {
    /// The portal's base URL.
    #[arg(long, default_value = "https://localhost:8080")]
    url: String,
    /// The CA that signed the portal's certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Portal users to measure as (ROLE=NAME, e.g. user=alice); all share the password.
    #[arg(long = "account", value_parser = parse_account, required = true)]
    accounts: Vec<(String, String)>,
    #[arg(long, env = "MB_PORTAL_PASSWORD", hide_env_values = true)]
    password: String,
    /// People asking at once (each signed in separately).
    #[arg(long, default_value_t = 20)]
    users: usize,
    /// Seconds per page.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// How deep the deep page is, in rows.
    #[arg(long, default_value_t = 10_000)]
    depth: usize,
    /// The sender number of the filtered page (one `mbctl seed` used).
    #[arg(long, default_value = "+15551000007")]
    sender: String,
    /// The date range of the `failed` page (YYYY-MM-DD, inclusive).
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    /// Exit non-zero when a p99 is above this many milliseconds.
    #[arg(long)]
    fail_over_ms: Option<f64>,
}

fn parse_account(s: &str) -> Result<(String, String), String> {
    let (role, name) = s.split_once('=').ok_or("expected ROLE=NAME")?;
    Ok((role.to_owned(), name.to_owned()))
}

struct Target {
    host: String,
    port: u16,
    connector: tokio_rustls::TlsConnector,
}

/// One person: a session cookie and a keep-alive connection.
struct Person {
    cookie: String,
    conn: SendRequest<Full<Bytes>>,
}

struct Answer {
    status: u16,
    set_cookies: Vec<String>,
    location: Option<String>,
    body: String,
}

impl Target {
    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        tcp.set_nodelay(true)?;
        let tls = self
            .connector
            .connect(ServerName::try_from(self.host.clone())?, tcp)
            .await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn send(
        &self,
        conn: &mut SendRequest<Full<Bytes>>,
        method: &str,
        path: &str,
        cookie: &str,
        form: Option<String>,
    ) -> anyhow::Result<Answer> {
        if conn.ready().await.is_err() {
            *conn = self.connect().await?;
        }
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host);
        if !cookie.is_empty() {
            req = req.header(hyper::header::COOKIE, cookie);
        }
        let body = match form {
            Some(f) => {
                req = req.header(
                    hyper::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                );
                Full::new(Bytes::from(f))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = conn.send_request(req.body(body)?).await?;
        let status = resp.status().as_u16();
        let set_cookies = resp
            .headers()
            .get_all(hyper::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .map(str::to_owned)
            .collect();
        let location = resp
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = String::from_utf8(resp.into_body().collect().await?.to_bytes().to_vec())?;
        Ok(Answer {
            status,
            set_cookies,
            location,
            body,
        })
    }

    /// Signs in through the form, as a browser does: the page, its CSRF cookie, the post.
    async fn sign_in(&self, name: &str, password: &str) -> anyhow::Result<Person> {
        let mut conn = self.connect().await?;
        let page = self.send(&mut conn, "GET", "/login", "", None).await?;
        anyhow::ensure!(page.status == 200, "GET /login answered {}", page.status);
        let csrf = attr_after(&page.body, r#"name="csrf" value=""#)
            .ok_or_else(|| anyhow::anyhow!("no CSRF field on the sign-in page"))?;
        let login_cookie = page.set_cookies.join("; ");
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("csrf", &csrf)
            .append_pair("next", "/messages")
            .append_pair("username", name)
            .append_pair("password", password)
            .finish();
        let done = self
            .send(&mut conn, "POST", "/login", &login_cookie, Some(form))
            .await?;
        anyhow::ensure!(
            done.status == 303 && done.location.as_deref() == Some("/messages"),
            "signing in as {name} answered {} (wrong password, or locked?)",
            done.status
        );
        let cookie = done
            .set_cookies
            .into_iter()
            .find(|c| c.starts_with("mb_session=") && c.len() > "mb_session=".len())
            .ok_or_else(|| anyhow::anyhow!("no session cookie after signing in"))?;
        Ok(Person { cookie, conn })
    }
}

/// The value of the first `attr="…"` after `marker` (which ends with the opening quote),
/// with `&amp;` undone.
fn attr_after(html: &str, marker: &str) -> Option<String> {
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].replace("&amp;", "&"))
}

/// The "Older »" link of a message page.
fn next_link(html: &str) -> Option<String> {
    let at = html.find(r#"rel="next""#)?;
    let tag = html[..at].rfind("<a ")?;
    attr_after(&html[tag..at], r#"href=""#)
}

/// Follows "Older »" from `first` until `depth` rows are behind; returns that page's path.
async fn deep_path(
    target: &Target,
    person: &mut Person,
    first: &str,
    depth: usize,
) -> anyhow::Result<String> {
    let mut path = first.to_owned();
    let mut behind = 0;
    while behind < depth {
        let a = target
            .send(&mut person.conn, "GET", &path, &person.cookie, None)
            .await?;
        anyhow::ensure!(a.status == 200, "{path} answered {}", a.status);
        behind += a.body.matches("<tr><td><a href=\"/messages/").count();
        path = next_link(&a.body).ok_or_else(|| {
            anyhow::anyhow!("the list ended {behind} rows in, before {depth}: seed more rows")
        })?;
    }
    Ok(path)
}

/// `users` people asking for `path` for `seconds`; the latencies (µs) and the errors.
async fn measure(
    target: &Arc<Target>,
    people: Vec<Person>,
    path: &str,
    seconds: u64,
) -> anyhow::Result<(Histogram<u64>, usize, Vec<Person>)> {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for mut p in people {
        let (target, path) = (target.clone(), path.to_owned());
        tasks.spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut errors = 0;
            while Instant::now() < until {
                let t = Instant::now();
                match target
                    .send(&mut p.conn, "GET", &path, &p.cookie, None)
                    .await
                {
                    Ok(a) if a.status == 200 && a.body.contains("<table class=\"messages\">") => {
                        h.record(t.elapsed().as_micros().max(1) as u64)?;
                    }
                    Ok(a) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("{path} answered {}", a.status);
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("{path}: {e}");
                        }
                    }
                }
            }
            anyhow::Ok((h, errors, p))
        });
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut errors, mut back) = (0, Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (h, e, p) = r??;
        all.add(&h)?;
        errors += e;
        back.push(p);
    }
    Ok((all, errors, back))
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mb_shared::tls::install_crypto_provider();
    let args = Args::parse();
    anyhow::ensure!(
        args.users > 0 && args.seconds > 0,
        "--users and --seconds must be positive"
    );
    let uri: hyper::Uri = args.url.parse()?;
    let mut roots = rustls::RootCertStore::empty();
    for c in mb_shared::tls::load_certs(&args.ca)? {
        roots.add(c)?;
    }
    let target = Arc::new(Target {
        host: uri
            .host()
            .ok_or_else(|| anyhow::anyhow!("--url has no host"))?
            .to_owned(),
        port: uri.port_u16().unwrap_or(443),
        connector: tokio_rustls::TlsConnector::from(Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )),
    });
    let sender: String =
        form_urlencoded::byte_serialize(args.sender.as_bytes()).collect::<String>();
    let pages = [
        ("first page", "/messages".to_owned()),
        (
            "sender + status",
            format!("/messages?sender={sender}&status=delivered"),
        ),
        (
            "failed in dates",
            format!("/messages?from={}&to={}&status=failed", args.from, args.to),
        ),
    ];
    let mut rows = Vec::new();
    let mut failed = false;
    println!(
        "{} people per account at once, {} s per page; the deep page is {} rows in",
        args.users, args.seconds, args.depth
    );
    println!(
        "{:<12} {:<16} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "account", "page", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"
    );
    for (role, name) in &args.accounts {
        let mut people = Vec::with_capacity(args.users);
        for _ in 0..args.users {
            people.push(target.sign_in(name, &args.password).await?);
        }
        let deep = deep_path(&target, &mut people[0], "/messages", args.depth).await?;
        let mut all = pages.to_vec();
        all.push(("deep", deep));
        for (label, path) in all {
            // A short warm-up, not counted.
            let (_, _, p) = measure(&target, people, &path, 1).await?;
            let (h, errors, p) = measure(&target, p, &path, args.seconds).await?;
            people = p;
            let count = h.len();
            let rps = count as f64 / args.seconds as f64;
            let p99 = ms(h.value_at_quantile(0.99));
            println!(
                "{:<12} {:<16} {:>8.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>7}",
                role,
                label,
                rps,
                ms(h.value_at_quantile(0.50)),
                ms(h.value_at_quantile(0.95)),
                p99,
                ms(h.max()),
                errors
            );
            let over = args.fail_over_ms.is_some_and(|limit| p99 > limit);
            failed |= errors > 0 || count == 0 || over;
            rows.push(serde_json::json!({
                "account": role, "page": label, "path": path, "users": args.users,
                "requests": count, "req_per_s": rps.round(), "errors": errors,
                "p50_ms": ms(h.value_at_quantile(0.50)), "p95_ms": ms(h.value_at_quantile(0.95)),
                "p99_ms": p99, "max_ms": ms(h.max()),
            }));
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "portal_bench": rows, "deep_rows": args.depth, "fail_over_ms": args.fail_over_ms,
        })
    );
    anyhow::ensure!(
        !failed,
        "a page had errors or a p99 over {:?} ms",
        args.fail_over_ms
    );
    Ok(())
}
