//! The registered jobs, and starting one now.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use jobs_core::{RunRequest, StartError};
use serde::Deserialize;
use utoipa::IntoParams;

use super::status::loaded;
use super::views::{Data, ErrorBody, JobView, RunStarted, StatusView};
use super::{ApiError, AppState};

/// The registered jobs with their schedule, switch, next run and latest execution, from the
/// server's live view (no database query).
#[utoipa::path(
    get,
    path = "/internal/api/v1/jobs",
    tag = "jobs",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Registered jobs in registration order", body = Data<Vec<JobView>>),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 503, description = "The live view is not loaded yet", body = ErrorBody),
    )
)]
pub async fn list_jobs(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let jobs: Vec<JobView> = loaded(&state)
        .await?
        .jobs()
        .ok_or_else(ApiError::not_loaded)?;
    Ok(HttpResponse::Ok().json(Data { data: jobs }))
}

/// Options of a run-now request.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunParams {
    /// `true` to report what the job would do and change nothing.
    #[param(value_type = Option<bool>)]
    dry_run: Option<String>,
}

/// Starts a job now; the run is recorded as manual.
#[utoipa::path(
    post,
    path = "/internal/api/v1/jobs/{job_name}/run",
    tag = "jobs",
    security(("bearer" = [])),
    params(("job_name" = String, Path, description = "The job to run"), RunParams),
    responses(
        (status = 202, description = "Started", body = Data<RunStarted>),
        (status = 400, description = "Bad parameter, or dry run not supported", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 403, description = "The viewer token may not start runs; or, without ADMIN_TOKEN, a cross-origin request", body = ErrorBody),
        (status = 404, description = "Unknown job", body = ErrorBody),
        (status = 409, description = "Already running", body = ErrorBody),
        (status = 500, description = "The run cannot be recorded because of job_executions' own data (`execution_conflict`: an id sequence set back, or a unique index not this service's; the message says how to mend it)", body = ErrorBody),
        (status = 503, description = "Job disabled, server shutting down, or database unavailable", body = ErrorBody),
    )
)]
pub async fn run_job(
    req: HttpRequest,
    state: web::Data<AppState>,
    job_name: web::Path<String>,
    params: web::Query<RunParams>,
) -> Result<HttpResponse, ApiError> {
    // A bare `?dry_run` (or `dry_run=`) is refused rather than read either way: taken as
    // false it would start the real run its sender meant to avoid.
    let dry_run = match params.dry_run.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some("") => {
            return Err(ApiError::bad_parameter(
                "dry_run",
                "must be true or false, got an empty value".to_owned(),
            ))
        }
        Some(other) => {
            return Err(ApiError::bad_parameter(
                "dry_run",
                format!("must be true or false, got {other:?}"),
            ))
        }
    };
    let Some(job) = state.registry.get(&job_name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_job",
            format!(
                "no job named {:?}; known jobs: {}",
                job_name.as_str(),
                state.registry.names().join(", ")
            ),
        ));
    };
    let control = {
        let mut conn = state.pool.get().await.map_err(ApiError::database)?;
        db::controls::get(&mut conn, &job_name).await?
    };
    let paused = control.as_ref().is_some_and(|c| c.paused);
    let note = paused.then(|| paused_run_note(control.as_ref()));
    let mut request = RunRequest::manual(dry_run).requested_by(super::auth::actor(&req));
    if let Some(note) = &note {
        // The run's own record says so too, as its first line.
        request = request.with_note(note.clone());
    }
    match state.runner.start(job, request).await {
        Ok(started) => Ok(HttpResponse::Accepted().json(Data {
            data: RunStarted {
                execution_id: started.execution_id,
                job_name: job_name.into_inner(),
                status: StatusView::Running,
                dry_run,
                paused,
                note,
            },
        })),
        Err(e) => Err(start_error(e)),
    }
}

/// The note of a manual run of a paused job: who paused it and why.
pub(crate) fn paused_run_note(control: Option<&db::controls::JobControl>) -> String {
    let by = control
        .and_then(|c| c.paused_by.as_deref())
        .unwrap_or("an operator");
    let reason = control
        .and_then(|c| c.pause_reason.as_deref())
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    format!("manual run of a paused job: paused by {by}{reason}; its schedule stays paused")
}

fn start_error(e: StartError) -> ApiError {
    match e {
        StartError::AlreadyRunning(job) => ApiError::new(
            StatusCode::CONFLICT,
            "already_running",
            format!("job {job} is already running"),
        ),
        StartError::Disabled { job, reason } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "job_disabled",
            format!("job {job} is disabled: {reason}"),
        ),
        StartError::Paused(job) => ApiError::new(
            StatusCode::CONFLICT,
            "job_paused",
            format!("job {job} is paused"),
        ),
        StartError::DryRunUnsupported(job) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "dry_run_unsupported",
            format!("job {job} does not support dry runs"),
        ),
        StartError::ShuttingDown => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down and starts no new runs",
        ),
        StartError::SlotTaken { job, .. } => ApiError::new(
            StatusCode::CONFLICT,
            "already_running",
            format!("job {job} was just started by someone else"),
        ),
        // The database answered: the run could not be recorded because of its data,
        // which an operator must mend. The reason names no secret.
        StartError::Conflict(reason) => {
            log::error!("manual run not started: {reason}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "execution_conflict",
                reason,
            )
        }
        StartError::Log(e) => ApiError::database(e),
    }
}
