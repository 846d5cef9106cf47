//! Jobs list, history paging and filters, run-now, metrics and the OpenAPI description.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use serde_json::Value;

use super::TestApp;
use crate::support::storage::SERVICE_ROLE_KEY;

/// Storage credentials pointing nowhere useful: enough to enable audio_cleanup.
const STORAGE: &[(&str, &str)] = &[
    ("SUPABASE_URL", "http://127.0.0.1:9"),
    ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY),
];

#[actix_web::test]
async fn jobs_lists_registered_jobs_with_schedule_switch_and_latest_run() {
    let app = TestApp::new(STORAGE).await;
    app.exec(
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, stats) \
         VALUES ('audio_cleanup', 'success', now() - interval '1 hour', now() - interval '59 minutes', 60000, \
                 '{\"deleted\": 3, \"failed\": 0}')",
    )
    .await;
    let (status, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let jobs = body["data"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    let audio = &jobs[0];
    assert_eq!(audio["job_name"], "audio_cleanup");
    assert_eq!(audio["display_name"], "Audio Cleanup");
    assert_eq!(audio["schedule"], "0 2 * * *");
    assert_eq!(audio["schedule_description"], "every day at 02:00 UTC");
    assert_eq!(audio["enabled"], true);
    assert_eq!(audio["disabled_reason"], Value::Null);
    assert!(audio["next_run_at"]
        .as_str()
        .unwrap()
        .ends_with("T02:00:00.000Z"));
    assert_eq!(audio["latest_execution"]["stats"]["deleted"], 3);
    let cost = &jobs[1];
    assert_eq!(cost["job_name"], "cost_update");
    assert_eq!(cost["enabled"], false);
    assert_eq!(cost["disabled_reason"], "DEEPGRAM_API_KEY is not set");
    assert_eq!(cost["latest_execution"], Value::Null);
}

async fn seed_history(app: &TestApp, n: i64) {
    // n executions per job, one an hour, alternating outcomes.
    app.exec(&format!(
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, stats, error_message) \
         SELECT j, CASE WHEN k % 2 = 0 THEN 'success' ELSE 'failed' END, \
                now() - (k || ' hours')::interval, now() - (k || ' hours')::interval + interval '1 second', \
                1000, jsonb_build_object('k', k), CASE WHEN k % 2 = 1 THEN 'boom' END \
         FROM unnest(ARRAY['audio_cleanup', 'cost_update']) j, generate_series(1, {n}) k"
    ))
    .await;
}

#[actix_web::test]
async fn history_pages_newest_first_without_gaps_or_repeats() {
    let app = TestApp::new(&[]).await;
    seed_history(&app, 60).await; // 120 rows, all within 30 days
    let mut seen: Vec<(String, i64)> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/internal/api/v1/jobs/executions?limit=25&cursor={c}"),
            None => "/internal/api/v1/jobs/executions?limit=25".to_owned(),
        };
        let (status, _, body) = app.call(TestRequest::get().uri(&uri)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        for row in body["data"].as_array().unwrap() {
            seen.push((
                row["started_at"].as_str().unwrap().to_owned(),
                row["id"].as_i64().unwrap(),
            ));
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 120);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "not newest first");
    let mut ids: Vec<i64> = seen.iter().map(|(_, id)| *id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 120, "a row was repeated");
}

#[actix_web::test]
async fn history_filters_by_job_status_and_window() {
    let app = TestApp::new(&[]).await;
    seed_history(&app, 10).await;
    // An old execution outside the default 30-day window.
    app.exec(
        "INSERT INTO job_executions (job_name, status, started_at) \
         VALUES ('cost_update', 'failed', now() - interval '40 days')",
    )
    .await;
    let get = |uri: String| {
        let app = &app;
        async move {
            let (status, _, body) = app.call(TestRequest::get().uri(&uri)).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            body
        }
    };
    let body =
        get("/internal/api/v1/jobs/executions?job_name=cost_update&status=failed".into()).await;
    let rows = body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r["job_name"] == "cost_update"
        && r["status"] == "failed"
        && r["error_message"] == "boom"));

    let body = get(
        "/internal/api/v1/jobs/executions?job_name=cost_update&since=2000-01-01T00:00:00Z".into(),
    )
    .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 11);

    let until = (chrono::Utc::now() - chrono::Duration::minutes(150))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = get(format!(
        "/internal/api/v1/jobs/executions?job_name=audio_cleanup&until={until}"
    ))
    .await;
    // Rows started 3..=10 hours ago.
    assert_eq!(body["data"].as_array().unwrap().len(), 8);
}

