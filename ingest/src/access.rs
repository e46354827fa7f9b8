//! Who may submit: ingest keeps the store's access list (`/internal/v1/access`) and polls it
//! every `revocation_poll` (1 s by default), with the last `ETag`, so an unchanged list costs
//! one small 304.
//!
//! The list names the active client certificates by fingerprint: a certificate the CA signed
//! but the broker never recorded (made with the CA key by hand, say) is refused with 403 like a
//! revoked one. A fingerprint ingest does not know yet may be one issued a moment ago, so the
//! verdict waits for a fetch that started after the request arrived (requests waiting together
//! share one fetch, and such fetches start at most every [`ON_DEMAND_INTERVAL`], so a flood of
//! unknown certificates cannot flood the store), and a new client can submit at once.
//!
//! When the list changed, ingest swaps in a TLS configuration built with the new CRLs, so new
//! handshakes with a revoked certificate fail, and swaps the [`AccessList`] that
//! [`crate::caller::Caller`] checks on every request, so connections opened before a revocation
//! are refused too. No restart. While the store is unreachable the last known list stays in
//! force; until the first fetch succeeds, ingest refuses clients with 503 rather than admit one
//! it cannot check.

use arc_swap::{ArcSwap, ArcSwapOption};
use mb_shared::config::TlsFiles;
use mb_shared::domains::Domains;
use mb_shared::internal::{ACCESS_PATH, AccessListOut, InternalClient};
use rustls::ServerConfig;
use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::PemObject;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Fetches asked for by unknown fingerprints start at most this often.
pub(crate) const ON_DEMAND_INTERVAL: Duration = Duration::from_millis(100);

/// The clients ingest admits, and why it refuses the others.
#[derive(Default)]
pub(crate) struct AccessList {
    /// Fingerprints of active client certificates.
    pub(crate) active: HashSet<String>,
    pub(crate) revoked_serials: HashSet<String>,
    pub(crate) disabled: HashSet<String>,
}

/// Why a certificate may not submit, if it may not.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Admitted,
    Revoked,
    Disabled,
    Unknown,
    /// Unknown to the list ingest holds, and the store could not be asked for a newer one.
    Unverifiable,
}

impl AccessList {
    pub(crate) fn verdict(&self, client_id: &str, serial: &str) -> Verdict {
        if self.revoked_serials.contains(serial) {
            Verdict::Revoked
        } else if self.disabled.contains(client_id) {
            Verdict::Disabled
        } else if self.active.contains(client_id) {
            Verdict::Admitted
        } else {
            Verdict::Unknown
        }
    }
}

/// The access list and the TLS configuration built from it, kept current.
pub(crate) struct AccessControl {
    list: ArcSwapOption<AccessList>,
    /// The listener's TLS configuration, rebuilt with each new CRL.
    pub(crate) tls: Arc<ArcSwap<ServerConfig>>,
    files: TlsFiles,
    domains: Domains,
    store: InternalClient,
    /// The `ETag` of the list held and when fetches last started and succeeded. The lock also
    /// makes concurrent fetches wait for one another instead of all asking the store.
    fetched: tokio::sync::Mutex<Fetched>,
}

#[derive(Default)]
struct Fetched {
    etag: Option<String>,
    started: Option<Instant>,
    /// When the last successful fetch started.
    succeeded: Option<Instant>,
}

impl AccessControl {
    pub(crate) fn new(
        tls: ServerConfig,
        files: TlsFiles,
        domains: Domains,
        store: InternalClient,
    ) -> Self {
        Self {
            list: ArcSwapOption::empty(),
            tls: Arc::new(ArcSwap::from_pointee(tls)),
            files,
            domains,
            store,
            fetched: tokio::sync::Mutex::new(Fetched::default()),
        }
    }

    /// The list held now; `None` until the first fetch succeeded.
    pub(crate) fn current(&self) -> Option<Arc<AccessList>> {
        self.list.load_full()
    }

    /// The verdict on a certificate; an unknown one is checked again against a list fetched
    /// after this request arrived.
    pub(crate) async fn verdict(&self, client_id: &str, serial: &str) -> Option<Verdict> {
        let asked = Instant::now();
        let verdict = self.current()?.verdict(client_id, serial);
        if verdict != Verdict::Unknown {
            return Some(verdict);
        }
        let fresh = self.refresh_since(asked, ON_DEMAND_INTERVAL).await;
        match self.current()?.verdict(client_id, serial) {
            Verdict::Unknown if !fresh => Some(Verdict::Unverifiable),
            v => Some(v),
        }
    }

    /// Makes sure a fetch started at or after `since`, starting one no sooner than `spacing`
    /// after the previous one. Returns whether the list held now was fetched after `since`.
    pub(crate) async fn refresh_since(&self, since: Instant, spacing: Duration) -> bool {
        let mut fetched = self.fetched.lock().await;
        if let Some(last) = fetched.started {
            if last >= since {
                return fetched.succeeded.is_some_and(|s| s >= since);
            }
            tokio::time::sleep_until(last + spacing).await;
        }
        let started = Instant::now();
        // A failed attempt counts too: it is what spaces the next one.
        fetched.started = Some(started);
        match self
            .store
            .get_if_changed::<AccessListOut>(ACCESS_PATH, fetched.etag.as_deref())
            .await
        {
            Ok(None) => fetched.succeeded = Some(started),
            Ok(Some((list, tag))) => match self.apply(list) {
                Ok(()) => {
                    fetched.etag = Some(tag);
                    fetched.succeeded = Some(started);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot apply the new CRL; keeping the last one")
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "cannot fetch the access list; keeping the last one");
            }
        }
        fetched.succeeded.is_some_and(|s| s >= since)
    }

    fn apply(&self, list: AccessListOut) -> anyhow::Result<()> {
        let crls = CertificateRevocationListDer::pem_slice_iter(list.crl_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        self.tls.store(Arc::new(crate::server_tls(
            &self.domains,
            &self.files,
            crls,
        )?));
        tracing::info!(
            active = list.active_client_ids.len(),
            revoked = list.revoked_serials.len(),
            disabled = list.disabled_client_ids.len(),
            "access list updated"
        );
        self.list.store(Some(Arc::new(AccessList {
            active: list.active_client_ids.into_iter().collect(),
            revoked_serials: list.revoked_serials.into_iter().collect(),
            disabled: list.disabled_client_ids.into_iter().collect(),
        })));
        Ok(())
    }

    /// Polls the store every `every` until the task is dropped.
    pub(crate) async fn watch(&self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.refresh_since(Instant::now(), Duration::ZERO).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_and_disabling_win_over_an_active_record_and_strangers_are_unknown() {
        let list = AccessList {
            active: ["a".to_owned(), "b".to_owned()].into(),
            revoked_serials: ["s-a".to_owned()].into(),
            disabled: ["b".to_owned()].into(),
        };
        assert_eq!(list.verdict("a", "s-a"), Verdict::Revoked);
        assert_eq!(list.verdict("b", "s-b"), Verdict::Disabled);
        assert_eq!(list.verdict("a", "s-a2"), Verdict::Admitted);
        assert_eq!(list.verdict("c", "s-c"), Verdict::Unknown);
    }
}
