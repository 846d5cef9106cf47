//! Turns one run of a job into one recorded execution.

use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use log::{debug, info, warn};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::log::{
    Beat, Claim, Completion, ExecutionLog, ExecutionRecord, LogError, NewExecution, Status,
};
use crate::{JobContext, JobError, RegisteredJob, Stats, Trigger};

/// Runner settings; every duration is configurable so tests run in seconds.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// This server's identity in `job_executions.worker_id` (host and port).
    pub worker_id: String,
    /// A running execution whose lease is not renewed for this long is taken for dead.
    pub lease: Duration,
    /// How often the lease is renewed.
    pub heartbeat_interval: Duration,
    /// How often reported progress is written to the running execution, at most.
    pub progress_interval: Duration,
    /// How long a run that was asked to stop (timeout, shutdown, cancel) has to reach a
    /// safe point and return its partial counters before it is dropped.
    pub cancel_grace: Duration,
    /// Longest wait for one call to the execution log; a call that takes longer counts
    /// as failed, so a hung connection cannot hold a run's bookkeeping.
    pub log_timeout: Duration,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            worker_id: "local".to_owned(),
            lease: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(15),
            progress_interval: Duration::from_secs(1),
            cancel_grace: Duration::from_secs(30),
            log_timeout: Duration::from_secs(10),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// How the run was started.
    pub trigger: Trigger,
    /// The cron slot, for scheduled and catch-up runs.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Report only, change nothing.
    pub dry_run: bool,
    /// Who asked for a manual run (`admin`, `local`, `cli`); `None` for scheduled runs.
    pub requested_by: Option<String>,
    /// A `warn` line the run's log starts with (e.g. that the job is paused).
    pub note: Option<String>,
}

impl RunRequest {
    /// A manual run.
    pub fn manual(dry_run: bool) -> Self {
        Self {
            trigger: Trigger::Manual,
            scheduled_for: None,
            dry_run,
            requested_by: None,
            note: None,
        }
    }

    /// The same, its log starting with `note` as a `warn` line.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// The same, recording who asked for it.
    pub fn requested_by(mut self, actor: impl Into<String>) -> Self {
        self.requested_by = Some(actor.into());
        self
    }

    /// A run for a cron slot.
    pub fn slot(trigger: Trigger, slot: DateTime<Utc>) -> Self {
        Self {
            trigger,
            scheduled_for: Some(slot),
            dry_run: false,
            requested_by: None,
            note: None,
        }
    }
}

/// Why a run did not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartError {
    /// The job is switched off or lacks what it needs.
    #[error("job {job} is disabled: {reason}")]
    Disabled {
        /// The job.
        job: String,
        /// Why.
        reason: String,
    },
    /// Another execution of the job is running.
    #[error("job {0} is already running")]
    AlreadyRunning(String),
    /// This cron slot was already claimed (by another server, or earlier).
    #[error("slot {slot} of job {job} was already claimed")]
    SlotTaken {
        /// The job.
        job: String,
        /// The slot.
        slot: String,
    },
    /// An operator paused the job; only manual runs start.
    #[error("job {0} is paused")]
    Paused(String),
    /// The job cannot do a dry run.
    #[error("job {0} does not support dry runs")]
    DryRunUnsupported(String),
    /// The server is stopping and starts nothing new.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The execution log holds data that stops the run being recorded (see
    /// [`Claim::Conflict`]): the server works, the data must be mended.
    #[error("{0}")]
    Conflict(String),
    /// The execution log failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// How one execution ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The execution's id.
    pub execution_id: i64,
    /// The job's name.
    pub job_name: String,
    /// `Success` or `Failed`.
    pub status: Status,
    /// Final counters.
    pub stats: Stats,
    /// Why it failed.
    pub error_message: Option<String>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// How it was started.
    pub trigger: Trigger,
    /// Its slot, if scheduled.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Attempt number within its slot.
    pub attempt: u32,
    /// True when another attempt of the same slot follows.
    pub will_retry: bool,
    /// The stored row as completed; `None` when the log could not be written.
    pub record: Option<ExecutionRecord>,
}

