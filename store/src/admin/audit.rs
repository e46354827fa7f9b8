//! `/admin/audit`: who did what, newest first, a page at a time (keyset on the row id). A
//! domain's administrator sees what concerns their domain; a superadmin everything.

use crate::AppState;
use crate::auth::Admin;
use crate::error::ApiError;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use mb_shared::api::{AuditPage, AuditRecord};
use mb_shared::extract::ApiQuery;
use mysql_async::prelude::*;
use std::sync::Arc;

pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new().route("/admin/audit", get(list))
}

#[derive(serde::Deserialize)]
struct PageIn {
    /// Entries older than this id.
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

async fn list(
    State(app): State<Arc<AppState>>,
    admin: Admin,
    ApiQuery(page): ApiQuery<PageIn>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = page.limit.unwrap_or(50).clamp(1, 200);
    let mut params: Vec<mysql_async::Value> = vec![page.before.unwrap_or(u64::MAX).into()];
    let scope = match &admin.domain {
        Some(d) => {
            params.push(d.as_str().into());
            "AND domain = ?"
        }
        None => "",
    };
    params.push((limit + 1).into());
    let mut entries: Vec<AuditRecord> = app
        .db
        .pool()
        .get_conn()
        .await?
        .exec(
            format!(
                "SELECT id, CAST(UNIX_TIMESTAMP(at) * 1000 AS SIGNED) AS at_ms, actor, action, \
                 target, domain, details FROM audit_log WHERE id < ? {scope} \
                 ORDER BY id DESC LIMIT ?"
            ),
            params,
        )
        .await?;
    let next_before = (entries.len() > limit as usize).then(|| {
        entries.truncate(limit as usize);
        entries.last().map_or(0, |e| e.id)
    });
    Ok(Json(AuditPage {
        entries,
        next_before,
    }))
}
