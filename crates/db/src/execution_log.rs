//! The PostgreSQL implementation of the runner's execution log.
//!
//! Claims are inserts that the two unique indexes arbitrate (one row per slot and attempt,
//! one running row per job); every later change is a compare-and-set on
//! `status = 'running'`, and all times come from the database's clock so that servers with
//! skewed clocks agree on leases and durations.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::sql_types::{Bool, Double, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel::OptionalExtension;
use diesel_async::RunQueryDsl;
use jobs_core::capture::RunEvent;
use jobs_core::log::MAX_LEASE;
use jobs_core::{
    Beat, CancelRequest, Claim, Completion, ExecutionLog, ExecutionRecord, LogError, NewExecution,
    Stats,
};

use crate::models::ExecutionRow;
use crate::{DbError, Pool, PooledConnection};

/// Columns read back as an [`ExecutionRow`].
pub(crate) const COLUMNS: &str = "id, job_name, status, started_at, completed_at, duration_ms, \
    stats, error_message, scheduled_for, triggered_by, attempt, dry_run, worker_id, requested_by";

/// `completed_at - started_at` in whole milliseconds, by the database's clock; capped at
/// the column's range (24.8 days), so that a very long run still closes.
const DURATION_SQL: &str = "LEAST(2147483647, \
    GREATEST(0, FLOOR(EXTRACT(EPOCH FROM (now() - started_at)) * 1000)))::int";

/// A lease in seconds for `make_interval`, capped so that no timestamp overflows.
fn lease_secs(lease: Duration) -> f64 {
    lease.min(MAX_LEASE).as_secs_f64()
}

/// The same in whole seconds (at least 1), for a message.
fn whole_secs(lease: Duration) -> i32 {
    i32::try_from(lease.min(MAX_LEASE).as_secs().max(1)).unwrap_or(i32::MAX)
}

/// SQL for a `timestamptz` column as RFC 3339 text in UTC, to the second.
fn utc_text(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
}

/// Longest error message stored; longer ones are cut with a marker.
pub(crate) const MAX_ERROR_LEN: usize = 8 * 1024;

/// How long a `running` row without a lease is left alone by default: the default lease.
pub const DEFAULT_UNLEASED_GRACE: Duration = Duration::from_secs(60);

/// What the `error_message` of a `running` row that never had a lease starts with once the
/// lease check closes it.
pub const UNLEASED_MESSAGE_PREFIX: &str = "interrupted: running without a lease";

/// [`ExecutionLog`] on the `job_executions` table.
#[derive(Clone)]
pub struct PgExecutionLog {
    pool: Pool,
    unleased_grace: Duration,
}

impl std::fmt::Debug for PgExecutionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgExecutionLog")
            .field("pool", &self.pool.status())
            .field("unleased_grace", &self.unleased_grace)
            .finish()
    }
}

impl PgExecutionLog {
    /// A log writing through `pool`.
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            unleased_grace: DEFAULT_UNLEASED_GRACE,
        }
    }

    /// How long [`ExecutionLog::expire_leases`] leaves a `running` row that has no lease
    /// (written by another system, or by hand: every row this service writes has one)
    /// before closing it, counted from its start or last heartbeat. Such a row would
    /// otherwise hold the job's one running place for ever. A server passes its own lease.
    pub fn unleased_grace(mut self, grace: Duration) -> Self {
        self.unleased_grace = grace;
        self
    }

    async fn conn(&self) -> Result<PooledConnection, LogError> {
        self.pool
            .get()
            .await
            .map_err(|e| LogError(DbError::from(e).to_string()))
    }
}

fn log_err(e: diesel::result::Error) -> LogError {
    LogError(DbError::Query(e).to_string())
}

fn truncate(message: &str) -> String {
    if message.len() <= MAX_ERROR_LEN {
        return message.to_owned();
    }
    let mut end = MAX_ERROR_LEN;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (truncated)", &message[..end])
}

/// How many times a claim is tried while its conflicts go unexplained.
const CLAIM_TRIES: usize = 3;

