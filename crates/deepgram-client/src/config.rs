//! Client tunables and their defaults.

use std::time::Duration;

use crate::error::Error;

/// Base URL of Deepgram's public API.
pub const DEFAULT_BASE_URL: &str = "https://api.deepgram.com";
/// `User-Agent` sent with every request.
pub const USER_AGENT: &str = concat!(
    "background-jobs-deepgram-client/",
    env!("CARGO_PKG_VERSION")
);

/// Default time allowed to open a TCP + TLS connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed for one whole attempt (connect, send, read the body).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of attempts per call, the first one included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Default base of the exponential backoff between attempts.
pub const DEFAULT_BASE_BACKOFF: Duration = Duration::from_millis(500);
/// Default cap on any single wait between attempts, `Retry-After` included.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The most bytes read of any answer. Deepgram's answers are a few kilobytes (a request
/// record) to about a megabyte (a page of 1000 records); anything longer is not Deepgram's
/// and is not read further: a success that long is an [`Error::TooLarge`], an error's body
/// is quoted from its first bytes only.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Default number of requests in flight at once, shared by all clones of a client.
pub const DEFAULT_MAX_CONCURRENCY: usize = 8;

/// Tunables of a [`crate::Client`]: timeouts, retries and limits.
///
/// Start from [`ClientConfig::default`] and adjust with the `with_*` methods:
///
/// ```
/// use std::time::Duration;
/// use deepgram_client::ClientConfig;
///
/// let config = ClientConfig::default()
///     .with_max_concurrency(4)
///     .with_requests_per_second(Some(5.0))
///     .with_request_timeout(Duration::from_secs(10));
/// assert_eq!(config.max_concurrency, 4);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Time allowed to open a connection (default 5 s).
    pub connect_timeout: Duration,
    /// Time allowed for one whole attempt, body included (default 30 s). An attempt that
    /// runs out of time is a [`crate::Error::Transport`] with
    /// [`crate::TransportErrorKind::Timeout`], and is retried.
    pub request_timeout: Duration,
    /// Attempts per call, the first included (default 4; at least 1). Only 429, 5xx and
    /// transport failures are retried.
    pub max_attempts: u32,
    /// Base of the exponential backoff (default 500 ms): before retry `n` the client sleeps
    /// a random time in `[0, min(max_backoff, base_backoff * 2^(n-1))]` ("full jitter").
    pub base_backoff: Duration,
    /// Cap on any single wait between attempts, including one asked for by a
    /// `Retry-After` header (default 30 s).
    pub max_backoff: Duration,
    /// Requests in flight at once, shared by every clone of the client (default 8; at
    /// least 1). Waits between retries do not hold a slot.
    pub max_concurrency: usize,
    /// Optional cap on requests started per second, shared by every clone (default none).
    /// Requests are spaced evenly (`1 / rate` apart), with no burst allowance.
    pub requests_per_second: Option<f64>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_backoff: DEFAULT_BASE_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            requests_per_second: None,
        }
    }
}

impl ClientConfig {
    /// Sets [`ClientConfig::connect_timeout`].
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`ClientConfig::request_timeout`].
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`ClientConfig::max_attempts`].
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets [`ClientConfig::base_backoff`].
    #[must_use]
    pub fn with_base_backoff(mut self, backoff: Duration) -> Self {
        self.base_backoff = backoff;
        self
    }

    /// Sets [`ClientConfig::max_backoff`].
    #[must_use]
    pub fn with_max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// Sets [`ClientConfig::max_concurrency`].
    #[must_use]
    pub fn with_max_concurrency(mut self, max: usize) -> Self {
        self.max_concurrency = max;
        self
    }

    /// Sets [`ClientConfig::requests_per_second`] (`None` for no limit).
    #[must_use]
    pub fn with_requests_per_second(mut self, rate: Option<f64>) -> Self {
        self.requests_per_second = rate;
        self
    }

    /// Checks the values; the error names the offending field and value.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |message: String| Err(Error::Config { message });
        if self.connect_timeout.is_zero() {
            return invalid("connect_timeout must be greater than zero".to_owned());
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout must be greater than zero".to_owned());
        }
        if self.max_attempts == 0 {
            return invalid("max_attempts must be at least 1, got 0".to_owned());
        }
        if self.max_concurrency == 0 || self.max_concurrency > tokio::sync::Semaphore::MAX_PERMITS {
            return invalid(format!(
                "max_concurrency must be between 1 and {}, got {}",
                tokio::sync::Semaphore::MAX_PERMITS,
                self.max_concurrency
            ));
        }
        if let Some(rate) = self.requests_per_second {
            // Also rejects rates so small that 1/rate does not fit in a Duration.
            if !(rate.is_finite() && rate > 0.0 && Duration::try_from_secs_f64(1.0 / rate).is_ok())
            {
                return invalid(format!(
                    "requests_per_second must be a positive number, got {rate}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_matches_the_documented_defaults() {
        let config = ClientConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.connect_timeout, Duration::from_secs(5));
        assert_eq!(config.request_timeout, Duration::from_secs(30));
        assert_eq!(config.max_attempts, 4);
        assert_eq!(config.base_backoff, Duration::from_millis(500));
        assert_eq!(config.max_concurrency, 8);
        assert_eq!(config.requests_per_second, None);
    }

    #[test]
    fn validate_rejects_values_that_would_stall_or_never_try() {
        let cases = [
            ClientConfig::default().with_max_attempts(0),
            ClientConfig::default().with_max_concurrency(0),
            ClientConfig::default().with_request_timeout(Duration::ZERO),
            ClientConfig::default().with_connect_timeout(Duration::ZERO),
            ClientConfig::default().with_requests_per_second(Some(0.0)),
            ClientConfig::default().with_requests_per_second(Some(-1.0)),
            ClientConfig::default().with_requests_per_second(Some(f64::NAN)),
            ClientConfig::default().with_requests_per_second(Some(1e-300)),
        ];
        for config in cases {
            assert!(
                matches!(config.validate(), Err(Error::Config { .. })),
                "{config:?} should be rejected"
            );
        }
    }

    #[test]
    fn user_agent_names_the_crate_and_version() {
        assert_eq!(
            USER_AGENT,
            format!(
                "background-jobs-deepgram-client/{}",
                env!("CARGO_PKG_VERSION")
            )
        );
    }
}
