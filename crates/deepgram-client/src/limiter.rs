//! A small async rate limiter: requests start at least `1 / rate` apart.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Spaces request starts evenly; shared by all clones of a client.
///
/// Each caller reserves the next free slot under a short lock, then sleeps until it
/// outside the lock, so waiting callers do not block each other and slots are handed out
/// in arrival order. No bursts: with `rate = 5`, starts are 200 ms apart.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    interval: Duration,
    next_slot: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `interval` between two request starts.
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            next_slot: Mutex::new(None),
        }
    }

    /// Waits until this caller may start a request.
    pub(crate) async fn acquire(&self) {
        let slot = {
            // A poisoned lock only means another task panicked while holding it; the
            // stored instant is still meaningful.
            let mut next = self
                .next_slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let slot = next.map_or(now, |next| next.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn starts_are_spaced_by_the_interval() {
        let limiter = RateLimiter::new(Duration::from_millis(100));
        let begin = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..4 {
            limiter.acquire().await;
            starts.push(begin.elapsed());
        }
        assert_eq!(
            starts,
            [0, 100, 200, 300].map(Duration::from_millis).to_vec()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_limiter_lets_the_next_request_through_at_once() {
        let limiter = RateLimiter::new(Duration::from_millis(100));
        limiter.acquire().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = Instant::now();
        limiter.acquire().await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }
}
