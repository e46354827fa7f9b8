//! Publishing revocations: `GET /crl` (the CA's CRL, PEM) for anyone with a valid certificate,
//! and `GET /internal/v1/revocations` for ingest, which polls it and refuses revoked and
//! disabled clients within a second or two, on new handshakes and on open connections alike.
//! Both are computed from the `clients` table on each call; the signed CRL is cached until the
//! set of revoked certificates changes.

use crate::AppState;
use crate::certs::{self, Revocations};
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use mb_shared::internal::RevocationsOut;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

/// How long a published CRL is valid; it is re-signed whenever it changes, and at least daily.
const CRL_VALIDITY: time::Duration = time::Duration::days(2);

/// The last CRL signed, and what it was signed from.
#[derive(Default)]
pub struct CrlCache(tokio::sync::Mutex<Option<(Revocations, i64, String)>>);

async fn current(app: &AppState) -> Result<(Revocations, String), ApiError> {
    let rev = certs::revocations(&app.db).await.map_err(ApiError::from)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut cache = app.crl.0.lock().await;
    if let Some((cached, signed_at, pem)) = cache.as_ref()
        && *cached == rev
        && now - signed_at < 86_400
    {
        return Ok((rev, pem.clone()));
    }
    // One CRL per CA. Each lists every revoked serial: an entry for another CA's certificate
    // never matches (CRLs are matched by issuer), and serials are random 127-bit numbers.
    let mut pem = app
        .ca
        .crl(&rev.revoked, now as u64, CRL_VALIDITY)
        .map_err(ApiError::from_ca)?;
    for (_, ca) in &app.domain_cas {
        pem.push_str(
            &ca.crl(&rev.revoked, now as u64, CRL_VALIDITY)
                .map_err(ApiError::from_ca)?,
        );
    }
    *cache = Some((rev.clone(), now, pem.clone()));
    Ok((rev, pem))
}

pub async fn crl(State(app): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let (_, pem) = current(&app).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem))
}

pub async fn revocations(
    State(app): State<Arc<AppState>>,
) -> Result<Json<RevocationsOut>, ApiError> {
    let (rev, crl_pem) = current(&app).await?;
    let mut h = DefaultHasher::new();
    rev.hash(&mut h);
    Ok(Json(RevocationsOut {
        version: format!("{:016x}", h.finish()),
        crl_pem,
        revoked_serials: rev.revoked.into_iter().map(|(s, _)| s).collect(),
        disabled_client_ids: rev.disabled,
    }))
}
