//! Back-pressure: a domain whose stream already holds `max_stream_len` undelivered entries
//! refuses new ones (503) instead of growing until Redis runs out of memory. Stream lengths are
//! polled a few times a second rather than checked per request, which keeps the submit path a
//! single XADD; the bound is therefore approximate by a fraction of a second of traffic.

use mb_shared::domains::Domain;
use mb_shared::domains::Domains;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const POLL: Duration = Duration::from_millis(250);

pub(crate) struct Backlog {
    max_len: u64,
    full: HashMap<Domain, AtomicBool>,
}

impl Backlog {
    pub(crate) fn new(domains: &Domains, max_len: u64) -> Self {
        Self {
            max_len,
            full: domains
                .iter()
                .map(|d| (d.clone(), AtomicBool::new(false)))
                .collect(),
        }
    }

    pub(crate) fn is_full(&self, domain: &Domain) -> bool {
        self.full
            .get(domain)
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// Polls every domain's stream length until the task is dropped.
    pub(crate) async fn watch(&self, redis: mb_shared::redis_conn::RedisConn) {
        if self.max_len == 0 {
            return;
        }
        let mut tick = tokio::time::interval(POLL);
        loop {
            tick.tick().await;
            for (domain, flag) in &self.full {
                let mut con = redis.clone();
                let len: redis::RedisResult<u64> = redis::cmd("XLEN")
                    .arg(mb_shared::streams::stream_key(domain))
                    .query_async(&mut con)
                    .await;
                if let Ok(len) = len {
                    let full = len >= self.max_len;
                    if full != flag.swap(full, Ordering::Relaxed) {
                        tracing::warn!(%domain, len, max = self.max_len, full, "stream back-pressure changed");
                    }
                }
            }
        }
    }
}
