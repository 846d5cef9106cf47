//! Rows as Rust types.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use jobs_core::{ExecutionRecord, Status};

use crate::schema::job_executions;

/// A `job_executions` row.
#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = job_executions)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct ExecutionRow {
    pub id: i32,
    pub job_name: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i32>,
    pub stats: Option<serde_json::Value>,
    pub error_message: Option<String>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub triggered_by: String,
    pub attempt: i32,
    pub dry_run: bool,
    pub worker_id: Option<String>,
    pub requested_by: Option<String>,
}

impl From<ExecutionRow> for ExecutionRecord {
    fn from(row: ExecutionRow) -> Self {
        ExecutionRecord {
            id: i64::from(row.id),
            job_name: row.job_name,
            // The CHECK constraint admits only the four values.
            status: Status::parse(&row.status).unwrap_or(Status::Failed),
            started_at: row.started_at,
            completed_at: row.completed_at,
            duration_ms: row.duration_ms.map(i64::from),
            stats: row.stats.unwrap_or_else(|| serde_json::json!({})),
            error_message: row.error_message,
            scheduled_for: row.scheduled_for,
            trigger: row.triggered_by,
            attempt: row.attempt,
            worker_id: row.worker_id,
            dry_run: row.dry_run,
            requested_by: row.requested_by,
        }
    }
}