#[actix_web::test]
async fn invalid_history_parameters_get_a_400_naming_the_parameter() {
    let app = TestApp::new(&[]).await;
    for (query, parameter) in [
        ("status=paused", "status"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        (
            "since=2026-11-02T00:00:00Z&until=2026-11-01T00:00:00Z",
            "since",
        ),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=76313a", "cursor"),
        ("job_name=a%00b", "job_name"),
        // Values PostgreSQL or i64 cannot hold must be a 400, not a database error.
        // "v1:-300000000000000000:1": 7477 BC, which chrono holds and PostgreSQL does not.
        (
            "cursor=76313a2d3330303030303030303030303030303030303a31",
            "cursor",
        ),
        // "v1:9223372036854775807:1": the largest i64 in microseconds.
        (
            "cursor=76313a393232333337323033363835343737353830373a31",
            "cursor",
        ),
        ("cursor=76313a30003a31", "cursor"),
        ("cursor=a%00", "cursor"),
        ("limit=99999999999999999999999", "limit"),
        ("limit=-1", "limit"),
        ("limit=1e3", "limit"),
        // Years RFC 3339 cannot write back in UTC.
        (
            "since=0000-01-01T00:00:00-23:59&until=0000-01-01T00:00:00Z",
            "until",
        ),
        ("until=9999-12-31T23:59:59-23:59", "until"),
        ("since=%00", "since"),
        ("status=success%00", "status"),
        ("job_name=audio_cleanup%00", "job_name"),
    ] {
        let (status, _, body) = app
            .call(TestRequest::get().uri(&format!("/internal/api/v1/jobs/executions?{query}")))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{query}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(parameter),
            "{query}: {body}"
        );
    }
    let (status, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/executions?colour=blue"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("colour"));
    let long = "a".repeat(5_000);
    for query in [
        format!("job_name={long}"),
        format!("cursor={long}"),
        format!("limit={long}"),
        "since=0000-01-01T00:00:00Z".to_owned(),
        "until=9999-12-31T23:59:59.999999999-23:59".to_owned(),
    ] {
        let (status, _, body) = app
            .call(TestRequest::get().uri(&format!("/internal/api/v1/jobs/executions?{query}")))
            .await;
        assert!(
            status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
            "{status} {body}"
        );
        if status == StatusCode::BAD_REQUEST {
            assert!(body["error"]["code"].is_string(), "{body}");
        }
    }
}

#[actix_web::test]
async fn an_execution_is_readable_by_id_and_bad_ids_are_4xx() {
    let app = TestApp::new(&[]).await;
    seed_history(&app, 1).await;
    let (_, _, page) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/executions"))
        .await;
    let id = page["data"][0]["id"].as_i64().unwrap();
    let (status, _, body) = app
        .call(TestRequest::get().uri(&format!("/internal/api/v1/jobs/executions/{id}")))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["id"], id);
    assert_eq!(body["data"]["trigger"], "manual");
    let (status, _, _) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/executions/999999"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/executions/abc"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Beyond the column's range, negative, beyond i64, NUL: never a database error.
    for (id, expected) in [
        ("99999999999", StatusCode::NOT_FOUND),
        ("-1", StatusCode::NOT_FOUND),
        ("-9223372036854775808", StatusCode::NOT_FOUND),
        ("99999999999999999999999", StatusCode::BAD_REQUEST),
        ("1%00", StatusCode::BAD_REQUEST),
    ] {
        let (status, _, body) = app
            .call(TestRequest::get().uri(&format!("/internal/api/v1/jobs/executions/{id}")))
            .await;
        assert_eq!(status, expected, "{id}: {body}");
        assert!(body["error"]["code"].is_string(), "{id}: {body}");
    }
}

#[actix_web::test]
async fn run_now_names_an_id_conflict_instead_of_an_unreachable_database() {
    let app = TestApp::new(STORAGE).await;
    // A row written with an explicit id, as a restore or a hand edit leaves it: the
    // sequence still hands out 1.
    app.exec(
        "INSERT INTO job_executions (id, job_name, status, completed_at) \
         VALUES (1, 'audio_cleanup', 'success', now())",
    )
    .await;
    let (status, _, body) = app
        .call(TestRequest::post().uri("/internal/api/v1/jobs/audio_cleanup/run"))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["error"]["code"], "execution_conflict");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("id sequence behind"), "{message}");
    assert!(message.contains("setval"), "{message}");
}

