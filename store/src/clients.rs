//! Client names by certificate fingerprint, for the `client_name` of each stored message (the
//! portal scopes a user's messages by client name, which stays the same across certificate
//! renewals). Held in memory and reloaded from `clients` when a fingerprint is not found, so
//! the delivery path costs a map lookup, not a query.

use arc_swap::ArcSwap;
use mb_db::Db;
use mysql_async::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;

#[derive(Default)]
pub(crate) struct ClientNames {
    by_fingerprint: ArcSwap<HashMap<String, String>>,
    /// When the last reload started; the lock makes concurrent misses share one reload.
    reloaded: tokio::sync::Mutex<Option<Instant>>,
}

impl ClientNames {
    /// The client name of each fingerprint (empty for one the broker does not know).
    pub(crate) async fn names(
        &self,
        db: &Db,
        fingerprints: &[&str],
    ) -> Result<Vec<String>, mysql_async::Error> {
        let asked = Instant::now();
        let map = self.by_fingerprint.load();
        if fingerprints.iter().all(|f| map.contains_key(*f)) {
            return Ok(fingerprints.iter().map(|f| map[*f].clone()).collect());
        }
        self.reload_since(db, asked).await?;
        let map = self.by_fingerprint.load();
        Ok(fingerprints
            .iter()
            .map(|f| map.get(*f).cloned().unwrap_or_default())
            .collect())
    }

    /// Reloads unless a reload started at or after `since`.
    async fn reload_since(&self, db: &Db, since: Instant) -> Result<(), mysql_async::Error> {
        let mut last = self.reloaded.lock().await;
        if last.is_some_and(|t| t >= since) {
            return Ok(());
        }
        let started = Instant::now();
        let rows: Vec<(String, String)> = db
            .pool()
            .get_conn()
            .await?
            .query("SELECT fingerprint, name FROM clients")
            .await?;
        self.by_fingerprint
            .store(Arc::new(rows.into_iter().collect()));
        *last = Some(started);
        Ok(())
    }
}
