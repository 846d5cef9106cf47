//! What the test modules share.

pub mod browser;
pub mod server;
pub mod storage;

use db::testing::TestDatabase;
use diesel_async::RunQueryDsl;

/// Runs one SQL statement on the test database; the rows it affected.
pub async fn sql(db: &TestDatabase, statement: &str) -> usize {
    let mut conn = db.connect().await;
    diesel::sql_query(statement)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"))
}

/// `vars` with each of `extra` replacing the variable of its name (or added).
pub fn with<'a>(
    mut vars: Vec<(&'a str, &'a str)>,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push((k, v));
    }
    vars
}
