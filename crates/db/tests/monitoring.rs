//! Monitoring reads: bounded backlog counts, running ages, latest failures.

use db::testing::TestDatabase;
use diesel_async::RunQueryDsl;
use jobs_core::Backlog;

async fn exec(conn: &mut diesel_async::AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn backlog_counts_stop_at_the_cap_and_say_so() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    exec(
        &mut conn,
        "INSERT INTO transcriptions (created_at, audio_file_path, stt_provider_request_id) \
         SELECT now() - interval '40 days', 'audio/' || g || '.webm', 'req-' || g \
         FROM generate_series(1, 5) g",
    )
    .await;

    let exact = db::monitoring::audio_cleanup_backlog(&mut conn, 30, 5)
        .await
        .unwrap();
    assert_eq!(
        exact,
        Backlog {
            count: 5,
            capped: false
        }
    );
    let capped = db::monitoring::audio_cleanup_backlog(&mut conn, 30, 3)
        .await
        .unwrap();
    assert_eq!(
        capped,
        Backlog {
            count: 3,
            capped: true
        }
    );
    // A longer retention leaves them all inside it.
    let none = db::monitoring::audio_cleanup_backlog(&mut conn, 60, 3)
        .await
        .unwrap();
    assert_eq!(none, Backlog::default());

    assert_eq!(
        db::monitoring::cost_update_backlog(&mut conn, 10)
            .await
            .unwrap(),
        Backlog {
            count: 5,
            capped: false
        }
    );
    assert_eq!(
        db::monitoring::cost_update_backlog(&mut conn, 4)
            .await
            .unwrap(),
        Backlog {
            count: 4,
            capped: true
        }
    );
    exec(
        &mut conn,
        "UPDATE transcriptions SET audio_cost_usd = 1 WHERE stt_provider_request_id = 'req-1'",
    )
    .await;
    exec(
        &mut conn,
        "UPDATE transcriptions SET cost_gave_up_at = now() WHERE stt_provider_request_id = 'req-2'",
    )
    .await;
    assert_eq!(
        db::monitoring::cost_update_backlog(&mut conn, 10)
            .await
            .unwrap(),
        Backlog {
            count: 3,
            capped: false
        }
    );
}

#[tokio::test]
async fn running_ages_and_latest_failures_are_per_job() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    assert!(db::monitoring::running_seconds(&mut conn)
        .await
        .unwrap()
        .is_empty());
    assert!(db::monitoring::last_failures(&mut conn)
        .await
        .unwrap()
        .is_empty());
    exec(
        &mut conn,
        "INSERT INTO job_executions (job_name, status, started_at, completed_at) VALUES \
         ('a', 'failed', '2026-11-01T02:00:00Z', '2026-11-01T02:01:00Z'), \
         ('a', 'failed', '2026-11-02T02:00:00Z', '2026-11-02T02:05:00Z'), \
         ('a', 'success', '2026-11-03T02:00:00Z', '2026-11-03T02:01:00Z'), \
         ('b', 'success', '2026-11-03T02:00:00Z', '2026-11-03T02:01:00Z'), \
         ('b', 'running', now() - interval '90 seconds', NULL)",
    )
    .await;
    // Dry runs change nothing: they are neither the latest failure nor the latest success
    // the alerts read.
    exec(
        &mut conn,
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, dry_run) VALUES \
         ('a', 'failed', '2026-11-04T02:00:00Z', '2026-11-04T02:01:00Z', true), \
         ('a', 'success', '2026-11-05T02:00:00Z', '2026-11-05T02:01:00Z', true)",
    )
    .await;
    let success = db::executions::last_success(&mut conn, "a")
        .await
        .unwrap()
        .expect("a succeeded once");
    assert_eq!(success.started_at.to_rfc3339(), "2026-11-03T02:00:00+00:00");
    let failures = db::monitoring::last_failures(&mut conn).await.unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "a");
    assert_eq!(failures[0].1.to_rfc3339(), "2026-11-02T02:05:00+00:00");
    let running = db::monitoring::running_seconds(&mut conn).await.unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].0, "b");
    assert!((89.0..600.0).contains(&running[0].1), "{running:?}");
}
