//! Creating the database, checking that an existing one can be adopted, and applying the
//! embedded migrations.
//!
//! Decisions here rest on SQLSTATE codes and the catalog, never on an error's message text
//! (which follows the server's `lc_messages`).

use std::collections::HashSet;

use diesel::connection::CacheSize;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel::OptionalExtension;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::{ConnectTarget, DbError};

/// The top-level `migrations/` folder, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Each migration's directory name and `up.sql` text, oldest first (from `build.rs`).
const UP_SQL: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/migration_sql.rs"));

/// Serialises migrations between servers starting at the same time.
const MIGRATION_LOCK: i64 = 0x006A_6F62_736D_6967; // "jobsmig"

/// What the `error_message` of an execution left running by the replaced system starts
/// with (set by the first migration on takeover).
pub const TAKEOVER_MESSAGE_PREFIX: &str = "left running by the previous (Node.js) jobs system";

/// Creates the target database when it does not exist. Returns true when it was created.
pub async fn ensure_database(target: &ConnectTarget) -> Result<bool, DbError> {
    match target.connect().await {
        Ok(_) => return Ok(false),
        Err(DbError::UnknownDatabase(_)) => {}
        Err(e) => return Err(e),
    }
    let mut admin = target.with_database("postgres").connect().await?;
    let name = target.database().replace('"', "\"\"");
    match diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
    {
        Ok(_) => {
            log::info!("created database {}", target.database());
            Ok(true)
        }
        // Another server may have created it at the same moment: the catalog says so.
        Err(e) => {
            if database_exists(&mut admin, target.database()).await? {
                Ok(false)
            } else {
                Err(DbError::Connect(format!(
                    "database {} does not exist and could not be created: {e}",
                    target.database()
                )))
            }
        }
    }
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> Result<bool, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        exists: bool,
    }
    let row: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(name)
            .get_result(conn)
            .await?;
    Ok(row.exists)
}

