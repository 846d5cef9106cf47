//! The PostgreSQL execution log: claims, leases, completion and the latest-per-job query.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use db::testing::TestDatabase;
use db::PgExecutionLog;
use diesel_async::RunQueryDsl;
use jobs_core::{
    async_trait, Beat, CancelRequest, Claim, Completion, ExecutionLog, Job, JobContext, JobError,
    NewExecution, RegisteredJob, RunPolicy, RunRequest, Runner, RunnerSettings, Schedule, Stats,
    Status, Trigger,
};

fn new_execution(job: &str, slot: Option<chrono::DateTime<Utc>>) -> NewExecution {
    NewExecution {
        job_name: job.into(),
        trigger: if slot.is_some() {
            Trigger::Schedule
        } else {
            Trigger::Manual
        },
        scheduled_for: slot,
        attempt: 1,
        dry_run: false,
        worker_id: "host-a:8080".into(),
        lease: Duration::from_secs(60),
        requested_by: None,
    }
}

async fn exec(db: &TestDatabase, sql: &str) {
    let mut conn = db.connect().await;
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.connect().await;
    diesel::sql_query(sql)
        .get_result::<N>(&mut conn)
        .await
        .unwrap()
        .n
}

/// Claims `new`, which must start; its id.
async fn started(log: &PgExecutionLog, new: &NewExecution) -> i64 {
    match log.claim(new).await.unwrap() {
        Claim::Started { id, .. } => id,
        other => panic!("not started: {other:?}"),
    }
}

