//! The portal's message list and detail, in SQL (built here, run by mb-store; the end-to-end
//! tests `EXPLAIN` the very same statements).
//!
//! Newest first, keyset-paginated on `message_id`: a message id is a UUIDv7, whose first 48
//! bits are its millisecond timestamp, so the id order is the submission order, a date range
//! is an id range, and the cursor is simply the last id seen (sent back opaque, base64url).
//! Every query is scoped in SQL by what the caller may read ([`Visibility`]) and reads one
//! descending index forwards ([`list_index`]), `LIMIT n + 1` to know whether a next page
//! exists; no `COUNT(*)`. Every value is a parameter; the sender number is HMAC'd
//! before it is compared, never matched with `LIKE`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mb_shared::crypto::HmacKey;
use mb_shared::message::{FieldErrors, MessageId, is_e164};
use mb_shared::status::MessageStatus;
use mysql_async::Value;
use mysql_async::prelude::FromRow;

/// What a portal user may read.
#[derive(Debug, Clone)]
pub enum Visibility {
    /// One client's messages (role `user`).
    Client { domain: String, client: String },
    /// A domain's (role `admin`).
    Domain(String),
    /// Everything (role `superadmin`).
    All,
}

/// The filters of the list as the caller gave them (query parameters, all optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListIn {
    /// First day (`YYYY-MM-DD`, UTC) or instant (RFC 3339) included.
    pub from: Option<String>,
    /// Last day included, or instant excluded.
    pub to: Option<String>,
    /// Comma-separated statuses.
    pub status: Option<String>,
    /// A sender number (E.164); compared by its HMAC.
    pub sender: Option<String>,
    /// One message id.
    pub id: Option<String>,
    /// A client name (administrators).
    pub client: Option<String>,
    pub min_attempts: Option<u32>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// Largest page.
pub const MAX_LIMIT: u32 = 200;
const DEFAULT_LIMIT: u32 = 50;

/// The checked filters.
#[derive(Debug, PartialEq)]
pub struct Filter {
    /// `message_id >= from_id`
    from_id: Option<String>,
    /// `message_id < to_id`
    to_id: Option<String>,
    statuses: Vec<MessageStatus>,
    sender_hash: Option<String>,
    message_id: Option<String>,
    client: Option<String>,
    min_attempts: Option<u32>,
    /// `message_id < before` (the cursor).
    before: Option<String>,
    pub limit: u32,
}

impl ListIn {
    /// Checks every filter; names each one that is wrong.
    pub fn check(self, hmac: &HmacKey) -> Result<Filter, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut bad = |field: &str, msg: &str| {
            errors.insert(field.to_owned(), msg.to_owned());
        };
        let blank = |s: Option<String>| s.filter(|v| !v.trim().is_empty());
        let from_id = blank(self.from).and_then(|t| {
            let b = start_of(&t);
            if b.is_none() {
                bad("from", "must be a date (YYYY-MM-DD) or an RFC 3339 time");
            }
            b.map(id_at)
        });
        let to_id = blank(self.to).and_then(|t| {
            let b = end_of(&t);
            if b.is_none() {
                bad("to", "must be a date (YYYY-MM-DD) or an RFC 3339 time");
            }
            b.map(id_at)
        });
        let mut statuses = Vec::new();
        for s in blank(self.status).iter().flat_map(|s| s.split(',')) {
            match s.trim().parse::<MessageStatus>() {
                Ok(st) if !statuses.contains(&st) => statuses.push(st),
                Ok(_) => {}
                Err(e) => bad("status", &e),
            }
        }
        let sender_hash = blank(self.sender).and_then(|s| {
            let s = s.trim().to_owned();
            if is_e164(&s) {
                Some(hmac.sender_hash(&s))
            } else {
                bad("sender", "must be an E.164 number, e.g. +14155550123");
                None
            }
        });
        let message_id = blank(self.id).and_then(|s| match MessageId::parse(s.trim()) {
            Some(id) => Some(id.to_string()),
            None => {
                bad("id", "must be a message id (a UUID)");
                None
            }
        });
        let before = blank(self.cursor).and_then(|c| {
            let id = decode_cursor(&c);
            if id.is_none() {
                bad("cursor", "is not a cursor this list gave");
            }
            id
        });
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            bad("limit", &format!("must be between 1 and {MAX_LIMIT}"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Filter {
            from_id,
            to_id,
            statuses,
            sender_hash,
            message_id,
            client: blank(self.client).map(|c| c.trim().to_owned()),
            min_attempts: self.min_attempts.filter(|n| *n > 0),
            before,
            limit,
        })
    }
}

