//! Where executions are recorded: the trait the runner writes through, and an in-memory
//! implementation for tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::{Stats, Trigger};

/// Longest lease a log stores; longer ones are cut to it so that no time arithmetic
/// overflows (a lease of years is as good as forever).
pub const MAX_LEASE: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// The state of an execution, as stored in `job_executions.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Claimed and working.
    Running,
    /// Finished without error.
    Success,
    /// Finished with an error, a panic, a timeout or an interruption.
    Failed,
    /// A cron slot that was not run (the previous run still went, or it was missed); a
    /// record for the history, never a run's outcome.
    Skipped,
}

impl Status {
    /// The stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }

    /// Reads a stored value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(Status::Running),
            "success" => Some(Status::Success),
            "failed" => Some(Status::Failed),
            "skipped" => Some(Status::Skipped),
            _ => None,
        }
    }
}

/// A request to start an execution.
#[derive(Debug, Clone)]
pub struct NewExecution {
    /// The job's stable name.
    pub job_name: String,
    /// How it was started.
    pub trigger: Trigger,
    /// The cron slot; `None` for a manual run. Unique per job and attempt: the claim.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// 1 for the first try of a slot, 2 for its first retry, …
    pub attempt: u32,
    /// Whether this is a dry run.
    pub dry_run: bool,
    /// Which server runs it (host and port), shown when its lease expires.
    pub worker_id: String,
    /// How long the execution stays claimed without a heartbeat.
    pub lease: Duration,
    /// Who asked for a manual run; `None` for scheduled runs.
    pub requested_by: Option<String>,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This server owns the new execution.
    Started {
        /// Its id.
        id: i64,
        /// Its start time, by the log's clock.
        started_at: DateTime<Utc>,
    },
    /// Another server (or an earlier start of this one) already took this slot and attempt.
    SlotTaken,
    /// Another execution of the same job is still running.
    AlreadyRunning,
    /// An operator paused the job: its scheduled slots are not claimed (manual runs are).
    Paused,
    /// The new row conflicted with an existing one although none of the job's runs is
    /// going: the log's own data is wrong (an id sequence set back, a foreign unique
    /// index). Says what to mend; retrying does not help until it is mended.
    Conflict(String),
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Beat {
    /// The lease was renewed.
    Renewed,
    /// The lease was renewed, and someone asked the run to stop (`actor` is who).
    CancelRequested(String),
    /// The row is no longer running: another server closed it after its lease expired.
    Closed,
}

/// The answer to a request to cancel an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelRequest {
    /// Recorded; the server running it stops it at its next heartbeat.
    Requested,
    /// No live server held it (its lease had expired, or it never had one: a row written
    /// by another system or by hand), so nothing would ever stop it: closed at once as
    /// failed, `cancelled by …`.
    Closed,
    /// The execution exists but is not running.
    NotRunning,
    /// No such execution.
    NotFound,
}

/// How an execution ended.
#[derive(Debug, Clone)]
pub struct Completion {
    /// [`Status::Success`] or [`Status::Failed`].
    pub status: Status,
    /// Final counters.
    pub stats: Stats,
    /// The reason, when failed.
    pub error_message: Option<String>,
    /// For a failed scheduled attempt with attempts left: how long until the next one.
    /// Kept with the row, so that another server runs it if this one stops or dies while
    /// waiting ([`ExecutionLog::overdue_retries`]).
    pub retry_in: Option<Duration>,
}

/// One row of the execution history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionRecord {
    /// Row id.
    pub id: i64,
    /// The job's stable name.
    pub job_name: String,
    /// Current state.
    pub status: Status,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
    /// `completed_at - started_at` in milliseconds.
    pub duration_ms: Option<i64>,
    /// The counters as stored.
    pub stats: serde_json::Value,
    /// Why it failed.
    pub error_message: Option<String>,
    /// The cron slot, `None` for a manual run.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// How it was started (`schedule`, `catch_up`, `manual`).
    pub trigger: String,
    /// Attempt number within its slot.
    pub attempt: i32,
    /// Which server ran it.
    pub worker_id: Option<String>,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Who asked for a manual run (`admin`, `local`, `cli`); `None` for scheduled runs
    /// and for rows written before this was recorded.
    pub requested_by: Option<String>,
}

/// A failure of the log itself (the database is down, …).
#[derive(Debug, Clone, thiserror::Error)]
#[error("execution log: {0}")]
pub struct LogError(pub String);

