//! The jobs' own tunables, read with the rest of the configuration (see the table in
//! [`crate::config`]). The settings types live beside the jobs that use them; reading
//! them from the environment happens here, so that every variable is read in one module.

use std::time::Duration;

use super::{ConfigError, Vars};
use crate::jobs::audio_cleanup::{self, AudioCleanupSettings};
use crate::jobs::cost_update::{self, CostUpdateSettings};

impl AudioCleanupSettings {
    /// Reads the tunables; a bad value is an error naming its variable.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let base_backoff_ms = vars.int_in(
            "SUPABASE_BACKOFF_MS",
            audio_cleanup::DEFAULT_BACKOFF_MS,
            0,
            60_000,
        )?;
        let max_backoff_ms = vars.int_in(
            "SUPABASE_MAX_BACKOFF_MS",
            audio_cleanup::DEFAULT_MAX_BACKOFF_MS,
            0,
            600_000,
        )?;
        if max_backoff_ms < base_backoff_ms {
            return Err(ConfigError::new(
                "SUPABASE_MAX_BACKOFF_MS",
                format!("must be ≥ SUPABASE_BACKOFF_MS ({base_backoff_ms}), got {max_backoff_ms}"),
            ));
        }
        Ok(Self {
            batch_size: vars.int_in(
                "AUDIO_CLEANUP_BATCH_SIZE",
                audio_cleanup::DEFAULT_BATCH_SIZE,
                1,
                10_000,
            )?,
            concurrency: vars.int_in(
                "AUDIO_CLEANUP_CONCURRENCY",
                audio_cleanup::DEFAULT_CONCURRENCY,
                1,
                32,
            )?,
            dry_run: flag(vars, "AUDIO_CLEANUP_DRY_RUN", false)?,
            connect_timeout: vars.secs(
                "SUPABASE_CONNECT_TIMEOUT_SECS",
                audio_cleanup::DEFAULT_CONNECT_TIMEOUT_SECS,
                1,
                300,
            )?,
            request_timeout: vars.secs(
                "SUPABASE_REQUEST_TIMEOUT_SECS",
                audio_cleanup::DEFAULT_REQUEST_TIMEOUT_SECS,
                1,
                3_600,
            )?,
            max_attempts: vars.int_in(
                "SUPABASE_MAX_ATTEMPTS",
                audio_cleanup::DEFAULT_MAX_ATTEMPTS,
                1,
                10,
            )?,
            base_backoff: Duration::from_millis(base_backoff_ms),
            max_backoff: Duration::from_millis(max_backoff_ms),
        })
    }
}

impl CostUpdateSettings {
    /// Reads and checks the tunables; an error names the variable.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let requests_per_second = match vars.get("DEEPGRAM_REQUESTS_PER_SECOND") {
            None => None,
            Some(raw) => match raw.parse::<f64>() {
                Ok(rate) if (0.001..=100_000.0).contains(&rate) => Some(rate),
                _ => {
                    return Err(ConfigError::new(
                        "DEEPGRAM_REQUESTS_PER_SECOND",
                        format!("must be a number of requests per second between 0.001 and 100000, got {raw:?}"),
                    ))
                }
            },
        };
        Ok(Self {
            concurrency: vars.int_in(
                "COST_UPDATE_CONCURRENCY",
                cost_update::DEFAULT_CONCURRENCY,
                1,
                256,
            )?,
            batch_size: vars.int_in(
                "COST_UPDATE_BATCH_SIZE",
                cost_update::DEFAULT_BATCH_SIZE,
                1,
                10_000,
            )?,
            max_checks: vars.int_in(
                "COST_UPDATE_MAX_CHECKS",
                cost_update::DEFAULT_MAX_CHECKS,
                1,
                1_000,
            )?,
            max_pending_checks: vars.int_in(
                "COST_UPDATE_MAX_PENDING_CHECKS",
                cost_update::DEFAULT_MAX_PENDING_CHECKS,
                1,
                10_000,
            )?,
            max_consecutive_errors: vars.int_in(
                "COST_UPDATE_MAX_CONSECUTIVE_ERRORS",
                cost_update::DEFAULT_MAX_CONSECUTIVE_ERRORS,
                1,
                1_000_000,
            )?,
            requests_per_second,
            request_timeout: vars.secs(
                "DEEPGRAM_REQUEST_TIMEOUT_SECS",
                cost_update::DEFAULT_REQUEST_TIMEOUT_SECS,
                1,
                600,
            )?,
            max_attempts: vars.int_in(
                "DEEPGRAM_MAX_ATTEMPTS",
                cost_update::DEFAULT_MAX_ATTEMPTS,
                1,
                10,
            )?,
            backoff: Duration::from_millis(vars.int_in(
                "DEEPGRAM_BACKOFF_MS",
                cost_update::DEFAULT_BACKOFF_MS,
                0,
                60_000,
            )?),
        })
    }
}

