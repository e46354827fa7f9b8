//! `/admin/users`: portal users. A domain's administrator manages the users and admins of their
//! domain; a superadmin everyone. Disabling a user, resetting their password or changing their
//! role ends their sessions at once.

use crate::AppState;
use crate::auth::Admin;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use mb_db::users::{self, Change, Profile, User};
use mb_shared::api::{CreateUserIn, PasswordIn, ProfileIn};
use mb_shared::extract::{ApiJson, ApiPath};
use std::sync::Arc;

pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/users", get(list).post(create))
        .route("/admin/users/{name}/disable", post(disable))
        .route("/admin/users/{name}/enable", post(enable))
        .route("/admin/users/{name}/password", post(password))
        .route("/admin/users/{name}/profile", post(profile))
}

/// The profile, checked to be within what `admin` administers.
fn checked(p: ProfileIn, app: &AppState, admin: &Admin) -> Result<Profile, ApiError> {
    let blank = |s: Option<String>| s.filter(|v| !v.trim().is_empty());
    let p = Profile {
        role: p.role,
        client_name: blank(p.client),
        domain: blank(p.domain),
    };
    if let Some(d) = &p.domain
        && app.domains.get(d).is_none()
    {
        return Err(ApiError::Unprocessable(format!(
            "domain `{d}` is not configured"
        )));
    }
    if !admin.user_scope().allows(&p) {
        return Err(ApiError::Forbidden(
            "that role or domain is outside what you administer".into(),
        ));
    }
    Ok(p)
}

async fn list(State(app): State<Arc<AppState>>, admin: Admin) -> Result<Json<Vec<User>>, ApiError> {
    Ok(Json(users::list(&app.db, admin.user_scope()).await?))
}

async fn create(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiJson(req): ApiJson<CreateUserIn>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let profile = checked(req.profile, &app, &admin)?;
    let user = users::create(
        &app.db,
        &req.username,
        &req.password,
        &profile,
        &admin.actor,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn apply(
    app: &AppState,
    admin: &Admin,
    name: &str,
    change: Change<'_>,
) -> Result<Json<serde_json::Value>, ApiError> {
    users::change(&app.db, name, admin.user_scope(), change, &admin.actor).await?;
    Ok(Json(serde_json::json!({"username": name})))
}

async fn disable(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    apply(&app, &admin, &name, Change::Disable).await
}

async fn enable(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    apply(&app, &admin, &name, Change::Enable).await
}

async fn password(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<PasswordIn>,
) -> Result<Json<serde_json::Value>, ApiError> {
    apply(&app, &admin, &name, Change::Password(&req.password)).await
}

async fn profile(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<ProfileIn>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = checked(req, &app, &admin)?;
    apply(&app, &admin, &name, Change::Profile(&p)).await
}
