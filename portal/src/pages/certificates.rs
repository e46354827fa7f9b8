//! `/admin/certificates`: issue, renew, revoke, disable and enable client and administrator
//! certificates, with days to expiry (a warning under 30).
//!
//! A new certificate comes with its private key. The key is offered for download once: the
//! portal keeps the PEM in memory under a random token for `download_ttl`, the first download
//! takes it away, and after that (or after the time) it is gone for good. Nothing stores it.

use super::{NoticeIn, OrPage, PortalError, check_csrf, done, notices, page, require_admin, time};
use crate::AppState;
use crate::session::Session;
use crate::store::StoreError;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use mb_shared::api::{CertificateRecord, Changed, IssueIn, IssuedCertificate, RenewIn, SelectIn};
use mb_shared::status::{ClientKind, ClientStatus, Role};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Days to expiry under which a certificate is flagged.
const WARN_DAYS: i64 = 30;

/// Issued certificates waiting for their one download.
#[derive(Default)]
pub(crate) struct Downloads {
    waiting: Mutex<HashMap<String, (Instant, String, String)>>,
}

impl Downloads {
    /// Keeps `pem` for one download within `ttl`; returns its token.
    fn put(&self, file_name: String, pem: String, ttl: Duration) -> String {
        let token = hex::encode(rand::random::<[u8; 24]>());
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        w.retain(|_, (until, _, _)| *until > Instant::now());
        w.insert(token.clone(), (Instant::now() + ttl, file_name, pem));
        token
    }

