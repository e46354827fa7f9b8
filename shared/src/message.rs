//! The message model: identifiers (`MessageId`, `ClientId`), the client's submission
//! (`MessageIn`) and its validation, and the sender mask. The stream entry that carries a
//! message from ingest to the store is in [`crate::streams`].
//!
//! Validation works on a parsed `serde_json::Value` rather than a derived struct so that every
//! failing field is named in one answer, including unknown ones.

use crate::crypto::HmacKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Longest message body, in Unicode characters (not bytes).
pub const MAX_BODY_CHARS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub uuid::Uuid);

impl MessageId {
    /// A new time-ordered id (UUIDv7), so ids sort by submission time and index well.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    /// A new UUIDv7 whose last 32 bits authenticate it to `client`: the first 32 bits of
    /// HMAC(key, client, first 12 bytes). Ingest can then tell a client's own queued message
    /// from anyone else's id without storing anything per message.
    pub fn issue(key: &HmacKey, client: &ClientId) -> Self {
        let mut bytes = *uuid::Uuid::now_v7().as_bytes();
        let tag = Self::tag(key, client, &bytes);
        bytes[12..].copy_from_slice(&tag);
        Self(uuid::Uuid::from_bytes(bytes))
    }

    /// Whether this id was issued by [`MessageId::issue`] to `client` under `key`.
    pub fn is_issued_to(&self, key: &HmacKey, client: &ClientId) -> bool {
        let bytes = self.0.as_bytes();
        self.0.get_version_num() == 7 && bytes[12..] == Self::tag(key, client, bytes)
    }

    fn tag(key: &HmacKey, client: &ClientId, bytes: &[u8; 16]) -> [u8; 4] {
        let mac = key.tag(&[b"message-id", client.as_str().as_bytes(), &bytes[..12]]);
        [mac[0], mac[1], mac[2], mac[3]]
    }

    /// When the id was made (its UUIDv7 timestamp), as RFC 3339 with milliseconds.
    pub fn created_at(&self) -> Option<String> {
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        let t = time::OffsetDateTime::from_unix_timestamp(secs as i64).ok()?
            + time::Duration::nanoseconds(i64::from(nanos));
        Some(crate::time::format_rfc3339(t))
    }
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s).ok().map(Self)
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A client: the lowercase hex SHA-256 fingerprint of its certificate (DER).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(pub String);

impl ClientId {
    pub fn from_cert_der(der: &[u8]) -> Self {
        use sha2::Digest;
        Self(hex::encode(sha2::Sha256::digest(der)))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageIn {
    pub sender_number: String,
    pub message_body: String,
    pub timestamp: Option<String>,
}

/// Field path → what is wrong with it.
pub type FieldErrors = BTreeMap<String, String>;

/// Whether `s` is an E.164 number: `^\+[1-9]\d{1,14}$`.
pub fn is_e164(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 3
        && b.len() <= 16
        && b[0] == b'+'
        && (b'1'..=b'9').contains(&b[1])
        && b[2..].iter().all(u8::is_ascii_digit)
}

impl MessageIn {
    /// Validates a parsed JSON document; every failing field is reported.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let Some(obj) = v.as_object() else {
            errors.insert("(body)".into(), "must be a JSON object".into());
            return Err(errors);
        };
        for key in obj.keys() {
            if !matches!(key.as_str(), "sender_number" | "message_body" | "metadata") {
                errors.insert(key.clone(), "unknown field".into());
            }
        }
        let sender = check_field(obj, "sender_number", &mut errors, check_sender);
        let body = check_field(obj, "message_body", &mut errors, check_body);
        let timestamp = validate_metadata(obj.get("metadata"), &mut errors);
        match (sender, body) {
            (Some(sender_number), Some(message_body)) if errors.is_empty() => Ok(Self {
                sender_number,
                message_body,
                timestamp,
            }),
            _ => Err(errors),
        }
    }
}

/// A required string field, checked by `check`; what is wrong goes into `errors`.
fn check_field(
    obj: &serde_json::Map<String, serde_json::Value>,
    name: &str,
    errors: &mut FieldErrors,
    check: fn(&str) -> Result<(), String>,
) -> Option<String> {
    let problem = match obj.get(name) {
        None | Some(serde_json::Value::Null) => "is required".to_owned(),
        Some(serde_json::Value::String(s)) => match check(s) {
            Ok(()) => return Some(s.clone()),
            Err(why) => why,
        },
        Some(_) => "must be a string".to_owned(),
    };
    errors.insert(name.to_owned(), problem);
    None
}

fn check_sender(s: &str) -> Result<(), String> {
    if is_e164(s) {
        Ok(())
    } else {
        Err("must be an E.164 number: + then 2 to 15 digits, not starting with 0".into())
    }
}

