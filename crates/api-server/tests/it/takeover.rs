//! Replacing the Node.js jobs: the real binary on a database built from the old system's
//! exact DDL and data (`crates/db/tests/fixtures/node_system.sql`), with Deepgram and
//! Supabase Storage replaced by local servers answering as `EXTERNAL_APIS.md` says.

use std::process::Command;
use std::time::Duration;

use db::testing::TestDatabase;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::server::{self, eventually, run, ServerProcess};
use crate::support::storage::SERVICE_ROLE_KEY;

const OLD_SYSTEM_SQL: &str = include_str!("../../../db/tests/fixtures/node_system.sql");

fn api_server(database_url: &str, args: &[&str]) -> (i32, String, String) {
    run(server::api_server(&[("DATABASE_URL", database_url)]).args(args))
}

#[derive(diesel::QueryableByName)]
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

/// The application's own columns of every transcription.
const APPLICATION_COLUMNS: &str = "SELECT concat_ws('|', id, user_id, title, created_at, \
     updated_at, audio_file_path, stt_provider_request_id, transcript) AS line \
     FROM transcriptions ORDER BY id";

/// Deepgram's Management API knowing the old system's request `abc123def456.7890xyz`.
async fn deepgram() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/abc123def456/requests/7890xyz"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "request_id": "7890xyz",
            "project_uuid": "abc123def456",
            "created": "2026-10-28T02:00:15.234567Z",
            "path": "/v1/listen?model=nova-3",
            "api_key_id": "0e1b5c1a-7777-4d2e-9a51-0c2f3a4b5c6d",
            "response": {
                "details": {"usd": 0.0043, "duration": 25.933, "total_audio": 25.933,
                            "channels": 1, "streams": 1, "method": "sync", "tier": "nova-3",
                            "models": [], "tags": [], "features": [], "config": {}},
                "code": 200,
                "completed": "2026-10-28T02:00:17.001Z"
            },
            "callback": null
        })))
        .mount(&server)
        .await;
    server
}

/// Supabase Storage with an `audio` bucket holding the old transcription's file.
async fn storage() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/storage/v1/bucket/audio"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "audio", "name": "audio", "owner": "", "owner_id": "", "public": false,
            "type": "STANDARD", "file_size_limit": null, "allowed_mime_types": null,
            "created_at": "2025-01-01T00:00:00.000Z", "updated_at": "2025-01-01T00:00:00.000Z"
        })))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "bucket_id": "audio", "name": "u1/old.webm", "owner": "", "owner_id": "",
            "version": "0f0c9c7e-4a3b-4a51-9d39-6a1c5a8d2e11",
            "id": "5b8f1c1e-7d4a-4a9e-9a57-2f1f6d0c8e42",
            "updated_at": "2025-06-01T10:00:00.000Z", "created_at": "2025-06-01T10:00:00.000Z",
            "last_accessed_at": "2025-06-01T10:00:00.000Z",
            "metadata": {"eTag": "\"c4ca4238a0b923820dcc509a6f75849b\"", "size": 48213,
                         "mimetype": "audio/webm", "cacheControl": "max-age=3600",
                         "lastModified": "2025-06-01T10:00:00.000Z", "contentLength": 48213,
                         "httpStatusCode": 200},
            "user_metadata": {}
        }])))
        .mount(&server)
        .await;
    server
}

