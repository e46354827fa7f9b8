//! `/internal/*`: the API deliver workers and ingest call with their service certificates.
//! Client certificates are refused here, whatever CA signed them.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use mb_shared::extract::{ApiJson, ApiPath, ApiQuery};
use mb_shared::internal::{
    DELIVER_PATH, DeliverIn, DeliverOut, Delivery, FAILED_PATH, FailedIn, ItemResult, Outcome,
    StatusOut,
};
use mb_shared::message::{ClientId, MessageId};
use mb_shared::server::Peer;
use std::sync::Arc;
use std::time::Instant;

/// The services allowed to call the internal API.
const INTERNAL_CALLERS: [&str; 3] = ["mb-deliver", "mb-ingest", "mb-portal"];
/// Longest ciphertext a 1000-character body can produce, with room to spare.
const MAX_CIPHERTEXT_LEN: usize = 8192;

pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(DELIVER_PATH, post(deliver))
        .route(FAILED_PATH, post(failed))
        .route("/internal/v1/messages/{id}", get(status))
        .route(mb_shared::internal::ACCESS_PATH, get(crate::access::access))
        .route_layer(middleware::from_fn(require_service))
}

async fn require_service(req: Request, next: Next) -> Result<Response, ApiError> {
    let allowed = req
        .extensions()
        .get::<Peer>()
        .and_then(|p| p.as_ref().as_ref().ok())
        .and_then(|p| p.service_name())
        .is_some_and(|s| INTERNAL_CALLERS.contains(&s));
    if !allowed {
        return Err(ApiError::Forbidden(
            "the internal API is for mb services only".into(),
        ));
    }
    Ok(next.run(req).await)
}

async fn deliver(
    State(app): State<Arc<AppState>>,
    ApiJson(mut batch): ApiJson<DeliverIn>,
) -> Result<Json<DeliverOut>, ApiError> {
    let started = Instant::now();
    to_active_key(&app, batch.messages.iter_mut());
    let mut results = Vec::with_capacity(batch.messages.len());
    let mut accepted = Vec::with_capacity(batch.messages.len());
    for d in &batch.messages {
        let (outcome, error) = match check(&app, d) {
            Ok(()) => {
                tracing::debug!(message_id = %d.entry.message_id,
                    request_id = d.entry.request_id.as_deref().unwrap_or("-"), "storing");
                accepted.push(d);
                (Outcome::Stored, None)
            }
            Err(Unfit::NotYet(reason)) => {
                app.metrics.deferred.inc();
                tracing::warn!(message_id = %d.entry.message_id,
                    request_id = d.entry.request_id.as_deref().unwrap_or("-"), %reason,
                    "delivery deferred: the store's configuration does not match the sender's");
                (Outcome::Deferred, Some(reason))
            }
            Err(Unfit::Never(reason)) => {
                tracing::warn!(message_id = %d.entry.message_id,
                    request_id = d.entry.request_id.as_deref().unwrap_or("-"), %reason,
                    "rejected delivery");
                (Outcome::Rejected, Some(reason))
            }
        };
        results.push(ItemResult {
            message_id: d.entry.message_id,
            outcome,
            error,
        });
    }
    let fingerprints: Vec<&str> = accepted
        .iter()
        .map(|d| d.entry.client_id.as_str())
        .collect();
    let names = app.client_names.names(&app.db, &fingerprints).await?;
    let rows: Vec<crate::messages::Named> = accepted
        .iter()
        .zip(&names)
        .map(|(d, n)| crate::messages::Named {
            delivery: d,
            client_name: n,
        })
        .collect();
    if let Err(e) = crate::messages::upsert_delivered(&app.db, &rows).await {
        app.metrics.db_errors.inc();
        return Err(e.into());
    }
    app.metrics.stored.inc_by(accepted.len() as u64);
    app.metrics.rejected.inc_by(
        results
            .iter()
            .filter(|r| r.outcome == Outcome::Rejected)
            .count() as u64,
    );
    app.metrics
        .batch_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(Json(DeliverOut { results }))
}

