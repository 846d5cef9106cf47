//! Creating the database and applying the embedded migrations.

use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::{ConnectTarget, DbError};

/// The top-level `migrations/` folder, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Serialises migrations between servers starting at the same time.
const MIGRATION_LOCK: i64 = 0x006A_6F62_736D_6967; // "jobsmig"

/// Creates the target database when it does not exist. Returns true when it was created.
pub async fn ensure_database(target: &ConnectTarget) -> Result<bool, DbError> {
    match target.connect().await {
        Ok(_) => return Ok(false),
        Err(DbError::Connect(message)) if message.contains("does not exist") => {}
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
        // Another server created it at the same moment.
        Err(e) if e.to_string().contains("already exists") => Ok(false),
        Err(e) => Err(DbError::Connect(format!(
            "database {} does not exist and could not be created: {e}",
            target.database()
        ))),
    }
}

/// Applies pending migrations, holding an advisory lock so that concurrent servers apply
/// each migration once. Returns the versions applied.
pub async fn run_migrations(target: &ConnectTarget) -> Result<Vec<String>, DbError> {
    let mut conn = target.connect().await?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .execute(&mut conn)
        .await?;
    tokio::task::spawn_blocking(move || {
        let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> = conn.into();
        wrapper
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(|v| v.to_string()).collect())
            .map_err(|e| DbError::Migration(e.to_string()))
        // Dropping the connection releases the lock.
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
