//! The store's Prometheus metrics, and the certificate-expiry gauge that the
//! "expires within 30 days" alert (ops/prometheus/alerts.yml) watches.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CertLabels {
    pub(crate) cn: String,
    pub(crate) serial: String,
    pub(crate) kind: String,
}

pub(crate) struct Metrics {
    pub(crate) stored: Counter,
    pub(crate) rejected: Counter,
    pub(crate) deferred: Counter,
    pub(crate) failed: Counter,
    pub(crate) batch_seconds: Histogram,
    pub(crate) db_errors: Counter,
    /// Portal sign-ins by outcome (`ok`, `refused`, `locked`, `disabled`).
    pub(crate) logins: Family<OutcomeLabel, Counter>,
    /// Stored bodies moved to the active key by the re-encryption task.
    pub(crate) reencrypted_rows: Counter,
    /// Delivered bodies under an older key, encrypted again under the active one on arrival.
    pub(crate) reencrypted_on_arrival: Counter,
    /// Expiry (Unix seconds) of every active certificate the CA issued.
    pub(crate) cert_expiry: Family<CertLabels, Gauge>,
}

impl Metrics {
    /// Registers `mb_store_*` and `mb_certificate_expiry_timestamp_seconds`.
    pub(crate) fn register(root: &mut Registry) -> Self {
        let m = Self {
            stored: Counter::default(),
            rejected: Counter::default(),
            deferred: Counter::default(),
            failed: Counter::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            db_errors: Counter::default(),
            logins: Family::default(),
            reencrypted_rows: Counter::default(),
            reencrypted_on_arrival: Counter::default(),
            cert_expiry: Family::default(),
        };
        root.register(
            "mb_reencrypt_rows",
            "Stored message bodies re-encrypted under the active key after a rotation",
            m.reencrypted_rows.clone(),
        );
        root.register(
            "mb_certificate_expiry_timestamp_seconds",
            "Expiry time of each active certificate issued by the broker's CA",
            m.cert_expiry.clone(),
        );
        let r = root.sub_registry_with_prefix("mb_store");
        r.register(
            "messages_stored",
            "Messages upserted as delivered",
            m.stored.clone(),
        );
        r.register(
            "messages_rejected",
            "Delivered messages refused (bad domain, unknown key, malformed)",
            m.rejected.clone(),
        );
        r.register(
            "messages_deferred",
            "Deliveries put off because the store lacks their key id or domain (configuration mismatch)",
            m.deferred.clone(),
        );
        r.register(
            "messages_failed",
            "Messages recorded as failed (dead-lettered)",
            m.failed.clone(),
        );
        r.register(
            "batch_write_seconds",
            "Time to write one delivered batch",
            m.batch_seconds.clone(),
        );
        r.register("db_errors", "Database errors", m.db_errors.clone());
        r.register(
            "reencrypted_on_arrival",
            "Delivered bodies under an older key, stored under the active key instead",
            m.reencrypted_on_arrival.clone(),
        );
        r.register("logins", "Portal sign-ins by outcome", m.logins.clone());
        m
    }
}

/// Refreshes the certificate-expiry gauge from the `clients` table every 30 s.
pub(crate) async fn watch_certificate_expiry(app: Arc<crate::AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        match mb_pki::lifecycle::active_expiries(&app.db).await {
            Ok(rows) => {
                app.metrics.cert_expiry.clear();
                for e in rows {
                    app.metrics
                        .cert_expiry
                        .get_or_create(&CertLabels {
                            cn: e.common_name,
                            serial: e.serial,
                            kind: e.kind.to_string(),
                        })
                        .set(e.not_after);
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot refresh certificate expiry metric"),
        }
    }
}