/// Bodies queued before a key rotation are stored under the new key: once the store has
/// reloaded its keyring, no row under an older key is written, and the re-encryption pass
/// (`crate::reencrypt`) never has to come back. A body that does not decrypt is left as it is
/// (`check` and the portal report it).
fn to_active_key<'a>(app: &AppState, deliveries: impl Iterator<Item = &'a mut Delivery>) {
    let keyring = app.keyring.get();
    let active = keyring.active_key_id();
    for d in deliveries {
        let e = &mut d.entry;
        if mb_shared::crypto::key_id(&e.body).is_none_or(|k| k == active || !keyring.has_key(k)) {
            continue;
        }
        if let Ok(body) = keyring.reencrypt(e.message_id.to_string().as_bytes(), &e.body) {
            e.body = body;
            app.metrics.reencrypted_on_arrival.inc();
        }
    }
}

/// Why the store cannot keep a delivered message.
enum Unfit {
    /// Not yet: the store lacks the message's key id or domain. That is a configuration
    /// mismatch between services (one restarted before the other), fixed by configuration.
    NotYet(String),
    /// Never: the message itself is malformed.
    Never(String),
}

fn check(app: &AppState, d: &Delivery) -> Result<(), Unfit> {
    let e = &d.entry;
    if !is_ciphertext(&e.body) {
        return Err(Unfit::Never(
            "body is not mb ciphertext (k<key id>:<base64>, at most 8 KiB)".into(),
        ));
    }
    if !is_hex64(&e.sender_hash) || !is_hex64(e.client_id.as_str()) {
        return Err(Unfit::Never(
            "sender_hash and client_id must be 64 hex digits".into(),
        ));
    }
    if !is_mask(&e.sender_mask) {
        return Err(Unfit::Never("sender_mask is not a mask".into()));
    }
    if crate::messages::datetime(&e.queued_at).is_none() {
        return Err(Unfit::Never("queued_at is not RFC 3339".into()));
    }
    if app.domains.get(e.domain.as_str()).is_none() {
        return Err(Unfit::NotYet(format!(
            "domain `{}` is not configured in the store",
            e.domain
        )));
    }
    let key_id = mb_shared::crypto::key_id(&e.body).unwrap_or_default();
    if !app.keyring.get().has_key(key_id) {
        return Err(Unfit::NotYet(format!(
            "body is encrypted with key {key_id}, which the store's keyring lacks"
        )));
    }
    Ok(())
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `+<digits>****<digits>`, at most 24 characters.
fn is_mask(s: &str) -> bool {
    let Some((head, tail)) = s.strip_prefix('+').and_then(|r| r.split_once("****")) else {
        return false;
    };
    s.len() <= 24
        && head.bytes().all(|b| b.is_ascii_digit())
        && tail.bytes().all(|b| b.is_ascii_digit())
}

/// `k<key id>:<base64>`, the only body the store keeps.
fn is_ciphertext(s: &str) -> bool {
    s.len() <= MAX_CIPHERTEXT_LEN
        && mb_shared::crypto::key_id(s).is_some()
        && s.split_once(':').is_some_and(|(_, b64)| {
            b64.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        })
}

/// A failed message is recorded whatever was wrong with it, so the dead-letter move can never be
/// blocked by a bad row; fields that are not what they should be are blanked rather than stored
/// (a "mask" that is not masked could be a phone number, a "body" that is not ciphertext could be
/// readable text).
fn sanitize(d: &mut Delivery) {
    let e = &mut d.entry;
    if !is_mask(&e.sender_mask) {
        e.sender_mask = "invalid".into();
    }
    if !is_ciphertext(&e.body) {
        e.body = String::new();
    }
    if !is_hex64(&e.sender_hash) {
        e.sender_hash = String::new();
    }
    if !is_hex64(e.client_id.as_str()) {
        e.client_id = mb_shared::message::ClientId(String::new());
    }
}

async fn failed(
    State(app): State<Arc<AppState>>,
    ApiJson(mut batch): ApiJson<FailedIn>,
) -> Result<Json<serde_json::Value>, ApiError> {
    for f in &mut batch.messages {
        sanitize(&mut f.delivery);
    }
    to_active_key(&app, batch.messages.iter_mut().map(|f| &mut f.delivery));
    let fingerprints: Vec<&str> = batch
        .messages
        .iter()
        .map(|f| f.delivery.entry.client_id.as_str())
        .collect();
    let names = app.client_names.names(&app.db, &fingerprints).await?;
    let rows: Vec<(&mb_shared::internal::Failure, &str)> = batch
        .messages
        .iter()
        .zip(names.iter().map(String::as_str))
        .collect();
    crate::messages::upsert_failed(&app.db, &rows).await?;
    app.metrics.failed.inc_by(batch.messages.len() as u64);
    for f in &batch.messages {
        tracing::warn!(message_id = %f.delivery.entry.message_id,
            request_id = f.delivery.entry.request_id.as_deref().unwrap_or("-"),
            attempts = f.delivery.attempt, error = %f.error, "message failed");
    }
    Ok(Json(serde_json::json!({"recorded": batch.messages.len()})))
}

#[derive(serde::Deserialize)]
struct StatusQuery {
    client_id: String,
}

async fn status(
    State(app): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<Json<StatusOut>, ApiError> {
    let id = MessageId::parse(&id).ok_or_else(ApiError::no_such_message)?;
    crate::messages::status(&app.db, &id, &ClientId(q.client_id))
        .await?
        .map(Json)
        .ok_or_else(ApiError::no_such_message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mb_shared::domains::Domain;
    use mb_shared::message::{ClientId, MessageId};
    use mb_shared::streams::StreamEntry;

    fn delivery(mask: &str, body: &str, hash: &str) -> Delivery {
        Delivery {
            entry: StreamEntry {
                message_id: MessageId::new(),
                client_id: ClientId("a".repeat(64)),
                domain: Domain::parse("example.com").unwrap(),
                queued_at: "2026-01-01T00:00:00.000Z".into(),
                submitted_at: None,
                sender_hash: hash.into(),
                sender_mask: mask.into(),
                body: body.into(),
                request_id: None,
            },
            attempt: 1,
        }
    }

    #[test]
    fn masks_ciphertext_and_hashes_are_recognised_strictly() {
        assert!(is_mask("+123****7890") && is_mask("+****2"));
        assert!(!is_mask("+14155550123"), "a whole number is not a mask");
        assert!(!is_mask("+12a****90") && !is_mask(&format!("+{}****1", "1".repeat(30))));
        assert!(is_ciphertext("k1:AAAA+/=="));
        assert!(!is_ciphertext("hello") && !is_ciphertext("k1:plain text"));
        assert!(!is_ciphertext(&format!(
            "k1:{}",
            "A".repeat(MAX_CIPHERTEXT_LEN)
        )));
        assert!(is_hex64(&"0f".repeat(32)) && !is_hex64("0f") && !is_hex64(&"zz".repeat(32)));
    }

    #[test]
    fn a_failed_row_never_keeps_readable_content() {
        let mut d = delivery("+14155550123", "the secret text", "not-a-hash");
        d.entry.client_id = ClientId("+14155550123".into());
        sanitize(&mut d);
        assert_eq!(d.entry.sender_mask, "invalid");
        assert_eq!(d.entry.body, "");
        assert_eq!(d.entry.sender_hash, "");
        assert_eq!(d.entry.client_id.as_str(), "");
        let mut ok = delivery("+141****0123", "k1:QUJD", &"ab".repeat(32));
        let before = ok.entry.clone();
        sanitize(&mut ok);
        assert_eq!(ok.entry, before, "a well-formed entry is kept as it is");
    }
}
