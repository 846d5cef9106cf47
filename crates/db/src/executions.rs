//! Read queries over the execution history, for the status API and the dashboard.

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use jobs_core::ExecutionRecord;

use crate::execution_log::COLUMNS;
use crate::models::ExecutionRow;
use crate::DbError;

/// The latest execution of each job that ever ran, ordered by job name.
///
/// A loose index scan: the recursive part hops from one job name to the next through the
/// `(job_name)` index, and each hop reads one row through `(job_name, started_at DESC)`,
/// so the cost grows with the number of jobs, not with the length of the history.
pub async fn latest_per_job(conn: &mut AsyncPgConnection) -> Result<Vec<ExecutionRecord>, DbError> {
    let rows: Vec<ExecutionRow> = diesel::sql_query(format!(
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
           WHERE x.job_name = names.job_name \
           ORDER BY x.started_at DESC, x.id DESC LIMIT 1 \
         ) e \
         WHERE names.job_name IS NOT NULL \
         ORDER BY e.job_name"
    ))
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}
