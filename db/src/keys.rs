//! What the store's re-encryption task and `mbctl keys` share: the progress of a rotation
//! (`key_rotations`) and how many stored bodies each key still encrypts.

use crate::Db;
use mysql_async::prelude::*;

/// The progress of moving stored bodies to one key.
#[derive(Debug, Clone, FromRow)]
pub struct Rotation {
    pub key_id: u32,
    /// `messages.message_id` up to which rows are done (the nil UUID before the first).
    pub cursor_message_id: String,
    pub rows_total: u64,
    pub rows_done: u64,
    pub started_ms: i64,
    pub updated_ms: i64,
    pub finished_ms: Option<i64>,
}

impl Rotation {
    pub fn finished(&self) -> bool {
        self.finished_ms.is_some()
    }
}

/// The rotation to `key_id`, if one was started.
pub async fn rotation(db: &Db, key_id: u32) -> Result<Option<Rotation>, mysql_async::Error> {
    db.pool()
        .get_conn()
        .await?
        .exec_first(
            "SELECT key_id, cursor_message_id, rows_total, rows_done, \
             CAST(UNIX_TIMESTAMP(started_at) * 1000 AS SIGNED) AS started_ms, \
             CAST(UNIX_TIMESTAMP(updated_at) * 1000 AS SIGNED) AS updated_ms, \
             CAST(UNIX_TIMESTAMP(finished_at) * 1000 AS SIGNED) AS finished_ms \
             FROM key_rotations WHERE key_id = ?",
            (key_id,),
        )
        .await
}

/// Stored rows per key id, ascending (a full scan: for `mbctl keys status`, not for a hot path).
pub async fn rows_per_key(db: &Db) -> Result<Vec<(u32, u64)>, mysql_async::Error> {
    db.pool()
        .get_conn()
        .await?
        .query("SELECT key_id, COUNT(*) FROM messages GROUP BY key_id ORDER BY key_id")
        .await
}
