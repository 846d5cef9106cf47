//! Keeps every job's backlog reading fresh: measured when `serve` starts and then every
//! `BACKLOG_REFRESH_SECS`, so that `GET /internal/api/v1/jobs` and `/metrics` only read
//! the kept value and a flood of requests never turns into a flood of counts.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jobs_core::Registry;
use log::{info, warn};
use tokio_util::sync::CancellationToken;

/// Default period between two measurements.
pub const DEFAULT_REFRESH_SECS: u64 = 60;

/// Measures each job's backlog, then again every `every`, until `stop`. A failed
/// measurement keeps the previous reading and is logged once until it works again.
pub async fn refresh_loop(
    registry: Arc<Registry>,
    every: Duration,
    stop: CancellationToken,
    changed: impl Fn(&str),
) {
    let mut failing: HashSet<String> = HashSet::new();
    loop {
        for job in registry.iter() {
            let name = job.name().to_owned();
            let before = job.backlog().map(|r| r.backlog);
            match job.refresh_backlog().await {
                Ok(reading) => {
                    if reading.is_some_and(|r| Some(r.backlog) != before) {
                        changed(&name);
                    }
                    if failing.remove(&name) {
                        info!("[Job] measuring the backlog of {name} works again");
                    }
                }
                Err(e) => {
                    if failing.insert(name.clone()) {
                        warn!("[Job] measuring the backlog of {name} failed: {e}; keeping the last reading");
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}