/// The claim's insert: `None` when a unique index or a pause stopped it.
async fn try_claim(
    conn: &mut PooledConnection,
    new: &NewExecution,
) -> Result<Option<ExecutionRow>, LogError> {
    diesel::sql_query(format!(
        "INSERT INTO job_executions \
           (job_name, status, scheduled_for, triggered_by, attempt, dry_run, worker_id, \
            heartbeat_at, lease_expires_at, requested_by) \
         SELECT $1, 'running', $2, $3, $4, $5, $6, now(), now() + make_interval(secs => $7), $8 \
         WHERE $2::timestamptz IS NULL OR ( \
           NOT EXISTS (SELECT 1 FROM job_controls c WHERE c.job_name = $1 AND c.paused) \
           AND ($4 <= 1 OR NOT EXISTS (SELECT 1 FROM job_executions l \
             WHERE l.job_name = $1 AND l.scheduled_for > $2))) \
         ON CONFLICT DO NOTHING \
         RETURNING {COLUMNS}"
    ))
    .bind::<Text, _>(&new.job_name)
    .bind::<Nullable<Timestamptz>, _>(new.scheduled_for)
    .bind::<Text, _>(new.trigger.as_str())
    .bind::<Integer, _>(i32::try_from(new.attempt).unwrap_or(i32::MAX))
    .bind::<Bool, _>(new.dry_run)
    .bind::<Text, _>(&new.worker_id)
    .bind::<Double, _>(lease_secs(new.lease))
    .bind::<Nullable<Text>, _>(new.requested_by.as_deref())
    .get_result(&mut *conn)
    .await
    .optional()
    .map_err(log_err)
}

/// Why a claim's insert was stopped: the slot is taken, the job paused, a run of it going
/// on, or the id sequence behind the table's ids. `None`: none of these holds now, so the
/// conflict was with a run that has ended since, and the claim may be tried again.
async fn conflict(
    conn: &mut PooledConnection,
    new: &NewExecution,
) -> Result<Option<Claim>, LogError> {
    #[derive(diesel::QueryableByName)]
    struct State {
        #[diesel(sql_type = Bool)]
        taken: bool,
        #[diesel(sql_type = Bool)]
        paused: bool,
        #[diesel(sql_type = Bool)]
        running: bool,
        #[diesel(sql_type = Bool)]
        behind: bool,
    }
    // One look at every cause. For a slot: its attempt is recorded (a retry of a slot is
    // moot once a later slot is recorded: taken, in effect), or the job is paused. Then
    // the other unique index: one running execution per job. Any other conflict is the
    // primary key's when the id sequence is behind the table's ids (set back by hand).
    let state: State = diesel::sql_query(
        "SELECT $2::timestamptz IS NOT NULL AND EXISTS (SELECT 1 FROM job_executions \
             WHERE job_name = $1 AND ((scheduled_for = $2 AND attempt = $3) \
               OR ($3 > 1 AND scheduled_for > $2))) AS taken, \
           $2::timestamptz IS NOT NULL AND EXISTS (SELECT 1 FROM job_controls \
             WHERE job_name = $1 AND paused) AS paused, \
           EXISTS (SELECT 1 FROM job_executions \
             WHERE job_name = $1 AND status = 'running') AS running, \
           COALESCE((SELECT max(id) FROM job_executions) >= pg_sequence_last_value( \
             pg_get_serial_sequence('public.job_executions', 'id')::regclass), false) AS behind",
    )
    .bind::<Text, _>(&new.job_name)
    .bind::<Nullable<Timestamptz>, _>(new.scheduled_for)
    .bind::<Integer, _>(i32::try_from(new.attempt).unwrap_or(i32::MAX))
    .get_result(&mut *conn)
    .await
    .map_err(log_err)?;
    if state.taken {
        Ok(Some(Claim::SlotTaken))
    } else if state.paused {
        Ok(Some(Claim::Paused))
    } else if state.running {
        Ok(Some(Claim::AlreadyRunning))
    } else if state.behind {
        Ok(Some(Claim::Conflict(format!(
            "the new execution of {} conflicted with an existing row although none is \
             running: job_executions' id sequence behind its ids; move it on with SELECT setval(\
             pg_get_serial_sequence('public.job_executions', 'id'), \
             (SELECT max(id) FROM public.job_executions))",
            new.job_name
        ))))
    } else {
        Ok(None)
    }
}