/// The scope clause of what `v` may read.
fn scope(v: &Visibility, params: &mut Vec<Value>) -> &'static str {
    match v {
        Visibility::Client { domain, client } => {
            params.push(domain.as_str().into());
            params.push(client.as_str().into());
            "domain = ? AND client_name = ?"
        }
        Visibility::Domain(d) => {
            params.push(d.as_str().into());
            "domain = ?"
        }
        Visibility::All => "TRUE",
    }
}

/// Columns of a listed or shown message.
pub const COLUMNS: &str = "message_id, client_name, domain, sender_mask, body_ciphertext, \
     status, attempt_count, last_error, \
     CAST(UNIX_TIMESTAMP(queued_at) * 1000 AS SIGNED) AS queued_ms, \
     CAST(UNIX_TIMESTAMP(delivered_at) * 1000 AS SIGNED) AS delivered_ms, \
     CAST(UNIX_TIMESTAMP(updated_at) * 1000 AS SIGNED) AS updated_ms";

#[derive(Debug, FromRow)]
pub struct Row {
    pub message_id: String,
    pub client_name: String,
    pub domain: String,
    pub sender_mask: String,
    pub body_ciphertext: String,
    pub status: MessageStatus,
    pub attempt_count: u32,
    pub last_error: Option<String>,
    pub queued_ms: i64,
    pub delivered_ms: Option<i64>,
    pub updated_ms: i64,
}

/// The index a list reads: one that starts with what the scope and the filter fix
/// (a sender, a client, a domain) and goes on with `message_id DESC, status, attempt_count`
/// (V5), so the page is one forward index range from the cursor and the status and attempts
/// filters are checked in the index. Named, not left to the optimizer: with ORDER BY … LIMIT
/// MariaDB would sometimes read a scope from its newest row down to the cursor instead.
pub fn list_index(v: &Visibility, f: &Filter) -> &'static str {
    match v {
        _ if f.sender_hash.is_some() => "ix_messages_sender",
        Visibility::Client { .. } => "ix_messages_client",
        Visibility::Domain(_) if f.client.is_some() => "ix_messages_client",
        Visibility::Domain(_) => "ix_messages_domain",
        Visibility::All => "ix_messages_recent",
    }
}

/// The list query: SQL and parameters.
pub fn list_query(v: &Visibility, f: &Filter) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let mut sql = format!(
        "SELECT {COLUMNS} FROM messages FORCE INDEX ({}) WHERE {}",
        list_index(v, f),
        scope(v, &mut params)
    );
    let mut and = |clause: &str, values: Vec<Value>| {
        sql.push_str(" AND ");
        sql.push_str(clause);
        params.extend(values);
    };
    if let Some(c) = &f.client
        && !matches!(v, Visibility::Client { .. })
    {
        and("client_name = ?", vec![c.as_str().into()]);
    }
    if let Some(h) = &f.sender_hash {
        and("sender_hash = ?", vec![h.as_str().into()]);
    }
    if let Some(id) = &f.message_id {
        and("message_id = ?", vec![id.as_str().into()]);
    }
    if let Some(id) = &f.from_id {
        and("message_id >= ?", vec![id.as_str().into()]);
    }
    if let Some(id) = &f.to_id {
        and("message_id < ?", vec![id.as_str().into()]);
    }
    if let Some(id) = &f.before {
        and("message_id < ?", vec![id.as_str().into()]);
    }
    if !f.statuses.is_empty() {
        let marks = vec!["?"; f.statuses.len()].join(", ");
        and(
            &format!("status IN ({marks})"),
            f.statuses.iter().map(|s| (*s).into()).collect(),
        );
    }
    if let Some(n) = f.min_attempts {
        and("attempt_count >= ?", vec![n.into()]);
    }
    sql.push_str(" ORDER BY message_id DESC LIMIT ?");
    params.push((f.limit + 1).into());
    (sql, params)
}

/// The detail query of one message, scoped the same way.
pub fn detail_query(v: &Visibility, id: &MessageId) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let sql = format!(
        "SELECT {COLUMNS} FROM messages WHERE {} AND message_id = ?",
        scope(v, &mut params)
    );
    params.push(id.to_string().into());
    (sql, params)
}

pub fn encode_cursor(message_id: &str) -> Option<String> {
    MessageId::parse(message_id).map(|id| URL_SAFE_NO_PAD.encode(id.0.as_bytes()))
}

