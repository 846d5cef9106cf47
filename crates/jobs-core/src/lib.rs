#![doc = include_str!("../README.md")]

// The example job names this crate by its name; its unit test compiles it in here.
#[cfg(test)]
extern crate self as jobs_core;

pub mod capture;
mod clock;
pub mod current;
mod job;
pub mod log;
pub mod pipeline;
/// The README's example job, compiled and run by the pipeline's tests.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../examples/expire_sessions.rs"]
mod readme_example;
mod registry;
mod runner;
mod schedule;
mod scheduler;
mod stats;

pub use clock::{Clock, SystemClock, TokioClock};
pub use job::{Backlog, Job, JobContext, JobError, Trigger};
pub use log::{
    Beat, CancelRequest, Claim, Completion, ExecutionLog, ExecutionRecord, LogError,
    MemoryExecutionLog, NewExecution, Status,
};
pub use registry::{BacklogReading, RegisteredJob, Registry, RunPolicy};
pub use runner::{
    human_duration, retry_delay, RunObserver, RunReport, RunRequest, Runner, RunnerSettings,
    StartError, StartedRun,
};
pub use schedule::{Schedule, ScheduleError};
pub use scheduler::{Scheduler, SchedulerSettings};
pub use stats::Stats;

/// Re-exported so that implementors of the traits need not depend on it themselves.
pub use async_trait::async_trait;
pub use chrono_tz::Tz;
