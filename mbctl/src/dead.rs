//! `mbctl dead list|redrive DOMAIN`: a domain's dead letters, and putting them back on the
//! stream once the cause is fixed (one atomic script per letter, see `mb_shared::streams`).

use mb_shared::domains::Domain;
use mb_shared::streams;
use redis::AsyncCommands;
use redis::streams::StreamRangeReply;

#[derive(clap::Subcommand)]
pub enum DeadCommand {
    /// List a domain's dead letters with their last error.
    List { domain: String },
    /// Put a domain's dead letters back on its stream for delivery.
    Redrive { domain: String },
}

pub async fn run(cli: &crate::cli::Cli, cmd: &DeadCommand) -> anyhow::Result<()> {
    let mut con = crate::streams::connect(cli.redis_url()?).await?;
    match cmd {
        DeadCommand::List { domain } => list(&mut con, &parse(domain)?).await,
        DeadCommand::Redrive { domain } => redrive(cli, &mut con, &parse(domain)?).await,
    }
}

fn parse(d: &str) -> anyhow::Result<Domain> {
    Domain::parse(d).map_err(anyhow::Error::msg)
}

async fn list(con: &mut mb_shared::redis_conn::RedisConn, domain: &Domain) -> anyhow::Result<()> {
    let reply: StreamRangeReply = con.xrange_all(streams::dead_key(domain)).await?;
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
        streams::dead_key(domain)
    );
    Ok(())
}

/// Moves the dead letters back, then marks their rows `queued` again (they were `failed`).
async fn redrive(
    cli: &crate::cli::Cli,
    con: &mut mb_shared::redis_conn::RedisConn,
    domain: &Domain,
) -> anyhow::Result<()> {
    let db = cli.db()?;
    let moved = streams::redrive_all(con, domain).await?;
    let marked =
        mb_db::messages::mark_redriven(&db, domain.as_str(), &moved, &crate::cli::actor()).await;
    db.close().await;
    marked?;
    println!(
        "redrove {} dead letter(s) onto {}",
        moved.len(),
        streams::stream_key(domain)
    );
    Ok(())
}
