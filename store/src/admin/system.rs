//! `/admin/system` and `/admin/dead/{domain}`: the queues of the domains an administrator
//! manages (backlog, pending, oldest pending, consumers, dead letters, deliveries in the last
//! minute and hour), and the dead letters with their redrive.

use crate::AppState;
use crate::auth::Admin;
use crate::error::ApiError;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use mb_shared::api::DeadLetter;
use mb_shared::domains::Domain;
use mb_shared::extract::ApiPath;
use mb_shared::streams::{self, DomainStats};
use std::sync::Arc;

pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/system", get(system))
        .route("/admin/dead/{domain}", get(dead_letters))
        .route("/admin/dead/{domain}/redrive", post(redrive))
}

/// Dead letters listed at most.
const DEAD_PAGE: usize = 100;

async fn system(
    State(app): State<Arc<AppState>>,
    admin: Admin,
) -> Result<Json<Vec<DomainStats>>, ApiError> {
    let mut out = Vec::new();
    let mut con = app.redis.clone();
    for domain in app.domains.iter().filter(|d| admin.scope().allows(d)) {
        out.push(streams::stats(&mut con, domain).await?);
    }
    Ok(Json(out))
}

fn managed(app: &AppState, admin: &Admin, domain: &str) -> Result<Domain, ApiError> {
    let d = app
        .domains
        .get(domain)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no domain `{domain}`")))?;
    admin.check_domain(&d)?;
    Ok(d)
}

async fn dead_letters(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(domain): ApiPath<String>,
) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    let domain = managed(&app, &admin, &domain)?;
    let mut con = app.redis.clone();
    let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(streams::dead_key(&domain))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(DEAD_PAGE)
        .query_async(&mut con)
        .await?;
    Ok(Json(
        reply
            .ids
            .iter()
            .map(|e| {
                let get = |k: &str| e.get::<String>(k).unwrap_or_default();
                DeadLetter {
                    dead_id: e.id.clone(),
                    message_id: get("message_id"),
                    attempts: get("attempts"),
                    failed_at: get("failed_at"),
                    error: get("error"),
                }
            })
            .collect(),
    ))
}

async fn redrive(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(domain): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let domain = managed(&app, &admin, &domain)?;
    let mut con = app.redis.clone();
    let moved = streams::redrive_all(&mut con, &domain).await?;
    mb_db::messages::mark_redriven(&app.db, domain.as_str(), &moved, &admin.actor).await?;
    tracing::info!(%domain, count = moved.len(), actor = %admin.actor, "dead letters redriven");
    Ok(Json(serde_json::json!({"redriven": moved.len()})))
}