/// Ends execution `id` as a success with no stats.
async fn succeed(log: &PgExecutionLog, id: i64) {
    log.complete(
        id,
        &Completion {
            status: Status::Success,
            stats: Stats::new(),
            error_message: None,
            retry_in: None,
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_is_claimed_once_and_a_job_runs_once_at_a_time() {
    let db = TestDatabase::new().await;
    let log = PgExecutionLog::new(db.pool());
    let slot = Utc.with_ymd_and_hms(2026, 11, 28, 2, 0, 0).unwrap();

    let first = log
        .claim(&new_execution("audio_cleanup", Some(slot)))
        .await
        .unwrap();
    let Claim::Started { id, .. } = first else {
        panic!("{first:?}")
    };
    // Another server offered the same slot.
    let other = NewExecution {
        worker_id: "host-b:8080".into(),
        ..new_execution("audio_cleanup", Some(slot))
    };
    assert_eq!(log.claim(&other).await.unwrap(), Claim::SlotTaken);
    // A manual run while the slot's run still goes.
    assert_eq!(
        log.claim(&new_execution("audio_cleanup", None))
            .await
            .unwrap(),
        Claim::AlreadyRunning
    );
    // Other jobs are independent.
    assert!(matches!(
        log.claim(&new_execution("cost_update", Some(slot)))
            .await
            .unwrap(),
        Claim::Started { .. }
    ));
    // Once finished, the slot stays taken but manual runs may start.
    succeed(&log, id).await;
    assert_eq!(log.claim(&other).await.unwrap(), Claim::SlotTaken);
    assert!(matches!(
        log.claim(&new_execution("audio_cleanup", None))
            .await
            .unwrap(),
        Claim::Started { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_of_one_slot_start_exactly_one_execution() {
    let db = TestDatabase::new().await;
    let log = Arc::new(PgExecutionLog::new(db.target().pool(8).unwrap()));
    let slot = Utc.with_ymd_and_hms(2026, 11, 28, 3, 0, 0).unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let new = NewExecution {
                worker_id: format!("host-{i}:8080"),
                ..new_execution("cost_update", Some(slot))
            };
            log.claim(&new).await.unwrap()
        }));
    }
    let mut started = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Claim::Started { .. }) {
            started += 1;
        }
    }
    assert_eq!(started, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_records_status_stats_error_and_duration() {
    let db = TestDatabase::new().await;
    let log = PgExecutionLog::new(db.pool());
    let Claim::Started { id, started_at } = log
        .claim(&new_execution("cost_update", None))
        .await
        .unwrap()
    else {
        panic!()
    };
    tokio::time::sleep(Duration::from_millis(120)).await;
    let mut stats = Stats::with_keys(&["updated", "unchanged", "skipped", "failed"]);
    stats.add("updated", 3);
    let record = log
        .complete(
            id,
            &Completion {
                status: Status::Failed,
                stats,
                error_message: Some("Deepgram answered 401".into()),
                retry_in: None,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, Status::Failed);
    assert_eq!(record.started_at, started_at);
    let completed = record.completed_at.unwrap();
    let duration = record.duration_ms.unwrap();
    assert_eq!(duration, (completed - started_at).num_milliseconds());
    assert!(duration >= 100, "{duration}");
    assert_eq!(
        record.stats,
        serde_json::json!({"updated": 3, "unchanged": 0, "skipped": 0, "failed": 0})
    );
    assert_eq!(
        record.error_message.as_deref(),
        Some("Deepgram answered 401")
    );
    // A second completion does not overwrite the first.
    let again = log
        .complete(
            id,
            &Completion {
                status: Status::Success,
                stats: Stats::new(),
                error_message: None,
                retry_in: None,
            },
        )
        .await
        .unwrap();
    assert!(again.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_store_progress_and_keep_the_lease_alive() {
    let db = TestDatabase::new().await;
    let log = PgExecutionLog::new(db.pool());
    let short = NewExecution {
        lease: Duration::from_secs(30),
        ..new_execution("audio_cleanup", None)
    };
    let Claim::Started { id, .. } = log.claim(&short).await.unwrap() else {
        panic!()
    };
    let mut progress = Stats::new();
    progress.add("deleted", 500);
    // A lease that ran out a moment ago is renewed by the heartbeat (no sleeping: the
    // database is told its lease ended).
    exec(
        &db,
        &format!(
            "UPDATE job_executions SET lease_expires_at = now() + interval '1 second' \
             WHERE id = {id}"
        ),
    )
    .await;
    for _ in 0..4 {
        assert_eq!(
            log.heartbeat(id, Duration::from_secs(30), Some(&progress))
                .await
                .unwrap(),
            Beat::Renewed
        );
        // A live lease is never expired, however often others look.
        assert!(log.expire_leases().await.unwrap().is_empty());
    }
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) AS n FROM job_executions WHERE id = {id} \
                 AND lease_expires_at > now() + interval '25 seconds'"
            )
        )
        .await,
        1
    );
    let latest = log.latest_per_job().await.unwrap();
    assert_eq!(latest[0].status, Status::Running);
    assert_eq!(latest[0].stats["deleted"], 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_closed_naming_the_server_and_cannot_be_reopened() {
    let db = TestDatabase::new().await;
    let log = PgExecutionLog::new(db.pool());
    let dying = NewExecution {
        lease: Duration::from_millis(200),
        worker_id: "worker-7.internal:8080".into(),
        ..new_execution("cost_update", None)
    };
    let Claim::Started { id, .. } = log.claim(&dying).await.unwrap() else {
        panic!()
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let closed = log.expire_leases().await.unwrap();
    assert_eq!(closed.len(), 1);
    let message = closed[0].error_message.clone().unwrap();
    assert!(message.starts_with("interrupted:"), "{message}");
    assert!(message.contains("worker-7.internal:8080"), "{message}");
    assert!(closed[0].duration_ms.is_some());
    // The dead run's late heartbeat and completion change nothing.
    assert_eq!(
        log.heartbeat(id, Duration::from_secs(60), None)
            .await
            .unwrap(),
        Beat::Closed
    );
    assert!(log
        .complete(
            id,
            &Completion {
                status: Status::Success,
                stats: Stats::new(),
                error_message: None,
                retry_in: None,
            }
        )
        .await
        .unwrap()
        .is_none());
    assert!(log.expire_leases().await.unwrap().is_empty());
}

/// The `(status, error_message)` of execution `id`.
async fn outcome(db: &TestDatabase, id: i64) -> (String, Option<String>) {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        error_message: Option<String>,
    }
    let mut conn = db.connect().await;
    let row: Row = diesel::sql_query(format!(
        "SELECT status, error_message FROM job_executions WHERE id = {id}"
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    (row.status, row.error_message)
}

/// A `running` row as another system (or a person) writes it: no worker, no lease.
async fn insert_unleased(db: &TestDatabase, job: &str, started: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        id: i32,
    }
    let mut conn = db.connect().await;
    let row: Id = diesel::sql_query(format!(
        "INSERT INTO job_executions (job_name, status, started_at) \
         VALUES ('{job}', 'running', {started}) RETURNING id"
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    i64::from(row.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_row_without_a_lease_is_closed_after_the_grace_and_frees_the_job() {
    let db = TestDatabase::new().await;
    let log = PgExecutionLog::new(db.pool()).unleased_grace(Duration::from_secs(30));
    let stale = insert_unleased(&db, "audio_cleanup", "now() - interval '31 seconds'").await;
    let fresh = insert_unleased(&db, "cost_update", "now() - interval '29 seconds'").await;
    // While it stands, the job has no place to run.
    assert!(matches!(
        log.claim(&new_execution("audio_cleanup", None))
            .await
            .unwrap(),
        Claim::AlreadyRunning
    ));

    let closed = log.expire_leases().await.unwrap();
    let ids: Vec<i64> = closed.iter().map(|r| r.id).collect();
    assert_eq!(ids, [stale]);
    let (status, message) = outcome(&db, stale).await;
    assert_eq!(status, "failed");
    let message = message.unwrap();
    assert!(
        message.starts_with(db::execution_log::UNLEASED_MESSAGE_PREFIX),
        "{message}"
    );
    assert!(message.contains("closed after 30 s"), "{message}");
    assert_eq!(outcome(&db, fresh).await.0, "running");
    assert!(matches!(
        log.claim(&new_execution("audio_cleanup", None))
            .await
            .unwrap(),
        Claim::Started { .. }
    ));

    // A heartbeat written by hand counts as a sign of life.
    exec(
        &db,
        &format!(
            "UPDATE job_executions SET started_at = now() - interval '1 hour', \
             heartbeat_at = now() WHERE id = {fresh}"
        ),
    )
    .await;
    assert!(log.expire_leases().await.unwrap().is_empty());
    exec(
        &db,
        &format!(
            "UPDATE job_executions SET heartbeat_at = now() - interval '31 seconds' \
             WHERE id = {fresh}"
        ),
    )
    .await;
    assert_eq!(log.expire_leases().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_closes_at_once_a_row_no_live_server_holds() {
    let db = TestDatabase::new().await;
    let log = PgExecutionLog::new(db.pool());
    // Written by another system a moment ago: the lease check would wait; a cancel does not.
    let foreign = insert_unleased(&db, "audio_cleanup", "now()").await;
    assert_eq!(
        log.request_cancel(foreign, "admin").await.unwrap(),
        CancelRequest::Closed
    );
    let (status, message) = outcome(&db, foreign).await;
    assert_eq!(status, "failed");
    assert_eq!(
        message.as_deref(),
        Some("cancelled by admin: no server held it (it never had a lease)")
    );
    assert_eq!(
        log.request_cancel(foreign, "admin").await.unwrap(),
        CancelRequest::NotRunning
    );

    // A server that died: its lease is over, and nobody will read the request.
    let dying = NewExecution {
        lease: Duration::from_millis(200),
        ..new_execution("cost_update", None)
    };
    let Claim::Started { id, .. } = log.claim(&dying).await.unwrap() else {
        panic!()
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        log.request_cancel(id, "viewer-turned-admin").await.unwrap(),
        CancelRequest::Closed
    );
    let message = outcome(&db, id).await.1.unwrap();
    assert!(
        message.starts_with(
            "cancelled by viewer-turned-admin: no server held it (its lease had expired at 20"
        ),
        "{message}"
    );
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) AS n FROM job_executions WHERE id = {id} \
                 AND cancel_requested_by = 'viewer-turned-admin' AND completed_at IS NOT NULL \
                 AND duration_ms IS NOT NULL AND lease_expires_at IS NULL"
            )
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_before_its_server_died_ends_cancelled_and_is_not_retried() {
    let db = TestDatabase::new().await;
    let log = Arc::new(PgExecutionLog::new(db.pool()));
    let slot = Utc.with_ymd_and_hms(2026, 11, 28, 3, 0, 0).unwrap();
    // A scheduled attempt, cancelled while its server held it; then the server dies.
    let dying = NewExecution {
        lease: Duration::from_millis(300),
        ..new_execution("cost_update", Some(slot))
    };
    let id = started(&log, &dying).await;
    assert_eq!(
        log.request_cancel(id, "admin").await.unwrap(),
        CancelRequest::Requested
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let closed = log.expire_leases().await.unwrap();
    assert_eq!(closed.len(), 1);
    let message = closed[0].error_message.clone().unwrap_or_default();
    assert!(
        message.starts_with("cancelled by admin: server host-a:8080 stopped before the run did"),
        "{message}"
    );
    // The server that finds it closed does not try the slot again.
    let runner = Arc::new(Runner::new(
        log.clone(),
        RunnerSettings {
            worker_id: "host-b:8080".into(),
            ..RunnerSettings::default()
        },
    ));
    let job = Arc::new(
        RegisteredJob::new(Panicky, Schedule::parse("0 3 * * *").unwrap()).with_policy(RunPolicy {
            max_attempts: 3,
            ..RunPolicy::default()
        }),
    );
    assert!(
        !runner.rescue(&job, &closed[0]),
        "a cancelled run was retried"
    );

    // The same when the server comes back and closes its own leftovers.
    let again = NewExecution {
        attempt: 2,
        ..new_execution("cost_update", Some(slot))
    };
    let id = started(&log, &again).await;
    log.request_cancel(id, "viewer-turned-admin").await.unwrap();
    let closed = log
        .close_orphans(
            "host-a:8080",
            "interrupted: server host-a:8080 restarted while it ran",
        )
        .await
        .unwrap();
    let message = closed[0].error_message.clone().unwrap_or_default();
    assert!(
        message.starts_with("cancelled by viewer-turned-admin; interrupted"),
        "{message}"
    );
    assert!(
        !runner.rescue(&job, &closed[0]),
        "a cancelled run was retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_closes_only_its_own_leftovers() {
    let db = TestDatabase::new().await;
    let log = PgExecutionLog::new(db.pool());
    log.claim(&new_execution("audio_cleanup", None))
        .await
        .unwrap();
    let other = NewExecution {
        worker_id: "host-b:8080".into(),
        ..new_execution("cost_update", None)
    };
    log.claim(&other).await.unwrap();
    let closed = log
        .close_orphans(
            "host-a:8080",
            "interrupted: server host-a:8080 restarted while it ran",
        )
        .await
        .unwrap();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].job_name, "audio_cleanup");
    let latest = log.latest_per_job().await.unwrap();
    let cost = latest.iter().find(|r| r.job_name == "cost_update").unwrap();
    assert_eq!(cost.status, Status::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_per_job_returns_the_newest_row_of_each_job() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    // 3 jobs, 200 executions each, spread over 200 days; the newest of each is known.
    diesel::sql_query(
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, stats) \
         SELECT j, CASE WHEN n % 3 = 0 THEN 'failed' ELSE 'success' END, \
                now() - (n || ' days')::interval - (j = 'b')::int * interval '1 hour', \
                now() - (n || ' days')::interval + interval '5 seconds', 5000, \
                jsonb_build_object('n', n) \
         FROM unnest(ARRAY['a', 'b', 'c']) AS j, generate_series(1, 200) AS n",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let log = PgExecutionLog::new(db.pool());
    let latest = log.latest_per_job().await.unwrap();
    let summary: Vec<(String, i64)> = latest
        .iter()
        .map(|r| (r.job_name.clone(), r.stats["n"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        summary,
        vec![("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]
    );
}

struct Panicky;

#[async_trait]
impl Job for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    fn display_name(&self) -> &str {
        "Panicky"
    }
    fn default_schedule(&self) -> &str {
        "0 2 * * *"
    }
    async fn run(&self, ctx: &JobContext) -> Result<Stats, JobError> {
        let mut stats = Stats::new();
        stats.add("done", 2);
        ctx.report_progress(&stats);
        tokio::time::sleep(Duration::from_millis(100)).await;
        panic!("index out of bounds");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_records_a_panicking_job_as_failed_in_postgres() {
    let db = TestDatabase::new().await;
    let log = Arc::new(PgExecutionLog::new(db.pool()));
    let runner = Arc::new(Runner::new(
        log.clone(),
        RunnerSettings {
            worker_id: "test:1".into(),
            lease: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            progress_interval: Duration::from_millis(20),
            ..RunnerSettings::default()
        },
    ));
    let job = Arc::new(
        RegisteredJob::new(Panicky, Schedule::parse("0 2 * * *").unwrap())
            .with_policy(RunPolicy::default()),
    );
    let report = runner.run(job, RunRequest::manual(false)).await.unwrap();
    assert_eq!(report.status, Status::Failed);
    let record = report.record.unwrap();
    assert_eq!(
        record.error_message.as_deref(),
        Some("panicked: index out of bounds")
    );
    assert_eq!(record.stats, serde_json::json!({"done": 2}));
    assert_eq!(record.trigger, "manual");
    assert!(record.completed_at.is_some() && record.duration_ms.unwrap() >= 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_deletes_old_finished_executions_in_batches_and_keeps_the_rest() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    diesel::sql_query(
        "INSERT INTO job_executions (job_name, status, started_at, worker_id) \
         SELECT 'audio_cleanup', 'success', now() - (n || ' days')::interval, 'web-1:8080' \
         FROM generate_series(1, 150) n",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    // An ancient execution still marked running is left to lease expiry, not pruned, and
    // the history of the system the table was taken over from (no worker) is kept.
    diesel::sql_query(
        "INSERT INTO job_executions (job_name, status, started_at, worker_id) \
         VALUES ('cost_update', 'running', now() - interval '200 days', 'web-1:8080'), \
                ('cost_update', 'success', now() - interval '3 years', NULL), \
                ('audio_cleanup', 'failed', now() - interval '100 days', NULL)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let deleted = db::executions::prune(&mut conn, 90, 7).await.unwrap();
    assert_eq!(deleted, 61); // days 90 (minus a few ms) .. 150
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let left: N = diesel::sql_query("SELECT count(*) AS n FROM job_executions")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(left.n, 92);
    let again = db::executions::prune(&mut conn, 90, 7).await.unwrap();
    assert_eq!(again, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_slot_is_stored_as_skipped_and_never_hides_the_running_execution() {
    let db = TestDatabase::new().await;
    let log = PgExecutionLog::new(db.pool());
    let slot = Utc.with_ymd_and_hms(2026, 11, 28, 2, 0, 0).unwrap();
    let Claim::Started { id, .. } = log
        .claim(&new_execution("audio_cleanup", Some(slot)))
        .await
        .unwrap()
    else {
        panic!()
    };
    let next = slot + chrono::Duration::seconds(1);
    assert!(log
        .record_skipped(
            "audio_cleanup",
            next,
            "host-a:8080",
            "skipped: the previous run of this job was still going"
        )
        .await
        .unwrap());
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM job_executions WHERE status = 'skipped'"
        )
        .await,
        1
    );
    let latest = log.latest_per_job().await.unwrap();
    assert_eq!((latest[0].id, latest[0].status), (id, Status::Running));
    assert_eq!(log.last_slot("audio_cleanup").await.unwrap(), Some(next));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_is_handed_to_the_running_execution_by_its_heartbeat() {
    let db = TestDatabase::new().await;
    let log = PgExecutionLog::new(db.pool());
    let Claim::Started { id, .. } = log
        .claim(&new_execution("cost_update", None))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        log.heartbeat(id, Duration::from_secs(60), None)
            .await
            .unwrap(),
        Beat::Renewed
    );
    assert_eq!(
        log.request_cancel(id, "admin").await.unwrap(),
        CancelRequest::Requested
    );
    // The first request is the one recorded.
    assert_eq!(
        log.request_cancel(id, "local").await.unwrap(),
        CancelRequest::Requested
    );
    assert_eq!(
        log.heartbeat(id, Duration::from_secs(60), None)
            .await
            .unwrap(),
        Beat::CancelRequested("admin".into())
    );
    log.complete(
        id,
        &Completion {
            status: Status::Failed,
            stats: Stats::new(),
            error_message: Some("cancelled by admin".into()),
            retry_in: None,
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        log.request_cancel(id, "admin").await.unwrap(),
        CancelRequest::NotRunning
    );
    assert_eq!(
        log.request_cancel(id + 1000, "admin").await.unwrap(),
        CancelRequest::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_and_leases_longer_than_an_int_of_milliseconds_still_close() {
    let db = TestDatabase::new().await;
    let log = PgExecutionLog::new(db.pool());
    let forever = NewExecution {
        lease: Duration::from_secs(60 * 86_400),
        ..new_execution("audio_cleanup", None)
    };
    let Claim::Started { id, .. } = log.claim(&forever).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        log.heartbeat(id, Duration::MAX, None).await.unwrap(),
        Beat::Renewed
    );
    // Started 40 days ago: more milliseconds than an INTEGER holds.
    exec(
        &db,
        &format!(
            "UPDATE job_executions SET started_at = now() - interval '40 days' WHERE id = {id}"
        ),
    )
    .await;
    let record = log
        .complete(
            id,
            &Completion {
                status: Status::Success,
                stats: Stats::new(),
                error_message: None,
                retry_in: None,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.duration_ms, Some(i64::from(i32::MAX)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_that_json_parsers_refuse_are_read_as_their_text_and_never_fail_the_read() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    // PostgreSQL keeps numbers beyond f64 and deep nesting; another writer may have left
    // them. Each row must still be served, with what it holds.
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    diesel::sql_query(format!(
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, stats) VALUES \
           ('audio_cleanup', 'success', now() - interval '3 hours', now(), 5, '{{\"deleted\": 1e400, \"failed\": 1}}'), \
           ('audio_cleanup', 'success', now() - interval '2 hours', now(), 5, '{deep}'), \
           ('audio_cleanup', 'success', now() - interval '1 hour', now(), 5, NULL), \
           ('cost_update', 'success', now() - interval '1 hour', now(), 5, '{{\"updated\": 1e400}}')"
    ))
    .execute(&mut conn)
    .await
    .unwrap();

    let query = db::executions::HistoryQuery {
        job_name: Some("audio_cleanup".into()),
        status: None,
        trigger: None,
        dry_run: None,
        since: Utc::now() - chrono::Duration::days(1),
        until: Utc::now() + chrono::Duration::days(1),
        before: None,
        limit: 50,
    };
    let history = db::executions::history(&mut conn, &query).await.unwrap();
    let stats: Vec<serde_json::Value> = history.iter().map(|r| r.stats.clone()).collect();
    assert_eq!(stats.len(), 3, "{stats:?}");
    assert_eq!(
        stats[0],
        serde_json::json!({}),
        "NULL reads as an empty object"
    );
    let deep_text = stats[1].as_str().expect("deep nesting read as its text");
    assert!(
        deep_text.starts_with("[[[[") && deep_text.contains('1'),
        "{deep_text}"
    );
    let big = stats[2].as_str().expect("an f64 overflow read as its text");
    assert!(
        big.contains("\"deleted\"") && big.contains("\"failed\": 1"),
        "{big}"
    );
    // PostgreSQL writes 1e400 out in full; the text keeps every digit.
    assert!(big.contains(&format!("1{}", "0".repeat(400))), "{big}");

    let latest = db::executions::latest_per_job(&mut conn).await.unwrap();
    assert_eq!(latest.len(), 2, "{latest:?}");
    assert!(latest
        .iter()
        .any(|r| r.job_name == "cost_update" && r.stats.is_string()));

    // The day's sums overflow f64 too: read as their text, the other figures intact.
    let days = db::trends::daily(&mut conn, "cost_update", 1)
        .await
        .unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!((days[0].runs, days[0].succeeded), (1, 1));
    assert!(days[0].stats.is_string(), "{:?}", days[0].stats);
}

/// After one finished run of `cost_update`, `sql` is run and a new claim must end as a
/// conflict that inserted nothing; its reason.
async fn conflict_after(sql: &str) -> String {
    let db = TestDatabase::new().await;
    let log = PgExecutionLog::new(db.pool());
    let id = started(&log, &new_execution("cost_update", None)).await;
    succeed(&log, id).await;
    exec(&db, sql).await;
    let claim = log
        .claim(&new_execution("cost_update", None))
        .await
        .unwrap();
    let Claim::Conflict(reason) = claim else {
        panic!("no execution is running: the claim must be a conflict, not {claim:?}");
    };
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM job_executions").await,
        1
    );
    reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_sequence_set_back_is_named_not_taken_for_a_running_job() {
    // Set back by hand: the next id is one the table already has.
    let reason =
        conflict_after("SELECT setval(pg_get_serial_sequence('job_executions', 'id'), 1, false)")
            .await;
    assert!(reason.contains("id sequence behind"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_with_a_unique_index_not_this_services_is_named_after_a_few_tries() {
    let reason = conflict_after(
        "CREATE UNIQUE INDEX one_manual_run ON job_executions (job_name, triggered_by)",
    )
    .await;
    assert!(reason.contains("unique index"), "{reason}");
    assert!(!reason.contains("sequence"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_meets_a_run_ending_at_that_moment_starts_instead_of_failing() {
    let db = TestDatabase::new().await;
    let log = PgExecutionLog::new(db.pool());
    let first = started(&log, &new_execution("cost_update", None)).await;
    // The worst moment, made certain: the run the next insert meets ends right after the
    // insert gave up on it, before the claim looks for what stopped it.
    exec(
        &db,
        &format!(
            "CREATE FUNCTION end_first() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               UPDATE job_executions SET status = 'success', completed_at = now() \
               WHERE id = {first} AND status = 'running'; RETURN NULL; END $$"
        ),
    )
    .await;
    exec(
        &db,
        "CREATE TRIGGER end_first AFTER INSERT ON job_executions \
         FOR EACH STATEMENT EXECUTE FUNCTION end_first()",
    )
    .await;
    let claim = log
        .claim(&new_execution("cost_update", None))
        .await
        .unwrap();
    let Claim::Started { id, .. } = claim else {
        panic!("the run it met had ended: the job was free, not {claim:?}");
    };
    assert_ne!(id, first);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM job_executions WHERE status = 'running'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_hands_its_run_over_only_while_another_server_is_alive() {
    let db = TestDatabase::new().await;
    let log = PgExecutionLog::new(db.pool());
    let slot = Utc.with_ymd_and_hms(2026, 11, 28, 2, 0, 0).unwrap();
    let id = started(&log, &new_execution("audio_cleanup", Some(slot))).await;
    let mut stats = Stats::new();
    stats.add("deleted", 7);
    let message = "interrupted by shutdown of server host-a:8080; attempt 2 goes to another server";
    // Alone (its own presence row does not count): nobody would take it.
    exec(
        &db,
        "INSERT INTO job_workers (worker_id, version, started_at, heartbeat_secs) \
         VALUES ('host-a:8080', 'test', now(), 15)",
    )
    .await;
    assert!(!log.hand_over(id, &stats, message).await.unwrap());
    // A server last seen three heartbeats ago is gone too.
    exec(
        &db,
        "INSERT INTO job_workers (worker_id, version, started_at, last_seen_at, heartbeat_secs) \
         VALUES ('host-b:8080', 'test', now(), now() - interval '45 seconds', 15)",
    )
    .await;
    assert!(!log.hand_over(id, &stats, message).await.unwrap());
    assert!(
        log.expire_leases().await.unwrap().is_empty(),
        "still leased"
    );

    exec(
        &db,
        "UPDATE job_workers SET last_seen_at = now() WHERE worker_id = 'host-b:8080'",
    )
    .await;
    assert!(log.hand_over(id, &stats, message).await.unwrap());
    // The lease check of the live server closes it with that reason and its counters.
    let closed = log.expire_leases().await.unwrap();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].status, Status::Failed);
    assert_eq!(closed[0].error_message.as_deref(), Some(message));
    assert_eq!(closed[0].stats["deleted"], 7);
    // Closed: nothing more to hand over.
    assert!(!log.hand_over(id, &stats, message).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_closed_for_no_server_count_as_failures_but_not_in_the_durations() {
    let db = TestDatabase::new().await;
    exec(
        &db,
        &format!(
            "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, \
               error_message) VALUES \
             ('cost_update', 'success', now(), now(), 1000, NULL), \
             ('cost_update', 'failed', now(), now(), 3000, 'Deepgram answered 500'), \
             ('cost_update', 'failed', now(), now(), 1728005847, \
               '{} when this service took over'), \
             ('cost_update', 'failed', now(), now(), 900000000, \
               '{} since 2026-11-20, so no server of this service was running it')",
            db::TAKEOVER_MESSAGE_PREFIX,
            db::execution_log::UNLEASED_MESSAGE_PREFIX
        ),
    )
    .await;
    let mut conn = db.connect().await;
    let days = db::trends::daily(&mut conn, "cost_update", 1)
        .await
        .unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!((days[0].runs, days[0].succeeded, days[0].failed), (4, 1, 3));
    // The median and 95th percentile of the two runs that were timed: 1 s and 3 s.
    assert_eq!(days[0].p50_ms, Some(2000));
    assert_eq!(days[0].p95_ms, Some(2900));
}

/// Attempt 1 of `slot`, failed, with its retry due in `retry_secs`.
async fn failed_with_a_retry(
    log: &PgExecutionLog,
    slot: chrono::DateTime<Utc>,
    retry_secs: u64,
) -> i64 {
    let id = started(log, &new_execution("audio_cleanup", Some(slot))).await;
    log.complete(
        id,
        &Completion {
            status: Status::Failed,
            stats: Stats::new(),
            error_message: Some("Storage answered 503".into()),
            retry_in: Some(Duration::from_secs(retry_secs)),
        },
    )
    .await
    .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_keeps_its_retry_time_and_is_overdue_only_while_nothing_followed() {
    let db = TestDatabase::new().await;
    let log = PgExecutionLog::new(db.pool());
    let slot = Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap();
    let id = failed_with_a_retry(&log, slot, 60).await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM job_executions \
             WHERE retry_at BETWEEN now() + interval '59 seconds' AND now() + interval '61 seconds'"
        )
        .await,
        1
    );
    let overdue = |margin: u64| {
        let log = &log;
        async move {
            log.overdue_retries(Duration::from_secs(margin))
                .await
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    // Not due yet.
    assert!(overdue(0).await.is_empty());
    // Due a minute ago: overdue with a margin under a minute only.
    exec(
        &db,
        "UPDATE job_executions SET retry_at = now() - interval '1 minute'",
    )
    .await;
    assert_eq!(overdue(10).await, vec![id]);
    assert!(overdue(120).await.is_empty());
    // A dry run, or a retry due more than six hours ago, is not taken up.
    exec(
        &db,
        "UPDATE job_executions SET retry_at = now() - interval '7 hours'",
    )
    .await;
    assert!(overdue(10).await.is_empty());
    exec(
        &db,
        "UPDATE job_executions SET retry_at = now() - interval '1 minute', dry_run = true",
    )
    .await;
    assert!(overdue(10).await.is_empty());
    exec(&db, "UPDATE job_executions SET dry_run = false").await;
    assert_eq!(overdue(10).await, vec![id]);
    // A manual run does not count as what followed.
    exec(
        &db,
        "INSERT INTO job_executions (job_name, status, completed_at, triggered_by) \
         VALUES ('audio_cleanup', 'success', now(), 'manual')",
    )
    .await;
    assert_eq!(overdue(10).await, vec![id]);
    // The next attempt of the slot, or a later slot (even skipped): nothing to take up.
    exec(
        &db,
        "INSERT INTO job_executions (job_name, status, scheduled_for, attempt, completed_at) \
         VALUES ('audio_cleanup', 'running', '2026-11-01 02:00:00+00', 2, NULL)",
    )
    .await;
    assert!(overdue(10).await.is_empty());
    exec(&db, "DELETE FROM job_executions WHERE attempt = 2").await;
    exec(
        &db,
        "INSERT INTO job_executions (job_name, status, scheduled_for, attempt, completed_at, error_message) \
         VALUES ('audio_cleanup', 'skipped', '2026-11-02 02:00:00+00', 1, now(), 'skipped: the job was paused')",
    )
    .await;
    assert!(overdue(10).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_moot_once_a_later_slot_is_recorded_or_the_job_was_paused_since() {
    let db = TestDatabase::new().await;
    let log = PgExecutionLog::new(db.pool());
    let slot = Utc.with_ymd_and_hms(2026, 11, 1, 2, 0, 0).unwrap();
    failed_with_a_retry(&log, slot, 1).await;
    exec(
        &db,
        "UPDATE job_executions SET retry_at = now() - interval '1 minute'",
    )
    .await;
    let overdue = || async {
        log.overdue_retries(Duration::from_secs(10))
            .await
            .unwrap()
            .len()
    };
    assert_eq!(overdue().await, 1);

    // A pause (and resume) since the attempt failed: the resumed job starts again from its
    // next slot, not with this retry.
    exec(
        &db,
        "INSERT INTO job_controls (job_name, paused, updated_at) VALUES ('audio_cleanup', false, now())",
    )
    .await;
    assert_eq!(overdue().await, 0);

    // The next slot is recorded: attempt 2 of the earlier slot is not claimed any more.
    let later = Utc.with_ymd_and_hms(2026, 11, 2, 2, 0, 0).unwrap();
    succeed(
        &log,
        started(&log, &new_execution("audio_cleanup", Some(later))).await,
    )
    .await;
    let mut retry = new_execution("audio_cleanup", Some(slot));
    retry.attempt = 2;
    assert_eq!(log.claim(&retry).await.unwrap(), Claim::SlotTaken);
    // The later slot's own retry still is.
    let mut its_retry = new_execution("audio_cleanup", Some(later));
    its_retry.attempt = 2;
    assert!(matches!(
        log.claim(&its_retry).await.unwrap(),
        Claim::Started { .. }
    ));
}
