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

/// Reads a job's row, creating it (`ok`) when it has none yet. A new row starts from the
/// job's last real success in the history, when it has one (a database taken over from
/// another system, or a job watched for the first time): overdue is measured from it.
/// Without one, the job is watched from now, so a fresh install does not alert at once.
pub async fn load_or_create(
    conn: &mut AsyncPgConnection,
    job_name: &str,
) -> Result<StoredAlert, DbError> {
    if let Some(stored) = load(conn, job_name).await? {
        return Ok(stored);
    }
    // Two statements: a SELECT in the same statement as the INSERT would not see a row
    // that another server inserted concurrently.
    diesel::sql_query(
        "INSERT INTO job_notification_state (job_name, watch_from, last_success_at) \
         SELECT $1, coalesce(s.at, now()), s.at FROM ( \
           SELECT (SELECT coalesce(completed_at, started_at) FROM job_executions \
                   WHERE job_name = $1 AND status = 'success' AND NOT dry_run \
                   ORDER BY started_at DESC, id DESC LIMIT 1) AS at \
         ) s \
         ON CONFLICT DO NOTHING",
    )
    .bind::<Text, _>(job_name)
    .execute(conn)
    .await?;
    load(conn, job_name)
        .await?
        .ok_or(DbError::Query(diesel::result::Error::NotFound))
}

/// A notice as its channels send it, for the outbox ([`compare_and_set`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotice {
    /// `failure`, `recovery`, `overdue`, `reminder`.
    pub kind: String,
    /// The e-mail's subject.
    pub subject: String,
    /// The e-mail's text part.
    pub plain_text: String,
    /// The e-mail's HTML part.
    pub html: String,
    /// The webhook's JSON body.
    pub webhook_body: serde_json::Value,
    /// The e-mail's Message-ID, the same for every copy.
    pub message_id: String,
    /// Whether it goes by e-mail.
    pub email: bool,
    /// Whether it goes to the webhook.
    pub webhook: bool,
}

/// A notice waiting in the outbox, as claimed by a sender.
#[derive(Debug, Clone, PartialEq, diesel::QueryableByName)]
pub struct PendingNotice {
    /// Its id.
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    /// The job it is about.
    #[diesel(sql_type = Text)]
    pub job_name: String,
    /// `failure`, `recovery`, …
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// The e-mail's subject.
    #[diesel(sql_type = Text)]
    pub subject: String,
    /// The e-mail's text part.
    #[diesel(sql_type = Text)]
    pub plain_text: String,
    /// The e-mail's HTML part.
    #[diesel(sql_type = Text)]
    pub html: String,
    /// The webhook's body.
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    pub webhook_body: serde_json::Value,
    /// The e-mail's Message-ID.
    #[diesel(sql_type = Text)]
    pub message_id: String,
    /// Still to be sent by e-mail.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub email_pending: bool,
    /// Still to be sent to the webhook.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub webhook_pending: bool,
    /// Delivery passes made so far.
    #[diesel(sql_type = Integer)]
    pub tries: i32,
}

const NOTICE_COLUMNS: &str = "id, job_name::text AS job_name, kind::text AS kind, subject, \
    plain_text, html, webhook_body, message_id, email_pending, webhook_pending, tries";

/// Writes `record` if the row's version is still `expected_version`, and bumps the version.
/// Returns false when another server changed the row first: re-read and decide again.
pub async fn compare_and_set(
    conn: &mut AsyncPgConnection,
    job_name: &str,
    expected_version: i64,
    record: &AlertRecord,
) -> Result<bool, DbError> {
    Ok(
        compare_and_set_with_notice(conn, job_name, expected_version, record, None)
            .await?
            .0,
    )
}

