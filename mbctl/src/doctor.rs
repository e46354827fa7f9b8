//! `mbctl doctor`: what is wrong with this installation, and how to fix it. Each check prints
//! one line, `ok`, `warn` or `FAIL`, followed by a `fix:` line when it is not ok; a summary
//! ends the report. The exit status is 1 when any check FAILed (warnings do not fail).
//!
//! Checks, in order:
//! * services: a TCP connection to each configured service, then the `healthcheck` probe;
//! * Redis: reachable, version ≥ 6.2, `appendonly yes`, `maxmemory-policy noeviction`;
//! * MySQL/MariaDB: reachable, version, every embedded migration applied;
//! * clock: Redis's `TIME` and MySQL's `NOW(3)` within 1 s of this host's clock;
//! * files: every file under `<home>/secrets` and every `*.key` under `<home>/certs` is mode
//!   0600 and owned by the user the services run as (the current user; for root, the owner of
//!   `<home>`);
//! * certificates: every `*.crt` under `<home>/certs` valid for 30 more days, service
//!   certificates signed by `certs/ca.crt`;
//! * keyring: it loads, every stored row's and stream entry's key id is in it, and the
//!   services' config files all name the same keyring (or keyrings with the same keys).

use crate::cli::Cli;
use crate::healthcheck::{self, Endpoints, Service};
use mb_shared::crypto::Keyring;
use mb_shared::identity::PeerIdentity;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Display;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(clap::Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub endpoints: Endpoints,
    /// Directory of the services' config files (`store.yaml`, `ingest.yaml`, ...), to compare
    /// the keyrings they name. Default: /etc/mb when it exists, else the repository's
    /// ops/config (the local stack of ops/up).
    #[arg(long, env = "MB_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
}

/// Certificates expiring within this many days are a warning.
const EXPIRY_WARN_DAYS: i64 = 30;
/// Clocks further apart than this are a warning.
const MAX_SKEW_SECS: f64 = 1.0;
/// MariaDB reads descending indexes (sql/V5) from 10.8 on; MySQL from 8.0.
const MIN_MARIADB: (u32, u32) = (10, 8);
const MIN_MYSQL: (u32, u32) = (8, 0);

#[derive(Default)]
struct Report {
    ok: usize,
    warn: usize,
    fail: usize,
}

impl Report {
    fn ok(&mut self, area: &str, msg: impl Display) {
        self.ok += 1;
        println!("ok    {area:<8} {msg}");
    }

    fn warn(&mut self, area: &str, msg: impl Display, fix: impl Display) {
        self.warn += 1;
        println!("warn  {area:<8} {msg}");
        println!("{:15}fix: {fix}", "");
    }

    fn fail(&mut self, area: &str, msg: impl Display, fix: impl Display) {
        self.fail += 1;
        println!("FAIL  {area:<8} {msg}");
        println!("{:15}fix: {fix}", "");
    }

    /// A check that could not run for want of a setting; counts as nothing.
    fn skip(&mut self, area: &str, msg: impl Display) {
        println!("skip  {area:<8} {msg}");
    }
}

pub async fn run(cli: &Cli, args: &DoctorArgs) -> anyhow::Result<bool> {
    let mut r = Report::default();
    let ep = &args.endpoints;
    let selected = ep.selected(cli);
    let home = absolute(&cli.home);
    println!("mbctl doctor: home {}", home.display());

    services(cli, ep, &selected, &mut r).await;
    if selected.contains(&Service::Redis) {
        redis_checks(cli, ep.timeout, &mut r).await;
    }
    let db = if selected.contains(&Service::Mysql) {
        mysql_checks(cli, ep.timeout, &mut r).await
    } else {
        None
    };
    files(&home, &mut r);
    certificates(&home, &mut r);
    keyring(cli, args, &home, db.as_ref(), &mut r).await;
    if let Some(db) = db {
        db.close().await;
    }

    println!(
        "{} ok, {} warning{}, {} FAIL{}",
        r.ok,
        r.warn,
        if r.warn == 1 { "" } else { "s" },
        r.fail,
        if r.fail == 0 {
            ""
        } else {
            ": fix the FAIL lines above"
        }
    );
    Ok(r.fail == 0)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

// ---------------------------------------------------------------------------------------
// Services

/// (host, port) of an `https://host[:port]` base URL.
fn https_host_port(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("{url}: not an https:// URL"))?;
    let hostport = rest.split('/').next().unwrap_or_default();
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.ends_with(']') => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{url}: invalid port `{p}`"))?,
        ),
        _ => (hostport, 443),
    };
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
    ))
}

fn start_hint(service: Service) -> String {
    match service {
        Service::Deliver => "start the workers (`systemctl start mb-deliver@1`; locally `ops/up`) \
             and give each one's metrics address with --deliver-url (127.0.0.1:920N under \
             systemd); `journalctl -u mb-deliver@1` says why one stopped"
            .to_owned(),
        s => {
            let (name, flag) = (s.name(), format!("--{}-url", s.name()));
            format!(
                "start it (`systemctl start mb-{name}`; locally `ops/up`), `journalctl -u \
                 mb-{name}` says why it stopped; or point {flag} / MB_{}_URL at it",
                name.to_uppercase()
            )
        }
    }
}

async fn services(cli: &Cli, ep: &Endpoints, selected: &[Service], r: &mut Report) {
    let http: Vec<Service> = selected
        .iter()
        .copied()
        .filter(|s| {
            matches!(
                s,
                Service::Ingest | Service::Store | Service::Portal | Service::Deliver
            )
        })
        .collect();
    // Can we reach the port at all? Then the service's own answer.
    let reachable = reachable_services(ep, &http, r).await;
    for p in ep.probe_all(cli, &reachable).await {
        service_probe(p, r);
    }
}