#[actix_web::test]
async fn run_now_answers_202_404_409_and_503_as_documented() {
    let app = TestApp::new(STORAGE).await;
    let (status, _, body) = app
        .call(TestRequest::post().uri("/internal/api/v1/jobs/reindex/run"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "unknown_job");

    let (status, _, body) = app
        .call(TestRequest::post().uri("/internal/api/v1/jobs/cost_update/run"))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "job_disabled");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("DEEPGRAM_API_KEY is not set"));

    let (status, _, body) = app
        .call(TestRequest::post().uri("/internal/api/v1/jobs/audio_cleanup/run?dry_run=maybe"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("dry_run"));
    // A bare `?dry_run` meant a dry run: it is refused, never read as a real run.
    for uri in [
        "/internal/api/v1/jobs/audio_cleanup/run?dry_run",
        "/internal/api/v1/jobs/audio_cleanup/run?dry_run=",
    ] {
        let (status, _, body) = app.call(TestRequest::post().uri(uri)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{uri}: {body}");
    }
    let (_, _, history) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/executions"))
        .await;
    assert_eq!(history["data"], serde_json::json!([]), "{history}");

    // Another server is running it.
    app.exec("INSERT INTO job_executions (job_name, status, worker_id, lease_expires_at) VALUES ('audio_cleanup', 'running', 'other:8080', now() + interval '1 hour')").await;
    let (status, _, body) = app
        .call(TestRequest::post().uri("/internal/api/v1/jobs/audio_cleanup/run"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "already_running");

    app.exec("UPDATE job_executions SET status = 'success', completed_at = now() WHERE worker_id = 'other:8080'").await;
    let (status, _, body) = app
        .call(TestRequest::post().uri("/internal/api/v1/jobs/audio_cleanup/run"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["data"]["execution_id"].as_i64().unwrap();
    assert_eq!(body["data"]["status"], "running");

    // The run ends (whatever its outcome against the unreachable Storage) and is manual.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, body) = app
            .call(TestRequest::get().uri(&format!("/internal/api/v1/jobs/executions/{id}")))
            .await;
        if body["data"]["status"] != "running" {
            assert_eq!(body["data"]["trigger"], "manual");
            assert!(body["data"]["completed_at"].is_string());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "run did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn metrics_are_valid_prometheus_text_with_job_and_http_series() {
    let app = TestApp::new(STORAGE).await;
    app.exec(
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, stats) \
         VALUES ('audio_cleanup', 'success', now() - interval '90 seconds', now(), 90400, '{\"deleted\": 45, \"failed\": 2}')",
    )
    .await;
    // Some traffic to count.
    app.call(TestRequest::get().uri("/healthz")).await;
    app.call(TestRequest::get().uri("/nope")).await;
    // A made-up method is counted, under one label whatever its name.
    let made_up = actix_web::http::Method::from_bytes(b"FROBNICATE").unwrap();
    app.call(TestRequest::default().method(made_up).uri("/healthz"))
        .await;

    let app_service =
        actix_web::test::init_service(api_server::http::build_app(app.state.clone())).await;
    let resp = actix_web::test::call_service(
        &app_service,
        TestRequest::get().uri("/metrics").to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = String::from_utf8(actix_web::test::read_body(resp).await.to_vec()).unwrap();

    for series in [
        "job_last_duration_seconds{job=\"audio_cleanup\"} 90.4",
        "job_last_run_items{job=\"audio_cleanup\",stat=\"deleted\"} 45",
        "job_running{job=\"audio_cleanup\"} 0",
        "job_enabled{job=\"cost_update\"} 0",
        "job_last_success_timestamp_seconds{job=\"audio_cleanup\"}",
        "http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}",
        "http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}",
        "http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"0.005\"}",
        "http_requests_total{method=\"other\",route=\"/healthz\",status=\"405\"}",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
    assert!(!text.contains("FROBNICATE"), "{text}");
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is needed for this test");
    use std::io::Write;
    let mut child = promtool;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejected the metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[actix_web::test]
async fn the_openapi_description_lists_every_route() {
    let app = TestApp::new(&[]).await;
    let (status, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/openapi.json"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = body["paths"].as_object().unwrap();
    for path in [
        "/internal/api/v1/jobs/status",
        "/internal/api/v1/jobs",
        "/internal/api/v1/jobs/executions",
        "/internal/api/v1/jobs/executions/{id}",
        "/internal/api/v1/jobs/{job_name}/run",
        "/internal/api/v1/jobs/{job_name}/pause",
        "/internal/api/v1/jobs/{job_name}/resume",
        "/internal/api/v1/jobs/{job_name}/trends",
        "/internal/api/v1/jobs/executions/{id}/events",
        "/internal/api/v1/workers",
        "/internal/api/v1/events",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
}

#[actix_web::test]
async fn oversized_and_malformed_requests_are_rejected_with_json() {
    let app = TestApp::new(STORAGE).await;
    let (status, _, body) = app
        .call(
            TestRequest::post().uri("/internal/api/v1/jobs/audio_cleanup/run?dry_run=true&extra=1"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");
    let (status, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/executions?limit=%FF%FE"))
        .await;
    assert!(status.is_client_error(), "{status} {body}");
}