/// Applies pending migrations and returns the versions applied.
///
/// First checks that the tables which may already exist (adopted from the replaced system,
/// or owned by the application) have usable column types, and stops with
/// [`DbError::Incompatible`] before changing anything when they do not. Then applies all
/// pending migrations in one transaction holding a transaction-scoped advisory lock, so
/// that concurrent servers apply each migration once and a failure leaves nothing half
/// done. No session state is used, and no prepared statement outlives its use, so this
/// works through a transaction-mode pooler as well as directly.
pub async fn run_migrations(target: &ConnectTarget) -> Result<Vec<String>, DbError> {
    let mut conn = target.connect().await?;
    conn.set_prepared_statement_cache_size(CacheSize::Disabled);
    check_existing_schema(&mut conn).await?;
    // Up to date: nothing to lock or create, so a role without DDL rights can start.
    if all_migrations(&applied_versions(&mut conn).await?).is_empty() {
        return Ok(Vec::new());
    }
    tokio::task::spawn_blocking(move || {
        let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> = conn.into();
        diesel::Connection::transaction::<_, Box<dyn std::error::Error + Send + Sync>, _>(
            &mut wrapper,
            |conn| {
                diesel::RunQueryDsl::execute(
                    diesel::sql_query(format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")),
                    conn,
                )?;
                let versions = conn.run_pending_migrations(MIGRATIONS)?;
                Ok(versions.iter().map(|v| v.to_string()).collect())
            },
        )
        .map_err(|e| DbError::Migration(e.to_string()))
    })
    .await
    .map_err(|e| DbError::Migration(format!("migration task failed: {e}")))?
}

/// Reverts the most recent migration; for tests of the `down.sql` files.
pub async fn revert_last_migration(target: &ConnectTarget) -> Result<String, DbError> {
    let conn = target.connect().await?;
    tokio::task::spawn_blocking(move || {
        let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> = conn.into();
        wrapper
            .revert_last_migration(MIGRATIONS)
            .map(|v| v.to_string())
            .map_err(|e| DbError::Migration(e.to_string()))
    })
    .await
    .map_err(|e| DbError::Migration(format!("migration task failed: {e}")))?
}

/// The versions of all embedded migrations, oldest first.
pub fn embedded_versions() -> Vec<String> {
    MigrationSource::<Pg>::migrations(&MIGRATIONS)
        .map(|ms| ms.iter().map(|m| m.name().version().to_string()).collect())
        .unwrap_or_default()
}

/// What `migrate` would do, found without changing anything.
#[derive(Debug, Clone)]
pub struct MigrationPlan {
    /// False when the database does not exist yet (`migrate` would create it).
    pub database_exists: bool,
    /// The pending migrations: directory name and `up.sql` text, oldest first.
    pub pending: Vec<(String, &'static str)>,
    /// What the guarded statements would do to data already there, in words.
    pub notes: Vec<String>,
}

/// Finds what [`run_migrations`] would apply, without creating or changing anything
/// (not even diesel's bookkeeping table). Fails with [`DbError::Incompatible`] like
/// `run_migrations` would.
pub async fn plan_migrations(target: &ConnectTarget) -> Result<MigrationPlan, DbError> {
    let mut conn = match target.connect().await {
        Ok(conn) => conn,
        Err(DbError::UnknownDatabase(_)) => {
            return Ok(MigrationPlan {
                database_exists: false,
                pending: all_migrations(&HashSet::new()),
                notes: Vec::new(),
            })
        }
        Err(e) => return Err(e),
    };
    conn.set_prepared_statement_cache_size(CacheSize::Disabled);
    check_existing_schema(&mut conn).await?;

    let applied = applied_versions(&mut conn).await?;

    let mut notes = Vec::new();
    if relation_exists(&mut conn, "job_executions").await? {
        let columns = columns_of(&mut conn).await?;
        let adopted = !columns
            .iter()
            .any(|c| c.table_name == "job_executions" && c.column_name == "worker_id");
        if adopted {
            #[derive(diesel::QueryableByName)]
            struct Count {
                #[diesel(sql_type = BigInt)]
                n: i64,
            }
            let running: Count = diesel::sql_query(
                "SELECT count(*) AS n FROM public.job_executions WHERE status = 'running'",
            )
            .get_result(&mut conn)
            .await?;
            notes.push(format!(
                "job_executions exists without this service's columns: it is adopted, its rows are kept, and {} execution(s) left running by the previous system will be closed as failed",
                running.n
            ));
        }
    }
    if !applied.contains("20261130150000") && relation_exists(&mut conn, "job_executions").await? {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let skipped: Count = diesel::sql_query(
            "SELECT count(*) AS n FROM public.job_executions \
             WHERE status = 'failed' AND error_message LIKE 'skipped:%'",
        )
        .get_result(&mut conn)
        .await?;
        if skipped.n > 0 {
            notes.push(format!(
                "{} failed execution(s) whose message starts with 'skipped:' will get the \
                 status skipped: slots that were not run, which no longer count as failures",
                skipped.n
            ));
        }
    }
    Ok(MigrationPlan {
        database_exists: true,
        pending: all_migrations(&applied),
        notes,
    })
}

/// The embedded migrations whose version is not in `applied`, with their SQL.
fn all_migrations(applied: &HashSet<String>) -> Vec<(String, &'static str)> {
    let migrations = MigrationSource::<Pg>::migrations(&MIGRATIONS).unwrap_or_default();
    migrations
        .iter()
        .filter(|m| !applied.contains(&m.name().version().to_string()))
        .map(|m| {
            let name = m.name().to_string();
            let sql = UP_SQL
                .iter()
                .find(|(dir, _)| *dir == name)
                .map(|(_, sql)| *sql)
                .unwrap_or("");
            (name, sql)
        })
        .collect()
}

async fn relation_exists(conn: &mut AsyncPgConnection, name: &str) -> Result<bool, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        exists: bool,
    }
    let row: Exists = diesel::sql_query(
        "SELECT to_regclass(quote_ident('public') || '.' || quote_ident($1)) IS NOT NULL AS exists",
    )
    .bind::<Text, _>(name)
    .get_result(conn)
    .await?;
    Ok(row.exists)
}

#[derive(diesel::QueryableByName, Debug)]
struct ExistingColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    /// The catalog's type name, e.g. `int4`, `timestamptz`.
    #[diesel(sql_type = Text)]
    type_name: String,
    /// As a person writes it, e.g. `numeric(10,2)`.
    #[diesel(sql_type = Text)]
    found: String,
    /// The declared length, precision and scale, as the catalog encodes them (-1: none).
    #[diesel(sql_type = diesel::sql_types::Integer)]
    typmod: i32,
}

