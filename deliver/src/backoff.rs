//! Exponential back-off between failures, interrupted by shutdown: never spin on an error.

use std::time::Duration;
use tokio::sync::watch;

pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

const FIRST: Duration = Duration::from_millis(100);

impl Backoff {
    pub(crate) fn new(max: Duration) -> Self {
        Self { next: FIRST, max }
    }

    pub(crate) fn reset(&mut self) {
        self.next = FIRST;
    }

    /// Sleeps the current delay (doubling it for next time); returns early on shutdown.
    pub(crate) async fn wait(&mut self, stop: &mut watch::Receiver<bool>) {
        let d = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        sleep_or_stop(d, stop).await;
    }
}

/// Sleeps `d` unless shutdown comes first; returns whether shutdown was signalled.
pub(crate) async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delays_double_up_to_the_cap_and_reset_after_success() {
        let (_tx, mut stop) = watch::channel(false);
        let mut b = Backoff::new(Duration::from_millis(500));
        let mut waited = Vec::new();
        for _ in 0..5 {
            let t = tokio::time::Instant::now();
            b.wait(&mut stop).await;
            waited.push(t.elapsed().as_millis());
        }
        assert_eq!(waited, [100, 200, 400, 500, 500]);
        b.reset();
        let t = tokio::time::Instant::now();
        b.wait(&mut stop).await;
        assert_eq!(t.elapsed().as_millis(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cuts_a_wait_short() {
        let (tx, mut stop) = watch::channel(false);
        let t = tokio::time::Instant::now();
        let sleeper =
            tokio::spawn(async move { sleep_or_stop(Duration::from_secs(60), &mut stop).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(true).unwrap();
        assert!(sleeper.await.unwrap(), "reports the shutdown");
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
