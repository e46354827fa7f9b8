//! The authenticated caller of a request: an active client certificate of this broker (see
//! [`crate::access`]), its fingerprint, and the configured domain its CN belongs to. Anything
//! else (a revoked, disabled or unrecorded certificate, an administrator's or a service's, one
//! from the wrong CA for its domain) is refused with 403 here, before a handler runs.

use crate::AppState;
use crate::access::Verdict;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use mb_shared::message::{ClientId, Domain};
use mb_shared::server::Peer;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: ClientId,
    pub common_name: String,
    pub domain: Domain,
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<Peer>()
            .ok_or_else(|| ApiError::Forbidden("a client certificate is required".into()))?;
        let peer = peer
            .as_ref()
            .as_ref()
            .map_err(|e| ApiError::Forbidden(format!("client certificate not usable: {e}")))?;
        if peer.is_admin() {
            return Err(ApiError::Forbidden(
                "administrator certificates cannot submit messages".into(),
            ));
        }
        if peer.service_name().is_some() {
            return Err(ApiError::Forbidden(
                "service certificates cannot submit messages".into(),
            ));
        }
        let verdict = app
            .access
            .verdict(peer.client_id.as_str(), &peer.serial)
            .await
            .ok_or(ApiError::AccessListNotLoaded)?;
        match verdict {
            Verdict::Admitted => {}
            Verdict::Revoked => {
                return Err(ApiError::Forbidden(
                    "this certificate has been revoked".into(),
                ));
            }
            Verdict::Disabled => {
                return Err(ApiError::Forbidden("this client is disabled".into()));
            }
            Verdict::Unknown => {
                return Err(ApiError::Forbidden(
                    "this certificate was not issued to a client of this broker".into(),
                ));
            }
            Verdict::Unverifiable => return Err(ApiError::AccessListStale),
        }
        let domain = app
            .domains
            .for_common_name(&peer.common_name)
            .ok_or_else(|| {
                ApiError::Forbidden("the certificate's CN names no configured domain".into())
            })?
            .clone();
        // A domain with its own CA takes certificates from that CA only, and a domain CA
        // vouches for its own domain only.
        let issued_by = app.ca_domains.get(&peer.issuer);
        let own_ca = app.domains.own_ca(&domain).is_some();
        if issued_by.is_some_and(|d| *d != domain) || own_ca != issued_by.is_some() {
            return Err(ApiError::Forbidden(format!(
                "the certificate was not issued by the CA that domain `{domain}` uses"
            )));
        }
        if let Some(named) = request_host(parts).and_then(|h| app.domains.get(h))
            && *named != domain
        {
            return Err(ApiError::Forbidden(format!(
                "Host names domain `{named}` but the certificate belongs to `{domain}`"
            )));
        }
        Ok(Caller {
            client_id: peer.client_id.clone(),
            common_name: peer.common_name.clone(),
            domain,
        })
    }
}

/// The host the request is addressed to, without a port (HTTP/2 authority or Host header).
fn request_host(parts: &Parts) -> Option<&str> {
    let raw = parts.uri.host().or_else(|| {
        parts
            .headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
    })?;
    if raw.starts_with('[') {
        return None;
    }
    Some(raw.rsplit_once(':').map_or(raw, |(h, _)| h))
}
