//! Scheduler reliability with real processes and real PostgreSQL: one run per slot across
//! replicas, leases after `kill -9`, PostgreSQL restarts, SIGTERM during a run, timeouts,
//! retries and catch-up. Runs use `audio_cleanup` against a local mock of Supabase Storage
//! whose delete can be made slow.

use std::time::Duration;

use chrono::{DateTime, Utc};
use db::testing::TestDatabase;
use diesel_async::RunQueryDsl;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::executions::{audio_cleanup_run, audio_cleanup_runs, Execution};
use crate::support::server::{eventually, free_port, ServerProcess};
use crate::support::storage::{storage, SERVICE_ROLE_KEY};
use crate::support::{seed_old_audio, server_vars, with};

fn base_vars<'a>(db: &'a TestDatabase, mock: &'a str) -> Vec<(&'a str, &'a str)> {
    with(
        server_vars(db, mock),
        &[
            ("SUPABASE_MAX_ATTEMPTS", "1"),
            ("SUPABASE_REQUEST_TIMEOUT_SECS", "120"),
            ("SCHEDULER_TICK_MS", "200"),
            ("JOB_LEASE_SECS", "3"),
            ("JOB_HEARTBEAT_SECS", "1"),
            // A run asked to stop while its Storage request hangs is abandoned after this.
            ("JOB_CANCEL_GRACE_SECS", "2"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_run_each_per_second_slot_exactly_once() {
    let db = TestDatabase::new().await;
    let mock = storage(Duration::ZERO).await;
    let uri = mock.uri();
    let vars = with(
        base_vars(&db, &uri),
        &[("AUDIO_CLEANUP_SCHEDULE", "* * * * * *")],
    );
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(ServerProcess::start(&vars).await);
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    for s in &mut servers {
        let (status, _) = s.terminate(Duration::from_secs(20)).await;
        assert!(status.success());
    }
    let all = audio_cleanup_runs(&db).await;
    let mut slots: Vec<DateTime<Utc>> = all.iter().filter_map(|r| r.scheduled_for).collect();
    let n = slots.len();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), n, "a slot ran twice");
    // How many slots fall in 30 s depends on how fast three servers start on this machine;
    // what matters is that each ran once and none is missing from the first on.
    assert!(n >= 10, "only {n} slots in 30 s");
    // Consecutive: from the first slot on, every second has its execution.
    for pair in slots.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_seconds(),
            1,
            "gap between {} and {}",
            pair[0],
            pair[1]
        );
    }
    // Every slot ran, except that on a loaded machine a slot arriving while the previous
    // run still went is recorded as skipped (the documented overlap policy).
    let unexpected: Vec<&Execution> = all
        .iter()
        .filter(|r| {
            r.status != "success"
                && r.error_message.as_deref()
                    != Some("skipped: the previous run of this job was still going")
        })
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    assert!(
        all.iter()
            .all(|r| r.status == "success" || r.status == "skipped"),
        "{all:#?}"
    );
    let successes = all.iter().filter(|r| r.status == "success").count();
    assert!(
        successes * 2 >= n,
        "only {successes} of {n} slots ran: {all:#?}"
    );
    let workers: std::collections::HashSet<_> =
        all.iter().filter_map(|r| r.worker_id.clone()).collect();
    assert!(
        workers.len() >= 2,
        "only one server ever won a slot: {workers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_servers_run_is_closed_on_restart_and_by_another_live_server() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 1).await;
    let mock = storage(Duration::from_secs(60)).await;
    let uri = mock.uri();
    let vars = base_vars(&db, &uri);

    // 1. Restart: the same server (same port, so the same worker id) closes it at once.
    let port = free_port();
    let mut a = ServerProcess::start_on(port, &vars).await;
    let first = a.start_run("audio_cleanup").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(audio_cleanup_run(&db, first).await.status, "running");
    a.kill9().await;
    let a2 = ServerProcess::start_on(port, &vars).await;
    let closed = eventually(
        Duration::from_secs(10),
        "orphan closed on restart",
        || async {
            let r = audio_cleanup_run(&db, first).await;
            (r.status == "failed").then_some(r)
        },
    )
    .await;
    let message = closed.error_message.unwrap();
    assert!(
        message.starts_with("interrupted: server") && message.contains("restarted"),
        "{message}"
    );
    // The job is not blocked: a new run starts.
    let second = a2.start_run("audio_cleanup").await;
    drop(a2); // killed by drop, like kill -9
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 2. Another live server marks the dead server's run failed once its lease expires.
    let b = ServerProcess::start(&vars).await;
    let closed = eventually(Duration::from_secs(20), "lease expiry", || async {
        let r = audio_cleanup_run(&db, second).await;
        (r.status == "failed").then_some(r)
    })
    .await;
    let message = closed.error_message.unwrap();
    assert!(message.contains("stopped renewing its lease"), "{message}");
    assert!(
        message.contains(&format!(":{port}")),
        "the host is named: {message}"
    );
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_live_run_is_never_marked_by_other_servers() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 1).await;
    let mock = storage(Duration::from_secs(8)).await;
    let uri = mock.uri();
    let vars = base_vars(&db, &uri);
    let runner = ServerProcess::start(&vars).await;
    let _watchers = [
        ServerProcess::start(&vars).await,
        ServerProcess::start(&vars).await,
    ];
    let id = runner.start_run("audio_cleanup").await;
    // Eight seconds: well past the 3 s lease, renewed every second.
    let done = eventually(Duration::from_secs(30), "the slow run to end", || async {
        let r = audio_cleanup_run(&db, id).await;
        (r.status != "running").then_some(r)
    })
    .await;
    assert_eq!(done.status, "success", "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_run_exits_0_within_the_grace_period_and_records_the_interruption() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 1).await;
    let mock = storage(Duration::from_secs(60)).await;
    let uri = mock.uri();
    let mut server =
        ServerProcess::start(&with(base_vars(&db, &uri), &[("SHUTDOWN_GRACE_SECS", "1")])).await;
    let id = server.start_run("audio_cleanup").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, took) = server.terminate(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let r = audio_cleanup_run(&db, id).await;
    assert_eq!(r.status, "failed");
    assert_eq!(r.error_message.as_deref(), Some("interrupted by shutdown"));
    assert!(audio_cleanup_runs(&db)
        .await
        .iter()
        .all(|r| r.status != "running"));
}

