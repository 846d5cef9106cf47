//! The cron tick loop: claims each due slot once, catches up a recent miss on start,
//! and closes executions whose server died.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use log::{debug, info, warn};

use crate::{Registry, RunRequest, Runner, StartError, Trigger};

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// Longest sleep between two looks at the clock.
    pub tick: Duration,
    /// On start, the latest slot missed within this window is run once (a catch-up).
    /// Older misses are skipped.
    pub misfire_window: Duration,
    /// How often running executions with an expired lease are looked for.
    pub lease_check_interval: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
            misfire_window: Duration::from_secs(60 * 60),
            lease_check_interval: Duration::from_secs(15),
        }
    }
}

/// Runs the registry's enabled jobs on their schedules until the runner stops.
#[derive(Debug)]
pub struct Scheduler {
    runner: Arc<Runner>,
    registry: Arc<Registry>,
    settings: SchedulerSettings,
}

/// The outcome of offering a slot to the runner.
enum Offer {
    /// Decided (started, or someone else has it): move on.
    Done,
    /// The log could not be reached: offer the slot again on the next tick.
    Retry,
}

impl Scheduler {
    /// A scheduler over `registry`, running through `runner`.
    pub fn new(runner: Arc<Runner>, registry: Arc<Registry>, settings: SchedulerSettings) -> Self {
        Self {
            runner,
            registry,
            settings,
        }
    }

    /// The loop. Returns once [`Runner::shutdown`] has begun.
    pub async fn run(self) {
        let worker = self.runner.settings().worker_id.clone();
        let reason = format!("interrupted: server {worker} restarted while it ran");
        match self.runner.log().close_orphans(&worker, &reason).await {
            Ok(closed) => {
                for record in closed {
                    warn!(
                        "[Job] {} execution {} was left running by this server's previous process; marked failed",
                        record.job_name, record.id
                    );
                }
            }
            Err(e) => warn!("[Job] could not close this server's leftover executions: {e}"),
        }

        let start = Utc::now();
        let mut cursors: HashMap<String, DateTime<Utc>> = HashMap::new();
        for job in self.registry.iter() {
            if let Some(reason) = job.disabled_reason() {
                info!("[Job] {} is disabled: {reason}", job.name());
                continue;
            }
            let mut cursor = start;
            if let Some(slot) = job.schedule.latest_at_or_before(start) {
                if within(start - slot, self.settings.misfire_window) {
                    // Already run (by us before a restart, or by another server): the
                    // claim says so and nothing happens.
                    if let Offer::Retry = self.offer(job.name(), slot, Trigger::CatchUp).await {
                        cursor = slot - chrono::Duration::milliseconds(1);
                    }
                }
            }
            cursors.insert(job.name().to_owned(), cursor);
        }

        let mut last_lease_check: Option<std::time::Instant> = None;
        while !self.runner.is_stopping() {
            let now = Utc::now();
            if last_lease_check.is_none_or(|t| t.elapsed() >= self.settings.lease_check_interval) {
                last_lease_check = Some(std::time::Instant::now());
                self.expire_leases().await;
            }
            let mut next_due: Option<DateTime<Utc>> = None;
            for job in self.registry.iter().filter(|j| j.is_enabled()) {
                let Some(cursor) = cursors.get(job.name()).copied() else {
                    continue;
                };
                let Some(next) = job.schedule.next_after(cursor) else {
                    continue;
                };
                if next > now {
                    next_due = Some(next_due.map_or(next, |d| d.min(next)));
                    continue;
                }
                let slot = job.schedule.latest_at_or_before(now).unwrap_or(next);
                let skipped = job
                    .schedule
                    .fire_times_between(cursor, slot)
                    .count()
                    .saturating_sub(1);
                if skipped > 0 {
                    warn!(
                        "[Job] {}: {skipped} slot(s) before {slot} were missed and are skipped",
                        job.name()
                    );
                }
                let late = now - slot;
                let on_time = within(late, self.settings.tick * 2 + Duration::from_secs(30));
                let new_cursor = if !on_time && !within(late, self.settings.misfire_window) {
                    warn!(
                        "[Job] {}: slot {slot} is older than the misfire window; skipped",
                        job.name()
                    );
                    slot
                } else {
                    let trigger = if on_time {
                        Trigger::Schedule
                    } else {
                        Trigger::CatchUp
                    };
                    match self.offer(job.name(), slot, trigger).await {
                        Offer::Done => slot,
                        Offer::Retry => cursor,
                    }
                };
                cursors.insert(job.name().to_owned(), new_cursor);
                if let Some(next) = job.schedule.next_after(new_cursor.max(slot)) {
                    next_due = Some(next_due.map_or(next, |d| d.min(next)));
                }
            }
            let wait = next_due
                .and_then(|d| (d - Utc::now()).to_std().ok())
                .unwrap_or_default()
                .min(self.settings.tick);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.runner.stopping() => {}
            }
        }
        debug!("[Job] scheduler stopped");
    }

    async fn offer(&self, name: &str, slot: DateTime<Utc>, trigger: Trigger) -> Offer {
        let Some(job) = self.registry.get(name) else {
            return Offer::Done;
        };
        match self
            .runner
            .start(job, RunRequest::slot(trigger, slot))
            .await
        {
            Ok(_) => Offer::Done,
            Err(StartError::SlotTaken { .. }) => {
                debug!("[Job] {name}: slot {slot} already claimed");
                Offer::Done
            }
            Err(StartError::AlreadyRunning(_)) => {
                warn!("[Job] {name}: slot {slot} skipped, the previous run is still going");
                Offer::Done
            }
            Err(StartError::Log(e)) => {
                warn!("[Job] {name}: slot {slot} could not be claimed ({e}); will try again");
                Offer::Retry
            }
            Err(e) => {
                debug!("[Job] {name}: slot {slot} not started: {e}");
                Offer::Done
            }
        }
    }

    async fn expire_leases(&self) {
        match self.runner.log().expire_leases().await {
            Ok(closed) => {
                for record in closed {
                    warn!(
                        "[Job] {} execution {} lost its server (worker {}); marked failed",
                        record.job_name,
                        record.id,
                        record.worker_id.as_deref().unwrap_or("unknown")
                    );
                }
            }
            Err(e) => debug!("[Job] lease check failed: {e}"),
        }
    }
}

fn within(delta: chrono::Duration, window: Duration) -> bool {
    delta.to_std().map(|d| d <= window).unwrap_or(true)
}
