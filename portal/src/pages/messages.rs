//! `GET /messages` (the list: filters in the URL, newest first, a page at a time) and
//! `GET /messages/{id}` (one message in full). What a person may read is the store's decision;
//! nothing here can be edited or exported.

use super::{OrPage, PortalError, field_error, maybe_time, page, status_badge, time};
use crate::AppState;
use crate::session::Session;
use crate::store::StoreError;
use axum::extract::{Path, RawQuery, State};
use axum::http::Uri;
use maud::{Markup, html};
use mb_shared::api::{MessageDetail, MessagePage};
use mb_shared::message::FieldErrors;
use mb_shared::status::MessageStatus;
use std::sync::Arc;

/// The filters of the list as the URL carries them (`status` may repeat).
#[derive(Debug, Default, Clone)]
pub(crate) struct Filters {
    from: String,
    to: String,
    statuses: Vec<String>,
    sender: String,
    id: String,
    client: String,
    min_attempts: String,
    cursor: String,
}

impl Filters {
    fn parse(query: Option<&str>) -> Self {
        let mut f = Filters::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let v = v.trim().to_owned();
            match k.as_ref() {
                "from" => f.from = v,
                "to" => f.to = v,
                "status" if !v.is_empty() => f.statuses.push(v),
                "sender" => f.sender = v,
                "id" => f.id = v,
                "client" => f.client = v,
                "min_attempts" => f.min_attempts = v,
                "cursor" => f.cursor = v,
                _ => {}
            }
        }
        f
    }

    /// The pairs to put in a URL, without the empty ones.
    fn pairs(&self, cursor: Option<&str>) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&str, String)> = vec![
            ("from", self.from.clone()),
            ("to", self.to.clone()),
            ("sender", self.sender.clone()),
            ("id", self.id.clone()),
            ("client", self.client.clone()),
            ("min_attempts", self.min_attempts.clone()),
        ];
        out.extend(self.statuses.iter().map(|s| ("status", s.clone())));
        if let Some(c) = cursor {
            out.push(("cursor", c.to_owned()));
        }
        out.retain(|(_, v)| !v.is_empty());
        out
    }

    /// The store's query: statuses as one comma-separated value.
    fn store_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs(None).iter().filter(|(k, _)| *k != "status") {
            q.append_pair(k, v);
        }
        if !self.statuses.is_empty() {
            q.append_pair("status", &self.statuses.join(","));
        }
        if !self.cursor.is_empty() {
            q.append_pair("cursor", &self.cursor);
        }
        q.finish()
    }

    fn url(&self, cursor: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs(cursor) {
            q.append_pair(k, &v);
        }
        format!("/messages?{}", q.finish())
    }

    fn is_filtered(&self) -> bool {
        !self.pairs(None).is_empty()
    }
}

