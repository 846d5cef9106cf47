//! Where log lines go and in which shape: `LOG_FORMAT=text` (the default) is env_logger's
//! readable line with the `[Job] …` messages, `LOG_FORMAT=json` one JSON object per line
//! for log pipelines:
//!
//! ```text
//! {"ts":"2026-11-30T02:00:00.125Z","level":"info","target":"jobs_core::runner","message":"[Job] Starting audio cleanup (scheduled: 0 2 * * *)","job":"audio_cleanup","execution_id":812}
//! ```
//!
//! `job` and `execution_id` are present on every line logged while a run goes on (the
//! runner's [`jobs_core::current`] scope). Both formats print the same messages, which
//! never contain secrets: the shape changes, not the content.

use std::io::Write;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use crate::config::{ConfigError, LogSettings};

/// The variable that chooses the format.
pub const LOG_FORMAT_VAR: &str = "LOG_FORMAT";

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// env_logger's readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Reads `LOG_FORMAT` (`text` or `json`, any case; unset or empty means `text`).
    pub fn parse(value: Option<&str>) -> Result<Self, ConfigError> {
        match value.map(str::trim).unwrap_or("") {
            "" => Ok(Self::Text),
            v if v.eq_ignore_ascii_case("text") => Ok(Self::Text),
            v if v.eq_ignore_ascii_case("json") => Ok(Self::Json),
            other => Err(ConfigError::new(
                LOG_FORMAT_VAR,
                format!("must be text or json, got {other:?}"),
            )),
        }
    }
}

/// One line of `LOG_FORMAT=json`.
#[derive(Debug, Serialize)]
struct JsonLine<'a> {
    ts: String,
    level: &'static str,
    target: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_id: Option<i64>,
}

fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error",
        log::Level::Warn => "warn",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

/// The JSON line of a record, without its newline.
fn json_line(record: &log::Record<'_>) -> String {
    let current = jobs_core::current::get();
    let line = JsonLine {
        ts: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        level: level_name(record.level()),
        target: record.target(),
        message: record.args().to_string(),
        job: current.as_ref().map(|c| &*c.job),
        execution_id: current.as_ref().map(|c| c.execution_id),
    };
    serde_json::to_string(&line).unwrap_or_else(|_| String::from("{}"))
}

/// The module that logs clients' malformed requests.
const NOISY_CLIENT_ERRORS: &str = "actix_http::h1::dispatcher";

/// Installs the process logger: the filter of `RUST_LOG` (default `info`), lines on standard
/// output in the chosen format.
pub fn init(settings: &LogSettings) {
    let mut builder = env_logger::Builder::new();
    // actix-http logs every malformed request a client sends as an ERROR: anyone who can
    // reach the port could fill the log with them, and they are nothing an operator can
    // act on (the client got its 400). Off unless `RUST_LOG` names the module itself.
    builder.filter_module(NOISY_CLIENT_ERRORS, log::LevelFilter::Off);
    builder.parse_filters(&settings.filter);
    if let Some(style) = &settings.style {
        builder.parse_write_style(style);
    }
    builder.target(env_logger::Target::Stdout);
    if settings.format == LogFormat::Json {
        builder.format(|buf, record| writeln!(buf, "{}", json_line(record)));
    }
    // Each run's own lines are also kept with its execution (see `jobs_core::capture`).
    let logger = builder.build();
    let max = logger.filter();
    if jobs_core::capture::install(logger, max).is_err() {
        eprintln!("warning: a logger was already installed; run log lines are not kept");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobs_core::current::{scope, CurrentExecution};

    fn record_line(message: &str) -> serde_json::Value {
        let line = json_line(
            &log::Record::builder()
                .args(format_args!("{message}"))
                .level(log::Level::Warn)
                .target("api_server::test")
                .build(),
        );
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn the_format_is_text_unless_json_is_asked_for() {
        assert_eq!(LogFormat::parse(None).unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("")).unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("TEXT")).unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some(" json ")).unwrap(), LogFormat::Json);
        let e = LogFormat::parse(Some("yaml")).unwrap_err();
        assert_eq!(e.variable, "LOG_FORMAT");
    }

    #[test]
    fn a_line_outside_a_run_has_no_job_fields() {
        let line = record_line("listening on \"x\"\nsecond line");
        assert_eq!(line["level"], "warn");
        assert_eq!(line["target"], "api_server::test");
        assert_eq!(line["message"], "listening on \"x\"\nsecond line");
        assert!(line["ts"].as_str().unwrap().ends_with('Z'));
        assert!(line.get("job").is_none() && line.get("execution_id").is_none());
    }

    #[tokio::test]
    async fn a_line_inside_a_run_names_the_job_and_execution() {
        let line = scope(CurrentExecution::new("cost_update", 42), async {
            record_line("[Job] Starting cost update")
        })
        .await;
        assert_eq!(line["job"], "cost_update");
        assert_eq!(line["execution_id"], 42);
    }
}