async fn status_of(server: &ServerProcess) -> Vec<Value> {
    let body: Value = reqwest::get(server.url("/internal/api/v1/jobs/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"].as_array().cloned().unwrap_or_default()
}

fn job<'a>(status: &'a [Value], name: &str) -> &'a Value {
    status
        .iter()
        .find(|e| e["job_name"] == name)
        .unwrap_or_else(|| panic!("{name} missing in {status:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_systems_database_is_taken_over_and_both_jobs_run_there() {
    let db = TestDatabase::empty().await;
    let mut conn = db.connect().await;
    conn.batch_execute(OLD_SYSTEM_SQL).await.unwrap();
    let app_before = lines(&mut conn, APPLICATION_COLUMNS).await;

    // migrate twice: the first adopts, the second has nothing to do.
    let (code, out, err) = api_server(db.url(), &["migrate", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 execution(s) left running"), "{out}");
    let (code, out, err) = api_server(db.url(), &["migrate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied"), "{out}");
    let (code, out, err) = api_server(db.url(), &["migrate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("is up to date"), "{out}");

    let deepgram = deepgram().await;
    let storage = storage().await;
    let server = ServerProcess::start(&[
        ("DATABASE_URL", db.url()),
        ("DEEPGRAM_API_KEY", "dg-test-key"),
        ("DEEPGRAM_API_URL", &deepgram.uri()),
        ("SUPABASE_URL", &storage.uri()),
        ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY),
    ])
    .await;

    // The old history is the jobs' history: the latest of each job is an old row, the
    // stale one closed with the reason.
    let status = status_of(&server).await;
    let audio = job(&status, "audio_cleanup");
    assert_eq!(audio["status"], "success", "{audio}");
    assert_eq!(audio["stats"]["deleted"], 45, "{audio}");
    let cost = job(&status, "cost_update");
    assert_eq!(cost["status"], "failed", "{cost}");
    assert!(
        cost["error_message"]
            .as_str()
            .unwrap_or_default()
            .starts_with(db::TAKEOVER_MESSAGE_PREFIX),
        "{cost}"
    );
    let history: Value =
        reqwest::get(server.url("/internal/api/v1/jobs/executions?job_name=cost_update"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        history["data"].as_array().map(Vec::len),
        Some(3),
        "{history}"
    );

    // Both jobs run and succeed on the adopted database; the stale rows do not block them.
    let client = reqwest::Client::new();
    for name in ["audio_cleanup", "cost_update"] {
        let response = client
            .post(server.url(&format!("/internal/api/v1/jobs/{name}/run")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            202,
            "{name}: {}",
            response.text().await.unwrap()
        );
    }
    // The new runs are told from the old rows by their stats.
    eventually(Duration::from_secs(90), "both jobs to succeed", || async {
        let status = status_of(&server).await;
        let audio = job(&status, "audio_cleanup");
        let cost = job(&status, "cost_update");
        (audio["status"] == "success"
            && audio["stats"]["deleted"] == 1
            && cost["status"] == "success"
            && cost["stats"]["updated"] == 1)
            .then_some(())
    })
    .await;

    // The old-style id was priced; the old file's row is marked; nothing else changed.
    let priced = lines(
        &mut conn,
        "SELECT concat_ws('|', stt_provider_request_id, audio_cost_usd, cost_status) AS line \
         FROM transcriptions WHERE title = 'old'",
    )
    .await;
    assert_eq!(priced, ["abc123def456.7890xyz|0.004300|priced"]);
    let marked = lines(
        &mut conn,
        "SELECT concat_ws('|', title, audio_deleted_at IS NOT NULL) AS line \
         FROM transcriptions ORDER BY title",
    )
    .await;
    assert_eq!(marked, ["old|t", "priced|f"]);
    let untouched = lines(
        &mut conn,
        "SELECT concat_ws('|', audio_cost_usd, cost_status, cost_checked_at IS NULL) AS line \
         FROM transcriptions WHERE title = 'priced'",
    )
    .await;
    assert_eq!(untouched, ["0.012300|t"]);
    assert_eq!(lines(&mut conn, APPLICATION_COLUMNS).await, app_before);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_table_of_unusable_types_stops_migrate_and_serve_with_exit_2() {
    let db = TestDatabase::empty().await;
    let mut conn = db.connect().await;
    conn.batch_execute(
        "CREATE TABLE public.transcriptions (id BIGSERIAL PRIMARY KEY, title TEXT, \
         created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await
    .unwrap();
    for args in [&["migrate"][..], &["migrate", "--dry-run"], &["serve"]] {
        let (code, out, err) = api_server(db.url(), args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains("public.transcriptions.id has type bigint, but this service needs uuid"),
            "{args:?}: {err}"
        );
    }
    let tables = lines(
        &mut conn,
        "SELECT tablename::text AS line FROM pg_tables WHERE schemaname = 'public'",
    )
    .await;
    assert_eq!(tables, ["transcriptions"]);
}

/// The old system's database, migrated by its owner.
async fn migrated_old_database() -> (TestDatabase, AsyncPgConnection) {
    let db = TestDatabase::empty().await;
    let mut conn = db.connect().await;
    conn.batch_execute(OLD_SYSTEM_SQL).await.unwrap();
    let (code, out, err) = api_server(db.url(), &["migrate"]);
    assert_eq!(code, 0, "{out}{err}");
    (db, conn)
}

/// A login role named after the test database (roles are per cluster) with `grants`
/// (`{role}` standing for its quoted name), and the test database's URL as that role.
/// Drop it with [`drop_role`].
async fn login_role(
    db: &TestDatabase,
    conn: &mut AsyncPgConnection,
    suffix: &str,
    grants: &str,
) -> (String, String) {
    let role = format!("{}_{suffix}", db.name());
    let quoted = format!("\"{role}\"");
    conn.batch_execute(&format!(
        "CREATE ROLE {quoted} LOGIN; {}",
        grants.replace("{role}", &quoted)
    ))
    .await
    .unwrap();
    let url = db.url().replacen("://postgres@", &format!("://{role}@"), 1);
    assert_ne!(url, db.url(), "the test URL names user postgres");
    (role, url)
}

async fn drop_role(conn: &mut AsyncPgConnection, role: &str) {
    conn.batch_execute(&format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""))
        .await
        .unwrap();
}

/// The DELETE requests the Storage stand-in received.
async fn deletes(storage: &MockServer) -> usize {
    storage
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == "DELETE")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_neither_migrates_nor_creates_the_database() {
    let db = TestDatabase::empty().await;
    let mut conn = db.connect().await;
    conn.batch_execute(OLD_SYSTEM_SQL).await.unwrap();
    let history = "SELECT concat_ws('|', id, status, error_message) AS line \
                   FROM job_executions ORDER BY id";
    let before = lines(&mut conn, history).await;
    let job = [
        ("DATABASE_URL", db.url()),
        ("DEEPGRAM_API_KEY", "dg-test-key"),
        ("DEEPGRAM_API_URL", "http://127.0.0.1:9"),
    ];
    let (code, out, err) =
        run(server::api_server(&job).args(["run-job", "cost_update", "--dry-run"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("pending migration(s)"), "{err}");
    assert!(err.contains("api-server migrate"), "{err}");
    // A job its configuration keeps to dry runs is refused the same way.
    let storage = storage().await;
    let storage_url = storage.uri();
    let forced = [
        ("DATABASE_URL", db.url()),
        ("SUPABASE_URL", storage_url.as_str()),
        ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY),
        ("AUDIO_CLEANUP_DRY_RUN", "true"),
    ];
    let (code, out, err) = run(server::api_server(&forced).args(["run-job", "audio_cleanup"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("pending migration(s)"), "{err}");
    assert_eq!(
        lines(&mut conn, history).await,
        before,
        "old rows untouched"
    );
    let tables = lines(
        &mut conn,
        "SELECT tablename::text AS line FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .await;
    assert_eq!(tables, ["job_executions", "transcriptions"]);

    let missing = db.url().replace(db.name(), &format!("{}_never", db.name()));
    let (code, out, err) = run(server::api_server(&[
        ("DATABASE_URL", missing.as_str()),
        ("DEEPGRAM_API_KEY", "dg-test-key"),
    ])
    .args(["run-job", "cost_update", "--dry-run"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("does not exist"), "{err}");
    let created = lines(
        &mut conn,
        &format!(
            "SELECT datname::text AS line FROM pg_database WHERE datname = '{}_never'",
            db.name()
        ),
    )
    .await;
    assert!(created.is_empty(), "the dry run created {created:?}");

    // Migrated, the forced dry run runs, is recorded as a dry run and deletes nothing.
    let (code, out, err) = api_server(db.url(), &["migrate"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run(server::api_server(&forced).args(["run-job", "audio_cleanup"]));
    assert_eq!(code, 0, "{out}{err}");
    let latest = lines(
        &mut conn,
        "SELECT concat_ws('|', status, dry_run) AS line FROM job_executions \
         WHERE job_name = 'audio_cleanup' ORDER BY id DESC LIMIT 1",
    )
    .await;
    assert_eq!(latest, ["success|t"]);
    assert_eq!(deletes(&storage).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_ddl_rights_runs_on_a_database_the_owner_migrated() {
    let (db, mut conn) = migrated_old_database().await;
    // The application's role: rows, not schema (PostgreSQL 15 gives no one CREATE on
    // public by default).
    let (role, as_role) = login_role(
        &db,
        &mut conn,
        "app",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
         GRANT SELECT ON public.__diesel_schema_migrations TO {role}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    )
    .await;
    let (code, out, err) = api_server(&as_role, &["migrate"]);
    let (run_code, run_out, run_err) = run(server::api_server(&[
        ("DATABASE_URL", as_role.as_str()),
        ("DEEPGRAM_API_KEY", "dg-test-key"),
        ("DEEPGRAM_API_URL", "http://127.0.0.1:9"),
    ])
    .args(["run-job", "cost_update", "--dry-run"]));
    drop_role(&mut conn, &role).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("is up to date"), "{out}");
    // It reaches the job (which then finds Deepgram unreachable): no DDL was needed.
    assert!(
        !run_err.contains("permission denied") && !run_out.contains("permission denied"),
        "{run_out}{run_err}"
    );
    assert!(
        run_code == 0 || run_code == 1,
        "{run_code}: {run_out}{run_err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_may_not_mark_rows_deletes_no_audio() {
    let (db, mut conn) = migrated_old_database().await;
    // The service's own tables, but only reading the application's.
    let (role, as_role) = login_role(
        &db,
        &mut conn,
        "reader",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; \
         REVOKE UPDATE ON public.transcriptions FROM {role}; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    )
    .await;
    let storage = storage().await;
    let (code, out, err) = run(server::api_server(&[
        ("DATABASE_URL", as_role.as_str()),
        ("SUPABASE_URL", &storage.uri()),
        ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY),
    ])
    .args(["run-job", "audio_cleanup"]));
    drop_role(&mut conn, &role).await;
    assert_eq!(code, 1, "{out}{err}");
    let said = format!("{out}{err}");
    assert!(
        said.contains(&format!("role {role} may not update audio_deleted_at")),
        "{said}"
    );
    assert_eq!(
        deletes(&storage).await,
        0,
        "audio deleted that could not be marked"
    );
}

// ---------------------------------------------------------------------------------------
// Through a real PgBouncer (Debian package `pgbouncer`), as Supabase's poolers are.

/// A PgBouncer child process in front of the test server, killed when dropped.
struct PgBouncer {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl PgBouncer {
    /// Starts PgBouncer on a free port with `pool_mode`, trusting every user. In transaction
    /// mode the server pool is small, so that clients share server connections.
    async fn start(pool_mode: &str) -> Self {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("pgbouncer is required (scripts/install-test-deps.sh installs it)");
        let (host, pg_port) = crate::support::test_server_address();
        let port = server::free_port();
        let dir =
            std::env::temp_dir().join(format!("bgjobs-pgbouncer-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("userlist.txt"), "\"postgres\" \"\"\n").unwrap();
        let ini = format!(
            "[databases]\n* = host={host} port={pg_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/userlist.txt\npool_mode = {pool_mode}\n\
             default_pool_size = {pool_size}\nmax_client_conn = 200\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            dir = dir.display(),
            pool_size = if pool_mode == "session" { 40 } else { 3 },
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        let mut cmd = Command::new(binary);
        if running_as_root() {
            // PgBouncer refuses to run as root; it switches to this user itself.
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success());
            cmd.args(["-u", "postgres"]);
        }
        let child = cmd
            .arg(dir.join("pgbouncer.ini"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start pgbouncer");
        let bouncer = Self { child, port, dir };
        eventually(Duration::from_secs(20), "pgbouncer to listen", || async {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        })
        .await;
        bouncer
    }

    fn url(&self, database: &str, query: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}{query}",
            self.port
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `migrate`, `serve`, both jobs (scheduled through the API and from the command line) and
/// the read API, all through PgBouncer in `pool_mode`.
async fn everything_works_through(pool_mode: &str, query: &str) {
    let db = TestDatabase::empty().await;
    let bouncer = PgBouncer::start(pool_mode).await;
    let url = bouncer.url(db.name(), query);

    let (code, out, err) = api_server(&url, &["migrate"]);
    assert_eq!(code, 0, "{out}{err}\n{}", bouncer.log());
    let (code, out, err) = api_server(&url, &["migrate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("is up to date"), "{out}");

    let mut conn = db.connect().await;
    conn.batch_execute(
        "INSERT INTO transcriptions (created_at, audio_file_path, stt_provider_request_id) VALUES \
         (now() - interval '60 days', 'audio/u1/old.webm', 'abc123def456.7890xyz')",
    )
    .await
    .unwrap();

    let deepgram = deepgram().await;
    let storage = storage().await;
    let vars = [
        ("DATABASE_URL", url.as_str()),
        ("DEEPGRAM_API_KEY", "dg-test-key"),
        ("DEEPGRAM_API_URL", &deepgram.uri()),
        ("SUPABASE_URL", &storage.uri()),
        ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY),
    ];
    let mut server = ServerProcess::start(&vars).await;
    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200, "{}", server.log());

    let client = reqwest::Client::new();
    for name in ["audio_cleanup", "cost_update"] {
        let response = client
            .post(server.url(&format!("/internal/api/v1/jobs/{name}/run")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{name}: {}", server.log());
    }
    // Many API reads at once while the jobs run: each may land on another server
    // connection of the pooler.
    let reads = (0..40).map(|i| {
        let client = client.clone();
        let route = [
            "/internal/api/v1/jobs/status",
            "/internal/api/v1/jobs",
            "/internal/api/v1/jobs/executions",
            "/metrics",
        ][i % 4];
        let url = server.url(route);
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    let statuses = futures_util::future::join_all(reads).await;
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(200))),
        "{statuses:?}\n{}",
        server.log()
    );
    eventually(Duration::from_secs(90), "both jobs to succeed", || async {
        let status = status_of(&server).await;
        let ok = |name: &str| {
            status
                .iter()
                .any(|e| e["job_name"] == name && e["status"] == "success")
        };
        (ok("audio_cleanup") && ok("cost_update")).then_some(())
    })
    .await;
    let status = status_of(&server).await;
    assert_eq!(
        job(&status, "audio_cleanup")["stats"]["deleted"],
        1,
        "{status:?}"
    );
    assert_eq!(
        job(&status, "cost_update")["stats"]["updated"],
        1,
        "{status:?}"
    );
    let (exit, _) = server.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "{}", server.log());
    assert!(
        !server.log().contains("prepared statement"),
        "{}",
        server.log()
    );
    if pool_mode == "transaction" {
        assert!(
            server
                .log()
                .contains("leads to a transaction-mode pooler, where LISTEN cannot work"),
            "the change feed should poll: {}",
            server.log()
        );
    }

    // The command line runs a job through the pooler too.
    let (code, out, err) = run(server::api_server(&vars).args(["run-job", "cost_update"]));
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_jobs_and_the_api_work_through_a_session_mode_pooler() {
    everything_works_through("session", "").await;
}

/// Through a transaction-mode pooler (marked with `?pgbouncer=true`; Supabase's port 6543
/// is found by itself) each round trip may run on another server connection, and the
/// pooler's three server connections are shared by every client: statements are sent
/// unnamed, parsed in the round trip that runs them, so none is unknown or taken where it
/// runs; the change feed polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_jobs_and_the_api_work_through_a_transaction_mode_pooler() {
    everything_works_through("transaction", "?pgbouncer=true").await;
}
