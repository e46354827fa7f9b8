//! Live revocation: ingest polls the store's `/internal/v1/revocations` every
//! `revocation_poll` (1 s by default). When anything changed it swaps in a TLS configuration
//! built with the new CRL, so new handshakes with a revoked certificate fail, and it swaps the
//! set of revoked serials and disabled clients that [`crate::caller::Caller`] checks on every
//! request, so connections opened before the revocation are refused too (403). No restart.
//! While the store is unreachable the last known state stays in force; until the first fetch
//! succeeds, ingest refuses clients with 503 rather than admit a revoked one.

use crate::AppState;
use arc_swap::ArcSwap;
use mb_shared::config::TlsFiles;
use mb_shared::internal::{REVOCATIONS_PATH, RevocationsOut};
use rustls::ServerConfig;
use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::PemObject;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Who is refused, whatever their certificate says.
#[derive(Default)]
pub struct Refused {
    pub serials: HashSet<String>,
    pub client_ids: HashSet<String>,
}

pub async fn watch(
    app: Arc<AppState>,
    tls: Arc<ArcSwap<ServerConfig>>,
    files: TlsFiles,
    every: Duration,
) {
    let mut version = String::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let rev: RevocationsOut = match app.store.get(REVOCATIONS_PATH).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "cannot fetch revocations; keeping the last known state");
                continue;
            }
        };
        if rev.version == version {
            continue;
        }
        match apply(&app, &tls, &files, &rev) {
            Ok(()) => {
                tracing::info!(
                    revoked = rev.revoked_serials.len(),
                    disabled = rev.disabled_client_ids.len(),
                    "revocations updated"
                );
                version = rev.version;
            }
            Err(e) => tracing::error!(error = %e, "cannot apply the new CRL; keeping the last one"),
        }
    }
}

fn apply(
    app: &AppState,
    tls: &ArcSwap<ServerConfig>,
    files: &TlsFiles,
    rev: &RevocationsOut,
) -> anyhow::Result<()> {
    let crls = CertificateRevocationListDer::pem_slice_iter(rev.crl_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    tls.store(Arc::new(crate::server_tls(&app.domains, files, crls)?));
    app.refused.store(Some(Arc::new(Refused {
        serials: rev.revoked_serials.iter().cloned().collect(),
        client_ids: rev.disabled_client_ids.iter().cloned().collect(),
    })));
    Ok(())
}
