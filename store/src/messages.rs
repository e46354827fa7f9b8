//! The store's queries on `messages`. Every query is parameterized; batch writes are one
//! multi-row `INSERT … ON DUPLICATE KEY UPDATE`, so a re-delivered message updates its row
//! instead of adding one.

use mb_db::Db;
use mb_shared::internal::{Delivery, Failure, StatusOut};
use mb_shared::message::{ClientId, MessageId};
use mb_shared::status::MessageStatus;
use mb_shared::time::{parse_rfc3339, to_storable_utc};
use mysql_async::prelude::*;
use mysql_async::{Params, Value};

/// The row counts an INSERT statement is prepared for. A chunk of rows is padded up to the
/// next of these by repeating its last row, which the upsert makes a no-op, so each
/// connection prepares at most `2 × STATEMENT_SIZES.len()` INSERTs and keeps them. One
/// statement per batch size (1 to 500, each prepared and cached per connection) had cost
/// MariaDB 1.1 GiB and the store 280 MiB of prepared statements under `ops/bench`. The steps
/// grow by at most 1.5× from 2 on, so padding adds under a fifth of the rows on average.
const STATEMENT_SIZES: [usize; 16] = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256];

/// Rows per INSERT statement; keeps statements well under max_allowed_packet.
const ROWS_PER_STATEMENT: usize = STATEMENT_SIZES[STATEMENT_SIZES.len() - 1];

const COLUMNS: &str = "(message_id, client_id, client_name, domain, sender_hash, sender_mask, \
     body_ciphertext, key_id, status, attempt_count, last_error, submitted_at, queued_at, \
     delivered_at)";

/// A message to write, with its client's name.
pub(crate) struct Named<'a> {
    pub(crate) delivery: &'a Delivery,
    pub(crate) client_name: &'a str,
}

/// Prepared statements cached per connection: every INSERT shape (delivered and failed) and
/// the few other queries the store prepares.
pub(crate) const STATEMENT_CACHE: usize = 2 * STATEMENT_SIZES.len() + 16;

/// Upserts delivered messages. Rows that exist keep their first `delivered_at`.
pub(crate) async fn upsert_delivered(
    db: &Db,
    rows: &[Named<'_>],
) -> Result<(), mysql_async::Error> {
    let mut conn = db.pool().get_conn().await?;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO messages {COLUMNS} VALUES {} ON DUPLICATE KEY UPDATE \
                 status = 'delivered', last_error = NULL, \
                 attempt_count = GREATEST(attempt_count, VALUES(attempt_count)), \
                 delivered_at = COALESCE(delivered_at, VALUES(delivered_at))",
            placeholders(
                padded(chunk.len()),
                "'delivered'",
                "NULL",
                "UTC_TIMESTAMP(3)"
            )
        );
        let mut params = Vec::with_capacity(padded(chunk.len()) * 11);
        for r in chunk {
            push_row(&mut params, r, None);
        }
        pad(&mut params, chunk.len());
        conn.exec_drop(sql, Params::Positional(params)).await?;
    }
    Ok(())
}

/// Records dead-lettered messages as `failed`, unless a delivery already stored them.
pub(crate) async fn upsert_failed(
    db: &Db,
    rows: &[(&Failure, &str)],
) -> Result<(), mysql_async::Error> {
    let mut conn = db.pool().get_conn().await?;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO messages {COLUMNS} VALUES {} ON DUPLICATE KEY UPDATE \
                 status = IF(status = 'delivered', status, 'failed'), \
                 last_error = IF(status = 'delivered', last_error, VALUES(last_error)), \
                 attempt_count = GREATEST(attempt_count, VALUES(attempt_count))",
            placeholders(padded(chunk.len()), "'failed'", "?", "NULL")
        );
        let mut params = Vec::with_capacity(padded(chunk.len()) * 12);
        for (f, client_name) in chunk {
            let row = Named {
                delivery: &f.delivery,
                client_name,
            };
            push_row(&mut params, &row, Some(&f.error));
        }
        pad(&mut params, chunk.len());
        conn.exec_drop(sql, Params::Positional(params)).await?;
    }
    Ok(())
}

/// A message's status row, as a client may see it.
#[derive(FromRow)]
struct StatusRow {
    client_id: String,
    status: MessageStatus,
    attempt_count: u32,
    queued_ms: i64,
    delivered_ms: Option<i64>,
    updated_ms: i64,
}