async fn columns_of(conn: &mut AsyncPgConnection) -> Result<Vec<ExistingColumn>, DbError> {
    let tables: Vec<&str> = REQUIRED.iter().map(|r| r.table).collect();
    let columns = diesel::sql_query(
        "SELECT c.relname::text AS table_name, a.attname::text AS column_name, \
                COALESCE(base.typname, t.typname)::text AS type_name, \
                format_type(a.atttypid, a.atttypmod) AS found, \
                CASE WHEN base.oid IS NULL THEN a.atttypmod ELSE t.typtypmod END AS typmod \
         FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_type base ON t.typtype = 'd' AND base.oid = t.typbasetype \
         WHERE n.nspname = 'public' AND c.relname = ANY($1) AND a.attnum > 0 \
           AND NOT a.attisdropped",
    )
    .bind::<diesel::sql_types::Array<Text>, _>(tables)
    .load(conn)
    .await?;
    Ok(columns)
}

/// A column this service reads or writes, and the types it can use.
struct Required {
    table: &'static str,
    column: &'static str,
    accepted: &'static [&'static str],
    needed: &'static str,
}

const TEXT: &[&str] = &["text", "varchar"];
const TIMESTAMPTZ: &[&str] = &["timestamptz"];
const ANY_TIMESTAMP: &[&str] = &["timestamptz", "timestamp"];

macro_rules! required {
    ($($table:literal . $column:literal : $accepted:expr => $needed:literal;)*) => {
        &[$(Required { table: $table, column: $column, accepted: $accepted, needed: $needed }),*]
    };
}

/// Every column of an existing table that this service uses. Columns it does not list
/// (the application's own) are never looked at; a listed column that is missing is added
/// by the migrations.
const REQUIRED: &[Required] = required! {
    "job_executions"."id": &["int4"] => "integer (SERIAL)";
    "job_executions"."job_name": TEXT => "varchar or text";
    "job_executions"."status": TEXT => "varchar or text";
    "job_executions"."started_at": TIMESTAMPTZ => "timestamptz";
    "job_executions"."completed_at": TIMESTAMPTZ => "timestamptz";
    "job_executions"."duration_ms": &["int4"] => "integer";
    "job_executions"."stats": &["jsonb"] => "jsonb";
    "job_executions"."error_message": TEXT => "text or varchar";
    "job_executions"."created_at": TIMESTAMPTZ => "timestamptz";
    "job_executions"."scheduled_for": TIMESTAMPTZ => "timestamptz";
    "job_executions"."triggered_by": TEXT => "varchar or text";
    "job_executions"."attempt": &["int4"] => "integer";
    "job_executions"."dry_run": &["bool"] => "boolean";
    "job_executions"."worker_id": TEXT => "varchar or text";
    "job_executions"."heartbeat_at": TIMESTAMPTZ => "timestamptz";
    "job_executions"."lease_expires_at": TIMESTAMPTZ => "timestamptz";
    "transcriptions"."id": &["uuid"] => "uuid";
    "transcriptions"."created_at": ANY_TIMESTAMP => "timestamptz (or timestamp)";
    "transcriptions"."audio_file_path": TEXT => "text or varchar";
    "transcriptions"."audio_deleted_at": ANY_TIMESTAMP => "timestamptz (or timestamp)";
    "transcriptions"."stt_provider_request_id": TEXT => "text or varchar";
    "transcriptions"."audio_cost_usd": &["numeric"] => "numeric (any precision)";
    "transcriptions"."cost_status": TEXT => "text or varchar";
    "transcriptions"."cost_error": TEXT => "text or varchar";
    "transcriptions"."cost_check_count": &["int4"] => "integer";
    "transcriptions"."cost_checked_at": ANY_TIMESTAMP => "timestamptz (or timestamp)";
    "transcriptions"."cost_gave_up_at": ANY_TIMESTAMP => "timestamptz (or timestamp)";
};

/// Checks that the database can be adopted as it is, before anything is changed: the
/// connection resolves names to `public`, the columns of tables that already exist have
/// types this service can use without losing or misreading data, and nothing that a
/// pending migration would create with `IF NOT EXISTS` is already there in another shape
/// (an application's own table of the same name, an index left invalid by a failed
/// `CREATE INDEX CONCURRENTLY`). Reads the catalog only.
pub async fn check_existing_schema(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    let mut problems = search_path_problems(conn).await?;
    if problems.is_empty() {
        problems.extend(column_problems(conn).await?);
        let applied = applied_versions(conn).await?;
        problems.extend(clash_problems(conn, &applied).await?);
        // These two open job_executions (its constraints' text, its highest id), so they
        // may wait behind a lock on the table: only at a takeover or an upgrade, never at
        // an ordinary start.
        if !all_migrations(&applied).is_empty() {
            problems.extend(status_check_problems(conn).await?);
            problems.extend(sequence_problems(conn).await?);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DbError::Incompatible(format!(
            "{}; nothing was changed",
            problems.join("; ")
        )))
    }
}