/// An hourly slot caught up on start, two attempts without backoff, a 1 s stop grace.
const HOURLY_TWO_ATTEMPTS: &[(&str, &str)] = &[
    ("AUDIO_CLEANUP_SCHEDULE", "0 * * * *"),
    ("MISFIRE_WINDOW_SECS", "3600"),
    ("JOB_MAX_ATTEMPTS", "2"),
    ("JOB_RETRY_DELAY_SECS", "0"),
    ("SHUTDOWN_GRACE_SECS", "1"),
];

/// The audio_cleanup execution running now, once there is one.
async fn the_running_run(db: &TestDatabase) -> Execution {
    eventually(Duration::from_secs(10), "a running execution", || async {
        audio_cleanup_runs(db)
            .await
            .into_iter()
            .find(|r| r.status == "running")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_servers_scheduled_run_gets_its_next_attempt_on_another_server() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 1).await;
    let mock = storage(Duration::from_secs(60)).await;
    let uri = mock.uri();
    let vars = with(base_vars(&db, &uri), HOURLY_TWO_ATTEMPTS);
    let mut a = ServerProcess::start(&vars).await;
    let first = the_running_run(&db).await;
    let b = ServerProcess::start(&vars).await;
    // A rollout stops the server that runs the slot.
    let (status, _) = a.terminate(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0));
    let all = eventually(
        Duration::from_secs(20),
        "attempt 2 on the other server",
        || async {
            let all = audio_cleanup_runs(&db).await;
            all.iter().any(|r| r.attempt == 2).then_some(all)
        },
    )
    .await;
    let interrupted = all.iter().find(|r| r.id == first.id).unwrap();
    assert_eq!(interrupted.status, "failed");
    let message = interrupted.error_message.as_deref().unwrap_or_default();
    assert!(
        message.starts_with("interrupted by shutdown of server")
            && message.ends_with("attempt 2 goes to another server"),
        "{message}"
    );
    let next = all.iter().find(|r| r.attempt == 2).unwrap();
    assert_eq!(next.scheduled_for, first.scheduled_for, "the same slot");
    assert_ne!(next.worker_id, first.worker_id, "{all:#?}");
    assert_eq!(next.status, "running");
    assert_eq!(all.len(), 2, "{all:#?}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_stopping_one_after_the_other_leave_nothing_running() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 1).await;
    let mock = storage(Duration::from_secs(60)).await;
    let uri = mock.uri();
    let vars = with(base_vars(&db, &uri), HOURLY_TWO_ATTEMPTS);
    let mut servers = [
        ServerProcess::start(&vars).await,
        ServerProcess::start(&vars).await,
    ];
    let first = the_running_run(&db).await;
    // The idle server goes first (a rollout, or a scale-down): it must not be taken for
    // a live server to hand the run to when the busy one stops a moment later.
    let runs_it = |s: &ServerProcess| {
        first
            .worker_id
            .as_deref()
            .is_some_and(|w| w.ends_with(&format!(":{}", s.port)))
    };
    servers.sort_by_key(|s| runs_it(s));
    let [idle, busy] = &mut servers;
    assert!(runs_it(busy), "{first:?}");
    idle.sigterm();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _) = busy.terminate(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0));
    idle.terminate(Duration::from_secs(30)).await;
    let all = audio_cleanup_runs(&db).await;
    assert!(all.iter().all(|r| r.status != "running"), "{all:#?}");
    let closed = all.iter().find(|r| r.id == first.id).unwrap();
    assert_eq!(
        closed.error_message.as_deref(),
        Some("interrupted by shutdown")
    );
}

