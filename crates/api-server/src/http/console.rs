//! The operator console's routes (contract §7.3): pause and resume a job, a run's log
//! lines, a job's daily trends and the live servers.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::views::{rfc3339, Data, ErrorBody, EventView, JobControlView, TrendDay, WorkerView};
use super::{auth, ApiError, AppState, MAX_JSON_BODY};

/// Longest pause reason accepted, in characters.
const MAX_REASON_CHARS: usize = 500;
/// Trends cover at most this many days.
const MAX_TREND_DAYS: i32 = 365;
const DEFAULT_TREND_DAYS: i32 = 30;

/// The optional body of a pause.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseBody {
    /// Why, shown on the dashboard (at most 500 characters).
    reason: Option<String>,
}

fn known_job(state: &AppState, job_name: &str) -> Result<(), ApiError> {
    if state.registry.get(job_name).is_some() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_job",
        format!(
            "no job named {job_name:?}; known jobs: {}",
            state.registry.names().join(", ")
        ),
    ))
}

/// A body of any content type, at most [`MAX_JSON_BODY`] bytes; a larger one gets the
/// JSON error, not actix's plain-text 413.
async fn read_body(body: web::Payload) -> Result<web::Bytes, ApiError> {
    match body.to_bytes_limited(MAX_JSON_BODY).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the body could not be read: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {MAX_JSON_BODY} bytes"),
        )),
    }
}

fn parse_pause_body(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    // `null` is no body, as the documented schema (an optional body) allows.
    let parsed: PauseBody = serde_json::from_slice::<Option<PauseBody>>(body)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("expected {{\"reason\": \"…\"}} or no body: {e}"),
            )
        })?
        .unwrap_or_default();
    let reason = parsed
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if let Some(r) = &reason {
        if r.chars().count() > MAX_REASON_CHARS {
            return Err(ApiError::bad_parameter(
                "reason",
                format!("must be at most {MAX_REASON_CHARS} characters"),
            ));
        }
        if r.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(ApiError::bad_parameter(
                "reason",
                "must not contain control characters",
            ));
        }
    }
    Ok(reason)
}

