//! Read queries over the execution history, for the status API and the dashboard.

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use jobs_core::ExecutionRecord;

use crate::execution_log::COLUMNS;
use crate::models::ExecutionRow;
use crate::{DbError, Prepared};

/// The latest execution of each job that ever ran, ordered by job name: the newest row by
/// `(started_at, id)` that is not a skipped slot, so a slot skipped while a run goes on
/// never hides that run. A job whose only rows are skipped slots is not listed.
///
/// A loose index scan: the recursive part hops from one job name to the next through the
/// `(job_name)` index, and each hop reads one row,
/// so the cost grows with the number of jobs, not with the length of the history. The
/// per-job lookup is served by `(job_name, started_at DESC, id DESC)`, which matches its
/// order exactly; without that index the planner may walk `started_at DESC` across every
/// job's rows (137 ms instead of 0.25 ms for a job whose latest run is old, measured on
/// 1 000 000 rows, see BENCHMARKS.md).
pub async fn latest_per_job(conn: &mut AsyncPgConnection) -> Result<Vec<ExecutionRecord>, DbError> {
    let rows: Vec<ExecutionRow> = Prepared(diesel::sql_query(format!(
        "WITH RECURSIVE names AS ( \
           (SELECT job_name FROM job_executions ORDER BY job_name LIMIT 1) \
           UNION ALL \
           SELECT (SELECT j.job_name FROM job_executions j \
                   WHERE j.job_name > names.job_name ORDER BY j.job_name LIMIT 1) \
           FROM names WHERE names.job_name IS NOT NULL \
         ) \
         SELECT e.* FROM names \
         CROSS JOIN LATERAL ( \
           SELECT {COLUMNS} FROM job_executions x \
           WHERE x.job_name = names.job_name AND x.status <> 'skipped' \
           ORDER BY x.started_at DESC, x.id DESC LIMIT 1 \
         ) e \
         WHERE names.job_name IS NOT NULL \
         ORDER BY e.job_name"
    )))
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The latest execution of one job, by the same rule as [`latest_per_job`].
pub async fn latest_of_job(
    conn: &mut AsyncPgConnection,
    job_name: &str,
) -> Result<Option<ExecutionRecord>, DbError> {
    use diesel::OptionalExtension;
    let row: Option<ExecutionRow> = Prepared(
        diesel::sql_query(format!(
            "SELECT {COLUMNS} FROM job_executions WHERE job_name = $1 AND status <> 'skipped' \
             ORDER BY started_at DESC, id DESC LIMIT 1"
        ))
        .bind::<diesel::sql_types::Text, _>(job_name),
    )
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map(Into::into))
}

