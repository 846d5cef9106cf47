//! Connections for a transaction-mode pooler (`?pgbouncer=true`) keep no prepared
//! statement on the server and still answer every kind of query right. Straight against
//! PostgreSQL, where `pg_prepared_statements` shows what a pooler's server connection would
//! be left holding; `api-server`'s takeover tests run the whole service through a real
//! PgBouncer in transaction mode.

use db::testing::TestDatabase;
use db::{ConnectTarget, Prepared};
use diesel::sql_types::{BigInt, Integer, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct N {
    #[diesel(sql_type = Integer)]
    n: i32,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

async fn prepared_statements(conn: &mut AsyncPgConnection) -> i64 {
    diesel::sql_query("SELECT count(*) AS count FROM pg_prepared_statements")
        .get_result::<Count>(conn)
        .await
        .unwrap()
        .count
}

/// A kept (cached) statement, an uncached one, a transaction, an error and the statement
/// after it, on `conn`.
async fn exercise(conn: &mut AsyncPgConnection) {
    for i in 0..3 {
        let kept: N = Prepared(diesel::sql_query("SELECT $1 + 1 AS n").bind::<Integer, _>(i))
            .get_result(conn)
            .await
            .unwrap();
        assert_eq!(kept.n, i + 1);
        let once: N = diesel::sql_query("SELECT length($1)::int AS n")
            .bind::<Text, _>("x".repeat(i as usize))
            .get_result(conn)
            .await
            .unwrap();
        assert_eq!(once.n, i);
    }
    let in_transaction = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            diesel::sql_query("CREATE TEMP TABLE t (n int) ON COMMIT DROP")
                .execute(conn)
                .await?;
            diesel::sql_query("INSERT INTO t SELECT generate_series(1, $1)")
                .bind::<Integer, _>(4)
                .execute(conn)
                .await?;
            Prepared(diesel::sql_query("SELECT sum(n)::int AS n FROM t"))
                .get_result::<N>(conn)
                .await
        })
        .await
        .unwrap();
    assert_eq!(in_transaction.n, 10);
    let failed = diesel::sql_query("SELECT 1 / $1 AS n")
        .bind::<Integer, _>(0)
        .get_result::<N>(conn)
        .await;
    assert!(failed.is_err(), "division by zero must fail");
    let after: N = Prepared(diesel::sql_query("SELECT $1 * 2 AS n").bind::<Integer, _>(21))
        .get_result(conn)
        .await
        .unwrap();
    assert_eq!(after.n, 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooler_connections_answer_right_and_leave_no_prepared_statement() {
    let db = TestDatabase::empty().await;
    let url = format!("{}?pgbouncer=true&sslmode=disable", db.url());
    let target = ConnectTarget::parse(&url).unwrap();
    assert!(target.transaction_pooling());
    let mut conn = target.connect().await.unwrap();
    exercise(&mut conn).await;
    assert_eq!(prepared_statements(&mut conn).await, 0);

    // The same queries on a direct connection keep their statements: the count above
    // would show them.
    let mut direct = db.connect().await;
    exercise(&mut direct).await;
    assert!(prepared_statements(&mut direct).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_pooler_connections_serves_concurrent_queries() {
    let db = TestDatabase::empty().await;
    let url = format!("{}?pgbouncer=true", db.url());
    let pool = ConnectTarget::parse(&url).unwrap().pool(3).unwrap();
    let tasks = (0..24).map(|i| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut conn = pool.get().await.unwrap();
            let row: N = Prepared(diesel::sql_query("SELECT $1 * 3 AS n").bind::<Integer, _>(i))
                .get_result(&mut conn)
                .await
                .unwrap();
            row.n
        })
    });
    let results: Vec<i32> = futures_util::future::try_join_all(tasks).await.unwrap();
    assert_eq!(results, (0..24).map(|i| i * 3).collect::<Vec<_>>());
    let mut conn = pool.get().await.unwrap();
    assert_eq!(prepared_statements(&mut conn).await, 0);
}
