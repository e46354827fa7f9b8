//! `/admin/certificates` and `/admin/clients`: the certificate lifecycle for administrators
//! (see [`crate::auth::Admin`]). An `admin` manages its own domain's certificates, a
//! `superadmin` every domain's; a certificate outside the caller's domain is answered 404, as
//! if it did not exist. Every change is audited with the administrator as the actor.

use crate::AppState;
use crate::auth::Admin;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use mb_pki::lifecycle::{self as certs, CertRow, Request, Selector};
use mb_shared::api::{Changed, IssueIn, IssuedCertificate, RenewIn, SelectIn};
use mb_shared::domains::Domain;
use mb_shared::extract::ApiJson;
use std::sync::Arc;

pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/certificates", get(list).post(issue))
        .route("/admin/certificates/renew", post(renew))
        .route("/admin/certificates/revoke", post(revoke))
        .route("/admin/clients/disable", post(disable))
        .route("/admin/clients/enable", post(enable))
}

fn issued_out(req: &Request<'_>, c: mb_pki::ca::Issued) -> (StatusCode, Json<IssuedCertificate>) {
    (
        StatusCode::CREATED,
        Json(IssuedCertificate {
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
) -> Result<(StatusCode, Json<IssuedCertificate>), ApiError> {
    let domain = configured_domain(&app, &req.domain)?;
    admin.check_domain(&domain)?;
    admin.check_kind(req.kind)?;
    let r = Request {
        name: &req.name,
        domain: &domain,
        kind: req.kind,
        days: req.days,
    };
    let c = certs::issue(&app.db, app.cas.issuer(&domain, req.kind), r, &admin.actor).await?;
    Ok(issued_out(&r, c))
}

async fn renew(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiJson(req): ApiJson<RenewIn>,
) -> Result<(StatusCode, Json<IssuedCertificate>), ApiError> {
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
    let c = certs::renew(&app.db, app.cas.issuer(&domain, kind), r, &admin.actor).await?;
    Ok(issued_out(&r, c))
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
) -> Result<Json<Changed>, ApiError> {
    let domain = selected_domain(&app, &admin, &req)?;
    let serials = certs::revoke(
        &app.db,
        &selector(&req, &domain)?,
        admin.scope(),
        &admin.actor,
    )
    .await?;
    Ok(Json(Changed { serials }))
}

async fn disable(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiJson(req): ApiJson<SelectIn>,
) -> Result<Json<Changed>, ApiError> {
    set_disabled(&app, &admin, req, true).await
}

async fn enable(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiJson(req): ApiJson<SelectIn>,
) -> Result<Json<Changed>, ApiError> {
    set_disabled(&app, &admin, req, false).await
}

async fn set_disabled(
    app: &AppState,
    admin: &Admin,
    req: SelectIn,
    disabled: bool,
) -> Result<Json<Changed>, ApiError> {
    let domain = selected_domain(app, admin, &req)?;
    let serials = certs::set_disabled(
        &app.db,
        &selector(&req, &domain)?,
        admin.scope(),
        disabled,
        &admin.actor,
    )
    .await?;
    Ok(Json(Changed { serials }))
}
