#![doc = include_str!("../README.md")]

pub mod cleanup;
mod connection;
pub mod cost;
pub mod execution_log;
pub mod executions;
mod index_plan;
mod migrate;
pub mod models;
pub mod notifications;
mod prepared;
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;

pub use connection::{ConnectTarget, Pool, PooledConnection};
pub use execution_log::PgExecutionLog;
pub use migrate::{
    embedded_versions, ensure_database, revert_last_migration, run_migrations, MIGRATIONS,
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
