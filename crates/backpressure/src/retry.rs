//! When to try again: the server's `Retry-After`, or exponential backoff with full jitter.
//! Both client crates use these, so a retry waits the same way whichever vendor is slow.

use std::time::Duration;

/// Reads a `Retry-After` value: delta-seconds (`"1"`, and the fractional `"1.5"` some
/// services send) or an HTTP date. `None` when unreadable; a negative number or a date in
/// the past means zero.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let text = value.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds.max(0.0)).ok();
    }
    let date = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// The longest wait before retry `attempt` (1 = after the first failure):
/// `min(max, base * 2^(attempt-1))`.
pub fn backoff_ceiling(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(31);
    base.saturating_mul(factor).min(max)
}

/// A random wait in `[0, backoff_ceiling(attempt, base, max)]` ("full jitter"), so that
/// clients refused together do not all come back at the same moment.
pub fn full_jitter(attempt: u32, base: Duration, max: Duration) -> Duration {
    backoff_ceiling(attempt, base, max).mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_retry_after("-3"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let future = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let wait = parse_retry_after(&future).expect("a date parses");
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
    }

    #[test]
    fn the_ceiling_doubles_and_is_capped() {
        let (base, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        assert_eq!(backoff_ceiling(1, base, max), Duration::from_millis(100));
        assert_eq!(backoff_ceiling(2, base, max), Duration::from_millis(200));
        assert_eq!(backoff_ceiling(4, base, max), Duration::from_millis(800));
        assert_eq!(backoff_ceiling(5, base, max), Duration::from_millis(1000));
        assert_eq!(backoff_ceiling(u32::MAX, base, max), max);
    }

    #[test]
    fn full_jitter_stays_within_the_exponential_ceiling_and_the_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for attempt in 1..=40 {
            let ceiling = (base * 2u32.saturating_pow(attempt - 1).min(1 << 20)).min(max);
            for _ in 0..50 {
                assert!(full_jitter(attempt, base, max) <= ceiling);
            }
        }
        // Jitter actually varies the wait.
        let waits: std::collections::HashSet<_> =
            (0..20).map(|_| full_jitter(3, base, max)).collect();
        assert!(waits.len() > 1);
    }
}
