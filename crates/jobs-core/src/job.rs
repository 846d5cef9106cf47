//! What a job is, what it is handed, and how it fails.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Stats;

/// A unit of scheduled work.
///
/// A job holds its own dependencies (database pool, HTTP clients, settings): a test builds
/// one with a local mock server's URL. [`Job::run`] does the work and returns its counters;
/// the runner records the execution around it.
#[async_trait]
pub trait Job: Send + Sync + 'static {
    /// Stable identifier, stored in `job_executions.job_name` (`audio_cleanup`).
    fn name(&self) -> &str;

    /// Human name (`Audio Cleanup`).
    fn display_name(&self) -> &str;

    /// The cron expression used when the configuration does not override it.
    fn default_schedule(&self) -> &str;

    /// Why the job cannot run in this configuration (missing credentials), if so.
    fn disabled_reason(&self) -> Option<String> {
        None
    }

    /// The counters named in the completion log line, in order; empty means all of them.
    fn summary_keys(&self) -> &[&'static str] {
        &[]
    }

    /// Whether [`JobContext::dry_run`] is honoured. A job that cannot report without
    /// changing anything says `false`, and dry runs of it are refused.
    fn supports_dry_run(&self) -> bool {
        false
    }

    /// True when the job's own configuration makes every run a dry run: each run is then
    /// recorded as one (`dry_run`), whoever started it. Needs [`Job::supports_dry_run`].
    fn always_dry_run(&self) -> bool {
        false
    }

    /// Does the work. Long jobs call [`JobContext::report_progress`] as batches complete
    /// and stop early when [`JobContext::is_cancelled`].
    async fn run(&self, ctx: &JobContext) -> Result<Stats, JobError>;

    /// How much work waits for the job now (rows a run would pick up), if the job can
    /// tell. Called on a timer, never per request, so it may read the database; it must
    /// stay cheap however large the tables grow (count up to a cap, or estimate).
    async fn backlog(&self) -> Result<Option<Backlog>, JobError> {
        Ok(None)
    }
}

/// Work waiting for a job, as [`Job::backlog`] measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Backlog {
    /// Items waiting, up to the job's counting cap.
    pub count: u64,
    /// True when counting stopped at the cap: at least `count` items wait.
    pub capped: bool,
}

impl Backlog {
    /// A count of `seen` items made with `LIMIT cap + 1`: more than `cap` reads as
    /// "`cap` or more".
    pub fn bounded(seen: u64, cap: u64) -> Self {
        Self {
            count: seen.min(cap),
            capped: seen > cap,
        }
    }
}

/// How a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// A cron slot, on time.
    Schedule,
    /// A cron slot missed while no server was up, run late once.
    CatchUp,
    /// `run-job` or the run-now API.
    Manual,
}

impl Trigger {
    /// The value stored in `job_executions.trigger`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch_up",
            Trigger::Manual => "manual",
        }
    }

    /// Reads a stored value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "schedule" => Some(Trigger::Schedule),
            "catch_up" => Some(Trigger::CatchUp),
            "manual" => Some(Trigger::Manual),
            _ => None,
        }
    }
}

/// What a running job is handed besides its own dependencies.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The execution row this run is recorded in.
    pub execution_id: i64,
    /// How the run was started.
    pub trigger: Trigger,
    /// The cron slot, for scheduled runs.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Report what would be done and change nothing.
    pub dry_run: bool,
    cancel: CancellationToken,
    progress: Arc<watch::Sender<Option<Stats>>>,
}

impl JobContext {
    /// A context for a run; the runner builds these, tests may too.
    pub fn new(execution_id: i64, trigger: Trigger, dry_run: bool) -> Self {
        let (tx, _rx) = watch::channel(None);
        Self {
            execution_id,
            trigger,
            scheduled_for: None,
            dry_run,
            cancel: CancellationToken::new(),
            progress: Arc::new(tx),
        }
    }

    pub(crate) fn with_parts(
        mut self,
        scheduled_for: Option<DateTime<Utc>>,
        cancel: CancellationToken,
    ) -> Self {
        self.scheduled_for = scheduled_for;
        self.cancel = cancel;
        self
    }

    /// Publishes the counters so far; the runner writes them to the running execution
    /// (at most about once a second) so dashboards show live progress.
    pub fn report_progress(&self, stats: &Stats) {
        self.progress.send_replace(Some(stats.clone()));
    }

    /// The last counters reported, if any.
    pub fn last_progress(&self) -> Option<Stats> {
        self.progress.borrow().clone()
    }

    pub(crate) fn subscribe_progress(&self) -> watch::Receiver<Option<Stats>> {
        self.progress.subscribe()
    }

    /// True once the run was timed out or the server is shutting down.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the run is cancelled; for `tokio::select!` around long waits.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }
}

/// Why a run failed: a message for `job_executions.error_message` and the log, and the
/// counters reached before the failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    /// Human-readable reason; never contains secrets.
    pub message: String,
    /// Counters reached before the failure, recorded with it.
    pub stats: Option<Stats>,
}

impl JobError {
    /// A failure with a reason.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            stats: None,
        }
    }

    /// Attaches the counters reached so far.
    pub fn with_stats(mut self, stats: Stats) -> Self {
        self.stats = Some(stats);
        self
    }
}

impl From<String> for JobError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for JobError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}
