//! The checking side: wait until every accepted message is a committed row, then compare the
//! rows with what was accepted (lost, duplicated) and read accept→row latencies.

use crate::Args;
use crate::load::Submitted;
use hdrhistogram::Histogram;
use mysql_async::prelude::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

pub struct Committed {
    pub rows: u64,
    pub lost: usize,
    pub duplicates: u64,
    /// From the first accept to the last commit.
    pub elapsed: Duration,
    /// accept (queued_at) → row insert (created_at), microseconds.
    pub e2e_us: Histogram<u64>,
    /// With `--timeline`: (queued_at in Unix ms, accept→row µs) of every row.
    pub queued: Vec<(i64, u64)>,
}

/// Waits until every accepted message is a committed row (or commits stall for `stall`).
///
/// Progress comes from the store's own count of messages it wrote (`--store-metrics`), which
/// costs MariaDB nothing; an exact count scans the table (over a million rows, it kept a core
/// busy when taken ten times a second and its cost went into MariaDB's figures). The exact
/// count decides: it is taken when the store's count says every row may be there, or when
/// that count stops moving (or cannot be read), and at most once a second (or five times as
/// long as the last one took).
pub async fn wait_for_commits(args: &Args, want: u64, stall: Duration) -> anyhow::Result<()> {
    let pool = mysql_async::Pool::new(mysql_async::Opts::from_url(&args.mysql_url)?);
    let mut conn = pool.get_conn().await?;
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(want)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("commit {bar:40} {pos}/{len}").expect("template"),
    );
    let base = stored_by_store(&args.store_metrics).await.ok();
    let mut exact = delivered_rows(&mut conn).await?;
    let (base_rows, mut stored_before) = (exact, base);
    let mut exact_at = Instant::now();
    let mut exact_took = Duration::ZERO;
    let mut last = 0;
    let mut last_progress = Instant::now();
    while exact < want {
        // A store that does not answer its metrics leaves the exact count to decide.
        let stored = stored_by_store(&args.store_metrics).await.ok();
        let estimate = match (base, stored) {
            (Some(base), Some(stored)) => base_rows + stored.saturating_sub(base),
            _ => exact,
        };
        let quiet = stored.is_none() || stored == stored_before;
        stored_before = stored;
        let gap = (exact_took * 5).max(Duration::from_secs(1));
        if (estimate >= want || quiet) && exact_at.elapsed() >= gap {
            exact_at = Instant::now();
            exact = delivered_rows(&mut conn).await?;
            exact_took = exact_at.elapsed();
        }
        let n = estimate.max(exact);
        bar.set_position(n.min(want));
        if n != last {
            last = n;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > stall {
            eprintln!("no commit progress for {stall:?}; {exact} of {want} committed");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
    drop(conn);
    pool.disconnect().await?;
    Ok(())
}

/// Reads every row once the commits are in: lost and duplicated messages against what was
/// accepted, and accept→row latencies. `drain_started`: in burst mode, when delivery began
/// (the end-to-end rate counts from there).
pub async fn check_rows(
    args: &Args,
    submitted: &Submitted,
    drain_started: Option<std::time::SystemTime>,
) -> anyhow::Result<Committed> {
    // UTC like the store's sessions, so UNIX_TIMESTAMP of its DATETIMEs compares with our clock.
    let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&args.mysql_url)?)
        .init(vec!["SET time_zone = '+00:00'"]);
    let pool = mysql_async::Pool::new(opts);
    let mut conn = pool.get_conn().await?;
    let rows: Vec<(String, i64, i64, i64)> = conn
        .query(
            "SELECT message_id, TIMESTAMPDIFF(MICROSECOND, queued_at, created_at), \
             CAST(UNIX_TIMESTAMP(created_at) * 1000 AS SIGNED), \
             CAST(UNIX_TIMESTAMP(queued_at) * 1000 AS SIGNED) FROM messages",
        )
        .await?;
    let mut e2e_us = Histogram::new_with_bounds(1, 3_600_000_000, 3)?;
    let mut seen = HashSet::with_capacity(rows.len());
    let mut duplicates = 0;
    let mut last_commit_ms = 0;
    let mut queued = Vec::new();
    for (id, us, at_ms, queued_ms) in &rows {
        if !seen.insert(id.as_str()) {
            duplicates += 1;
        }
        e2e_us.record((*us).max(1) as u64)?;
        last_commit_ms = last_commit_ms.max(*at_ms);
        if args.timeline.is_some() {
            queued.push((*queued_ms, (*us).max(1) as u64));
        }
    }
    let lost = submitted
        .accepted_ids
        .iter()
        .filter(|id| !seen.contains(id.as_str()))
        .count();
    let first_ms = drain_started
        .unwrap_or(submitted.started_wall)
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    drop(conn);
    pool.disconnect().await?;
    Ok(Committed {
        rows: rows.len() as u64,
        lost,
        duplicates,
        elapsed: Duration::from_millis((last_commit_ms - first_ms).max(1) as u64),
        e2e_us,
        queued,
    })
}

