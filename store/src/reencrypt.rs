//! Re-encryption of stored bodies after a key rotation. When the keyring's active key changes
//! (`mbctl keys rotate`, picked up by [`mb_shared::crypto::LiveKeyring`]) or the store starts,
//! one store (a MySQL named lock) walks `messages` by `message_id` (the primary key) and moves every body under an older
//! key to the active one, `batch` rows per transaction. The transaction also advances
//! `key_rotations.cursor_message_id`, so a killed store resumes where it stopped and no row is done
//! twice. Rows written meanwhile are already under the active key (`internal::to_active_key`);
//! a last check finds any row a store with a stale keyring wrote behind the cursor and starts
//! the walk again.

use crate::AppState;
use crate::config::Reencrypt;
use mb_db::keys;
use mysql_async::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// One store at a time re-encrypts; the lock goes with the connection if the store dies.
const LOCK: &str = "mb_reencrypt";
/// How soon to try again when another store held the lock.
const LOCKED_RECHECK: Duration = Duration::from_secs(60);

/// Runs until the store stops: a pass at start, then one after each keyring change.
pub(crate) async fn run(app: Arc<AppState>, cfg: Reencrypt) {
    let mut changed = app.keyring.subscribe();
    loop {
        let recheck = match pass(&app, &cfg).await {
            Ok(true) => None,
            Ok(false) => Some(LOCKED_RECHECK),
            Err(e) => {
                tracing::error!(error = %e, "re-encryption stopped; it resumes shortly");
                Some(Duration::from_secs(5))
            }
        };
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            () = tokio::time::sleep(recheck.unwrap_or(Duration::MAX)), if recheck.is_some() => {}
        }
    }
}

/// One pass if this store gets the lock; `false` if another store holds it.
async fn pass(app: &AppState, cfg: &Reencrypt) -> Result<bool, mysql_async::Error> {
    let mut lock = app.db.pool().get_conn().await?;
    // If RELEASE_LOCK below never runs, the reset on return to the pool releases the lock.
    lock.reset_connection(true);
    let got: Option<i64> = lock.exec_first("SELECT GET_LOCK(?, 0)", (LOCK,)).await?;
    if got != Some(1) {
        return Ok(false);
    }
    let result = walk(app, cfg).await;
    lock.exec_drop("DO RELEASE_LOCK(?)", (LOCK,)).await?;
    result.map(|()| true)
}

/// Moves every row to the active key, or returns when the active key changes under it.
async fn walk(app: &AppState, cfg: &Reencrypt) -> Result<(), mysql_async::Error> {
    let active = app.keyring.get().active_key_id();
    let mut conn = app.db.pool().get_conn().await?;
    let started = match keys::rotation(&app.db, active).await? {
        Some(r) if r.finished() => return Ok(()),
        Some(r) => r,
        None => {
            let left = rows_left(&mut conn, active).await?;
            if left == 0 {
                // Nothing to do (a new database): remember it, so the next start skips the scan.
                conn.exec_drop(
                    "INSERT IGNORE INTO key_rotations (key_id, rows_total, finished_at) \
                     VALUES (?, 0, UTC_TIMESTAMP(3))",
                    (active,),
                )
                .await?;
                return Ok(());
            }
            conn.exec_drop(
                "INSERT INTO key_rotations (key_id, rows_total) VALUES (?, ?)",
                (active, left),
            )
            .await?;
            tracing::info!(
                key_id = active,
                rows = left,
                "re-encrypting stored bodies under the active key"
            );
            keys::rotation(&app.db, active)
                .await?
                .expect("the row was just written")
        }
    };
    let mut cursor = started.cursor_message_id;
    let mut unreadable = 0u64;
    loop {
        let keyring = app.keyring.get_full();
        if keyring.active_key_id() != active {
            return Ok(()); // rotated again: the next pass moves everything to the newer key
        }
        let rows: Vec<(String, String)> = conn
            .exec(
                "SELECT message_id, body_ciphertext FROM messages \
                 WHERE message_id > ? AND key_id <> ? ORDER BY message_id LIMIT ?",
                (&cursor, active, cfg.batch),
            )
            .await?;
        let Some(last) = rows.last().map(|(id, _)| id.clone()) else {
            let left = rows_left(&mut conn, active).await?;
            if left > unreadable {
                // Written behind the cursor by a store that had not reloaded yet: walk again.
                cursor = NIL_ID.into();
                unreadable = 0;
                continue;
            }
            if left > 0 {
                tracing::error!(
                    key_id = active,
                    rows = left,
                    "rows whose bodies do not decrypt keep their old key; do not retire it"
                );
            }
            conn.exec_drop(
                "UPDATE key_rotations SET cursor_message_id = ?, finished_at = UTC_TIMESTAMP(3) \
                 WHERE key_id = ?",
                (&cursor, active),
            )
            .await?;
            tracing::info!(key_id = active, "re-encryption finished");
            return Ok(());
        };
        let mut updates = Vec::with_capacity(rows.len());
        for (message_id, body) in &rows {
            match keyring.reencrypt(message_id.as_bytes(), body) {
                Ok(new) => updates.push((new, active, message_id)),
                Err(e) => {
                    unreadable += 1;
                    tracing::error!(%message_id, error = %e, "stored body does not decrypt");
                }
            }
        }
        let mut tx = conn
            .start_transaction(mysql_async::TxOpts::default())
            .await?;
        // The key_id guard leaves a row alone if something else moved it meanwhile.
        tx.exec_batch(
            "UPDATE messages SET body_ciphertext = ?, key_id = ? \
             WHERE message_id = ? AND key_id <> ?",
            updates.iter().map(|(b, k, id)| (b, k, id, active)),
        )
        .await?;
        tx.exec_drop(
            "UPDATE key_rotations SET cursor_message_id = ?, rows_done = rows_done + ? WHERE key_id = ?",
            (&last, updates.len(), active),
        )
        .await?;
        tx.commit().await?;
        app.metrics.reencrypted_rows.inc_by(updates.len() as u64);
        cursor = last;
        if !cfg.pause.is_zero() {
            tokio::time::sleep(cfg.pause).await;
        }
    }
}

/// The message id before every other: where a walk starts.
const NIL_ID: &str = "00000000-0000-0000-0000-000000000000";

/// Rows whose body is under another key than `active` (a scan of the table).
async fn rows_left(conn: &mut mysql_async::Conn, active: u32) -> Result<u64, mysql_async::Error> {
    let n: Option<u64> = conn
        .exec_first("SELECT COUNT(*) FROM messages WHERE key_id <> ?", (active,))
        .await?;
    Ok(n.unwrap_or(0))
}
