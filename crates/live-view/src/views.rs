//! JSON shapes of the API, shared by the handlers and the OpenAPI description.

use chrono::{DateTime, SecondsFormat, Utc};
use jobs_core::{ExecutionRecord, RegisteredJob};
use serde::Serialize;
use utoipa::ToSchema;

/// RFC 3339 in UTC with milliseconds: `2026-11-28T02:00:00.123Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `{"data": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Data<T> {
    /// The payload.
    pub data: T,
}

/// Execution state.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusView {
    /// Claimed and working.
    Running,
    /// Finished without error.
    Success,
    /// Finished with an error, panic, timeout or interruption.
    Failed,
    /// A cron slot that was not run (the previous run still went, or it was missed).
    Skipped,
}

impl From<jobs_core::Status> for StatusView {
    fn from(s: jobs_core::Status) -> Self {
        match s {
            jobs_core::Status::Running => StatusView::Running,
            jobs_core::Status::Success => StatusView::Success,
            jobs_core::Status::Failed => StatusView::Failed,
            jobs_core::Status::Skipped => StatusView::Skipped,
        }
    }
}

/// The latest execution of a job, as `GET /internal/api/v1/jobs/status` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionStatus {
    /// The job's name.
    pub job_name: String,
    /// State.
    pub status: StatusView,
    /// Start, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub started_at: String,
    /// End, RFC 3339 UTC; `null` while running.
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    /// `completed_at - started_at` in milliseconds.
    pub duration_ms: Option<i64>,
    /// The job's counters.
    #[schema(value_type = Object)]
    pub stats: serde_json::Value,
    /// Why it failed.
    pub error_message: Option<String>,
}

impl From<&ExecutionRecord> for ExecutionStatus {
    fn from(r: &ExecutionRecord) -> Self {
        Self {
            job_name: r.job_name.clone(),
            status: r.status.into(),
            started_at: rfc3339(r.started_at),
            completed_at: r.completed_at.map(rfc3339),
            duration_ms: r.duration_ms,
            stats: r.stats.clone(),
            error_message: r.error_message.clone(),
        }
    }
}

/// How an execution was started.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerView {
    /// A cron slot, on time.
    Schedule,
    /// A missed cron slot run late once.
    CatchUp,
    /// `run-job` or the run-now API.
    Manual,
}

/// One execution with everything recorded about it: the status fields plus where it came
/// from.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionView {
    /// Row id.
    pub id: i64,
    /// Name, state, times, stats and error, as in the status API.
    #[serde(flatten)]
    pub status: ExecutionStatus,
    /// The cron slot; `null` for a manual run.
    #[schema(format = DateTime)]
    pub scheduled_for: Option<String>,
    /// How it was started.
    pub trigger: TriggerView,
    /// Attempt within its slot (1 = first try).
    pub attempt: i32,
    /// A dry run changes nothing.
    pub dry_run: bool,
    /// The server that ran it.
    pub worker_id: Option<String>,
    /// Who asked for a manual run: `admin` or `local` (over HTTP, by role) or `cli`
    /// (`api-server run-job`); `null` for scheduled runs.
    pub actor: Option<String>,
}

impl From<&ExecutionRecord> for ExecutionView {
    fn from(r: &ExecutionRecord) -> Self {
        Self {
            id: r.id,
            status: ExecutionStatus::from(r),
            scheduled_for: r.scheduled_for.map(rfc3339),
            trigger: match r.trigger.as_str() {
                "schedule" => TriggerView::Schedule,
                "catch_up" => TriggerView::CatchUp,
                _ => TriggerView::Manual,
            },
            attempt: r.attempt,
            dry_run: r.dry_run,
            worker_id: r.worker_id.clone(),
            actor: r.requested_by.clone(),
        }
    }
}

/// A registered job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// Stable name.
    pub job_name: String,
    /// Human name.
    pub display_name: String,
    /// Cron expression.
    pub schedule: String,
    /// The schedule in words.
    pub schedule_description: String,
    /// IANA zone of the schedule.
    pub timezone: String,
    /// Runs on schedule and on request.
    pub enabled: bool,
    /// Why not, when disabled.
    pub disabled_reason: Option<String>,
    /// Next cron slot, RFC 3339 UTC (also shown for disabled jobs).
    #[schema(format = DateTime)]
    pub next_run_at: Option<String>,
    /// Whether `?dry_run=true` is accepted.
    pub supports_dry_run: bool,
    /// Runs longer than this are cancelled.
    pub timeout_secs: Option<u64>,
    /// Tries per cron slot.
    pub max_attempts: u32,
    /// The latest execution, if any.
    pub latest_execution: Option<ExecutionView>,
    /// Items waiting for the job (old audio not yet deleted, transcriptions not yet
    /// priced), as last measured; `null` when the job does not tell or it was not
    /// measured yet.
    pub backlog: Option<u64>,
    /// True when the count stopped at the job's cap: at least `backlog` items wait.
    pub backlog_capped: bool,
    /// When `backlog` was measured (every `BACKLOG_REFRESH_SECS`), RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub backlog_measured_at: Option<String>,
    /// Paused by an operator: scheduled slots are not run (manual runs are). Unlike
    /// `enabled`, which `DISABLED_JOBS` sets, this is resumed from the API or dashboard.
    pub paused: bool,
    /// When it was paused, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub paused_at: Option<String>,
    /// Who paused it (`admin`, `viewer`, `local`).
    pub paused_by: Option<String>,
    /// Why, as the operator wrote it.
    pub pause_reason: Option<String>,
}