fn check_body(s: &str) -> Result<(), String> {
    let chars = s.chars().count();
    if chars == 0 || s.trim().is_empty() {
        Err("must not be empty".into())
    } else if chars > MAX_BODY_CHARS {
        Err(format!(
            "must be at most {MAX_BODY_CHARS} characters, got {chars}"
        ))
    } else {
        Ok(())
    }
}

fn validate_metadata(meta: Option<&serde_json::Value>, errors: &mut FieldErrors) -> Option<String> {
    let meta = match meta {
        None | Some(serde_json::Value::Null) => return None,
        Some(serde_json::Value::Object(m)) => m,
        Some(_) => {
            errors.insert("metadata".into(), "must be an object".into());
            return None;
        }
    };
    for key in meta.keys() {
        if !matches!(key.as_str(), "client_id" | "timestamp") {
            errors.insert(format!("metadata.{key}"), "unknown field".into());
        }
    }
    match meta.get("timestamp") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => {
            let parsed =
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339);
            match parsed {
                Ok(t) if crate::time::to_storable_utc(t).is_some() => {
                    Some(crate::time::format_rfc3339(t))
                }
                _ => {
                    errors.insert(
                        "metadata.timestamp".into(),
                        "must be an RFC 3339 timestamp between 1970 and 9999, e.g. 2025-10-20T12:34:56.789Z".into(),
                    );
                    None
                }
            }
        }
        Some(_) => {
            errors.insert("metadata.timestamp".into(), "must be a string".into());
            None
        }
    }
}

/// The mask of a sender number kept for display: `+1234567890` → `+123****7890`. It never
/// shows more than about two thirds of the digits, and short numbers show only their last one.
pub fn mask_sender(number: &str) -> String {
    let digits = &number[1.min(number.len())..];
    let (head, tail) = match digits.len() {
        10.. => (3, 4),
        7..=9 => (2, 2),
        _ => (0, 1),
    };
    let head = &digits[..head.min(digits.len())];
    let tail = &digits[digits.len().saturating_sub(tail)..];
    format!("+{head}****{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn e164_rules() {
        assert!(is_e164("+1234567890"));
        assert!(is_e164("+12"));
        assert!(is_e164("+123456789012345"));
        assert!(!is_e164("+1234567890123456"));
        assert!(!is_e164("+0123"));
        assert!(!is_e164("1234567"));
        assert!(!is_e164("+1"));
        assert!(!is_e164("+12a4"));
    }

    #[test]
    fn body_length_counts_characters_not_bytes() {
        let ok = json!({"sender_number": "+1234567890", "message_body": "é".repeat(1000)});
        assert!(MessageIn::from_json(&ok).is_ok());
        let long = json!({"sender_number": "+1234567890", "message_body": "a".repeat(1001)});
        let errs = MessageIn::from_json(&long).unwrap_err();
        assert!(errs["message_body"].contains("1000"));
    }

    #[test]
    fn every_failing_field_is_named() {
        let v = json!({"sender_number": "123", "message_body": "", "extra": 1,
                       "metadata": {"timestamp": "yesterday", "colour": "red"}});
        let errs = MessageIn::from_json(&v).unwrap_err();
        let keys: Vec<_> = errs.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "extra",
                "message_body",
                "metadata.colour",
                "metadata.timestamp",
                "sender_number"
            ]
        );
    }

    #[test]
    fn metadata_client_id_is_ignored_and_timestamp_normalised() {
        let far = json!({"sender_number": "+1234567890", "message_body": "hi",
                       "metadata": {"timestamp": "9999-12-31T23:59:59-01:00"}});
        assert!(
            MessageIn::from_json(&far)
                .unwrap_err()
                .contains_key("metadata.timestamp")
        );
        let v = json!({"sender_number": "+1234567890", "message_body": "hi",
                       "metadata": {"client_id": "x", "timestamp": "2025-10-20T14:34:56.789+02:00"}});
        let m = MessageIn::from_json(&v).unwrap();
        assert_eq!(m.timestamp.as_deref(), Some("2025-10-20T12:34:56.789Z"));
    }

    #[test]
    fn issued_ids_authenticate_to_their_client_only() {
        let key = HmacKey::from_bytes(&[7; 32]);
        let alice = ClientId("a".repeat(64));
        let bob = ClientId("b".repeat(64));
        let id = MessageId::issue(&key, &alice);
        assert!(id.is_issued_to(&key, &alice));
        assert!(!id.is_issued_to(&key, &bob));
        assert!(!id.is_issued_to(&HmacKey::from_bytes(&[8; 32]), &alice));
        assert!(!MessageId::new().is_issued_to(&key, &alice));
        let back = MessageId::parse(&id.to_string()).unwrap();
        assert!(back.is_issued_to(&key, &alice));
        assert!(id.created_at().unwrap().starts_with("20"));
    }

    #[test]
    fn masks_sender_numbers() {
        assert_eq!(mask_sender("+1234567890"), "+123****7890");
        assert_eq!(mask_sender("+4912"), "+****2");
        assert_eq!(mask_sender("+49123456"), "+49****56");
    }
}
