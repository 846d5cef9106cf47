//! Runner robustness with real processes and real PostgreSQL: leases without a server,
//! load on a small pool, skipped slots while a run goes on, retries after a crash, and
//! cooperative stops (timeout, SIGTERM, an operator's cancel from another server) that
//! keep the stats a run reached. Runs use `audio_cleanup` against a local mock of Supabase
//! Storage whose deletes take a set time, one row per batch, so a run's progress is
//! countable.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use db::testing::TestDatabase;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use wiremock::MockServer;

use crate::support::executions::{audio_cleanup_run, audio_cleanup_runs, Execution};
use crate::support::server::{api_server, eventually, free_port, ServerProcess};
use crate::support::storage::{audio_bucket, deletes_after};
use crate::support::{seed_old_audio, server_vars, with};

const TOKEN: &str = "robustness-admin-token-0123456789";

/// A mock Storage with bucket `audio`: the first `slow_deletes` deletes answer after
/// `slow`, later ones after `fast`.
async fn storage(slow_deletes: u64, slow: Duration, fast: Duration) -> MockServer {
    let mock = audio_bucket().await;
    if slow_deletes > 0 {
        deletes_after(slow)
            .up_to_n_times(slow_deletes)
            .with_priority(1)
            .mount(&mock)
            .await;
    }
    deletes_after(fast).with_priority(2).mount(&mock).await;
    mock
}

fn base_vars<'a>(db: &'a TestDatabase, mock: &'a str) -> Vec<(&'a str, &'a str)> {
    with(
        server_vars(db, mock),
        &[
            ("ADMIN_TOKEN", TOKEN),
            ("SUPABASE_MAX_ATTEMPTS", "1"),
            ("SUPABASE_REQUEST_TIMEOUT_SECS", "120"),
            ("AUDIO_CLEANUP_BATCH_SIZE", "1"),
            ("AUDIO_CLEANUP_CONCURRENCY", "1"),
            ("SCHEDULER_TICK_MS", "200"),
            ("JOB_LEASE_SECS", "3"),
            ("JOB_HEARTBEAT_SECS", "1"),
            ("JOB_CANCEL_GRACE_SECS", "20"),
        ],
    )
}

/// Waits until the run has finished at least `n` batches (its progress is stored).
async fn progress(db: &TestDatabase, id: i64, n: i64) {
    eventually(Duration::from_secs(60), "progress", || async {
        (audio_cleanup_run(db, id).await.considered() >= n).then_some(())
    })
    .await;
}

/// Waits until the run is no longer `running`.
async fn ended(db: &TestDatabase, id: i64) -> Execution {
    eventually(Duration::from_secs(90), "the run to end", || async {
        let r = audio_cleanup_run(db, id).await;
        (r.status != "running").then_some(r)
    })
    .await
}