/// A run that has been claimed and is going on in the background.
#[derive(Debug)]
pub struct StartedRun {
    /// The first attempt's execution id.
    pub execution_id: i64,
    /// Resolves with the report of the last attempt.
    pub handle: JoinHandle<RunReport>,
}

/// Told about every execution that starts and ends: metrics and notifications.
#[async_trait]
pub trait RunObserver: Send + Sync + 'static {
    /// An execution was claimed and starts now.
    async fn started(&self, _job: &RegisteredJob, _execution_id: i64) {}
    /// An execution ended (also each failed attempt that will be retried).
    async fn finished(&self, job: &RegisteredJob, report: &RunReport);
}

/// Runs jobs and records each run through an [`ExecutionLog`].
///
/// A returned error, a panic, a timeout and a shutdown all end as a failed execution with
/// a reason; nothing a job does can stop the runner.
pub struct Runner {
    log: Arc<dyn ExecutionLog>,
    settings: RunnerSettings,
    observers: Vec<Arc<dyn RunObserver>>,
    tracker: TaskTracker,
    /// The runtime runs are spawned on: the one the runner was built in, so that a run
    /// started from an HTTP worker thread does not live on that thread's runtime.
    handle: Option<tokio::runtime::Handle>,
    /// Set at shutdown: nothing new starts, no retry is scheduled.
    stopping: CancellationToken,
    /// Set when the shutdown grace period is over: running jobs are asked to stop.
    hard_stop: CancellationToken,
    /// The stop signal of each execution running in this process, for [`Runner::cancel`].
    running: Mutex<HashMap<i64, Arc<StopSignal>>>,
    /// Executions whose end could not be written (the log did not answer).
    unrecorded: std::sync::atomic::AtomicUsize,
}

/// Why a run was asked to stop before it ended by itself.
#[derive(Debug, Clone)]
enum StopReason {
    TimedOut(Duration),
    Shutdown,
    /// An operator's cancel; the text is the recorded reason (`cancelled by admin`).
    Cancelled(String),
    /// The lease is lost: another server may already have closed or rescued the row, so
    /// the run stops at once and writes nothing more.
    LeaseLost(String),
}

impl StopReason {
    fn message(&self) -> String {
        match self {
            StopReason::TimedOut(d) => format!("timed out after {}", human_duration(*d)),
            StopReason::Shutdown => "interrupted by shutdown".to_owned(),
            StopReason::Cancelled(reason) | StopReason::LeaseLost(reason) => reason.clone(),
        }
    }
}

/// One run's stop request: the token the job sees through its context, and the first
/// reason given (later ones do not replace it).
#[derive(Debug, Default)]
struct StopSignal {
    token: CancellationToken,
    reason: Mutex<Option<StopReason>>,
}

impl StopSignal {
    fn request(&self, reason: StopReason) {
        let mut current = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if current.is_none() {
            *current = Some(reason);
            self.token.cancel();
        }
    }

    fn reason(&self) -> Option<StopReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("settings", &self.settings)
            .field("running_tasks", &self.tracker.len())
            .finish()
    }
}

