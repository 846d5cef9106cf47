//! `audio_cleanup`: deletes from Supabase Storage the audio of transcriptions older than
//! the retention period, and marks each row whose file is gone.

use jobs_core::{async_trait, Job, JobContext, JobError, Stats};

use crate::config::{Config, ConfigError};

/// The nightly audio clean-up.
pub struct AudioCleanupJob {
    #[allow(dead_code)]
    pool: db::Pool,
    disabled: Option<String>,
}

impl AudioCleanupJob {
    /// Builds the job from the configuration.
    pub fn from_config(config: &Config, pool: db::Pool) -> Result<Self, ConfigError> {
        let disabled = match (&config.supabase.url, &config.supabase.service_role_key) {
            (None, _) => Some("SUPABASE_URL is not set".to_owned()),
            (_, None) => Some("SUPABASE_SERVICE_ROLE_KEY is not set".to_owned()),
            _ => None,
        };
        Ok(Self { pool, disabled })
    }
}

#[async_trait]
impl Job for AudioCleanupJob {
    fn name(&self) -> &str {
        "audio_cleanup"
    }
    fn display_name(&self) -> &str {
        "Audio Cleanup"
    }
    fn default_schedule(&self) -> &str {
        "0 2 * * *"
    }
    fn disabled_reason(&self) -> Option<String> {
        self.disabled.clone()
    }
    fn summary_keys(&self) -> &[&'static str] {
        &["deleted", "failed"]
    }
    async fn run(&self, _ctx: &JobContext) -> Result<Stats, JobError> {
        Err(JobError::new(
            "audio_cleanup is not implemented in this build",
        ))
    }
}
