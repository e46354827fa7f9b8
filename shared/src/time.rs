//! Timestamps, in one place: RFC 3339 in UTC with milliseconds on the wire and in Redis
//! (`2025-10-20T12:34:56.789Z`), `YYYY-MM-DD HH:MM:SS.mmm` (UTC) in MySQL `DATETIME(3)`
//! columns, and the range MySQL can hold (years 1970 to 9999).

use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

const RFC3339_MS: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
const MYSQL_MS: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]");

/// The current time as RFC 3339 in UTC with millisecond precision.
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// `t` in UTC, if it is between the years 1970 and 9999 there (what MySQL DATETIME holds).
pub fn to_storable_utc(t: OffsetDateTime) -> Option<OffsetDateTime> {
    t.checked_to_offset(UtcOffset::UTC)
        .filter(|u| (1970..=9999).contains(&u.year()))
}

/// Formats a timestamp as RFC 3339 in UTC with millisecond precision. A time that has no UTC
/// representation (beyond year 9999 there) is formatted in its own offset's fields.
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    let t = t.checked_to_offset(UtcOffset::UTC).unwrap_or(t);
    t.format(RFC3339_MS)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Milliseconds since the Unix epoch as RFC 3339 (UTC, milliseconds).
pub fn from_unix_millis(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format_rfc3339(t)
}

/// Parses any RFC 3339 timestamp.
pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// A time as MySQL `DATETIME(3)` text, in UTC.
pub fn mysql_datetime(t: OffsetDateTime) -> String {
    let t = t.checked_to_offset(UtcOffset::UTC).unwrap_or(t);
    t.format(MYSQL_MS)
        .unwrap_or_else(|_| "1970-01-01 00:00:00.000".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_utc_with_milliseconds() {
        let t = parse_rfc3339("2025-10-20T14:34:56.789123+02:00").unwrap();
        assert_eq!(format_rfc3339(t), "2025-10-20T12:34:56.789Z");
        assert_eq!(mysql_datetime(t), "2025-10-20 12:34:56.789");
    }

    #[test]
    fn unix_millis_format_as_rfc3339() {
        assert_eq!(
            from_unix_millis(1_760_963_696_789),
            "2025-10-20T12:34:56.789Z"
        );
        assert_eq!(from_unix_millis(0), "1970-01-01T00:00:00.000Z");
    }
}