impl Runner {
    /// A runner writing to `log`.
    pub fn new(log: Arc<dyn ExecutionLog>, settings: RunnerSettings) -> Self {
        Self {
            log,
            settings,
            observers: Vec::new(),
            tracker: TaskTracker::new(),
            handle: tokio::runtime::Handle::try_current().ok(),
            stopping: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            running: Mutex::new(HashMap::new()),
            unrecorded: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// How many executions ended here without their end being recorded (the execution log
    /// did not answer): their rows stay `running` until their lease expires, and are then
    /// closed as failed by whichever server sees it.
    pub fn unrecorded_ends(&self) -> usize {
        self.unrecorded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Asks an execution running in this process to stop: it sees the cancellation at its
    /// next safe point and ends `failed` with `reason` and the counters it reached, or is
    /// dropped after the cancel grace period. False when it does not run here.
    pub fn cancel(&self, execution_id: i64, reason: impl Into<String>) -> bool {
        let stop = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&execution_id)
            .cloned();
        match stop {
            Some(stop) => {
                stop.request(StopReason::Cancelled(reason.into()));
                true
            }
            None => false,
        }
    }

    /// Adds an observer (before the runner is shared).
    pub fn with_observer(mut self, observer: Arc<dyn RunObserver>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Adds any number of observers (before the runner is shared).
    pub fn with_observers(
        mut self,
        observers: impl IntoIterator<Item = Arc<dyn RunObserver>>,
    ) -> Self {
        self.observers.extend(observers);
        self
    }

    /// The execution log.
    pub fn log(&self) -> &Arc<dyn ExecutionLog> {
        &self.log
    }

    /// The settings.
    pub fn settings(&self) -> &RunnerSettings {
        &self.settings
    }

    /// True once [`Runner::shutdown`] began.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Resolves once [`Runner::shutdown`] began.
    pub async fn stopping(&self) {
        self.stopping.cancelled().await;
    }

    /// Claims an execution and runs it in the background. Scheduled runs are retried by
    /// the job's policy; the handle resolves with the last attempt's report.
    pub async fn start(
        self: &Arc<Self>,
        job: Arc<RegisteredJob>,
        request: RunRequest,
    ) -> Result<StartedRun, StartError> {
        if let Some(reason) = job.disabled_reason() {
            return Err(StartError::Disabled {
                job: job.name().to_owned(),
                reason,
            });
        }
        let mut request = request;
        request.dry_run |= job.job.always_dry_run();
        if request.dry_run && !job.job.supports_dry_run() {
            return Err(StartError::DryRunUnsupported(job.name().to_owned()));
        }
        // Claiming and starting happen in a task of their own: when the caller goes away
        // (an HTTP client that disconnects right after sending run-now), a claimed row is
        // still run and closed, never left to its lease.
        let runner = Arc::clone(self);
        let claim_and_spawn = async move {
            let (id, _) = runner.claim(&job, &request, 1).await?;
            let handle = runner.spawn_attempts(job, request, id, 1);
            Ok::<_, StartError>(StartedRun {
                execution_id: id,
                handle,
            })
        };
        let task = match &self.handle {
            Some(rt) => rt.spawn(claim_and_spawn),
            None => tokio::spawn(claim_and_spawn),
        };
        task.await
            .map_err(|e| StartError::Log(LogError(format!("starting the run failed: {e}"))))?
    }

    fn spawn_attempts(
        self: &Arc<Self>,
        job: Arc<RegisteredJob>,
        request: RunRequest,
        id: i64,
        attempt: u32,
    ) -> JoinHandle<RunReport> {
        let runner = Arc::clone(self);
        let work = async move { runner.attempts(job, request, id, attempt).await };
        match &self.handle {
            Some(rt) => self.tracker.spawn_on(work, rt),
            None => self.tracker.spawn(work),
        }
    }

    /// Gives a scheduled attempt that another path closed (its server died: lease expiry,
    /// or a restarted server's leftover) the retries its policy still allows: after the
    /// backoff, the next attempt of the same slot is claimed (once across servers, by the
    /// slot's unique claim) and run here. True when a retry was scheduled.
    pub fn rescue(self: &Arc<Self>, job: &Arc<RegisteredJob>, record: &ExecutionRecord) -> bool {
        let attempt = u32::try_from(record.attempt).unwrap_or(u32::MAX);
        let delay = retry_delay(job.policy.retry_base_delay, attempt);
        self.retry_slot(job, record, delay, "was lost with its server")
    }

    /// Starts now the retry of a failed attempt that is overdue
    /// ([`ExecutionLog::overdue_retries`]): the server that was to start it stopped or died
    /// while waiting. Claimed once across servers, like any attempt. True when started.
    pub fn take_over_retry(
        self: &Arc<Self>,
        job: &Arc<RegisteredJob>,
        record: &ExecutionRecord,
    ) -> bool {
        self.retry_slot(
            job,
            record,
            Duration::ZERO,
            "was not retried by the server that ran it (it stopped or was busy)",
        )
    }

    fn retry_slot(
        self: &Arc<Self>,
        job: &Arc<RegisteredJob>,
        record: &ExecutionRecord,
        delay: Duration,
        what: &str,
    ) -> bool {
        let trigger = Trigger::parse(&record.trigger).unwrap_or(Trigger::Manual);
        let attempt = u32::try_from(record.attempt).unwrap_or(u32::MAX);
        let Some(slot) = record.scheduled_for else {
            return false;
        };
        // A server that cannot run the job (disabled here, or missing its credentials)
        // would spend the attempt on failing at once.
        // A run an operator cancelled is not tried again, even when its server died
        // before it could stop (the row is then closed as cancelled by the lease check).
        let cancelled = record
            .error_message
            .as_deref()
            .is_some_and(|m| m.starts_with("cancelled"));
        if trigger == Trigger::Manual
            || cancelled
            || record.dry_run
            || record.status != Status::Failed
            || attempt >= job.policy.max_attempts
            || self.is_stopping()
            || job.disabled_reason().is_some()
        {
            return false;
        }
        info!(
            "[Job] {} attempt {attempt} of slot {slot} {what}; attempt {} in {:.1}s",
            job.name(),
            attempt + 1,
            delay.as_secs_f64()
        );
        let runner = Arc::clone(self);
        let job = Arc::clone(job);
        let work = async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = runner.stopping.cancelled() => return,
            }
            let request = RunRequest::slot(trigger, slot);
            match runner.claim(&job, &request, attempt + 1).await {
                Ok((id, _)) => {
                    let _ = runner.attempts(job, request, id, attempt + 1).await;
                }
                // Another server claimed it first; or, for an overdue retry, a manual run
                // goes on: the next look tries again.
                Err(StartError::SlotTaken { .. }) => debug!(
                    "[Job] {} attempt {} of slot {slot} already claimed",
                    job.name(),
                    attempt + 1
                ),
                Err(StartError::AlreadyRunning(_)) if delay.is_zero() => debug!(
                    "[Job] {} attempt {} of slot {slot} waits: the job is running",
                    job.name(),
                    attempt + 1
                ),
                Err(e) => warn!(
                    "[Job] {} attempt {} of slot {slot} not started: {e}",
                    job.name(),
                    attempt + 1
                ),
            }
        };
        match &self.handle {
            Some(rt) => drop(self.tracker.spawn_on(work, rt)),
            None => drop(self.tracker.spawn(work)),
        }
        true
    }

    /// Runs in the foreground and returns the last attempt's report.
    pub async fn run(
        self: &Arc<Self>,
        job: Arc<RegisteredJob>,
        request: RunRequest,
    ) -> Result<RunReport, StartError> {
        let name = job.name().to_owned();
        let started = self.start(job, request).await?;
        started
            .handle
            .await
            .map_err(|e| StartError::Log(LogError(format!("run of {name} was lost: {e}"))))
    }

    /// Stops starting runs, waits up to `grace` for running ones, then asks what still
    /// runs to stop (recorded as `interrupted by shutdown` with the counters reached; a run
    /// that does not stop within the cancel grace period is dropped) and waits for those
    /// records. Returns true when everything ended within `grace`.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.stopping.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            return true;
        }
        warn!(
            "[Job] {} run(s) still going after the {:.0?} grace period; interrupting them",
            self.tracker.len(),
            grace
        );
        self.hard_stop.cancel();
        // Runs get the cancel grace period; recording the interruption is quick, but bound
        // it all the same.
        let bound = self.settings.cancel_grace + self.settings.log_timeout * 2;
        let _ = tokio::time::timeout(bound, self.tracker.wait()).await;
        false
    }

    async fn claim(
        &self,
        job: &RegisteredJob,
        request: &RunRequest,
        attempt: u32,
    ) -> Result<(i64, DateTime<Utc>), StartError> {
        if self.is_stopping() {
            return Err(StartError::ShuttingDown);
        }
        let new = NewExecution {
            job_name: job.name().to_owned(),
            trigger: request.trigger,
            scheduled_for: request.scheduled_for,
            attempt,
            dry_run: request.dry_run,
            worker_id: self.settings.worker_id.clone(),
            lease: self.settings.lease,
            requested_by: request.requested_by.clone(),
        };
        match self.timed("claim", self.log.claim(&new)).await? {
            Claim::Started { id, started_at } => Ok((id, started_at)),
            Claim::AlreadyRunning => Err(StartError::AlreadyRunning(job.name().to_owned())),
            Claim::Paused => Err(StartError::Paused(job.name().to_owned())),
            Claim::Conflict(reason) => Err(StartError::Conflict(reason)),
            Claim::SlotTaken => Err(StartError::SlotTaken {
                job: job.name().to_owned(),
                slot: request
                    .scheduled_for
                    .map(|s| s.to_rfc3339())
                    .unwrap_or_default(),
            }),
        }
    }

    async fn attempts(
        self: Arc<Self>,
        job: Arc<RegisteredJob>,
        request: RunRequest,
        first_id: i64,
        first_attempt: u32,
    ) -> RunReport {
        let mut attempt = first_attempt;
        let mut id = first_id;
        loop {
            let report = crate::current::scope(
                crate::current::CurrentExecution::new(job.name(), id),
                self.execute(&job, &request, id, attempt),
            )
            .await;
            if !report.will_retry {
                return report;
            }
            let delay = retry_delay(job.policy.retry_base_delay, attempt);
            info!(
                "[Job] {} attempt {attempt} failed; retrying in {:.1}s",
                job.name(),
                delay.as_secs_f64()
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.stopping.cancelled() => return report,
            }
            attempt += 1;
            match self.claim(&job, &request, attempt).await {
                Ok((next, _)) => id = next,
                Err(e) => {
                    warn!("[Job] {} retry {attempt} not started: {e}", job.name());
                    return report;
                }
            }
        }
    }

    async fn execute(
        &self,
        job: &RegisteredJob,
        request: &RunRequest,
        id: i64,
        attempt: u32,
    ) -> RunReport {
        let display = job.job.display_name();
        info!(
            "[Job] Starting {} (scheduled: {})",
            display.to_lowercase(),
            job.schedule.expression()
        );
        if request.trigger != Trigger::Schedule || attempt > 1 {
            info!(
                "[Job] {} execution {id}: trigger {}, attempt {attempt}{}",
                job.name(),
                request.trigger.as_str(),
                if request.dry_run { ", dry run" } else { "" }
            );
        }
        for observer in &self.observers {
            observer.started(job, id).await;
        }
        let started = Instant::now();
        let stop = Arc::new(StopSignal::default());
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Arc::clone(&stop));
        let ctx = JobContext::new(id, request.trigger, request.dry_run)
            .with_parts(request.scheduled_for, stop.token.clone());
        let heartbeat = tokio::spawn(heartbeat(
            Arc::clone(&self.log),
            self.settings.clone(),
            id,
            ctx.subscribe_progress(),
            Arc::clone(&stop),
        ));

        let timeout = job.policy.timeout;
        let events = crate::capture::RunEvents::new();
        if let Some(note) = &request.note {
            // First, so that it heads the run's lines whatever the job logs.
            events.push(log::Level::Warn, note.clone());
        }
        let mut work = Box::pin(
            AssertUnwindSafe(crate::capture::scope(events.clone(), job.job.run(&ctx)))
                .catch_unwind(),
        );
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        // First the run itself, until it ends or is asked to stop; a stopped run then gets
        // the grace period to reach a safe point and return what it did.
        let finished = tokio::select! {
            biased;
            outcome = &mut work => Some(outcome),
            _ = deadline => {
                stop.request(StopReason::TimedOut(timeout.unwrap_or_default()));
                None
            }
            _ = self.hard_stop.cancelled() => {
                stop.request(StopReason::Shutdown);
                None
            }
            _ = stop.token.cancelled() => None,
        };
        let reason = stop.reason();
        let outcome = match (finished, &reason) {
            (Some(outcome), _) => Some(outcome),
            (None, Some(StopReason::LeaseLost(_))) => None,
            (None, _) => {
                tokio::select! {
                    outcome = &mut work => Some(outcome),
                    _ = tokio::time::sleep(self.settings.cancel_grace) => {
                        warn!(
                            "[Job] {} execution {id} did not stop within {:.0?} of being asked; dropping it",
                            job.name(),
                            self.settings.cancel_grace
                        );
                        None
                    }
                }
            }
        };
        drop(work);
        heartbeat.abort();
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let elapsed = started.elapsed();

        let (status, stats, error_message) = settle(outcome, reason.as_ref(), &ctx);
        let interrupted = matches!(
            reason,
            Some(StopReason::Shutdown | StopReason::Cancelled(_) | StopReason::LeaseLost(_))
        );
        // What this attempt came to; `record` and `will_retry` are filled in once its end
        // is recorded here.
        let mut report = RunReport {
            execution_id: id,
            job_name: job.name().to_owned(),
            status,
            stats,
            error_message,
            elapsed,
            trigger: request.trigger,
            scheduled_for: request.scheduled_for,
            attempt,
            will_retry: false,
            record: None,
        };
        if let Some(StopReason::LeaseLost(why)) = &reason {
            // Fenced: the row may already be closed or rescued elsewhere; write nothing.
            warn!(
                "[Job] {} execution {id} stopped without recording its end: {why}",
                job.name()
            );
            return report;
        }
        // Before the completion, so that a finished execution has all its lines.
        let (lines, dropped) = events.take();
        if !lines.is_empty() || dropped > 0 {
            if let Err(e) = self
                .timed("record events", self.log.record_events(id, &lines, dropped))
                .await
            {
                warn!(
                    "[Job] the log lines of {} execution {id} were not stored: {e}",
                    job.name()
                );
            }
        }
        let title = sentence_case(display);
        let secs = elapsed.as_secs_f64();
        let summary = report.stats.summary(job.job.summary_keys());
        // A scheduled attempt with attempts left that a stop interrupts is handed to the
        // other servers rather than closed, when one is alive: its lease check closes it
        // and runs the next attempt of the slot there, as for a server that died, and
        // reports its end. Alone, this server closes it below.
        if matches!(reason, Some(StopReason::Shutdown))
            && request.trigger != Trigger::Manual
            && !request.dry_run
            && request.scheduled_for.is_some()
            && attempt < job.policy.max_attempts
        {
            let message = format!(
                "interrupted by shutdown of server {}; attempt {} goes to another server",
                self.settings.worker_id,
                attempt + 1
            );
            match self
                .timed("hand over", self.log.hand_over(id, &report.stats, &message))
                .await
            {
                Ok(true) => {
                    info!(
                        "[Job] ⏸ {title} interrupted by shutdown: {summary} ({secs:.1}s); handed over for attempt {}",
                        attempt + 1
                    );
                    report.error_message = Some(message);
                    return report;
                }
                Ok(false) => {}
                Err(e) => warn!(
                    "[Job] {} execution {id} could not be handed over ({e}); closing it here",
                    job.name()
                ),
            }
        }
        // A retry this server may not live to start is kept with the row: another server
        // starts it when it is overdue.
        let retry_in = (status == Status::Failed
            && !interrupted
            && request.trigger != Trigger::Manual
            && request.scheduled_for.is_some()
            && !request.dry_run
            && attempt < job.policy.max_attempts)
            .then(|| longest_retry_delay(job.policy.retry_base_delay, attempt));
        let completion = Completion {
            status,
            stats: report.stats.clone(),
            error_message: report.error_message.clone(),
            retry_in,
        };
        report.record = self.complete(job.name(), id, &completion).await;
        match &report.error_message {
            None => info!("[Job] ✅ {title} completed: {summary} ({secs:.1}s)"),
            Some(message) => info!("[Job] ❌ {title} failed: {message} ({secs:.1}s)"),
        }
        report.will_retry = status == Status::Failed
            && !interrupted
            && !self.is_stopping()
            && request.trigger != Trigger::Manual
            && attempt < job.policy.max_attempts;
        for observer in &self.observers {
            observer.finished(job, &report).await;
        }
        report
    }

    /// Calls the execution log with the configured time limit.
    async fn timed<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, LogError>>,
    ) -> Result<T, LogError> {
        let limit = self.settings.log_timeout;
        tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(LogError(format!(
                "{what} took longer than {}",
                human_duration(limit)
            )))
        })
    }

    /// Closes every execution whose lease expired, logs each and tells the observers,
    /// without retrying any: for a process that does not stay to run the retries (`run-job`,
    /// the last server to stop). Returns how many it closed.
    pub async fn close_expired(&self, registry: &crate::Registry) -> Result<usize, LogError> {
        let closed = self
            .timed("expire leases", self.log.expire_leases())
            .await?;
        for record in &closed {
            log_closed(record);
            if let Some(job) = registry.get(&record.job_name) {
                self.report_closed(&job, record, false).await;
            }
        }
        Ok(closed.len())
    }

    /// Tells the observers about an execution that another path closed as failed (lease
    /// expiry, a restarted server's leftover), so that it alerts like any failed run;
    /// `will_retry` when [`Runner::rescue`] scheduled its next attempt (then it is not a
    /// failure yet).
    pub async fn report_closed(
        &self,
        job: &RegisteredJob,
        record: &ExecutionRecord,
        will_retry: bool,
    ) {
        let report = RunReport {
            execution_id: record.id,
            job_name: record.job_name.clone(),
            status: record.status,
            stats: Stats::from_json(&record.stats),
            error_message: record.error_message.clone(),
            elapsed: Duration::from_millis(record.duration_ms.unwrap_or(0).max(0) as u64),
            trigger: Trigger::parse(&record.trigger).unwrap_or(Trigger::Manual),
            scheduled_for: record.scheduled_for,
            attempt: u32::try_from(record.attempt).unwrap_or(1),
            will_retry,
            record: Some(record.clone()),
        };
        for observer in &self.observers {
            observer.finished(job, &report).await;
        }
    }

    /// Writes the completion, retrying briefly: a lost write would leave the row to lease
    /// expiry, which marks it failed even if it succeeded.
    async fn complete(
        &self,
        job: &str,
        id: i64,
        completion: &Completion,
    ) -> Option<ExecutionRecord> {
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=5 {
            match self
                .timed("complete", self.log.complete(id, completion))
                .await
            {
                Ok(Some(record)) => return Some(record),
                Ok(None) => {
                    warn!("[Job] {job} execution {id} had already been closed by another server; its result is not recorded");
                    return None;
                }
                Err(e) if attempt < 5 => {
                    warn!("[Job] recording the end of {job} execution {id} failed ({e}); retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    self.unrecorded
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    warn!("[Job] could not record the end of {job} execution {id}: {e}; its lease will expire and it will be marked failed");
                }
            }
        }
        None
    }
}

