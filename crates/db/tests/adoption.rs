//! Taking over the database of the Node.js system this service replaces: its
//! `job_executions` (the contract's exact DDL, its four indexes under its own names, old
//! rows, executions left running) and the application's wider `transcriptions`.

use db::testing::TestDatabase;
use db::DbError;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// The old system's schema and data (shared with the server's takeover test).
const OLD_SYSTEM_SQL: &str = include_str!("fixtures/node_system.sql");

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

async fn lines(conn: &mut AsyncPgConnection, sql: &str) -> Vec<String> {
    diesel::sql_query(sql)
        .load::<Line>(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|l| l.line)
        .collect()
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
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

async fn old_database() -> TestDatabase {
    let db = TestDatabase::empty().await;
    db.connect()
        .await
        .batch_execute(OLD_SYSTEM_SQL)
        .await
        .expect("old system's schema");
    db
}

const HISTORY: &str = "SELECT concat_ws('|', id, job_name, status, started_at, completed_at, \
     duration_ms, stats, error_message, created_at) AS line FROM job_executions \
     WHERE status <> 'running' ORDER BY id";
const APPLICATION_ROWS: &str = "SELECT concat_ws('|', id, user_id, title, created_at, updated_at, \
     audio_file_path, audio_deleted_at, stt_provider_request_id, audio_cost_usd, transcript) \
     AS line FROM transcriptions ORDER BY id";
const INDEXES: &str = "SELECT indexname || ' ' || substring(indexdef FROM ' USING (.*)$') AS line \
     FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1 ORDER BY indexname";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_adopts_the_old_database_keeping_rows_and_indexes_and_is_then_a_no_op() {
    let db = old_database().await;
    let mut conn = db.connect().await;
    let history_before = lines(&mut conn, HISTORY).await;
    let app_before = lines(&mut conn, APPLICATION_ROWS).await;
    let old_indexes: Vec<String> = diesel::sql_query(INDEXES)
        .bind::<Text, _>("job_executions")
        .load::<Line>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert_eq!(old_indexes.len(), 5, "{old_indexes:?}");

    let applied = db::run_migrations(db.target())
        .await
        .expect("adopting migrate");
    assert_eq!(applied, db::embedded_versions());
    let again = db::run_migrations(db.target())
        .await
        .expect("second migrate");
    assert!(again.is_empty(), "re-applied: {again:?}");

    // Every old row is kept, the finished ones unchanged.
    assert_eq!(lines(&mut conn, HISTORY).await[..3], history_before[..]);
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM job_executions").await,
        5
    );
    // The stale ones are closed at once, with the reason.
    let stale = lines(
        &mut conn,
        "SELECT concat_ws('|', job_name, status, error_message, completed_at IS NOT NULL, \
         duration_ms >= 0, worker_id IS NULL, scheduled_for IS NULL) AS line \
         FROM job_executions WHERE started_at < now() - interval '20 hours' \
         AND stats = '{}' AND error_message IS DISTINCT FROM 'Deepgram API returned 500' \
         ORDER BY job_name",
    )
    .await;
    assert_eq!(stale.len(), 2, "{stale:?}");
    for row in &stale {
        assert!(row.contains("|failed|"), "{row}");
        assert!(row.contains(db::TAKEOVER_MESSAGE_PREFIX), "{row}");
        assert!(row.ends_with("|t|t|t|t"), "{row}");
    }
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM job_executions WHERE status = 'running'"
        )
        .await,
        0
    );
    // Old rows read as manual first tries with no slot, worker or lease.
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM job_executions WHERE triggered_by = 'manual' \
             AND attempt = 1 AND NOT dry_run AND lease_expires_at IS NULL"
        )
        .await,
        5
    );

    // The old indexes stay under their names; none is built twice; ours are added.
    let indexes = lines(
        &mut conn,
        "SELECT indexname || ' ' || substring(indexdef FROM ' USING (.*)$') AS line \
         FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'job_executions' \
         ORDER BY indexname",
    )
    .await;
    for old in &old_indexes {
        assert!(indexes.contains(old), "{old} lost: {indexes:?}");
    }
    let definitions: Vec<&str> = indexes
        .iter()
        .map(|l| l.split_once(' ').unwrap().1)
        .collect();
    let mut unique = definitions.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), definitions.len(), "duplicates: {indexes:?}");
    for ours in [
        "uq_job_executions_slot",
        "uq_job_executions_one_running",
        "idx_job_executions_running_lease",
        "idx_job_executions_job_name_started_at_id",
    ] {
        assert!(
            indexes.iter().any(|l| l.starts_with(ours)),
            "{ours} missing: {indexes:?}"
        );
    }
    // The one-running rule holds from now on.
    diesel::sql_query(
        "INSERT INTO job_executions (job_name, status) VALUES ('cost_update', 'running')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert!(diesel::sql_query(
        "INSERT INTO job_executions (job_name, status) VALUES ('cost_update', 'running')"
    )
    .execute(&mut conn)
    .await
    .is_err());

    // The application's table: its rows, columns and precision untouched; only this
    // service's bookkeeping columns added.
    assert_eq!(lines(&mut conn, APPLICATION_ROWS).await, app_before);
    let columns = lines(
        &mut conn,
        "SELECT column_name || ' ' || format_type(atttypid, atttypmod) AS line \
         FROM information_schema.columns c JOIN pg_attribute a \
           ON a.attrelid = 'public.transcriptions'::regclass AND a.attname = c.column_name \
         WHERE table_schema = 'public' AND table_name = 'transcriptions' \
         ORDER BY ordinal_position",
    )
    .await;
    assert_eq!(
        columns,
        [
            "id uuid",
            "user_id uuid",
            "title text",
            "created_at timestamp with time zone",
            "updated_at timestamp with time zone",
            "audio_file_path text",
            "audio_deleted_at timestamp with time zone",
            "stt_provider_request_id text",
            "audio_cost_usd numeric(10,6)",
            "transcript jsonb",
            "cost_status text",
            "cost_error text",
            "cost_check_count integer",
            "cost_checked_at timestamp with time zone",
            "cost_gave_up_at timestamp with time zone",
        ]
    );
    // Not marked as created by this service: no down.sql may drop it.
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM pg_description \
             WHERE objoid = 'public.transcriptions'::regclass"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_column_type_stops_migrate_before_anything_changes() {
    let db = TestDatabase::empty().await;
    let mut conn = db.connect().await;
    conn.batch_execute(
        "CREATE TABLE public.transcriptions (id BIGSERIAL PRIMARY KEY, \
         created_at TIMESTAMPTZ NOT NULL DEFAULT now(), audio_cost_usd DOUBLE PRECISION)",
    )
    .await
    .unwrap();
    let err = db::run_migrations(db.target()).await.unwrap_err();
    assert!(matches!(err, DbError::Incompatible(_)), "{err:?}");
    let message = err.to_string();
    for part in [
        "public.transcriptions.id",
        "bigint",
        "uuid",
        "public.transcriptions.audio_cost_usd",
        "double precision",
        "numeric",
        "nothing was changed",
    ] {
        assert!(message.contains(part), "{part:?} missing in {message}");
    }
    // Nothing was created or changed.
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind = 'r'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM information_schema.columns \
             WHERE table_name = 'transcriptions'"
        )
        .await,
        3
    );
    // The dry run refuses the same way.
    let err = db::plan_migrations(db.target()).await.unwrap_err();
    assert!(matches!(err, DbError::Incompatible(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_lists_every_pending_statement_and_changes_nothing() {
    let db = old_database().await;
    let mut conn = db.connect().await;
    let schema_before = pg_dump_schema(db.name());
    let plan = db::plan_migrations(db.target()).await.unwrap();
    assert!(plan.database_exists);
    let names: Vec<String> = plan
        .pending
        .iter()
        .map(|(name, _)| name.replace('-', "").split('_').next().unwrap().to_owned())
        .collect();
    assert_eq!(names, db::embedded_versions());
    assert!(plan.pending[0]
        .1
        .contains("CREATE TABLE IF NOT EXISTS public.job_executions"));
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("2 execution(s) left running")),
        "{:?}",
        plan.notes
    );
    assert_eq!(pg_dump_schema(db.name()), schema_before);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM job_executions WHERE status = 'running'"
        )
        .await,
        2
    );

    // Once applied, nothing is pending.
    db::run_migrations(db.target()).await.unwrap();
    let plan = db::plan_migrations(db.target()).await.unwrap();
    assert!(plan.pending.is_empty(), "{:?}", plan.pending);
    assert!(plan.notes.is_empty(), "{:?}", plan.notes);

    // A database that does not exist is not created by a dry run.
    let missing = db.target().with_database("bgjobs_test_never_created");
    let plan = db::plan_migrations(&missing).await.unwrap();
    assert!(!plan.database_exists);
    assert_eq!(plan.pending.len(), db::embedded_versions().len());
    assert!(matches!(
        missing.connect().await,
        Err(DbError::UnknownDatabase(_))
    ));
}

