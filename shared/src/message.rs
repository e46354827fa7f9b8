//! The message model: identifiers, the client's submission (`MessageIn`) and its validation,
//! and the stream entry (`StreamEntry`) that carries a message from ingest to the store.
//!
//! Validation works on a parsed `serde_json::Value` rather than a derived struct so that every
//! failing field is named in one answer, including unknown ones.

use crate::crypto::HmacKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Longest message body, in Unicode characters (not bytes).
pub const MAX_BODY_CHARS: usize = 1000;
/// Version of the stream entry layout, written as field `v`.
pub const ENTRY_VERSION: &str = "1";

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

/// A configured domain name, lowercase, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

impl TryFrom<String> for Domain {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Domain::parse(&s)
    }
}

impl From<Domain> for String {
    fn from(d: Domain) -> String {
        d.0
    }
}

impl Domain {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if ok {
            Ok(Self(s))
        } else {
            Err(format!("`{s}` is not a valid domain name"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
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
        let sender = match obj.get("sender_number") {
            None | Some(serde_json::Value::Null) => {
                errors.insert("sender_number".into(), "is required".into());
                None
            }
            Some(serde_json::Value::String(s)) if is_e164(s) => Some(s.clone()),
            Some(serde_json::Value::String(_)) => {
                errors.insert(
                    "sender_number".into(),
                    "must be an E.164 number: + then 2 to 15 digits, not starting with 0".into(),
                );
                None
            }
            Some(_) => {
                errors.insert("sender_number".into(), "must be a string".into());
                None
            }
        };
        let body = match obj.get("message_body") {
            None | Some(serde_json::Value::Null) => {
                errors.insert("message_body".into(), "is required".into());
                None
            }
            Some(serde_json::Value::String(s)) => {
                let chars = s.chars().count();
                if chars == 0 || s.trim().is_empty() {
                    errors.insert("message_body".into(), "must not be empty".into());
                    None
                } else if chars > MAX_BODY_CHARS {
                    errors.insert(
                        "message_body".into(),
                        format!("must be at most {MAX_BODY_CHARS} characters, got {chars}"),
                    );
                    None
                } else {
                    Some(s.clone())
                }
            }
            Some(_) => {
                errors.insert("message_body".into(), "must be a string".into());
                None
            }
        };
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

/// One message as it sits in the domain stream: nothing readable about its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEntry {
    pub message_id: MessageId,
    pub client_id: ClientId,
    pub domain: Domain,
    /// RFC 3339, when ingest accepted it.
    pub queued_at: String,
    /// Client-supplied `metadata.timestamp`, normalised, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<String>,
    /// HMAC-SHA256 of the sender number, hex.
    pub sender_hash: String,
    pub sender_mask: String,
    /// AES-256-GCM-SIV ciphertext with its key id (see `crypto::Keyring`).
    pub body: String,
}

impl StreamEntry {
    /// The flat field list written with XADD.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("message_id", self.message_id.to_string()),
            ("client_id", self.client_id.0.clone()),
            ("domain", self.domain.0.clone()),
            ("queued_at", self.queued_at.clone()),
            ("sender_hash", self.sender_hash.clone()),
            ("sender_mask", self.sender_mask.clone()),
            ("body", self.body.clone()),
            ("v", ENTRY_VERSION.to_owned()),
        ];
        if let Some(t) = &self.submitted_at {
            f.push(("submitted_at", t.clone()));
        }
        f
    }

    /// Reads an entry back from its fields; names the first missing or invalid field.
    pub fn from_fields<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut m: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in fields {
            m.insert(k, v);
        }
        let get = |k: &str| {
            m.get(k)
                .copied()
                .ok_or_else(|| format!("missing field `{k}`"))
        };
        Ok(Self {
            message_id: MessageId::parse(get("message_id")?)
                .ok_or_else(|| "invalid field `message_id`".to_owned())?,
            client_id: ClientId(get("client_id")?.to_owned()),
            domain: Domain::parse(get("domain")?)?,
            queued_at: get("queued_at")?.to_owned(),
            submitted_at: m.get("submitted_at").map(|s| (*s).to_owned()),
            sender_hash: get("sender_hash")?.to_owned(),
            sender_mask: get("sender_mask")?.to_owned(),
            body: get("body")?.to_owned(),
        })
    }
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

    #[test]
    fn stream_entry_round_trips_through_fields() {
        let e = StreamEntry {
            message_id: MessageId::new(),
            client_id: ClientId("ab".into()),
            domain: Domain::parse("example.com").unwrap(),
            queued_at: crate::time::now_rfc3339(),
            submitted_at: None,
            sender_hash: "00".into(),
            sender_mask: "+1****90".into(),
            body: "k1:xyz".into(),
        };
        let fields = e.to_fields();
        let back = StreamEntry::from_fields(fields.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
        assert_eq!(back, e);
    }
}
