//! The live servers (`job_workers`): each `serve` upserts its row every heartbeat and
//! deletes it when it stops cleanly; a row not renewed for two of its own heartbeats
//! belongs to a server that is gone, and is not listed.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Integer, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::DbError;

/// A live server.
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName)]
pub struct WorkerRow {
    /// Its `WORKER_ID`.
    #[diesel(sql_type = Text)]
    pub worker_id: String,
    /// The binary's version.
    #[diesel(sql_type = Text)]
    pub version: String,
    /// When the process started.
    #[diesel(sql_type = Timestamptz)]
    pub started_at: DateTime<Utc>,
    /// Its latest heartbeat.
    #[diesel(sql_type = Timestamptz)]
    pub last_seen_at: DateTime<Utc>,
    /// The executions it runs now.
    #[diesel(sql_type = Array<BigInt>)]
    pub running: Vec<i64>,
    /// What it schedules, as it wrote it ([`heartbeat`]); `null` for a server of an
    /// earlier version.
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    pub settings: serde_json::Value,
}

/// Says that `worker_id` is alive; also forgets servers silent for more than a day.
pub async fn heartbeat(
    conn: &mut AsyncPgConnection,
    worker_id: &str,
    version: &str,
    started_at: DateTime<Utc>,
    heartbeat_secs: i32,
    settings: &serde_json::Value,
) -> Result<(), DbError> {
    diesel::sql_query(
        "INSERT INTO job_workers (worker_id, version, started_at, last_seen_at, heartbeat_secs, \
                                  settings) \
         VALUES ($1, $2, $3, now(), $4, $5) \
         ON CONFLICT (worker_id) DO UPDATE SET version = EXCLUDED.version, \
           started_at = EXCLUDED.started_at, last_seen_at = now(), \
           heartbeat_secs = EXCLUDED.heartbeat_secs, settings = EXCLUDED.settings",
    )
    .bind::<Text, _>(worker_id)
    .bind::<Text, _>(version)
    .bind::<Timestamptz, _>(started_at)
    .bind::<Integer, _>(heartbeat_secs.max(1))
    .bind::<diesel::sql_types::Jsonb, _>(settings)
    .execute(conn)
    .await?;
    diesel::sql_query("DELETE FROM job_workers WHERE last_seen_at < now() - interval '1 day'")
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes a server that stops cleanly.
pub async fn remove(conn: &mut AsyncPgConnection, worker_id: &str) -> Result<(), DbError> {
    diesel::sql_query("DELETE FROM job_workers WHERE worker_id = $1")
        .bind::<Text, _>(worker_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The servers heard from within two of their heartbeats, with what each runs now.
pub async fn live(conn: &mut AsyncPgConnection) -> Result<Vec<WorkerRow>, DbError> {
    Ok(diesel::sql_query(
        "SELECT w.worker_id::text AS worker_id, w.version::text AS version, w.started_at, \
                w.last_seen_at, \
                ARRAY(SELECT e.id::bigint FROM job_executions e \
                      WHERE e.status = 'running' AND e.worker_id = w.worker_id ORDER BY e.id) \
                  AS running, \
                coalesce(w.settings, 'null'::jsonb) AS settings \
         FROM job_workers w \
         WHERE w.last_seen_at > now() - make_interval(secs => 2 * w.heartbeat_secs) \
         ORDER BY w.worker_id",
    )
    .load(conn)
    .await?)
}
