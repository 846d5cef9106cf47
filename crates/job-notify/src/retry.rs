//! Delivery attempts with exponential backoff, shared by the channels.

use std::future::Future;
use std::time::Duration;

/// Longest wait between two attempts, whatever a server asks for with `Retry-After`.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// Why one delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Trying again may help (a timeout, a refused connection, 5xx, 429, SMTP 4xx).
    Transient {
        /// What happened, never a secret.
        message: String,
        /// How long the server asked us to wait, if it did.
        retry_after: Option<Duration>,
    },
    /// Trying again will not help (HTTP 4xx, SMTP 5xx, a message that cannot be built).
    Permanent(String),
}

impl SendError {
    /// A transient failure without a requested delay.
    pub fn transient(message: impl Into<String>) -> Self {
        SendError::Transient {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// The final failure of a delivery, after every attempt it was worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp {
    /// The last attempt's error.
    pub message: String,
    /// Attempts made.
    pub attempts: u32,
    /// Refused for good (HTTP 4xx, SMTP 5xx): sending it again cannot help.
    pub permanent: bool,
}

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (after {} attempt{})",
            self.message,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" }
        )
    }
}

/// Runs `attempt` up to `attempts` times while it fails transiently, waiting
/// `base_delay × 2^(n-1)` (or what the server asked, capped at a minute) in between.
/// Attempts that will be retried are logged at debug level only: the caller logs the
/// outcome once.
pub async fn with_retries<F, Fut>(
    what: &str,
    attempts: u32,
    base_delay: Duration,
    mut attempt: F,
) -> Result<u32, GaveUp>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), SendError>>,
{
    let attempts = attempts.max(1);
    let mut n = 1;
    loop {
        match attempt().await {
            Ok(()) => return Ok(n),
            Err(SendError::Permanent(message)) => {
                return Err(GaveUp {
                    message,
                    attempts: n,
                    permanent: true,
                })
            }
            Err(SendError::Transient {
                message,
                retry_after,
            }) => {
                if n >= attempts {
                    return Err(GaveUp {
                        message,
                        attempts: n,
                        permanent: false,
                    });
                }
                let delay = retry_after.map_or_else(
                    || backpressure::backoff_ceiling(n, base_delay, MAX_DELAY),
                    |asked| asked.min(MAX_DELAY),
                );
                log::debug!(
                    "[Notify] {what}: attempt {n} failed ({message}); retrying in {delay:?}"
                );
                tokio::time::sleep(delay).await;
                n += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn transient_failures_are_retried_up_to_the_limit() {
        let calls = AtomicU32::new(0);
        let result = with_retries("test", 3, Duration::from_millis(1), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(SendError::transient("503"))
        })
        .await;
        assert_eq!(
            result,
            Err(GaveUp {
                message: "503".into(),
                attempts: 3,
                permanent: false,
            })
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result = with_retries("test", 3, Duration::from_millis(1), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(SendError::Permanent("404".into()))
        })
        .await;
        assert_eq!(result.unwrap_err().attempts, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_success_after_a_failure_reports_the_attempts() {
        let calls = AtomicU32::new(0);
        let result = with_retries("test", 3, Duration::from_millis(1), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(SendError::transient("500")),
                _ => Ok(()),
            }
        })
        .await;
        assert_eq!(result, Ok(2));
    }
}