/// A yes/no variable: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
fn flag(vars: &Vars, name: &str, default: bool) -> Result<bool, ConfigError> {
    match vars.get(name) {
        None => Ok(default),
        Some(raw) => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::new(
                name,
                format!("must be true or false, got {raw:?}"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<AudioCleanupSettings, ConfigError> {
        AudioCleanupSettings::from_vars(&Vars::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults_need_no_configuration() {
        assert_eq!(settings(&[]).unwrap(), AudioCleanupSettings::default());
        let defaults = AudioCleanupSettings::default();
        assert_eq!(defaults.batch_size, 1000);
        assert_eq!(defaults.concurrency, 4);
        assert!(!defaults.dry_run);
    }

    #[test]
    fn tunables_are_read() {
        let s = settings(&[
            ("AUDIO_CLEANUP_BATCH_SIZE", "250"),
            ("AUDIO_CLEANUP_CONCURRENCY", "8"),
            ("AUDIO_CLEANUP_DRY_RUN", "TRUE"),
            ("SUPABASE_MAX_ATTEMPTS", "2"),
            ("SUPABASE_BACKOFF_MS", "1"),
            ("SUPABASE_MAX_BACKOFF_MS", "5"),
            ("SUPABASE_REQUEST_TIMEOUT_SECS", "10"),
        ])
        .unwrap();
        assert_eq!((s.batch_size, s.concurrency, s.dry_run), (250, 8, true));
        assert_eq!(s.max_attempts, 2);
        assert_eq!(s.base_backoff, Duration::from_millis(1));
        assert_eq!(s.max_backoff, Duration::from_millis(5));
        assert_eq!(s.request_timeout, Duration::from_secs(10));
        assert!(
            !settings(&[("AUDIO_CLEANUP_DRY_RUN", "off")])
                .unwrap()
                .dry_run
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (variable, value) in [
            ("AUDIO_CLEANUP_BATCH_SIZE", "0"),
            ("AUDIO_CLEANUP_BATCH_SIZE", "10001"),
            ("AUDIO_CLEANUP_CONCURRENCY", "many"),
            ("AUDIO_CLEANUP_DRY_RUN", "maybe"),
            ("SUPABASE_MAX_ATTEMPTS", "0"),
            ("SUPABASE_CONNECT_TIMEOUT_SECS", "0"),
            ("SUPABASE_REQUEST_TIMEOUT_SECS", "-1"),
            ("SUPABASE_BACKOFF_MS", "1.5"),
        ] {
            let e = settings(&[(variable, value)]).unwrap_err();
            assert_eq!(e.variable, variable, "{e}");
        }
        let e = settings(&[
            ("SUPABASE_BACKOFF_MS", "100"),
            ("SUPABASE_MAX_BACKOFF_MS", "10"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "SUPABASE_MAX_BACKOFF_MS");
    }

    #[test]
    fn defaults_match_the_documentation_and_bad_values_name_their_variable() {
        let settings = CostUpdateSettings::from_vars(&Vars::default()).expect("defaults");
        assert_eq!(settings, CostUpdateSettings::default());
        assert_eq!(settings.concurrency, 8);
        assert_eq!(settings.batch_size, 500);
        assert_eq!(settings.max_checks, 5);
        assert!(settings.client_config().validate().is_ok());
        for (name, value) in [
            ("COST_UPDATE_CONCURRENCY", "0"),
            ("COST_UPDATE_CONCURRENCY", "many"),
            ("COST_UPDATE_BATCH_SIZE", "0"),
            ("COST_UPDATE_BATCH_SIZE", "100000"),
            ("COST_UPDATE_MAX_CHECKS", "0"),
            ("COST_UPDATE_MAX_PENDING_CHECKS", "-1"),
            ("COST_UPDATE_MAX_CONSECUTIVE_ERRORS", "0"),
            ("DEEPGRAM_REQUESTS_PER_SECOND", "0"),
            ("DEEPGRAM_REQUESTS_PER_SECOND", "-3"),
            ("DEEPGRAM_REQUESTS_PER_SECOND", "NaN"),
            ("DEEPGRAM_REQUESTS_PER_SECOND", "fast"),
            ("DEEPGRAM_REQUEST_TIMEOUT_SECS", "0"),
            ("DEEPGRAM_MAX_ATTEMPTS", "0"),
            ("DEEPGRAM_BACKOFF_MS", "-5"),
        ] {
            let error =
                CostUpdateSettings::from_vars(&Vars::from_pairs([(name, value)])).expect_err(value);
            assert_eq!(error.variable, name, "{error}");
        }
        let rate = CostUpdateSettings::from_vars(&Vars::from_pairs([(
            "DEEPGRAM_REQUESTS_PER_SECOND",
            "2.5",
        )]))
        .expect("a rate");
        assert_eq!(rate.requests_per_second, Some(2.5));
    }
}
