//! The cron tick loop: claims each due slot once, catches up a recent miss on start,
//! records the slots it could not run, and closes executions whose server died.
//!
//! Policies (all slots are claimed through the execution log, so any number of servers
//! may run this loop against one database):
//! * **On time** — a slot is offered within `2 × tick + 30 s` of its time; the server whose
//!   claim succeeds runs it, the others see the claim taken and move on.
//! * **Catch-up** — on start, and after a stall (a database outage, a suspended process),
//!   the latest missed slot within `misfire_window` is run once, as `catch_up`.
//! * **Skipped** — older missed slots, and a slot that comes while the job's previous run
//!   still goes, are not run; they are recorded as `skipped` executions whose message says
//!   why (one row for a run of missed slots), so the history shows them. A skipped row is
//!   not a run: it is never a job's latest status, a failure, or a reason to alert.
//! * **Rescue** — an execution closed because its server died (lease expiry, or this
//!   server's own leftover after a restart) that was a scheduled attempt below the job's
//!   max attempts gets its next attempt after the backoff ([`Runner::rescue`]).
//! * **Overdue retries** — a failed scheduled attempt records when its retry is due; if
//!   the server that ran it stops or dies while waiting (or a manual run held the job
//!   then), another server starts it once it is a lease overdue
//!   ([`Runner::take_over_retry`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use log::{debug, info, warn};
use tokio::time::Instant;

use crate::clock::{Clock, SystemClock};
use crate::{RegisteredJob, Registry, RunRequest, Runner, StartError, Trigger};

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
    clock: Arc<dyn Clock>,
    recovered: bool,
}

/// The outcome of offering a slot to the runner.
enum Offer {
    /// Decided (started, or someone else has it): move on.
    Done,
    /// The log could not be reached: offer the slot again on the next tick.
    Retry(String),
}

/// Counting missed slots stops here; the message then says "more than".
const MISSED_COUNT_CAP: usize = 10_000;

impl Scheduler {
    /// A scheduler over `registry`, running through `runner`.
    pub fn new(runner: Arc<Runner>, registry: Arc<Registry>, settings: SchedulerSettings) -> Self {
        Self {
            runner,
            registry,
            settings,
            clock: Arc::new(SystemClock),
            recovered: false,
        }
    }

    /// The same scheduler reading the time from `clock` (tests: a [`crate::TokioClock`]
    /// under paused time).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Closes what this server's previous process left running and every execution whose
    /// lease has expired, rescuing their retries. A server calls this before it accepts
    /// requests, so that a run started through the API is never taken for a leftover;
    /// [`Scheduler::run`] calls it when it was not called before.
    pub async fn recover(&mut self) {
        self.close_own_orphans().await;
        self.expire_leases().await;
        self.recovered = true;
    }

