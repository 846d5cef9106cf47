//! Trends, the history's trigger filter and the console routes' bad input, in process.

use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use serde_json::{json, Value};

use super::TestApp;

#[actix_web::test]
async fn trends_give_one_entry_per_day_with_counts_percentiles_and_summed_stats() {
    let app = TestApp::new(&[]).await;
    // Today: three runs (two succeeded); two days ago: one failed run; plus what must not
    // count: a dry run, a skipped slot, a running one and another job's run.
    app.exec(
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, \
           stats, error_message, dry_run) VALUES \
         ('audio_cleanup', 'success', date_trunc('day', now(), 'UTC') + interval '1 minute', now(), 1000, '{\"deleted\": 3, \"failed\": 0, \"note\": \"x\"}', NULL, false), \
         ('audio_cleanup', 'success', date_trunc('day', now(), 'UTC') + interval '2 minutes', now(), 2000, '{\"deleted\": 4, \"failed\": 1}', NULL, false), \
         ('audio_cleanup', 'failed', date_trunc('day', now(), 'UTC') + interval '3 minutes', now(), 9000, '{\"deleted\": 0, \"failed\": 2}', 'boom', false), \
         ('audio_cleanup', 'failed', date_trunc('day', now(), 'UTC') - interval '2 days' + interval '1 hour', now(), 500, '{}', 'boom', false), \
         ('audio_cleanup', 'success', date_trunc('day', now(), 'UTC') + interval '4 minutes', now(), 100, '{\"deleted\": 100}', NULL, true), \
         ('audio_cleanup', 'failed', date_trunc('day', now(), 'UTC') + interval '5 minutes', now(), 0, '{}', 'skipped: the job was paused', false), \
         ('cost_update', 'success', date_trunc('day', now(), 'UTC') + interval '1 minute', now(), 1000, '{\"updated\": 7}', NULL, false)",
    )
    .await;
    app.exec(
        "INSERT INTO job_executions (job_name, status, started_at) \
         VALUES ('audio_cleanup', 'running', date_trunc('day', now(), 'UTC') + interval '6 minutes')",
    )
    .await;
    let (status, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/audio_cleanup/trends?days=3"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let days = body["data"].as_array().unwrap();
    assert_eq!(days.len(), 3, "{body}");
    let today = &days[2];
    assert_eq!(today["runs"], 3, "{today}");
    assert_eq!(today["succeeded"], 2);
    assert_eq!(today["failed"], 1);
    assert_eq!(today["p50_ms"], 2000);
    assert_eq!(today["p95_ms"], 8300);
    assert_eq!(today["stats"], json!({"deleted": 7, "failed": 3}));
    assert_eq!(days[1]["runs"], 0);
    assert_eq!(days[1]["p50_ms"], Value::Null);
    assert_eq!(days[1]["stats"], json!({}));
    assert_eq!(days[0]["failed"], 1);
    assert_eq!(days[0]["p95_ms"], 500);
    let day = days[2]["day"].as_str().unwrap();
    assert_eq!(day, chrono::Utc::now().format("%Y-%m-%d").to_string());

    // Default: 30 days.
    let (_, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/audio_cleanup/trends"))
        .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 30);
}

#[actix_web::test]
async fn trends_refuse_bad_days_and_unknown_jobs() {
    let app = TestApp::new(&[]).await;
    for bad in ["0", "366", "-1", "abc", "1.5", "99999999999"] {
        let (status, _, body) = app
            .call(TestRequest::get().uri(&format!(
                "/internal/api/v1/jobs/audio_cleanup/trends?days={bad}"
            )))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{bad}");
    }
    let (status, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/audio_cleanup/trends?weeks=2"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/nope/trends"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "unknown_job");
}

#[actix_web::test]
async fn history_filters_by_trigger() {
    let app = TestApp::new(&[]).await;
    app.exec(
        "INSERT INTO job_executions (job_name, status, started_at, triggered_by) VALUES \
         ('audio_cleanup', 'success', now() - interval '1 hour', 'manual'), \
         ('audio_cleanup', 'success', now() - interval '2 hours', 'schedule'), \
         ('cost_update', 'failed', now() - interval '3 hours', 'manual')",
    )
    .await;
    let (status, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/executions?trigger=manual"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["trigger"] == "manual"));
    let (status, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs/executions?trigger=cron"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("trigger:"));
}

#[actix_web::test]
async fn history_filters_real_runs_from_dry_runs() {
    let app = TestApp::new(&[]).await;
    app.exec(
        "INSERT INTO job_executions (job_name, status, started_at, dry_run) VALUES \
         ('audio_cleanup', 'failed', now() - interval '3 hours', false), \
         ('audio_cleanup', 'success', now() - interval '2 hours', true), \
         ('audio_cleanup', 'success', now() - interval '1 hour', true)",
    )
    .await;
    let page = |query: &'static str| {
        let app = &app;
        async move {
            let (status, _, body) = app
                .call(TestRequest::get().uri(&format!(
                    "/internal/api/v1/jobs/executions?job_name=audio_cleanup&{query}"
                )))
                .await;
            (status, body)
        }
    };
    let (status, body) = page("dry_run=false&limit=1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["status"].as_str(), rows[0]["dry_run"].as_bool()),
        (Some("failed"), Some(false))
    );
    let (_, body) = page("dry_run=true").await;
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let (status, body) = page("dry_run=yes").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("dry_run:"));
}

#[actix_web::test]
async fn the_jobs_list_shows_a_pause_and_a_paused_jobs_schedule_is_not_claimed() {
    let app = TestApp::new(&[]).await;
    let (status, _, body) = app
        .call(
            TestRequest::post()
                .uri("/internal/api/v1/jobs/cost_update/pause")
                .set_json(json!({"reason": "provider outage"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs"))
        .await;
    let cost = &body["data"][1];
    assert_eq!(cost["job_name"], "cost_update");
    assert_eq!(cost["paused"], true);
    assert_eq!(cost["pause_reason"], "provider outage");
    assert_eq!(cost["paused_by"], "local");
    // DISABLED_JOBS (here: a missing key) stays a separate, config-level state.
    assert_eq!(cost["enabled"], false);
    assert_eq!(body["data"][0]["paused"], false);
    assert_eq!(body["data"][0]["paused_at"], Value::Null);

    // The claim refuses a slot of a paused job, and accepts a manual run.
    use jobs_core::{Claim, NewExecution, Trigger};
    let slot = |scheduled_for| NewExecution {
        job_name: "cost_update".into(),
        trigger: Trigger::Schedule,
        scheduled_for,
        attempt: 1,
        dry_run: false,
        worker_id: "w".into(),
        lease: std::time::Duration::from_secs(60),
        requested_by: None,
    };
    let log = app.state.runner.log();
    assert_eq!(
        log.claim(&slot(Some(chrono::Utc::now()))).await.unwrap(),
        Claim::Paused
    );
    assert!(matches!(
        log.claim(&slot(None)).await.unwrap(),
        Claim::Started { .. }
    ));

    let (status, _, _) = app
        .call(TestRequest::post().uri("/internal/api/v1/jobs/cost_update/resume"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, body) = app
        .call(TestRequest::get().uri("/internal/api/v1/jobs"))
        .await;
    assert_eq!(body["data"][1]["paused"], false);
    assert_eq!(body["data"][1]["pause_reason"], Value::Null);
}
