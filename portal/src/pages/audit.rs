//! `/admin/audit`: who did what, newest first, a page at a time. A domain's administrator sees
//! what concerns their domain; a superadmin everything.

use super::{OrPage, PortalError, page, require_admin, time};
use crate::AppState;
use crate::session::Session;
use axum::extract::{Query, State};
use axum::http::Uri;
use maud::{Markup, html};
use mb_shared::api::AuditPage;
use std::sync::Arc;

#[derive(serde::Deserialize)]
pub(crate) struct PageIn {
    #[serde(default)]
    before: Option<u64>,
}

pub(crate) async fn show(
    State(app): State<Arc<AppState>>,
    s: Session,
    uri: Uri,
    Query(q): Query<PageIn>,
) -> Result<Markup, PortalError> {
    require_admin(&s)?;
    let path = match q.before {
        Some(b) => format!("/admin/audit?before={b}"),
        None => "/admin/audit".to_owned(),
    };
    let p: AuditPage = app.store.get(&path, Some(&s.token)).await.or_page(&uri)?;
    Ok(page(
        "Audit log",
        Some(&s),
        html! {
            h1 { "Audit log" }
            div.scroll { table {
                thead { tr { th { "When" } th { "Who" } th { "What" } th { "Target" } th { "Domain" } th { "Details" } } }
                tbody { @for e in &p.entries {
                    tr {
                        td { (time(&mb_shared::time::from_unix_millis(e.at_ms))) }
                        td { (e.actor) }
                        td.mono { (e.action) }
                        td { (e.target) }
                        td { (e.domain.as_deref().unwrap_or("—")) }
                        td.muted { (e.details.as_deref().unwrap_or("")) }
                    }
                } }
            } }
            nav.pages {
                @if q.before.is_some() { a href="/admin/audit" { "« Newest" } }
                @if let Some(b) = p.next_before { a href={"/admin/audit?before=" (b)} { "Older »" } }
            }
        },
    ))
}
