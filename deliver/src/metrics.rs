//! Deliver's Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub(crate) struct Metrics {
    pub(crate) delivered: Counter,
    pub(crate) rejected: Counter,
    pub(crate) deferred: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) janitor_dropped: Counter,
    pub(crate) claimed: Counter,
    pub(crate) claim_deleted: Counter,
    pub(crate) store_errors: Counter,
    pub(crate) redis_errors: Counter,
    pub(crate) store_seconds: Histogram,
    pub(crate) batch_size: Histogram,
}

impl Metrics {
    pub(crate) fn register(r: &mut Registry) -> Self {
        let m = Self {
            delivered: Counter::default(),
            rejected: Counter::default(),
            deferred: Counter::default(),
            dead_lettered: Counter::default(),
            janitor_dropped: Counter::default(),
            claimed: Counter::default(),
            claim_deleted: Counter::default(),
            store_errors: Counter::default(),
            redis_errors: Counter::default(),
            store_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        };
        r.register(
            "messages_delivered",
            "Messages the store confirmed and that were acked",
            m.delivered.clone(),
        );
        r.register(
            "messages_rejected",
            "Delivery attempts the store refused",
            m.rejected.clone(),
        );
        r.register(
            "messages_deferred",
            "Delivery attempts the store put off because it lacks the key id or domain (a configuration mismatch; the entries stay pending)",
            m.deferred.clone(),
        );
        r.register(
            "janitor_dropped_pending",
            "Pending entries dropped when the janitor removed a consumer (should stay 0)",
            m.janitor_dropped.clone(),
        );
        r.register(
            "messages_dead_lettered",
            "Messages moved to the dead-letter stream",
            m.dead_lettered.clone(),
        );
        r.register(
            "messages_claimed",
            "Pending entries claimed for retry by XAUTOCLAIM",
            m.claimed.clone(),
        );
        r.register(
            "claim_deleted_entries",
            "Pending entries XAUTOCLAIM reported as deleted from the stream",
            m.claim_deleted.clone(),
        );
        r.register(
            "store_errors",
            "Store requests that failed (unreachable, timeout, 5xx)",
            m.store_errors.clone(),
        );
        r.register(
            "redis_errors",
            "Redis commands that failed",
            m.redis_errors.clone(),
        );
        r.register(
            "store_request_seconds",
            "Duration of one batch request to the store",
            m.store_seconds.clone(),
        );
        r.register(
            "batch_size",
            "Entries per delivered batch",
            m.batch_size.clone(),
        );
        m
    }
}
