//! `cost_update`: stores each transcription's real cost from the Deepgram Management API.

use jobs_core::{async_trait, Job, JobContext, JobError, Stats};

use crate::config::{Config, ConfigError};

/// The nightly cost update.
pub struct CostUpdateJob {
    #[allow(dead_code)]
    pool: db::Pool,
    disabled: Option<String>,
}

impl CostUpdateJob {
    /// Builds the job from the configuration.
    pub fn from_config(config: &Config, pool: db::Pool) -> Result<Self, ConfigError> {
        let disabled = config
            .deepgram
            .api_key
            .is_none()
            .then(|| "DEEPGRAM_API_KEY is not set".to_owned());
        Ok(Self { pool, disabled })
    }
}

#[async_trait]
impl Job for CostUpdateJob {
    fn name(&self) -> &str {
        "cost_update"
    }
    fn display_name(&self) -> &str {
        "Cost Update"
    }
    fn default_schedule(&self) -> &str {
        "0 3 * * *"
    }
    fn disabled_reason(&self) -> Option<String> {
        self.disabled.clone()
    }
    fn summary_keys(&self) -> &[&'static str] {
        &["updated", "unchanged", "skipped", "failed"]
    }
    async fn run(&self, _ctx: &JobContext) -> Result<Stats, JobError> {
        Err(JobError::new(
            "cost_update is not implemented in this build",
        ))
    }
}
