#![doc = include_str!("../README.md")]

pub mod access;
pub mod cleanup;
mod connection;
pub mod controls;
pub mod cost;
pub mod events;
pub mod execution_log;
pub mod executions;
mod index_plan;
pub mod listen;
mod migrate;
pub mod models;
pub mod monitoring;
pub mod notifications;
pub mod pooler;
mod prepared;
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trends;
pub mod workers;

pub use connection::{ConnectTarget, Pool, PooledConnection};
pub use execution_log::PgExecutionLog;
pub use migrate::{
    check_existing_schema, embedded_versions, ensure_database, plan_migrations,
    revert_last_migration, run_migrations, MigrationPlan, MIGRATIONS, TAKEOVER_MESSAGE_PREFIX,
};
pub use prepared::Prepared;

/// Why a database operation failed. Messages never contain the password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// `DATABASE_URL` (or another setting) is unusable.
    #[error("{0}")]
    Config(String),
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    /// The server answered that the database does not exist (SQLSTATE 3D000).
    #[error("cannot connect to PostgreSQL: {0}")]
    UnknownDatabase(String),
    /// An existing table has a column whose type this service cannot use; nothing was
    /// changed.
    #[error("the existing schema cannot be used: {0}")]
    Incompatible(String),
    /// A statement failed.
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// No connection could be had from the pool in time.
    #[error("no database connection available: {0}")]
    Pool(String),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(String),
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for DbError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        DbError::Pool(e.to_string())
    }
}
