//! Fuzzes the running server from its own OpenAPI description with schemathesis (from
//! PyPI; `scripts/test.sh` installs it): no request may get a 5xx, and every answer must
//! match the documented schema, status codes and content types.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use db::testing::TestDatabase;

const TOKEN: &str = "fuzz-admin-token-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // Both jobs enabled (their services unreachable, so runs end quickly as failed).
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_api-server"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", db.url())
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .env("SUPABASE_URL", "http://127.0.0.1:9")
            .env("SUPABASE_SERVICE_ROLE_KEY", "fuzz-service-key")
            .env("DEEPGRAM_API_KEY", "fuzz-deepgram-key")
            .env("DEEPGRAM_API_URL", "http://127.0.0.1:9")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start api-server"),
    );
    let started = Instant::now();
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

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
            "--workers",
            "2",
        ])
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
        stdout.contains("Tested: 8"),
        "not every operation was exercised:\n{stdout}"
    );
}
