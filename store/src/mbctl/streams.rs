//! `mbctl streams` and `mbctl dead list|redrive`: the operator's view of the queues.

use mb_shared::message::Domain;
use mb_shared::streams::{self, DEAD_FIELDS, GROUP};
use redis::AsyncCommands;
use redis::streams::{StreamInfoGroupsReply, StreamRangeReply};

#[derive(clap::Subcommand)]
pub enum DeadCommand {
    /// List a domain's dead letters with their last error.
    List { domain: String },
    /// Put a domain's dead letters back on its stream for delivery.
    Redrive { domain: String },
}

async fn connect(url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    Ok(redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?)
}

/// Domains that have a stream in Redis.
async fn domains_with_streams(
    con: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("mb:{*}:messages")
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await?;
        names.extend(keys.iter().filter_map(|k| {
            k.strip_prefix("mb:{")
                .and_then(|r| r.strip_suffix("}:messages"))
                .map(str::to_owned)
        }));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    names.sort();
    names.dedup();
    Ok(names)
}

pub async fn show(url: &str) -> anyhow::Result<()> {
    let mut con = connect(url).await?;
    println!(
        "{:<32} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "DOMAIN", "LENGTH", "PENDING", "LAG", "CONSUMERS", "DEAD"
    );
    for name in domains_with_streams(&mut con).await? {
        let domain = Domain::parse(&name).map_err(anyhow::Error::msg)?;
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

pub async fn dead(url: &str, cmd: &DeadCommand) -> anyhow::Result<()> {
    let mut con = connect(url).await?;
    match cmd {
        DeadCommand::List { domain } => {
            let domain = Domain::parse(domain).map_err(anyhow::Error::msg)?;
            let reply: StreamRangeReply = con.xrange_all(streams::dead_key(&domain)).await?;
            println!(
                "{:<20} {:<36} {:>8} {:<24} ERROR",
                "DEAD ID", "MESSAGE ID", "ATTEMPTS", "FAILED AT"
            );
            for e in &reply.ids {
                let get = |k: &str| e.get::<String>(k).unwrap_or_default();
                println!(
                    "{:<20} {:<36} {:>8} {:<24} {}",
                    e.id,
                    get("message_id"),
                    get("attempts"),
                    get("failed_at"),
                    get("error")
                );
            }
            println!(
                "{} dead letter(s) in {}",
                reply.ids.len(),
                streams::dead_key(&domain)
            );
            Ok(())
        }
        DeadCommand::Redrive { domain } => {
            let domain = Domain::parse(domain).map_err(anyhow::Error::msg)?;
            let reply: StreamRangeReply = con.xrange_all(streams::dead_key(&domain)).await?;
            let script = redis::Script::new(streams::REDRIVE);
            let mut moved = 0;
            for e in &reply.ids {
                let fields: Vec<(String, String)> = e
                    .map
                    .keys()
                    .filter(|k| !DEAD_FIELDS.contains(&k.as_str()))
                    .filter_map(|k| e.get::<String>(k).map(|v| (k.clone(), v)))
                    .collect();
                let mut inv = script.prepare_invoke();
                inv.key(streams::dead_key(&domain))
                    .key(streams::stream_key(&domain))
                    .arg(&e.id);
                for (k, v) in &fields {
                    inv.arg(k).arg(v);
                }
                let n: i64 = inv.invoke_async(&mut con).await?;
                moved += n;
            }
            streams::ensure_group(&mut con, &domain).await?;
            println!(
                "redrove {moved} dead letter(s) onto {}",
                streams::stream_key(&domain)
            );
            Ok(())
        }
    }
}
