//! Per-day figures of one job, for the dashboard's trend charts.

use diesel::sql_types::{BigInt, Integer, Jsonb, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::DbError;

/// One UTC day of a job.
#[derive(Debug, Clone, PartialEq, diesel::QueryableByName)]
pub struct DayTrend {
    /// `YYYY-MM-DD` (UTC).
    #[diesel(sql_type = Text)]
    pub day: String,
    /// Finished runs that started that day.
    #[diesel(sql_type = BigInt)]
    pub runs: i64,
    /// Of which succeeded.
    #[diesel(sql_type = BigInt)]
    pub succeeded: i64,
    /// Of which failed.
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
    /// Median duration; `None` on a day without runs.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub p50_ms: Option<i64>,
    /// 95th percentile duration.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub p95_ms: Option<i64>,
    /// The sum of each numeric stats key over the day's runs (`{}` without runs).
    #[diesel(sql_type = Jsonb, deserialize_as = crate::models::StoredJson)]
    pub stats: serde_json::Value,
}

/// The last `days` UTC days (today included), oldest first, one entry per day even without
/// runs. Counts finished runs that are not dry runs; slots recorded as skipped (message
/// `skipped: …`, written by the scheduler itself) are not runs and count nowhere. Served by
/// the `(job_name, started_at DESC)` index.
pub async fn daily(
    conn: &mut AsyncPgConnection,
    job_name: &str,
    days: i32,
) -> Result<Vec<DayTrend>, DbError> {
    // A row closed at the takeover, or closed because no server of this service ever
    // held it, measured nothing: its duration is the time until it was noticed (days, for
    // a run the old system left behind). It counts as a failed run, not in the durations.
    Ok(diesel::sql_query(format!(
        "WITH bounds AS ( \
           SELECT (now() AT TIME ZONE 'UTC')::date - ($2 - 1) AS first_day, \
                  (now() AT TIME ZONE 'UTC')::date AS last_day \
         ), runs AS ( \
           SELECT (e.started_at AT TIME ZONE 'UTC')::date AS day, e.status, e.duration_ms, e.stats, \
                  e.error_message IS NULL OR (e.error_message NOT LIKE '{takeover}%' \
                    AND e.error_message NOT LIKE '{unleased}%') AS timed \
           FROM job_executions e, bounds b \
           WHERE e.job_name = $1 \
             AND e.started_at >= b.first_day::timestamp AT TIME ZONE 'UTC' \
             AND e.status IN ('success', 'failed') AND NOT e.dry_run \
             AND (e.error_message IS NULL OR e.error_message NOT LIKE 'skipped:%') \
         ), days AS ( \
           SELECT d::date AS day FROM bounds b, \
             generate_series(b.first_day::timestamp, b.last_day::timestamp, interval '1 day') d \
         ), sums AS ( \
           SELECT r.day, jsonb_object_agg(s.key, s.total) AS stats FROM ( \
             SELECT r.day, kv.key, sum((kv.value)::numeric) AS total \
             FROM runs r, jsonb_each(CASE WHEN jsonb_typeof(r.stats) = 'object' \
                                          THEN r.stats ELSE '{{}}'::jsonb END) kv \
             WHERE jsonb_typeof(kv.value) = 'number' GROUP BY r.day, kv.key \
           ) s JOIN (SELECT DISTINCT day FROM runs) r ON r.day = s.day GROUP BY r.day \
         ) \
         SELECT to_char(d.day, 'YYYY-MM-DD') AS day, \
                count(r.status) AS runs, \
                count(*) FILTER (WHERE r.status = 'success') AS succeeded, \
                count(*) FILTER (WHERE r.status = 'failed') AS failed, \
                round(percentile_cont(0.5) WITHIN GROUP (ORDER BY r.duration_ms) \
                  FILTER (WHERE r.timed))::bigint AS p50_ms, \
                round(percentile_cont(0.95) WITHIN GROUP (ORDER BY r.duration_ms) \
                  FILTER (WHERE r.timed))::bigint AS p95_ms, \
                COALESCE((SELECT s.stats FROM sums s WHERE s.day = d.day), '{{}}'::jsonb) AS stats \
         FROM days d LEFT JOIN runs r ON r.day = d.day \
         GROUP BY d.day ORDER BY d.day",
        takeover = crate::TAKEOVER_MESSAGE_PREFIX,
        unleased = crate::execution_log::UNLEASED_MESSAGE_PREFIX,
    ))
    .bind::<Text, _>(job_name)
    .bind::<Integer, _>(days)
    .load(conn)
    .await?)
}
