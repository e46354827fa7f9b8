//! Publishing who may connect: `GET /crl` (the CAs' CRLs, PEM) for anyone with a valid
//! certificate, and `GET /internal/v1/access` for ingest, which polls it every second or so and
//! admits active client certificates only, refusing revoked and disabled ones within a second
//! or two, on new handshakes and on open connections alike.
//!
//! The access list carries an `ETag` made of a version that every certificate change bumps in
//! its own transaction, plus the day, so a poll while nothing changed is answered `304` after
//! one primary-key read; the signed CRL is cached until the list changes, and re-signed daily.

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mb_pki::lifecycle as certs;
use mb_shared::internal::AccessListOut;
use std::sync::Arc;

/// The last access list built and the CRLs signed for it, by version.
#[derive(Default)]
pub(crate) struct AccessCache(tokio::sync::Mutex<Option<(String, Arc<AccessListOut>)>>);

/// The current version: changes with any certificate change, and daily (CRL re-signing).
async fn version(app: &AppState) -> Result<String, ApiError> {
    let day = time::OffsetDateTime::now_utc().unix_timestamp() / 86_400;
    Ok(format!("{}-{day}", certs::access_version(&app.db).await?))
}

async fn current(app: &AppState) -> Result<Arc<AccessListOut>, ApiError> {
    let version = version(app).await?;
    let mut cache = app.access.0.lock().await;
    if let Some((v, list)) = cache.as_ref()
        && *v == version
    {
        return Ok(list.clone());
    }
    let list = certs::access_list(&app.db).await?;
    let crl_pem = certs::signed_crls(&app.cas, &list.revoked)?;
    let out = Arc::new(AccessListOut {
        version: version.clone(),
        crl_pem,
        active_client_ids: list.active,
        revoked_serials: list.revoked.into_iter().map(|(s, _)| s).collect(),
        disabled_client_ids: list.disabled,
    });
    *cache = Some((version, out.clone()));
    Ok(out)
}

pub(crate) async fn crl(State(app): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let list = current(&app).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        list.crl_pem.clone(),
    ))
}

pub(crate) async fn access(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tag = format!("\"{}\"", version(&app).await?);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(tag.as_str())
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response());
    }
    let list = current(&app).await?;
    let tag = format!("\"{}\"", list.version);
    Ok(([(header::ETAG, tag)], Json(list.as_ref().clone())).into_response())
}
