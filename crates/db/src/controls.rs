//! Run-time switches an operator sets on a job: pause and resume.
//!
//! A paused job's scheduled slots are refused by the claim itself (`execution_log.rs`), so
//! the pause holds on every server the moment it is written and survives restarts; manual
//! runs still start. Every change fires the `job_events` notification (see the migration).

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use diesel::OptionalExtension;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::DbError;

/// A job's run-time switches.
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName)]
pub struct JobControl {
    /// The job.
    #[diesel(sql_type = Text)]
    pub job_name: String,
    /// Scheduled slots are not run.
    #[diesel(sql_type = Bool)]
    pub paused: bool,
    /// When it was paused.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub paused_at: Option<DateTime<Utc>>,
    /// Who paused it (`admin`, `viewer`, `local`).
    #[diesel(sql_type = Nullable<Text>)]
    pub paused_by: Option<String>,
    /// Why, as the operator wrote it.
    #[diesel(sql_type = Nullable<Text>)]
    pub pause_reason: Option<String>,
    /// Raised by every write: of two reads of the row, the higher version is the newer.
    #[diesel(sql_type = BigInt)]
    pub version: i64,
}

impl JobControl {
    /// Whether `self` may take the place of `current`, a read of the same row that may be
    /// older or newer (reads arrive from a server's own writes, notifications and full
    /// re-reads, in any order).
    pub fn supersedes(&self, current: Option<&JobControl>) -> bool {
        current.is_none_or(|current| self.version >= current.version)
    }
}

const COLUMNS: &str =
    "job_name::text AS job_name, paused, paused_at, paused_by::text AS paused_by, pause_reason, version";

/// Pauses a job. Pausing a paused job keeps `paused_at` (how long it has been off), and
/// keeps who paused it and why unless a new reason is given, which then replaces both.
pub async fn pause(
    conn: &mut AsyncPgConnection,
    job_name: &str,
    actor: &str,
    reason: Option<&str>,
) -> Result<JobControl, DbError> {
    let row = diesel::sql_query(format!(
        "INSERT INTO job_controls (job_name, paused, paused_at, paused_by, pause_reason, updated_at) \
         VALUES ($1, true, now(), $2, $3, now()) \
         ON CONFLICT (job_name) DO UPDATE SET paused = true, \
           paused_at = CASE WHEN job_controls.paused THEN job_controls.paused_at ELSE now() END, \
           paused_by = CASE WHEN job_controls.paused AND EXCLUDED.pause_reason IS NULL \
             THEN job_controls.paused_by ELSE EXCLUDED.paused_by END, \
           pause_reason = CASE WHEN job_controls.paused AND EXCLUDED.pause_reason IS NULL \
             THEN job_controls.pause_reason ELSE EXCLUDED.pause_reason END, \
           updated_at = now(), version = job_controls.version + 1 \
         RETURNING {COLUMNS}"
    ))
    .bind::<Text, _>(job_name)
    .bind::<Text, _>(actor)
    .bind::<Nullable<Text>, _>(reason)
    .get_result(conn)
    .await?;
    Ok(row)
}

/// Resumes a job; its next slot runs, the ones it missed while paused do not.
pub async fn resume(conn: &mut AsyncPgConnection, job_name: &str) -> Result<JobControl, DbError> {
    let row = diesel::sql_query(format!(
        "INSERT INTO job_controls (job_name, paused, updated_at) VALUES ($1, false, now()) \
         ON CONFLICT (job_name) DO UPDATE SET paused = false, paused_at = NULL, \
           paused_by = NULL, pause_reason = NULL, updated_at = now(), \
           version = job_controls.version + 1 \
         RETURNING {COLUMNS}"
    ))
    .bind::<Text, _>(job_name)
    .get_result(conn)
    .await?;
    Ok(row)
}

/// The switches of every job that has a row.
pub async fn all(conn: &mut AsyncPgConnection) -> Result<Vec<JobControl>, DbError> {
    Ok(diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM job_controls ORDER BY job_name"
    ))
    .load(conn)
    .await?)
}

