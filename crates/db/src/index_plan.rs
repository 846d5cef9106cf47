//! Pinning the jobs' statements to their index-ordered plans.
//!
//! The jobs page through `transcriptions` in index order (`(created_at, id)` for the
//! clean-up, `id` for the cost update) and write batches by primary key. On a table that
//! was just bulk-loaded and never analyzed, the planner's guesses turn the page query into
//! a bitmap scan plus a sort of every remaining candidate, once per page — quadratic in
//! the backlog (1 000 000 rows: ~12 s analyzed, 130–200 s not). Measured with `EXPLAIN` on
//! such a table, switching off the plan shapes the jobs never want, for the job's own
//! transaction only (`SET LOCAL`), leaves exactly one plan: an index scan in the order
//! asked, stopped by the `LIMIT`, and a nested loop over the rows' locations (`ctid`) or
//! the primary key for the writes — whatever the statistics say.
//!
//! `BEGIN` and the settings go to the server as one simple query: a job's statement costs
//! three round trips (begin, statement, commit), not four.

use diesel_async::{
    AnsiTransactionManager, AsyncPgConnection, SimpleAsyncConnection, TransactionManager,
};

use crate::DbError;

/// The settings, scoped to the current transaction (`SET LOCAL`).
macro_rules! index_plan {
    () => {
        "SET LOCAL enable_seqscan = off; \
         SET LOCAL enable_bitmapscan = off; \
         SET LOCAL enable_sort = off; \
         SET LOCAL enable_hashjoin = off; \
         SET LOCAL enable_mergejoin = off"
    };
}

/// A transaction whose planner settings are those of `index_plan!`.
const BEGIN_INDEX_PLAN: &str = concat!("BEGIN; ", index_plan!());

/// [`BEGIN_INDEX_PLAN`], and a commit that does not wait for the WAL flush
/// (`synchronous_commit = off`, this transaction only): for writes that a crash may lose
/// without harm because the next run does them again. A crash loses at most the last
/// ~0.6 s of such commits (three times `wal_writer_delay`), never their consistency.
const BEGIN_INDEX_PLAN_REDOABLE: &str = concat!(
    "BEGIN; ",
    index_plan!(),
    "; SET LOCAL synchronous_commit = off"
);

/// Opens a transaction whose planner settings are those of `index_plan!`; end it with
/// [`finish`]. The transaction is tracked by diesel-async, so a connection dropped
/// half-way is not handed out again by the pool in that state.
pub(crate) async fn begin(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    begin_with(conn, BEGIN_INDEX_PLAN).await
}

/// [`begin`] for a write the next run redoes if a crash loses it: its commit does not
/// wait for the disk ([`BEGIN_INDEX_PLAN_REDOABLE`]).
pub(crate) async fn begin_redoable(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    begin_with(conn, BEGIN_INDEX_PLAN_REDOABLE).await
}

async fn begin_with(conn: &mut AsyncPgConnection, begin: &str) -> Result<(), DbError> {
    if let Err(error) = AnsiTransactionManager::begin_transaction_sql(conn, begin).await {
        // `BEGIN` may have run before a setting failed: end what the server has open
        // (a warning, not an error, when nothing is).
        let _ = conn.batch_execute("ROLLBACK").await;
        return Err(error.into());
    }
    Ok(())
}

/// Commits after a statement that succeeded, rolls back after one that failed.
pub(crate) async fn finish<R>(
    conn: &mut AsyncPgConnection,
    result: Result<R, diesel::result::Error>,
) -> Result<R, DbError> {
    match result {
        Ok(value) => {
            AnsiTransactionManager::commit_transaction(conn).await?;
            Ok(value)
        }
        Err(error) => {
            let _ = AnsiTransactionManager::rollback_transaction(conn).await;
            Err(error.into())
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;

    /// Whether the server has a transaction block open on this connection: `SAVEPOINT`
    /// is refused outside one.
    async fn in_transaction_block(conn: &mut AsyncPgConnection) -> bool {
        let open = conn.batch_execute("SAVEPOINT probe").await.is_ok();
        if open {
            conn.batch_execute("RELEASE SAVEPOINT probe")
                .await
                .expect("release the probe");
        }
        open
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_setting_that_fails_after_begin_leaves_no_transaction_open() {
        let db = TestDatabase::new().await;
        let mut conn = db.connect().await;
        // `BEGIN` runs, then a setting fails: left alone, the server would keep the
        // aborted transaction open and refuse every later statement on this connection.
        let begun = begin_with(&mut conn, "BEGIN; SET LOCAL enable_seqscan = sometimes").await;
        assert!(begun.is_err(), "the bad setting must fail the begin");
        conn.batch_execute("SELECT 1")
            .await
            .expect("the connection answers again after the failed begin");
        assert!(
            !in_transaction_block(&mut conn).await,
            "no transaction may be left open"
        );
        // The next job transaction starts and commits as usual.
        begin(&mut conn).await.expect("begin after the failure");
        let open = in_transaction_block(&mut conn).await;
        finish(&mut conn, Ok(())).await.expect("commit");
        assert!(open, "begin opens a transaction block");
        assert!(!in_transaction_block(&mut conn).await, "finish closes it");
    }
}
