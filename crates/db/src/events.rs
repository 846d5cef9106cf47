//! The log lines of each run (`job_execution_events`), deleted with their execution by the
//! foreign key's `ON DELETE CASCADE`.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Integer, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use jobs_core::capture::{RunEvent, MAX_EVENTS_PER_RUN};

use crate::DbError;

/// Lines returned for one execution at most (a run keeps fewer, plus a dropped-count line
/// and notes such as a manual run of a paused job).
const MAX_READ: i64 = MAX_EVENTS_PER_RUN as i64 + 10;

/// A stored line.
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName)]
pub struct EventRow {
    /// When it was logged.
    #[diesel(sql_type = Timestamptz)]
    pub at: DateTime<Utc>,
    /// `info`, `warn` or `error`.
    #[diesel(sql_type = Text)]
    pub level: String,
    /// The message.
    #[diesel(sql_type = Text)]
    pub message: String,
}

/// Appends a run's lines, and one `warn` line saying how many were dropped when some were.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    execution_id: i64,
    events: &[RunEvent],
    dropped: u64,
) -> Result<(), DbError> {
    let mut at: Vec<DateTime<Utc>> = events.iter().map(|e| e.at).collect();
    let mut level: Vec<String> = events
        .iter()
        .map(|e| e.level.as_str().to_ascii_lowercase())
        .collect();
    let mut message: Vec<String> = events.iter().map(|e| e.message.clone()).collect();
    if dropped > 0 {
        at.push(Utc::now());
        level.push("warn".to_owned());
        message.push(format!(
            "{dropped} more log line(s) of this run were not kept (at most {MAX_EVENTS_PER_RUN} are)"
        ));
    }
    if at.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO job_execution_events (execution_id, at, level, message) \
         SELECT $1, e.at, e.level, e.message \
         FROM unnest($2::timestamptz[], $3::text[], $4::text[]) AS e(at, level, message) \
         WHERE EXISTS (SELECT 1 FROM job_executions WHERE id = $1)",
    )
    .bind::<Integer, _>(i32::try_from(execution_id).unwrap_or(-1))
    .bind::<Array<Timestamptz>, _>(at)
    .bind::<Array<Text>, _>(level)
    .bind::<Array<Text>, _>(message)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds one line to a run (a note from the server, not from the job).
pub async fn note(
    conn: &mut AsyncPgConnection,
    execution_id: i64,
    level: log::Level,
    message: &str,
) -> Result<(), DbError> {
    let event = RunEvent {
        at: Utc::now(),
        level,
        message: message.to_owned(),
    };
    insert(conn, execution_id, &[event], 0).await
}

/// A run's lines, oldest first.
pub async fn for_execution(
    conn: &mut AsyncPgConnection,
    execution_id: i64,
) -> Result<Vec<EventRow>, DbError> {
    Ok(diesel::sql_query(
        "SELECT at, level::text AS level, message FROM job_execution_events \
         WHERE execution_id = $1 ORDER BY id LIMIT $2",
    )
    .bind::<Integer, _>(i32::try_from(execution_id).unwrap_or(-1))
    .bind::<BigInt, _>(MAX_READ)
    .load(conn)
    .await?)
}