#[derive(diesel::QueryableByName)]
struct Problem {
    #[diesel(sql_type = Text)]
    problem: String,
}

async fn problems(conn: &mut AsyncPgConnection, sql: &str) -> Result<Vec<String>, DbError> {
    let rows: Vec<Problem> = diesel::sql_query(sql).load(conn).await?;
    Ok(rows.into_iter().map(|p| p.problem).collect())
}

/// The migrations create and name everything in `public`, and the jobs' statements name
/// their tables without a schema: the two must meet.
async fn search_path_problems(conn: &mut AsyncPgConnection) -> Result<Vec<String>, DbError> {
    problems(
        conn,
        "SELECT format('the connection''s search_path (%s) resolves table names to %s, but \
                this service''s tables are in schema public: put public first, or remove \
                the setting (from DATABASE_URL''s options, or ALTER DATABASE/ROLE … RESET \
                search_path)', \
                current_setting('search_path'), \
                COALESCE('schema ' || current_schema(), 'no schema')) AS problem \
         WHERE current_schema() IS DISTINCT FROM 'public'",
    )
    .await
}

/// The versions recorded as applied (none when diesel's table does not exist yet).
async fn applied_versions(conn: &mut AsyncPgConnection) -> Result<HashSet<String>, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = Text)]
        version: String,
    }
    if !relation_exists(conn, "__diesel_schema_migrations").await? {
        return Ok(HashSet::new());
    }
    Ok(
        diesel::sql_query("SELECT version::text AS version FROM public.__diesel_schema_migrations")
            .load::<Version>(conn)
            .await?
            .into_iter()
            .map(|v| v.version)
            .collect(),
    )
}

/// The time zones other than UTC (all year) that sessions on this database may run in,
/// each with where it is set: the default this connection would have (the server's, the
/// database's or its role's setting: the driver itself runs in UTC), and every database-
/// or role-level setting that applies to this database, since the application's roles
/// write the times this service reads. A zone a client sets for its own session cannot
/// be seen here.
async fn local_zones(conn: &mut AsyncPgConnection) -> Result<Vec<(String, String)>, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Zone {
        #[diesel(sql_type = Text)]
        zone: String,
        #[diesel(sql_type = Text)]
        source: String,
    }
    let zones: Vec<Zone> = diesel::sql_query(
        "WITH zones AS ( \
           SELECT reset_val AS zone, 'this connection''s default' AS source \
           FROM pg_settings WHERE name = 'TimeZone' \
           UNION ALL \
           SELECT substr(cfg, strpos(cfg, '=') + 1), \
                  CASE WHEN s.setrole = 0 THEN 'the database''s setting' \
                       ELSE 'the setting of role ' || r.rolname END \
                  || CASE WHEN s.setdatabase = 0 THEN ' (in every database)' ELSE '' END \
           FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole, \
                unnest(s.setconfig) AS cfg \
           WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database \
                                       WHERE datname = current_database())) \
             AND lower(split_part(cfg, '=', 1)) = 'timezone' \
         ) \
         SELECT zone, source FROM zones \
         WHERE NOT (timezone(zone, timestamptz '2026-01-15 12:00+00') = timestamp '2026-01-15 12:00' \
                AND timezone(zone, timestamptz '2026-07-15 12:00+00') = timestamp '2026-07-15 12:00') \
         ORDER BY source",
    )
    .load(conn)
    .await?;
    Ok(zones.into_iter().map(|z| (z.zone, z.source)).collect())
}

/// A limit of a column's declared size that this service needs.
enum Size {
    /// `numeric` with at least this many decimals (or none declared).
    Scale(i32),
    /// `varchar` of at least this many characters (or none declared).
    Chars(i32),
}

/// Declared sizes that would lose data without an error, or fail a write that must not.
const SIZES: &[(&str, &str, Size, &str)] = &[
    (
        "transcriptions",
        "audio_cost_usd",
        Size::Scale(6),
        "Deepgram's costs carry 6 decimals and would be rounded (0.0043 stored as 0.00)",
    ),
    (
        "job_executions",
        "error_message",
        Size::Chars(MAX_ERROR_CHARS),
        "a failed run's message could not be recorded and the run would stay running",
    ),
];

