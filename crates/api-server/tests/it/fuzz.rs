//! Fuzzes the running server from its own OpenAPI description with schemathesis (from
//! PyPI; `scripts/test.sh` installs it): no request may get a 5xx, and every answer must
//! match the documented schema, status codes and content types.

use std::process::Command;

use db::testing::TestDatabase;

use crate::support::server::ServerProcess;
use crate::support::storage::SERVICE_ROLE_KEY;

const TOKEN: &str = "fuzz-admin-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let db = TestDatabase::new().await;
    {
        use diesel_async::RunQueryDsl;
        let mut conn = db.connect().await;
        diesel::sql_query(
            "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, stats, error_message) \
             SELECT CASE WHEN n % 2 = 0 THEN 'audio_cleanup' ELSE 'cost_update' END, \
                    CASE WHEN n % 3 = 0 THEN 'failed' ELSE 'success' END, \
                    now() - (n || ' hours')::interval, now() - (n || ' hours')::interval + interval '3 seconds', \
                    3000, '{\"deleted\": 1}', CASE WHEN n % 3 = 0 THEN 'boom' END \
             FROM generate_series(1, 40) n",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    // Both jobs enabled (their services unreachable, so runs end quickly as failed).
    let server = ServerProcess::start(&[
        ("DATABASE_URL", db.url()),
        ("ADMIN_TOKEN", TOKEN),
        ("RUST_LOG", "warn"),
        ("SUPABASE_URL", "http://127.0.0.1:9"),
        ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY),
        ("DEEPGRAM_API_KEY", "fuzz-deepgram-key"),
        ("DEEPGRAM_API_URL", "http://127.0.0.1:9"),
    ])
    .await;
    let base = server.url("");
    let port = server.port;

    let report_dir = std::env::temp_dir().join(format!("schemathesis-{port}"));
    let output = Command::new("schemathesis")
        .arg("run")
        .arg(format!("{base}/internal/api/v1/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance,unsupported_method",
        ])
        .args([
            "--max-examples",
            "40",
            "--seed",
            "20261128",
            // One worker: hypothesis parses lambda sources with `ast`, and CPython 3.11
            // raises "AST constructor recursion depth mismatch" when two threads do so.
            "--workers",
            "1",
        ])
        // The event stream never ends, so it cannot be answered as one response; its
        // auth and limits are tested in the `live` and `access` modules.
        .args(["--exclude-path", "/internal/api/v1/events"])
        .arg("--report-dir")
        .arg(&report_dir)
        .env("NO_COLOR", "1")
        .current_dir(std::env::temp_dir())
        .output()
        .expect(
            "schemathesis is needed for this test: pip install schemathesis (scripts/test.sh does)",
        );
    drop(server);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("Tested: 15"),
        "not every operation was exercised:\n{stdout}"
    );
}
