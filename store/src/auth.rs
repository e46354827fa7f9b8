//! Who is calling the store, beyond the TLS handshake:
//!
//! * [`Portal`]: the portal itself, by its service certificate (`mb-portal`). Only it may sign
//!   users in and act for them.
//! * [`PortalUser`]: a signed-in user, by the portal's certificate *and* the user's token
//!   (`Authorization: Bearer <JWT>`) whose session is alive (see [`crate::jwt`]).
//! * [`Admin`]: an administrator, by an active administrator certificate (OU `mb-admins`) or
//!   as a portal user with the role `admin` or `superadmin`. An `admin` acts on their own
//!   domain only, a `superadmin` on all.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use mb_db::listing::Visibility;
use mb_db::users::{User, UserScope};
use mb_pki::lifecycle::{self as certs, Scope};
use mb_shared::domains::Domain;
use mb_shared::identity::PeerIdentity;
use mb_shared::server::Peer;
use mb_shared::status::{ClientKind, Role};
use std::sync::Arc;

/// The service certificate name of the portal.
const PORTAL: &str = "mb-portal";

fn peer(parts: &Parts) -> Option<&PeerIdentity> {
    parts
        .extensions
        .get::<Peer>()
        .and_then(|p| p.as_ref().as_ref().ok())
}

/// The request comes from the portal.
pub(crate) struct Portal;

impl FromRequestParts<Arc<AppState>> for Portal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<AppState>) -> Result<Self, ApiError> {
        match peer(parts).and_then(|p| p.service_name()) {
            Some(PORTAL) => Ok(Portal),
            _ => Err(ApiError::Forbidden(
                "only the portal signs users in and acts for them".into(),
            )),
        }
    }
}

/// A signed-in portal user and their session.
pub(crate) struct PortalUser {
    pub(crate) user: User,
    pub(crate) session: Vec<u8>,
}

impl FromRequestParts<Arc<AppState>> for PortalUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, ApiError> {
        Portal::from_request_parts(parts, app).await?;
        let ended = || ApiError::Unauthorized("no valid session: sign in again".into());
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(ended)?;
        let claims = app.jwt.verify(token).ok_or_else(ended)?;
        let session = hex::decode(&claims.sid).map_err(|_| ended())?;
        let user = mb_db::users::session_user(&app.db, &session)
            .await?
            .filter(|u| u.username == claims.sub)
            .ok_or_else(ended)?;
        Ok(PortalUser { user, session })
    }
}

impl PortalUser {
    pub(crate) fn visibility(&self) -> Visibility {
        let u = &self.user;
        match u.role {
            Role::Superadmin => Visibility::All,
            Role::Admin => Visibility::Domain(u.domain.clone().unwrap_or_default()),
            Role::User => Visibility::Client {
                domain: u.domain.clone().unwrap_or_default(),
                client: u.client_name.clone().unwrap_or_default(),
            },
        }
    }
}

/// An administrator: by certificate, or a portal user with an administrator role.
pub(crate) struct Admin {
    /// Who the audit log names: `admin:<CN>` or `user:<name>`.
    pub(crate) actor: String,
    /// `None` for a superadmin.
    pub(crate) domain: Option<Domain>,
}

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, ApiError> {
        let forbidden = || {
            ApiError::Forbidden(
                "an active administrator certificate or an administrator's session is required"
                    .into(),
            )
        };
        let Some(p) = peer(parts) else {
            return Err(forbidden());
        };
        if p.is_admin() {
            let (kind, domain) = certs::active_admin(&app.db, p.client_id.as_str())
                .await?
                .ok_or_else(forbidden)?;
            let domain = Domain::parse(&domain).map_err(|_| forbidden())?;
            return Ok(Admin {
                actor: format!("admin:{}", p.common_name),
                domain: (kind != ClientKind::Superadmin).then_some(domain),
            });
        }
        let PortalUser { user, .. } = PortalUser::from_request_parts(parts, app).await?;
        let domain = match user.role {
            Role::Superadmin => None,
            Role::Admin => Some(
                user.domain
                    .as_deref()
                    .and_then(|d| Domain::parse(d).ok())
                    .ok_or_else(forbidden)?,
            ),
            Role::User => return Err(forbidden()),
        };
        Ok(Admin {
            actor: format!("user:{}", user.username),
            domain,
        })
    }
}

impl Admin {
    pub(crate) fn is_superadmin(&self) -> bool {
        self.domain.is_none()
    }

    /// The certificates this administrator may see and change.
    pub(crate) fn scope(&self) -> Scope<'_> {
        self.domain.as_ref().map_or(Scope::All, Scope::Domain)
    }

    /// The users this administrator may see and change.
    pub(crate) fn user_scope(&self) -> UserScope<'_> {
        self.domain
            .as_ref()
            .map_or(UserScope::All, |d| UserScope::Domain(d.as_str()))
    }

    /// Refuses a domain outside this administrator's scope, as if it did not exist.
    pub(crate) fn check_domain(&self, domain: &Domain) -> Result<(), ApiError> {
        if self.scope().allows(domain) {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!(
                "no domain `{domain}` this administrator manages"
            )))
        }
    }

    /// Only a superadmin makes or renews superadmin certificates.
    pub(crate) fn check_kind(&self, kind: ClientKind) -> Result<(), ApiError> {
        if kind == ClientKind::Superadmin && !self.is_superadmin() {
            return Err(ApiError::Forbidden(
                "only a superadmin can manage superadmin certificates".into(),
            ));
        }
        Ok(())
    }
}
