//! State of failure notifications per job, shared by every server.
//!
//! One row per job in `job_notification_state`: whether the job is `ok`, `failing` or
//! `overdue`, since when, and when its last notice went out. This module only stores it;
//! the server decides what a run or a clock tick changes. Every write is a compare-and-set
//! on the row's `version`: a server reads the row ([`load_or_create`]), decides, and writes
//! ([`compare_and_set`]) only if nobody changed the row in between. When several servers
//! observe the same change, exactly one write wins, and only its server sends the notice.
//! All times come from the database's clock, so servers with skewed clocks agree.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz};
use diesel::OptionalExtension;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::DbError;

/// Longest error message kept in the state row; the execution row has the whole text.
const MAX_ERROR_LEN: usize = 2_000;

/// Columns read back as a [`StateRow`], with the database's clock as `now`.
const COLUMNS: &str = "job_name::text AS job_name, state::text AS state, since, watch_from, \
    last_success_at, last_failure_at, failures, last_execution_id, last_error, \
    last_notified_at, version, now() AS now";

/// What the notifications know about a job, as stored in `job_notification_state.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertState {
    /// Nothing to report: the last run succeeded, or nothing happened yet.
    Ok,
    /// The last run failed for good (after its retries).
    Failing,
    /// No success for longer than the overdue factor times the job's interval.
    Overdue,
}

impl AlertState {
    /// The stored value.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Ok => "ok",
            AlertState::Failing => "failing",
            AlertState::Overdue => "overdue",
        }
    }

    /// Reads a stored value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(AlertState::Ok),
            "failing" => Some(AlertState::Failing),
            "overdue" => Some(AlertState::Overdue),
            _ => None,
        }
    }
}

/// The changeable part of a job's notification state.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    /// The current state.
    pub state: AlertState,
    /// When the current state began.
    pub since: DateTime<Utc>,
    /// Overdue is measured from the later of this and `last_success_at`.
    pub watch_from: DateTime<Utc>,
    /// The last run that succeeded, as observed.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last run that failed for good, as observed.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Runs that failed for good since the state became `failing`.
    pub failures: i32,
    /// The newest execution applied; older or repeated ones change nothing.
    pub last_execution_id: Option<i64>,
    /// The error of the last failed run (shortened).
    pub last_error: Option<String>,
    /// When the last notice about this job was claimed.
    pub last_notified_at: Option<DateTime<Utc>>,
}

/// A job's row as read, with the version to compare against and the database's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAlert {
    /// The job.
    pub job_name: String,
    /// The row's version; [`compare_and_set`] succeeds only if it is unchanged.
    pub version: i64,
    /// The database's clock when the row was read; decisions use it as "now".
    pub now: DateTime<Utc>,
    /// The state.
    pub record: AlertRecord,
}

#[derive(diesel::QueryableByName)]
struct StateRow {
    #[diesel(sql_type = Text)]
    job_name: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Timestamptz)]
    since: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    watch_from: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_success_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_failure_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Integer)]
    failures: i32,
    #[diesel(sql_type = Nullable<Integer>)]
    last_execution_id: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_notified_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = Timestamptz)]
    now: DateTime<Utc>,
}

impl From<StateRow> for StoredAlert {
    fn from(row: StateRow) -> Self {
        StoredAlert {
            job_name: row.job_name,
            version: row.version,
            now: row.now,
            record: AlertRecord {
                // The CHECK constraint admits only the three values.
                state: AlertState::parse(&row.state).unwrap_or(AlertState::Ok),
                since: row.since,
                watch_from: row.watch_from,
                last_success_at: row.last_success_at,
                last_failure_at: row.last_failure_at,
                failures: row.failures,
                last_execution_id: row.last_execution_id.map(i64::from),
                last_error: row.last_error,
                last_notified_at: row.last_notified_at,
            },
        }
    }
}

/// Reads a job's row, `None` when it has none yet.
pub async fn load(
    conn: &mut AsyncPgConnection,
    job_name: &str,
) -> Result<Option<StoredAlert>, DbError> {
    let row: Option<StateRow> = diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM job_notification_state WHERE job_name = $1"
    ))
    .bind::<Text, _>(job_name)
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map(Into::into))
}

/// Reads a job's row, creating it (`ok`, watched from now) when it has none yet.
pub async fn load_or_create(
    conn: &mut AsyncPgConnection,
    job_name: &str,
) -> Result<StoredAlert, DbError> {
    // Two statements: a SELECT in the same statement as the INSERT would not see a row
    // that another server inserted concurrently.
    diesel::sql_query(
        "INSERT INTO job_notification_state (job_name) VALUES ($1) ON CONFLICT DO NOTHING",
    )
    .bind::<Text, _>(job_name)
    .execute(conn)
    .await?;
    load(conn, job_name)
        .await?
        .ok_or(DbError::Query(diesel::result::Error::NotFound))
}

/// Writes `record` if the row's version is still `expected_version`, and bumps the version.
/// Returns false when another server changed the row first: re-read and decide again.
pub async fn compare_and_set(
    conn: &mut AsyncPgConnection,
    job_name: &str,
    expected_version: i64,
    record: &AlertRecord,
) -> Result<bool, DbError> {
    let updated = diesel::sql_query(
        "UPDATE job_notification_state \
         SET state = $3, since = $4, watch_from = $5, last_success_at = $6, \
             last_failure_at = $7, failures = $8, last_execution_id = $9, last_error = $10, \
             last_notified_at = $11, version = version + 1, updated_at = now() \
         WHERE job_name = $1 AND version = $2",
    )
    .bind::<Text, _>(job_name)
    .bind::<BigInt, _>(expected_version)
    .bind::<Text, _>(record.state.as_str())
    .bind::<Timestamptz, _>(record.since)
    .bind::<Timestamptz, _>(record.watch_from)
    .bind::<Nullable<Timestamptz>, _>(record.last_success_at)
    .bind::<Nullable<Timestamptz>, _>(record.last_failure_at)
    .bind::<Integer, _>(record.failures.max(0))
    .bind::<Nullable<Integer>, _>(
        record
            .last_execution_id
            .and_then(|id| i32::try_from(id).ok()),
    )
    .bind::<Nullable<Text>, _>(record.last_error.as_deref().map(shorten))
    .bind::<Nullable<Timestamptz>, _>(record.last_notified_at)
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

fn shorten(message: &str) -> String {
    if message.len() <= MAX_ERROR_LEN {
        return message.to_owned();
    }
    let mut end = MAX_ERROR_LEN;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_stored_values() {
        for state in [AlertState::Ok, AlertState::Failing, AlertState::Overdue] {
            assert_eq!(AlertState::parse(state.as_str()), Some(state));
        }
        assert_eq!(AlertState::parse("broken"), None);
    }

    #[test]
    fn long_errors_are_shortened_on_a_character_boundary() {
        let long = "é".repeat(MAX_ERROR_LEN);
        let short = shorten(&long);
        assert!(short.len() <= MAX_ERROR_LEN + "…".len());
        assert!(short.ends_with('…'));
        assert_eq!(shorten("boom"), "boom");
    }
}
