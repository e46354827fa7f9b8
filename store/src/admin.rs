//! `/admin/*`: certificate administration for holders of an administrator certificate
//! (OU `mb-admins`, issued with `mbctl cert issue NAME --domain D --admin` or `--superadmin`).
//! An `admin` certificate manages its own domain's certificates, a `superadmin` certificate
//! every domain's; a certificate outside the caller's domain is answered 404, as if it did not
//! exist. Every change is audited with the administrator's CN as the actor.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use mb_pki::lifecycle::{self as certs, CertRow, Request, Scope, Selector};
use mb_shared::domains::Domain;
use mb_shared::extract::ApiJson;
use mb_shared::server::Peer;
use mb_shared::status::ClientKind;
use std::sync::Arc;

/// The administrator making the request: a certificate with OU `mb-admins` whose row in
/// `clients` is an active admin certificate (so revoking or disabling it takes effect at once).
struct Admin {
    common_name: String,
    kind: ClientKind,
    domain: Domain,
}

impl Admin {
    fn scope(&self) -> Scope<'_> {
        match self.kind {
            ClientKind::Superadmin => Scope::All,
            _ => Scope::Domain(&self.domain),
        }
    }

    fn actor(&self) -> String {
        format!("admin:{}", self.common_name)
    }

    /// Refuses a domain outside this administrator's scope, as if it did not exist.
    fn check_domain(&self, domain: &Domain) -> Result<(), ApiError> {
        if self.scope().allows(domain) {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!(
                "no domain `{domain}` this administrator manages"
            )))
        }
    }

    /// Only a superadmin makes or renews superadmin certificates.
    fn check_kind(&self, kind: ClientKind) -> Result<(), ApiError> {
        if kind == ClientKind::Superadmin && self.kind != ClientKind::Superadmin {
            return Err(ApiError::Forbidden(
                "only a superadmin certificate can manage superadmin certificates".into(),
            ));
        }
        Ok(())
    }
}

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, ApiError> {
        let forbidden =
            || ApiError::Forbidden("an active administrator certificate is required".into());
        let peer = parts
            .extensions
            .get::<Peer>()
            .and_then(|p| p.as_ref().as_ref().ok())
            .filter(|p| p.is_admin())
            .ok_or_else(forbidden)?;
        let (kind, domain) = certs::active_admin(&app.db, peer.client_id.as_str())
            .await?
            .ok_or_else(forbidden)?;
        Ok(Admin {
            common_name: peer.common_name.clone(),
            kind,
            domain: Domain::parse(&domain).map_err(|_| forbidden())?,
        })
    }
}

pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/certificates", get(list).post(issue))
        .route("/admin/certificates/renew", post(renew))
        .route("/admin/certificates/revoke", post(revoke))
        .route("/admin/clients/disable", post(disable))
        .route("/admin/clients/enable", post(enable))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueIn {
    name: String,
    domain: String,
    #[serde(default = "default_days")]
    days: i64,
    #[serde(default = "default_kind")]
    kind: ClientKind,
}

fn default_days() -> i64 {
    365
}
fn default_kind() -> ClientKind {
    ClientKind::Client
}

#[derive(serde::Serialize)]
struct IssuedOut {
    common_name: String,
    certificate: String,
    private_key: String,
    fingerprint: String,
    serial: String,
    not_after: String,
}

fn issued_out(req: &Request<'_>, c: mb_pki::ca::Issued) -> (StatusCode, Json<IssuedOut>) {
    (
        StatusCode::CREATED,
        Json(IssuedOut {
            common_name: req.common_name(),
            certificate: c.cert_pem,
            private_key: c.key_pem,
            fingerprint: c.fingerprint,
            serial: c.serial,
            not_after: mb_shared::time::format_rfc3339(c.not_after),
        }),
    )
}

fn configured_domain(app: &AppState, d: &str) -> Result<Domain, ApiError> {
    app.domains
        .get(d)
        .cloned()
        .ok_or_else(|| ApiError::Unprocessable(format!("domain `{d}` is not configured")))
}

