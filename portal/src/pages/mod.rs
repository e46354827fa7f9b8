//! The portal's pages, one module per resource, and what they share: the page shell with its
//! navigation, times, status badges, and the error pages.
//!
//! Everything is rendered on the server with maud, which escapes every value it interpolates:
//! a message body with `<script>` or HTML in it is shown as text. No inline script or style
//! (the CSP forbids them); `/static/app.js` only adds the reader's local time beside each
//! UTC time, and the pages work without it.

pub(crate) mod audit;
pub(crate) mod certificates;
pub(crate) mod login;
pub(crate) mod messages;
pub(crate) mod system;
pub(crate) mod users;

use crate::session::Session;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use mb_shared::status::MessageStatus;

/// The page shell: head, navigation for the signed-in person, the content.
pub(crate) fn page(title: &str, session: Option<&Session>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · mb" }
                link rel="stylesheet" href="/static/style.css";
                script src="/static/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/messages" { "mb" }
                    @if let Some(s) = session {
                        nav {
                            a href="/messages" { "Messages" }
                            @if s.is_admin() {
                                a href="/admin/users" { "Users" }
                                a href="/admin/certificates" { "Certificates" }
                                a href="/admin/system" { "System" }
                                a href="/admin/audit" { "Audit" }
                            }
                        }
                        div.who {
                            span {
                                (s.claims.sub) " · " (s.claims.role)
                                @if let (Some(c), Some(d)) = (&s.claims.client_id, &s.claims.domain) { " · " (c) "." (d) }
                                @else if let Some(d) = &s.claims.domain { " · " (d) }
                            }
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (content) }
            }
        }
    }
}

/// A UTC time the reader's browser may also show in local time.
pub(crate) fn time(rfc3339: &str) -> Markup {
    let shown = rfc3339
        .get(..19)
        .map(|t| t.replace('T', " "))
        .unwrap_or_else(|| rfc3339.to_owned());
    html! { time datetime=(rfc3339) { (shown) " UTC" } }
}

pub(crate) fn maybe_time(t: Option<&str>) -> Markup {
    match t {
        Some(t) => time(t),
        None => html! { span.muted { "—" } },
    }
}

pub(crate) fn status_badge(s: MessageStatus) -> Markup {
    html! { span class={"badge " (s.as_str())} { (s.as_str()) } }
}

/// A field's error under a form input, if the store named it.
pub(crate) fn field_error(fields: &mb_shared::message::FieldErrors, name: &str) -> Markup {
    html! {
        @if let Some(e) = fields.get(name) {
            span.field-error { (e) }
        }
    }
}

/// Why a page could not be shown.
pub(crate) enum PortalError {
    /// The session is over: sign in again, then come back.
    SignIn(axum::http::Uri),
    Page {
        status: StatusCode,
        title: &'static str,
        message: String,
    },
}

impl PortalError {
    pub(crate) fn from_store(e: StoreError, uri: &axum::http::Uri) -> Self {
        let page = |status, title, message| PortalError::Page {
            status,
            title,
            message,
        };
        match e {
            StoreError::Unauthorized => PortalError::SignIn(uri.clone()),
            StoreError::Forbidden(m) => page(StatusCode::FORBIDDEN, "Not allowed", m),
            StoreError::NotFound(_) => page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here you may see.".into(),
            ),
            StoreError::Invalid { message, fields } => {
                let detail = fields
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let text = if detail.is_empty() {
                    message
                } else {
                    format!("{message} ({detail})")
                };
                page(StatusCode::UNPROCESSABLE_ENTITY, "Not accepted", text)
            }
            StoreError::Locked(_) | StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store unavailable");
                page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    "The broker is not answering right now. Try again in a moment.".into(),
                )
            }
        }
    }

    pub(crate) fn forbidden_form() -> Self {
        PortalError::Page {
            status: StatusCode::FORBIDDEN,
            title: "Form expired",
            message: "This form is not valid for your session (it may be old, or from another \
                      window). Go back, reload the page and try again."
                .into(),
        }
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        match self {
            PortalError::SignIn(uri) => crate::session::to_login(&uri),
            PortalError::Page {
                status,
                title,
                message,
            } => (
                status,
                page(
                    title,
                    None,
                    html! {
                        h1 { (title) }
                        p { (message) }
                        p { a href="/messages" { "Back to your messages" } }
                    },
                ),
            )
                .into_response(),
        }
    }
}

/// The store's answer for a page, or the page that says why not.
pub(crate) trait OrPage<T> {
    fn or_page(self, uri: &axum::http::Uri) -> Result<T, PortalError>;
}

impl<T> OrPage<T> for Result<T, StoreError> {
    fn or_page(self, uri: &axum::http::Uri) -> Result<T, PortalError> {
        self.map_err(|e| PortalError::from_store(e, uri))
    }
}

/// After a change: back to `path`, saying what was done.
pub(crate) fn done(path: &str, notice: &str) -> axum::response::Response {
    let n: String = form_urlencoded::byte_serialize(notice.as_bytes()).collect();
    axum::response::Redirect::to(&format!("{path}?notice={n}")).into_response()
}

/// The notice a change left in the URL, and a problem to show, if any.
pub(crate) fn notices(notice: Option<&str>, problem: Option<&str>) -> Markup {
    html! {
        @if let Some(n) = notice { p.notice role="status" { (n) } }
        @if let Some(p) = problem { p.problem role="alert" { (p) } }
    }
}

/// `?notice=…` of a page a change redirected to.
#[derive(serde::Deserialize, Default)]
pub(crate) struct NoticeIn {
    #[serde(default)]
    pub(crate) notice: Option<String>,
}

/// Only administrators see the admin pages (the store checks again on every call).
pub(crate) fn require_admin(s: &Session) -> Result<(), PortalError> {
    if s.is_admin() {
        Ok(())
    } else {
        Err(PortalError::Page {
            status: StatusCode::FORBIDDEN,
            title: "Not allowed",
            message: "This page is for administrators.".into(),
        })
    }
}

/// A form's CSRF token must be this session's.
pub(crate) fn check_csrf(s: &Session, token: &str) -> Result<(), PortalError> {
    if s.csrf_ok(token) {
        Ok(())
    } else {
        Err(PortalError::forbidden_form())
    }
}
