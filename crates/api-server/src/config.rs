//! The server's configuration, read once from the environment (and a `.env` file in the
//! working directory). This module is the only place that reads a variable: the client
//! crates take their URL and key as arguments, the jobs' settings are read in
//! `config/jobs.rs`, the notifier's in `config/notify.rs`, the live view's in
//! `config/live.rs`, and the logger's ([`LogSettings`]) first of all, before the rest.
//! A bad value stops start-up with an error naming the variable.
//!
//! Every variable, one per line. The README's configuration tables list the same
//! variables with the same defaults; a test (`the_readme_lists_every_variable_with_its_default`)
//! compares the two, and another (`the_table_lists_every_variable_the_server_reads`) checks
//! this table against what the code asks for.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | `postgres://postgres:postgres@127.0.0.1:5432/background_jobs` | the database, created when missing; TLS as libpq does it (`sslmode`), `pgbouncer=true` marks a transaction pooler |
//! | `DATABASE_POOL_SIZE` | `10` | connections for the API and the jobs (1–500) |
//! | `DATABASE_LOG_POOL_SIZE` | `2` | connections reserved for the execution log (1–50) |
//! | `DATABASE_STATEMENT_TIMEOUT_SECS` | `60` | `statement_timeout` of pooled connections; `0`: no limit |
//! | `DATABASE_LISTEN_URL` | unset (`DATABASE_URL`) | where the change feed listens; `off` polls the tables |
//! | `LIVE_RESYNC_SECS` | `30` | full re-read of the jobs' state (1–3600) |
//! | `EVENTS_MAX_STREAMS` | `100` | open event streams per server |
//! | `EVENTS_HEARTBEAT_SECS` | `15` | heartbeat comment on an idle event stream (1–300) |
//! | `BIND_ADDR` | `127.0.0.1:8080` (`0.0.0.0:$PORT` when only `PORT` is set) | HTTP listen address |
//! | `PORT` | unset | the port to listen on all interfaces when `BIND_ADDR` is unset |
//! | `ADMIN_TOKEN` | unset | bearer token of `/internal/*`; unset: only a loopback address may be bound |
//! | `VIEWER_TOKEN` | unset | read-only token; needs `ADMIN_TOKEN` and must differ from it |
//! | `METRICS_TOKEN` | unset | token of `/metrics`; unset: `/metrics` is open |
//! | `PUBLIC_URL` | unset | the server's public base URL, for links in notices |
//! | `SMTP_URL` | unset | failure e-mails: `smtp://`, `smtp://…?tls=required` or `smtps://` |
//! | `ALERT_EMAIL_FROM` | unset | sender of failure e-mails (with `SMTP_URL`) |
//! | `ALERT_EMAIL_TO` | unset | comma-separated recipients (with `SMTP_URL`) |
//! | `ALERT_WEBHOOK_URL` | unset | failure webhook (Slack-compatible JSON) |
//! | `ALERT_OVERDUE_FACTOR` | `2` | intervals without a success before a job is overdue (≥ 1.5) |
//! | `ALERT_OVERDUE_CHECK_SECS` | `300` | how often the overdue check runs |
//! | `ALERT_REMINDER_HOURS` | `24` | reminder while a job stays broken; `0`: never |
//! | `ALERT_SEND_TIMEOUT_SECS` | `10` | per-attempt limit of a notice |
//! | `ALERT_SEND_ATTEMPTS` | `3` | attempts per notice |
//! | `ALERT_RETRY_DELAY_MS` | `1000` | first retry delay of a notice, doubled each time |
//! | `DEEPGRAM_API_KEY` | unset | `cost_update`'s key; unset: the job is disabled |
//! | `DEEPGRAM_API_URL` | `https://api.deepgram.com` | Deepgram base URL ([`deepgram_client::DEFAULT_BASE_URL`]) |
//! | `DEEPGRAM_PROJECT_ID` | unset | the project of bare request ids; unset: every project the key sees |
//! | `DEEPGRAM_REQUESTS_PER_SECOND` | unset | optional cap on requests started per second |
//! | `DEEPGRAM_REQUEST_TIMEOUT_SECS` | `30` | one HTTP attempt (1–600; the client's default) |
//! | `DEEPGRAM_MAX_ATTEMPTS` | `4` | attempts per lookup (1–10; the client's default) |
//! | `DEEPGRAM_BACKOFF_MS` | `500` | backoff base (0–60000; the client's default) |
//! | `COST_UPDATE_CONCURRENCY` | `8` | lookups in flight (1–256; the client's default) |
//! | `COST_UPDATE_BATCH_SIZE` | `500` | rows per read and write (1–10000) |
//! | `COST_UPDATE_MAX_CHECKS` | `5` | runs without a price before a row is given up (1–1000) |
//! | `COST_UPDATE_MAX_PENDING_CHECKS` | `30` | the same while Deepgram says "still processing" (1–10000) |
//! | `COST_UPDATE_MAX_CONSECUTIVE_ERRORS` | `50` | failed lookups in a row that fail the run |
//! | `SUPABASE_URL` | unset | `audio_cleanup`'s project URL; unset: the job is disabled |
//! | `SUPABASE_SERVICE_ROLE_KEY` | unset | `audio_cleanup`'s service-role key; unset: the job is disabled |
//! | `SUPABASE_CONNECT_TIMEOUT_SECS` | `5` | Storage connect timeout (1–300; the client's default) |
//! | `SUPABASE_REQUEST_TIMEOUT_SECS` | `60` | Storage request timeout (1–3600; the client's default) |
//! | `SUPABASE_MAX_ATTEMPTS` | `4` | attempts per Storage request (1–10; the client's default) |
//! | `SUPABASE_BACKOFF_MS` | `500` | first retry backoff (0–60000; the client's default) |
//! | `SUPABASE_MAX_BACKOFF_MS` | `30000` | cap on one backoff (≥ `SUPABASE_BACKOFF_MS`; the client's default) |
//! | `AUDIO_RETENTION_DAYS` | `30` | age after which audio is deleted (≥ 1) |
//! | `AUDIO_CLEANUP_BATCH_SIZE` | `1000` | rows per batch: bulk deletes, then one `UPDATE` (1–10000) |
//! | `AUDIO_CLEANUP_CONCURRENCY` | `4` | batches and Storage requests in flight (1–32; the client's default) |
//! | `AUDIO_CLEANUP_DRY_RUN` | `false` | every run only reports what it would delete |
//! | `AUDIO_CLEANUP_SCHEDULE` | `0 2 * * *` | the job's schedule (any job: `<JOB_NAME>_SCHEDULE`) |
//! | `COST_UPDATE_SCHEDULE` | `0 3 * * *` | the job's schedule |
//! | `AUDIO_CLEANUP_TIMEOUT_SECS` | `JOB_TIMEOUT_SECS` | the job's timeout (any job: `<JOB_NAME>_TIMEOUT_SECS`) |
//! | `COST_UPDATE_TIMEOUT_SECS` | `JOB_TIMEOUT_SECS` | the job's timeout |
//! | `JOBS_TIMEZONE` | `UTC` | IANA zone the schedules are read in |
//! | `DISABLED_JOBS` | unset | comma-separated job names to pause |
//! | `JOB_TIMEOUT_SECS` | `7200` | run time after which a run is asked to stop |
//! | `JOB_MAX_ATTEMPTS` | `3` | tries per cron slot (1–20) |
//! | `JOB_RETRY_DELAY_SECS` | `60` | delay before the first retry, doubled each time |
//! | `JOB_LEASE_SECS` | `60` | lease of a running execution |
//! | `JOB_HEARTBEAT_SECS` | `15` | lease renewal, shorter than the lease |
//! | `SCHEDULER_TICK_MS` | `1000` | longest sleep of the cron loop |
//! | `MISFIRE_WINDOW_SECS` | `3600` | how far back a missed slot is caught up |
//! | `SHUTDOWN_GRACE_SECS` | `30` | on SIGTERM, time for running jobs to finish |
//! | `JOB_CANCEL_GRACE_SECS` | `30` | time a run asked to stop has to stop cleanly |
//! | `EXECUTION_RETENTION_DAYS` | `90` | history kept; `0`: forever |
//! | `WORKER_ID` | `<hostname>:<port>` | this server's name in `job_executions.worker_id` |
//! | `BACKLOG_REFRESH_SECS` | `60` | how often each job's backlog is measured |
//! | `LOG_FORMAT` | `text` | `text` or `json` lines |
//! | `RUST_LOG` | `info` | log filter (env_logger syntax) |
//! | `RUST_LOG_STYLE` | `auto` | colours of text lines: `auto`, `always`, `never` |

