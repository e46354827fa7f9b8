//! Library shared by every mb service: configuration loading, the message model and its
//! validation, crypto (AES-256-GCM-SIV keyring, HMAC), TLS helpers and the mTLS accept loop,
//! Redis stream names and scripts, the internal wire types between deliver and store, and
//! telemetry (tracing and Prometheus metrics).
//!
//! Services depend on this crate, never on each other.

pub mod config;
pub mod crypto;
pub mod domains;
pub mod error_body;
pub mod identity;
pub mod internal;
pub mod message;
pub mod secret;
pub mod server;
pub mod streams;
pub mod telemetry;
pub mod tls;

/// Current time as an RFC 3339 string with millisecond precision in UTC.
pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

/// `t` in UTC, if it is between the years 1970 and 9999 there (what MySQL DATETIME holds).
pub fn to_storable_utc(t: time::OffsetDateTime) -> Option<time::OffsetDateTime> {
    t.checked_to_offset(time::UtcOffset::UTC)
        .filter(|u| (1970..=9999).contains(&u.year()))
}

/// Formats a timestamp as RFC 3339 in UTC with millisecond precision (`2025-10-20T12:34:56.789Z`).
/// A time that has no UTC representation is formatted in its own offset's fields.
pub fn format_rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.checked_to_offset(time::UtcOffset::UTC).unwrap_or(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}
