//! The `audio_cleanup` executions as the database holds them.

use chrono::{DateTime, Utc};
use db::testing::TestDatabase;
use diesel::sql_types::{Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use serde_json::Value;

/// One row of `job_executions`.
#[derive(diesel::QueryableByName, Debug, Clone)]
pub struct Execution {
    #[diesel(sql_type = Integer)]
    pub id: i32,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub error_message: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub scheduled_for: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    pub started_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub triggered_by: String,
    #[diesel(sql_type = Integer)]
    pub attempt: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub worker_id: Option<String>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub stats: Option<Value>,
}

impl Execution {
    /// A slot recorded as skipped.
    pub fn skipped(&self) -> bool {
        self.error_message
            .as_deref()
            .is_some_and(|m| m.starts_with("skipped:"))
    }

    /// Rows the run looked at.
    pub fn considered(&self) -> i64 {
        self.stats
            .as_ref()
            .and_then(|s| s["considered"].as_i64())
            .unwrap_or(0)
    }
}

/// Every execution of `audio_cleanup`, oldest first.
pub async fn audio_cleanup_runs(db: &TestDatabase) -> Vec<Execution> {
    let mut conn = db.connect().await;
    diesel::sql_query(
        "SELECT id, status::text AS status, error_message, scheduled_for, started_at, \
         triggered_by::text AS triggered_by, attempt, worker_id::text AS worker_id, stats \
         FROM job_executions WHERE job_name = 'audio_cleanup' ORDER BY id",
    )
    .load(&mut conn)
    .await
    .unwrap()
}

/// The execution `id` of `audio_cleanup`.
pub async fn audio_cleanup_run(db: &TestDatabase, id: i64) -> Execution {
    audio_cleanup_runs(db)
        .await
        .into_iter()
        .find(|r| i64::from(r.id) == id)
        .unwrap_or_else(|| panic!("no audio_cleanup execution {id}"))
}