/// A paused job, and how long it has been paused in seconds, by the database's clock.
#[derive(Debug, Clone, PartialEq, diesel::QueryableByName)]
pub struct Paused {
    /// The job.
    #[diesel(sql_type = Text)]
    pub job_name: String,
    /// Seconds since `paused_at`; since the row's last change for a pause written without
    /// one (by hand). Never negative.
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub seconds: f64,
}

/// Every paused job, with how long it has been paused: measured where `paused_at` was
/// written, so that a server whose clock is off does not shorten or lengthen it.
pub async fn paused(conn: &mut AsyncPgConnection) -> Result<Vec<Paused>, DbError> {
    Ok(diesel::sql_query(
        "SELECT job_name::text AS job_name, GREATEST(0, \
           EXTRACT(EPOCH FROM now() - COALESCE(paused_at, updated_at)))::float8 AS seconds \
         FROM job_controls WHERE paused ORDER BY job_name",
    )
    .load(conn)
    .await?)
}

/// One job's switches, if it has a row.
pub async fn get(
    conn: &mut AsyncPgConnection,
    job_name: &str,
) -> Result<Option<JobControl>, DbError> {
    Ok(diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM job_controls WHERE job_name = $1"
    ))
    .bind::<Text, _>(job_name)
    .get_result(conn)
    .await
    .optional()?)
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn how_long_a_job_is_paused_is_read_by_the_databases_clock_even_without_paused_at() {
        use diesel_async::SimpleAsyncConnection;
        let db = TestDatabase::new().await;
        let mut conn = db.connect().await;
        conn.batch_execute(
            "INSERT INTO job_controls (job_name, paused, paused_at, updated_at) VALUES \
               ('audio_cleanup', true, now() - interval '2 hours', now()), \
               ('cost_update', true, NULL, now() - interval '1 hour'), \
               ('reindex', false, now() - interval '5 hours', now()), \
               ('future', true, now() + interval '1 hour', now())",
        )
        .await
        .unwrap();
        let paused = paused(&mut conn).await.unwrap();
        let seconds = |job: &str| {
            paused
                .iter()
                .find(|p| p.job_name == job)
                .map(|p| p.seconds)
                .unwrap_or(-1.0)
        };
        assert!(
            (7200.0..7260.0).contains(&seconds("audio_cleanup")),
            "{paused:?}"
        );
        assert!(
            (3600.0..3660.0).contains(&seconds("cost_update")),
            "{paused:?}"
        );
        assert_eq!(seconds("future"), 0.0, "{paused:?}");
        assert!(
            !paused.iter().any(|p| p.job_name == "reindex"),
            "{paused:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pausing_a_paused_job_keeps_since_when_and_a_new_reason_replaces_who_and_why() {
        let db = TestDatabase::new().await;
        let mut conn = db.connect().await;
        let first = pause(&mut conn, "cost_update", "admin", Some("migration"))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;

        let again = pause(&mut conn, "cost_update", "viewer", None)
            .await
            .unwrap();
        assert_eq!(again.paused_at, first.paused_at);
        assert_eq!(
            (again.paused_by.as_deref(), again.pause_reason.as_deref()),
            (Some("admin"), Some("migration"))
        );
        assert!(again.version > first.version);

        let reasoned = pause(&mut conn, "cost_update", "local", Some("Deepgram outage"))
            .await
            .unwrap();
        assert_eq!(reasoned.paused_at, first.paused_at);
        assert_eq!(
            (
                reasoned.paused_by.as_deref(),
                reasoned.pause_reason.as_deref()
            ),
            (Some("local"), Some("Deepgram outage"))
        );

        // After a resume, a pause starts afresh.
        resume(&mut conn, "cost_update").await.unwrap();
        let fresh = pause(&mut conn, "cost_update", "admin", None)
            .await
            .unwrap();
        assert!(fresh.paused_at > first.paused_at);
        assert_eq!(
            (fresh.paused_by.as_deref(), fresh.pause_reason.as_deref()),
            (Some("admin"), None)
        );
    }
}