/// Where the runner records executions. PostgreSQL implements it in the `db` crate.
///
/// Every state change is a compare-and-set: a heartbeat or a completion only touches a row
/// that is still `running`, and lease expiry only touches rows whose lease has run out, so
/// a live run is never closed by another server.
#[async_trait]
pub trait ExecutionLog: Send + Sync + 'static {
    /// Inserts a `running` execution unless its slot is taken or the job already runs.
    async fn claim(&self, new: &NewExecution) -> Result<Claim, LogError>;

    /// Extends a running execution's lease and stores progress; says whether a cancel was
    /// requested, or whether the row is no longer running (another server closed it after
    /// its lease expired).
    async fn heartbeat(
        &self,
        id: i64,
        lease: Duration,
        progress: Option<&Stats>,
    ) -> Result<Beat, LogError>;

    /// Asks a running execution to stop, on whichever server runs it: the request is
    /// stored with the row and handed to its runner by the next heartbeat. The first
    /// request wins; a later one changes nothing but still answers `Requested`.
    async fn request_cancel(&self, id: i64, actor: &str) -> Result<CancelRequest, LogError>;

    /// Ends a running execution; `None` when it had already been closed by someone else.
    async fn complete(
        &self,
        id: i64,
        completion: &Completion,
    ) -> Result<Option<ExecutionRecord>, LogError>;

    /// Gives up a running execution without closing it, for the other servers to finish:
    /// stores its counters and `message`, and ends its lease now. The next lease check of
    /// any server closes it as failed with that message, and gives its slot the attempts
    /// left ([`crate::Runner::rescue`]). False when the row was no longer running, or no
    /// other server is alive to take it. The default hands nothing over (the caller then
    /// closes the execution itself).
    async fn hand_over(&self, _id: i64, _stats: &Stats, _message: &str) -> Result<bool, LogError> {
        Ok(false)
    }

    /// Marks failed every running execution whose lease has expired, and returns them,
    /// with the message a [`ExecutionLog::hand_over`] left, if any.
    async fn expire_leases(&self) -> Result<Vec<ExecutionRecord>, LogError>;

    /// Failed scheduled attempts whose retry ([`Completion::retry_in`]) was due more than
    /// `margin` ago, within the last hours, and that nothing followed (no later attempt of
    /// the slot, no later slot): the server that was to run it stopped or died while
    /// waiting. A log that keeps no retry times has none.
    async fn overdue_retries(&self, margin: Duration) -> Result<Vec<ExecutionRecord>, LogError> {
        let _ = margin;
        Ok(Vec::new())
    }

    /// Marks failed every running execution of this worker: on start-up, before it runs
    /// anything, they are leftovers of a process that died.
    async fn close_orphans(
        &self,
        worker_id: &str,
        reason: &str,
    ) -> Result<Vec<ExecutionRecord>, LogError>;

    /// The latest execution of each job that ran (skipped slots are not executions that
    /// ran: they never hide a running or finished run).
    async fn latest_per_job(&self) -> Result<Vec<ExecutionRecord>, LogError>;

    /// The most recent cron slot recorded for a job (run, failed or skipped).
    async fn last_slot(&self, job_name: &str) -> Result<Option<DateTime<Utc>>, LogError>;

    /// Records a slot that was not run (missed while no server was up, or skipped because
    /// the previous run still went) as a `skipped` execution whose message says why, so
    /// the history shows it. Claims the slot like a run would: recording
    /// the same slot twice (two servers) stores it once.
    async fn record_skipped(
        &self,
        job_name: &str,
        slot: DateTime<Utc>,
        worker_id: &str,
        reason: &str,
    ) -> Result<bool, LogError>;

    /// Stores a run's captured log lines, and how many were dropped; kept with the
    /// execution and deleted with it. The default keeps nothing.
    async fn record_events(
        &self,
        _id: i64,
        _events: &[crate::capture::RunEvent],
        _dropped: u64,
    ) -> Result<(), LogError> {
        Ok(())
    }
}

