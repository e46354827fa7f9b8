//! `mbctl keys`: rotation of the body encryption keyring. `rotate` adds a key and makes it the
//! key for new messages; the services reload the keyring file (within `keyring_reload`, or at
//! once on SIGHUP) and the store re-encrypts the stored bodies in the background, which
//! `rotate` follows with a progress bar. `retire` removes an old key once no row and no stream
//! entry needs it. The HMAC key of sender numbers is not rotated this way: see
//! docs/operations.md ("Rotating keys").

use crate::cli::Cli;
use mb_db::keys::{self, Rotation};
use mb_shared::crypto::Keyring;
use mb_shared::streams;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Add a key, make it the key for new messages, and follow the re-encryption of the stored
    /// bodies (Ctrl-C stops following; the store carries on).
    Rotate {
        /// Return once the key is added.
        #[arg(long)]
        no_wait: bool,
        /// Give up following after this long (e.g. 30s, 2h).
        #[arg(long, default_value = "24h", value_parser = mb_shared::config::parse_duration)]
        timeout: Duration,
    },
    /// Follow a running re-encryption to completion.
    Wait {
        #[arg(long, default_value = "24h", value_parser = mb_shared::config::parse_duration)]
        timeout: Duration,
    },
    /// The keys, how many stored rows and stream entries each still encrypts, and the progress
    /// of the last rotation.
    Status,
    /// Remove a key from the keyring; refused while any row or stream entry uses it.
    Retire { key_id: u32 },
}

pub async fn run(cli: &Cli, cmd: &KeysCommand) -> anyhow::Result<()> {
    let path = cli.secrets_dir().join("keyring.json");
    match cmd {
        KeysCommand::Rotate { no_wait, timeout } => {
            let id = Keyring::add_key_to_file(&path)?;
            println!(
                "key {id} added to {} and active for new messages; the services pick it up \
                 within their keyring_reload interval (10s by default; SIGHUP: at once)",
                path.display()
            );
            if *no_wait {
                return Ok(());
            }
            follow(cli, id, *timeout).await
        }
        KeysCommand::Wait { timeout } => {
            let id = Keyring::load(&path)?.active_key_id();
            follow(cli, id, *timeout).await
        }
        KeysCommand::Status => status(cli, &path).await,
        KeysCommand::Retire { key_id } => retire(cli, &path, *key_id).await,
    }
}

/// Draws the store's progress on moving rows to `key_id` until it finishes.
async fn follow(cli: &Cli, key_id: u32, timeout: Duration) -> anyhow::Result<()> {
    let db = cli.db()?;
    let deadline = Instant::now() + timeout;
    let mut bar = Bar::new();
    let outcome = loop {
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "re-encryption to key {key_id} not finished after {timeout:?}; \
                 `mbctl keys wait` follows it again"
            ));
        }
        match keys::rotation(&db, key_id).await? {
            None => bar.waiting(key_id),
            Some(r) if r.finished() => {
                bar.draw(&r);
                break Ok(r);
            }
            Some(r) => bar.draw(&r),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    bar.end();
    db.close().await;
    let r = outcome?;
    println!(
        "re-encryption to key {key_id} finished: {} rows re-encrypted",
        r.rows_done
    );
    Ok(())
}

/// A one-line progress bar (a line every few seconds when stderr is not a terminal).
struct Bar {
    tty: bool,
    started: Instant,
    first_done: Option<u64>,
    last_line: Option<Instant>,
}