/// The longest `error_message` this service writes, in characters: at most
/// `MAX_ERROR_LEN` bytes of text and the truncation mark.
const MAX_ERROR_CHARS: i32 = crate::execution_log::MAX_ERROR_LEN as i32 + 16;

/// The scale of a `numeric(p,s)` type modifier: 11 bits, signed since PostgreSQL 15
/// (`numeric(8,-2)` rounds to hundreds).
fn numeric_scale(typmod: i32) -> i32 {
    let bits = (typmod - 4) & 0x7ff;
    if bits & 0x400 != 0 {
        bits - 0x800
    } else {
        bits
    }
}

async fn column_problems(conn: &mut AsyncPgConnection) -> Result<Vec<String>, DbError> {
    let columns = columns_of(conn).await?;
    let find = |table: &str, column: &str| {
        columns
            .iter()
            .find(|c| c.table_name == table && c.column_name == column)
    };
    let mut problems: Vec<String> = REQUIRED
        .iter()
        .filter_map(|r| {
            let col = find(r.table, r.column)?;
            (!r.accepted.contains(&col.type_name.as_str())).then(|| {
                format!(
                    "column public.{}.{} has type {}, but this service needs {}",
                    r.table, r.column, col.found, r.needed
                )
            })
        })
        .collect();
    for (table, column, size, why) in SIZES {
        let Some(col) = find(table, column).filter(|c| c.typmod >= 0) else {
            continue;
        };
        let (short, needed) = match (size, col.type_name.as_str()) {
            (Size::Scale(min), "numeric") => (
                numeric_scale(col.typmod) < *min,
                format!("numeric with a scale of at least {min}, e.g. numeric(12,{min})"),
            ),
            (Size::Chars(min), "varchar") => (
                col.typmod - 4 < *min,
                format!("text, or varchar of at least {min} characters (or without a length)"),
            ),
            _ => (false, String::new()),
        };
        if short {
            problems.push(format!(
                "column public.{table}.{column} is {}: {why}; this service needs {needed}",
                col.found
            ));
        }
    }
    // `timestamp` without a time zone holds a wall-clock time. This service reads such a
    // time as UTC, which is right only where the database's sessions run in UTC;
    // elsewhere, a row's age would be off by the zone's offset and audio deleted early.
    let local: Vec<&ExistingColumn> = columns
        .iter()
        .filter(|c| c.table_name == "transcriptions" && c.type_name == "timestamp")
        .filter(|c| {
            REQUIRED
                .iter()
                .any(|r| r.table == c.table_name && r.column == c.column_name)
        })
        .collect();
    if !local.is_empty() {
        let zones = local_zones(conn).await?;
        if let Some((zone, _)) = <[_]>::first(&zones) {
            let names: Vec<String> = local
                .iter()
                .map(|c| format!("public.transcriptions.{}", c.column_name))
                .collect();
            let settings: Vec<String> = zones
                .iter()
                .map(|(zone, source)| format!("{zone} ({source})"))
                .collect();
            problems.push(format!(
                "{} {} timestamp without time zone, read by this service as UTC, but \
                 sessions on this database may run in time zone {}: rows would be taken \
                 for older or younger than they are; convert the column{} to timestamptz \
                 (ALTER COLUMN … TYPE timestamptz USING … AT TIME ZONE '{zone}')",
                names.join(", "),
                if names.len() == 1 { "is" } else { "are" },
                settings.join(", "),
                if names.len() == 1 { "" } else { "s" },
            ));
        }
    }
    Ok(problems)
}