    /// Takes the PEM out (it cannot be taken twice).
    fn take(&self, token: &str) -> Option<(String, String)> {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        w.remove(token)
            .filter(|(until, _, _)| *until > Instant::now())
            .map(|(_, name, pem)| (name, pem))
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct IssueForm {
    csrf: String,
    name: String,
    domain: String,
    kind: ClientKind,
    days: i64,
}

#[derive(serde::Deserialize)]
pub(crate) struct ActionForm {
    csrf: String,
    /// `renew`, `revoke`, `disable`, `enable`.
    action: String,
    name: String,
    domain: String,
    #[serde(default)]
    serial: String,
}

pub(crate) async fn list(
    State(app): State<Arc<AppState>>,
    s: Session,
    uri: Uri,
    Query(q): Query<NoticeIn>,
) -> Result<Markup, PortalError> {
    render(&app, &s, &uri, q.notice.as_deref(), None).await
}

async fn render(
    app: &AppState,
    s: &Session,
    uri: &Uri,
    notice: Option<&str>,
    problem: Option<&str>,
) -> Result<Markup, PortalError> {
    require_admin(s)?;
    let certs: Vec<CertificateRecord> = app
        .store
        .get("/admin/certificates", Some(&s.token))
        .await
        .or_page(uri)?;
    Ok(page(
        "Certificates",
        Some(s),
        html! {
            h1 { "Certificates" }
            (notices(notice, problem))
            div.scroll { table {
                thead { tr { th { "Common name" } th { "Kind" } th { "Status" } th { "Serial" } th { "Expires" } th { "Days left" } th { "Actions" } } }
                tbody { @for c in &certs { (row(s, c)) } }
            } }
            h2 { "Issue a certificate" }
            form.stacked method="post" action="/admin/certificates" {
                input type="hidden" name="csrf" value=(s.csrf);
                label { "Name (the CN is name.domain)" input name="name" required pattern="[A-Za-z0-9_-]{1,64}"; }
                label { "Domain" input name="domain" required value=(s.claims.domain.as_deref().unwrap_or("")); }
                label { "Kind" select name="kind" {
                    option value="client" { "client — submits messages" }
                    option value="admin" { "admin — administers its domain" }
                    @if s.claims.role == Role::Superadmin { option value="superadmin" { "superadmin — administers every domain" } }
                } }
                label { "Valid for (days)" input name="days" type="number" min="1" max="3650" value="365" required; }
                button type="submit" { "Issue" }
            }
        },
    ))
}

fn row(s: &Session, c: &CertificateRecord) -> Markup {
    let active = c.status == ClientStatus::Active;
    html! {
        tr {
            td { (c.common_name) }
            td { (c.kind) }
            td { span class={"badge cert-" (c.status)} { (c.status) } }
            td.mono { (c.serial.get(..16).unwrap_or(&c.serial)) "…" }
            td { (time(&c.not_after)) }
            td.num.warn[active && c.days_left < WARN_DAYS] {
                (c.days_left)
                @if active && c.days_left < WARN_DAYS { " ⚠" }
            }
            td.actions {
                @if c.status != ClientStatus::Revoked {
                    form.inline method="post" action="/admin/certificates/action" {
                        input type="hidden" name="csrf" value=(s.csrf);
                        input type="hidden" name="name" value=(c.name);
                        input type="hidden" name="domain" value=(c.domain);
                        input type="hidden" name="serial" value=(c.serial);
                        @if active { button name="action" value="renew" { "Renew" } }
                        @if active { button name="action" value="disable" { "Disable" } }
                        @if c.status == ClientStatus::Disabled { button name="action" value="enable" { "Enable" } }
                        button.danger name="action" value="revoke" { "Revoke" }
                    }
                }
            }
        }
    }
}

pub(crate) async fn issue(
    State(app): State<Arc<AppState>>,
    s: Session,
    uri: Uri,
    Form(f): Form<IssueForm>,
) -> Result<Response, PortalError> {
    check_csrf(&s, &f.csrf)?;
    let req = IssueIn {
        name: f.name.trim().to_owned(),
        domain: f.domain.trim().to_owned(),
        days: f.days,
        kind: f.kind,
    };
    match app
        .store
        .post::<_, IssuedCertificate>("/admin/certificates", Some(&s.token), &req)
        .await
    {
        Ok(c) => Ok(issued(&app, &s, c).into_response()),
        Err(e) => refused(&app, &s, &uri, e).await,
    }
}

/// The page after issuing: the one download link.
fn issued(app: &AppState, s: &Session, c: IssuedCertificate) -> Markup {
    let pem = format!("{}{}", c.certificate, c.private_key);
    let token = app
        .downloads
        .put(format!("{}.pem", c.common_name), pem, app.download_ttl);
    page(
        "Certificate issued",
        Some(s),
        html! {
            h1 { "Certificate issued" }
            dl.detail {
                dt { "Common name" } dd { (c.common_name) }
                dt { "Fingerprint (client id)" } dd.mono { (c.fingerprint) }
                dt { "Serial" } dd.mono { (c.serial) }
                dt { "Expires" } dd { (time(&c.not_after)) }
            }
            p.notice {
                strong { "Download the certificate and its private key now: this is the only time they are offered. " }
                "The file holds both, in PEM (curl: --cert FILE; Python: load_cert_chain(FILE))."
            }
            p { a.button href={"/admin/certificates/download/" (token)} download { "Download " (c.common_name) ".pem" } }
            p { a href="/admin/certificates" { "« Certificates" } }
        },
    )
}

pub(crate) async fn download(
    State(app): State<Arc<AppState>>,
    s: Session,
    Path(token): Path<String>,
) -> Result<Response, PortalError> {
    require_admin(&s)?;
    match app.downloads.take(&token) {
        Some((name, pem)) => Ok((
            [
                (header::CONTENT_TYPE, "application/x-pem-file".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            pem,
        )
            .into_response()),
        None => Err(PortalError::Page {
            status: StatusCode::GONE,
            title: "Gone",
            message: "This download was already taken, or it expired. A private key is \
                      offered once; issue a new certificate if it was lost."
                .into(),
        }),
    }
}

pub(crate) async fn act(
    State(app): State<Arc<AppState>>,
    s: Session,
    uri: Uri,
    Form(f): Form<ActionForm>,
) -> Result<Response, PortalError> {
    check_csrf(&s, &f.csrf)?;
    let token = Some(s.token.as_str());
    let by_serial = SelectIn {
        serial: Some(f.serial.clone()).filter(|x| !x.is_empty()),
        ..Default::default()
    };
    let by_name = SelectIn {
        name: Some(f.name.clone()),
        domain: Some(f.domain.clone()),
        serial: None,
    };
    let result: Result<String, StoreError> = match f.action.as_str() {
        "renew" => {
            let req = RenewIn {
                name: f.name.clone(),
                domain: f.domain.clone(),
                days: 365,
            };
            match app
                .store
                .post::<_, IssuedCertificate>("/admin/certificates/renew", token, &req)
                .await
            {
                Ok(c) => return Ok(issued(&app, &s, c).into_response()),
                Err(e) => Err(e),
            }
        }
        "revoke" => app
            .store
            .post::<_, Changed>("/admin/certificates/revoke", token, &by_serial)
            .await
            .map(|c| {
                format!(
                    "Revoked {} certificate(s) of {}.{}.",
                    c.serials.len(),
                    f.name,
                    f.domain
                )
            }),
        "disable" => app
            .store
            .post::<_, Changed>("/admin/clients/disable", token, &by_name)
            .await
            .map(|_| format!("{}.{} disabled.", f.name, f.domain)),
        "enable" => app
            .store
            .post::<_, Changed>("/admin/clients/enable", token, &by_name)
            .await
            .map(|_| format!("{}.{} enabled.", f.name, f.domain)),
        _ => return Err(PortalError::forbidden_form()),
    };
    match result {
        Ok(notice) => Ok(done("/admin/certificates", &notice)),
        Err(e) => refused(&app, &s, &uri, e).await,
    }
}

async fn refused(
    app: &AppState,
    s: &Session,
    uri: &Uri,
    e: StoreError,
) -> Result<Response, PortalError> {
    let (status, problem) = match e {
        StoreError::Invalid { message, fields } => {
            let detail = fields.values().cloned().collect::<Vec<_>>().join("; ");
            let p = if detail.is_empty() {
                message
            } else {
                format!("{message}: {detail}")
            };
            (StatusCode::UNPROCESSABLE_ENTITY, p)
        }
        StoreError::Forbidden(m) | StoreError::NotFound(m) => (StatusCode::FORBIDDEN, m),
        e => return Err(PortalError::from_store(e, uri)),
    };
    let page = render(app, s, uri, None, Some(&problem)).await?;
    Ok((status, page).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_downloaded_once_and_not_after_it_expired() {
        let d = Downloads::default();
        let t = d.put("a.pem".into(), "PEM".into(), Duration::from_secs(60));
        assert_eq!(d.take(&t), Some(("a.pem".into(), "PEM".into())));
        assert_eq!(d.take(&t), None);
        let t = d.put("b.pem".into(), "PEM".into(), Duration::ZERO);
        assert_eq!(d.take(&t), None);
        assert_eq!(d.take("guess"), None);
    }
}
