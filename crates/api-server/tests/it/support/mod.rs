//! What the test modules share.

pub mod browser;
pub mod executions;
pub mod server;
pub mod storage;

use db::testing::TestDatabase;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;

use storage::SERVICE_ROLE_KEY;

/// Runs one SQL statement on the test database; the rows it affected.
pub async fn sql(db: &TestDatabase, statement: &str) -> usize {
    let mut conn = db.connect().await;
    diesel::sql_query(statement)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"))
}

/// Settings for a server on `db` whose `audio_cleanup` deletes from the Storage at
/// `storage`, on a pool of three, with neither job ever due on its own (far-away schedules,
/// no catch-up).
pub fn server_vars<'a>(db: &'a TestDatabase, storage: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("DATABASE_URL", db.url()),
        ("DATABASE_POOL_SIZE", "3"),
        ("SUPABASE_URL", storage),
        ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY),
        ("AUDIO_CLEANUP_SCHEDULE", "0 0 1 1 *"),
        ("COST_UPDATE_SCHEDULE", "0 0 1 1 *"),
        ("MISFIRE_WINDOW_SECS", "0"),
    ]
}

/// `n` transcriptions whose audio is old enough to delete (`audio/user-1/1.webm`, …).
pub async fn seed_old_audio(db: &TestDatabase, n: i64) {
    let mut conn = db.connect().await;
    diesel::sql_query(
        "INSERT INTO transcriptions (created_at, audio_file_path) \
         SELECT now() - interval '40 days', 'audio/user-1/' || g || '.webm' \
         FROM generate_series(1, $1) g",
    )
    .bind::<BigInt, _>(n)
    .execute(&mut conn)
    .await
    .unwrap();
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

/// Host and port of `TEST_DATABASE_URL` (default 127.0.0.1:5432).
pub fn test_server_address() -> (String, u16) {
    let url = std::env::var(db::testing::TEST_DATABASE_URL_VAR)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let authority = url
        .split_once("://")
        .map_or(url.as_str(), |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    match host_port.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().unwrap_or(5432)),
        None => (host_port.to_owned(), 5432),
    }
}
