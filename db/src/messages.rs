//! What more than one program does to `messages` rows: marking redriven dead letters as
//! queued again (the portal's and `mbctl dead redrive`'s second half). The store's delivery
//! and portal queries are the store's own.

use crate::{AuditEntry, Db};
use mysql_async::prelude::*;

/// Marks the rows of redriven messages `queued` (they are back in the stream; delivery makes
/// them `delivered`) and audits the redrive.
pub async fn mark_redriven(
    db: &Db,
    domain: &str,
    message_ids: &[String],
    actor: &str,
) -> Result<(), mysql_async::Error> {
    let mut conn = db.pool().get_conn().await?;
    let mut tx = conn.start_transaction(Default::default()).await?;
    for chunk in message_ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let mut params: Vec<mysql_async::Value> = vec![domain.into()];
        params.extend(chunk.iter().map(|id| id.as_str().into()));
        tx.exec_drop(
            format!(
                "UPDATE messages SET status = 'queued' \
                 WHERE domain = ? AND status = 'failed' AND message_id IN ({marks})"
            ),
            params,
        )
        .await?;
    }
    crate::audit(
        &mut tx,
        &AuditEntry {
            actor,
            action: "dead.redrive",
            target: domain,
            domain: Some(domain),
            details: &format!("{} message(s)", message_ids.len()),
        },
    )
    .await?;
    tx.commit().await
}
