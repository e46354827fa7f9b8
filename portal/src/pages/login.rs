//! Signing in and out.
//!
//! `GET /login` sets a random CSRF cookie and puts the same token in the form; `POST /login`
//! checks them, hands user name, password and the browser's address to the store, and on
//! success keeps the store's token in the session cookie (its lifetime is the token's) and
//! goes where the person was going (a path on this site only). Wrong passwords, locked
//! sign-ins and disabled accounts are said on the page, with their status.
//! `POST /logout` ends the session in the store, so the old cookie is worth nothing.

use super::{PortalError, page};
use crate::AppState;
use crate::session::{self, LOGIN_CSRF_COOKIE, SESSION_COOKIE, Session};
use crate::store::StoreError;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use mb_shared::api::{LoginIn, LoginOut};
use mb_shared::server::RemoteAddr;
use std::sync::Arc;

#[derive(serde::Deserialize)]
pub(crate) struct NextIn {
    #[serde(default)]
    next: Option<String>,
}

#[derive(serde::Deserialize)]
pub(crate) struct LoginForm {
    username: String,
    password: String,
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

#[derive(serde::Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

/// Only paths on this site: `/x`, never `//host` or `https://host`.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/messages",
    }
}

fn form(csrf: &str, next: &str, username: &str, problem: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            section.narrow {
                h1 { "Sign in" }
                @if let Some(p) = problem {
                    p.problem role="alert" { (p) }
                }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="next" value=(next);
                    label { "User name" input name="username" value=(username) autocomplete="username" required autofocus; }
                    label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

pub(crate) async fn show(Query(q): Query<NextIn>) -> Response {
    let csrf = hex::encode(rand::random::<[u8; 16]>());
    let next = safe_next(q.next.as_deref()).to_owned();
    let mut resp = form(&csrf, &next, "", None).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(LOGIN_CSRF_COOKIE, &csrf, "/login", 3600),
    );
    resp
}

pub(crate) async fn submit(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    remote: Option<axum::Extension<RemoteAddr>>,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref()).to_owned();
    let expected = session::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if !session::same(&f.csrf, &expected) {
        return PortalError::forbidden_form().into_response();
    }
    let req = LoginIn {
        username: f.username.clone(),
        password: f.password,
        client_addr: remote.map_or_else(|| "unknown".into(), |r| r.0.0.ip().to_string()),
    };
    let refused = |status: StatusCode, why: &str| {
        (status, form(&f.csrf, &next, &f.username, Some(why))).into_response()
    };
    match app
        .store
        .post::<_, LoginOut>("/api/v1/login", None, &req)
        .await
    {
        Ok(out) => {
            let max_age = out_max_age(&out);
            let mut resp = Redirect::to(&next).into_response();
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                session::set_cookie(SESSION_COOKIE, &out.token, "/", max_age),
            );
            h.append(
                header::SET_COOKIE,
                session::set_cookie(LOGIN_CSRF_COOKIE, "", "/login", 0),
            );
            resp
        }
        Err(StoreError::Unauthorized) => {
            refused(StatusCode::UNAUTHORIZED, "Wrong user name or password.")
        }
        Err(StoreError::Locked(secs)) => refused(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Too many failed sign-ins. Sign-in is locked; try again in {} minute(s).",
                secs.div_ceil(60)
            ),
        ),
        Err(StoreError::Forbidden(m)) => refused(StatusCode::FORBIDDEN, &format!("{m}.")),
        Err(StoreError::Invalid { message, .. }) => {
            refused(StatusCode::UNPROCESSABLE_ENTITY, &message)
        }
        Err(e) => PortalError::from_store(e, &"/login".parse().expect("valid uri")).into_response(),
    }
}

/// The session cookie lives as long as the token.
fn out_max_age(out: &LoginOut) -> i64 {
    mb_shared::time::parse_rfc3339(&out.expires_at)
        .map(|t| t.unix_timestamp() - session::now_secs() as i64)
        .unwrap_or(1800)
        .max(1)
}

pub(crate) async fn logout(
    State(app): State<Arc<AppState>>,
    s: Session,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !s.csrf_ok(&f.csrf) {
        return PortalError::forbidden_form().into_response();
    }
    // Whatever the store answers, the browser forgets the token.
    let _ = app
        .store
        .post::<_, serde_json::Value>("/api/v1/logout", Some(&s.token), &serde_json::json!({}))
        .await;
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(SESSION_COOKIE, "", "/", 0),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/messages?status=failed")),
            "/messages?status=failed"
        );
        for evil in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "messages",
        ] {
            assert_eq!(safe_next(Some(evil)), "/messages", "{evil}");
        }
        assert_eq!(safe_next(None), "/messages");
    }
}
