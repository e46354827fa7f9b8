//! `mbctl seed`: fill `messages` with realistic rows, straight into MySQL, for load tests of
//! the portal (a million rows in well under a minute). Each row is what delivery would have
//! written: a UUIDv7 message id (spread over the last `--days` days, so the list, date filters
//! and cursors behave as in production), a body encrypted with the keyring in `<home>`, the
//! sender HMAC'd with its HMAC key and masked, a status (1 in `--failed-every` failed).
//! Not for production databases: the rows are made up.

use crate::cli::Cli;
use mb_shared::crypto::{HmacKey, Keyring};
use mb_shared::message::{MessageId, mask_sender};
use mysql_async::prelude::*;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct SeedArgs {
    /// Rows to add.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[arg(long, default_value = "example.com")]
    domain: String,
    /// Client name of the rows (`demo` of `demo.example.com`).
    #[arg(long, default_value = "demo")]
    client: String,
    /// The rows' times spread over this many past days.
    #[arg(long, default_value_t = 30)]
    days: u64,
    /// Every Nth row is `failed`.
    #[arg(long, default_value_t = 100)]
    failed_every: u64,
    /// Distinct sender numbers.
    #[arg(long, default_value_t = 1000)]
    senders: u64,
}

/// Rows per INSERT.
const CHUNK: u64 = 1000;

pub async fn run(cli: &Cli, args: &SeedArgs) -> anyhow::Result<()> {
    let keyring = Keyring::load(&cli.secrets_dir().join("keyring.json"))?;
    let hmac = HmacKey::load(&cli.secrets_dir().join("hmac.key"))?;
    let db = cli.db()?;
    let client_id = format!("{:064x}", u128::from_str_radix("5eed", 16)?);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let span_ms = Duration::from_secs(args.days * 86_400).as_millis() as u64;
    let senders: Vec<(String, String)> = (0..args.senders)
        .map(|i| {
            let n = format!("+1555{:07}", 1_000_000 + i);
            (hmac.sender_hash(&n), mask_sender(&n))
        })
        .collect();
    let started = Instant::now();
    let mut conn = db.pool().get_conn().await?;
    let mut done = 0;
    while done < args.messages {
        let n = CHUNK.min(args.messages - done);
        let mut params: Vec<mysql_async::Value> = Vec::with_capacity(n as usize * 9);
        for i in done..done + n {
            let at = now_ms - span_ms + span_ms * i / args.messages.max(1);
            let id = MessageId(uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                at / 1000,
                ((at % 1000) * 1_000_000) as u32,
            )))
            .to_string();
            let (hash, mask) = &senders[(i % args.senders.max(1)) as usize];
            let body = keyring.encrypt(
                id.as_bytes(),
                format!("Seeded message {i}: your code is {:06}.", i % 1_000_000).as_bytes(),
            );
            let failed = args.failed_every > 0 && i % args.failed_every == 0;
            params.extend([
                id.into(),
                client_id.as_str().into(),
                args.client.as_str().into(),
                args.domain.as_str().into(),
                hash.as_str().into(),
                mask.as_str().into(),
                mb_shared::crypto::key_id(&body).unwrap_or(0).into(),
                body.into(),
                (if failed { "failed" } else { "delivered" }).into(),
            ]);
        }
        let rows =
            vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, 1, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))"; n as usize]
                .join(", ");
        conn.exec_drop(
            format!(
                "INSERT INTO messages (message_id, client_id, client_name, domain, sender_hash, \
                 sender_mask, key_id, body_ciphertext, status, attempt_count, queued_at, delivered_at) \
                 VALUES {rows}"
            ),
            params,
        )
        .await?;
        done += n;
        if done % 100_000 == 0 || done == args.messages {
            eprintln!(
                "seeded {done} rows ({:.0} rows/s)",
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    conn.query_drop("ANALYZE TABLE messages").await?;
    drop(conn);
    db.close().await;
    println!("seeded {} rows into {}", args.messages, args.domain);
    Ok(())
}