/// The store's count of messages it upserted as delivered (`mb_store_messages_stored_total`,
/// counted after each commit), from its metrics endpoint at `addr` (host:port), within 2 s.
pub async fn stored_by_store(addr: &str) -> anyhow::Result<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let scrape = async {
        let mut con = tokio::net::TcpStream::connect(addr).await?;
        let ask = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        con.write_all(ask.as_bytes()).await?;
        let mut text = String::new();
        con.read_to_string(&mut text).await?;
        anyhow::Ok(text)
    };
    let text = tokio::time::timeout(Duration::from_secs(2), scrape)
        .await
        .map_err(|_| anyhow::anyhow!("http://{addr}/metrics did not answer within 2 s"))??;
    text.lines()
        .find_map(|l| l.strip_prefix("mb_store_messages_stored_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| {
            anyhow::anyhow!("no mb_store_messages_stored_total at http://{addr}/metrics")
        })
}

/// Rows committed as delivered (a scan of the table).
async fn delivered_rows(conn: &mut mysql_async::Conn) -> anyhow::Result<u64> {
    let n: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM messages WHERE status = 'delivered'")
        .await?;
    Ok(n.unwrap_or(0))
}

/// Raw MariaDB ceiling on this machine: multi-row inserts (256 rows per statement, like the
/// store) of rows shaped like ours into a scratch copy of the table. Returns rows per second.
pub async fn mysql_ceiling(url: &str, rows: usize) -> anyhow::Result<f64> {
    let pool = mysql_async::Pool::new(url);
    let mut conn = pool.get_conn().await?;
    conn.query_drop("DROP TABLE IF EXISTS bench_ceiling")
        .await?;
    conn.query_drop("CREATE TABLE bench_ceiling LIKE messages")
        .await?;
    let body = format!("k1:{}", "A".repeat(240));
    let hash = "0".repeat(64);
    let started = Instant::now();
    for chunk_start in (0..rows).step_by(256) {
        let n = 256.min(rows - chunk_start);
        let row = "(?, ?, 'example.com', ?, '+141****0000', ?, 1, 'delivered', 1, NULL, NULL, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))";
        let sql = format!(
            "INSERT INTO bench_ceiling (message_id, client_id, domain, sender_hash, sender_mask, body_ciphertext, \
             key_id, status, attempt_count, last_error, submitted_at, queued_at, delivered_at) VALUES {}",
            vec![row; n].join(", ")
        );
        let mut params: Vec<mysql_async::Value> = Vec::with_capacity(n * 4);
        for i in chunk_start..chunk_start + n {
            params.push(format!("00000000-0000-7000-8000-{i:012}").into());
            params.push(hash.clone().into());
            params.push(hash.clone().into());
            params.push(body.clone().into());
        }
        conn.exec_drop(sql, mysql_async::Params::Positional(params))
            .await?;
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    conn.query_drop("DROP TABLE bench_ceiling").await?;
    drop(conn);
    pool.disconnect().await?;
    Ok(rate)
}