/// An [`ExecutionLog`] in memory, with the same claim and compare-and-set rules as the
/// PostgreSQL one; for tests of the runner and scheduler.
#[derive(Debug)]
pub struct MemoryExecutionLog {
    rows: Mutex<Vec<MemoryRow>>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct MemoryRow {
    record: ExecutionRecord,
    expires: DateTime<Utc>,
    cancel_requested_by: Option<String>,
}

/// The row of execution `id` while it is running.
fn running_mut(rows: &mut [MemoryRow], id: i64) -> Option<&mut MemoryRow> {
    rows.iter_mut()
        .find(|r| r.record.id == id && r.record.status == Status::Running)
}

impl Default for MemoryExecutionLog {
    fn default() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }
}

impl MemoryExecutionLog {
    /// An empty log on the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty log whose times (start, end, lease expiry) come from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            rows: Mutex::new(Vec::new()),
            clock,
        }
    }

    /// Every execution, oldest first.
    pub fn all(&self) -> Vec<ExecutionRecord> {
        self.lock().iter().map(|r| r.record.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<MemoryRow>> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(
        &self,
        rows: &mut Vec<MemoryRow>,
        record: ExecutionRecord,
        expires: DateTime<Utc>,
    ) -> i64 {
        let id = rows.len() as i64 + 1;
        rows.push(MemoryRow {
            record: ExecutionRecord { id, ..record },
            expires,
            cancel_requested_by: None,
        });
        id
    }
}

fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    let lease =
        chrono::Duration::from_std(lease.min(MAX_LEASE)).unwrap_or(chrono::Duration::zero());
    now.checked_add_signed(lease)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn close(
    record: &mut ExecutionRecord,
    now: DateTime<Utc>,
    status: Status,
    message: Option<String>,
) {
    record.status = status;
    record.completed_at = Some(now);
    record.duration_ms = Some((now - record.started_at).num_milliseconds());
    record.error_message = message;
}

#[async_trait]
impl ExecutionLog for MemoryExecutionLog {
    async fn claim(&self, new: &NewExecution) -> Result<Claim, LogError> {
        let mut rows = self.lock();
        if new.scheduled_for.is_some()
            && rows.iter().any(|r| {
                r.record.job_name == new.job_name
                    && r.record.scheduled_for == new.scheduled_for
                    && r.record.attempt == new.attempt as i32
            })
        {
            return Ok(Claim::SlotTaken);
        }
        if rows
            .iter()
            .any(|r| r.record.job_name == new.job_name && r.record.status == Status::Running)
        {
            return Ok(Claim::AlreadyRunning);
        }
        let now = self.clock.now();
        let record = ExecutionRecord {
            id: 0,
            job_name: new.job_name.clone(),
            status: Status::Running,
            started_at: now,
            completed_at: None,
            duration_ms: None,
            stats: serde_json::json!({}),
            error_message: None,
            scheduled_for: new.scheduled_for,
            trigger: new.trigger.as_str().to_owned(),
            attempt: new.attempt as i32,
            worker_id: Some(new.worker_id.clone()),
            dry_run: new.dry_run,
            requested_by: new.requested_by.clone(),
        };
        let id = self.push(&mut rows, record, lease_end(now, new.lease));
        Ok(Claim::Started {
            id,
            started_at: now,
        })
    }

    async fn heartbeat(
        &self,
        id: i64,
        lease: Duration,
        progress: Option<&Stats>,
    ) -> Result<Beat, LogError> {
        let now = self.clock.now();
        let mut rows = self.lock();
        match running_mut(&mut rows, id) {
            Some(row) => {
                row.expires = lease_end(now, lease);
                if let Some(stats) = progress {
                    row.record.stats = stats.to_json();
                }
                Ok(match &row.cancel_requested_by {
                    Some(actor) => Beat::CancelRequested(actor.clone()),
                    None => Beat::Renewed,
                })
            }
            None => Ok(Beat::Closed),
        }
    }

    async fn request_cancel(&self, id: i64, actor: &str) -> Result<CancelRequest, LogError> {
        let mut rows = self.lock();
        match rows.iter_mut().find(|r| r.record.id == id) {
            None => Ok(CancelRequest::NotFound),
            Some(row) if row.record.status != Status::Running => Ok(CancelRequest::NotRunning),
            Some(row) if row.expires < self.clock.now() => {
                let now = self.clock.now();
                close(
                    &mut row.record,
                    now,
                    Status::Failed,
                    Some(format!(
                        "cancelled by {actor}: no server held it (its lease had expired)"
                    )),
                );
                Ok(CancelRequest::Closed)
            }
            Some(row) => {
                row.cancel_requested_by
                    .get_or_insert_with(|| actor.to_owned());
                Ok(CancelRequest::Requested)
            }
        }
    }

    async fn complete(
        &self,
        id: i64,
        completion: &Completion,
    ) -> Result<Option<ExecutionRecord>, LogError> {
        let now = self.clock.now();
        let mut rows = self.lock();
        match running_mut(&mut rows, id) {
            Some(row) => {
                let record = &mut row.record;
                close(
                    record,
                    now,
                    completion.status,
                    completion.error_message.clone(),
                );
                record.stats = completion.stats.to_json();
                Ok(Some(record.clone()))
            }
            None => Ok(None),
        }
    }

    async fn hand_over(&self, id: i64, stats: &Stats, message: &str) -> Result<bool, LogError> {
        let now = self.clock.now();
        let mut rows = self.lock();
        match running_mut(&mut rows, id) {
            Some(row) => {
                row.record.stats = stats.to_json();
                row.record.error_message = Some(message.to_owned());
                // Expired from now on: `expire_leases` compares with `<`.
                row.expires = now - chrono::Duration::milliseconds(1);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn expire_leases(&self) -> Result<Vec<ExecutionRecord>, LogError> {
        let now = self.clock.now();
        let mut rows = self.lock();
        let mut closed = Vec::new();
        for row in rows.iter_mut() {
            if row.record.status == Status::Running && row.expires < now {
                let host = row.record.worker_id.clone().unwrap_or_default();
                let message = row.record.error_message.clone().unwrap_or_else(|| {
                    format!("interrupted: lease expired, worker {host} stopped renewing it")
                });
                close(&mut row.record, now, Status::Failed, Some(message));
                closed.push(row.record.clone());
            }
        }
        Ok(closed)
    }

    async fn close_orphans(
        &self,
        worker_id: &str,
        reason: &str,
    ) -> Result<Vec<ExecutionRecord>, LogError> {
        let now = self.clock.now();
        let mut rows = self.lock();
        let mut closed = Vec::new();
        for row in rows.iter_mut() {
            if row.record.status == Status::Running
                && row.record.worker_id.as_deref() == Some(worker_id)
            {
                close(
                    &mut row.record,
                    now,
                    Status::Failed,
                    Some(reason.to_owned()),
                );
                closed.push(row.record.clone());
            }
        }
        Ok(closed)
    }

    async fn last_slot(&self, job_name: &str) -> Result<Option<DateTime<Utc>>, LogError> {
        Ok(self
            .lock()
            .iter()
            .filter(|r| r.record.job_name == job_name)
            .filter_map(|r| r.record.scheduled_for)
            .max())
    }

    async fn record_skipped(
        &self,
        job_name: &str,
        slot: DateTime<Utc>,
        worker_id: &str,
        reason: &str,
    ) -> Result<bool, LogError> {
        let now = self.clock.now();
        let mut rows = self.lock();
        if rows.iter().any(|r| {
            r.record.job_name == job_name
                && r.record.scheduled_for == Some(slot)
                && r.record.attempt == 1
        }) {
            return Ok(false);
        }
        let record = ExecutionRecord {
            id: 0,
            job_name: job_name.to_owned(),
            status: Status::Skipped,
            started_at: now,
            completed_at: Some(now),
            duration_ms: Some(0),
            stats: serde_json::json!({}),
            error_message: Some(reason.to_owned()),
            scheduled_for: Some(slot),
            trigger: Trigger::Schedule.as_str().to_owned(),
            attempt: 1,
            worker_id: Some(worker_id.to_owned()),
            dry_run: false,
            requested_by: None,
        };
        self.push(&mut rows, record, now);
        Ok(true)
    }

    async fn latest_per_job(&self) -> Result<Vec<ExecutionRecord>, LogError> {
        let rows = self.lock();
        let mut latest: Vec<ExecutionRecord> = Vec::new();
        for record in rows
            .iter()
            .map(|r| &r.record)
            .filter(|r| r.status != Status::Skipped)
        {
            match latest.iter_mut().find(|r| r.job_name == record.job_name) {
                Some(existing) if existing.started_at <= record.started_at => {
                    *existing = record.clone()
                }
                Some(_) => {}
                None => latest.push(record.clone()),
            }
        }
        latest.sort_by(|a, b| a.job_name.cmp(&b.job_name));
        Ok(latest)
    }
}
