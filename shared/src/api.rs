//! The JSON of the store's `/api/v1/*` (people, through the portal) and `/admin/*`
//! (administrators), defined once for the store that writes it and the portal that reads it.
//! With the `mysql` feature the records read straight from their rows.

use crate::status::{ClientKind, ClientStatus, MessageStatus, Role};
use serde::{Deserialize, Serialize};

#[cfg(feature = "mysql")]
use mysql_async::prelude::FromRow;

/// `POST /api/v1/login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    pub username: String,
    pub password: String,
    /// The address the browser connected to the portal from, for throttling.
    pub client_addr: String,
}

/// A signed-in person, as the portal shows them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionUser {
    pub username: String,
    pub role: Role,
    pub client: Option<String>,
    pub domain: Option<String>,
    /// The sign-in before this one.
    pub last_login_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginOut {
    pub token: String,
    pub expires_at: String,
    pub user: SessionUser,
}

/// A message as a person may see it: the body decrypted, the sender masked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageView {
    pub message_id: String,
    pub client: String,
    pub domain: String,
    pub sender_mask: String,
    /// The decrypted body, or `None` when it cannot be decrypted (see `body_error`).
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_error: Option<String>,
    pub status: MessageStatus,
    pub attempt_count: u32,
    pub last_error: Option<String>,
    pub queued_at: String,
    pub delivered_at: Option<String>,
    pub updated_at: String,
}

/// `GET /api/v1/messages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessagePage {
    pub messages: Vec<MessageView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Where a message is in Redis, if anywhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedisState {
    /// `dead_lettered`, `queued` (back in the stream after a redrive), or `none`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /api/v1/messages/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageDetail {
    #[serde(flatten)]
    pub message: MessageView,
    pub redis: RedisState,
}

/// A portal user as administrators see them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "mysql", derive(FromRow))]
pub struct UserRecord {
    pub id: u64,
    pub username: String,
    pub role: Role,
    pub client_name: Option<String>,
    pub domain: Option<String>,
    pub disabled: bool,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
    pub last_login_ms: Option<i64>,
}

/// A user's role and what it reaches (`POST /admin/users/{name}/profile`, and part of a new
/// user).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileIn {
    pub role: Role,
    #[serde(default)]
    pub client: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
}

/// `POST /admin/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserIn {
    pub username: String,
    pub password: String,
    #[serde(flatten)]
    pub profile: ProfileIn,
}

/// `POST /admin/users/{name}/password`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordIn {
    pub password: String,
}

/// One certificate as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "mysql", derive(FromRow))]
pub struct CertificateRecord {
    pub name: String,
    pub domain: String,
    pub kind: ClientKind,
    pub common_name: String,
    pub fingerprint: String,
    pub serial: String,
    pub status: ClientStatus,
    pub not_after: String,
    pub days_left: i64,
    pub revoked_at: Option<String>,
}

/// `POST /admin/certificates`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueIn {
    pub name: String,
    pub domain: String,
    #[serde(default = "default_days")]
    pub days: i64,
    #[serde(default = "default_kind")]
    pub kind: ClientKind,
}

/// `POST /admin/certificates/renew`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewIn {
    pub name: String,
    pub domain: String,
    #[serde(default = "default_days")]
    pub days: i64,
}

fn default_days() -> i64 {
    365
}
fn default_kind() -> ClientKind {
    ClientKind::Client
}

/// Which certificates a revoke, disable or enable applies to: a name (and domain) or a serial.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectIn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// A new certificate with its key: handed out once, never stored by the broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedCertificate {
    pub common_name: String,
    pub certificate: String,
    pub private_key: String,
    pub fingerprint: String,
    pub serial: String,
    pub not_after: String,
}

/// The serials a revoke, disable or enable changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Changed {
    pub serials: Vec<String>,
}

/// One dead letter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub dead_id: String,
    pub message_id: String,
    pub attempts: String,
    pub failed_at: String,
    pub error: String,
}

/// One `audit_log` row.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "mysql", derive(FromRow))]
pub struct AuditRecord {
    pub id: u64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub domain: Option<String>,
    pub details: Option<String>,
}

/// `GET /admin/audit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditRecord>,
    /// Pass as `before` for the next page.
    pub next_before: Option<u64>,
}