/// The services of `http` whose every port accepts a TCP connection; a FAIL for each that does
/// not.
async fn reachable_services(ep: &Endpoints, http: &[Service], r: &mut Report) -> Vec<Service> {
    let mut reachable = Vec::new();
    for &s in http {
        let mut all = true;
        for a in service_addrs(ep, s) {
            let connected = match &a {
                Err(e) => Err(e.clone()),
                Ok((host, port)) => tcp_connect(host, *port, ep.timeout).await,
            };
            if let Err(e) = connected {
                r.fail(s.name(), e, start_hint(s));
                all = false;
            }
        }
        if all {
            reachable.push(s);
        }
    }
    reachable
}

/// (host, port) of each address a service listens on: one base URL, or every worker's metrics
/// address for deliver.
fn service_addrs(ep: &Endpoints, s: Service) -> Vec<Result<(String, u16), String>> {
    match s {
        Service::Ingest => vec![https_host_port(&ep.ingest_url)],
        Service::Store => vec![https_host_port(&ep.store_url)],
        Service::Portal => vec![https_host_port(&ep.portal_url)],
        _ => ep
            .deliver_urls
            .iter()
            .map(|u| healthcheck::metrics_url(u).map(|(h, p, _)| (h, p)))
            .collect(),
    }
}

async fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port)))
        .await
        .map_err(|_| format!("no connection to {host}:{port} within {timeout:?}"))
        .and_then(|c| c.map_err(|e| format!("cannot connect to {host}:{port}: {e}")))
        .map(drop)
}

