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

    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = Text)]
        version: String,
    }
    let applied: HashSet<String> = if relation_exists(&mut conn, "__diesel_schema_migrations")
        .await?
    {
        diesel::sql_query("SELECT version::text AS version FROM public.__diesel_schema_migrations")
            .load::<Version>(&mut conn)
            .await?
            .into_iter()
            .map(|v| v.version)
            .collect()
    } else {
        HashSet::new()
    };

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
}

async fn columns_of(conn: &mut AsyncPgConnection) -> Result<Vec<ExistingColumn>, DbError> {
    let tables: Vec<&str> = REQUIRED.iter().map(|r| r.table).collect();
    let columns = diesel::sql_query(
        "SELECT c.relname::text AS table_name, a.attname::text AS column_name, \
                t.typname::text AS type_name, format_type(a.atttypid, a.atttypmod) AS found \
         FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_type t ON t.oid = a.atttypid \
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

/// Checks the columns of tables that already exist against what this service needs.
/// Reads the catalog only.
pub async fn check_existing_schema(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    let columns = columns_of(conn).await?;
    let problems: Vec<String> = REQUIRED
        .iter()
        .filter_map(|r| {
            let col = columns
                .iter()
                .find(|c| c.table_name == r.table && c.column_name == r.column)?;
            (!r.accepted.contains(&col.type_name.as_str())).then(|| {
                format!(
                    "column public.{}.{} has type {}, but this service needs {}",
                    r.table, r.column, col.found, r.needed
                )
            })
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DbError::Incompatible(format!(
            "{}; nothing was changed",
            problems.join("; ")
        )))
    }
}