/// The status of `client`'s message `id`, if it is in the store.
pub(crate) async fn status(
    db: &Db,
    id: &MessageId,
    client: &ClientId,
) -> Result<Option<StatusOut>, mysql_async::Error> {
    let row: Option<StatusRow> = db
        .pool()
        .get_conn()
        .await?
        .exec_first(
            "SELECT client_id, status, attempt_count, \
             CAST(UNIX_TIMESTAMP(queued_at) * 1000 AS SIGNED) AS queued_ms, \
             CAST(UNIX_TIMESTAMP(delivered_at) * 1000 AS SIGNED) AS delivered_ms, \
             CAST(UNIX_TIMESTAMP(updated_at) * 1000 AS SIGNED) AS updated_ms \
             FROM messages WHERE message_id = ? AND client_id = ?",
            (id.to_string(), client.as_str()),
        )
        .await?;
    let ms = mb_shared::time::from_unix_millis;
    Ok(row.map(|r| StatusOut {
        message_id: *id,
        client_id: ClientId(r.client_id),
        status: r.status,
        attempt_count: r.attempt_count,
        queued_at: ms(r.queued_ms),
        delivered_at: r.delivered_ms.map(ms),
        updated_at: ms(r.updated_ms),
    }))
}

/// The statement size that `rows` (at most `ROWS_PER_STATEMENT`) are padded to.
fn padded(rows: usize) -> usize {
    STATEMENT_SIZES
        .into_iter()
        .find(|&size| size >= rows)
        .unwrap_or(ROWS_PER_STATEMENT)
}

/// Repeats the last of `rows` rows in `params` up to the statement's size. Upserting a row
/// twice in one statement leaves it as once: the update clauses only keep what is there.
fn pad(params: &mut Vec<Value>, rows: usize) {
    let per_row = params.len() / rows;
    let last = params[params.len() - per_row..].to_vec();
    for _ in rows..padded(rows) {
        params.extend_from_slice(&last);
    }
}

/// `(?, …, <status>, ?, <error>, ?, ?, <delivered_at>)` repeated `n` times.
fn placeholders(n: usize, status: &str, error: &str, delivered_at: &str) -> String {
    let one = format!("(?, ?, ?, ?, ?, ?, ?, ?, {status}, ?, {error}, ?, ?, {delivered_at})");
    vec![one; n].join(", ")
}

/// One row's parameters; `error` is bound only for failed rows (their `last_error` is a `?`).
fn push_row(params: &mut Vec<Value>, r: &Named<'_>, error: Option<&str>) {
    let d = r.delivery;
    let e = &d.entry;
    params.push(e.message_id.to_string().into());
    params.push(e.client_id.as_str().into());
    params.push(r.client_name.into());
    params.push(e.domain.as_str().into());
    params.push(e.sender_hash.as_str().into());
    params.push(e.sender_mask.as_str().into());
    params.push(e.body.as_str().into());
    params.push(mb_shared::crypto::key_id(&e.body).unwrap_or(0).into());
    params.push(d.attempt.into());
    if let Some(error) = error {
        params.push(truncate(error, 512).into());
    }
    params.push(e.submitted_at.as_deref().and_then(datetime).into());
    params.push(datetime(&e.queued_at).unwrap_or(Value::Date(1970, 1, 1, 0, 0, 0, 0)));
}

/// An RFC 3339 time as a `DATETIME(3)` value in UTC, to the millisecond; `None` if it is not
/// RFC 3339 or outside what MySQL holds. Bound as a date, not as text: neither the store nor
/// MariaDB formats or parses it.
pub(crate) fn datetime(rfc3339: &str) -> Option<Value> {
    let t = to_storable_utc(parse_rfc3339(rfc3339)?)?;
    Some(Value::Date(
        u16::try_from(t.year()).ok()?,
        t.month().into(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        u32::from(t.millisecond()) * 1000,
    ))
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_bound_as_utc_dates_to_the_millisecond() {
        assert_eq!(
            datetime("2025-10-20T14:34:56.789123+02:00"),
            Some(Value::Date(2025, 10, 20, 12, 34, 56, 789_000))
        );
        assert_eq!(datetime("nonsense"), None);
        assert_eq!(datetime("9999-12-31T23:59:59-01:00"), None);
        assert_eq!(datetime("1969-12-31T23:59:59Z"), None);
    }

    #[test]
    fn chunks_are_padded_to_the_next_statement_size() {
        assert_eq!(padded(1), 1);
        assert_eq!(padded(5), 6);
        assert_eq!(padded(97), 128);
        assert_eq!(padded(256), 256);
        assert!(
            STATEMENT_SIZES[1..]
                .windows(2)
                .all(|w| w[1] * 2 <= w[0] * 3)
        );
        let mut params: Vec<Value> = (0..10).map(Value::from).collect();
        pad(&mut params, 5);
        assert_eq!(params.len(), 12);
        assert_eq!(params[10..], params[8..10]);
    }

    #[test]
    fn placeholder_rows_have_eleven_parameters() {
        let p = placeholders(2, "'delivered'", "NULL", "UTC_TIMESTAMP(3)");
        assert_eq!(p.matches('?').count(), 22);
        let p = placeholders(1, "'failed'", "?", "NULL");
        assert_eq!(p.matches('?').count(), 12);
    }
}