/// `pg_dump --schema-only` of a test database, without the lines that differ between two
/// databases of the same schema (comments, settings, diesel's bookkeeping).
fn pg_dump_schema(database: &str) -> String {
    let url = db::testing::database_url(database);
    let out = std::process::Command::new("pg_dump")
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--exclude-table=public.__diesel_schema_migrations",
        ])
        .arg(&url)
        .output()
        .expect("pg_dump (Debian package postgresql-client) is needed for this test");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("--") && !l.starts_with("SET ") && !l.trim().is_empty())
        // pg_dump 15.14+ fences its output with a random `\restrict` key.
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .filter(|l| !l.contains("__diesel_schema_migrations") && !l.contains("diesel_"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_database_gets_the_same_schema_as_before_adoption_was_added() {
    // The migrations as they were, straight from their SQL.
    let before = TestDatabase::empty().await;
    before
        .connect()
        .await
        .batch_execute(include_str!("fixtures/schema_before_adoption.sql"))
        .await
        .unwrap();
    // Today's migrations up to the same version.
    let now = TestDatabase::empty().await;
    let last = "20261128000006";
    let conn = now.connect().await;
    tokio::task::spawn_blocking(move || {
        use diesel::migration::MigrationSource;
        use diesel_migrations::MigrationHarness;
        let mut wrapper: diesel_async::async_connection_wrapper::AsyncConnectionWrapper<
            AsyncPgConnection,
        > = conn.into();
        // Creates diesel's bookkeeping table.
        wrapper.applied_migrations().unwrap();
        let migrations = MigrationSource::<diesel::pg::Pg>::migrations(&db::MIGRATIONS).unwrap();
        for m in migrations
            .iter()
            .filter(|m| m.name().version().to_string().as_str() <= last)
        {
            wrapper.run_migration(m.as_ref()).unwrap();
        }
    })
    .await
    .unwrap();
    let expected = pg_dump_schema(before.name());
    assert!(
        expected.contains("CREATE TABLE public.job_executions"),
        "{expected}"
    );
    assert_eq!(pg_dump_schema(now.name()), expected);
}

/// The old database changed by `variant` (its own database name as `{db}`).
async fn old_database_with(variant: &str) -> TestDatabase {
    let db = old_database().await;
    db.connect()
        .await
        .batch_execute(&variant.replace("{db}", db.name()))
        .await
        .unwrap_or_else(|e| panic!("{variant}: {e}"));
    db
}

/// The old database changed by `variant` (its own database name as `{db}`): `migrate`
/// and its dry run must refuse it, naming each of `parts`, and change nothing.
async fn refused(variant: &str, parts: &[&str]) {
    let db = old_database_with(variant).await;
    let schema_before = pg_dump_schema(db.name());
    for (what, result) in [
        ("dry run", db::plan_migrations(db.target()).await.map(drop)),
        ("migrate", db::run_migrations(db.target()).await.map(drop)),
    ] {
        let err = result.expect_err(what);
        assert!(matches!(err, DbError::Incompatible(_)), "{what}: {err:?}");
        let message = err.to_string();
        for part in parts.iter().chain(&["nothing was changed"]) {
            assert!(
                message.contains(part),
                "{what}: {part:?} missing in {message}"
            );
        }
    }
    assert_eq!(pg_dump_schema(db.name()), schema_before, "{variant}");
    let mut conn = db.connect().await;
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM pg_class WHERE relname = '__diesel_schema_migrations'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_time_created_at_is_refused_unless_the_database_runs_in_utc() {
    // A wall-clock time in Los Angeles, read as UTC, makes a row 8 hours older than it
    // is: its audio would go before the retention ends.
    refused(
        "ALTER TABLE transcriptions ALTER created_at TYPE timestamp; \
         ALTER DATABASE \"{db}\" SET timezone = 'America/Los_Angeles'",
        &[
            "public.transcriptions.created_at is timestamp without time zone",
            "America/Los_Angeles",
            "timestamptz",
        ],
    )
    .await;
    // Europe/London is UTC in winter only.
    refused(
        "ALTER TABLE transcriptions ALTER created_at TYPE timestamp; \
         ALTER DATABASE \"{db}\" SET timezone = 'Europe/London'",
        &["Europe/London"],
    )
    .await;
    // Where the sessions run in UTC, the same column is read right and adopted.
    let db = old_database().await;
    db.connect()
        .await
        .batch_execute(&format!(
            "ALTER TABLE transcriptions ALTER created_at TYPE timestamp; \
             ALTER DATABASE \"{}\" SET timezone = 'Etc/UTC'",
            db.name()
        ))
        .await
        .unwrap();
    db::run_migrations(db.target())
        .await
        .expect("a UTC database's timestamp column is adopted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_that_would_round_a_cost_to_zero_or_refuse_a_message_are_refused() {
    refused(
        "ALTER TABLE transcriptions ALTER audio_cost_usd TYPE numeric(8,2); \
         ALTER TABLE job_executions ALTER error_message TYPE varchar(120) \
           USING left(error_message, 120)",
        &[
            "public.transcriptions.audio_cost_usd is numeric(8,2)",
            "scale of at least 6",
            "public.job_executions.error_message is character varying(120)",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_path_that_does_not_start_at_public_is_refused() {
    refused(
        "CREATE SCHEMA app; ALTER TABLE public.transcriptions SET SCHEMA app; \
         ALTER DATABASE \"{db}\" SET search_path = app, public",
        &["search_path (app, public)", "schema app", "schema public"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_table_or_index_under_one_of_this_services_names_is_refused() {
    refused(
        "CREATE TABLE job_workers (id serial PRIMARY KEY, name text); \
         CREATE INDEX idx_transcriptions_audio_cleanup ON transcriptions (created_at)",
        &[
            "public.job_workers already exists",
            "migration 20261130180000",
            "public.idx_transcriptions_audio_cleanup exists as",
        ],
    )
    .await;
    // What a failed CREATE INDEX CONCURRENTLY leaves: the right definition, not valid.
    refused(
        "ALTER TABLE public.transcriptions ADD COLUMN cost_gave_up_at TIMESTAMPTZ NULL; \
         CREATE INDEX idx_transcriptions_cost_pending ON public.transcriptions (id) \
           WHERE audio_cost_usd IS NULL AND stt_provider_request_id IS NOT NULL \
           AND cost_gave_up_at IS NULL; \
         UPDATE pg_index SET indisvalid = false \
           WHERE indexrelid = 'public.idx_transcriptions_cost_pending'::regclass",
        &["index public.idx_transcriptions_cost_pending exists but is not valid"],
    )
    .await;
    // Built beforehand the way the README shows, valid: adopted as it is.
    let db = old_database().await;
    db.connect()
        .await
        .batch_execute(
            "ALTER TABLE public.transcriptions ADD COLUMN cost_gave_up_at TIMESTAMPTZ NULL; \
             CREATE INDEX idx_transcriptions_cost_pending ON public.transcriptions (id) \
               WHERE audio_cost_usd IS NULL AND stt_provider_request_id IS NOT NULL \
               AND cost_gave_up_at IS NULL",
        )
        .await
        .unwrap();
    db::run_migrations(db.target())
        .await
        .expect("an index built beforehand is adopted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_status_check_under_another_name_is_refused() {
    refused(
        "ALTER TABLE job_executions DROP CONSTRAINT job_executions_status_check; \
         ALTER TABLE job_executions ADD CONSTRAINT job_executions_status_valid \
           CHECK (status IN ('running', 'success', 'failed'))",
        &["check constraint job_executions_status_valid", "'skipped'"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_sequence_behind_the_table_is_refused_with_the_statement_that_mends_it() {
    refused(
        "SELECT setval('job_executions_id_seq', 2)",
        &[
            "id sequence public.job_executions_id_seq",
            "would hand out 3",
            "ids up to 5",
            "SELECT setval('public.job_executions_id_seq',",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_counts_the_old_skipped_slots_that_will_change_status() {
    let db = old_database().await;
    let mut conn = db.connect().await;
    conn.batch_execute(
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, error_message) \
         VALUES ('audio_cleanup', 'failed', now(), now(), 'skipped: already running')",
    )
    .await
    .unwrap();
    let plan = db::plan_migrations(db.target()).await.unwrap();
    assert!(
        plan.notes
            .iter()
            .any(|n| n.starts_with("1 failed execution(s) whose message starts with 'skipped:'")),
        "{:?}",
        plan.notes
    );
    db::run_migrations(db.target()).await.unwrap();
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM job_executions WHERE status = 'skipped'"
        )
        .await,
        1
    );
}

/// The old database changed by `variant` (its own database name as `{db}`) is adopted.
async fn adopted(variant: &str) {
    let db = old_database_with(variant).await;
    if let Err(e) = db::run_migrations(db.target()).await {
        panic!("{variant}: refused: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_roles_time_zone_counts_too() {
    // The service's own sessions would run in UTC; the application's role writes local
    // times in Los Angeles.
    let role = "bgjobs_test_tz_app";
    refused(
        &format!(
            "ALTER TABLE transcriptions ALTER created_at TYPE timestamp; \
             DROP ROLE IF EXISTS {role}; CREATE ROLE {role}; \
             ALTER ROLE {role} IN DATABASE \"{{db}}\" SET timezone = 'America/Los_Angeles'"
        ),
        &["America/Los_Angeles (the setting of role bgjobs_test_tz_app)"],
    )
    .await;
    let admin = TestDatabase::empty().await;
    admin
        .connect()
        .await
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_checks_are_judged_by_what_they_allow() {
    adopted("ALTER TABLE job_executions ADD CONSTRAINT not_empty CHECK (status <> '')").await;
    adopted("ALTER TABLE job_executions ADD CONSTRAINT short CHECK (length(status) <= 7)").await;
    refused(
        "ALTER TABLE job_executions ADD CONSTRAINT no_skip CHECK (status <> 'skipped')",
        &[
            "check constraint no_skip",
            "would refuse this service's 'skipped'",
        ],
    )
    .await;
    refused(
        "ALTER TABLE job_executions ADD CONSTRAINT pair \
           CHECK (status <> 'skipped' OR job_name <> '')",
        &["check constraint pair", "reads other columns too"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_is_read_as_it_will_answer() {
    // The table's ids go up to 5: a sequence whose next value is 6 is right.
    adopted("SELECT setval('job_executions_id_seq', 6, false)").await;
    adopted("SELECT setval('job_executions_id_seq', 5, true)").await;
    refused(
        "SELECT setval('job_executions_id_seq', 5, false)",
        &["would hand out 5", "ids up to 5"],
    )
    .await;
    // A default that calls a sequence the column does not own.
    refused(
        "CREATE SEQUENCE public.other_seq; \
         ALTER TABLE job_executions ALTER id SET DEFAULT nextval('public.other_seq')",
        &["id sequence public.other_seq", "would hand out 1"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_and_domains_are_read_through() {
    refused(
        "ALTER TABLE transcriptions ALTER audio_cost_usd TYPE numeric(8,-2)",
        &["numeric(8,-2)", "scale of at least 6"],
    )
    .await;
    adopted(
        "CREATE DOMAIN usd AS numeric(12,6); \
         ALTER TABLE transcriptions ALTER audio_cost_usd TYPE usd",
    )
    .await;
    adopted("ALTER TABLE job_executions ALTER error_message TYPE varchar(10000)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_the_migrations_would_take_over_are_refused() {
    refused(
        "CREATE TABLE app_events (id int); \
         CREATE INDEX job_execution_events_execution ON app_events (id); \
         DROP INDEX job_executions_status_idx; \
         CREATE INDEX idx_job_executions_status ON transcriptions (created_at); \
         CREATE FUNCTION public.job_executions_notify() RETURNS trigger LANGUAGE plpgsql \
           AS $$ BEGIN RETURN NULL; END $$; \
         CREATE TRIGGER job_executions_deleted_notify AFTER DELETE ON job_executions \
           FOR EACH ROW EXECUTE FUNCTION public.job_executions_notify()",
        &[
            "public.job_execution_events_execution exists as \"CREATE INDEX job_execution_events_execution ON public.app_events",
            "public.idx_job_executions_status already exists as an index that is not an index of public.job_executions",
            "function public.job_executions_notify() already exists",
            "trigger job_executions_deleted_notify on public.job_executions already exists",
        ],
    )
    .await;
}