impl Bar {
    fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            first_done: None,
            last_line: None,
        }
    }

    fn waiting(&mut self, key_id: u32) {
        self.emit(&format!(
            "waiting for a store to reload the keyring and start re-encrypting to key {key_id}"
        ));
    }

    fn draw(&mut self, r: &Rotation) {
        let first = *self.first_done.get_or_insert(r.rows_done);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = (r.rows_done.saturating_sub(first)) as f64 / secs;
        let total = r.rows_total.max(r.rows_done).max(1);
        let width = 30;
        let filled = (r.rows_done * width / total) as usize;
        let eta = if r.finished() {
            "done".to_owned()
        } else if rate > 0.0 {
            let s = (total - r.rows_done) as f64 / rate;
            format!("ETA {}:{:02}", (s / 60.0) as u64, (s % 60.0) as u64)
        } else {
            "ETA -".to_owned()
        };
        self.emit(&format!(
            "[{}{}] {}/{} rows  {:.0} rows/s  {eta}",
            "#".repeat(filled),
            " ".repeat(width as usize - filled),
            r.rows_done,
            total,
            rate
        ));
    }

    fn emit(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
        } else if self
            .last_line
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(2))
        {
            let _ = writeln!(err, "{line}");
            self.last_line = Some(Instant::now());
        }
    }

    fn end(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

async fn status(cli: &Cli, path: &Path) -> anyhow::Result<()> {
    let keyring = Keyring::load(path)?;
    let active = keyring.active_key_id();
    let db = cli.db()?;
    let rows: BTreeMap<u32, u64> = keys::rows_per_key(&db).await?.into_iter().collect();
    let rotation = keys::rotation(&db, active).await?;
    db.close().await;
    let entries = match &cli.redis_url {
        Some(url) => Some(stream_entries_per_key(url).await?),
        None => None,
    };
    println!(
        "{:<5} {:<7} {:>12} {:>15}",
        "KEY", "ACTIVE", "ROWS", "STREAM ENTRIES"
    );
    let mut ids: Vec<u32> = keyring.key_ids();
    ids.extend(rows.keys());
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let in_ring = keyring.has_key(id);
        println!(
            "{:<5} {:<7} {:>12} {:>15}{}",
            id,
            if id == active { "yes" } else { "" },
            rows.get(&id).copied().unwrap_or(0),
            entries
                .as_ref()
                .map_or("?".into(), |e| e.get(&id).copied().unwrap_or(0).to_string()),
            if in_ring {
                ""
            } else {
                "  NOT IN THE KEYRING: these rows cannot be read"
            }
        );
    }
    match rotation {
        Some(r) if r.finished() => println!(
            "re-encryption to key {active}: finished ({} rows re-encrypted)",
            r.rows_done
        ),
        Some(r) => println!(
            "re-encryption to key {active}: running, {}/{} rows",
            r.rows_done, r.rows_total
        ),
        None => println!("re-encryption to key {active}: not started (no store has reloaded yet)"),
    }
    if entries.is_none() {
        println!("(stream entries not counted: give --redis-url or MB_REDIS_URL)");
    }
    Ok(())
}

async fn retire(cli: &Cli, path: &Path, key_id: u32) -> anyhow::Result<()> {
    let keyring = Keyring::load(path)?;
    anyhow::ensure!(
        keyring.has_key(key_id),
        "key {key_id} is not in {}",
        path.display()
    );
    anyhow::ensure!(
        keyring.active_key_id() != key_id,
        "key {key_id} is the active key; rotate first (mbctl keys rotate)"
    );
    let db = cli.db()?;
    let rows = keys::rows_per_key(&db).await?;
    db.close().await;
    let stored = rows
        .iter()
        .find(|(k, _)| *k == key_id)
        .map_or(0, |(_, n)| *n);
    anyhow::ensure!(
        stored == 0,
        "{stored} stored rows still use key {key_id}; wait for the re-encryption \
         (mbctl keys wait) and try again"
    );
    let entries = stream_entries_per_key(cli.redis_url()?).await?;
    let queued = entries.get(&key_id).copied().unwrap_or(0);
    anyhow::ensure!(
        queued == 0,
        "{queued} stream entries (queued or dead letters) still use key {key_id}; let them be \
         delivered, redrive or drop the dead letters, and try again"
    );
    Keyring::remove_key_from_file(path, key_id)?;
    println!(
        "key {key_id} removed from {}; keep the backup copies of the old keyring \
         (ops/backup) for restoring old database dumps",
        path.display()
    );
    Ok(())
}

/// Entries per key id over every domain's stream and dead-letter stream.
pub(crate) async fn stream_entries_per_key(url: &str) -> anyhow::Result<BTreeMap<u32, u64>> {
    let mut con = crate::streams::connect(url).await?;
    let mut counts = BTreeMap::new();
    for domain in crate::streams::domains_with_streams(url).await? {
        for key in [streams::stream_key(&domain), streams::dead_key(&domain)] {
            let mut start = "-".to_owned();
            loop {
                let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut con)
                    .await?;
                for e in &reply.ids {
                    let body: Option<String> = e.get("body");
                    if let Some(k) = body.as_deref().and_then(mb_shared::crypto::key_id) {
                        *counts.entry(k).or_insert(0) += 1;
                    }
                }
                match reply.ids.last() {
                    Some(last) if reply.ids.len() == 1000 => start = format!("({}", last.id),
                    _ => break,
                }
            }
        }
    }
    Ok(counts)
}