    /// The loop. Returns once [`Runner::shutdown`] has begun.
    pub async fn run(mut self) {
        let mut outage: Option<Instant> = None;
        if !self.recovered {
            self.recover().await;
        }

        let start = self.clock.now();
        let mut cursors: HashMap<String, DateTime<Utc>> = HashMap::new();
        for job in self.registry.iter() {
            if let Some(reason) = job.disabled_reason() {
                info!("[Job] {} is disabled: {reason}", job.name());
                continue;
            }
            let mut cursor = start;
            let catch_up = job
                .schedule
                .latest_at_or_before(start)
                .filter(|slot| within(start - *slot, self.settings.misfire_window));
            self.record_missed_since_last_run(job, catch_up.unwrap_or(start))
                .await;
            if let Some(slot) = catch_up {
                // Already run (by us before a restart, or by another server): the claim
                // says so and nothing happens.
                if let Offer::Retry(e) = self.offer(job, slot, Trigger::CatchUp).await {
                    note_outage(&mut outage, &e);
                    cursor = slot - chrono::Duration::milliseconds(1);
                }
            }
            cursors.insert(job.name().to_owned(), cursor);
        }

        let mut last_lease_check: Option<Instant> = None;
        while !self.runner.is_stopping() {
            let now = self.clock.now();
            if last_lease_check.is_none_or(|t| t.elapsed() >= self.settings.lease_check_interval) {
                last_lease_check = Some(Instant::now());
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
                let late = now - slot;
                let on_time = within(late, self.settings.tick * 2 + Duration::from_secs(30));
                let runnable = on_time || within(late, self.settings.misfire_window);
                // Slots strictly between the cursor and the one offered now were missed
                // (the loop stalled); the offered one too when it is past the window.
                let missed_until = if runnable {
                    slot - chrono::Duration::milliseconds(1)
                } else {
                    slot
                };
                // Slots this server missed may have been run (or recorded) by another
                // server meanwhile: only those after the last one recorded were missed.
                let cursor = if job
                    .schedule
                    .fire_times_between(cursor, missed_until)
                    .next()
                    .is_some()
                {
                    match self.runner.log().last_slot(job.name()).await {
                        Ok(Some(last)) if last > cursor => last,
                        _ => cursor,
                    }
                } else {
                    cursor
                };
                let new_cursor = if !runnable {
                    self.record_missed(
                        job,
                        cursor,
                        missed_until,
                        "the server was not running its schedule",
                    )
                    .await;
                    slot
                } else {
                    let trigger = if on_time {
                        Trigger::Schedule
                    } else {
                        Trigger::CatchUp
                    };
                    match self.offer(job, slot, trigger).await {
                        Offer::Done => {
                            recovered(&mut outage);
                            self.record_missed(
                                job,
                                cursor,
                                missed_until,
                                "the server was not running its schedule",
                            )
                            .await;
                            slot
                        }
                        Offer::Retry(e) => {
                            note_outage(&mut outage, &e);
                            cursor
                        }
                    }
                };
                cursors.insert(job.name().to_owned(), new_cursor);
                if let Some(next) = job.schedule.next_after(new_cursor.max(slot)) {
                    next_due = Some(next_due.map_or(next, |d| d.min(next)));
                }
            }
            let wait = next_due
                .and_then(|d| (d - self.clock.now()).to_std().ok())
                .unwrap_or_default()
                .min(self.settings.tick);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.runner.stopping() => {}
            }
        }
        debug!("[Job] scheduler stopped");
    }

    async fn close_own_orphans(&self) {
        let worker = self.runner.settings().worker_id.clone();
        let reason = format!("interrupted: server {worker} restarted while it ran");
        match self.runner.log().close_orphans(&worker, &reason).await {
            Ok(closed) => {
                for record in closed {
                    warn!(
                        "[Job] {} execution {} was left running by this server's previous process; marked failed",
                        record.job_name, record.id
                    );
                    self.report_closed(&record).await;
                }
            }
            Err(e) => warn!("[Job] could not close this server's leftover executions: {e}"),
        }
    }

    async fn offer(
        &self,
        job: &Arc<RegisteredJob>,
        slot: DateTime<Utc>,
        trigger: Trigger,
    ) -> Offer {
        let name = job.name();
        match self
            .runner
            .start(Arc::clone(job), RunRequest::slot(trigger, slot))
            .await
        {
            Ok(_) => Offer::Done,
            Err(StartError::SlotTaken { .. }) => {
                debug!("[Job] {name}: slot {slot} already claimed");
                Offer::Done
            }
            Err(StartError::AlreadyRunning(_)) => {
                warn!("[Job] {name}: slot {slot} skipped, the previous run is still going");
                self.record(
                    job,
                    slot,
                    "skipped: the previous run of this job was still going",
                )
                .await;
                Offer::Done
            }
            Err(StartError::Paused(_)) => {
                debug!("[Job] {name}: slot {slot} not run, the job is paused");
                // Recorded so that the slot counts as taken: a restart after the resume
                // does not catch it up.
                self.record(job, slot, "skipped: the job was paused").await;
                Offer::Done
            }
            Err(StartError::Log(e)) => Offer::Retry(e.to_string()),
            // Each claim draws a new id, so a sequence set back a little is passed by the
            // retries; the reason is logged with each one.
            Err(StartError::Conflict(reason)) => Offer::Retry(reason),
            Err(e) => {
                debug!("[Job] {name}: slot {slot} not started: {e}");
                Offer::Done
            }
        }
    }

    /// On start: the slots between the job's last recorded slot and `until` (exclusive)
    /// were missed while no server ran.
    async fn record_missed_since_last_run(&self, job: &Arc<RegisteredJob>, until: DateTime<Utc>) {
        match self.runner.log().last_slot(job.name()).await {
            Ok(Some(last)) => {
                self.record_missed(
                    job,
                    last,
                    until - chrono::Duration::milliseconds(1),
                    "no server was running",
                )
                .await
            }
            Ok(None) => {}
            Err(e) => debug!("[Job] {}: last slot unknown: {e}", job.name()),
        }
    }

    /// Records the slots strictly after `after`, up to `until`, as one skipped execution.
    async fn record_missed(
        &self,
        job: &Arc<RegisteredJob>,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        why: &str,
    ) {
        let mut missed = job.schedule.fire_times_between(after, until);
        let Some(first) = missed.next() else {
            return;
        };
        let (mut count, mut last) = (1usize, first);
        for slot in missed.by_ref().take(MISSED_COUNT_CAP) {
            count += 1;
            last = slot;
        }
        let capped = missed.next().is_some();
        let count_text = if capped {
            format!("more than {count}")
        } else {
            count.to_string()
        };
        let reason = if count == 1 {
            format!(
                "skipped: the slot {} was missed because {why}",
                first.to_rfc3339()
            )
        } else {
            format!(
                "skipped: {count_text} slots from {} to {} were missed because {why}",
                first.to_rfc3339(),
                last.to_rfc3339()
            )
        };
        warn!("[Job] {}: {reason}", job.name());
        self.record(job, last, &reason).await;
    }

    async fn record(&self, job: &Arc<RegisteredJob>, slot: DateTime<Utc>, reason: &str) {
        let worker = &self.runner.settings().worker_id;
        if let Err(e) = self
            .runner
            .log()
            .record_skipped(job.name(), slot, worker, reason)
            .await
        {
            warn!(
                "[Job] {}: skipped slot {slot} not recorded: {e}",
                job.name()
            );
        }
    }

    async fn expire_leases(&self) {
        match self.runner.log().expire_leases().await {
            Ok(closed) => {
                for record in closed {
                    crate::runner::log_closed(&record);
                    self.report_closed(&record).await;
                }
            }
            Err(e) => debug!("[Job] lease check failed: {e}"),
        }
        // A retry is overdue once its server had a whole lease more to start it.
        match self
            .runner
            .log()
            .overdue_retries(self.runner.settings().lease)
            .await
        {
            Ok(overdue) => {
                for record in overdue {
                    if let Some(job) = self.registry.get(&record.job_name) {
                        self.runner.take_over_retry(&job, &record);
                    }
                }
            }
            Err(e) => debug!("[Job] retry check failed: {e}"),
        }
    }
}

impl Scheduler {
    async fn report_closed(&self, record: &crate::ExecutionRecord) {
        if let Some(job) = self.registry.get(&record.job_name) {
            let will_retry = self.runner.rescue(&job, record);
            self.runner.report_closed(&job, record, will_retry).await;
        }
    }
}

/// Logs the start of an outage once.
fn note_outage(outage: &mut Option<Instant>, error: &str) {
    if outage.is_none() {
        warn!("[Job] the execution log is unreachable ({error}); due slots will be claimed when it is back");
        *outage = Some(Instant::now());
    }
}

/// Logs the end of an outage once.
fn recovered(outage: &mut Option<Instant>) {
    if let Some(since) = outage.take() {
        info!(
            "[Job] the execution log is reachable again after {:.0?}",
            since.elapsed()
        );
    }
}

fn within(delta: chrono::Duration, window: Duration) -> bool {
    delta.to_std().map(|d| d <= window).unwrap_or(true)
}
