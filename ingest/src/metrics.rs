//! Ingest's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabel {
    pub(crate) status: u16,
}

pub(crate) struct Metrics {
    pub(crate) accepted: Counter,
    pub(crate) responses: Family<StatusLabel, Counter>,
    pub(crate) submit_seconds: Histogram,
    pub(crate) rate_limited: Counter,
    pub(crate) not_replicated: Counter,
    pub(crate) batch_responses: Family<StatusLabel, Counter>,
    pub(crate) batch_seconds: Histogram,
    pub(crate) batch_messages: Histogram,
}

impl Metrics {
    pub(crate) fn register(r: &mut Registry) -> Self {
        let m = Self {
            accepted: Counter::default(),
            responses: Family::default(),
            submit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            rate_limited: Counter::default(),
            not_replicated: Counter::default(),
            batch_responses: Family::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            batch_messages: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        };
        r.register(
            "batch_messages",
            "Messages per batch submit",
            m.batch_messages.clone(),
        );
        r.register(
            "batch_responses",
            "Batch submit responses by HTTP status (207 whatever the messages' own results)",
            m.batch_responses.clone(),
        );
        r.register(
            "batch_seconds",
            "Time to validate, encrypt and enqueue a batch",
            m.batch_seconds.clone(),
        );
        r.register(
            "rate_limited",
            "Messages refused by a per-client rate limit (429), single or in a batch",
            m.rate_limited.clone(),
        );
        r.register(
            "not_replicated",
            "Writes (a message or a batch) answered 503 because fewer than redis_wait_replicas \
             replicas confirmed them within redis_wait_timeout",
            m.not_replicated.clone(),
        );
        r.register(
            "messages_accepted",
            "Messages durably enqueued (202)",
            m.accepted.clone(),
        );
        r.register(
            "responses",
            "Submit responses by HTTP status",
            m.responses.clone(),
        );
        r.register(
            "submit_seconds",
            "Time to validate, encrypt and enqueue a message",
            m.submit_seconds.clone(),
        );
        m
    }
}
