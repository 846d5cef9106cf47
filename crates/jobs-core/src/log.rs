//! Where executions are recorded: the trait the runner writes through, and an in-memory
//! implementation for tests.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Stats, Trigger};

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
}

impl Status {
    /// The stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Success => "success",
            Status::Failed => "failed",
        }
    }

    /// Reads a stored value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(Status::Running),
            "success" => Some(Status::Success),
            "failed" => Some(Status::Failed),
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

    /// Extends a running execution's lease and stores progress. `false` when the row is no
    /// longer running (another server closed it after its lease expired).
    async fn heartbeat(
        &self,
        id: i64,
        lease: Duration,
        progress: Option<&Stats>,
    ) -> Result<bool, LogError>;

    /// Ends a running execution; `None` when it had already been closed by someone else.
    async fn complete(
        &self,
        id: i64,
        completion: &Completion,
    ) -> Result<Option<ExecutionRecord>, LogError>;

    /// Marks failed every running execution whose lease has expired, and returns them.
    async fn expire_leases(&self) -> Result<Vec<ExecutionRecord>, LogError>;

    /// Marks failed every running execution of this worker: on start-up, before it runs
    /// anything, they are leftovers of a process that died.
    async fn close_orphans(
        &self,
        worker_id: &str,
        reason: &str,
    ) -> Result<Vec<ExecutionRecord>, LogError>;

    /// The latest execution of each job.
    async fn latest_per_job(&self) -> Result<Vec<ExecutionRecord>, LogError>;

    /// The most recent cron slot recorded for a job (run, failed or skipped).
    async fn last_slot(&self, job_name: &str) -> Result<Option<DateTime<Utc>>, LogError>;

    /// Records a slot that was not run (missed while no server was up, or skipped because
    /// the previous run still went) as a `failed` execution whose message starts with
    /// `skipped:`, so the history shows it. Claims the slot like a run would: recording
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
#[derive(Debug, Default)]
pub struct MemoryExecutionLog {
    rows: Mutex<Vec<(ExecutionRecord, DateTime<Utc>)>>,
}

impl MemoryExecutionLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every execution, oldest first.
    pub fn all(&self) -> Vec<ExecutionRecord> {
        self.lock().iter().map(|(r, _)| r.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(ExecutionRecord, DateTime<Utc>)>> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn close(record: &mut ExecutionRecord, status: Status, message: Option<String>) {
    let now = Utc::now();
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
            && rows.iter().any(|(r, _)| {
                r.job_name == new.job_name
                    && r.scheduled_for == new.scheduled_for
                    && r.attempt == new.attempt as i32
            })
        {
            return Ok(Claim::SlotTaken);
        }
        if rows
            .iter()
            .any(|(r, _)| r.job_name == new.job_name && r.status == Status::Running)
        {
            return Ok(Claim::AlreadyRunning);
        }
        let now = Utc::now();
        let id = rows.len() as i64 + 1;
        rows.push((
            ExecutionRecord {
                id,
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
            },
            now + chrono_duration(new.lease),
        ));
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
    ) -> Result<bool, LogError> {
        let mut rows = self.lock();
        match rows
            .iter_mut()
            .find(|(r, _)| r.id == id && r.status == Status::Running)
        {
            Some((record, expires)) => {
                *expires = Utc::now() + chrono_duration(lease);
                if let Some(stats) = progress {
                    record.stats = stats.to_json();
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn complete(
        &self,
        id: i64,
        completion: &Completion,
    ) -> Result<Option<ExecutionRecord>, LogError> {
        let mut rows = self.lock();
        match rows
            .iter_mut()
            .find(|(r, _)| r.id == id && r.status == Status::Running)
        {
            Some((record, _)) => {
                close(record, completion.status, completion.error_message.clone());
                record.stats = completion.stats.to_json();
                Ok(Some(record.clone()))
            }
            None => Ok(None),
        }
    }

    async fn expire_leases(&self) -> Result<Vec<ExecutionRecord>, LogError> {
        let now = Utc::now();
        let mut rows = self.lock();
        let mut closed = Vec::new();
        for (record, expires) in rows.iter_mut() {
            if record.status == Status::Running && *expires < now {
                let host = record.worker_id.clone().unwrap_or_default();
                close(
                    record,
                    Status::Failed,
                    Some(format!(
                        "interrupted: lease expired, worker {host} stopped renewing it"
                    )),
                );
                closed.push(record.clone());
            }
        }
        Ok(closed)
    }

    async fn close_orphans(
        &self,
        worker_id: &str,
        reason: &str,
    ) -> Result<Vec<ExecutionRecord>, LogError> {
        let mut rows = self.lock();
        let mut closed = Vec::new();
        for (record, _) in rows.iter_mut() {
            if record.status == Status::Running && record.worker_id.as_deref() == Some(worker_id) {
                close(record, Status::Failed, Some(reason.to_owned()));
                closed.push(record.clone());
            }
        }
        Ok(closed)
    }

    async fn last_slot(&self, job_name: &str) -> Result<Option<DateTime<Utc>>, LogError> {
        Ok(self
            .lock()
            .iter()
            .filter(|(r, _)| r.job_name == job_name)
            .filter_map(|(r, _)| r.scheduled_for)
            .max())
    }

    async fn record_skipped(
        &self,
        job_name: &str,
        slot: DateTime<Utc>,
        worker_id: &str,
        reason: &str,
    ) -> Result<bool, LogError> {
        let mut rows = self.lock();
        if rows
            .iter()
            .any(|(r, _)| r.job_name == job_name && r.scheduled_for == Some(slot) && r.attempt == 1)
        {
            return Ok(false);
        }
        let now = Utc::now();
        let id = rows.len() as i64 + 1;
        rows.push((
            ExecutionRecord {
                id,
                job_name: job_name.to_owned(),
                status: Status::Failed,
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
            },
            now,
        ));
        Ok(true)
    }

    async fn latest_per_job(&self) -> Result<Vec<ExecutionRecord>, LogError> {
        let rows = self.lock();
        let mut latest: Vec<ExecutionRecord> = Vec::new();
        for (record, _) in rows.iter() {
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
