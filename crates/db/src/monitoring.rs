//! Reads for monitoring: how much work waits for each job (its backlog), how long runs
//! have been going, when each job last failed.
//!
//! Backlog counts are bounded: each reads at most `cap + 1` entries of the job's own
//! partial index (`idx_transcriptions_audio_cleanup`, `idx_transcriptions_cost_pending`)
//! with an index-only scan, so the cost is set by the cap, not by the size of
//! `transcriptions` nor of the backlog (measured on 10 M rows in BENCHMARKS.md).

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Double, Integer, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use jobs_core::Backlog;

use crate::{DbError, Prepared};

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn bounded(n: i64, cap: u64) -> Backlog {
    Backlog::bounded(u64::try_from(n).unwrap_or(0), cap)
}

fn limit(cap: u64) -> i64 {
    i64::try_from(cap).unwrap_or(i64::MAX - 1) + 1
}

/// Transcriptions older than `retention_days` (by the database's clock) whose audio is
/// not deleted yet: what the next `audio_cleanup` run would consider. Counts up to `cap`.
pub async fn audio_cleanup_backlog(
    conn: &mut AsyncPgConnection,
    retention_days: i64,
    cap: u64,
) -> Result<Backlog, DbError> {
    let days = i32::try_from(retention_days).map_err(|_| {
        DbError::Config(format!(
            "retention of {retention_days} days is out of range"
        ))
    })?;
    let row: Count = Prepared(
        diesel::sql_query(
            "SELECT count(*) AS n FROM ( \
               SELECT 1 FROM transcriptions \
               WHERE audio_deleted_at IS NULL AND audio_file_path IS NOT NULL \
                 AND created_at < now() - make_interval(days => $1) \
               LIMIT $2) AS due",
        )
        .bind::<Integer, _>(days)
        .bind::<BigInt, _>(limit(cap)),
    )
    .get_result(conn)
    .await?;
    Ok(bounded(row.n, cap))
}

/// Transcriptions with a request id and no cost that `cost_update` has not given up on:
/// what its next run would try to price. Counts up to `cap`.
pub async fn cost_update_backlog(
    conn: &mut AsyncPgConnection,
    cap: u64,
) -> Result<Backlog, DbError> {
    let row: Count = Prepared(
        diesel::sql_query(
            "SELECT count(*) AS n FROM ( \
               SELECT 1 FROM transcriptions \
               WHERE audio_cost_usd IS NULL AND stt_provider_request_id IS NOT NULL \
                 AND cost_gave_up_at IS NULL \
               LIMIT $1) AS pending",
        )
        .bind::<BigInt, _>(limit(cap)),
    )
    .get_result(conn)
    .await?;
    Ok(bounded(row.n, cap))
}

/// For each job with a running execution: how long the oldest one has been running, in
/// seconds by the database's clock.
pub async fn running_seconds(conn: &mut AsyncPgConnection) -> Result<Vec<(String, f64)>, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        job_name: String,
        #[diesel(sql_type = Double)]
        seconds: f64,
    }
    let rows: Vec<Row> = Prepared(diesel::sql_query(
        "SELECT job_name::text AS job_name, \
                greatest(extract(epoch FROM now() - min(started_at)), 0)::float8 AS seconds \
         FROM job_executions WHERE status = 'running' GROUP BY job_name",
    ))
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.job_name, r.seconds)).collect())
}

/// When each job's latest failed execution ended (its start when it has no end); dry runs
/// are not counted.
pub async fn last_failures(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<(String, DateTime<Utc>)>, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        job_name: String,
        #[diesel(sql_type = Timestamptz)]
        at: DateTime<Utc>,
    }
    // One index probe per job name through (job_name, started_at DESC): the loose scan of
    // `executions::latest_per_job`, restricted to failures.
    let rows: Vec<Row> = Prepared(diesel::sql_query(
        "WITH RECURSIVE names AS ( \
           (SELECT job_name FROM job_executions ORDER BY job_name LIMIT 1) \
           UNION ALL \
           SELECT (SELECT j.job_name FROM job_executions j \
                   WHERE j.job_name > names.job_name ORDER BY j.job_name LIMIT 1) \
           FROM names WHERE names.job_name IS NOT NULL \
         ) \
         SELECT names.job_name::text AS job_name, f.at FROM names \
         CROSS JOIN LATERAL ( \
           SELECT coalesce(x.completed_at, x.started_at) AS at FROM job_executions x \
           WHERE x.job_name = names.job_name AND x.status = 'failed' AND NOT x.dry_run \
           ORDER BY x.started_at DESC LIMIT 1 \
         ) f \
         WHERE names.job_name IS NOT NULL",
    ))
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.job_name, r.at)).collect())
}