pub(crate) async fn list(
    State(app): State<Arc<AppState>>,
    s: Session,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Result<Markup, PortalError> {
    let f = Filters::parse(query.as_deref());
    let path = format!("/api/v1/messages?{}", f.store_query());
    let (result, fields) = match app.store.get::<MessagePage>(&path, Some(&s.token)).await {
        Ok(p) => (Some(p), FieldErrors::new()),
        Err(StoreError::Invalid { fields, .. }) => (None, fields),
        Err(e) => return Err(PortalError::from_store(e, &uri)),
    };
    Ok(page(
        "Messages",
        Some(&s),
        html! {
            h1 { "Messages" }
            (filter_form(&s, &f, &fields))
            @match &result {
                None => p.problem { "Check the filters marked above." },
                Some(p) if p.messages.is_empty() => p.muted { "No messages match." },
                Some(p) => (table(&s, p)),
            }
            nav.pages {
                @if !f.cursor.is_empty() {
                    a href=(f.url(None)) { "« Newest" }
                }
                @if let Some(next) = result.as_ref().and_then(|p| p.next_cursor.as_deref()) {
                    a href=(f.url(Some(next))) rel="next" { "Older »" }
                }
            }
        },
    ))
}

fn filter_form(s: &Session, f: &Filters, fields: &FieldErrors) -> Markup {
    html! {
        form.filters method="get" action="/messages" {
            label { "From" input type="date" name="from" value=(f.from); (field_error(fields, "from")) }
            label { "To" input type="date" name="to" value=(f.to); (field_error(fields, "to")) }
            label { "Sender number" input type="text" name="sender" value=(f.sender) placeholder="+14155550123" inputmode="tel"; (field_error(fields, "sender")) }
            label { "Message id" input type="text" name="id" value=(f.id); (field_error(fields, "id")) }
            @if s.is_admin() {
                label { "Client" input type="text" name="client" value=(f.client); }
            }
            label { "Attempts ≥" input type="number" name="min_attempts" min="0" value=(f.min_attempts); }
            fieldset {
                legend { "Status" }
                @for st in MessageStatus::ALL {
                    label.check {
                        input type="checkbox" name="status" value=(st.as_str()) checked[f.statuses.iter().any(|x| x == st.as_str())];
                        (st.as_str())
                    }
                }
                (field_error(fields, "status"))
            }
            div.actions {
                button type="submit" { "Filter" }
                @if f.is_filtered() { a href="/messages" { "Clear" } }
            }
        }
    }
}

/// At most this many characters of a body in the list; the detail page shows it all.
const PREVIEW_CHARS: usize = 120;

fn table(s: &Session, p: &MessagePage) -> Markup {
    html! {
        div.scroll {
            table.messages {
                thead { tr {
                    th { "Queued" } th { "Sender" } th { "Message" } th { "Status" } th { "Attempts" }
                    @if s.is_admin() { th { "Client" } }
                } }
                tbody {
                    @for m in &p.messages {
                        tr {
                            td { a href={"/messages/" (m.message_id)} { (time(&m.queued_at)) } }
                            td.mono { (m.sender_mask) }
                            td.body {
                                @match &m.body {
                                    Some(b) => {
                                        (b.chars().take(PREVIEW_CHARS).collect::<String>())
                                        @if b.chars().count() > PREVIEW_CHARS { "…" }
                                    }
                                    None => span.muted { "(cannot be decrypted)" },
                                }
                            }
                            td { (status_badge(m.status)) }
                            td.num { (m.attempt_count) }
                            @if s.is_admin() { td { (m.client) "." (m.domain) } }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) async fn detail(
    State(app): State<Arc<AppState>>,
    s: Session,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Markup, PortalError> {
    let safe: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
    let d: MessageDetail = app
        .store
        .get(&format!("/api/v1/messages/{safe}"), Some(&s.token))
        .await
        .or_page(&uri)?;
    let m = &d.message;
    Ok(page(
        "Message",
        Some(&s),
        html! {
            p { a href="/messages" { "« Messages" } }
            h1 { "Message" }
            dl.detail {
                dt { "Message id" } dd.mono { (m.message_id) }
                dt { "Client" } dd { (m.client) "." (m.domain) }
                dt { "Sender" } dd.mono { (m.sender_mask) }
                dt { "Status" } dd { (status_badge(m.status)) }
                dt { "Attempts" } dd { (m.attempt_count) }
                dt { "Queued" } dd { (time(&m.queued_at)) }
                dt { "Delivered" } dd { (maybe_time(m.delivered_at.as_deref())) }
                dt { "Last change" } dd { (time(&m.updated_at)) }
                @if let Some(e) = &m.last_error {
                    dt { "Last error" } dd.problem { (e) }
                }
                dt { "In Redis" } dd {
                    @match d.redis.state.as_str() {
                        "dead_lettered" => {
                            "dead-lettered (" span.mono { (d.redis.dead_id.as_deref().unwrap_or("")) } ")"
                            @if let Some(e) = &d.redis.error { br; span.muted { (e) } }
                        }
                        "queued" => "back in the stream, waiting for delivery",
                        _ => "no (delivered messages leave Redis)",
                    }
                }
            }
            h2 { "Body" }
            @match &m.body {
                Some(b) => pre.body { (b) },
                None => p.problem { "The body cannot be decrypted: " (m.body_error.as_deref().unwrap_or("")) },
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_statuses_and_blanks_survive_the_round_trip() {
        let f = Filters::parse(Some(
            "status=failed&status=delivered&sender=%2B14155550123&from=&cursor=abc",
        ));
        assert_eq!(f.statuses, ["failed", "delivered"]);
        assert_eq!(f.sender, "+14155550123");
        assert_eq!(
            f.store_query(),
            "sender=%2B14155550123&status=failed%2Cdelivered&cursor=abc"
        );
        let next = f.url(Some("xyz"));
        assert!(next.starts_with("/messages?sender=%2B14155550123&status=failed&status=delivered"));
        assert!(next.ends_with("&cursor=xyz"));
        assert!(!Filters::parse(None).is_filtered());
    }
}
