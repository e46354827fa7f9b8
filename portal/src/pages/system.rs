//! `/admin/system`: each managed domain's queue (backlog, pending, oldest pending, consumers
//! with their idle time, dead letters, deliveries in the last minute and hour) and its dead
//! letters with a redrive button. The page refreshes itself every 10 seconds (a `<meta>`
//! refresh: no script needed).

use super::{NoticeIn, OrPage, PortalError, check_csrf, done, notices, page, require_admin};
use crate::AppState;
use crate::session::Session;
use axum::extract::{Form, Path, Query, State};
use axum::http::Uri;
use axum::response::Response;
use maud::{Markup, PreEscaped, html};
use mb_shared::api::DeadLetter;
use mb_shared::streams::DomainStats;
use std::sync::Arc;

#[derive(serde::Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

/// `12.3 s`, `4 min`, `2.5 h` for an age in milliseconds.
fn age(ms: u64) -> String {
    let s = ms as f64 / 1000.0;
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

pub(crate) async fn show(
    State(app): State<Arc<AppState>>,
    s: Session,
    uri: Uri,
    Query(q): Query<NoticeIn>,
) -> Result<Markup, PortalError> {
    require_admin(&s)?;
    let stats: Vec<DomainStats> = app
        .store
        .get("/admin/system", Some(&s.token))
        .await
        .or_page(&uri)?;
    let mut dead = Vec::new();
    for d in stats.iter().filter(|d| d.dead_letters > 0) {
        let letters: Vec<DeadLetter> = app
            .store
            .get(&format!("/admin/dead/{}", d.domain), Some(&s.token))
            .await
            .or_page(&uri)?;
        dead.push((d.domain.clone(), letters));
    }
    let content = html! {
        (PreEscaped(r#"<meta http-equiv="refresh" content="10">"#))
        h1 { "System" }
        (notices(q.notice.as_deref(), None))
        p.muted { "Refreshes every 10 seconds." }
        @for d in &stats { (domain_card(d)) }
        @for (domain, letters) in &dead { (dead_letters(&s, domain, letters)) }
    };
    Ok(page("System", Some(&s), content))
}

fn domain_card(d: &DomainStats) -> Markup {
    html! {
        section.card {
            h2 { (d.domain) }
            dl.stats {
                dt { "Backlog" } dd { (d.backlog) }
                dt { "Waiting (lag)" } dd { (d.lag) }
                dt { "Oldest waiting" } dd { (d.oldest_waiting_ms.map(age).unwrap_or_else(|| "—".into())) }
                dt { "Pending" } dd { (d.pending) }
                dt { "Oldest pending" } dd { (d.oldest_pending_ms.map(age).unwrap_or_else(|| "—".into())) }
                dt { "Dead letters" } dd.warn[d.dead_letters > 0] { (d.dead_letters) }
                dt { "Delivered, last minute" } dd { (d.delivered_last_minute) }
                dt { "Delivered, last hour" } dd { (d.delivered_last_hour) }
            }
            @if d.consumers.is_empty() {
                p.muted { "No consumers." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Consumer" } th { "Pending" } th { "Idle" } } }
                    tbody { @for c in &d.consumers {
                        tr { td.mono { (c.name) } td.num { (c.pending) } td { (age(c.idle_ms)) } }
                    } }
                } }
            }
        }
    }
}

fn dead_letters(s: &Session, domain: &str, letters: &[DeadLetter]) -> Markup {
    html! {
        section.card {
            h2 { "Dead letters of " (domain) }
            div.scroll { table {
                thead { tr { th { "Message" } th { "Attempts" } th { "Failed at" } th { "Error" } } }
                tbody { @for l in letters {
                    tr {
                        td.mono { a href={"/messages/" (l.message_id)} { (l.message_id) } }
                        td.num { (l.attempts) }
                        td { (super::time(&l.failed_at)) }
                        td { (l.error) }
                    }
                } }
            } }
            form method="post" action={"/admin/dead/" (domain) "/redrive"} {
                input type="hidden" name="csrf" value=(s.csrf);
                button type="submit" { "Redrive all dead letters of " (domain) }
            }
        }
    }
}

pub(crate) async fn redrive(
    State(app): State<Arc<AppState>>,
    s: Session,
    uri: Uri,
    Path(domain): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PortalError> {
    check_csrf(&s, &f.csrf)?;
    let d: String = form_urlencoded::byte_serialize(domain.as_bytes()).collect();
    let out: serde_json::Value = app
        .store
        .post(
            &format!("/admin/dead/{d}/redrive"),
            Some(&s.token),
            &serde_json::json!({}),
        )
        .await
        .or_page(&uri)?;
    let n = out["redriven"].as_u64().unwrap_or(0);
    Ok(done(
        "/admin/system",
        &format!("{n} dead letter(s) of {domain} put back on the stream."),
    ))
}

#[cfg(test)]
mod tests {
    use super::age;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(1500), "1.5 s");
        assert_eq!(age(600_000), "10 min");
        assert_eq!(age(9_000_000), "2.5 h");
    }
}
