//! The command line as a user runs it: the real binary, a real database, exit codes.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use db::testing::TestDatabase;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::server::{self, run, ServerProcess};
use crate::support::storage::audio_bucket;

/// The binary with a clean environment in a directory without a `.env` file.
fn api_server(vars: &[(&str, &str)]) -> Command {
    let mut cmd = server::api_server(vars);
    cmd.current_dir(empty_dir());
    cmd
}

fn empty_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bgjobs-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn jobs_lists_both_jobs_with_next_run_and_why_they_are_disabled() {
    let (code, out, _) = run(api_server(&[]).arg("jobs"));
    assert_eq!(code, 0);
    let audio = out
        .lines()
        .find(|l| l.starts_with("audio_cleanup"))
        .unwrap();
    assert!(
        audio.contains("0 2 * * *") && audio.contains("no: SUPABASE_URL is not set"),
        "{audio}"
    );
    assert!(audio.contains("T02:00:00Z"), "{audio}");
    let cost = out.lines().find(|l| l.starts_with("cost_update")).unwrap();
    assert!(
        cost.contains("no: DEEPGRAM_API_KEY is not set") && cost.contains("T03:00:00Z"),
        "{cost}"
    );
}

#[test]
fn a_setting_that_is_not_utf8_exits_2_naming_it_without_its_value() {
    use std::os::unix::ffi::OsStrExt;
    let secret = std::ffi::OsStr::from_bytes(b"TOKSECRET\xffTAIL");
    for var in [
        "ADMIN_TOKEN",
        "SUPABASE_SERVICE_ROLE_KEY",
        "RUST_LOG",
        "AUDIO_CLEANUP_SCHEDULE",
    ] {
        let (code, out, err) = run(api_server(&[]).env(var, secret).arg("jobs"));
        assert_eq!(code, 2, "{var}: {out}{err}");
        assert!(
            err.contains(&format!("{var}: is not valid UTF-8 text")),
            "{var}: {err}"
        );
        assert!(!err.contains("TOKSECRET") && !err.contains("TAIL"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A variable this server does not read is none of its business.
    let (code, _, err) = run(api_server(&[])
        .env("SOME_OTHER_TOOL_SETTING", secret)
        .arg("jobs"));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_dot_env_file_with_a_bad_line_is_refused_whole() {
    let dir = empty_dir().join("dot-env");
    std::fs::create_dir_all(&dir).unwrap();
    let jobs = |contents: &[u8]| {
        std::fs::write(dir.join(".env"), contents).unwrap();
        let mut cmd = server::api_server(&[]);
        cmd.current_dir(&dir).arg("jobs");
        run(&mut cmd)
    };
    // Read whole, the file's setting counts: a retention of 0 days is refused.
    let (code, _, err) = jobs(b"# a comment\nAUDIO_RETENTION_DAYS=0\n");
    assert_eq!(code, 2);
    assert!(err.contains("AUDIO_RETENTION_DAYS"), "{err}");
    // A typo above it does not quietly drop it: the whole file is refused.
    for (contents, line) in [
        (&b"JUNK LINE\nAUDIO_RETENTION_DAYS=365\n"[..], Some(1)),
        (
            &b"AUDIO_RETENTION_DAYS=365\nADMIN_TOKEN=\"unterminated secret\n"[..],
            Some(2),
        ),
        (&b"AUDIO_RETENTION_DAYS=365\nX=\xff\n"[..], None),
        // Unquoted, as some tools accept it: the line is named.
        (
            &b"AUDIO_RETENTION_DAYS=365\nCOST_UPDATE_SCHEDULE=0 5 * * *\n"[..],
            Some(2),
        ),
    ] {
        let (code, out, err) = jobs(contents);
        assert_eq!(code, 2, "{out}{err}");
        assert!(err.contains(".env: "), "{err}");
        assert!(err.contains("nothing of the file was used"), "{err}");
        if let Some(line) = line {
            assert!(err.contains(&format!("(line {line})")), "{err}");
        }
        assert!(!err.contains("secret") && !err.contains("0 5 *"), "{err}");
    }
    // Found in a parent directory: the message names the file it read.
    let below = dir.join("below");
    std::fs::create_dir_all(&below).unwrap();
    std::fs::write(dir.join(".env"), b"A=1\nJUNK LINE\n").unwrap();
    let (code, _, err) = run(server::api_server(&[]).current_dir(&below).arg("jobs"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{} has a line", dir.join(".env").display())),
        "{err}"
    );
    assert!(err.contains("(line 2)"), "{err}");
    std::fs::remove_file(dir.join(".env")).unwrap();
}

#[test]
fn an_unknown_job_exits_2_and_lists_the_known_ones() {
    let (code, _, err) = run(api_server(&[]).args(["run-job", "reindex"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("reindex") && err.contains("audio_cleanup, cost_update"),
        "{err}"
    );
}

#[test]
fn invalid_settings_exit_2_naming_the_variable() {
    for (var, value) in [
        ("AUDIO_CLEANUP_SCHEDULE", "0 2 * *"),
        ("COST_UPDATE_SCHEDULE", "61 3 * * *"),
        ("AUDIO_RETENTION_DAYS", "0"),
        ("BIND_ADDR", "everywhere"),
        ("PORT", "70000"),
        ("RUST_LOG_STYLE", "sometimes"),
        ("METRICS_TOKEN", "with space"),
    ] {
        for command in [
            &["jobs"][..],
            &["run-job", "audio_cleanup"],
            &["serve"],
            &["migrate"],
        ] {
            let (code, _, err) = run(api_server(&[(var, value)]).args(command));
            assert_eq!(code, 2, "{var}={value} {command:?}: {err}");
            assert!(err.contains(var), "{var} not named: {err}");
        }
    }
    // A number out of range says the range, not that it is no number.
    let (_, _, err) = run(api_server(&[("PORT", "70000")]).arg("jobs"));
    assert!(
        err.contains("PORT: must be between 1 and 65535, got 70000"),
        "{err}"
    );
}

#[test]
fn a_bad_supabase_url_is_named_without_echoing_its_query() {
    let (code, out, err) = run(api_server(&[
        (
            "SUPABASE_URL",
            "https://abc.supabase.co/?apikey=leaked-key-0123456789",
        ),
        ("SUPABASE_SERVICE_ROLE_KEY", "service-key-0123456789"),
    ])
    .arg("jobs"));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("SUPABASE_URL"), "{err}");
    for secret in ["leaked-key", "service-key"] {
        assert!(
            !err.contains(secret) && !out.contains(secret),
            "{secret} echoed: {out}{err}"
        );
    }
}

#[test]
fn a_viewer_token_without_an_admin_token_exits_2() {
    let (code, _, err) =
        run(api_server(&[("VIEWER_TOKEN", "viewer-0123456789abcdef")]).arg("jobs"));
    assert_eq!(code, 2);
    assert!(err.contains("VIEWER_TOKEN"), "{err}");
    assert!(!err.contains("viewer-0123456789abcdef"), "{err}");
}

#[test]
fn a_disabled_job_is_refused_with_its_reason() {
    let (code, _, err) = run(api_server(&[]).args(["run-job", "cost_update"]));
    assert_eq!(code, 2);
    assert!(err.contains("DEEPGRAM_API_KEY is not set"), "{err}");
}

#[test]
fn serving_on_a_public_address_without_a_token_is_refused() {
    let (code, _, err) = run(api_server(&[("BIND_ADDR", "0.0.0.0:18080")]).arg("serve"));
    assert_eq!(code, 2);
    assert!(err.contains("ADMIN_TOKEN"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_a_missing_database_and_is_then_a_no_op() {
    let name = format!(
        "bgjobs_test_{}_cli_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let url = db::testing::database_url(&name);
    let (code, out, err) = run(api_server(&[("DATABASE_URL", &url)]).arg("migrate"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("applied 2 migration") || out.contains("applied"),
        "{out}"
    );
    let (code, out, _) = run(api_server(&[("DATABASE_URL", &url)]).arg("migrate"));
    assert_eq!(code, 0);
    assert!(out.contains("up to date"), "{out}");
    let mut admin = db::testing::admin_target().connect().await.unwrap();
    use diesel_async::RunQueryDsl;
    diesel::sql_query(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_exits_2_with_a_clear_message_when_the_database_is_unreachable() {
    let (code, _, err) = run(api_server(&[(
        "DATABASE_URL",
        "postgres://postgres:secret-pw@127.0.0.1:1/none",
    )])
    .arg("migrate"));
    assert_eq!(code, 2);
    assert!(err.contains("connect"), "{err}");
    assert!(!err.contains("secret-pw"), "password leaked: {err}");
}

async fn deepgram(status: u16, body: serde_json::Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/projects"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_job_exits_0_on_success_and_prints_the_completion_line() {
    let db = TestDatabase::new().await;
    let mock = deepgram(200, serde_json::json!({"projects": []})).await;
    let (code, out, err) = run(api_server(&[
        ("DATABASE_URL", db.url()),
        ("DEEPGRAM_API_KEY", "dg-test-key"),
        ("DEEPGRAM_API_URL", &mock.uri()),
    ])
    .args(["run-job", "cost_update"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("[Job] Starting cost update (scheduled: 0 3 * * *)"),
        "{out}"
    );
    assert!(
        out.contains(
            "[Job] ✅ Cost update completed: 0 updated, 0 unchanged, 0 skipped, 0 failed ("
        ),
        "{out}"
    );
    assert!(!out.contains("dg-test-key") && !err.contains("dg-test-key"));
    let mut conn = db.connect().await;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        requested_by: Option<String>,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT status::text, requested_by::text FROM job_executions WHERE job_name = 'cost_update'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "success");
    assert_eq!(rows[0].requested_by.as_deref(), Some("cli"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_job_of_a_paused_job_runs_and_says_who_paused_it() {
    let db = TestDatabase::new().await;
    let mock = deepgram(200, serde_json::json!({"projects": []})).await;
    let vars = [
        ("DATABASE_URL", db.url()),
        ("DEEPGRAM_API_KEY", "dg-test-key"),
        ("DEEPGRAM_API_URL", &mock.uri()),
    ];
    let (code, out, err) = run(api_server(&vars).arg("migrate"));
    assert_eq!(code, 0, "{out}{err}");
    let mut conn = db.connect().await;
    use diesel_async::RunQueryDsl;
    diesel::sql_query(
        "INSERT INTO job_controls (job_name, paused, paused_at, paused_by, pause_reason) \
         VALUES ('cost_update', true, now(), 'admin', 'vendor outage')",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    let (code, out, err) = run(api_server(&vars).arg("jobs"));
    assert_eq!(code, 0, "{out}{err}");
    let cost = out.lines().find(|l| l.starts_with("cost_update")).unwrap();
    assert!(cost.contains("by admin: vendor outage"), "{out}");

    let (code, out, err) = run(api_server(&vars).args(["run-job", "cost_update"]));
    assert_eq!(code, 0, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("manual run of a paused job: paused by admin (vendor outage)"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_job_exits_1_when_the_job_fails() {
    let db = TestDatabase::new().await;
    {
        let mut conn = db.connect().await;
        use diesel_async::RunQueryDsl;
        diesel::sql_query(
            "INSERT INTO transcriptions (stt_provider_request_id) \
             VALUES ('a847f427-4ad5-4d67-9b95-db801e58251c')",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let mock = deepgram(
        401,
        serde_json::json!({"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": "r1"}),
    )
    .await;
    let (code, out, err) = run(api_server(&[
        ("DATABASE_URL", db.url()),
        ("DEEPGRAM_API_KEY", "dg-bad-key"),
        ("DEEPGRAM_API_URL", &mock.uri()),
        ("DEEPGRAM_MAX_ATTEMPTS", "1"),
    ])
    .args(["run-job", "cost_update"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("[Job] ❌ Cost update failed: "), "{out}");
    assert!(!out.contains("dg-bad-key") && !err.contains("dg-bad-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reports_what_it_would_delete_and_changes_nothing() {
    use diesel_async::RunQueryDsl;
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    diesel::sql_query(
        "INSERT INTO transcriptions (created_at, audio_file_path) \
         VALUES (now() - interval '40 days', 'audio/u1/a.webm')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let storage = audio_bucket().await;
    let (code, out, err) = run(api_server(&[
        ("DATABASE_URL", db.url()),
        ("SUPABASE_URL", &storage.uri()),
        ("SUPABASE_SERVICE_ROLE_KEY", "sb-test-key"),
    ])
    .args(["run-job", "audio_cleanup", "--dry-run"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("[Job] ✅ Audio cleanup completed: 0 deleted, 0 failed ("),
        "{out}"
    );
    let requests = storage.received_requests().await.unwrap();
    assert!(
        requests.iter().all(|r| r.method.as_str() == "GET"),
        "a dry run sent {requests:?}"
    );
    #[derive(diesel::QueryableByName)]
    struct Marked {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let marked: Marked = diesel::sql_query(
        "SELECT count(*) AS n FROM transcriptions WHERE audio_deleted_at IS NOT NULL",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(marked.n, 0);
    #[derive(diesel::QueryableByName)]
    struct Exec {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        dry_run: bool,
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        stats: serde_json::Value,
    }
    let exec: Exec = diesel::sql_query("SELECT dry_run, stats FROM job_executions")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(exec.dry_run);
    assert_eq!(exec.stats["would_delete"], 1, "{}", exec.stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_status_and_stops_cleanly_on_sigterm() {
    let db = TestDatabase::new().await;
    let mut server = ServerProcess::start(&[("DATABASE_URL", db.url())]).await;
    let body = reqwest::get(server.url("/internal/api/v1/jobs/status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, r#"{"data":[]}"#);
    let (exit, _) = server.terminate(Duration::from_secs(20)).await;
    assert_eq!(exit.code(), Some(0));
}