mod jobs;
mod live;
mod notify;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use job_notify::NotifySettings;
use jobs_core::{Schedule, Tz};
use secrecy::{ExposeSecret, SecretString};

use crate::live::LiveSettings;
use crate::logging::{LogFormat, LOG_FORMAT_VAR};

/// Default database, created on first start when missing.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/background_jobs";
/// Default listen address.
const DEFAULT_BIND_ADDR: &str = "127.0.0.1:8080";
/// Default Deepgram base URL: the client's own.
const DEFAULT_DEEPGRAM_API_URL: &str = deepgram_client::DEFAULT_BASE_URL;
/// Default `RUST_LOG`.
const DEFAULT_LOG_FILTER: &str = "info";
/// Default retention of audio files.
const DEFAULT_AUDIO_RETENTION_DAYS: i64 = 30;
const DEFAULT_POOL_SIZE: usize = 10;
const DEFAULT_LOG_POOL_SIZE: usize = 2;
const DEFAULT_STATEMENT_TIMEOUT_SECS: u64 = 60;
const DEFAULT_CANCEL_GRACE_SECS: u64 = 30;
const DEFAULT_JOB_TIMEOUT_SECS: u64 = 2 * 60 * 60;
const DEFAULT_MAX_ATTEMPTS: u32 = 3;
const DEFAULT_RETRY_DELAY_SECS: u64 = 60;
const DEFAULT_LEASE_SECS: u64 = 60;
const DEFAULT_HEARTBEAT_SECS: u64 = 15;
const DEFAULT_TICK_MS: u64 = 1000;
const DEFAULT_MISFIRE_WINDOW_SECS: u64 = 60 * 60;
const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
const DEFAULT_EXECUTION_RETENTION_DAYS: i32 = 90;

/// A setting that cannot be used, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The variable at fault.
    pub variable: String,
    /// What is wrong with it (never its value when the variable is a secret).
    pub message: String,
}

impl ConfigError {
    /// An error about `variable`.
    pub fn new(variable: &str, message: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            message: message.into(),
        }
    }
}

