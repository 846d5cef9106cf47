//! Rows as Rust types.

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::sql_types::{Jsonb, Nullable};
use jobs_core::{ExecutionRecord, Status};

use crate::schema::job_executions;

/// A `job_executions` row.
#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = job_executions)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct ExecutionRow {
    pub id: i32,
    pub job_name: String,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i32>,
    /// `{}` when the column is `NULL`; see [`StoredJson`] for JSON this service cannot read.
    #[diesel(deserialize_as = StoredJson)]
    pub stats: serde_json::Value,
    pub error_message: Option<String>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub triggered_by: String,
    pub attempt: i32,
    pub dry_run: bool,
    pub worker_id: Option<String>,
    pub requested_by: Option<String>,
}

impl From<ExecutionRow> for ExecutionRecord {
    fn from(row: ExecutionRow) -> Self {
        ExecutionRecord {
            id: i64::from(row.id),
            job_name: row.job_name,
            // The CHECK constraint admits only the four values.
            status: Status::parse(&row.status).unwrap_or(Status::Failed),
            started_at: row.started_at,
            completed_at: row.completed_at,
            duration_ms: row.duration_ms.map(i64::from),
            stats: row.stats,
            error_message: row.error_message,
            scheduled_for: row.scheduled_for,
            trigger: row.triggered_by,
            attempt: row.attempt,
            worker_id: row.worker_id,
            dry_run: row.dry_run,
            requested_by: row.requested_by,
        }
    }
}

/// A `jsonb` value as read back, which never fails to decode.
///
/// PostgreSQL stores JSON that `serde_json` refuses: numbers beyond `f64` (`1e400`) and
/// nesting deeper than 128 levels. Another writer (the system this one replaced, a manual
/// edit) may have left such a value in `stats`. One such row must not turn every list that
/// holds it into an error, so it is read as its text, a JSON string: nothing is lost and
/// the rest of the row is served. `NULL` reads as `{}`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJson(pub serde_json::Value);

impl StoredJson {
    /// What `NULL` reads as.
    fn null() -> Self {
        Self(serde_json::json!({}))
    }

    /// The value of `jsonb`'s binary form: a version byte (1), then the text.
    fn decode(bytes: &[u8]) -> Self {
        let text = match bytes.split_first() {
            Some((1, text)) => text,
            _ => bytes,
        };
        let value = serde_json::from_slice(text)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(text).into()));
        Self(value)
    }
}

impl FromSql<Jsonb, Pg> for StoredJson {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        Ok(Self::decode(value.as_bytes()))
    }
}

impl FromSql<Nullable<Jsonb>, Pg> for StoredJson {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        Ok(Self::decode(value.as_bytes()))
    }

    fn from_nullable_sql(value: Option<PgValue<'_>>) -> deserialize::Result<Self> {
        Ok(value.map_or_else(Self::null, |value| Self::decode(value.as_bytes())))
    }
}

impl Queryable<Nullable<Jsonb>, Pg> for StoredJson {
    type Row = Option<StoredJson>;

    fn build(row: Self::Row) -> deserialize::Result<Self> {
        Ok(row.unwrap_or_else(Self::null))
    }
}

impl From<StoredJson> for serde_json::Value {
    fn from(json: StoredJson) -> Self {
        json.0
    }
}