/// The line for one service's `healthcheck` probe.
fn service_probe(p: healthcheck::Probe, r: &mut Report) {
    let name = p.service.name();
    match p.result {
        Ok(detail) => r.ok(
            name,
            format!(
                "{} answers {detail} ({} ms)",
                p.target,
                p.elapsed.as_millis()
            ),
        ),
        Err(reason) if reason.starts_with("answered") => {
            let fix = match p.service {
                Service::Ingest => "ingest is up but not ready: it needs Redis and the store \
                     (see their lines); `journalctl -u mb-ingest`"
                    .to_owned(),
                s => format!("`journalctl -u mb-{}`", s.name()),
            };
            r.fail(name, format!("{} {reason}", p.target), fix);
        }
        Err(reason) => r.fail(
            name,
            format!("{}: {reason}", p.target),
            "the port is open but the TLS exchange failed: the service's tls.ca must be \
             <home>/certs/ca.crt and its certificate signed by it (is --home the home the \
             services use?)",
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Redis

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// `redis_version:7.0.15` → (7, 0); `10.11.6-MariaDB-0+deb12u1` → (10, 11).
fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn skew(r: &mut Report, what: &str, remote: f64, before: f64, after: f64) {
    let skew = remote - (before + after) / 2.0;
    let msg = format!(
        "{what}'s clock is {:.3} s {} this host's",
        skew.abs(),
        if skew >= 0.0 { "ahead of" } else { "behind" }
    );
    if skew.abs() > MAX_SKEW_SECS {
        r.warn(
            "clock",
            msg,
            "run NTP on every host (systemd-timesyncd or chrony): message ages, idempotency \
             windows, sessions and certificate validity compare clocks of different hosts",
        );
    } else {
        r.ok("clock", msg);
    }
}

async fn redis_checks(cli: &Cli, timeout: Duration, r: &mut Report) {
    let Some(url) = cli.redis_url.as_deref() else {
        r.fail(
            "redis",
            "no Redis URL",
            "give --redis-url or MB_REDIS_URL (the services' redis_url)",
        );
        return;
    };
    let shown = healthcheck::redact(url);
    let Some(mut con) = redis_reachable(url, &shown, timeout, r).await else {
        return;
    };
    let Some(info) = redis_info(&mut con, &shown, timeout, r).await else {
        return;
    };
    let fields: BTreeMap<&str, &str> = info
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    redis_version(&fields, &shown, r);
    redis_persistence(&fields, r);
    if fields.get("aof_enabled") == Some(&"1") {
        redis_fsync(&mut con, timeout, r).await;
    }
    redis_eviction(&fields, r);
    redis_clock(&mut con, timeout, r).await;
}

/// `appendfsync always`: an acknowledged message is on disk before Redis answers. (INFO does
/// not show the policy; CONFIG GET does, where the URL's user may run it.)
async fn redis_fsync(
    con: &mut mb_shared::redis_conn::RedisConn,
    timeout: Duration,
    r: &mut Report,
) {
    let cmd = redis::cmd("CONFIG").arg("GET").arg("appendfsync").clone();
    let fix = "set `appendfsync always` in redis.conf (docs/operations.md, \"Redis settings\"), \
               or at once: `redis-cli CONFIG SET appendfsync always` plus the same line in the file";
    match healthcheck::redis_query::<HashMap<String, String>>(con, &cmd, timeout).await {
        Ok(config) => match config.get("appendfsync").map(String::as_str) {
            Some("always") => r.ok(
                "redis",
                "appendfsync always: an acknowledged message is on disk before Redis answers",
            ),
            Some("no") => r.warn(
                "redis",
                "appendfsync no: a crash of the host or a power loss loses the messages Redis \
                 acknowledged that the kernel had not yet written (up to about 30 s of them)",
                fix,
            ),
            Some(policy) => r.warn(
                "redis",
                format!(
                    "appendfsync {policy}: a Redis crash while its disk is busy can lose \
                     messages it acknowledged (up to 2 s of them)"
                ),
                fix,
            ),
            None => r.warn("redis", "CONFIG GET appendfsync names no policy", fix),
        },
        Err(e) => r.warn(
            "redis",
            format!("cannot read appendfsync: {e}"),
            "let the URL's user run CONFIG GET, or check `redis-cli CONFIG GET appendfsync` by \
             hand: it must be always",
        ),
    }
}

async fn redis_reachable(
    url: &str,
    shown: &str,
    timeout: Duration,
    r: &mut Report,
) -> Option<mb_shared::redis_conn::RedisConn> {
    match healthcheck::redis_connect(url, timeout).await {
        Ok(c) => Some(c),
        Err(e) => {
            r.fail(
                "redis",
                format!("cannot connect to {shown}: {e}"),
                "start Redis (`systemctl start redis-server`; locally `ops/up`) and check \
                 MB_REDIS_URL",
            );
            None
        }
    }
}

async fn redis_info(
    con: &mut mb_shared::redis_conn::RedisConn,
    shown: &str,
    timeout: Duration,
    r: &mut Report,
) -> Option<String> {
    match healthcheck::redis_query(con, &redis::cmd("INFO"), timeout).await {
        Ok(i) => Some(i),
        Err(e) => {
            r.fail(
                "redis",
                format!("{shown} connects but INFO fails: {e}"),
                "the URL needs a user allowed to run INFO, PING, TIME and the stream commands",
            );
            None
        }
    }
}

fn redis_version(fields: &BTreeMap<&str, &str>, shown: &str, r: &mut Report) {
    match fields.get("redis_version") {
        None => r.warn(
            "redis",
            format!("{shown} does not report its version"),
            "mb needs Redis 6.2 or newer; check `redis-server --version`",
        ),
        Some(v) => {
            let (min_major, min_minor) = mb_shared::streams::MIN_REDIS_VERSION;
            if major_minor(v) >= mb_shared::streams::MIN_REDIS_VERSION {
                r.ok(
                    "redis",
                    format!("{shown}: Redis {v} ({min_major}.{min_minor} or newer needed)"),
                );
            } else {
                r.fail(
                    "redis",
                    format!(
                        "{shown}: Redis {v} is too old: mb needs {min_major}.{min_minor} or newer \
                         (XAUTOCLAIM); the services refuse to start"
                    ),
                    "upgrade redis-server (Debian 12 ships 7.0)",
                );
            }
        }
    }
}

/// `appendonly yes`: what ingest acknowledged survives a Redis crash.
fn redis_persistence(fields: &BTreeMap<&str, &str>, r: &mut Report) {
    match fields.get("aof_enabled") {
        Some(&"1") => r.ok(
            "redis",
            "appendonly yes: acknowledged messages survive a Redis crash",
        ),
        Some(_) => r.warn(
            "redis",
            "appendonly is off: messages answered 202 but not yet delivered are lost if Redis \
             crashes",
            "set `appendonly yes` and `appendfsync always` in redis.conf (see \
             redis/redis.conf), or at once: `redis-cli CONFIG SET appendonly yes` plus the \
             same line in the file",
        ),
        None => r.warn(
            "redis",
            "INFO does not say whether appendonly is on",
            "check `redis-cli CONFIG GET appendonly`: it must be yes",
        ),
    }
}

/// `maxmemory-policy noeviction`: a full Redis never drops queued messages.
fn redis_eviction(fields: &BTreeMap<&str, &str>, r: &mut Report) {
    match fields.get("maxmemory_policy") {
        Some(&"noeviction") => r.ok(
            "redis",
            "maxmemory-policy noeviction: a full Redis refuses writes instead of dropping \
             queued messages",
        ),
        Some(p) => r.warn(
            "redis",
            format!(
                "maxmemory-policy is {p}: when memory is full Redis may evict streams, i.e. \
                 undelivered messages"
            ),
            "set `maxmemory-policy noeviction` in redis.conf (and `redis-cli CONFIG SET \
             maxmemory-policy noeviction`); ingest then answers 503 when Redis is full",
        ),
        None => r.warn(
            "redis",
            "INFO does not say the maxmemory-policy",
            "check `redis-cli CONFIG GET maxmemory-policy`: it must be noeviction",
        ),
    }
}

async fn redis_clock(
    con: &mut mb_shared::redis_conn::RedisConn,
    timeout: Duration,
    r: &mut Report,
) {
    let before = unix_now();
    match healthcheck::redis_query::<(u64, u64)>(con, &redis::cmd("TIME"), timeout).await {
        Ok((secs, micros)) => {
            let after = unix_now();
            skew(r, "Redis", secs as f64 + micros as f64 / 1e6, before, after);
        }
        Err(e) => r.warn(
            "clock",
            format!("Redis TIME failed: {e}"),
            "allow TIME for the broker's Redis user",
        ),
    }
}

// ---------------------------------------------------------------------------------------
// MySQL

async fn mysql_checks(cli: &Cli, timeout: Duration, r: &mut Report) -> Option<mb_db::Db> {
    let Some(url) = cli.mysql_url.as_deref() else {
        r.fail(
            "mysql",
            "no MySQL URL",
            "give --mysql-url or MB_MYSQL_URL (the store's mysql_url)",
        );
        return None;
    };
    let shown = healthcheck::redact(url);
    let (db, mut con) = mysql_reachable(url, &shown, timeout, r).await?;
    mysql_version(&mut con, &shown, timeout, r).await;
    mysql_clock(con, timeout, r).await;
    migrations(&db, timeout, r).await;
    Some(db)
}

const MYSQL_DOWN_FIX: &str = "start MariaDB (`systemctl start mariadb`; locally `ops/up`) and \
                              check MB_MYSQL_URL: host, port, user, password and database";

/// The pool and one connection from it; `None` (and the pool closed) when there is none.
async fn mysql_reachable(
    url: &str,
    shown: &str,
    timeout: Duration,
    r: &mut Report,
) -> Option<(mb_db::Db, mysql_async::Conn)> {
    let db = match mb_db::Db::connect(url, 2, 16) {
        Ok(db) => db,
        Err(e) => {
            r.fail("mysql", format!("{shown}: {e}"), MYSQL_DOWN_FIX);
            return None;
        }
    };
    let failure = match tokio::time::timeout(timeout, db.pool().get_conn()).await {
        Ok(Ok(c)) => return Some((db, c)),
        Ok(Err(e)) => format!(
            "cannot connect to {shown}: {}",
            healthcheck::error_chain(&e)
        ),
        Err(_) => format!("no connection to {shown} within {timeout:?}"),
    };
    r.fail("mysql", failure, MYSQL_DOWN_FIX);
    db.close().await;
    None
}

async fn mysql_version(
    con: &mut mysql_async::Conn,
    shown: &str,
    timeout: Duration,
    r: &mut Report,
) {
    use mysql_async::prelude::Queryable;
    let version: Result<Option<String>, String> =
        tokio::time::timeout(timeout, con.query_first("SELECT VERSION()"))
            .await
            .map_err(|_| "no answer in time".to_owned())
            .and_then(|v| v.map_err(|e| e.to_string()));
    match version {
        Ok(Some(v)) => {
            let maria = v.to_ascii_lowercase().contains("mariadb");
            let (kind, min) = if maria {
                ("MariaDB", MIN_MARIADB)
            } else {
                ("MySQL", MIN_MYSQL)
            };
            if major_minor(&v) >= min {
                r.ok("mysql", format!("{shown}: {kind} {v}"));
            } else {
                r.warn(
                    "mysql",
                    format!(
                        "{shown}: {kind} {v} is older than {}.{}: the descending indexes of \
                         sql/V5 are ignored and the portal's message lists get slow",
                        min.0, min.1
                    ),
                    format!("upgrade to {kind} {}.{} or newer", min.0, min.1),
                );
            }
        }
        Ok(None) | Err(_) => r.warn(
            "mysql",
            format!("{shown}: cannot read VERSION()"),
            "check the user's rights",
        ),
    }
}

/// MySQL's clock against this host's; the connection goes back to the pool afterwards.
async fn mysql_clock(mut con: mysql_async::Conn, timeout: Duration, r: &mut Report) {
    use mysql_async::prelude::Queryable;
    let before = unix_now();
    let now: Result<Option<String>, String> = tokio::time::timeout(
        timeout,
        con.query_first("SELECT CAST(UNIX_TIMESTAMP(NOW(3)) AS CHAR)"),
    )
    .await
    .map_err(|_| "no answer in time".to_owned())
    .and_then(|v| v.map_err(|e| e.to_string()));
    let after = unix_now();
    drop(con);
    match now.map(|n| n.and_then(|n| n.parse::<f64>().ok())) {
        Ok(Some(t)) => skew(r, "MySQL", t, before, after),
        _ => r.warn(
            "clock",
            "cannot read MySQL's clock (SELECT UNIX_TIMESTAMP(NOW(3)))",
            "check the user's rights",
        ),
    }
}

/// Every migration embedded in this mbctl applied, and none newer.
async fn migrations(db: &mb_db::Db, timeout: Duration, r: &mut Report) {
    match tokio::time::timeout(timeout, db.pending_migrations()).await {
        Ok(Ok(m)) if m.pending.is_empty() => {
            if m.latest_applied.is_some_and(|a| a > m.latest) {
                r.warn(
                    "mysql",
                    format!(
                        "the database has migration V{} applied, newer than this mbctl knows \
                         (V{}): it belongs to a newer release",
                        m.latest_applied.unwrap_or_default(),
                        m.latest
                    ),
                    "use the mbctl of the release the services run",
                );
            } else {
                r.ok(
                    "mysql",
                    format!("schema up to date (migration V{} applied)", m.latest),
                );
            }
        }
        Ok(Ok(m)) => r.fail(
            "mysql",
            format!(
                "{} migration{} not applied: {}",
                m.pending.len(),
                if m.pending.len() == 1 { "" } else { "s" },
                m.pending.join(", ")
            ),
            "`mbctl migrate`, or restart mb-store (it migrates on start unless \
             migrate_on_start: false)",
        ),
        Ok(Err(e)) => r.fail(
            "mysql",
            format!("cannot read refinery_schema_history: {e}"),
            "check the user's rights on the database",
        ),
        Err(_) => r.fail(
            "mysql",
            format!("refinery_schema_history not read within {timeout:?}"),
            "MariaDB is overloaded or locked: `SHOW PROCESSLIST`",
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Files

/// Every file below `dir` (following no symlinked directories), sorted.
fn walk(dir: &Path, files: &mut Vec<PathBuf>, dirs: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                dirs.push(p.clone());
                walk(&p, files, dirs);
            }
            Ok(_) => files.push(p),
            Err(_) => {}
        }
    }
}

/// The uid the services run as, as far as this host tells: the current user, or for root the
/// owner of `<home>` (root runs mbctl for the `mb` user).
fn expected_owner(home: &Path) -> Option<u32> {
    let me = std::fs::metadata("/proc/self").ok()?.uid();
    if me == 0 {
        std::fs::metadata(home).ok().map(|m| m.uid())
    } else {
        Some(me)
    }
}

/// The name of a uid, from /etc/passwd.
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

fn files(home: &Path, r: &mut Report) {
    if !home.is_dir() {
        r.fail(
            "files",
            format!("{} is not a directory", home.display()),
            "give the broker's state directory with --home or MB_HOME (/var/lib/mb under \
             systemd, .local for ops/up); `mbctl init` creates it",
        );
        return;
    }
    let owner = expected_owner(home);
    let mut secret_files = Vec::new();
    let mut secret_dirs = vec![home.join("secrets")];
    walk(&home.join("secrets"), &mut secret_files, &mut secret_dirs);
    let mut cert_files = Vec::new();
    walk(&home.join("certs"), &mut cert_files, &mut Vec::new());
    let keys = cert_files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "key"));
    let mut checked = 0;
    let mut bad = 0;
    for path in secret_files.into_iter().chain(keys) {
        checked += 1;
        bad += secret_file(&path, owner, r);
    }
    secret_dirs_mode(&secret_dirs, r);
    if checked == 0 {
        r.fail(
            "files",
            format!(
                "no secret files in {}/secrets or keys in {}/certs",
                home.display(),
                home.display()
            ),
            "`mbctl init` creates them; is --home the broker's home?",
        );
    } else if bad == 0 {
        r.ok(
            "files",
            format!(
                "{checked} secret files and keys are mode 0600{}",
                owner.map_or(String::new(), |u| format!(" and owned by {}", user_name(u)))
            ),
        );
    }
}

/// Mode and owner of one secret file or key; the number of FAIL lines it got.
fn secret_file(path: &Path, owner: Option<u32>, r: &mut Report) -> usize {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            r.fail(
                "files",
                format!("{}: {e}", path.display()),
                "remove the dangling link or restore the file",
            );
            return 1;
        }
    };
    let mut bad = 0;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bad += 1;
        r.fail(
            "files",
            format!(
                "{} has mode {mode:04o}: others may read a secret, and the services \
                 refuse to start with it",
                path.display()
            ),
            format!("chmod 600 {}", path.display()),
        );
    }
    if let Some(uid) = owner.filter(|u| *u != meta.uid()) {
        bad += 1;
        let name = user_name(uid);
        r.fail(
            "files",
            format!(
                "{} is owned by {}, not {name}: the services (running as {name}) cannot \
                 read it",
                path.display(),
                user_name(meta.uid())
            ),
            format!("chown {name} {}", path.display()),
        );
    }
    bad
}