/// The variables of the `.env` file, if there is one; a line that is not `NAME=value` (or
/// a file that is not UTF-8) is an error naming the file and the line, never its text.
fn dot_env() -> Result<Vec<(String, String)>, ConfigError> {
    const NAME: &str = ".env";
    let iter = match dotenvy::dotenv_iter() {
        Ok(iter) => iter,
        Err(e) if e.not_found() => return Ok(Vec::new()),
        Err(e) => return Err(ConfigError::new(NAME, format!("could not be read: {e}"))),
    };
    let mut pairs = Vec::new();
    for item in iter {
        match item {
            Ok(pair) => pairs.push(pair),
            Err(dotenvy::Error::LineParse(text, _)) => {
                // The file dotenvy read: in the working directory or the nearest parent.
                // It reports the text it could not read (a whole line, or a value), not
                // its number: the first line holding that text is the one.
                let path = std::env::current_dir().ok().and_then(|dir| {
                    dir.ancestors()
                        .map(|d| d.join(NAME))
                        .find(|candidate| candidate.is_file())
                });
                let needle = text.trim();
                let number = path
                    .as_ref()
                    .and_then(|path| std::fs::read_to_string(path).ok())
                    .and_then(|content| {
                        content
                            .lines()
                            .position(|l| l.trim_end() == text.trim_end())
                            .or_else(|| {
                                (!needle.is_empty())
                                    .then(|| content.lines().position(|l| l.contains(needle)))
                                    .flatten()
                            })
                    })
                    .map_or_else(String::new, |n| format!(" (line {})", n + 1));
                let place = path
                    .map(|p| format!(" {}", p.display()))
                    .unwrap_or_default();
                return Err(ConfigError::new(
                    NAME,
                    format!(
                        "file{place} has a line that is not NAME=value{number}; nothing of the file was \
                         used (a value with spaces or '#' needs quotes, and a quote its closing \
                         quote)"
                    ),
                ));
            }
            Err(dotenvy::Error::Io(e)) => {
                return Err(ConfigError::new(
                    NAME,
                    format!("could not be read: {e}; nothing of the file was used"),
                ))
            }
            Err(e) => return Err(ConfigError::new(NAME, format!("could not be read: {e}"))),
        }
    }
    Ok(pairs)
}

/// The environment as read at start-up; empty values count as unset.
#[derive(Clone, Default)]
pub struct Vars {
    values: HashMap<String, String>,
    /// Variables whose value is not UTF-8 text: never read, never shown.
    unreadable: std::sync::Arc<std::collections::BTreeSet<String>>,
    /// The first of those the configuration asked for ([`Vars::check_readable`]).
    unreadable_asked: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// The names asked for: a set variable near one of them is likely misspelled
    /// ([`Vars::lookalikes`]), and a test compares them with the table above.
    asked: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

impl std::fmt::Debug for Vars {
    /// Names only: values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.values.keys().collect();
        names.sort();
        f.debug_tuple("Vars").field(&names).finish()
    }
}

impl Vars {
    /// The process environment, with the variables of a `.env` file (found by `dotenvy`:
    /// the working directory or a parent) that the environment does not set. A `.env` that
    /// cannot be read whole is an error: loading the lines before a typo and dropping the
    /// rest would run with settings nobody chose.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut values = HashMap::new();
        let mut unreadable = std::collections::BTreeSet::new();
        for (name, value) in std::env::vars_os() {
            // Every name this server reads is ASCII; another name is no concern of ours.
            let Ok(name) = name.into_string() else {
                continue;
            };
            match value.into_string() {
                Ok(value) => {
                    values.insert(name, value);
                }
                Err(_) => {
                    unreadable.insert(name);
                }
            }
        }
        for (name, value) in dot_env()? {
            if !values.contains_key(&name) && !unreadable.contains(&name) {
                values.insert(name, value);
            }
        }
        let mut vars = Self::from_map(values);
        vars.unreadable = std::sync::Arc::new(unreadable);
        Ok(vars)
    }

    /// Given pairs; for tests.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::from_map(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    fn from_map(values: HashMap<String, String>) -> Self {
        Self {
            values,
            unreadable: Default::default(),
            unreadable_asked: Default::default(),
            asked: Default::default(),
        }
    }

    /// The trimmed value, `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned());
        if self.unreadable.contains(name) {
            self.unreadable_asked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_or_insert_with(|| name.to_owned());
            return None;
        }
        self.values
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// An error naming the first variable asked for whose value is not UTF-8 text (read
    /// as unset until then). Called once the settings that use these variables are read.
    pub fn check_readable(&self) -> Result<(), ConfigError> {
        let asked = self
            .unreadable_asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match asked {
            Some(name) => Err(ConfigError::new(
                &name,
                "is not valid UTF-8 text (its value is not shown)",
            )),
            None => Ok(()),
        }
    }

    /// Set variables that this service never asked for but whose names are one or two
    /// typing slips (or a case) away from one it did, each with that name: most likely a
    /// misspelled setting, which would otherwise be ignored without a word. Call it once
    /// every setting has been read.
    pub fn lookalikes(&self) -> Vec<(String, String)> {
        let asked = self
            .asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut found: Vec<(String, String)> = self
            .values
            .keys()
            .chain(self.unreadable.iter())
            .filter(|name| name.len() >= 6 && !asked.contains(*name))
            .filter_map(|name| {
                let upper = name.to_ascii_uppercase();
                asked
                    .iter()
                    .map(|known| (strsim::damerau_levenshtein(&upper, known), known))
                    .filter(|(distance, _)| *distance <= 2)
                    .min()
                    .map(|(_, known)| (name.clone(), known.clone()))
            })
            .collect();
        found.sort();
        found
    }

    /// The value or a default.
    pub fn get_or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.get(name).unwrap_or(default)
    }

    /// A secret value: `Debug` prints `[REDACTED]`, reading it takes
    /// [`ExposeSecret::expose_secret`].
    pub fn secret(&self, name: &str) -> Option<SecretString> {
        self.get(name).map(SecretString::from)
    }

    /// A whole number within `min..=max`.
    pub fn int_in<T>(&self, name: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
        T::Err: std::fmt::Display,
    {
        let value = match self.get(name) {
            None => return Ok(default),
            Some(raw) => raw.parse::<T>().map_err(|_| {
                // A whole number too large (or small) for the setting says its range.
                if raw.trim().parse::<i128>().is_ok() {
                    ConfigError::new(name, format!("must be between {min} and {max}, got {raw}"))
                } else {
                    ConfigError::new(name, format!("must be a whole number, got {raw:?}"))
                }
            })?,
        };
        if value < min {
            return Err(ConfigError::new(
                name,
                format!("must be ≥ {min}, got {value}"),
            ));
        }
        if value > max {
            return Err(ConfigError::new(
                name,
                format!("must be ≤ {max}, got {value}"),
            ));
        }
        Ok(value)
    }

    /// Seconds as a duration, within `min..=max` seconds.
    pub fn secs(
        &self,
        name: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<Duration, ConfigError> {
        self.int_in(name, default, min, max)
            .map(Duration::from_secs)
    }

    /// An `http(s)://` URL.
    pub fn url(&self, name: &str) -> Result<Option<url::Url>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => {
                let url = url::Url::parse(raw)
                    .map_err(|e| ConfigError::new(name, format!("is not a valid URL: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(ConfigError::new(
                        name,
                        "must be an http:// or https:// URL with a host",
                    ));
                }
                if url.port() == Some(0) {
                    return Err(ConfigError::new(name, "must not name port 0"));
                }
                Ok(Some(url))
            }
        }
    }

    /// An `http(s)://` URL without a user name or password: for a URL whose requests carry
    /// their credentials another way, or that is shown to people. Its value is not repeated.
    pub fn url_without_credentials(
        &self,
        name: &str,
        why: &str,
    ) -> Result<Option<url::Url>, ConfigError> {
        let url = self.url(name)?;
        if url
            .as_ref()
            .is_some_and(|u| !u.username().is_empty() || u.password().is_some())
        {
            return Err(ConfigError::new(
                name,
                format!("must not carry a user name or password ({why})"),
            ));
        }
        Ok(url)
    }
}