#[async_trait]
impl ExecutionLog for PgExecutionLog {
    async fn claim(&self, new: &NewExecution) -> Result<Claim, LogError> {
        let mut conn = self.conn().await?;
        // A conflict with a running row that ends before it is looked for is tried again:
        // the run it met is over, so the job is free. Only a conflict that stays unexplained
        // is reported as one.
        for _ in 0..CLAIM_TRIES {
            if let Some(row) = try_claim(&mut conn, new).await? {
                return Ok(Claim::Started {
                    id: i64::from(row.id),
                    started_at: row.started_at,
                });
            }
            match conflict(&mut conn, new).await? {
                Some(claim) => return Ok(claim),
                None => continue,
            }
        }
        Ok(Claim::Conflict(format!(
            "the new execution of {} conflicted with an existing row {CLAIM_TRIES} times \
             although none is running: is there a unique index on job_executions that is \
             not this service's?",
            new.job_name
        )))
    }

    async fn heartbeat(
        &self,
        id: i64,
        lease: Duration,
        progress: Option<&Stats>,
    ) -> Result<Beat, LogError> {
        #[derive(diesel::QueryableByName)]
        struct Renewed {
            #[diesel(sql_type = Nullable<Text>)]
            cancel_requested_by: Option<String>,
        }
        let mut conn = self.conn().await?;
        // The same statement hands back an operator's cancel request, so a run on any
        // server learns of it within one heartbeat.
        let renewed: Option<Renewed> = diesel::sql_query(
            "UPDATE job_executions \
             SET heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => $2), \
                 stats = COALESCE($3, stats) \
             WHERE id = $1 AND status = 'running' \
             RETURNING cancel_requested_by::text AS cancel_requested_by",
        )
        .bind::<Integer, _>(to_i32(id))
        .bind::<Double, _>(lease_secs(lease))
        .bind::<Nullable<Jsonb>, _>(progress.map(Stats::to_json))
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(log_err)?;
        Ok(match renewed {
            None => Beat::Closed,
            Some(Renewed {
                cancel_requested_by: Some(actor),
            }) => Beat::CancelRequested(actor),
            Some(_) => Beat::Renewed,
        })
    }

    async fn request_cancel(&self, id: i64, actor: &str) -> Result<CancelRequest, LogError> {
        let mut conn = self.conn().await?;
        request_cancel(&mut conn, id, actor)
            .await
            .map_err(|e| LogError(e.to_string()))
    }

    async fn complete(
        &self,
        id: i64,
        completion: &Completion,
    ) -> Result<Option<ExecutionRecord>, LogError> {
        let mut conn = self.conn().await?;
        let row: Option<ExecutionRow> = diesel::sql_query(format!(
            "UPDATE job_executions \
             SET status = $2, completed_at = now(), duration_ms = {DURATION_SQL}, \
                 stats = $3, error_message = $4, lease_expires_at = NULL, \
                 retry_at = now() + make_interval(secs => $5) \
             WHERE id = $1 AND status = 'running' \
             RETURNING {COLUMNS}"
        ))
        .bind::<Integer, _>(to_i32(id))
        .bind::<Text, _>(completion.status.as_str())
        .bind::<Jsonb, _>(completion.stats.to_json())
        .bind::<Nullable<Text>, _>(completion.error_message.as_deref().map(truncate))
        .bind::<Nullable<diesel::sql_types::Double>, _>(
            completion.retry_in.map(|d| d.as_secs_f64()),
        )
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(log_err)?;
        Ok(row.map(Into::into))
    }

