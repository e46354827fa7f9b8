//! `/admin/*`: certificate administration for holders of an administrator certificate
//! (OU `mb-admins`, issued with `mbctl cert issue NAME --domain D --admin`). Every change is
//! audited with the administrator's CN as the actor.

use crate::AppState;
use crate::certs::{self, CertRow, Kind, Selector};
use crate::error::ApiError;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use mb_shared::message::Domain;
use mb_shared::server::Peer;
use std::sync::Arc;

/// The administrator making the request: a certificate with OU `mb-admins` whose row in
/// `clients` is an active admin certificate (so revoking or disabling it takes effect at once).
struct Admin(String);

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
        if !certs::is_active_admin(&app.db, peer.client_id.as_str()).await? {
            return Err(forbidden());
        }
        Ok(Admin(peer.common_name.clone()))
    }
}

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/certificates", get(list).post(issue))
        .route("/admin/certificates/renew", post(renew))
        .route("/admin/certificates/revoke", post(revoke))
        .route("/admin/clients/disable", post(disable))
        .route("/admin/clients/enable", post(enable))
}

fn actor(admin: &Admin) -> String {
    format!("admin:{}", admin.0)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueIn {
    name: String,
    domain: String,
    #[serde(default = "default_days")]
    days: i64,
    #[serde(default = "default_kind")]
    kind: Kind,
}

fn default_days() -> i64 {
    365
}
fn default_kind() -> Kind {
    Kind::Client
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

fn issued_out(name: &str, domain: &Domain, c: crate::ca::Issued) -> (StatusCode, Json<IssuedOut>) {
    (
        StatusCode::CREATED,
        Json(IssuedOut {
            common_name: format!("{name}.{domain}"),
            certificate: c.cert_pem,
            private_key: c.key_pem,
            fingerprint: c.fingerprint,
            serial: c.serial,
            not_after: mb_shared::format_rfc3339(c.not_after),
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
    _admin: Admin,
) -> Result<Json<Vec<CertRow>>, ApiError> {
    Ok(Json(certs::list(&app.db).await?))
}

async fn issue(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    Json(req): Json<IssueIn>,
) -> Result<(StatusCode, Json<IssuedOut>), ApiError> {
    let domain = configured_domain(&app, &req.domain)?;
    let c = certs::issue(
        &app.db,
        app.ca_for(&domain, req.kind),
        &req.name,
        &domain,
        req.kind,
        req.days,
        &actor(&admin),
    )
    .await?;
    Ok(issued_out(&req.name, &domain, c))
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
    Json(req): Json<RenewIn>,
) -> Result<(StatusCode, Json<IssuedOut>), ApiError> {
    let domain = configured_domain(&app, &req.domain)?;
    let c = certs::renew(
        &app.db,
        |kind| app.ca_for(&domain, kind),
        &req.name,
        &domain,
        req.days,
        &actor(&admin),
    )
    .await?;
    Ok(issued_out(&req.name, &domain, c))
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

async fn revoke(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    Json(req): Json<SelectIn>,
) -> Result<Json<ChangedOut>, ApiError> {
    let domain = req
        .domain
        .as_deref()
        .map(|d| configured_domain(&app, d))
        .transpose()?;
    let serials = certs::revoke(&app.db, &selector(&req, &domain)?, &actor(&admin)).await?;
    Ok(Json(ChangedOut { serials }))
}

async fn disable(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    Json(req): Json<SelectIn>,
) -> Result<Json<ChangedOut>, ApiError> {
    set_disabled(&app, &admin, req, true).await
}

async fn enable(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    Json(req): Json<SelectIn>,
) -> Result<Json<ChangedOut>, ApiError> {
    set_disabled(&app, &admin, req, false).await
}

async fn set_disabled(
    app: &AppState,
    admin: &Admin,
    req: SelectIn,
    disabled: bool,
) -> Result<Json<ChangedOut>, ApiError> {
    let domain = req
        .domain
        .as_deref()
        .map(|d| configured_domain(app, d))
        .transpose()?;
    let serials =
        certs::set_disabled(&app.db, &selector(&req, &domain)?, disabled, &actor(admin)).await?;
    Ok(Json(ChangedOut { serials }))
}