/// A TCP proxy to the test PostgreSQL that can stop passing bytes, as a database that
/// hangs (a network partition) rather than refuses, or cut every connection and refuse new
/// ones, as a database that is down.
struct FreezingProxy {
    port: u16,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    down: tokio::sync::watch::Sender<bool>,
}

impl FreezingProxy {
    async fn start() -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = std::sync::Arc::new(AtomicBool::new(false));
        let (host, pg_port) = crate::support::test_server_address();
        let target = format!("{host}:{pg_port}");
        let gate = std::sync::Arc::clone(&frozen);
        let (down, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *watch.borrow() {
                    drop(client);
                    continue;
                }
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (mut from, mut to) in [
                    (
                        Box::new(client_read) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                        Box::new(server_write) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                    ),
                    (Box::new(server_read), Box::new(client_write)),
                ] {
                    let gate = std::sync::Arc::clone(&gate);
                    let mut cut = watch.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = tokio::select! {
                                read = from.read(&mut buf) => match read {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => n,
                                },
                                _ = cut.wait_for(|down| *down) => break,
                            };
                            while AtomicBool::load(&gate, Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            if to.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            }
        });
        Self { port, frozen, down }
    }

    /// Closes every connection and refuses new ones, until [`FreezingProxy::restore`].
    fn cut(&self) {
        self.down.send_replace(true);
    }

    /// The URL of `db` through this proxy.
    fn url(&self, db: &TestDatabase) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}?sslmode=disable",
            self.port,
            db.name()
        )
    }

    /// Lets connections through again.
    fn restore(&self) {
        self.down.send_replace(false);
    }

    fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A server reaching its database through a [`FreezingProxy`], with 1 s stop and cancel
