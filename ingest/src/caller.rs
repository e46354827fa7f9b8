//! The authenticated caller of a request: an active client certificate of this broker (see
//! [`crate::access`]), its fingerprint, and the configured domain its CN belongs to. Anything
//! else (a revoked, disabled or unrecorded certificate, an administrator's or a service's, one
//! from the wrong CA for its domain) is refused with 403 here, before a handler runs.

use crate::AppState;
use crate::access::Verdict;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use mb_shared::domains::Domain;
use mb_shared::identity::PeerIdentity;
use mb_shared::message::ClientId;
use mb_shared::server::Peer;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) client_id: ClientId,
    pub(crate) common_name: String,
    pub(crate) domain: Domain,
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
        admit(app, peer).await?;
        let domain = domain_of(app, peer)?;
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

/// Only the active client certificates of this broker may submit.
async fn admit(app: &AppState, peer: &PeerIdentity) -> Result<(), ApiError> {
    let refuse = |why: &str| Err(ApiError::Forbidden(why.to_owned()));
    if peer.is_admin() {
        return refuse("administrator certificates cannot submit messages");
    }
    if peer.service_name().is_some() {
        return refuse("service certificates cannot submit messages");
    }
    let verdict = app
        .access
        .verdict(peer.client_id.as_str(), &peer.serial)
        .await
        .ok_or(ApiError::AccessListNotLoaded)?;
    match verdict {
        Verdict::Admitted => Ok(()),
        Verdict::Revoked => refuse("this certificate has been revoked"),
        Verdict::Disabled => refuse("this client is disabled"),
        Verdict::Unknown => refuse("this certificate was not issued to a client of this broker"),
        Verdict::Unverifiable => Err(ApiError::AccessListStale),
    }
}

/// The configured domain the certificate's CN belongs to, if the right CA signed it: a domain
/// with its own CA takes certificates from that CA only, and a domain CA vouches for its own
/// domain only.
fn domain_of(app: &AppState, peer: &PeerIdentity) -> Result<Domain, ApiError> {
    let domain = app
        .domains
        .for_common_name(&peer.common_name)
        .ok_or_else(|| {
            ApiError::Forbidden("the certificate's CN names no configured domain".into())
        })?
        .clone();
    let issued_by = app.ca_domains.get(&peer.issuer);
    let own_ca = app.domains.own_ca(&domain).is_some();
    if issued_by.is_some_and(|d| *d != domain) || own_ca != issued_by.is_some() {
        return Err(ApiError::Forbidden(format!(
            "the certificate was not issued by the CA that domain `{domain}` uses"
        )));
    }
    Ok(domain)
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn host_of(uri: &str, host: Option<&str>) -> Option<String> {
        let mut req = Request::builder().uri(uri);
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let (parts, ()) = req.body(()).unwrap().into_parts();
        request_host(&parts).map(str::to_owned)
    }

    #[test]
    fn the_host_comes_from_the_authority_or_the_header_without_a_port() {
        assert_eq!(
            host_of("/x", Some("example.com")).as_deref(),
            Some("example.com")
        );
        assert_eq!(
            host_of("/x", Some("example.com:8001")).as_deref(),
            Some("example.com")
        );
        // HTTP/2 carries it in the :authority, which wins.
        assert_eq!(
            host_of("https://other.org:8001/x", Some("example.com")).as_deref(),
            Some("other.org")
        );
        // An IPv6 literal names no domain.
        assert_eq!(host_of("/x", Some("[::1]:8001")), None);
        assert_eq!(host_of("/x", None), None);
    }
}