/// Renews the lease (and writes progress) until aborted. Hands an operator's cancel to the
/// run, and stops the run when its row was closed elsewhere or when the lease could not be
/// renewed for a whole lease period (it may be rescued elsewhere by now: self-fencing).
async fn heartbeat(
    log: Arc<dyn ExecutionLog>,
    settings: RunnerSettings,
    id: i64,
    mut progress: watch::Receiver<Option<Stats>>,
    stop: Arc<StopSignal>,
) {
    let tick = settings.progress_interval.min(settings.heartbeat_interval);
    // A renewal that takes longer than this is as good as failed.
    let call_limit = settings.log_timeout.min(settings.lease / 2);
    let mut last_renewed = Instant::now();
    let mut failing = false;
    loop {
        tokio::time::sleep(tick).await;
        let changed = progress.has_changed().unwrap_or(false);
        if !changed && !failing && last_renewed.elapsed() < settings.heartbeat_interval {
            continue;
        }
        let stats = if changed {
            progress.borrow_and_update().clone()
        } else {
            None
        };
        let beat = tokio::time::timeout(
            call_limit,
            log.heartbeat(id, settings.lease, stats.as_ref()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(LogError(format!(
                "no answer within {}",
                human_duration(call_limit)
            )))
        });
        match beat {
            Ok(beat @ (Beat::Renewed | Beat::CancelRequested(_))) => {
                last_renewed = Instant::now();
                if failing {
                    info!("[Job] execution {id}: lease renewal works again");
                    failing = false;
                }
                if let Beat::CancelRequested(actor) = beat {
                    stop.request(StopReason::Cancelled(format!("cancelled by {actor}")));
                }
            }
            Ok(Beat::Closed) => {
                warn!("[Job] execution {id} was closed by another server after its lease expired; stopping it");
                stop.request(StopReason::LeaseLost(
                    "interrupted: the execution was closed by another server after its lease expired"
                        .to_owned(),
                ));
                return;
            }
            Err(e) => {
                if !failing {
                    warn!("[Job] execution {id}: lease renewal failed: {e}");
                    failing = true;
                }
                if last_renewed.elapsed() >= settings.lease {
                    warn!(
                        "[Job] execution {id}: lease not renewed for {}; stopping the run, which may be rescued elsewhere",
                        human_duration(settings.lease)
                    );
                    stop.request(StopReason::LeaseLost(format!(
                        "interrupted: its lease could not be renewed for {}",
                        human_duration(settings.lease)
                    )));
                    return;
                }
            }
        }
    }
}

