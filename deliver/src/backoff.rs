//! Exponential back-off between failures, interrupted by shutdown: never spin on an error.

use std::time::Duration;
use tokio::sync::watch;

pub struct Backoff {
    next: Duration,
    max: Duration,
}

const FIRST: Duration = Duration::from_millis(100);

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self { next: FIRST, max }
    }

    pub fn reset(&mut self) {
        self.next = FIRST;
    }

    /// Sleeps the current delay (doubling it for next time); returns early on shutdown.
    pub async fn wait(&mut self, stop: &mut watch::Receiver<bool>) {
        let d = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        sleep_or_stop(d, stop).await;
    }
}

/// Sleeps `d` unless shutdown comes first; returns whether shutdown was signalled.
pub async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}