/// How the process logs; read before the rest of the configuration, so that its errors
/// are logged in the chosen shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `LOG_FORMAT`.
    pub format: LogFormat,
    /// `RUST_LOG`: env_logger's filter syntax.
    pub filter: String,
    /// `RUST_LOG_STYLE`: colours of text lines (`auto`, `always`, `never`); `None` is `auto`.
    pub style: Option<String>,
}

impl LogSettings {
    /// Reads `LOG_FORMAT`, `RUST_LOG` and `RUST_LOG_STYLE`.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let style = vars.get("RUST_LOG_STYLE").map(str::to_owned);
        if let Some(other) = style
            .as_deref()
            .filter(|s| !matches!(*s, "auto" | "always" | "never"))
        {
            return Err(ConfigError::new(
                "RUST_LOG_STYLE",
                format!("must be auto, always or never, got {other:?}"),
            ));
        }
        Ok(Self {
            format: LogFormat::parse(vars.get(LOG_FORMAT_VAR))?,
            filter: vars.get_or("RUST_LOG", DEFAULT_LOG_FILTER).to_owned(),
            style,
        })
    }
}

/// Deepgram settings (the `cost_update` job's client).
#[derive(Debug, Clone)]
pub struct DeepgramConfig {
    /// `DEEPGRAM_API_KEY`.
    pub api_key: Option<SecretString>,
    /// `DEEPGRAM_API_URL`.
    pub api_url: url::Url,
    /// `DEEPGRAM_PROJECT_ID`.
    pub project_id: Option<String>,
}

/// Supabase settings (the `audio_cleanup` job's client).
#[derive(Debug, Clone)]
pub struct SupabaseConfig {
    /// `SUPABASE_URL`.
    pub url: Option<url::Url>,
    /// `SUPABASE_SERVICE_ROLE_KEY`.
    pub service_role_key: Option<SecretString>,
}

/// Scheduler and runner settings.
#[derive(Debug, Clone)]
pub struct SchedulingConfig {
    /// `JOBS_TIMEZONE`.
    pub timezone: Tz,
    /// `DISABLED_JOBS`.
    pub disabled_jobs: Vec<String>,
    /// `JOB_TIMEOUT_SECS`.
    pub default_timeout: Duration,
    /// `JOB_MAX_ATTEMPTS`.
    pub max_attempts: u32,
    /// `JOB_RETRY_DELAY_SECS`.
    pub retry_delay: Duration,
    /// `JOB_LEASE_SECS`.
    pub lease: Duration,
    /// `JOB_HEARTBEAT_SECS`.
    pub heartbeat: Duration,
    /// `SCHEDULER_TICK_MS`.
    pub tick: Duration,
    /// `MISFIRE_WINDOW_SECS`.
    pub misfire_window: Duration,
    /// `SHUTDOWN_GRACE_SECS`.
    pub shutdown_grace: Duration,
    /// `JOB_CANCEL_GRACE_SECS`: how long a run asked to stop may take to stop cleanly.
    pub cancel_grace: Duration,
    /// `EXECUTION_RETENTION_DAYS`; `None` keeps the history forever.
    pub execution_retention_days: Option<i32>,
}

/// Everything the server reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL` (secret: it may hold a password).
    pub database_url: SecretString,
    /// `DATABASE_POOL_SIZE`.
    pub pool_size: usize,
    /// `DATABASE_LOG_POOL_SIZE`: connections reserved for the execution log.
    pub log_pool_size: usize,
    /// `DATABASE_STATEMENT_TIMEOUT_SECS`; zero means no limit.
    pub statement_timeout: Duration,
    /// `BIND_ADDR` / `PORT`.
    pub bind_addr: SocketAddr,
    /// `ADMIN_TOKEN`.
    pub admin_token: Option<SecretString>,
    /// `VIEWER_TOKEN`: reads every `GET` route, may start nothing.
    pub viewer_token: Option<SecretString>,
    /// `METRICS_TOKEN`: when set, `/metrics` wants it (or the admin or viewer token).
    pub metrics_token: Option<SecretString>,
    /// `PUBLIC_URL`.
    pub public_url: Option<url::Url>,
    /// `WORKER_ID`.
    pub worker_id: String,
    /// `BACKLOG_REFRESH_SECS`: how often each job's backlog is measured.
    pub backlog_refresh: Duration,
    /// `AUDIO_RETENTION_DAYS`.
    pub audio_retention_days: i64,
    /// Deepgram.
    pub deepgram: DeepgramConfig,
    /// Supabase Storage.
    pub supabase: SupabaseConfig,
    /// Scheduling.
    pub scheduling: SchedulingConfig,
    /// Failure notifications: `SMTP_URL`, `ALERT_EMAIL_FROM`, `ALERT_EMAIL_TO`,
    /// `ALERT_WEBHOOK_URL` and the `ALERT_*` tunables (see [`NotifySettings`]).
    pub notify: NotifySettings,
    /// The live view and event streams: `DATABASE_LISTEN_URL`, `LIVE_RESYNC_SECS`,
    /// `EVENTS_MAX_STREAMS`, `EVENTS_HEARTBEAT_SECS` (see [`LiveSettings`]).
    pub live: LiveSettings,
    /// All variables, for job settings and `<JOB_NAME>_SCHEDULE` overrides.
    pub vars: Vars,
}

