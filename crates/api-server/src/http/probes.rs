//! Keeps unauthenticated probes (`/readyz`, `/metrics`) from starving everything else of
//! database connections: concurrent probes wait for one check instead of each taking a
//! connection, and a recent answer is reused. One cache per HTTP worker, so at most one
//! connection per worker serves probes, however many arrive.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// How long a readiness answer is reused.
pub const READY_TTL: Duration = Duration::from_secs(1);
/// How long the job gauges read from the database are reused.
pub const GAUGES_TTL: Duration = Duration::from_secs(1);
/// Longest wait for the database in a probe; a slower answer counts as unavailable. Under
/// the probes' own 5 s timeout (deploy/kubernetes): a database that hangs gets them the
/// documented 503 `database_unavailable`, not a timeout.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The latest probe answers.
#[derive(Debug, Default)]
pub struct ProbeCache {
    /// When readiness was last checked, and the answer (an error's text).
    pub ready: Mutex<Option<(Instant, Result<(), String>)>>,
    /// When the job gauges were last refreshed from the database.
    pub gauges: Mutex<Option<Instant>>,
}

/// True when `at` is younger than `ttl`.
pub fn fresh(at: Instant, ttl: Duration) -> bool {
    at.elapsed() < ttl
}