impl JobView {
    /// A job with its latest execution.
    pub fn new(job: &RegisteredJob, latest: Option<&ExecutionRecord>, now: DateTime<Utc>) -> Self {
        let reason = job.disabled_reason();
        let backlog = job.backlog();
        Self {
            job_name: job.name().to_owned(),
            display_name: job.job.display_name().to_owned(),
            schedule: job.schedule.expression().to_owned(),
            schedule_description: job.schedule.describe(),
            timezone: job.schedule.timezone().to_string(),
            enabled: reason.is_none(),
            disabled_reason: reason,
            next_run_at: job.schedule.next_after(now).map(rfc3339),
            supports_dry_run: job.job.supports_dry_run(),
            timeout_secs: job.policy.timeout.map(|t| t.as_secs()),
            max_attempts: job.policy.max_attempts,
            latest_execution: latest.map(ExecutionView::from),
            backlog: backlog.map(|b| b.backlog.count),
            backlog_capped: backlog.is_some_and(|b| b.backlog.capped),
            backlog_measured_at: backlog.map(|b| rfc3339(b.measured_at)),
            paused: false,
            paused_at: None,
            paused_by: None,
            pause_reason: None,
        }
    }

    /// Adds the job's run-time switches.
    pub fn with_control(mut self, control: Option<&db::controls::JobControl>) -> Self {
        if let Some(c) = control.filter(|c| c.paused) {
            self.paused = true;
            self.paused_at = c.paused_at.map(rfc3339);
            self.paused_by = c.paused_by.clone();
            self.pause_reason = c.pause_reason.clone();
        }
        self
    }
}

/// A page of history.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionPage {
    /// Executions, newest first.
    pub data: Vec<ExecutionView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// The window searched, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub since: String,
    /// The window searched, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub until: String,
}

/// A run that was started.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunStarted {
    /// The new execution's id.
    pub execution_id: i64,
    /// The job.
    pub job_name: String,
    /// Always `running`.
    pub status: StatusView,
    /// Whether it is a dry run.
    pub dry_run: bool,
    /// The job is paused: this manual run goes ahead anyway, its schedule stays paused.
    pub paused: bool,
    /// Said when something about the run deserves a word (a paused job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A job's run-time switches, as pause and resume answer them.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobControlView {
    /// The job.
    pub job_name: String,
    /// Scheduled slots are not run.
    pub paused: bool,
    /// When it was paused, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub paused_at: Option<String>,
    /// Who paused it.
    pub paused_by: Option<String>,
    /// Why.
    pub pause_reason: Option<String>,
}

impl From<&db::controls::JobControl> for JobControlView {
    fn from(c: &db::controls::JobControl) -> Self {
        Self {
            job_name: c.job_name.clone(),
            paused: c.paused,
            paused_at: c.paused_at.map(rfc3339),
            paused_by: c.paused_by.clone(),
            pause_reason: c.pause_reason.clone(),
        }
    }
}

/// One log line of a run.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// When, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub at: String,
    /// `info`, `warn` or `error`.
    pub level: String,
    /// The line.
    pub message: String,
}

/// One UTC day of a job's runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrendDay {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// Finished runs (dry runs and skipped slots are not counted).
    pub runs: i64,
    /// Of which succeeded.
    pub succeeded: i64,
    /// Of which failed.
    pub failed: i64,
    /// Median duration; `null` on a day without runs.
    pub p50_ms: Option<i64>,
    /// 95th percentile duration.
    pub p95_ms: Option<i64>,
    /// The sum of each numeric stats key over the day's runs.
    #[schema(value_type = Object)]
    pub stats: serde_json::Value,
}

/// A live server.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerView {
    /// Its `WORKER_ID`.
    pub worker_id: String,
    /// When the process started, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub started_at: String,
    /// Its latest heartbeat, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub last_seen_at: String,
    /// The binary's version.
    pub version: String,
    /// The executions it runs now.
    pub running: Vec<i64>,
    /// What it schedules: per job its cron, time zone, whether it is enabled, attempts,
    /// retry delay and timeout (`null` for a server of an earlier version). Replicas
    /// should agree; one that does not is also named in the log.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
}

/// A cancel that was asked for (`POST /internal/api/v1/jobs/executions/{id}/cancel`).
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelRequested {
    /// The execution asked to stop.
    pub execution_id: i64,
    /// `running`: it stops at its next safe point, within the cancel grace period;
    /// `failed`: no live server held it, so the request closed it at once.
    pub status: StatusView,
    /// Who asked (`admin`, `local`, …); recorded as `cancelled by <who>`.
    pub requested_by: String,
    /// When closed at once (`failed`): the message recorded, `cancelled by <who>: no
    /// server held it (…)`. Absent while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error's code and text.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `snake_case` code.
    pub code: String,
    /// Human text.
    pub message: String,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    pub status: String,
    /// `ok`.
    pub database: String,
}