type Outcome = Result<Result<Stats, JobError>, Box<dyn Any + Send>>;

/// The recorded end of a run: its own result, unless it was asked to stop, in which case
/// the stop's reason with the counters the run returned (or last reported).
fn settle(
    outcome: Option<Outcome>,
    reason: Option<&StopReason>,
    ctx: &JobContext,
) -> (Status, Stats, Option<String>) {
    let partial = |stats: Option<Stats>| stats.or_else(|| ctx.last_progress()).unwrap_or_default();
    match (reason, outcome) {
        (None, Some(Ok(Ok(stats)))) => (Status::Success, stats, None),
        (None, Some(Ok(Err(e)))) => (Status::Failed, partial(e.stats), Some(e.message)),
        (None, Some(Err(panic))) => (
            Status::Failed,
            partial(None),
            Some(format!("panicked: {}", panic_message(&*panic))),
        ),
        (None, None) => (Status::Failed, partial(None), Some("stopped".to_owned())),
        (Some(reason), outcome) => {
            let stats = match outcome {
                Some(Ok(Ok(stats))) => Some(stats),
                Some(Ok(Err(e))) => e.stats,
                _ => None,
            };
            (Status::Failed, partial(stats), Some(reason.message()))
        }
    }
}

/// Exponential backoff with jitter: `base * 2^(attempt-1)`, between half and all of it.
pub fn retry_delay(base: Duration, attempt: u32) -> Duration {
    let capped = longest_retry_delay(base, attempt);
    let half = capped / 2;
    let jitter = rand::rng().random_range(0.0..=1.0);
    half + half.mul_f64(jitter)
}