    async fn overdue_retries(&self, margin: Duration) -> Result<Vec<ExecutionRecord>, LogError> {
        let mut conn = self.conn().await?;
        // Within the last six hours (the longest backoff): older ones are history. A later
        // attempt of the slot, or any later slot (run, skipped or failed), means the retry
        // was taken or is moot; so does a pause or resume since the attempt failed (a
        // resumed job starts again from its next slot).
        let rows: Vec<ExecutionRow> = diesel::sql_query(format!(
            "SELECT {COLUMNS} FROM job_executions f \
             WHERE f.retry_at IS NOT NULL \
               AND f.retry_at < now() - make_interval(secs => $1) \
               AND f.retry_at > now() - interval '6 hours' - make_interval(secs => $1) \
               AND f.status = 'failed' AND f.scheduled_for IS NOT NULL AND NOT f.dry_run \
               AND NOT EXISTS (SELECT 1 FROM job_executions n \
                 WHERE n.job_name = f.job_name AND n.scheduled_for IS NOT NULL \
                   AND (n.scheduled_for, n.attempt) > (f.scheduled_for, f.attempt)) \
               AND NOT EXISTS (SELECT 1 FROM job_controls c \
                 WHERE c.job_name = f.job_name AND c.updated_at > f.completed_at) \
             ORDER BY f.retry_at LIMIT 20"
        ))
        .bind::<diesel::sql_types::Double, _>(margin.as_secs_f64())
        .load(&mut conn)
        .await
        .map_err(log_err)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn hand_over(&self, id: i64, stats: &Stats, message: &str) -> Result<bool, LogError> {
        let mut conn = self.conn().await?;
        // A running row never has a message of its own: the lease check keeps this one.
        // Only while another server is alive (seen within two of its heartbeats) to take
        // it; otherwise the caller closes the row, and nothing is left running.
        let handed = diesel::sql_query(
            "UPDATE job_executions e \
             SET stats = $2, error_message = $3, lease_expires_at = now() - interval '1 ms' \
             WHERE e.id = $1 AND e.status = 'running' AND e.lease_expires_at IS NOT NULL \
               AND EXISTS (SELECT 1 FROM job_workers w \
                 WHERE w.worker_id IS DISTINCT FROM e.worker_id \
                   AND w.last_seen_at > now() - make_interval(secs => 2 * w.heartbeat_secs))",
        )
        .bind::<Integer, _>(to_i32(id))
        .bind::<Jsonb, _>(stats.to_json())
        .bind::<Text, _>(truncate(message))
        .execute(&mut conn)
        .await
        .map_err(log_err)?;
        Ok(handed == 1)
    }

    async fn expire_leases(&self) -> Result<Vec<ExecutionRecord>, LogError> {
        let mut conn = self.conn().await?;
        // GREATEST skips a NULL heartbeat; `$1` is a whole number of seconds.
        let rows: Vec<ExecutionRow> = diesel::sql_query(format!(
            "UPDATE job_executions \
             SET status = 'failed', completed_at = now(), duration_ms = {DURATION_SQL}, \
                 error_message = CASE WHEN cancel_requested_by IS NOT NULL \
                   THEN 'cancelled by ' || cancel_requested_by || ': server ' \
                     || COALESCE(worker_id, 'unknown') || ' stopped before the run did' \
                     || COALESCE(' (its lease expired ' || {EXPIRED} || ')', '') \
                   WHEN lease_expires_at IS NULL \
                   THEN '{UNLEASED_MESSAGE_PREFIX} since ' || {STARTED} \
                     || ', so no server of this service was running it (another system or a \
                     hand-written row); closed after ' || $1 || ' s' \
                   ELSE COALESCE(error_message, 'interrupted: server ' \
                     || COALESCE(worker_id, 'unknown') \
                     || ' stopped renewing its lease (expired ' || {EXPIRED} || ')') END, \
                 lease_expires_at = NULL \
             WHERE status = 'running' AND (lease_expires_at < now() \
               OR (lease_expires_at IS NULL \
                   AND GREATEST(started_at, heartbeat_at) < now() - make_interval(secs => $1)))\
             RETURNING {COLUMNS}",
            STARTED = utc_text("started_at"),
            EXPIRED = utc_text("lease_expires_at"),
        ))
        .bind::<Integer, _>(whole_secs(self.unleased_grace))
        .load(&mut conn)
        .await
        .map_err(log_err)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn close_orphans(
        &self,
        worker_id: &str,
        reason: &str,
    ) -> Result<Vec<ExecutionRecord>, LogError> {
        let mut conn = self.conn().await?;
        let rows: Vec<ExecutionRow> = diesel::sql_query(format!(
            "UPDATE job_executions \
             SET status = 'failed', completed_at = now(), duration_ms = {DURATION_SQL}, \
                 error_message = CASE WHEN cancel_requested_by IS NOT NULL \
                   THEN 'cancelled by ' || cancel_requested_by || '; ' || $2 ELSE $2 END, \
                 lease_expires_at = NULL \
             WHERE status = 'running' AND worker_id = $1 \
             RETURNING {COLUMNS}"
        ))
        .bind::<Text, _>(worker_id)
        .bind::<Text, _>(reason)
        .load(&mut conn)
        .await
        .map_err(log_err)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn last_slot(&self, job_name: &str) -> Result<Option<DateTime<Utc>>, LogError> {
        #[derive(diesel::QueryableByName)]
        struct Slot {
            #[diesel(sql_type = Nullable<Timestamptz>)]
            slot: Option<DateTime<Utc>>,
        }
        let mut conn = self.conn().await?;
        // Served by the (job_name, scheduled_for, attempt) unique index.
        let slot: Slot = diesel::sql_query(
            "SELECT max(scheduled_for) AS slot FROM job_executions WHERE job_name = $1",
        )
        .bind::<Text, _>(job_name)
        .get_result(&mut conn)
        .await
        .map_err(log_err)?;
        Ok(slot.slot)
    }

    async fn record_skipped(
        &self,
        job_name: &str,
        slot: DateTime<Utc>,
        worker_id: &str,
        reason: &str,
    ) -> Result<bool, LogError> {
        let mut conn = self.conn().await?;
        let inserted = diesel::sql_query(
            "INSERT INTO job_executions \
               (job_name, status, started_at, completed_at, duration_ms, stats, error_message, \
                scheduled_for, triggered_by, attempt, worker_id) \
             VALUES ($1, 'skipped', now(), now(), 0, '{}', $2, $3, 'schedule', 1, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind::<Text, _>(job_name)
        .bind::<Text, _>(truncate(reason))
        .bind::<Timestamptz, _>(slot)
        .bind::<Text, _>(worker_id)
        .execute(&mut conn)
        .await
        .map_err(log_err)?;
        Ok(inserted == 1)
    }

    async fn record_events(
        &self,
        id: i64,
        events: &[RunEvent],
        dropped: u64,
    ) -> Result<(), LogError> {
        let mut conn = self.conn().await?;
        crate::events::insert(&mut conn, id, events, dropped)
            .await
            .map_err(|e| LogError(e.to_string()))
    }

    async fn latest_per_job(&self) -> Result<Vec<ExecutionRecord>, LogError> {
        let mut conn = self.conn().await?;
        crate::executions::latest_per_job(&mut conn)
            .await
            .map_err(|e| LogError(e.to_string()))
    }
}

fn to_i32(id: i64) -> i32 {
    i32::try_from(id).unwrap_or(-1)
}

/// Reads one execution by id.
pub async fn find(
    conn: &mut PooledConnection,
    id: i64,
) -> Result<Option<ExecutionRecord>, DbError> {
    let row: Option<ExecutionRow> = diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM job_executions WHERE id = $1"
    ))
    .bind::<Integer, _>(to_i32(id))
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map(Into::into))
}

/// Records a request to cancel a running execution (the first request wins); the server
/// running it reads it at its next heartbeat.
pub async fn request_cancel(
    conn: &mut PooledConnection,
    id: i64,
    actor: &str,
) -> Result<CancelRequest, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = Bool)]
        found: bool,
    }
    // Nothing would ever stop a row that no live server holds: it is closed here.
    let closed = diesel::sql_query(format!(
        "UPDATE job_executions \
         SET status = 'failed', completed_at = now(), duration_ms = {DURATION_SQL}, \
             error_message = 'cancelled by ' || $2 || ': no server held it (' \
               || CASE WHEN lease_expires_at IS NULL THEN 'it never had a lease' \
                  ELSE 'its lease had expired at ' || {EXPIRED} END || ')', \
             cancel_requested_at = COALESCE(cancel_requested_at, now()), \
             cancel_requested_by = COALESCE(cancel_requested_by, $2), \
             lease_expires_at = NULL \
         WHERE id = $1 AND status = 'running' \
           AND (lease_expires_at IS NULL OR lease_expires_at < now())",
        EXPIRED = utc_text("lease_expires_at"),
    ))
    .bind::<Integer, _>(to_i32(id))
    .bind::<Text, _>(actor)
    .execute(conn)
    .await?;
    if closed == 1 {
        return Ok(CancelRequest::Closed);
    }
    let updated = diesel::sql_query(
        "UPDATE job_executions \
         SET cancel_requested_at = COALESCE(cancel_requested_at, now()), \
             cancel_requested_by = COALESCE(cancel_requested_by, $2) \
         WHERE id = $1 AND status = 'running'",
    )
    .bind::<Integer, _>(to_i32(id))
    .bind::<Text, _>(actor)
    .execute(conn)
    .await?;
    if updated == 1 {
        return Ok(CancelRequest::Requested);
    }
    let found: Found =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM job_executions WHERE id = $1) AS found")
            .bind::<Integer, _>(to_i32(id))
            .get_result(conn)
            .await?;
    Ok(if found.found {
        CancelRequest::NotRunning
    } else {
        CancelRequest::NotFound
    })
}
