//! Status, health, readiness, errors and auth.

use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use serde_json::json;

use super::TestApp;

#[actix_web::test]
async fn status_is_an_empty_list_before_anything_ran() {
    let app = TestApp::new(&[]).await;
    let (status, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/status"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"data": []}));
}

#[actix_web::test]
async fn status_shows_the_latest_execution_of_each_job_in_contract_shape() {
    let app = TestApp::new(&[]).await;
    // Many executions per job; the newest of audio_cleanup succeeded, of cost_update is
    // still running.
    app.exec(
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, stats, error_message) \
         SELECT 'audio_cleanup', 'failed', \
                TIMESTAMPTZ '2026-11-01 02:00:00+00' + (n || ' days')::interval, \
                TIMESTAMPTZ '2026-11-01 02:00:05+00' + (n || ' days')::interval, 5000, \
                jsonb_build_object('deleted', n, 'failed', 1), 'Storage answered 500' \
         FROM generate_series(0, 20) n",
    )
    .await;
    app.exec(
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, stats) \
         VALUES ('audio_cleanup', 'success', '2026-11-27 02:00:00.25+00', '2026-11-27 02:01:30.65+00', 90400, \
                 '{\"deleted\": 45, \"failed\": 2}')",
    )
    .await;
    app.exec(
        "INSERT INTO job_executions (job_name, status, started_at, stats) \
         SELECT 'cost_update', 'success', TIMESTAMPTZ '2026-10-01 03:00:00+00' + (n || ' days')::interval, '{}' \
         FROM generate_series(0, 20) n",
    )
    .await;
    app.exec(
        "INSERT INTO job_executions (job_name, status, started_at, stats) \
         VALUES ('cost_update', 'running', '2026-11-28 03:00:00+00', '{\"updated\": 10}')",
    )
    .await;

    let (status, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/status"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"data": [
            {
                "job_name": "audio_cleanup",
                "status": "success",
                "started_at": "2026-11-27T02:00:00.250Z",
                "completed_at": "2026-11-27T02:01:30.650Z",
                "duration_ms": 90400,
                "stats": {"deleted": 45, "failed": 2},
                "error_message": null
            },
            {
                "job_name": "cost_update",
                "status": "running",
                "started_at": "2026-11-28T03:00:00.000Z",
                "completed_at": null,
                "duration_ms": null,
                "stats": {"updated": 10},
                "error_message": null
            }
        ]})
    );
}

#[actix_web::test]
async fn a_failed_latest_execution_carries_its_error_message() {
    let app = TestApp::new(&[]).await;
    app.exec(
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, stats, error_message) \
         VALUES ('cost_update', 'failed', now() - interval '2 seconds', now(), 1200, '{}', \
                 'Deepgram rejected DEEPGRAM_API_KEY (401 INVALID_AUTH)')",
    )
    .await;
    let (_, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/status"))
        .await;
    let entry = &body["data"][0];
    assert_eq!(entry["status"], "failed");
    assert_eq!(
        entry["error_message"],
        "Deepgram rejected DEEPGRAM_API_KEY (401 INVALID_AUTH)"
    );
    assert_eq!(entry["duration_ms"], 1200);
    let started = entry["started_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(started).is_ok() && started.ends_with('Z'));
}

#[actix_web::test]
async fn stats_no_json_parser_reads_are_served_as_their_text_on_every_route() {
    let app = TestApp::new(&[]).await;
    // PostgreSQL keeps a number beyond f64; the replaced system or a manual edit may have
    // left one.
    app.exec(
        "INSERT INTO job_executions (id, job_name, status, started_at, completed_at, duration_ms, stats) \
         VALUES (7, 'audio_cleanup', 'success', now() - interval '1 hour', now(), 5, '{\"deleted\": 1e400}')",
    )
    .await;
    for uri in [
        "/internal/api/v1/jobs/status",
        "/internal/api/v1/jobs",
        "/internal/api/v1/jobs/executions",
        "/internal/api/v1/jobs/executions/7",
        "/internal/api/v1/jobs/audio_cleanup/trends?days=2",
    ] {
        let (status, _, body) = app.call(TestRequest::get().uri(uri)).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    }
    let (_, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/executions/7"))
        .await;
    let stats = body["data"]["stats"].as_str().unwrap_or_default();
    assert!(stats.starts_with("{\"deleted\": 1000"), "{body}");
}

#[actix_web::test]
async fn health_and_readiness_answer() {
    let app = TestApp::new(&[]).await;
    let (status, _, body) = app.call(TestRequest::get().uri("/healthz")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, _, body) = app.call(TestRequest::get().uri("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["database"], "ok");
}

#[actix_web::test]
async fn a_server_is_not_ready_before_it_has_read_the_jobs_state() {
    let app = TestApp::unloaded().await;
    let (status, _, body) = app.call(TestRequest::get().uri("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "not_ready");
    app.load().await;
    let (status, _, body) = app.call(TestRequest::get().uri("/readyz")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[actix_web::test]
async fn readiness_fails_with_a_json_error_when_the_database_is_gone() {
    let app = TestApp::new(&[]).await;
    let name = app.db.name().to_owned();
    let mut admin = db::testing::admin_target().connect().await.unwrap();
    use diesel_async::RunQueryDsl;
    diesel::sql_query(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    let (status, _, body) = app.call(TestRequest::get().uri("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "database_unavailable");
    // Liveness does not depend on the database.
    let (status, _, _) = app.call(TestRequest::get().uri("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
}

#[actix_web::test]
async fn unknown_routes_and_wrong_methods_get_json_errors() {
    let app = TestApp::new(&[]).await;
    let (status, _, body) = app.call(TestRequest::get().uri("/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"].as_str().unwrap().contains("/nope"));

    let (status, headers, body) = app
        .call(TestRequest::delete().uri("/internal/api/v1/jobs/status"))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert_eq!(headers.get("allow").unwrap(), "GET, HEAD");

    // HEAD is answered wherever GET is (the server sends the head only), except on the
    // event stream, whose answer never ends.
    for uri in ["/internal/api/v1/jobs/status", "/healthz", "/readyz"] {
        let (status, _, _) = app
            .call(
                TestRequest::default()
                    .method(actix_web::http::Method::HEAD)
                    .uri(uri),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
    let (status, headers, _) = app
        .call(
            TestRequest::default()
                .method(actix_web::http::Method::HEAD)
                .uri("/internal/api/v1/events"),
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers.get("allow").unwrap(), "GET");

    let (status, headers, _) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/audio_cleanup/run"))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers.get("allow").unwrap(), "POST");
}

const TOKEN: &str = "test-admin-token-0123456789";

#[actix_web::test]
async fn with_an_admin_token_internal_routes_need_the_bearer_token() {
    let app = TestApp::new(&[("ADMIN_TOKEN", TOKEN)]).await;
    let uri = "/internal/api/v1/jobs/status";

    let (status, headers, body) = app.call(TestRequest::get().uri(uri)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(headers
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("Bearer"));

    let (status, _, body) = app
        .call(
            TestRequest::get()
                .uri(uri)
                .insert_header(("Authorization", "Bearer wrong-token")),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!body.to_string().contains(TOKEN));

    let (status, _, body) = app
        .call(
            TestRequest::get()
                .uri(uri)
                .insert_header(("Authorization", format!("Bearer {TOKEN}"))),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({"data": []}));

    // Health checks stay open for load balancers.
    let (status, _, _) = app.call(TestRequest::get().uri("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
}