async fn list(
    State(app): State<Arc<AppState>>,
    admin: Admin,
) -> Result<Json<Vec<CertRow>>, ApiError> {
    Ok(Json(certs::list(&app.db, admin.scope()).await?))
}

async fn issue(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiJson(req): ApiJson<IssueIn>,
) -> Result<(StatusCode, Json<IssuedOut>), ApiError> {
    let domain = configured_domain(&app, &req.domain)?;
    admin.check_domain(&domain)?;
    admin.check_kind(req.kind)?;
    let r = Request {
        name: &req.name,
        domain: &domain,
        kind: req.kind,
        days: req.days,
    };
    let c = certs::issue(
        &app.db,
        app.cas.issuer(&domain, req.kind),
        r,
        &admin.actor(),
    )
    .await?;
    Ok(issued_out(&r, c))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewIn {
    name: String,
    domain: String,
    #[serde(default = "default_days")]
    days: i64,
}

async fn renew(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiJson(req): ApiJson<RenewIn>,
) -> Result<(StatusCode, Json<IssuedOut>), ApiError> {
    let domain = configured_domain(&app, &req.domain)?;
    admin.check_domain(&domain)?;
    let kind = certs::active_kind(&app.db, &req.name, &domain)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no active certificate for {}.{domain} to renew",
                req.name
            ))
        })?;
    admin.check_kind(kind)?;
    let r = Request {
        name: &req.name,
        domain: &domain,
        kind,
        days: req.days,
    };
    let c = certs::renew(&app.db, app.cas.issuer(&domain, kind), r, &admin.actor()).await?;
    Ok(issued_out(&r, c))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectIn {
    name: Option<String>,
    domain: Option<String>,
    serial: Option<String>,
}

#[derive(serde::Serialize)]
struct ChangedOut {
    serials: Vec<String>,
}

fn selector<'a>(req: &'a SelectIn, domain: &'a Option<Domain>) -> Result<Selector<'a>, ApiError> {
    match (&req.name, &req.serial) {
        (Some(name), None) => Ok(Selector::Name {
            name,
            domain: domain.as_ref(),
        }),
        (None, Some(serial)) => Ok(Selector::Serial(serial)),
        _ => Err(ApiError::Unprocessable(
            "give either name (and domain) or serial".into(),
        )),
    }
}

/// The selected certificates' domain, checked to be configured and in the admin's scope.
fn selected_domain(
    app: &AppState,
    admin: &Admin,
    req: &SelectIn,
) -> Result<Option<Domain>, ApiError> {
    let domain = req
        .domain
        .as_deref()
        .map(|d| configured_domain(app, d))
        .transpose()?;
    if let Some(d) = &domain {
        admin.check_domain(d)?;
    }
    Ok(domain)
}

async fn revoke(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiJson(req): ApiJson<SelectIn>,
) -> Result<Json<ChangedOut>, ApiError> {
    let domain = selected_domain(&app, &admin, &req)?;
    let serials = certs::revoke(
        &app.db,
        &selector(&req, &domain)?,
        admin.scope(),
        &admin.actor(),
    )
    .await?;
    Ok(Json(ChangedOut { serials }))
}

async fn disable(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiJson(req): ApiJson<SelectIn>,
) -> Result<Json<ChangedOut>, ApiError> {
    set_disabled(&app, &admin, req, true).await
}

async fn enable(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiJson(req): ApiJson<SelectIn>,
) -> Result<Json<ChangedOut>, ApiError> {
    set_disabled(&app, &admin, req, false).await
}

async fn set_disabled(
    app: &AppState,
    admin: &Admin,
    req: SelectIn,
    disabled: bool,
) -> Result<Json<ChangedOut>, ApiError> {
    let domain = selected_domain(app, admin, &req)?;
    let serials = certs::set_disabled(
        &app.db,
        &selector(&req, &domain)?,
        admin.scope(),
        disabled,
        &admin.actor(),
    )
    .await?;
    Ok(Json(ChangedOut { serials }))
}