fn decode_cursor(c: &str) -> Option<String> {
    let bytes: [u8; 16] = URL_SAFE_NO_PAD.decode(c.trim()).ok()?.try_into().ok()?;
    Some(uuid::Uuid::from_bytes(bytes).to_string())
}

/// The smallest UUIDv7 at millisecond `ms`: every id made at or after it sorts at or after it.
fn id_at(ms: i64) -> String {
    let ms = ms.clamp(0, (1 << 48) - 1) as u64;
    format!(
        "{:08x}-{:04x}-0000-0000-000000000000",
        ms >> 16,
        ms & 0xffff
    )
}

/// Milliseconds of the start of a day or of an instant.
fn start_of(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Some(ms) = mb_shared::time::parse_rfc3339(t) {
        return Some((ms.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let day =
        time::Date::parse(t, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(day.midnight().assume_utc().unix_timestamp() * 1000)
}

/// Milliseconds of the end of a day (the next midnight), or of an instant.
fn end_of(text: &str) -> Option<i64> {
    let t = text.trim();
    if mb_shared::time::parse_rfc3339(t).is_some() {
        return start_of(t);
    }
    start_of(t).map(|ms| ms + 86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hmac() -> HmacKey {
        HmacKey::from_bytes(&[3; 32])
    }

    #[test]
    fn every_bad_filter_is_named() {
        let errs = ListIn {
            from: Some("yesterday".into()),
            status: Some("delivered,lost".into()),
            sender: Some("+1' OR '1'='1".into()),
            id: Some("%".into()),
            cursor: Some("not-a-cursor".into()),
            limit: Some(5000),
            ..Default::default()
        }
        .check(&hmac())
        .unwrap_err();
        let keys: Vec<&str> = errs.keys().map(String::as_str).collect();
        assert_eq!(keys, ["cursor", "from", "id", "limit", "sender", "status"]);
    }

    #[test]
    fn dates_become_id_ranges_and_the_sender_its_hash() {
        let f = ListIn {
            from: Some("2025-10-20".into()),
            to: Some("2025-10-20".into()),
            sender: Some("+14155550123".into()),
            status: Some("failed, delivered,failed".into()),
            ..Default::default()
        }
        .check(&hmac())
        .unwrap();
        // 2025-10-20T00:00:00Z = 1760918400000 ms; the next midnight 86,400,000 ms later.
        assert_eq!(
            f.from_id.as_deref(),
            Some("0199feea-6c00-0000-0000-000000000000")
        );
        assert_eq!(
            f.to_id.as_deref(),
            Some("019a0410-c800-0000-0000-000000000000")
        );
        assert_eq!(f.sender_hash, Some(hmac().sender_hash("+14155550123")));
        assert_eq!(
            f.statuses,
            [MessageStatus::Failed, MessageStatus::Delivered]
        );
        assert_eq!(f.limit, DEFAULT_LIMIT);
    }

    #[test]
    fn the_query_is_scoped_parameterized_and_keyset_ordered() {
        let f = ListIn {
            status: Some("failed".into()),
            client: Some("x' OR 1=1 --".into()),
            ..Default::default()
        }
        .check(&hmac())
        .unwrap();
        let v = Visibility::Domain("example.com".into());
        let (sql, params) = list_query(&v, &f);
        assert!(
            sql.contains("WHERE domain = ? AND client_name = ? AND status IN (?)"),
            "{sql}"
        );
        assert!(sql.ends_with("ORDER BY message_id DESC LIMIT ?"));
        assert!(!sql.contains("OR 1=1"));
        assert_eq!(params.len(), 4);
        // A user's own client scope cannot be widened by a client filter.
        let user = Visibility::Client {
            domain: "example.com".into(),
            client: "demo".into(),
        };
        let (sql, _) = list_query(&user, &f);
        assert_eq!(sql.matches("client_name = ?").count(), 1, "{sql}");
    }

    #[test]
    fn a_cursor_is_the_last_id_opaquely() {
        let id = MessageId::new().to_string();
        let c = encode_cursor(&id).unwrap();
        // 16 bytes in URL-safe base64 (which may contain `-`), not the id's text.
        assert_eq!(c.len(), 22);
        assert!(!c.contains(&id[..8]));
        assert_eq!(decode_cursor(&c).as_deref(), Some(id.as_str()));
        assert_eq!(decode_cursor("AAAA"), None);
    }
}
