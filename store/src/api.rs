//! `/api/v1/*`: what the portal asks for a person.
//!
//! * `POST /api/v1/login` (the portal only): user name, password and the browser's address.
//!   Locked user names and addresses are refused before any password is hashed; a right
//!   password opens a session and returns its token ([`crate::jwt`]).
//! * `POST /api/v1/logout`, `GET /api/v1/me`: end the session; who is signed in.
//! * `GET /api/v1/messages`: the caller's messages, newest first, filtered and paginated
//!   ([`crate::listing`]), bodies decrypted for the caller only.
//! * `GET /api/v1/messages/{id}`: one message in full, with where it is in Redis if it is
//!   there. Anything outside the caller's scope is a 404, as if it did not exist.

use crate::AppState;
use crate::auth::{Portal, PortalUser};
use crate::error::ApiError;
use crate::jwt::{Claims, now_secs};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use mb_db::listing::{self, ListIn, Row};
use mb_db::users::{self, Login, User};
use mb_shared::api::{
    LoginIn, LoginOut, MessageDetail, MessagePage, MessageView, RedisState, SessionUser,
};
use mb_shared::extract::{ApiJson, ApiPath, ApiQuery};
use mb_shared::message::MessageId;
use mb_shared::status::MessageStatus;
use mb_shared::time::from_unix_millis;
use mysql_async::prelude::*;
use std::sync::Arc;

pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/messages", get(list))
        .route("/api/v1/messages/{id}", get(detail))
}

fn session_user(u: &User) -> SessionUser {
    SessionUser {
        username: u.username.clone(),
        role: u.role,
        client: u.client_name.clone(),
        domain: u.domain.clone(),
        last_login_at: u.last_login_ms.map(from_unix_millis),
    }
}

async fn login(
    State(app): State<Arc<AppState>>,
    _portal: Portal,
    ApiJson(req): ApiJson<LoginIn>,
) -> Result<Json<LoginOut>, ApiError> {
    let user = match users::check_login(
        &app.db,
        &req.username,
        &req.password,
        &req.client_addr,
        &app.throttle,
    )
    .await?
    {
        Login::Locked(wait) => {
            app.metrics.logins.get_or_create(&outcome("locked")).inc();
            return Err(ApiError::LoginLocked {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        Login::Refused => {
            app.metrics.logins.get_or_create(&outcome("refused")).inc();
            return Err(ApiError::Unauthorized("wrong user name or password".into()));
        }
        Login::Ok(u) if u.disabled => {
            app.metrics.logins.get_or_create(&outcome("disabled")).inc();
            return Err(ApiError::Forbidden("this account is disabled".into()));
        }
        Login::Ok(u) => u,
    };
    let session = users::open_session(&app.db, user.id, app.jwt.ttl).await?;
    let iat = now_secs();
    let exp = iat + app.jwt.ttl.as_secs();
    let token = app
        .jwt
        .sign(&Claims {
            sub: user.username.clone(),
            role: user.role,
            client_id: user.client_name.clone(),
            domain: user.domain.clone(),
            iat,
            exp,
            sid: hex::encode(session),
        })
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    app.metrics.logins.get_or_create(&outcome("ok")).inc();
    tracing::info!(user = %user.username, "signed in");
    Ok(Json(LoginOut {
        token,
        expires_at: from_unix_millis(exp as i64 * 1000),
        user: session_user(&user),
    }))
}

fn outcome(o: &'static str) -> crate::metrics::OutcomeLabel {
    crate::metrics::OutcomeLabel { outcome: o }
}

async fn logout(
    State(app): State<Arc<AppState>>,
    who: PortalUser,
) -> Result<Json<serde_json::Value>, ApiError> {
    users::close_session(&app.db, &who.session).await?;
    Ok(Json(serde_json::json!({"signed_out": who.user.username})))
}

async fn me(who: PortalUser) -> Json<SessionUser> {
    Json(session_user(&who.user))
}

fn view(app: &AppState, r: Row) -> MessageView {
    let (body, body_error) = match app
        .keyring
        .get()
        .decrypt(r.message_id.as_bytes(), &r.body_ciphertext)
    {
        Ok(b) => (Some(String::from_utf8_lossy(&b).into_owned()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    MessageView {
        message_id: r.message_id,
        client: r.client_name,
        domain: r.domain,
        sender_mask: r.sender_mask,
        body,
        body_error,
        status: r.status,
        attempt_count: r.attempt_count,
        last_error: r.last_error,
        queued_at: from_unix_millis(r.queued_ms),
        delivered_at: r.delivered_ms.map(from_unix_millis),
        updated_at: from_unix_millis(r.updated_ms),
    }
}

async fn list(
    State(app): State<Arc<AppState>>,
    who: PortalUser,
    ApiQuery(q): ApiQuery<ListIn>,
) -> Result<Json<MessagePage>, ApiError> {
    let filter = q.check(&app.hmac).map_err(ApiError::Validation)?;
    let (sql, params) = listing::list_query(&who.visibility(), &filter);
    let mut rows: Vec<Row> = app.reads.conn().await?.exec(sql, params).await?;
    let next_cursor = (rows.len() > filter.limit as usize).then(|| {
        rows.truncate(filter.limit as usize);
        rows.last()
            .and_then(|r| listing::encode_cursor(&r.message_id))
            .unwrap_or_default()
    });
    Ok(Json(MessagePage {
        messages: rows.into_iter().map(|r| view(&app, r)).collect(),
        next_cursor,
    }))
}

/// Dead letters searched for a message (the newest this many).
const DEAD_SEARCH: usize = 10_000;

async fn detail(
    State(app): State<Arc<AppState>>,
    who: PortalUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MessageDetail>, ApiError> {
    let id = MessageId::parse(&id).ok_or_else(ApiError::no_such_message)?;
    let (sql, params) = listing::detail_query(&who.visibility(), &id);
    let row: Row = app
        .reads
        .conn()
        .await?
        .exec_first(sql, params)
        .await?
        .ok_or_else(ApiError::no_such_message)?;
    let redis = in_redis(&app, &row).await?;
    Ok(Json(MessageDetail {
        message: view(&app, row),
        redis,
    }))
}

async fn in_redis(app: &AppState, row: &Row) -> Result<RedisState, ApiError> {
    let none = RedisState {
        state: "none".into(),
        dead_id: None,
        error: None,
    };
    if row.status == MessageStatus::Delivered {
        return Ok(none);
    }
    if row.status == MessageStatus::Queued {
        return Ok(RedisState {
            state: "queued".into(),
            ..none
        });
    }
    let Ok(domain) = mb_shared::domains::Domain::parse(&row.domain) else {
        return Ok(none);
    };
    let mut con = app.redis.clone();
    let dead: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(mb_shared::streams::dead_key(&domain))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(DEAD_SEARCH)
        .query_async(&mut con)
        .await?;
    Ok(dead
        .ids
        .iter()
        .find(|e| e.get::<String>("message_id").as_deref() == Some(row.message_id.as_str()))
        .map_or(none, |e| RedisState {
            state: "dead_lettered".into(),
            dead_id: Some(e.id.clone()),
            error: e.get("error"),
        }))
}