/// `api-server run-job audio_cleanup` as a child process.
fn run_job(vars: &[(&str, &str)]) -> Child {
    api_server(vars)
        .args(["run-job", "audio_cleanup"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("start run-job")
}

async fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    eventually(limit, "run-job to exit", || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_job_is_closed_by_a_later_run_job_without_any_server() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 1).await;
    let mock = storage(1, Duration::from_secs(120), Duration::ZERO).await;
    let uri = mock.uri();
    let vars = base_vars(&db, &uri);

    let mut first = run_job(&vars);
    let orphan = eventually(Duration::from_secs(60), "the first run", || async {
        audio_cleanup_runs(&db)
            .await
            .into_iter()
            .find(|r| r.status == "running")
    })
    .await;
    // Killed while its (slow) Storage delete is under way.
    eventually(
        Duration::from_secs(30),
        "the first run's delete",
        || async {
            let requests = mock.received_requests().await.unwrap_or_default();
            requests
                .iter()
                .any(|r| r.method == wiremock::http::Method::DELETE)
                .then_some(())
        },
    )
    .await;
    first.kill().unwrap();
    first.wait().unwrap();

    // Once its lease is over, the next run-job closes it and runs.
    eventually(Duration::from_secs(30), "the lease to expire", || async {
        let mut conn = db.connect().await;
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let n: N = diesel::sql_query(
            "SELECT count(*) AS n FROM job_executions \
             WHERE status = 'running' AND lease_expires_at < now()",
        )
        .get_result(&mut conn)
        .await
        .unwrap();
        (n.n == 1).then_some(())
    })
    .await;
    let mut second = run_job(&vars);
    let status = wait_exit(&mut second, Duration::from_secs(60)).await;
    assert!(status.success(), "{status}");

    let all = audio_cleanup_runs(&db).await;
    assert_eq!(all.len(), 2, "{all:#?}");
    let closed = all.iter().find(|r| r.id == orphan.id).unwrap();
    assert_eq!(closed.status, "failed");
    assert!(
        closed
            .error_message
            .as_deref()
            .is_some_and(|m| m.starts_with("interrupted")),
        "{closed:?}"
    );
    assert_eq!(all[1].status, "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_run_job_ends_the_run_failed_with_its_partial_stats_and_exit_1() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 20).await;
    let mock = storage(0, Duration::ZERO, Duration::from_millis(500)).await;
    let uri = mock.uri();
    let mut child = run_job(&base_vars(&db, &uri));
    let id = eventually(Duration::from_secs(60), "the run", || async {
        audio_cleanup_runs(&db)
            .await
            .into_iter()
            .next()
            .map(|r| i64::from(r.id))
    })
    .await;
    progress(&db, id, 2).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_exit(&mut child, Duration::from_secs(60)).await;
    assert_eq!(exit.code(), Some(1));
    let r = audio_cleanup_run(&db, id).await;
    assert_eq!(r.status, "failed");
    assert_eq!(r.error_message.as_deref(), Some("interrupted by shutdown"));
    assert!((2..20).contains(&r.considered()), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_keeps_its_lease_under_a_flood_of_requests_on_a_two_connection_pool() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 1).await;
    let mock = storage(1, Duration::from_secs(10), Duration::ZERO).await;
    let uri = mock.uri();
    let vars = with(base_vars(&db, &uri), &[("DATABASE_POOL_SIZE", "2")]);
    let server = ServerProcess::start(&vars).await;
    // A second server would close the run if its lease ran out.
    let _watcher = ServerProcess::start(&vars).await;
    let id = server.start_run("audio_cleanup").await;

    let stop = tokio_util::sync::CancellationToken::new();
    let mut flood = Vec::new();
    for i in 0..24 {
        let stop = stop.clone();
        let urls = [
            server.url("/readyz"),
            server.url("/metrics"),
            server.url("/internal/api/v1/jobs/status"),
            server.url("/internal/api/v1/jobs/executions?limit=500"),
        ];
        flood.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0usize;
            while !stop.is_cancelled() {
                let url = &urls[(i + n) % urls.len()];
                let mut req = client.get(url);
                // Half of the history requests authenticated, the rest refused.
                if url.contains("executions") && n.is_multiple_of(2) {
                    req = req.bearer_auth(TOKEN);
                }
                let _ = req.send().await;
                n += 1;
            }
        }));
    }
    let done = ended(&db, id).await;
    stop.cancel();
    for task in flood {
        task.await.unwrap();
    }
    assert_eq!(done.status, "success", "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_run_on_a_per_second_schedule_stays_the_latest_status_while_slots_are_skipped() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 1).await;
    let mock = storage(1, Duration::from_secs(6), Duration::ZERO).await;
    let uri = mock.uri();
    let server = ServerProcess::start(&with(
        base_vars(&db, &uri),
        &[("AUDIO_CLEANUP_SCHEDULE", "* * * * * *")],
    ))
    .await;
    let first = eventually(Duration::from_secs(30), "the first run", || async {
        audio_cleanup_runs(&db)
            .await
            .into_iter()
            .find(|r| r.status == "running")
    })
    .await;
    // The status answers from the server's live view, which follows the table within the
    // feed's bound: once it shows the run, no skipped slot may take its place.
    eventually(
        Duration::from_secs(10),
        "the status to show the run",
        || async {
            let (_, body) = server.get("/internal/api/v1/jobs/status").await;
            body["data"]
                .as_array()?
                .iter()
                .find(|j| j["job_name"] == "audio_cleanup" && j["status"] == "running")?;
            Some(())
        },
    )
    .await;
    let mut looked = 0;
    loop {
        let (_, body) = server.get("/internal/api/v1/jobs/status").await;
        // Only a look taken while the first run certainly went counts.
        if audio_cleanup_run(&db, i64::from(first.id)).await.status != "running" {
            break;
        }
        let job = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job_name"] == "audio_cleanup")
            .cloned()
            .unwrap_or_default();
        assert_eq!(job["status"], "running", "{body}");
        looked += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(looked > 0);
    let (_, page) = server
        .get("/internal/api/v1/jobs/executions?job_name=audio_cleanup&status=skipped&limit=500")
        .await;
    let skipped = page["data"].as_array().unwrap();
    assert!(!skipped.is_empty(), "{page}");
    assert!(skipped.iter().all(|r| r["status"] == "skipped"), "{page}");
    assert!(
        audio_cleanup_runs(&db)
            .await
            .iter()
            .all(|r| r.status != "failed"),
        "a skipped slot was stored as a failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_attempt_1_leads_to_attempt_2() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 1).await;
    let mock = storage(1, Duration::from_secs(120), Duration::ZERO).await;
    let uri = mock.uri();
    // The hourly slot of this hour is caught up on start.
    let vars = with(
        base_vars(&db, &uri),
        &[
            ("AUDIO_CLEANUP_SCHEDULE", "0 * * * *"),
            ("MISFIRE_WINDOW_SECS", "3600"),
            ("JOB_MAX_ATTEMPTS", "3"),
            ("JOB_RETRY_DELAY_SECS", "0"),
        ],
    );
    let mut a = ServerProcess::start_on(free_port(), &vars).await;
    let first = eventually(Duration::from_secs(30), "attempt 1", || async {
        audio_cleanup_runs(&db)
            .await
            .into_iter()
            .find(|r| r.status == "running")
    })
    .await;
    assert_eq!(first.attempt, 1);
    // Killed while its (slow) Storage delete is under way.
    eventually(Duration::from_secs(30), "attempt 1's delete", || async {
        let requests = mock.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .any(|r| r.method == wiremock::http::Method::DELETE)
            .then_some(())
    })
    .await;
    a.kill9().await;

    let b = ServerProcess::start(&vars).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let all = loop {
        let all = audio_cleanup_runs(&db).await;
        if all.iter().any(|r| r.attempt == 2 && r.status == "success") {
            break all;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no attempt 2: {all:#?}\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lost = all.iter().find(|r| r.id == first.id).unwrap();
    assert_eq!(lost.status, "failed");
    assert_eq!(all.iter().filter(|r| r.attempt == 2).count(), 1, "{all:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_ends_the_run_with_the_stats_it_reached() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 30).await;
    let mock = storage(0, Duration::ZERO, Duration::from_millis(400)).await;
    let uri = mock.uri();
    let server = ServerProcess::start(&with(
        base_vars(&db, &uri),
        &[("AUDIO_CLEANUP_TIMEOUT_SECS", "2")],
    ))
    .await;
    let id = server.start_run("audio_cleanup").await;
    let r = ended(&db, id).await;
    assert_eq!(r.status, "failed");
    assert_eq!(r.error_message.as_deref(), Some("timed out after 2s"));
    assert!((1..30).contains(&r.considered()), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_run_with_the_stats_it_reached() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 30).await;
    let mock = storage(0, Duration::ZERO, Duration::from_millis(400)).await;
    let uri = mock.uri();
    let mut server =
        ServerProcess::start(&with(base_vars(&db, &uri), &[("SHUTDOWN_GRACE_SECS", "0")])).await;
    let id = server.start_run("audio_cleanup").await;
    progress(&db, id, 2).await;
    let (status, _) = server.terminate(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0));
    let r = audio_cleanup_run(&db, id).await;
    assert_eq!(r.status, "failed");
    assert_eq!(r.error_message.as_deref(), Some("interrupted by shutdown"));
    assert!((2..30).contains(&r.considered()), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_sent_to_another_server_stops_the_run_with_its_partial_stats() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 30).await;
    let mock = storage(0, Duration::ZERO, Duration::from_millis(400)).await;
    let uri = mock.uri();
    let vars = base_vars(&db, &uri);
    let runner = ServerProcess::start(&vars).await;
    let other = ServerProcess::start(&vars).await;
    let id = runner.start_run("audio_cleanup").await;
    progress(&db, id, 2).await;

    let cancel = |id: i64| {
        let other = &other;
        async move {
            other
                .post(
                    &format!("/internal/api/v1/jobs/executions/{id}/cancel"),
                    None,
                )
                .await
        }
    };
    let (status, body) = cancel(id).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["execution_id"], id);

    // The admin token asked, from the other server: the reason names the role.
    let r = ended(&db, id).await;
    assert_eq!(r.status, "failed");
    assert_eq!(r.error_message.as_deref(), Some("cancelled by admin"));
    assert!((2..30).contains(&r.considered()), "{r:?}");

    let (status, body) = cancel(id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "not_running");
    let (status, body) = cancel(id + 1000).await;
    assert_eq!(status, 404, "{body}");
    // Without the token: 401, and nothing is cancelled.
    let resp = reqwest::Client::new()
        .post(other.url(&format!("/internal/api/v1/jobs/executions/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_flood_during_an_outage_logs_each_check_once_not_each_probe() {
    let db = TestDatabase::new().await;
    let mock = storage(0, Duration::ZERO, Duration::ZERO).await;
    let uri = mock.uri();
    let server = ServerProcess::start(&base_vars(&db, &uri)).await;
    let mut admin = db::testing::admin_target().connect().await.unwrap();
    diesel::sql_query(format!("DROP DATABASE \"{}\" WITH (FORCE)", db.name()))
        .execute(&mut admin)
        .await
        .unwrap();

    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    for _ in 0..40 {
        let resp = client.get(server.url("/readyz")).send().await.unwrap();
        assert_eq!(resp.status(), 503);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
    }
    let seconds = started.elapsed().as_secs() + 1;
    let logged = server
        .log()
        .lines()
        .filter(|l| l.contains("database unavailable:"))
        .count() as u64;
    // One check per second per HTTP worker (two cores here: two workers).
    assert!(
        (1..=2 * (seconds + 1)).contains(&logged),
        "{logged} lines in {seconds} s:\n{}",
        server.log()
    );
}

/// Inserts a `running` row as another system or a person writes it (no worker, no lease).
async fn insert_unleased(db: &TestDatabase, job: &str, started: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let mut conn = db.connect().await;
    diesel::sql_query(format!(
        "INSERT INTO job_executions (job_name, status, started_at) \
         VALUES ('{job}', 'running', {started}) RETURNING id::int8 AS id"
    ))
    .get_result::<Id>(&mut conn)
    .await
    .unwrap()
    .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_row_no_server_holds_is_closed_by_a_cancel_or_by_the_lease_check() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 2).await;
    let mock = storage(0, Duration::ZERO, Duration::ZERO).await;
    let uri = mock.uri();
    let server = ServerProcess::start(&base_vars(&db, &uri)).await;

    // Written a moment ago by another system: it holds the job's one running place.
    let foreign = insert_unleased(&db, "audio_cleanup", "now()").await;
    let (status, body) = server
        .post("/internal/api/v1/jobs/audio_cleanup/run", None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "already_running");

    // Nothing would ever stop it, so the cancel closes it and says so.
    let (status, body) = server
        .post(
            &format!("/internal/api/v1/jobs/executions/{foreign}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["status"], "failed");
    assert_eq!(
        body["data"]["error_message"],
        "cancelled by admin: no server held it (it never had a lease)"
    );
    let (status, body) = server
        .get(&format!("/internal/api/v1/jobs/executions/{foreign}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "failed");
    assert_eq!(
        body["data"]["error_message"],
        "cancelled by admin: no server held it (it never had a lease)"
    );
    let id = server.start_run("audio_cleanup").await;
    assert_eq!(ended(&db, id).await.status, "success");

    // One left without a cancel is closed by the lease check once it is older than a lease
    // (3 s here), so the job is not blocked for good.
    let stale = insert_unleased(&db, "audio_cleanup", "now() - interval '1 minute'").await;
    let r = ended(&db, stale).await;
    assert_eq!(r.status, "failed");
    let message = r.error_message.unwrap_or_default();
    assert!(
        message.starts_with("interrupted: running without a lease since "),
        "{message}"
    );
    assert!(message.ends_with("closed after 3 s"), "{message}");
    assert!(
        server.log().contains(&format!(
            "audio_cleanup execution {stale} marked failed: interrupted: running without a lease"
        )),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_a_taken_address_stops_before_touching_the_live_servers_runs() {
    let db = TestDatabase::new().await;
    // The live server: its port is held, and it runs an execution under its worker id.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    crate::support::sql(
        &db,
        "INSERT INTO job_executions (job_name, status, triggered_by, worker_id, heartbeat_at, lease_expires_at) \
         VALUES ('audio_cleanup', 'running', 'manual', 'web-1', now(), now() + interval '1 hour')",
    )
    .await;

    let storage = audio_bucket().await;
    let uri = storage.uri();
    let vars = with(
        server_vars(&db, &uri),
        &[("BIND_ADDR", addr.as_str()), ("WORKER_ID", "web-1")],
    );
    let output = api_server(&vars).output().unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("BIND_ADDR"), "{stderr}");
    let runs = audio_cleanup_runs(&db).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(run.status, "running", "{run:?}");
    assert_eq!(run.error_message, None, "{run:?}");
    drop(taken);
}