/// Pauses a job's schedule on every server; manual runs still start.
#[utoipa::path(
    post,
    path = "/internal/api/v1/jobs/{job_name}/pause",
    tag = "jobs",
    security(("bearer" = [])),
    params(("job_name" = String, Path, description = "The job to pause")),
    request_body(content = Option<PauseBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "Paused", body = Data<JobControlView>),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "The viewer token may not pause; or, without ADMIN_TOKEN, a cross-origin request", body = ErrorBody),
        (status = 404, description = "Unknown job", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn pause(
    req: HttpRequest,
    state: web::Data<AppState>,
    job_name: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    known_job(&state, &job_name)?;
    let body = read_body(body).await?;
    let reason = parse_pause_body(&body)?;
    set_control(&req, &state, &job_name, Control::Pause { reason }).await
}

/// Resumes a job's schedule from its next slot; the slots missed while paused stay skipped.
#[utoipa::path(
    post,
    path = "/internal/api/v1/jobs/{job_name}/resume",
    tag = "jobs",
    security(("bearer" = [])),
    params(("job_name" = String, Path, description = "The job to resume")),
    responses(
        (status = 200, description = "Resumed (or was not paused)", body = Data<JobControlView>),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "The viewer token may not resume; or, without ADMIN_TOKEN, a cross-origin request", body = ErrorBody),
        (status = 404, description = "Unknown job", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn resume(
    req: HttpRequest,
    state: web::Data<AppState>,
    job_name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    known_job(&state, &job_name)?;
    set_control(&req, &state, &job_name, Control::Resume).await
}

/// What an operator does to a job's schedule.
enum Control {
    Pause { reason: Option<String> },
    Resume,
}

/// Stores `change` for a known job, shows it in the live view, logs it and answers with
/// the job's control state.
async fn set_control(
    req: &HttpRequest,
    state: &AppState,
    job_name: &str,
    change: Control,
) -> Result<HttpResponse, ApiError> {
    let actor = auth::actor(req);
    let mut conn = state.pool.get().await.map_err(ApiError::database)?;
    let (control, done) = match change {
        Control::Pause { reason } => (
            db::controls::pause(&mut conn, job_name, actor, reason.as_deref()).await?,
            format!(
                "paused by {actor}{}",
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
        ),
        Control::Resume => (
            db::controls::resume(&mut conn, job_name).await?,
            format!("resumed by {actor}"),
        ),
    };
    state.live.apply_control(control.clone());
    log::info!("[Job] {job_name} {done}");
    Ok(HttpResponse::Ok().json(Data {
        data: JobControlView::from(&control),
    }))
}

/// A run's own log lines (`info` and above), oldest first.
#[utoipa::path(
    get,
    path = "/internal/api/v1/jobs/executions/{id}/events",
    tag = "executions",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Execution id")),
    responses(
        (status = 200, description = "The lines", body = Data<Vec<EventView>>),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn events(
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await.map_err(ApiError::database)?;
    if db::execution_log::find(&mut conn, *id).await?.is_none() {
        return Err(ApiError::not_found(format!("no execution {id}")));
    }
    let rows = db::events::for_execution(&mut conn, *id).await?;
    Ok(HttpResponse::Ok().json(Data {
        data: rows
            .into_iter()
            .map(|r| EventView {
                at: rfc3339(r.at),
                level: r.level,
                message: r.message,
            })
            .collect::<Vec<_>>(),
    }))
}

/// Trend parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrendParams {
    /// Days back, today included: 1 to 365 (default 30).
    #[param(value_type = Option<i32>, minimum = 1, maximum = 365)]
    days: Option<String>,
}

/// A job's runs per UTC day: counts, duration percentiles and summed stats.
#[utoipa::path(
    get,
    path = "/internal/api/v1/jobs/{job_name}/trends",
    tag = "jobs",
    security(("bearer" = [])),
    params(("job_name" = String, Path, description = "The job"), TrendParams),
    responses(
        (status = 200, description = "One entry per day, oldest first", body = Data<Vec<TrendDay>>),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "Unknown job", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn trends(
    state: web::Data<AppState>,
    job_name: web::Path<String>,
    params: web::Query<TrendParams>,
) -> Result<HttpResponse, ApiError> {
    known_job(&state, &job_name)?;
    let days = match params.days.as_deref().filter(|d| !d.is_empty()) {
        None => DEFAULT_TREND_DAYS,
        Some(raw) => match raw.parse::<i32>() {
            Ok(n) if (1..=MAX_TREND_DAYS).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_parameter(
                    "days",
                    format!("must be a whole number from 1 to {MAX_TREND_DAYS}, got {raw:?}"),
                ))
            }
        },
    };
    let mut conn = state.pool.get().await.map_err(ApiError::database)?;
    let rows = db::trends::daily(&mut conn, &job_name, days).await?;
    Ok(HttpResponse::Ok().json(Data {
        data: rows
            .into_iter()
            .map(|r| TrendDay {
                day: r.day,
                runs: r.runs,
                succeeded: r.succeeded,
                failed: r.failed,
                p50_ms: r.p50_ms,
                p95_ms: r.p95_ms,
                stats: r.stats,
            })
            .collect::<Vec<_>>(),
    }))
}

/// What the caller's token may do, for the dashboard to offer only the controls that
/// will work.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct SessionView {
    /// `admin`, `viewer`, or `local` (no token configured; loopback only).
    pub role: &'static str,
    /// Whether writes (run, pause, resume, cancel) are allowed.
    pub can_write: bool,
}

/// The caller's role.
#[utoipa::path(
    get,
    path = "/internal/api/v1/session",
    tag = "jobs",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The role of the token sent", body = Data<SessionView>),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    )
)]
pub async fn session(req: HttpRequest) -> HttpResponse {
    HttpResponse::Ok().json(Data {
        data: SessionView {
            role: auth::actor(&req),
            can_write: auth::may_write(&req),
        },
    })
}

/// The live servers and what each runs.
#[utoipa::path(
    get,
    path = "/internal/api/v1/workers",
    tag = "workers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Servers heard from within two heartbeats", body = Data<Vec<WorkerView>>),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn workers(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await.map_err(ApiError::database)?;
    let rows = db::workers::live(&mut conn).await?;
    Ok(HttpResponse::Ok().json(Data {
        data: rows
            .into_iter()
            .map(|w| WorkerView {
                worker_id: w.worker_id,
                started_at: rfc3339(w.started_at),
                last_seen_at: rfc3339(w.last_seen_at),
                version: w.version,
                running: w.running,
                settings: w.settings,
            })
            .collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_body_is_optional_and_checked() {
        assert_eq!(parse_pause_body(b"").unwrap(), None);
        assert_eq!(parse_pause_body(b"  ").unwrap(), None);
        assert_eq!(parse_pause_body(b"{}").unwrap(), None);
        assert_eq!(
            parse_pause_body(br#"{"reason": " storage migration "}"#).unwrap(),
            Some("storage migration".to_owned())
        );
        assert!(parse_pause_body(b"not json").is_err());
        assert!(parse_pause_body(br#"{"why": "x"}"#).is_err());
        assert!(parse_pause_body(br#"{"reason": 3}"#).is_err());
        let long = format!(r#"{{"reason": "{}"}}"#, "x".repeat(501));
        assert!(parse_pause_body(long.as_bytes()).is_err());
    }
}