/// The secrets directories are not listable by others.
fn secret_dirs_mode(secret_dirs: &[PathBuf], r: &mut Report) {
    for dir in secret_dirs.iter().filter(|d| d.is_dir()) {
        if let Ok(m) = std::fs::metadata(dir)
            && m.permissions().mode() & 0o077 != 0
        {
            r.warn(
                "files",
                format!(
                    "directory {} has mode {:04o}: others may list the secrets",
                    dir.display(),
                    m.permissions().mode() & 0o777
                ),
                format!("chmod 700 {}", dir.display()),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Certificates

fn certificates(home: &Path, r: &mut Report) {
    let certs_dir = home.join("certs");
    let mut files = Vec::new();
    walk(&certs_dir, &mut files, &mut Vec::new());
    files.retain(|p| p.extension().is_some_and(|e| e == "crt"));
    let ca_subject = ca_subject(&certs_dir.join("ca.crt"), r);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let mut good = 0;
    let mut soonest: Option<(i64, PathBuf)> = None;
    for path in files {
        let kind = cert_kind(&path, &certs_dir);
        if let Some(days) = certificate(&path, kind, home, ca_subject.as_deref(), now, r) {
            good += 1;
            if soonest.as_ref().is_none_or(|(d, _)| days < *d) {
                soonest = Some((days, path.clone()));
            }
        }
    }
    if let Some((days, path)) = soonest {
        r.ok(
            "certs",
            format!(
                "{good} certificates valid for {EXPIRY_WARN_DAYS} days or more; the first to \
                 expire: {} in {days} days",
                path.strip_prefix(home).unwrap_or(&path).display()
            ),
        );
    }
}

/// The subject of `certs/ca.crt`, which must have signed the service certificates.
fn ca_subject(ca_path: &Path, r: &mut Report) -> Option<Vec<u8>> {
    let ca_subject = mb_shared::tls::load_certs(ca_path).ok().and_then(|c| {
        c.first()
            .and_then(|d| mb_shared::identity::subject_of(d).ok())
    });
    if ca_subject.is_none() {
        r.fail(
            "certs",
            format!("{} is missing or unreadable", ca_path.display()),
            "`mbctl init` creates the CA; restore it from the key backup if it was lost",
        );
    }
    ca_subject
}

fn cert_kind(path: &Path, certs_dir: &Path) -> Kind {
    if path == certs_dir.join("ca.crt") {
        Kind::Ca
    } else if path.parent() == Some(&certs_dir.join("services")) {
        Kind::Service
    } else if path.parent() == Some(&certs_dir.join("domains")) {
        Kind::DomainCa
    } else {
        Kind::Client
    }
}

/// Expiry of one certificate, and for a service certificate its issuer; `Some(days left)`
/// when it is good for [`EXPIRY_WARN_DAYS`] or more.
fn certificate(
    path: &Path,
    kind: Kind,
    home: &Path,
    ca_subject: Option<&[u8]>,
    now: i64,
    r: &mut Report,
) -> Option<i64> {
    let shown = path
        .strip_prefix(home)
        .unwrap_or(path)
        .display()
        .to_string();
    let id = match mb_shared::tls::load_certs(path)
        .map_err(|e| e.to_string())
        .and_then(|c| PeerIdentity::from_der(&c[0]))
    {
        Ok(id) => id,
        Err(e) => {
            r.warn(
                "certs",
                format!("{shown}: {e}"),
                "remove the file if it is not a certificate of this broker",
            );
            return None;
        }
    };
    let days = (id.not_after - now).div_euclid(86_400);
    let renew = renew_fix(kind, &id, path, &shown);
    if id.not_after <= now {
        r.fail(
            "certs",
            format!("{shown} ({}) expired {} days ago", id.common_name, -days),
            renew,
        );
        return None;
    }
    let good = if days < EXPIRY_WARN_DAYS {
        r.warn(
            "certs",
            format!("{shown} ({}) expires in {days} days", id.common_name),
            &renew,
        );
        None
    } else {
        Some(days)
    };
    if kind == Kind::Service
        && let Some(ca) = ca_subject
        && id.issuer != ca
    {
        r.fail(
            "certs",
            format!("{shown} was not signed by certs/ca.crt: the other services refuse it"),
            renew,
        );
    }
    good
}

/// How to replace a certificate of this kind.
fn renew_fix(kind: Kind, id: &PeerIdentity, path: &Path, shown: &str) -> String {
    match kind {
        Kind::Ca => "the CA cannot be renewed in place: create a new one in a new home \
                     (`mbctl --home NEW init`), re-issue every service and client \
                     certificate from it, and switch the services over"
            .to_owned(),
        Kind::DomainCa => format!(
            "create the domain's CA anew (`mbctl ca create-domain`) and re-issue its \
             clients' certificates; see {shown}"
        ),
        Kind::Service => format!(
            "remove {0} and its .key, run `mbctl init` (re-issues missing service \
             certificates; keep the same --san), restart the service",
            path.display()
        ),
        Kind::Client => {
            let (name, domain) = id
                .common_name
                .split_once('.')
                .unwrap_or((id.common_name.as_str(), "DOMAIN"));
            format!(
                "`mbctl cert renew {name} --domain {domain}` and hand the client the new \
                 certificate, or delete {shown} if the client is gone"
            )
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ca,
    DomainCa,
    Service,
    Client,
}

// ---------------------------------------------------------------------------------------
// Keyring

async fn keyring(
    cli: &Cli,
    args: &DoctorArgs,
    home: &Path,
    db: Option<&mb_db::Db>,
    r: &mut Report,
) {
    let path = home.join("secrets").join("keyring.json");
    let scan_timeout = args.endpoints.timeout.max(Duration::from_secs(1)) * 12;
    match Keyring::load(&path) {
        Err(e) => r.fail(
            "keyring",
            format!("{} does not load: {e}", path.display()),
            "restore the keyring from the key backup (ops/restore); without it no stored \
             message can be read",
        ),
        Ok(ring) => {
            let ids = ring.key_ids();
            r.ok(
                "keyring",
                format!(
                    "{} loads: key{} {}, active {}",
                    path.display(),
                    if ids.len() == 1 { "" } else { "s" },
                    join(&ids),
                    ring.active_key_id()
                ),
            );
            match db {
                None => r.skip("keyring", "stored rows not checked (no --mysql-url)"),
                Some(db) => stored_row_keys(db, &ring, scan_timeout, r).await,
            }
            match cli.redis_url.as_deref() {
                None => r.skip("keyring", "stream entries not checked (no --redis-url)"),
                Some(url) => stream_entry_keys(url, &ring, scan_timeout, r).await,
            }
        }
    }
    configs(args, home, &path, r);
}

fn missing_key_fix(id: u32) -> String {
    format!(
        "restore a keyring that has key {id} (the key backups of ops/backup; \
         `ops/restore`); never `mbctl keys retire` a key that rows or entries still \
         use"
    )
}

/// Every stored row's key id is in the keyring.
async fn stored_row_keys(db: &mb_db::Db, ring: &Keyring, scan_timeout: Duration, r: &mut Report) {
    match tokio::time::timeout(scan_timeout, mb_db::keys::rows_per_key(db)).await {
        Ok(Ok(rows)) => {
            let unknown: Vec<&(u32, u64)> =
                rows.iter().filter(|(k, _)| !ring.has_key(*k)).collect();
            for (k, n) in &unknown {
                r.fail(
                    "keyring",
                    format!(
                        "{n} stored row{} use{} key {k} (k{k}), which is not in the \
                         keyring: {} cannot be read",
                        if *n == 1 { "" } else { "s" },
                        if *n == 1 { "s" } else { "" },
                        if *n == 1 { "it" } else { "they" }
                    ),
                    missing_key_fix(*k),
                );
            }
            if unknown.is_empty() {
                r.ok(
                    "keyring",
                    format!(
                        "every stored row's key is in the keyring ({})",
                        per_key(&rows)
                    ),
                );
            }
        }
        Ok(Err(e)) => r.fail(
            "keyring",
            format!("cannot count the stored rows per key: {e}"),
            "see the mysql lines above",
        ),
        Err(_) => r.warn(
            "keyring",
            format!("counting the stored rows per key took over {scan_timeout:?}"),
            "run again with a longer --timeout (the count reads every row)",
        ),
    }
}

/// Every stream entry's key id (queued and dead letters) is in the keyring.
async fn stream_entry_keys(url: &str, ring: &Keyring, scan_timeout: Duration, r: &mut Report) {
    match tokio::time::timeout(scan_timeout, crate::keys::stream_entries_per_key(url)).await {
        Ok(Ok(entries)) => {
            let unknown: Vec<(&u32, &u64)> =
                entries.iter().filter(|(k, _)| !ring.has_key(**k)).collect();
            for (k, n) in &unknown {
                r.fail(
                    "keyring",
                    format!(
                        "{n} stream entr{} (queued or dead letters) use{} key {k} \
                         (k{k}), which is not in the keyring: the store defers \
                         them until it has the key",
                        if **n == 1 { "y" } else { "ies" },
                        if **n == 1 { "s" } else { "" },
                    ),
                    missing_key_fix(**k),
                );
            }
            if unknown.is_empty() {
                let list: Vec<(u32, u64)> = entries.iter().map(|(k, n)| (*k, *n)).collect();
                r.ok(
                    "keyring",
                    format!(
                        "every stream entry's key is in the keyring ({})",
                        per_key(&list)
                    ),
                );
            }
        }
        Ok(Err(e)) => r.fail(
            "keyring",
            format!("cannot read the streams: {e}"),
            "see the redis lines above",
        ),
        Err(_) => r.warn(
            "keyring",
            format!("reading every stream entry took over {scan_timeout:?}"),
            "run again with a longer --timeout",
        ),
    }
}

fn join(ids: &[u32]) -> String {
    ids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `key 1: 120 rows, key 2: 3` or `none`.
fn per_key(counts: &[(u32, u64)]) -> String {
    if counts.is_empty() {
        return "none yet".into();
    }
    counts
        .iter()
        .map(|(k, n)| format!("key {k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The config directory to read, and why it was chosen; `None` when there is none.
fn config_dir(args: &DoctorArgs, home: &Path) -> Result<Option<PathBuf>, String> {
    if let Some(d) = &args.config_dir {
        return if d.is_dir() {
            Ok(Some(d.clone()))
        } else {
            Err(format!("--config-dir {} is not a directory", d.display()))
        };
    }
    let etc = PathBuf::from("/etc/mb");
    if etc.is_dir() {
        return Ok(Some(etc));
    }
    // The local stack: <repo>/.local is the home, <repo>/ops/config the configs.
    let candidates = [
        home.parent().map(|p| p.join("ops/config")),
        Some(PathBuf::from("ops/config")),
    ];
    Ok(candidates.into_iter().flatten().find(|d| d.is_dir()))
}

/// `KEY=VALUE` lines of an env file such as /etc/mb/env (comments and blanks skipped).
fn env_file(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_owned(), v.to_owned())
        })
        .collect()
}

/// The services' config files name one keyring, `own` (this mbctl's), or at least keyrings
/// with the same keys.
fn configs(args: &DoctorArgs, home: &Path, own: &Path, r: &mut Report) {
    let dir = match config_dir(args, home) {
        Ok(Some(d)) => d,
        Ok(None) => {
            r.skip(
                "keyring",
                "services' keyrings not compared: no /etc/mb or ops/config (give --config-dir)",
            );
            return;
        }
        Err(e) => {
            r.fail(
                "keyring",
                e,
                "give the directory of store.yaml and ingest.yaml",
            );
            return;
        }
    };
    let mut named = named_keyrings(&dir, home, r);
    if named.is_empty() {
        r.skip(
            "keyring",
            format!("no config in {} names a keyring", dir.display()),
        );
        return;
    }
    named.push(("mbctl (--home)".into(), own.to_owned()));
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let mut by_path: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for (who, p) in &named {
        by_path.entry(canon(p)).or_default().push(who.clone());
    }
    if !keyrings_exist(&by_path, r) {
        return;
    }
    if by_path.len() == 1 {
        let (p, who) = by_path.iter().next().expect("one entry");
        r.ok(
            "keyring",
            format!("{} all use {}", who.join(", "), p.display()),
        );
        return;
    }
    different_keyrings(&by_path, r);
}

/// (config file name, keyring file) of every config in `dir` that names one, with `${VAR}`
/// expanded as the services would (the environment, then `<dir>/env`, then `MB_HOME` = `home`).
fn named_keyrings(dir: &Path, home: &Path, r: &mut Report) -> Vec<(String, PathBuf)> {
    let env = env_file(&dir.join("env"));
    let lookup = |var: &str| {
        std::env::var(var)
            .ok()
            .or_else(|| env.get(var).cloned())
            .or_else(|| (var == "MB_HOME").then(|| home.display().to_string()))
    };
    let mut yamls: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    yamls.retain(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"));
    yamls.sort();
    let mut named: Vec<(String, PathBuf)> = Vec::new();
    for file in yamls {
        let who = file
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        if let Some(p) = config_keyring(&file, lookup, r) {
            named.push((who, p));
        }
    }
    named
}

/// The keyring one config file names, if it names one; a warning when it cannot be told.
fn config_keyring(
    file: &Path,
    lookup: impl Fn(&str) -> Option<String>,
    r: &mut Report,
) -> Option<PathBuf> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            r.warn(
                "keyring",
                format!("cannot read {}: {e}", file.display()),
                "run as a user that may read the configs (root or the mb group)",
            );
            return None;
        }
    };
    let Ok(doc) = serde_norway::from_str::<serde_norway::Value>(&text) else {
        r.warn(
            "keyring",
            format!("{} is not YAML", file.display()),
            format!(
                "the service says why: `mbctl config get {} keyring`",
                file.display()
            ),
        );
        return None;
    };
    let raw = doc.get("keyring").and_then(|v| v.as_str())?;
    match mb_shared::config::expand_env(raw, lookup) {
        Ok(p) => Some(absolute(Path::new(&p))),
        Err(var) => {
            r.warn(
                "keyring",
                format!(
                    "{}: keyring `{raw}` needs ${{{var}}}, which is not set",
                    file.display()
                ),
                "run with the services' environment: `set -a; . /etc/mb/env; set +a` (or \
                 `. .local/env` for ops/up)",
            );
            None
        }
    }
}

/// Every named keyring file exists; a FAIL for the first that does not.
fn keyrings_exist(by_path: &BTreeMap<PathBuf, Vec<String>>, r: &mut Report) -> bool {
    for (p, who) in by_path {
        if !p.exists() {
            r.fail(
                "keyring",
                format!(
                    "{} name{} keyring {}, which does not exist",
                    who.join(", "),
                    if who.len() == 1 { "s" } else { "" },
                    p.display()
                ),
                "point every service's `keyring:` at the one keyring file (under systemd \
                 /var/lib/mb/secrets/keyring.json)",
            );
            return false;
        }
    }
    true
}

/// Several keyring files: a warning when they hold the same keys, a FAIL when they differ.
fn different_keyrings(by_path: &BTreeMap<PathBuf, Vec<String>>, r: &mut Report) {
    let mut contents: BTreeMap<PathBuf, Result<KeyringContents, String>> = BTreeMap::new();
    for p in by_path.keys() {
        contents.insert(p.clone(), keyring_contents(p));
    }
    let describe = |p: &Path| {
        format!(
            "{} ({})",
            p.display(),
            by_path.get(p).map(|w| w.join(", ")).unwrap_or_default()
        )
    };
    let first = contents.values().next().cloned();
    let same = contents
        .values()
        .all(|c| c.is_ok() && Some(c) == first.as_ref());
    if same {
        r.warn(
            "keyring",
            format!(
                "the services use different keyring files with the same keys: {}",
                by_path
                    .keys()
                    .map(|p| describe(p))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            "point every `keyring:` at one file: `mbctl keys rotate` changes only <home>'s, \
             and a copy left behind cannot read new messages",
        );
        return;
    }
    let lines: Vec<String> = contents
        .iter()
        .map(|(p, c)| match c {
            Ok((active, keys)) => format!(
                "{}: keys {}, key {active} active",
                describe(p),
                join(&keys.iter().map(|(k, _)| *k).collect::<Vec<_>>())
            ),
            Err(e) => format!("{}: {e}", describe(p)),
        })
        .collect();
    r.fail(
        "keyring",
        format!(
            "the services' keyrings differ, so one cannot read what another wrote: {}",
            lines.join("; ")
        ),
        "make every service's `keyring:` name the same file (the newest keyring, \
         <home>/secrets/keyring.json), then `systemctl reload`/SIGHUP or restart the services",
    );
}

/// (active key, {(id, key)}) of a keyring file, for comparing files.
type KeyringContents = (u32, BTreeSet<(u32, String)>);

fn keyring_contents(path: &Path) -> Result<KeyringContents, String> {
    let raw = mb_shared::secret::read_private_file(path).map_err(|e| e.to_string())?;
    let doc: serde_norway::Value =
        serde_norway::from_slice(&raw).map_err(|e| format!("not a keyring: {e}"))?;
    let active = doc
        .get("active")
        .and_then(serde_norway::Value::as_u64)
        .ok_or("not a keyring: no `active`")? as u32;
    let keys = doc
        .get("keys")
        .and_then(serde_norway::Value::as_mapping)
        .ok_or("not a keyring: no `keys`")?
        .iter()
        .filter_map(|(k, v)| {
            let id = match k {
                serde_norway::Value::String(s) => s.parse().ok(),
                serde_norway::Value::Number(n) => n.as_u64().map(|n| n as u32),
                _ => None,
            }?;
            Some((id, v.as_str()?.to_owned()))
        })
        .collect();
    Ok((active, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_urls() {
        assert_eq!(major_minor("7.0.15"), (7, 0));
        assert_eq!(major_minor("10.11.6-MariaDB-0+deb12u1"), (10, 11));
        assert!(major_minor("6.0.16") < mb_shared::streams::MIN_REDIS_VERSION);
        assert_eq!(
            https_host_port("https://localhost:8001").unwrap(),
            ("localhost".into(), 8001)
        );
        assert_eq!(
            https_host_port("https://broker.example/").unwrap(),
            ("broker.example".into(), 443)
        );
        assert_eq!(
            https_host_port("https://[::1]:8000").unwrap(),
            ("::1".into(), 8000)
        );
        assert!(https_host_port("http://x:1").is_err());
    }

    #[test]
    fn env_files() {
        let dir = tempfile_dir();
        let f = dir.join("env");
        std::fs::write(&f, "# c\nMB_A=1\nexport MB_B=\"two\"\n\nMB_C='x=y'\n").unwrap();
        let env = env_file(&f);
        assert_eq!(env["MB_A"], "1");
        assert_eq!(env["MB_B"], "two");
        assert_eq!(env["MB_C"], "x=y");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("mbctl-doctor-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