/// [`compare_and_set`], and in the same statement, when the write wins, puts `notice` in
/// the outbox, claimed by the caller. Returns whether the write won, and the notice's id.
pub async fn compare_and_set_with_notice(
    conn: &mut AsyncPgConnection,
    job_name: &str,
    expected_version: i64,
    record: &AlertRecord,
    notice: Option<&NewNotice>,
) -> Result<(bool, Option<i64>), DbError> {
    #[derive(diesel::QueryableByName)]
    struct Outcome {
        #[diesel(sql_type = BigInt)]
        won: i64,
        #[diesel(sql_type = Nullable<BigInt>)]
        notice_id: Option<i64>,
    }
    let outcome: Outcome = diesel::sql_query(
        "WITH updated AS ( \
           UPDATE job_notification_state \
           SET state = $3, since = $4, watch_from = $5, last_success_at = $6, \
               last_failure_at = $7, failures = $8, last_execution_id = $9, last_error = $10, \
               last_notified_at = $11, version = version + 1, updated_at = now() \
           WHERE job_name = $1 AND version = $2 \
           RETURNING job_name \
         ), inserted AS ( \
           INSERT INTO job_notices (job_name, kind, subject, plain_text, html, webhook_body, \
                                    message_id, email_pending, webhook_pending) \
           SELECT $1, $12, $13, $14, $15, $16, $17, $18, $19 FROM updated WHERE $12 IS NOT NULL \
           RETURNING id \
         ) \
         SELECT (SELECT count(*) FROM updated) AS won, (SELECT id FROM inserted) AS notice_id",
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
    .bind::<Nullable<Text>, _>(notice.map(|n| n.kind.as_str()))
    .bind::<Text, _>(notice.map_or("", |n| n.subject.as_str()))
    .bind::<Text, _>(notice.map_or("", |n| n.plain_text.as_str()))
    .bind::<Text, _>(notice.map_or("", |n| n.html.as_str()))
    .bind::<diesel::sql_types::Jsonb, _>(
        notice.map_or(serde_json::Value::Null, |n| n.webhook_body.clone()),
    )
    .bind::<Text, _>(notice.map_or("", |n| n.message_id.as_str()))
    .bind::<diesel::sql_types::Bool, _>(notice.is_some_and(|n| n.email))
    .bind::<diesel::sql_types::Bool, _>(notice.is_some_and(|n| n.webhook))
    .get_result(conn)
    .await?;
    Ok((outcome.won == 1, outcome.notice_id))
}

/// Settles a delivery pass of a claimed notice: deleted when no channel is left,
/// otherwise kept with the channels still to send, its error and a fresh claim time (it
/// is tried again once the claim is old).
pub async fn settle_notice(
    conn: &mut AsyncPgConnection,
    id: i64,
    email_pending: bool,
    webhook_pending: bool,
    error: Option<&str>,
) -> Result<(), DbError> {
    if !email_pending && !webhook_pending {
        diesel::sql_query("DELETE FROM job_notices WHERE id = $1")
            .bind::<BigInt, _>(id)
            .execute(conn)
            .await?;
        return Ok(());
    }
    diesel::sql_query(
        "UPDATE job_notices SET email_pending = $2, webhook_pending = $3, tries = tries + 1, \
         last_error = $4, claimed_at = now() WHERE id = $1",
    )
    .bind::<BigInt, _>(id)
    .bind::<diesel::sql_types::Bool, _>(email_pending)
    .bind::<diesel::sql_types::Bool, _>(webhook_pending)
    .bind::<Nullable<Text>, _>(error.map(shorten))
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that one channel took a notice, as soon as it did: a crash before the other
/// channel is done does not send it again through this one.
pub async fn channel_done(
    conn: &mut AsyncPgConnection,
    id: i64,
    email: bool,
) -> Result<(), DbError> {
    let column = if email {
        "email_pending"
    } else {
        "webhook_pending"
    };
    diesel::sql_query(format!(
        "UPDATE job_notices SET {column} = false WHERE id = $1"
    ))
    .bind::<BigInt, _>(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Claims up to `limit` notices whose claim is older than `claim_for` (their sender
/// stopped or died, or their last pass failed), younger than `max_age` and tried fewer
/// than `max_tries` times; each is claimed by one caller only. Notices past those limits
/// are deleted and returned in the second list, for the log.
pub async fn claim_stale_notices(
    conn: &mut AsyncPgConnection,
    claim_for: std::time::Duration,
    max_age: std::time::Duration,
    max_tries: i32,
    limit: i64,
) -> Result<(Vec<PendingNotice>, Vec<PendingNotice>), DbError> {
    let dropped: Vec<PendingNotice> = diesel::sql_query(format!(
        "DELETE FROM job_notices \
         WHERE created_at < now() - make_interval(secs => $1) OR tries >= $2 \
         RETURNING {NOTICE_COLUMNS}"
    ))
    .bind::<diesel::sql_types::Double, _>(max_age.as_secs_f64())
    .bind::<Integer, _>(max_tries)
    .load(conn)
    .await?;
    let claimed: Vec<PendingNotice> = diesel::sql_query(format!(
        "UPDATE job_notices SET claimed_at = now() \
         WHERE id IN (SELECT id FROM job_notices \
                      WHERE claimed_at < now() - make_interval(secs => $1) \
                      ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) \
         RETURNING {NOTICE_COLUMNS}"
    ))
    .bind::<diesel::sql_types::Double, _>(claim_for.as_secs_f64())
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok((claimed, dropped))
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