/// Tables and indexes that pending migrations create with `IF NOT EXISTS`, by the
/// migration that creates them. Found already there in another shape, `IF NOT EXISTS`
/// would keep the wrong one.
const CREATED: &[(&str, Created)] = &[
    ("20261128000001", Created::Index("uq_job_executions_slot", "CREATE UNIQUE INDEX uq_job_executions_slot ON public.job_executions USING btree (job_name, scheduled_for, attempt) WHERE (scheduled_for IS NOT NULL)")),
    ("20261128000001", Created::Index("uq_job_executions_one_running", "CREATE UNIQUE INDEX uq_job_executions_one_running ON public.job_executions USING btree (job_name) WHERE ((status)::text = 'running'::text)")),
    ("20261128000001", Created::Index("idx_job_executions_running_lease", "CREATE INDEX idx_job_executions_running_lease ON public.job_executions USING btree (lease_expires_at) WHERE ((status)::text = 'running'::text)")),
    ("20261128000003", Created::Index("idx_transcriptions_cost_pending", "CREATE INDEX idx_transcriptions_cost_pending ON public.transcriptions USING btree (id) WHERE ((audio_cost_usd IS NULL) AND (stt_provider_request_id IS NOT NULL) AND (cost_gave_up_at IS NULL))")),
    ("20261128000004", Created::Index("idx_transcriptions_audio_cleanup", "CREATE INDEX idx_transcriptions_audio_cleanup ON public.transcriptions USING btree (created_at, id) WHERE ((audio_deleted_at IS NULL) AND (audio_file_path IS NOT NULL))")),
    ("20261128000005", Created::Table("job_notification_state")),
    ("20261128000006", Created::Index("idx_job_executions_job_name_started_at_id", "CREATE INDEX idx_job_executions_job_name_started_at_id ON public.job_executions USING btree (job_name, started_at DESC, id DESC)")),
    ("20261130180000", Created::Table("job_controls")),
    ("20261130180000", Created::Table("job_execution_events")),
    ("20261130180000", Created::Table("job_workers")),
    ("20261201170000", Created::Table("job_notices")),
    ("20261130180000", Created::Index("job_execution_events_execution", "CREATE INDEX job_execution_events_execution ON public.job_execution_events USING btree (execution_id, id)")),
    ("20261201160000", Created::Index("idx_job_executions_retry_at", "CREATE INDEX idx_job_executions_retry_at ON public.job_executions USING btree (retry_at) WHERE (retry_at IS NOT NULL)")),
    // The contract's four indexes, built only where no index of the same definition
    // exists under any name: their names must not be taken by something else.
    ("20261128000001", Created::OldIndex("idx_job_executions_job_name")),
    ("20261128000001", Created::OldIndex("idx_job_executions_status")),
    ("20261128000001", Created::OldIndex("idx_job_executions_started_at")),
    ("20261128000001", Created::OldIndex("idx_job_executions_job_name_started_at")),
    // Trigger functions (`CREATE OR REPLACE`) and triggers (`DROP TRIGGER IF EXISTS`):
    // an application's own of the same name would be replaced or dropped.
    ("20261130170000", Created::Function("job_executions_notify")),
    ("20261130170000", Created::Trigger("job_executions", "job_executions_notify")),
    ("20261130180000", Created::Function("job_controls_notify")),
    ("20261201100000", Created::Function("job_executions_left_notify")),
    ("20261201100000", Created::Trigger("job_executions", "job_executions_moved_notify")),
    ("20261201100000", Created::Trigger("job_executions", "job_executions_deleted_notify")),
];

