//! The set of jobs a server knows, each with its schedule and run policy.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{Backlog, Job, JobError, Schedule};

/// How runs of a job are bounded and retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPolicy {
    /// A run still going after this long is cancelled and recorded as failed.
    pub timeout: Option<Duration>,
    /// Tries per cron slot (1 = no retry). Manual runs are tried once.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one, with jitter.
    pub retry_base_delay: Duration,
}

impl Default for RunPolicy {
    fn default() -> Self {
        Self {
            timeout: Some(Duration::from_secs(2 * 60 * 60)),
            max_attempts: 3,
            retry_base_delay: Duration::from_secs(60),
        }
    }
}

/// A job with its effective schedule, policy and switch.
pub struct RegisteredJob {
    /// The job itself.
    pub job: Arc<dyn Job>,
    /// When it runs.
    pub schedule: Schedule,
    /// Timeout and retries.
    pub policy: RunPolicy,
    /// Set when the configuration switched the job off.
    pub paused: Option<String>,
    /// The latest [`Job::backlog`] reading, kept so that requests never measure it.
    backlog: RwLock<Option<BacklogReading>>,
}

/// A job's backlog and when it was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogReading {
    /// What the job reported.
    pub backlog: Backlog,
    /// When.
    pub measured_at: DateTime<Utc>,
}

impl std::fmt::Debug for RegisteredJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredJob")
            .field("name", &self.name())
            .field("schedule", &self.schedule.expression())
            .field("policy", &self.policy)
            .field("disabled", &self.disabled_reason())
            .finish()
    }
}

impl RegisteredJob {
    /// A job on a schedule with the default policy.
    pub fn new(job: impl Job, schedule: Schedule) -> Self {
        Self {
            job: Arc::new(job),
            schedule,
            policy: RunPolicy::default(),
            paused: None,
            backlog: RwLock::new(None),
        }
    }

    /// Replaces the run policy.
    pub fn with_policy(mut self, policy: RunPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Switches the job off with a reason.
    pub fn paused(mut self, reason: impl Into<String>) -> Self {
        self.paused = Some(reason.into());
        self
    }

    /// The job's stable name.
    pub fn name(&self) -> &str {
        self.job.name()
    }

    /// Why the job does not run: paused by configuration, or missing what it needs.
    pub fn disabled_reason(&self) -> Option<String> {
        self.paused.clone().or_else(|| self.job.disabled_reason())
    }

    /// True when the job runs on its schedule and on request.
    pub fn is_enabled(&self) -> bool {
        self.disabled_reason().is_none()
    }

    /// The latest backlog reading, if the job reports one and it was measured.
    pub fn backlog(&self) -> Option<BacklogReading> {
        *self.backlog.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Measures the backlog now and keeps the reading. On an error the previous reading
    /// stays (its `measured_at` shows its age).
    pub async fn refresh_backlog(&self) -> Result<Option<BacklogReading>, JobError> {
        let Some(backlog) = self.job.backlog().await? else {
            return Ok(None);
        };
        let reading = BacklogReading {
            backlog,
            measured_at: Utc::now(),
        };
        *self.backlog.write().unwrap_or_else(PoisonError::into_inner) = Some(reading);
        Ok(Some(reading))
    }
}

/// The jobs of one server, in registration order.
#[derive(Debug, Default)]
pub struct Registry {
    jobs: Vec<Arc<RegisteredJob>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a job. Names must be unique.
    ///
    /// # Panics
    /// When a job of the same name is already registered: that is a programming error in
    /// the one place that registers jobs, caught by its first test.
    pub fn register(&mut self, job: RegisteredJob) -> &mut Self {
        assert!(
            self.get(job.name()).is_none(),
            "job {} registered twice",
            job.name()
        );
        self.jobs.push(Arc::new(job));
        self
    }

    /// The job of that name.
    pub fn get(&self, name: &str) -> Option<Arc<RegisteredJob>> {
        self.jobs.iter().find(|j| j.name() == name).cloned()
    }

    /// All jobs in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<RegisteredJob>> {
        self.jobs.iter()
    }

    /// The names, for error messages ("known jobs: …").
    pub fn names(&self) -> Vec<&str> {
        self.jobs.iter().map(|j| j.name()).collect()
    }
}
