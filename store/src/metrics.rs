//! The store's Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub struct Metrics {
    pub stored: Counter,
    pub rejected: Counter,
    pub failed: Counter,
    pub batch_seconds: Histogram,
    pub db_errors: Counter,
}

impl Metrics {
    pub fn register(r: &mut Registry) -> Self {
        let m = Self {
            stored: Counter::default(),
            rejected: Counter::default(),
            failed: Counter::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            db_errors: Counter::default(),
        };
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
        m
    }
}