/// The executions with these ids (those that still exist), in id order.
pub async fn by_ids(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
) -> Result<Vec<ExecutionRecord>, DbError> {
    let ids: Vec<i32> = ids
        .iter()
        .filter_map(|id| i32::try_from(*id).ok())
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<ExecutionRow> = Prepared(
        diesel::sql_query(format!(
            "SELECT {COLUMNS} FROM job_executions WHERE id = ANY($1) ORDER BY id"
        ))
        .bind::<diesel::sql_types::Array<diesel::sql_types::Integer>, _>(ids),
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// A page request over the execution history, newest first.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    /// Only this job.
    pub job_name: Option<String>,
    /// Only this status.
    pub status: Option<jobs_core::Status>,
    /// Only runs started this way (`schedule`, `catch_up`, `manual`).
    pub trigger: Option<jobs_core::Trigger>,
    /// Only dry runs (`true`) or only real ones (`false`).
    pub dry_run: Option<bool>,
    /// `started_at >= since`.
    pub since: chrono::DateTime<chrono::Utc>,
    /// `started_at < until`.
    pub until: chrono::DateTime<chrono::Utc>,
    /// Rows strictly older than this `(started_at, id)`: the previous page's last row.
    pub before: Option<(chrono::DateTime<chrono::Utc>, i64)>,
    /// Page size.
    pub limit: i64,
}

/// One page of history, newest first; `limit + 1` rows are read so the caller knows
/// whether another page follows. Served by the `(started_at DESC)` and
/// `(job_name, started_at DESC)` indexes.
pub async fn history(
    conn: &mut AsyncPgConnection,
    query: &HistoryQuery,
) -> Result<Vec<ExecutionRecord>, DbError> {
    use diesel::sql_types::{BigInt, Integer, Text, Timestamptz};

    // Binds are positional ($1, $2, …): the text and the bind list grow together.
    let mut sql =
        format!("SELECT {COLUMNS} FROM job_executions WHERE started_at >= $1 AND started_at < $2");
    let mut n = 2;
    let mut next = || {
        n += 1;
        n
    };
    if query.job_name.is_some() {
        sql.push_str(&format!(" AND job_name = ${}", next()));
    }
    if query.status.is_some() {
        sql.push_str(&format!(" AND status = ${}", next()));
    }
    if query.trigger.is_some() {
        sql.push_str(&format!(" AND triggered_by = ${}", next()));
    }
    if query.dry_run.is_some() {
        sql.push_str(&format!(" AND dry_run = ${}", next()));
    }
    if query.before.is_some() {
        let (a, b) = (next(), next());
        sql.push_str(&format!(" AND (started_at, id) < (${a}, ${b})"));
    }
    sql.push_str(&format!(
        " ORDER BY started_at DESC, id DESC LIMIT ${}",
        next()
    ));

    let mut boxed = diesel::sql_query(sql)
        .into_boxed::<diesel::pg::Pg>()
        .bind::<Timestamptz, _>(query.since)
        .bind::<Timestamptz, _>(query.until);
    if let Some(job) = &query.job_name {
        boxed = boxed.bind::<Text, _>(job.clone());
    }
    if let Some(status) = query.status {
        boxed = boxed.bind::<Text, _>(status.as_str());
    }
    if let Some(trigger) = query.trigger {
        boxed = boxed.bind::<Text, _>(trigger.as_str());
    }
    if let Some(dry_run) = query.dry_run {
        boxed = boxed.bind::<diesel::sql_types::Bool, _>(dry_run);
    }
    if let Some((started_at, id)) = query.before {
        boxed = boxed
            .bind::<Timestamptz, _>(started_at)
            .bind::<Integer, _>(i32::try_from(id).unwrap_or(i32::MAX));
    }
    // The text has a handful of shapes (which filters are set), so each is prepared once
    // per connection and only the binds vary.
    let rows: Vec<ExecutionRow> = Prepared(boxed.bind::<BigInt, _>(query.limit + 1))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The last successful execution of a job, if any; dry runs, which change nothing, are not.
pub async fn last_success(
    conn: &mut AsyncPgConnection,
    job_name: &str,
) -> Result<Option<ExecutionRecord>, DbError> {
    use diesel::OptionalExtension;
    let row: Option<ExecutionRow> = diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM job_executions WHERE job_name = $1 AND status = 'success' \
         AND NOT dry_run ORDER BY started_at DESC LIMIT 1"
    ))
    .bind::<diesel::sql_types::Text, _>(job_name)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map(Into::into))
}

/// The latest finished execution of a job that was not a dry run (nor a skipped slot):
/// the last real run, whose figures the `job_last_*` gauges show.
pub async fn last_finished(
    conn: &mut AsyncPgConnection,
    job_name: &str,
) -> Result<Option<ExecutionRecord>, DbError> {
    use diesel::OptionalExtension;
    let row: Option<ExecutionRow> = diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM job_executions WHERE job_name = $1 AND status <> 'skipped' \
         AND completed_at IS NOT NULL AND NOT dry_run ORDER BY started_at DESC, id DESC LIMIT 1"
    ))
    .bind::<diesel::sql_types::Text, _>(job_name)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map(Into::into))
}

/// How many executions of each job are running now.
pub async fn running_counts(conn: &mut AsyncPgConnection) -> Result<Vec<(String, i64)>, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Running {
        #[diesel(sql_type = diesel::sql_types::Text)]
        job_name: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows: Vec<Running> = diesel::sql_query(
        "SELECT job_name::text AS job_name, count(*) AS n FROM job_executions \
         WHERE status = 'running' GROUP BY job_name",
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.job_name, r.n)).collect())
}

/// Deletes finished executions that started more than `retention_days` ago, `batch` rows
/// per statement so that no statement holds many locks or runs long; returns how many
/// rows went. Running executions are never deleted, nor the history of the system this
/// service took the table over from: its rows are the ones without a `worker_id`, which
/// every execution recorded here has. That history is the operator's to delete.
pub async fn prune(
    conn: &mut AsyncPgConnection,
    retention_days: i32,
    batch: i64,
) -> Result<u64, DbError> {
    use diesel::sql_types::{BigInt, Integer};
    let mut total = 0u64;
    loop {
        let deleted = diesel::sql_query(
            "DELETE FROM job_executions WHERE id IN ( \
               SELECT id FROM job_executions \
               WHERE started_at < now() - make_interval(days => $1) AND status <> 'running' \
                 AND worker_id IS NOT NULL \
               ORDER BY started_at LIMIT $2)",
        )
        .bind::<Integer, _>(retention_days)
        .bind::<BigInt, _>(batch)
        .execute(conn)
        .await?;
        total += deleted as u64;
        if (deleted as i64) < batch {
            return Ok(total);
        }
        // Leave room for other work between batches.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