enum Created {
    Table(&'static str),
    /// The index's name and its definition as `pg_get_indexdef` prints it.
    Index(&'static str, &'static str),
    /// One of the contract's indexes on `job_executions`, whatever its definition.
    OldIndex(&'static str),
    Function(&'static str),
    /// A trigger on a table: the table and the trigger's name.
    Trigger(&'static str, &'static str),
}

/// What a `pg_class.relkind` is, in words.
fn relation_kind(kind: &str) -> &'static str {
    match kind {
        "r" | "p" => "a table",
        "i" | "I" => "an index",
        "S" => "a sequence",
        "v" => "a view",
        "m" => "a materialized view",
        "f" => "a foreign table",
        _ => "a relation",
    }
}

/// An index definition without the casts and brackets that vary with the columns' types
/// (`(status)::text` on a `varchar` column, `status` on a `text` one).
fn normalized_index(definition: &str) -> String {
    definition
        .replace("::character varying", "")
        .replace("::text", "")
        .chars()
        .filter(|c| !matches!(c, '(' | ')') && !c.is_whitespace())
        .collect::<String>()
        .to_lowercase()
}

async fn clash_problems(
    conn: &mut AsyncPgConnection,
    applied: &HashSet<String>,
) -> Result<Vec<String>, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        definition: Option<String>,
        #[diesel(sql_type = Bool)]
        valid: bool,
        #[diesel(sql_type = Bool)]
        on_executions: bool,
    }
    let mut problems = Vec::new();
    for (version, created) in CREATED.iter().filter(|(v, _)| !applied.contains(*v)) {
        let name = match created {
            Created::Function(name) => {
                if function_exists(conn, name).await? {
                    problems.push(format!(
                        "function public.{name}() already exists, but this service's migration \
                         {version} creates one of that name for itself (CREATE OR REPLACE): \
                         rename the existing one"
                    ));
                }
                continue;
            }
            Created::Trigger(table, name) => {
                if trigger_exists(conn, table, name).await? {
                    problems.push(format!(
                        "trigger {name} on public.{table} already exists, but this service's \
                         migration {version} replaces a trigger of that name with its own: \
                         rename the existing one"
                    ));
                }
                continue;
            }
            Created::Table(name) | Created::Index(name, _) | Created::OldIndex(name) => *name,
        };
        let found: Option<Found> = diesel::sql_query(
            "SELECT c.relkind::text AS kind, \
                    CASE WHEN c.relkind = 'i' THEN pg_get_indexdef(c.oid) END AS definition, \
                    COALESCE(i.indisvalid AND i.indisready, true) AS valid, \
                    COALESCE(i.indrelid = to_regclass('public.job_executions'), false) \
                      AS on_executions \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_index i ON i.indexrelid = c.oid \
             WHERE n.nspname = 'public' AND c.relname = $1",
        )
        .bind::<Text, _>(name)
        .get_result(conn)
        .await
        .optional()?;
        let Some(found) = found else { continue };
        match created {
            Created::Table(_) => problems.push(format!(
                "public.{name} already exists (as {}), but this service's migration {version} \
                 creates a table of that name for itself: rename or move the existing one",
                relation_kind(&found.kind)
            )),
            Created::OldIndex(_) => {
                if !found.on_executions {
                    problems.push(format!(
                        "public.{name} already exists as {} that is not an index of \
                         public.job_executions, but this service's migration {version} may \
                         build an index of that name on job_executions: rename the existing one",
                        relation_kind(&found.kind)
                    ));
                }
            }
            Created::Function(_) | Created::Trigger(..) => {}
            Created::Index(_, wanted) => {
                let Some(definition) = found.definition else {
                    problems.push(format!(
                        "public.{name} already exists as {}, but this service's migration \
                         {version} builds an index of that name: rename the existing one",
                        relation_kind(&found.kind)
                    ));
                    continue;
                };
                if !found.valid {
                    problems.push(format!(
                        "index public.{name} exists but is not valid (what a failed CREATE \
                         INDEX CONCURRENTLY leaves): drop it and build it again, or let \
                         migrate build it"
                    ));
                } else if normalized_index(&definition) != normalized_index(wanted) {
                    problems.push(format!(
                        "public.{name} exists as \"{definition}\", but this service needs \
                         \"{wanted}\": drop or rename it"
                    ));
                }
            }
        }
    }
    Ok(problems)
}

async fn function_exists(conn: &mut AsyncPgConnection, name: &str) -> Result<bool, DbError> {
    exists(
        conn,
        "SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = 'public' AND p.proname = $1) AS exists",
        &[name],
    )
    .await
}

async fn trigger_exists(
    conn: &mut AsyncPgConnection,
    table: &str,
    name: &str,
) -> Result<bool, DbError> {
    exists(
        conn,
        "SELECT EXISTS (SELECT 1 FROM pg_trigger t \
         WHERE t.tgrelid = to_regclass(quote_ident('public') || '.' || quote_ident($1)) \
           AND t.tgname = $2 AND NOT t.tgisinternal) AS exists",
        &[table, name],
    )
    .await
}

/// The answer of a `SELECT EXISTS (…) AS exists` with text parameters.
async fn exists(conn: &mut AsyncPgConnection, sql: &str, binds: &[&str]) -> Result<bool, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        exists: bool,
    }
    let mut query = diesel::sql_query(sql).into_boxed::<Pg>();
    for bind in binds {
        query = query.bind::<Text, _>(bind.to_string());
    }
    let row: Exists = query.get_result(conn).await?;
    Ok(row.exists)
}

