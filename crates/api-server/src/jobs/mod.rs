//! The jobs this server runs, and the one place that registers them.
//!
//! Adding a job: write a type implementing [`jobs_core::Job`] in a file of its own here,
//! then add one `register(…)` line to [`build_registry`]. A job that works through a
//! backlog implements [`jobs_core::pipeline::Pipeline`] (what a page is, what to do with
//! one item, what to write for a batch) and hands it to [`jobs_core::pipeline::run`], as
//! both jobs here do; `crates/jobs-core/examples/expire_sessions.rs` is a complete one.

pub mod audio_cleanup;
pub mod cost_update;

use jobs_core::{Job, RegisteredJob, Registry, RunPolicy};

use crate::config::{Config, ConfigError};

pub use audio_cleanup::AudioCleanupJob;
pub use cost_update::CostUpdateJob;

/// Every job, with its schedule, policy and switch from the configuration.
pub fn build_registry(config: &Config, pool: &db::Pool) -> Result<Registry, ConfigError> {
    let mut registry = Registry::new();
    register(
        &mut registry,
        config,
        AudioCleanupJob::from_config(config, pool.clone())?,
    )?;
    register(
        &mut registry,
        config,
        CostUpdateJob::from_config(config, pool.clone())?,
    )?;

    for name in &config.scheduling.disabled_jobs {
        if registry.get(name).is_none() {
            return Err(ConfigError::new(
                "DISABLED_JOBS",
                format!(
                    "names an unknown job {name:?} (known jobs: {})",
                    registry.names().join(", ")
                ),
            ));
        }
    }
    Ok(registry)
}

fn register(registry: &mut Registry, config: &Config, job: impl Job) -> Result<(), ConfigError> {
    let schedule = config.schedule_for(job.name(), job.default_schedule())?;
    let policy = RunPolicy {
        timeout: Some(config.timeout_for(job.name())?),
        max_attempts: config.scheduling.max_attempts,
        retry_base_delay: config.scheduling.retry_delay,
    };
    let paused = config
        .scheduling
        .disabled_jobs
        .iter()
        .any(|n| n == job.name());
    let mut entry = RegisteredJob::new(job, schedule).with_policy(policy);
    if paused {
        entry = entry.paused("paused by DISABLED_JOBS");
    }
    registry.register(entry);
    Ok(())
}

/// Fails the run before it does anything when the database role cannot update `columns`
/// of `transcriptions` on every row (a missing grant, or row-level security): found
/// later, the work done outside (audio deleted, costs looked up) could not be recorded.
async fn check_transcriptions_access(
    pool: &db::Pool,
    columns: &[&str],
) -> Result<(), jobs_core::JobError> {
    let problem = async {
        let mut conn = pool.get().await.map_err(db::DbError::from)?;
        db::access::transcriptions_write_problem(&mut conn, columns).await
    }
    .await
    .map_err(|e| {
        jobs_core::JobError::new(format!(
            "database error while checking the rights on transcriptions: {e}"
        ))
    })?;
    match problem {
        Some(problem) => Err(jobs_core::JobError::new(problem)),
        None => Ok(()),
    }
}
