//! Migrations against a real PostgreSQL.

use db::testing::TestDatabase;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Column {
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

async fn columns(conn: &mut AsyncPgConnection, table: &str) -> Vec<Column> {
    diesel::sql_query(
        "SELECT column_name::text, data_type::text, is_nullable::text \
         FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 \
         ORDER BY ordinal_position",
    )
    .bind::<Text, _>(table)
    .load(conn)
    .await
    .unwrap()
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql)
        .get_result::<N>(conn)
        .await
        .unwrap()
        .n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_on_an_empty_database_and_reapplying_is_a_no_op() {
    let db = TestDatabase::empty().await;
    let applied = db::run_migrations(db.target()).await.unwrap();
    assert_eq!(applied, db::embedded_versions());
    let again = db::run_migrations(db.target()).await.unwrap();
    assert!(again.is_empty(), "re-applied: {again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_executions_has_the_contract_columns_check_and_indexes() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let cols = columns(&mut conn, "job_executions").await;
    let expect = [
        ("id", "integer", "NO"),
        ("job_name", "character varying", "NO"),
        ("status", "character varying", "NO"),
        ("started_at", "timestamp with time zone", "NO"),
        ("completed_at", "timestamp with time zone", "YES"),
        ("duration_ms", "integer", "YES"),
        ("stats", "jsonb", "YES"),
        ("error_message", "text", "YES"),
        ("created_at", "timestamp with time zone", "YES"),
        ("scheduled_for", "timestamp with time zone", "YES"),
    ];
    for (name, ty, nullable) in expect {
        let col = cols
            .iter()
            .find(|c| c.column_name == name)
            .unwrap_or_else(|| panic!("missing column {name}"));
        assert_eq!(
            (col.data_type.as_str(), col.is_nullable.as_str()),
            (ty, nullable),
            "{name}"
        );
    }

    // The status check refuses anything but the four states.
    let bad =
        diesel::sql_query("INSERT INTO job_executions (job_name, status) VALUES ('x', 'paused')")
            .execute(&mut conn)
            .await;
    assert!(bad.unwrap_err().to_string().contains("check constraint"));

    // Defaults: started_at now, stats {}.
    diesel::sql_query("INSERT INTO job_executions (job_name, status) VALUES ('x', 'success')")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM job_executions WHERE stats = '{}'::jsonb \
             AND started_at IS NOT NULL AND created_at IS NOT NULL"
        )
        .await,
        1
    );

    #[derive(diesel::QueryableByName)]
    struct Index {
        #[diesel(sql_type = Text)]
        indexdef: String,
    }
    let defs: Vec<String> = diesel::sql_query(
        "SELECT indexdef::text FROM pg_indexes WHERE tablename = 'job_executions'",
    )
    .load::<Index>(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .map(|i| i.indexdef)
    .collect();
    for wanted in [
        "USING btree (job_name)",
        "USING btree (status)",
        "USING btree (started_at DESC)",
        "USING btree (job_name, started_at DESC)",
    ] {
        assert!(
            defs.iter()
                .any(|d| d.ends_with(wanted) && !d.contains("UNIQUE")),
            "no index {wanted} in {defs:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcriptions_gets_the_columns_the_jobs_use() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let cols = columns(&mut conn, "transcriptions").await;
    for (name, ty) in [
        ("id", "uuid"),
        ("created_at", "timestamp with time zone"),
        ("audio_file_path", "text"),
        ("audio_deleted_at", "timestamp with time zone"),
        ("stt_provider_request_id", "text"),
        ("audio_cost_usd", "numeric"),
    ] {
        assert!(
            cols.iter()
                .any(|c| c.column_name == name && c.data_type == ty),
            "{name} {ty} missing from {cols:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_migrations_revert_everything_and_up_applies_again() {
    let db = TestDatabase::new().await;
    for _ in db::embedded_versions() {
        db::revert_last_migration(db.target()).await.unwrap();
    }
    let mut conn = db.connect().await;
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name IN ('job_executions', 'transcriptions')"
        )
        .await,
        0
    );
    let applied = db::run_migrations(db.target()).await.unwrap();
    assert_eq!(applied.len(), db::embedded_versions().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_application_table_is_extended_and_never_dropped() {
    let db = TestDatabase::empty().await;
    let mut conn = db.connect().await;
    // The main application's own table, with a column of its own and a row.
    diesel::sql_query(
        "CREATE TABLE public.transcriptions (id UUID PRIMARY KEY DEFAULT gen_random_uuid(), \
         created_at TIMESTAMPTZ NOT NULL DEFAULT now(), user_id TEXT)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("INSERT INTO transcriptions (user_id) VALUES ('u1')")
        .execute(&mut conn)
        .await
        .unwrap();
    db::run_migrations(db.target()).await.unwrap();
    let cols = columns(&mut conn, "transcriptions").await;
    assert!(cols.iter().any(|c| c.column_name == "audio_cost_usd"));
    assert!(cols.iter().any(|c| c.column_name == "user_id"));
    // Reverting leaves the application's table and its row in place.
    for _ in db::embedded_versions() {
        db::revert_last_migration(db.target()).await.unwrap();
    }
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM transcriptions WHERE user_id = 'u1'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_database_creates_a_missing_database_once() {
    let name = format!(
        "bgjobs_test_{}_ensure_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let target = db::testing::admin_target().with_database(&name);
    assert!(db::ensure_database(&target).await.unwrap());
    assert!(!db::ensure_database(&target).await.unwrap());
    let mut admin = db::testing::admin_target().connect().await.unwrap();
    diesel::sql_query(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}