impl Config {
    /// Reads the given variables.
    pub fn from_vars(vars: Vars) -> Result<Self, ConfigError> {
        let database_url = vars.get_or("DATABASE_URL", DEFAULT_DATABASE_URL).to_owned();
        db::ConnectTarget::parse(&database_url)
            .map_err(|e| ConfigError::new("DATABASE_URL", e.to_string()))?;

        let bind_addr = match (vars.get("BIND_ADDR"), vars.get("PORT")) {
            (Some(addr), _) => addr.parse::<SocketAddr>().map_err(|_| {
                ConfigError::new(
                    "BIND_ADDR",
                    format!("must be an address with a port such as 127.0.0.1:8080, got {addr:?}"),
                )
            })?,
            (None, Some(_)) => {
                let port: u16 = vars.int_in("PORT", 8080, 1, u16::MAX)?;
                SocketAddr::from(([0, 0, 0, 0], port))
            }
            (None, None) => DEFAULT_BIND_ADDR.parse().expect("valid default address"),
        };
        let admin_token = vars.secret("ADMIN_TOKEN");
        let viewer_token = vars.secret("VIEWER_TOKEN");
        let metrics_token = vars.secret("METRICS_TOKEN");
        for (name, token) in [
            ("ADMIN_TOKEN", &admin_token),
            ("VIEWER_TOKEN", &viewer_token),
            ("METRICS_TOKEN", &metrics_token),
        ] {
            // Sent as `Authorization: Bearer <token>`: a header value is visible ASCII, so
            // any other token could never be presented. (The value is not repeated.)
            if token
                .as_ref()
                .is_some_and(|t| !t.expose_secret().bytes().all(|b| b.is_ascii_graphic()))
            {
                return Err(ConfigError::new(
                    name,
                    "must be visible ASCII without spaces: no client could send it in an \
                     Authorization header otherwise",
                ));
            }
        }
        if viewer_token.is_some() && admin_token.is_none() {
            return Err(ConfigError::new(
                "VIEWER_TOKEN",
                "needs ADMIN_TOKEN: without it every loopback client is already admin",
            ));
        }
        let exposed =
            |token: &Option<SecretString>| token.as_ref().map(|t| t.expose_secret().to_owned());
        if viewer_token.is_some() && exposed(&viewer_token) == exposed(&admin_token) {
            return Err(ConfigError::new(
                "VIEWER_TOKEN",
                "must differ from ADMIN_TOKEN, or a viewer could do everything",
            ));
        }

        let deepgram = DeepgramConfig {
            api_key: vars.secret("DEEPGRAM_API_KEY"),
            api_url: vars
                .url_without_credentials(
                    "DEEPGRAM_API_URL",
                    "they would replace the DEEPGRAM_API_KEY sent with every request",
                )?
                .unwrap_or_else(|| {
                    url::Url::parse(DEFAULT_DEEPGRAM_API_URL).expect("valid default URL")
                }),
            project_id: vars.get("DEEPGRAM_PROJECT_ID").map(str::to_owned),
        };
        let supabase = SupabaseConfig {
            url: vars.url("SUPABASE_URL")?,
            service_role_key: vars.secret("SUPABASE_SERVICE_ROLE_KEY"),
        };

        let timezone = match vars.get("JOBS_TIMEZONE") {
            None => Tz::UTC,
            Some(raw) => raw.parse::<Tz>().map_err(|_| {
                ConfigError::new(
                    "JOBS_TIMEZONE",
                    format!("{raw:?} is not an IANA time zone such as UTC or Europe/Berlin"),
                )
            })?,
        };
        let scheduling = SchedulingConfig {
            timezone,
            disabled_jobs: vars
                .get("DISABLED_JOBS")
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            default_timeout: vars.secs(
                "JOB_TIMEOUT_SECS",
                DEFAULT_JOB_TIMEOUT_SECS,
                1,
                7 * 86_400,
            )?,
            max_attempts: vars.int_in("JOB_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, 1, 20)?,
            retry_delay: vars.secs("JOB_RETRY_DELAY_SECS", DEFAULT_RETRY_DELAY_SECS, 0, 86_400)?,
            lease: vars.secs("JOB_LEASE_SECS", DEFAULT_LEASE_SECS, 1, 3_600)?,
            heartbeat: vars.secs("JOB_HEARTBEAT_SECS", DEFAULT_HEARTBEAT_SECS, 1, 3_600)?,
            tick: Duration::from_millis(vars.int_in(
                "SCHEDULER_TICK_MS",
                DEFAULT_TICK_MS,
                10,
                60_000,
            )?),
            misfire_window: vars.secs(
                "MISFIRE_WINDOW_SECS",
                DEFAULT_MISFIRE_WINDOW_SECS,
                0,
                7 * 86_400,
            )?,
            shutdown_grace: vars.secs(
                "SHUTDOWN_GRACE_SECS",
                DEFAULT_SHUTDOWN_GRACE_SECS,
                0,
                3_600,
            )?,
            cancel_grace: vars.secs(
                "JOB_CANCEL_GRACE_SECS",
                DEFAULT_CANCEL_GRACE_SECS,
                0,
                3_600,
            )?,
            execution_retention_days: Some(vars.int_in(
                "EXECUTION_RETENTION_DAYS",
                DEFAULT_EXECUTION_RETENTION_DAYS,
                0,
                36_500,
            )?)
            .filter(|days| *days > 0),
        };
        if scheduling.heartbeat >= scheduling.lease {
            return Err(ConfigError::new(
                "JOB_HEARTBEAT_SECS",
                format!(
                    "must be shorter than JOB_LEASE_SECS ({}s), got {}s",
                    scheduling.lease.as_secs(),
                    scheduling.heartbeat.as_secs()
                ),
            ));
        }
        let worker_id = match vars.get("WORKER_ID") {
            // It goes into VARCHAR(255) columns and into log lines.
            Some(id) if id.chars().count() > 255 => {
                return Err(ConfigError::new(
                    "WORKER_ID",
                    format!("must be at most 255 characters, got {}", id.chars().count()),
                ))
            }
            Some(id) if id.chars().any(char::is_control) => {
                return Err(ConfigError::new(
                    "WORKER_ID",
                    "must not contain control characters",
                ))
            }
            Some(id) => id.to_owned(),
            None => format!(
                "{}:{}",
                gethostname::gethostname().to_string_lossy(),
                bind_addr.port()
            ),
        };

        let config = Self {
            database_url: SecretString::from(database_url),
            pool_size: vars.int_in("DATABASE_POOL_SIZE", DEFAULT_POOL_SIZE, 1, 500)?,
            log_pool_size: vars.int_in("DATABASE_LOG_POOL_SIZE", DEFAULT_LOG_POOL_SIZE, 1, 50)?,
            statement_timeout: vars.secs(
                "DATABASE_STATEMENT_TIMEOUT_SECS",
                DEFAULT_STATEMENT_TIMEOUT_SECS,
                0,
                86_400,
            )?,
            bind_addr,
            admin_token,
            viewer_token,
            metrics_token,
            public_url: vars
                .url_without_credentials("PUBLIC_URL", "it is shown in every notice's links")?,
            worker_id,
            backlog_refresh: vars.secs(
                "BACKLOG_REFRESH_SECS",
                crate::backlog::DEFAULT_REFRESH_SECS,
                1,
                86_400,
            )?,
            audio_retention_days: vars.int_in(
                "AUDIO_RETENTION_DAYS",
                DEFAULT_AUDIO_RETENTION_DAYS,
                1,
                36_500,
            )?,
            deepgram,
            supabase,
            scheduling,
            notify: notify::settings(&vars)?,
            live: live::live_settings(&vars)?,
            vars,
        };
        config.vars.check_readable()?;
        Ok(config)
    }

    /// The schedule of a job: `<JOB_NAME>_SCHEDULE` when set, else the job's default.
    pub fn schedule_for(&self, job_name: &str, default: &str) -> Result<Schedule, ConfigError> {
        let variable = format!("{}_SCHEDULE", job_name.to_ascii_uppercase());
        let expression = self.vars.get_or(&variable, default);
        Schedule::parse_in(expression, self.scheduling.timezone)
            .map_err(|e| ConfigError::new(&variable, e.to_string()))
    }

    /// The timeout of a job: `<JOB_NAME>_TIMEOUT_SECS` when set, else `JOB_TIMEOUT_SECS`.
    pub fn timeout_for(&self, job_name: &str) -> Result<Duration, ConfigError> {
        let variable = format!("{}_TIMEOUT_SECS", job_name.to_ascii_uppercase());
        self.vars.secs(
            &variable,
            self.scheduling.default_timeout.as_secs(),
            1,
            7 * 86_400,
        )
    }

    /// True when `ADMIN_TOKEN` is set but short enough to guess; `serve` warns about it.
    pub fn admin_token_is_weak(&self) -> bool {
        self.admin_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().chars().count() < 16)
    }

