//! `mbctl streams`: the operator's view of the queues, per domain.

use mb_shared::domains::Domain;
use mb_shared::streams::{self, GROUP};
use redis::AsyncCommands;
use redis::streams::StreamInfoGroupsReply;

pub(crate) async fn connect(url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    Ok(redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?)
}

/// Domains that have a stream in Redis.
async fn domains_with_streams(
    con: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<Vec<Domain>> {
    let mut domains = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(streams::STREAM_KEY_PATTERN)
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await?;
        domains.extend(keys.iter().filter_map(|k| streams::domain_of_stream_key(k)));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    domains.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    domains.dedup();
    Ok(domains)
}

pub async fn show(url: &str) -> anyhow::Result<()> {
    let mut con = connect(url).await?;
    println!(
        "{:<32} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "DOMAIN", "LENGTH", "PENDING", "LAG", "CONSUMERS", "DEAD"
    );
    for domain in domains_with_streams(&mut con).await? {
        let name = domain.as_str();
        let key = streams::stream_key(&domain);
        let len: u64 = con.xlen(&key).await?;
        let groups: StreamInfoGroupsReply = con.xinfo_groups(&key).await?;
        let group = groups.groups.iter().find(|g| g.name == GROUP);
        let dead: u64 = con.xlen(streams::dead_key(&domain)).await?;
        println!(
            "{:<32} {:>10} {:>10} {:>10} {:>10} {:>10}",
            name,
            len,
            group.map_or(0, |g| g.pending),
            group
                .and_then(|g| g.lag)
                .map_or("-".into(), |l| l.to_string()),
            group.map_or(0, |g| g.consumers),
            dead
        );
    }
    Ok(())
}