/// grace periods, running `audio_cleanup` (execution id returned) against a Storage that
/// takes a minute to answer.
async fn running_behind_proxy() -> (TestDatabase, MockServer, FreezingProxy, ServerProcess, i64) {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 1).await;
    let mock = storage(Duration::from_secs(60)).await;
    let uri = mock.uri();
    let proxy = FreezingProxy::start().await;
    let url = proxy.url(&db);
    let vars = with(
        base_vars(&db, &uri),
        &[
            ("DATABASE_URL", url.as_str()),
            ("SHUTDOWN_GRACE_SECS", "1"),
            ("JOB_CANCEL_GRACE_SECS", "1"),
        ],
    );
    let server = ServerProcess::start(&vars).await;
    let id = server.start_run("audio_cleanup").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    (db, mock, proxy, server, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_even_when_the_database_stops_answering() {
    let (_db, _mock, proxy, mut server, _) = running_behind_proxy().await;
    proxy.freeze();
    // 1 + 1 + 25 s: it exits by itself, long before the records' writes give up.
    let (status, took) = server.terminate(Duration::from_secs(45)).await;
    assert_eq!(status.code(), Some(1), "{}", server.log());
    assert!(took >= Duration::from_secs(20), "took {took:?}");
    assert!(
        server
            .log()
            .contains("the stop did not finish within 27s; exiting now"),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_whose_run_end_cannot_be_recorded_exits_1_and_says_so() {
    let (db, _mock, proxy, mut server, id) = running_behind_proxy().await;
    // The database goes down: connections close, new ones are refused.
    proxy.cut();
    let (status, _) = server.terminate(Duration::from_secs(45)).await;
    let log = server.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("1 run(s) ended without their end being recorded"),
        "{log}"
    );
    assert!(
        !log.contains("running jobs were interrupted: recorded as failed"),
        "{log}"
    );
    // Its row is indeed still running, for lease expiry to close.
    let run = audio_cleanup_run(&db, id).await;
    assert_eq!(run.status, "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_another_server_ran_during_an_outage_are_not_called_missed() {
    let db = TestDatabase::new().await;
    let mock = storage(Duration::ZERO).await;
    let uri = mock.uri();
    let proxy = FreezingProxy::start().await;
    let url = proxy.url(&db);
    let every_second = [
        ("AUDIO_CLEANUP_SCHEDULE", "* * * * * *"),
        ("MISFIRE_WINDOW_SECS", "0"),
    ];
    let direct = with(base_vars(&db, &uri), &every_second);
    let mut through_proxy = direct.clone();
    through_proxy.push(("DATABASE_URL", url.as_str()));
    let _b = ServerProcess::start(&direct).await;
    let a = ServerProcess::start(&through_proxy).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A loses its database for a few seconds while B runs every slot.
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.restore();
    let runs_after = audio_cleanup_runs(&db).await.len();
    eventually(Duration::from_secs(20), "A to run slots again", || async {
        let all = audio_cleanup_runs(&db).await;
        (all.len() > runs_after + 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = a.log();
    assert!(
        !log.contains("missed because the server was not running its schedule"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_say_when_the_database_is_out_of_reach() {
    let db = TestDatabase::new().await;
    let mock = storage(Duration::ZERO).await;
    let uri = mock.uri();
    let server = ServerProcess::start(&base_vars(&db, &uri)).await;
    assert_eq!(server.metric("database_up").await.as_deref(), Some("1"));
    // The database goes away under the running server.
    let mut admin = db::testing::admin_target().connect().await.unwrap();
    diesel::sql_query(format!("DROP DATABASE \"{}\" WITH (FORCE)", db.name()))
        .execute(&mut admin)
        .await
        .unwrap();
    eventually(Duration::from_secs(15), "database_up 0", || async {
        (server.metric("database_up").await.as_deref() == Some("0")).then_some(())
    })
    .await;
    // The process answers all along.
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_is_not_ready_while_its_jobs_finish() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 1).await;
    let mock = storage(Duration::from_secs(60)).await;
    let uri = mock.uri();
    let mut server = ServerProcess::start(&with(
        base_vars(&db, &uri),
        &[("SHUTDOWN_GRACE_SECS", "10")],
    ))
    .await;
    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    server.start_run("audio_cleanup").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.sigterm();
    let body = eventually(Duration::from_secs(5), "/readyz refusing", || async {
        let resp = reqwest::get(server.url("/readyz")).await.ok()?;
        (resp.status() == 503).then_some(())?;
        resp.json::<serde_json::Value>().await.ok()
    })
    .await;
    assert_eq!(body["error"]["code"], "shutting_down", "{body}");
    // Still up, waiting for the run; liveness stays fine.
    assert!(server.is_alive());
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let (status, _) = server.terminate(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_timeout_is_recorded_as_timed_out() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 1).await;
    let mock = storage(Duration::from_secs(60)).await;
    let uri = mock.uri();
    let server = ServerProcess::start(&with(
        base_vars(&db, &uri),
        &[("AUDIO_CLEANUP_TIMEOUT_SECS", "1")],
    ))
    .await;
    let id = server.start_run("audio_cleanup").await;
    let r = eventually(Duration::from_secs(15), "timeout", || async {
        let r = audio_cleanup_run(&db, id).await;
        (r.status != "running").then_some(r)
    })
    .await;
    assert_eq!(r.status, "failed");
    assert_eq!(r.error_message.as_deref(), Some("timed out after 1s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_slot_is_retried_and_every_attempt_is_in_the_history() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 1).await;
    // The key is refused: every attempt fails.
    let mock = refusing_storage().await;
    let uri = mock.uri();
    // An hourly schedule whose latest slot is within the misfire window: caught up on start.
    let _server = ServerProcess::start(&with(
        base_vars(&db, &uri),
        &[
            ("AUDIO_CLEANUP_SCHEDULE", "0 * * * *"),
            ("MISFIRE_WINDOW_SECS", "3600"),
            ("JOB_MAX_ATTEMPTS", "3"),
            ("JOB_RETRY_DELAY_SECS", "0"),
        ],
    ))
    .await;
    let all = eventually(Duration::from_secs(30), "three attempts", || async {
        let all = audio_cleanup_runs(&db).await;
        (all.iter().filter(|r| r.status == "failed").count() == 3).then_some(all)
    })
    .await;
    let attempts: Vec<i32> = all.iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert!(all.iter().all(|r| r.triggered_by == "catch_up"));
    let slot = all[0].scheduled_for.unwrap();
    assert!(all.iter().all(|r| r.scheduled_for == Some(slot)));
    assert!(all[0]
        .error_message
        .as_deref()
        .unwrap()
        .contains("SUPABASE_SERVICE_ROLE_KEY"));
    // No fourth attempt.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(audio_cleanup_runs(&db).await.len(), 3);
}

/// Storage refusing the key: every attempt fails at once.
async fn refusing_storage() -> MockServer {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "statusCode": "403", "code": "AccessDenied", "error": "Unauthorized",
            "message": "signature verification failed"
        })))
        .mount(&mock)
        .await;
    mock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_whose_server_stops_while_waiting_runs_on_another_server() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 1).await;
    let mock = refusing_storage().await;
    let uri = mock.uri();
    // The retry waits 5-10 s: the stop comes first.
    let vars = with(
        base_vars(&db, &uri),
        &[
            ("AUDIO_CLEANUP_SCHEDULE", "0 * * * *"),
            ("MISFIRE_WINDOW_SECS", "3600"),
            ("JOB_MAX_ATTEMPTS", "2"),
            ("JOB_RETRY_DELAY_SECS", "10"),
        ],
    );
    let mut a = ServerProcess::start(&vars).await;
    let first = eventually(Duration::from_secs(20), "attempt 1 failed", || async {
        audio_cleanup_runs(&db)
            .await
            .into_iter()
            .find(|r| r.attempt == 1 && r.status == "failed")
    })
    .await;
    let b = ServerProcess::start(&vars).await;
    let (status, _) = a.terminate(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0));

    let all = eventually(
        Duration::from_secs(40),
        "attempt 2 on the other server",
        || async {
            let all = audio_cleanup_runs(&db).await;
            all.iter()
                .any(|r| r.attempt == 2 && r.status != "running")
                .then_some(all)
        },
    )
    .await;
    let next = all.iter().find(|r| r.attempt == 2).unwrap();
    assert_eq!(next.scheduled_for, first.scheduled_for, "the same slot");
    assert_ne!(next.worker_id, first.worker_id, "{all:#?}");
    // Once: the last attempt allowed, and no more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = audio_cleanup_runs(&db).await;
    let attempts: Vec<i32> = all.iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, vec![1, 2], "{all:#?}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_the_latest_slot_is_caught_up_and_older_ones_are_recorded_as_skipped() {
    let db = TestDatabase::new().await;
    // The last run was ten minutes ago on a per-minute schedule.
    {
        let mut conn = db.connect().await;
        diesel::sql_query(
            "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, \
             scheduled_for, triggered_by) \
             VALUES ('audio_cleanup', 'success', date_trunc('minute', now()) - interval '10 minutes', \
                     date_trunc('minute', now()) - interval '10 minutes', 5, \
                     date_trunc('minute', now()) - interval '10 minutes', 'schedule')",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let mock = storage(Duration::ZERO).await;
    let uri = mock.uri();
    let _server = ServerProcess::start(&with(
        base_vars(&db, &uri),
        &[
            ("AUDIO_CLEANUP_SCHEDULE", "* * * * *"),
            ("MISFIRE_WINDOW_SECS", "300"),
        ],
    ))
    .await;
    let all = eventually(Duration::from_secs(20), "the catch-up run", || async {
        let all = audio_cleanup_runs(&db).await;
        all.iter()
            .any(|r| r.triggered_by == "catch_up" && r.status == "success")
            .then_some(all)
    })
    .await;
    let skipped: Vec<&Execution> = all
        .iter()
        .filter(|r| {
            r.error_message
                .as_deref()
                .is_some_and(|m| m.starts_with("skipped:"))
        })
        .collect();
    assert_eq!(skipped.len(), 1, "{all:#?}");
    let message = skipped[0].error_message.as_deref().unwrap();
    assert!(
        message.contains("9 slots") && message.contains("no server was running"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_survives_a_postgresql_restart_and_the_next_slot_runs() {
    // A PostgreSQL of this test's own, so restarting it disturbs no other test.
    let cluster = db::testing::TempCluster::start(&[], &[]);
    let url = cluster.url("jobs");
    let mock = storage(Duration::ZERO).await;
    let uri = mock.uri();
    let vars = vec![
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_POOL_SIZE", "3"),
        ("SUPABASE_URL", uri.as_str()),
        ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY),
        ("AUDIO_CLEANUP_SCHEDULE", "*/2 * * * * *"),
        ("COST_UPDATE_SCHEDULE", "0 0 1 1 *"),
        ("SCHEDULER_TICK_MS", "200"),
        ("MISFIRE_WINDOW_SECS", "60"),
    ];
    let mut server = ServerProcess::start(&vars).await;
    let target = db::ConnectTarget::parse(&url).unwrap();
    let count = || {
        let target = target.clone();
        async move {
            let mut conn = target.connect().await.ok()?;
            #[derive(diesel::QueryableByName)]
            struct N {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let n: N = diesel::sql_query(
                "SELECT count(*) AS n FROM job_executions WHERE status = 'success' AND started_at > now() - interval '1 hour'",
            )
            .get_result(&mut conn)
            .await
            .ok()?;
            Some(n.n)
        }
    };
    let before = eventually(Duration::from_secs(20), "a first run", || async {
        count().await.filter(|n| *n > 0)
    })
    .await;
    cluster.stop();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        server.is_alive(),
        "the server died with the database:\n{}",
        server.log()
    );
    cluster.start_server();
    eventually(
        Duration::from_secs(30),
        "a run after the restart",
        || async { count().await.filter(|n| *n > before + 1) },
    )
    .await;
    assert!(server.is_alive());
    let log = server.log();
    let outage_lines = log.matches("execution log is unreachable").count();
    assert!(
        outage_lines <= 1,
        "the outage was logged {outage_lines} times:\n{log}"
    );
}
