//! The browser's side of a session: the store's token in an `HttpOnly; Secure;
//! SameSite=Strict` cookie, and CSRF tokens on every form.
//!
//! The portal does not trust the token: every page asks the store, which checks signature,
//! expiry and session. The portal only reads the token's claims to draw the navigation, and
//! sends the person to the sign-in page when the store says the session is over.
//!
//! A form's CSRF token is an HMAC (the portal's `csrf.key`) of the session token, so it is
//! bound to one session and worthless in another; it is compared in constant time. The
//! sign-in form, which has no session yet, uses a random token in a cookie of its own
//! (double submit).

use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, SameSite};
use mb_shared::crypto::HmacKey;
use mb_shared::status::Role;
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub(crate) const SESSION_COOKIE: &str = "mb_session";
pub(crate) const LOGIN_CSRF_COOKIE: &str = "mb_login_csrf";

/// What the token says about its holder (as the store signed it; shown, never trusted).
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct Claims {
    pub(crate) sub: String,
    pub(crate) role: Role,
    #[serde(default)]
    pub(crate) client_id: Option<String>,
    #[serde(default)]
    pub(crate) domain: Option<String>,
    pub(crate) exp: u64,
}

/// A signed-in person.
pub(crate) struct Session {
    pub(crate) token: String,
    pub(crate) claims: Claims,
    /// The CSRF token of this session's forms.
    pub(crate) csrf: String,
}

impl Session {
    pub(crate) fn is_admin(&self) -> bool {
        matches!(self.claims.role, Role::Admin | Role::Superadmin)
    }

    /// Whether a form's token is this session's.
    pub(crate) fn csrf_ok(&self, token: &str) -> bool {
        same(token, &self.csrf)
    }
}

/// The CSRF token of a session token.
pub(crate) fn csrf_for(key: &HmacKey, session_token: &str) -> String {
    key.hex(&[b"csrf", session_token.as_bytes()])
}

pub(crate) fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name` in the request.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A `Set-Cookie` for a secret the browser keeps from scripts and other sites.
pub(crate) fn set_cookie(name: &str, value: &str, path: &str, max_age_secs: i64) -> HeaderValue {
    let c = Cookie::build((name, value))
        .path(path)
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build();
    HeaderValue::from_str(&c.to_string()).expect("cookie values are ASCII")
}

/// The claims of a token, read without checking it (the store checks it).
fn read_claims(token: &str) -> Option<Claims> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// Where to go to sign in, and back afterwards.
pub(crate) fn to_login(parts_uri: &axum::http::Uri) -> Response {
    let back = parts_uri
        .path_and_query()
        .map_or("/messages", |p| p.as_str());
    let next: String = form_urlencoded::byte_serialize(back.as_bytes()).collect();
    let mut resp = Redirect::to(&format!("/login?next={next}")).into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", "/", 0));
    resp
}

impl FromRequestParts<Arc<AppState>> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Response> {
        let token = cookie(&parts.headers, SESSION_COOKIE)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| to_login(&parts.uri))?;
        let claims = read_claims(&token)
            .filter(|c| c.exp > now_secs())
            .ok_or_else(|| to_login(&parts.uri))?;
        Ok(Session {
            csrf: csrf_for(&app.csrf, &token),
            token,
            claims,
        })
    }
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_bound_to_their_session() {
        let key = HmacKey::from_bytes(&[1; 32]);
        let a = csrf_for(&key, "token-a");
        assert!(same(&a, &csrf_for(&key, "token-a")));
        assert!(!same(&a, &csrf_for(&key, "token-b")));
        assert!(!same("", ""), "an empty token never matches");
        assert!(!same(
            &a,
            &csrf_for(&HmacKey::from_bytes(&[2; 32]), "token-a")
        ));
    }

    #[test]
    fn cookies_are_http_only_secure_and_strict() {
        let v = set_cookie(SESSION_COOKIE, "abc", "/", 1800);
        let s = v.to_str().unwrap();
        for part in [
            "mb_session=abc",
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=1800",
        ] {
            assert!(s.contains(part), "{s}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("x=1; mb_session=tok; y=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("tok"));
        assert_eq!(cookie(&h, "nope"), None);
    }
}