/// The longest [`retry_delay`] after `attempt`: when its retry is due at the latest.
pub fn longest_retry_delay(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    exp.min(Duration::from_secs(6 * 60 * 60))
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-text panic payload".to_owned()
    }
}

fn sentence_case(display: &str) -> String {
    let lower = display.to_lowercase();
    let mut chars = lower.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `1h 5m`, `90s`, `250ms`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs < 120 {
        format!("{secs}s")
    } else if secs < 2 * 3600 {
        format!("{}m", secs / 60)
    } else {
        let (h, m) = (secs / 3600, (secs % 3600) / 60);
        if m == 0 {
            format!("{h}h")
        } else {
            format!("{h}h {m}m")
        }
    }
}

/// The line an execution closed by a lease check gets.
pub fn log_closed(record: &ExecutionRecord) {
    warn!(
        "[Job] {} execution {} marked failed: {}",
        record.job_name,
        record.id,
        record
            .error_message
            .as_deref()
            .unwrap_or("its lease expired")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_titles_are_sentence_case() {
        assert_eq!(sentence_case("Audio Cleanup"), "Audio cleanup");
        assert_eq!(sentence_case("Cost Update"), "Cost update");
    }

    #[test]
    fn retry_delay_doubles_with_bounded_jitter() {
        let base = Duration::from_secs(10);
        for attempt in 1..=4 {
            let full = base * (1 << (attempt - 1));
            let d = retry_delay(base, attempt);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn durations_read_as_humans_write_them() {
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(human_duration(Duration::from_secs(90)), "90s");
        assert_eq!(human_duration(Duration::from_secs(600)), "10m");
        assert_eq!(human_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(human_duration(Duration::from_secs(3900 + 7200)), "3h 5m");
    }
}
