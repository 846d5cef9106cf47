//! Liveness, readiness and the latest execution of each job.

use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use diesel_async::RunQueryDsl;

use super::probes::{fresh, ProbeCache, PROBE_TIMEOUT, READY_TTL};
use super::views::{Data, ErrorBody, ExecutionStatus, Health, Ready};
use super::{ApiError, AppState};

/// The latest execution of each job, from the server's live view (no database query).
#[utoipa::path(
    get,
    path = "/internal/api/v1/jobs/status",
    tag = "jobs",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Latest execution of each job that ever ran", body = Data<Vec<ExecutionStatus>>),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 503, description = "The live view is not loaded yet", body = ErrorBody),
    )
)]
pub async fn jobs_status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let body = loaded(&state)
        .await?
        .status_body()
        .ok_or_else(ApiError::not_loaded)?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body))
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "Alive", body = Health))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the process answers and the database does too.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Database unavailable, state not read yet, or shutting down", body = ErrorBody),
    )
)]
pub async fn readyz(
    state: web::Data<AppState>,
    cache: web::Data<ProbeCache>,
) -> Result<HttpResponse, ApiError> {
    // Stopping, it starts no new runs: a load balancer should send the work elsewhere
    // while running jobs finish.
    if state.runner.is_stopping() {
        return Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down and starts no new runs",
        ));
    }
    let mut ready = cache.ready.lock().await;
    let answer = match &*ready {
        // A reused failure was logged when it was found: once per check, not per probe.
        Some((at, answer)) if fresh(*at, READY_TTL) => {
            answer.clone().map_err(|_| ApiError::database_again())?;
            Ok(())
        }
        _ => {
            let check = async {
                let mut conn = state.pool.get().await.map_err(|e| e.to_string())?;
                diesel::sql_query("SELECT 1")
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            };
            let answer = match tokio::time::timeout(PROBE_TIMEOUT, check).await {
                Ok(result) => result.map(|_| ()),
                Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
            };
            *ready = Some((std::time::Instant::now(), answer.clone()));
            answer
        }
    };
    drop(ready);
    answer.map_err(ApiError::database)?;
    // The jobs' routes answer from the live view: until it has been read once they would
    // answer 503, so the server is not ready either.
    if !state.live.wait_loaded(std::time::Duration::ZERO).await {
        return Err(ApiError::not_loaded());
    }
    Ok(HttpResponse::Ok().json(Ready {
        status: "ready".into(),
        database: "ok".into(),
    }))
}

/// How long a request made before the first read of the jobs' state waits for it.
const FIRST_LOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The live view once it has been loaded; 503 `not_ready` when that takes too long (the
/// database is unreachable since start-up).
pub(super) async fn loaded(state: &AppState) -> Result<&crate::live::LiveView, ApiError> {
    if state.live.wait_loaded(FIRST_LOAD_WAIT).await {
        Ok(&state.live)
    } else {
        Err(ApiError::not_loaded())
    }
}