/// A check on `job_executions.status` other than this service's own (which the migrations
/// replace by name) that refuses `skipped` would refuse the skipped-slot records, and those
/// are recorded without stopping anything: they would be lost. Each such check on the
/// status alone is evaluated for `'skipped'` (a check passes unless it is false); one over
/// several columns cannot be, and is named for the operator to look at.
async fn status_check_problems(conn: &mut AsyncPgConnection) -> Result<Vec<String>, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Check {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        definition: String,
        /// The expression, over the column `status` only; `None` when it reads others.
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        expression: Option<String>,
        #[diesel(sql_type = Text)]
        status_type: String,
    }
    if !relation_exists(conn, "job_executions").await? {
        return Ok(Vec::new());
    }
    let checks: Vec<Check> = diesel::sql_query(
        "SELECT con.conname::text AS name, pg_get_constraintdef(con.oid) AS definition, \
                CASE WHEN con.conkey = ARRAY[a.attnum] \
                     THEN pg_get_expr(con.conbin, con.conrelid) END AS expression, \
                format_type(a.atttypid, a.atttypmod) AS status_type \
         FROM pg_constraint con \
         JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attname = 'status' \
         WHERE con.conrelid = 'public.job_executions'::regclass AND con.contype = 'c' \
           AND con.conname <> 'job_executions_status_check' \
           AND a.attnum = ANY (con.conkey) \
         ORDER BY con.conname",
    )
    .load(conn)
    .await?;
    let mut problems = Vec::new();
    for check in checks {
        let refuses = match &check.expression {
            // The catalog's own text of the expression, over a one-row relation that has
            // only the column it reads.
            Some(expression) => {
                #[derive(diesel::QueryableByName)]
                struct Allows {
                    #[diesel(sql_type = Bool)]
                    allows: bool,
                }
                let allows: Result<Allows, _> = diesel::sql_query(format!(
                    "SELECT ({expression}) IS NOT FALSE AS allows \
                     FROM (SELECT 'skipped'::{} AS status) AS job_executions",
                    check.status_type
                ))
                .get_result(conn)
                .await;
                allows.map_or(true, |a| !a.allows)
            }
            None => true,
        };
        if refuses {
            problems.push(format!(
                "check constraint {} on public.job_executions ({}) {} this service's 'skipped' \
                 executions: drop it (the migrations add job_executions_status_check, which \
                 allows every status this service writes)",
                check.name,
                check.definition,
                if check.expression.is_some() {
                    "would refuse"
                } else {
                    "reads other columns too and may refuse"
                }
            ));
        }
    }
    Ok(problems)
}

/// An id sequence behind the ids already in the table makes every new execution's insert
/// conflict with an old row.
async fn sequence_problems(conn: &mut AsyncPgConnection) -> Result<Vec<String>, DbError> {
    #[derive(diesel::QueryableByName)]
    struct Sequence {
        /// Quoted and schema-qualified as needed.
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        name: Option<String>,
        #[diesel(sql_type = BigInt)]
        increment: i64,
        #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
        top: Option<i64>,
    }
    #[derive(diesel::QueryableByName)]
    struct State {
        #[diesel(sql_type = BigInt)]
        last_value: i64,
        #[diesel(sql_type = Bool)]
        is_called: bool,
    }
    if !relation_exists(conn, "job_executions").await? {
        return Ok(Vec::new());
    }
    // The sequence the id takes its values from: the one its default calls (serial, or
    // `nextval('other_seq')` set by hand), else the identity column's own.
    let found: Option<Sequence> = diesel::sql_query(
        "SELECT format('%I.%I', n.nspname, seq.relname) AS name, s.seqincrement AS increment, \
                (SELECT max(id)::bigint FROM public.job_executions) AS top \
         FROM pg_class seq JOIN pg_sequence s ON s.seqrelid = seq.oid \
         JOIN pg_namespace n ON n.oid = seq.relnamespace \
         WHERE seq.oid = COALESCE( \
           (SELECT d.refobjid FROM pg_attrdef ad \
              JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum \
              JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid \
                AND d.refclassid = 'pg_class'::regclass \
              JOIN pg_class c ON c.oid = d.refobjid AND c.relkind = 'S' \
             WHERE ad.adrelid = 'public.job_executions'::regclass AND a.attname = 'id' \
             LIMIT 1), \
           pg_get_serial_sequence('public.job_executions', 'id')::regclass) \
           AND has_sequence_privilege(seq.oid, 'SELECT')",
    )
    .get_result(conn)
    .await
    .optional()?;
    let Some(Sequence {
        name: Some(name),
        increment,
        top: Some(top),
    }) = found
    else {
        return Ok(Vec::new());
    };
    let state: State = diesel::sql_query(format!("SELECT last_value, is_called FROM {name}"))
        .get_result(conn)
        .await?;
    let next = if state.is_called {
        state.last_value.saturating_add(increment)
    } else {
        state.last_value
    };
    if increment <= 0 || next > top {
        return Ok(Vec::new());
    }
    Ok(vec![format!(
        "the id sequence {name} of public.job_executions would hand out {next}, but the \
         table already has ids up to {top}: every new execution would conflict with an old \
         row; move it on with SELECT setval('{}', {top})",
        name.replace('\'', "''")
    )])
}
