//! Liveness, readiness and the latest execution of each job.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use diesel_async::RunQueryDsl;
use jobs_core::ExecutionRecord;
use serde::Serialize;

use super::{ApiError, AppState};

/// RFC 3339 in UTC with milliseconds: `2026-11-28T02:00:00.123Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An execution as `GET /internal/api/v1/jobs/status` shows it.
#[derive(Debug, Serialize)]
pub struct ExecutionStatus {
    job_name: String,
    status: &'static str,
    started_at: String,
    completed_at: Option<String>,
    duration_ms: Option<i64>,
    stats: serde_json::Value,
    error_message: Option<String>,
}

impl From<&ExecutionRecord> for ExecutionStatus {
    fn from(r: &ExecutionRecord) -> Self {
        Self {
            job_name: r.job_name.clone(),
            status: r.status.as_str(),
            started_at: rfc3339(r.started_at),
            completed_at: r.completed_at.map(rfc3339),
            duration_ms: r.duration_ms,
            stats: r.stats.clone(),
            error_message: r.error_message.clone(),
        }
    }
}

#[derive(Serialize)]
struct Data<T> {
    data: T,
}

/// `GET /internal/api/v1/jobs/status`
pub async fn jobs_status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await.map_err(ApiError::database)?;
    let latest = db::executions::latest_per_job(&mut conn).await?;
    Ok(HttpResponse::Ok().json(Data {
        data: latest.iter().map(ExecutionStatus::from).collect::<Vec<_>>(),
    }))
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: the process answers and the database does too.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await.map_err(ApiError::database)?;
    diesel::sql_query("SELECT 1")
        .execute(&mut conn)
        .await
        .map_err(ApiError::database)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready", "database": "ok"})))
}
