//! `/admin/users`: portal users. Create one; disable, enable, set a new password, change the
//! role. The store ends a user's sessions when they are disabled, their password is reset or
//! their role changes.

use super::{
    NoticeIn, OrPage, PortalError, check_csrf, done, maybe_time, notices, page, require_admin,
};
use crate::AppState;
use crate::session::Session;
use crate::store::StoreError;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use mb_shared::api::{CreateUserIn, PasswordIn, ProfileIn, UserRecord};
use mb_shared::status::Role;
use std::sync::Arc;

#[derive(serde::Deserialize)]
pub(crate) struct CreateForm {
    csrf: String,
    username: String,
    password: String,
    role: Role,
    #[serde(default)]
    client: String,
    #[serde(default)]
    domain: String,
}

#[derive(serde::Deserialize)]
pub(crate) struct ActionForm {
    csrf: String,
    /// `disable`, `enable`, `password`, `profile`.
    action: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    client: String,
    #[serde(default)]
    domain: String,
}

fn opt(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|v| !v.is_empty())
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
    let users: Vec<UserRecord> = app
        .store
        .get("/admin/users", Some(&s.token))
        .await
        .or_page(uri)?;
    Ok(page(
        "Users",
        Some(s),
        html! {
            h1 { "Users" }
            (notices(notice, problem))
            div.scroll { table {
                thead { tr { th { "User" } th { "Role" } th { "Client" } th { "Domain" } th { "State" } th { "Last sign-in" } th { "Actions" } } }
                tbody { @for u in &users { (row(s, u)) } }
            } }
            h2 { "New user" }
            form.stacked method="post" action="/admin/users" {
                input type="hidden" name="csrf" value=(s.csrf);
                label { "User name" input name="username" required; }
                label { "Password (12 characters or more)" input name="password" type="password" autocomplete="new-password" required minlength="12"; }
                label { "Role" select name="role" {
                    option value="user" { "user — one client's messages" }
                    option value="admin" { "admin — a domain" }
                    @if s.claims.role == Role::Superadmin { option value="superadmin" { "superadmin — everything" } }
                } }
                label { "Client (for a user)" input name="client"; }
                label { "Domain (for a user or admin)" input name="domain" value=(s.claims.domain.as_deref().unwrap_or("")); }
                button type="submit" { "Create user" }
            }
        },
    ))
}

fn row(s: &Session, u: &UserRecord) -> Markup {
    let last = u.last_login_ms.map(mb_shared::time::from_unix_millis);
    let action = format!("/admin/users/{}", u.username);
    html! {
        tr {
            td { (u.username) }
            td { (u.role) }
            td { (u.client_name.as_deref().unwrap_or("—")) }
            td { (u.domain.as_deref().unwrap_or("—")) }
            td { @if u.disabled { span.badge.failed { "disabled" } } @else { span.badge.delivered { "active" } } }
            td { (maybe_time(last.as_deref())) }
            td.actions {
                form.inline method="post" action=(action) {
                    input type="hidden" name="csrf" value=(s.csrf);
                    @if u.disabled {
                        button name="action" value="enable" { "Enable" }
                    } @else {
                        button name="action" value="disable" { "Disable" }
                    }
                }
                form.inline method="post" action=(action) {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="password" name="password" placeholder="new password" autocomplete="new-password" minlength="12" required;
                    button name="action" value="password" { "Set password" }
                }
                details {
                    summary { "Role…" }
                    form.stacked method="post" action=(action) {
                        input type="hidden" name="csrf" value=(s.csrf);
                        select name="role" {
                            @for r in Role::ALL {
                                @if *r != Role::Superadmin || s.claims.role == Role::Superadmin {
                                    option value=(r.as_str()) selected[*r == u.role] { (r.as_str()) }
                                }
                            }
                        }
                        input name="client" placeholder="client" value=(u.client_name.as_deref().unwrap_or(""));
                        input name="domain" placeholder="domain" value=(u.domain.as_deref().unwrap_or(""));
                        button name="action" value="profile" { "Change role" }
                    }
                }
            }
        }
    }
}

pub(crate) async fn create(
    State(app): State<Arc<AppState>>,
    s: Session,
    uri: Uri,
    Form(f): Form<CreateForm>,
) -> Result<Response, PortalError> {
    check_csrf(&s, &f.csrf)?;
    let req = CreateUserIn {
        username: f.username.trim().to_owned(),
        password: f.password,
        profile: ProfileIn {
            role: f.role,
            client: opt(&f.client),
            domain: opt(&f.domain),
        },
    };
    let r: Result<UserRecord, _> = app.store.post("/admin/users", Some(&s.token), &req).await;
    outcome(
        &app,
        &s,
        &uri,
        r.map(|u| format!("User {} created.", u.username)),
    )
    .await
}

pub(crate) async fn act(
    State(app): State<Arc<AppState>>,
    s: Session,
    uri: Uri,
    Path(name): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, PortalError> {
    check_csrf(&s, &f.csrf)?;
    let user: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
    let token = Some(s.token.as_str());
    let empty = serde_json::json!({});
    let r: Result<serde_json::Value, StoreError> = match f.action.as_str() {
        "disable" => {
            app.store
                .post(&format!("/admin/users/{user}/disable"), token, &empty)
                .await
        }
        "enable" => {
            app.store
                .post(&format!("/admin/users/{user}/enable"), token, &empty)
                .await
        }
        "password" => {
            let body = PasswordIn {
                password: f.password,
            };
            app.store
                .post(&format!("/admin/users/{user}/password"), token, &body)
                .await
        }
        "profile" => {
            let body = ProfileIn {
                role: f.role.unwrap_or(Role::User),
                client: opt(&f.client),
                domain: opt(&f.domain),
            };
            app.store
                .post(&format!("/admin/users/{user}/profile"), token, &body)
                .await
        }
        _ => return Err(PortalError::forbidden_form()),
    };
    let what = match f.action.as_str() {
        "disable" => "disabled; their sessions ended",
        "enable" => "enabled",
        "password" => "given a new password; their sessions ended",
        _ => "changed",
    };
    outcome(&app, &s, &uri, r.map(|_| format!("User {name} {what}."))).await
}

/// Back to the list with a notice, or the list again with the problem.
async fn outcome(
    app: &AppState,
    s: &Session,
    uri: &Uri,
    r: Result<String, StoreError>,
) -> Result<Response, PortalError> {
    match r {
        Ok(notice) => Ok(done("/admin/users", &notice)),
        Err(StoreError::Invalid { message, fields }) => {
            let detail = fields.values().cloned().collect::<Vec<_>>().join("; ");
            let problem = if detail.is_empty() {
                message
            } else {
                format!("{message}: {detail}")
            };
            let page = render(app, s, uri, None, Some(&problem)).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        Err(StoreError::Forbidden(m) | StoreError::NotFound(m)) => {
            let page = render(app, s, uri, None, Some(&m)).await?;
            Ok((StatusCode::FORBIDDEN, page).into_response())
        }
        Err(e) => Err(PortalError::from_store(e, uri)),
    }
}