    /// Refuses to expose `/internal/*` without a token on a non-loopback address.
    pub fn check_bind_security(&self) -> Result<(), ConfigError> {
        if self.admin_token.is_none() && !self.bind_addr.ip().is_loopback() {
            return Err(ConfigError::new(
                "ADMIN_TOKEN",
                format!(
                    "must be set to listen on the non-loopback address {} (the /internal API would be open to the network)",
                    self.bind_addr
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(Vars::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults_need_no_configuration() {
        let c = config(&[]).unwrap();
        assert_eq!(c.database_url.expose_secret(), DEFAULT_DATABASE_URL);
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.audio_retention_days, 30);
        assert_eq!(c.deepgram.api_url.as_str(), "https://api.deepgram.com/");
        assert!(c.check_bind_security().is_ok());
        assert_eq!(
            c.schedule_for("audio_cleanup", "0 2 * * *")
                .unwrap()
                .expression(),
            "0 2 * * *"
        );
    }

    #[test]
    fn port_alone_listens_on_all_interfaces() {
        let c = config(&[("PORT", "9000"), ("ADMIN_TOKEN", "0123456789abcdef")]).unwrap();
        assert_eq!(c.bind_addr.to_string(), "0.0.0.0:9000");
        let c = config(&[("PORT", "9000"), ("BIND_ADDR", "127.0.0.1:7000")]).unwrap();
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:7000");
    }

    #[test]
    fn a_public_address_without_a_token_is_refused() {
        let c = config(&[("BIND_ADDR", "0.0.0.0:8080")]).unwrap();
        let e = c.check_bind_security().unwrap_err();
        assert_eq!(e.variable, "ADMIN_TOKEN");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("AUDIO_RETENTION_DAYS", "0")], "AUDIO_RETENTION_DAYS"),
            (&[("AUDIO_RETENTION_DAYS", "ten")], "AUDIO_RETENTION_DAYS"),
            (&[("BIND_ADDR", "localhost")], "BIND_ADDR"),
            (&[("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
            (&[("DEEPGRAM_API_URL", "not a url")], "DEEPGRAM_API_URL"),
            (
                &[(
                    "DEEPGRAM_API_URL",
                    "http://dguser:DgUrlPwSecret55@127.0.0.1:1",
                )],
                "DEEPGRAM_API_URL",
            ),
            (
                &[("DEEPGRAM_API_URL", "http://127.0.0.1:0")],
                "DEEPGRAM_API_URL",
            ),
            (
                &[("PUBLIC_URL", "https://ops:pw@jobs.example.com")],
                "PUBLIC_URL",
            ),
            (&[("WORKER_ID", &"w".repeat(256))], "WORKER_ID"),
            (&[("WORKER_ID", "web-1\nforged line")], "WORKER_ID"),
            (&[("ADMIN_TOKEN", "jetón-0123456789abcdef")], "ADMIN_TOKEN"),
            (
                &[
                    ("ADMIN_TOKEN", "admin-0123456789abcdef"),
                    ("VIEWER_TOKEN", "viewer 0123456789abcdef"),
                ],
                "VIEWER_TOKEN",
            ),
            (&[("SUPABASE_URL", "ftp://x.supabase.co")], "SUPABASE_URL"),
            (&[("JOBS_TIMEZONE", "Mars/Olympus")], "JOBS_TIMEZONE"),
            (
                &[("VIEWER_TOKEN", "viewer-0123456789abcdef")],
                "VIEWER_TOKEN",
            ),
            (
                &[
                    ("ADMIN_TOKEN", "same-0123456789abcdef"),
                    ("VIEWER_TOKEN", "same-0123456789abcdef"),
                ],
                "VIEWER_TOKEN",
            ),
            (
                &[("DATABASE_LISTEN_URL", "mysql://x")],
                "DATABASE_LISTEN_URL",
            ),
            (&[("EVENTS_HEARTBEAT_SECS", "0")], "EVENTS_HEARTBEAT_SECS"),
            (&[("EVENTS_MAX_STREAMS", "many")], "EVENTS_MAX_STREAMS"),
            (&[("LIVE_RESYNC_SECS", "0")], "LIVE_RESYNC_SECS"),
            (
                &[("JOB_LEASE_SECS", "10"), ("JOB_HEARTBEAT_SECS", "10")],
                "JOB_HEARTBEAT_SECS",
            ),
        ];
        for (pairs, variable) in cases {
            let e = config(pairs).unwrap_err();
            assert_eq!(&e.variable, variable, "{e}");
            // A refused URL's credentials are not repeated.
            assert!(!e.to_string().contains("DgUrlPwSecret55"), "{e}");
        }
        assert_eq!(
            config(&[("AUDIO_RETENTION_DAYS", "0")])
                .unwrap_err()
                .to_string(),
            "AUDIO_RETENTION_DAYS: must be ≥ 1, got 0"
        );
    }

    #[test]
    fn notification_settings_are_read_and_checked_with_the_rest() {
        let c = config(&[]).unwrap();
        assert!(!c.notify.is_enabled());
        let c = config(&[
            ("SMTP_URL", "smtps://mailer:smtp-pass-123@mail.example.com"),
            ("ALERT_EMAIL_FROM", "jobs@example.com"),
            ("ALERT_EMAIL_TO", "ops@example.com,oncall@example.com"),
            (
                "ALERT_WEBHOOK_URL",
                "https://hooks.example.com/services/hook-secret-456",
            ),
        ])
        .unwrap();
        assert_eq!(c.notify.email.as_ref().map(|e| e.to.len()), Some(2));
        assert!(c.notify.webhook.is_some());
        let debug = format!("{c:?}");
        for secret in ["smtp-pass-123", "hook-secret-456"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("SMTP_URL", "smtp://mail.example.com")],
                "ALERT_EMAIL_FROM",
            ),
            (
                &[
                    ("SMTP_URL", "gopher://mail.example.com"),
                    ("ALERT_EMAIL_FROM", "jobs@example.com"),
                    ("ALERT_EMAIL_TO", "ops@example.com"),
                ],
                "SMTP_URL",
            ),
            (
                &[
                    ("SMTP_URL", "smtp://mail.example.com"),
                    ("ALERT_EMAIL_FROM", "not an address"),
                    ("ALERT_EMAIL_TO", "ops@example.com"),
                ],
                "ALERT_EMAIL_FROM",
            ),
            (&[("ALERT_WEBHOOK_URL", "not a url")], "ALERT_WEBHOOK_URL"),
            (&[("ALERT_OVERDUE_FACTOR", "0")], "ALERT_OVERDUE_FACTOR"),
        ];
        for (pairs, variable) in cases {
            let e = config(pairs).unwrap_err();
            assert_eq!(&e.variable, variable, "{e}");
        }
    }

    #[test]
    fn an_invalid_schedule_names_its_variable() {
        let c = config(&[("COST_UPDATE_SCHEDULE", "every night")]).unwrap();
        let e = c.schedule_for("cost_update", "0 3 * * *").unwrap_err();
        assert_eq!(e.variable, "COST_UPDATE_SCHEDULE");
    }

    /// `(variable, default)` of every row of every `| variable | default | meaning |` table
    /// in `text`. A row may name several variables (`A`, `B`); its default then holds one
    /// value per variable (`` `1`, `2` `` or `` `1` / `2` ``) or one for all. A default is
    /// compared up to its first ` (`: what follows explains it.
    fn variable_tables(text: &str) -> Vec<(String, String)> {
        let mut rows = Vec::new();
        let mut in_table = false;
        for line in text.lines() {
            let line = line.trim_start_matches("//!").trim();
            if !line.starts_with('|') {
                in_table = false;
                continue;
            }
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            if cells.starts_with(&["variable", "default", "meaning"]) {
                in_table = true;
                continue;
            }
            if !in_table || cells.len() < 3 || cells[0].starts_with("---") {
                continue;
            }
            let names: Vec<&str> = cells[0]
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|name| {
                    !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                })
                .collect();
            let default = cells[1].split(" (").next().unwrap_or_default().trim();
            let parts: Vec<&str> = default
                .split(", ")
                .flat_map(|part| part.split(" / "))
                .collect();
            for (i, name) in names.iter().enumerate() {
                let value = if names.len() > 1 && parts.len() == names.len() {
                    parts[i]
                } else {
                    default
                };
                rows.push(((*name).to_owned(), value.to_owned()));
            }
        }
        rows
    }

    fn as_map(rows: Vec<(String, String)>, source: &str) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        for (name, default) in rows {
            if let Some(other) = map.insert(name.clone(), default.clone()) {
                assert_eq!(other, default, "{source} gives {name} two defaults");
            }
        }
        map
    }

    #[test]
    fn the_readme_lists_every_variable_with_its_default() {
        let ours = variable_tables(include_str!("config.rs"));
        assert!(ours.len() > 50, "the table was not found: {ours:?}");
        let ours = as_map(ours, "config.rs");
        let readme = as_map(
            variable_tables(include_str!("../../../README.md")),
            "README.md",
        );
        let only = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| {
            a.keys()
                .filter(|k| !b.contains_key(*k))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            only(&ours, &readme),
            Vec::<String>::new(),
            "missing in README.md"
        );
        assert_eq!(
            only(&readme, &ours),
            Vec::<String>::new(),
            "missing in config.rs"
        );
        for (name, default) in &ours {
            assert_eq!(&readme[name], default, "the default of {name}");
        }
    }

    #[test]
    fn a_misspelled_setting_is_named_with_the_one_meant() {
        let vars = Vars::from_pairs([
            ("DATABASE_POOL_SIZE", "5"),
            ("DATABSE_POOL_SIZE", "x"),
            ("AUDIO_CLEANUP_SCHEDUEL", "bogus"),
            ("audio_retention_days", "7"),
            ("HOME", "/root"),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
        ]);
        let config = Config::from_vars(vars.clone()).unwrap();
        config.schedule_for("audio_cleanup", "0 2 * * *").unwrap();
        assert_eq!(
            vars.lookalikes(),
            [
                (
                    "AUDIO_CLEANUP_SCHEDUEL".to_owned(),
                    "AUDIO_CLEANUP_SCHEDULE".to_owned()
                ),
                (
                    "DATABSE_POOL_SIZE".to_owned(),
                    "DATABASE_POOL_SIZE".to_owned()
                ),
                (
                    "audio_retention_days".to_owned(),
                    "AUDIO_RETENTION_DAYS".to_owned()
                ),
            ]
        );
        // Every variable of the table, set, is a setting: none is taken for a slip.
        let all = as_map(variable_tables(include_str!("config.rs")), "");
        let vars = Vars::from_pairs(all.keys().map(|name| (name.as_str(), "")));
        read_every_setting(&vars);
        assert_eq!(vars.lookalikes(), Vec::<(String, String)>::new());
    }

    /// Reads every setting there is from `vars`, as a server and its jobs do.
    fn read_every_setting(vars: &Vars) {
        let config = Config::from_vars(vars.clone()).unwrap();
        LogSettings::from_vars(vars).unwrap();
        crate::jobs::audio_cleanup::AudioCleanupSettings::from_vars(vars).unwrap();
        crate::jobs::cost_update::CostUpdateSettings::from_vars(vars).unwrap();
        for job in ["audio_cleanup", "cost_update"] {
            config.schedule_for(job, "0 0 * * *").unwrap();
            config.timeout_for(job).unwrap();
        }
    }

    #[test]
    fn the_table_lists_every_variable_the_server_reads() {
        let vars = Vars::default();
        read_every_setting(&vars);
        // PORT is read only when BIND_ADDR is unset, which it is here.
        let asked: BTreeSet<String> = vars.asked.lock().unwrap().clone();
        let listed: BTreeSet<String> = as_map(variable_tables(include_str!("config.rs")), "")
            .into_keys()
            .collect();
        let read_not_listed: Vec<_> = asked.difference(&listed).collect();
        let listed_not_read: Vec<_> = listed.difference(&asked).collect();
        assert!(
            read_not_listed.is_empty(),
            "read, not listed: {read_not_listed:?}"
        );
        assert!(
            listed_not_read.is_empty(),
            "listed, not read: {listed_not_read:?}"
        );
    }

    #[test]
    fn log_settings_default_to_info_text() {
        let settings = LogSettings::from_vars(&Vars::default()).unwrap();
        assert_eq!(settings.format, LogFormat::Text);
        assert_eq!(settings.filter, "info");
        assert_eq!(settings.style, None);
        let e = LogSettings::from_vars(&Vars::from_pairs([("LOG_FORMAT", "yaml")])).unwrap_err();
        assert_eq!(e.variable, "LOG_FORMAT");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u:dbpass123@h/db"),
            ("ADMIN_TOKEN", "admintoken-0123456789"),
            ("VIEWER_TOKEN", "viewertoken-0123456789"),
            ("METRICS_TOKEN", "metricstoken-0123456789"),
            ("DEEPGRAM_API_KEY", "dg-secret-key"),
            ("SUPABASE_SERVICE_ROLE_KEY", "sb-secret-key"),
            (
                "DATABASE_LISTEN_URL",
                "postgres://u:listenpass456@h:5432/db",
            ),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        for secret in [
            "listenpass456",
            "dbpass123",
            "admintoken-0123456789",
            "viewertoken-0123456789",
            "metricstoken-0123456789",
            "dg-secret-key",
            "sb-secret-key",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
    }
}
