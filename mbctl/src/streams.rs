//! `mbctl streams`: the operator's view of the queues, per domain.

use mb_shared::domains::Domain;
use mb_shared::redis_conn::{RedisConn, RedisTarget, Timeouts};
use mb_shared::streams;

/// A connection to the one Redis or the cluster `url` names.
pub(crate) async fn connect(url: &str) -> anyhow::Result<RedisConn> {
    Ok(RedisTarget::parse(url)?.connect(TIMEOUTS).await?)
}

const TIMEOUTS: Timeouts = Timeouts {
    connect: std::time::Duration::from_secs(5),
    response: Some(std::time::Duration::from_secs(10)),
};

/// Domains that have a stream in Redis (on any master of a cluster).
pub(crate) async fn domains_with_streams(url: &str) -> anyhow::Result<Vec<Domain>> {
    let mut domains = Vec::new();
    for mut con in RedisTarget::parse(url)?.masters(TIMEOUTS).await? {
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(streams::STREAM_KEY_PATTERN)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut con)
                .await?;
            domains.extend(keys.iter().filter_map(|k| streams::domain_of_stream_key(k)));
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    domains.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    domains.dedup();
    Ok(domains)
}

/// A consumer that read or claimed within this long is a running worker: readers block for
/// at most a few seconds between reads, and every read resets the idle time.
const LIVE_WITHIN_MS: u64 = 60_000;

pub async fn show(url: &str) -> anyhow::Result<()> {
    let mut con = connect(url).await?;
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "DOMAIN",
        "BACKLOG",
        "WAITING",
        "WAIT AGE",
        "PENDING",
        "PEND AGE",
        "DEAD",
        "LIVE/ALL",
        "DONE/MIN"
    );
    for domain in domains_with_streams(url).await? {
        let st = streams::stats(&mut con, &domain).await?;
        println!(
            "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            st.domain,
            st.backlog,
            st.lag,
            age(st.oldest_waiting_ms),
            st.pending,
            age(st.oldest_pending_ms),
            st.dead_letters,
            format!(
                "{}/{}",
                st.consumers
                    .iter()
                    .filter(|c| c.idle_ms < LIVE_WITHIN_MS)
                    .count(),
                st.consumers.len()
            ),
            st.delivered_last_minute,
        );
    }
    println!(
        "BACKLOG = WAITING (no worker has read them) + PENDING (read, not yet in MySQL); \
         the AGE columns are the oldest one's; LIVE/ALL = consumers that read within {}s / all \
         (a stale one holding nothing is removed by the janitor after an hour)",
        LIVE_WITHIN_MS / 1000
    );
    Ok(())
}

/// `1.2s`, `3m05s`, `-` for none.
fn age(ms: Option<u64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        Some(ms) if ms < 3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        Some(ms) => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}
