//! Liveness, readiness and the latest execution of each job.

use actix_web::{web, HttpResponse};
use diesel_async::RunQueryDsl;

use super::probes::{fresh, ProbeCache, PROBE_TIMEOUT, READY_TTL};
use super::views::{Data, ErrorBody, ExecutionStatus, Health, Ready};
use super::{ApiError, AppState};

/// The latest execution of each job.
#[utoipa::path(
    get,
    path = "/internal/api/v1/jobs/status",
    tag = "jobs",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Latest execution of each job that ever ran", body = Data<Vec<ExecutionStatus>>),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn jobs_status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await.map_err(ApiError::database)?;
    let latest = db::executions::latest_per_job(&mut conn).await?;
    Ok(HttpResponse::Ok().json(Data {
        data: latest.iter().map(ExecutionStatus::from).collect::<Vec<_>>(),
    }))
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
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn readyz(
    state: web::Data<AppState>,
    cache: web::Data<ProbeCache>,
) -> Result<HttpResponse, ApiError> {
    let mut ready = cache.ready.lock().await;
    let answer = match &*ready {
        Some((at, answer)) if fresh(*at, READY_TTL) => answer.clone(),
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
    Ok(HttpResponse::Ok().json(Ready {
        status: "ready".into(),
        database: "ok".into(),
    }))
}
