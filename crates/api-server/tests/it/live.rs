//! Live updates across servers (contract §7.4): two real server processes on one real
//! PostgreSQL, the change feed between them, the event stream, and what happens when the
//! listener's session is lost.
//!
//! A PostgreSQL restart is simulated by terminating the listeners' backends with
//! `pg_terminate_backend` (the shared test cluster cannot be restarted): to a server it
//! looks the same, its session ends under it.

use std::time::{Duration, Instant};

use db::testing::TestDatabase;
use serde_json::{json, Value};

use crate::support::server::{eventually, free_port, ServerProcess};
use crate::support::storage::storage;
use crate::support::{seed_old_audio, server_vars, sql, with};

const TOKEN: &str = "live-admin-token-0123456789";
/// Generous: these are conditions awaited, not timings asserted (BENCHMARKS.md has those).
const LIMIT: Duration = Duration::from_secs(20);

fn vars<'a>(
    db: &'a TestDatabase,
    storage: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    with(
        with(server_vars(db, storage), &[("ADMIN_TOKEN", TOKEN)]),
        extra,
    )
}

/// A database, a Storage stand-in answering at once, and two servers on them: A, and B
/// with `b_extra` on top.
async fn two_servers(
    b_extra: &[(&str, &str)],
) -> (
    TestDatabase,
    wiremock::MockServer,
    ServerProcess,
    ServerProcess,
) {
    let (db, mock, a) = one_server(&[]).await;
    let b = ServerProcess::start(&vars(&db, &mock.uri(), b_extra)).await;
    (db, mock, a, b)
}

/// A database, a Storage stand-in answering at once, and a server with `extra` on top.
async fn one_server(extra: &[(&str, &str)]) -> (TestDatabase, wiremock::MockServer, ServerProcess) {
    let db = TestDatabase::new().await;
    let mock = storage(Duration::ZERO).await;
    let server = ServerProcess::start(&vars(&db, &mock.uri(), extra)).await;
    (db, mock, server)
}

/// An authenticated request for a stream, whatever the answer.
async fn ask_stream(server: &ServerProcess) -> reqwest::Response {
    reqwest::Client::new()
        .get(server.url("/internal/api/v1/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
}

/// The status of `job` in `/jobs/status` of `server`, with its `started_at`.
async fn status_of(server: &ServerProcess, job: &str) -> Option<(String, String)> {
    let (_, body) = server.get("/internal/api/v1/jobs/status").await;
    body["data"].as_array()?.iter().find_map(|e| {
        (e["job_name"] == job).then(|| {
            (
                e["status"].as_str().unwrap_or_default().to_owned(),
                e["started_at"].as_str().unwrap_or_default().to_owned(),
            )
        })
    })
}

/// One server-sent event, or a comment line.
#[derive(Debug, Default, Clone)]
struct Event {
    id: Option<String>,
    event: Option<String>,
    data: String,
    comment: Option<String>,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// A `GET /events` stream being read.
struct Stream {
    resp: reqwest::Response,
    buffer: String,
    seen: Vec<Event>,
}

enum Next {
    Event(Event),
    /// The server ended the stream cleanly.
    End,
}

impl Stream {
    async fn open(server: &ServerProcess, last_event_id: Option<&str>) -> Self {
        let mut req = reqwest::Client::new()
            .get(server.url("/internal/api/v1/events"))
            .bearer_auth(TOKEN);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.headers());
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            resp,
            buffer: String::new(),
            seen: Vec::new(),
        }
    }

    /// A stream whose first `job` event (the snapshot's start) has been read.
    async fn past_snapshot(server: &ServerProcess) -> Self {
        let mut stream = Self::open(server, None).await;
        stream
            .until("the snapshot", |e| e.event.as_deref() == Some("job"))
            .await;
        stream
    }

    /// The next event or comment, within `limit`.
    async fn next(&mut self, limit: Duration) -> Next {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..at + 2).collect();
                let mut event = Event::default();
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        event.comment = Some(c.trim().to_owned());
                    } else if let Some((field, value)) = line.split_once(':') {
                        let value = value.strip_prefix(' ').unwrap_or(value);
                        match field {
                            "id" => event.id = Some(value.to_owned()),
                            "event" => event.event = Some(value.to_owned()),
                            "data" => event.data.push_str(value),
                            _ => {}
                        }
                    }
                }
                self.seen.push(event.clone());
                return Next::Event(event);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Err(_) => panic!("no event within {limit:?}; seen so far: {:#?}", self.seen),
                Ok(Err(e)) => panic!("the stream broke: {e}"),
                Ok(Ok(None)) => return Next::End,
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
            }
        }
    }

    /// Reads until an event satisfies `want`.
    async fn until(&mut self, what: &str, want: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}: {:#?}",
                self.seen
            );
            match self.next(left).await {
                Next::Event(e) if want(&e) => return e,
                Next::Event(_) => {}
                Next::End => panic!("the stream ended while waiting for {what}"),
            }
        }
    }
}

fn is_execution(e: &Event, id: i64, status: &str) -> bool {
    e.event.as_deref() == Some("execution") && {
        let v = e.json();
        v["id"] == id && v["status"] == status
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_on_a_shows_on_bs_stream_status_and_job_list() {
    let db = TestDatabase::new().await;
    seed_old_audio(&db, 1).await;
    let mock = storage(Duration::from_secs(3)).await;
    let uri = mock.uri();
    let a = ServerProcess::start(&vars(&db, &uri, &[])).await;
    let b = ServerProcess::start(&vars(&db, &uri, &[])).await;

    let mut stream = Stream::open(&b, None).await;
    // A fresh stream starts with every job as it is now.
    let first = stream
        .until("the snapshot", |e| e.event.as_deref() == Some("job"))
        .await;
    assert_eq!(first.json()["job_name"], "audio_cleanup");
    assert_eq!(first.json()["latest_execution"], Value::Null);

    let id = a.start_run("audio_cleanup").await;
    let started = Instant::now();
    let running = stream
        .until("the run on B's stream", |e| is_execution(e, id, "running"))
        .await;
    let on_stream = started.elapsed();
    assert_eq!(running.json()["job_name"], "audio_cleanup");
    assert_eq!(running.json()["trigger"], "manual");
    // Its job's entry changed with it.
    let job = stream
        .until("the job event", |e| e.event.as_deref() == Some("job"))
        .await;
    assert_eq!(job.json()["latest_execution"]["id"], id);
    assert_eq!(job.json()["latest_execution"]["status"], "running");
    eventually(LIMIT, "the run in B's /jobs/status", || async {
        status_of(&b, "audio_cleanup")
            .await
            .filter(|(s, _)| s == "running")
    })
    .await;
    println!(
        "A's run on B's stream after {on_stream:?}, in B's status after {:?}",
        started.elapsed()
    );
    let (_, jobs) = b.get("/internal/api/v1/jobs").await;
    assert_eq!(jobs["data"][0]["latest_execution"]["id"], id);

    // And its end.
    stream
        .until("the end of the run on B's stream", |e| {
            is_execution(e, id, "success")
        })
        .await;
    eventually(LIMIT, "the success in B's /jobs/status", || async {
        status_of(&b, "audio_cleanup")
            .await
            .filter(|(s, _)| s == "success")
    })
    .await;
    // A row that is not any job's latest is announced but changes no job.
    sql(
        &db,
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms) \
         VALUES ('audio_cleanup', 'failed', now() - interval '10 days', now() - interval '10 days', 5)",
    )
    .await;
    stream
        .until("the old row's event", |e| {
            e.event.as_deref() == Some("execution") && e.json()["status"] == "failed"
        })
        .await;
    assert_eq!(
        status_of(&b, "audio_cleanup").await.unwrap().0,
        "success",
        "an older row took the latest's place"
    );
    // Nor does a newer skipped slot: it is never the latest execution.
    sql(
        &db,
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, error_message) \
         VALUES ('audio_cleanup', 'skipped', now() + interval '1 minute', now() + interval '1 minute', 0, 'skipped: the job was paused')",
    )
    .await;
    stream
        .until("the skipped slot's event", |e| {
            e.event.as_deref() == Some("execution") && e.json()["status"] == "skipped"
        })
        .await;
    assert_eq!(
        status_of(&b, "audio_cleanup").await.unwrap().0,
        "success",
        "a skipped slot took the latest's place"
    );
    let (_, jobs) = b.get("/internal/api/v1/jobs").await;
    assert_eq!(jobs["data"][0]["latest_execution"]["id"], id);
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_on_a_shows_in_bs_job_list_and_stream() {
    let (_db, _mock, a, b) = two_servers(&[]).await;
    let mut stream = Stream::past_snapshot(&b).await;
    let (_, jobs) = b.get("/internal/api/v1/jobs").await;
    assert_eq!(jobs["data"][0]["paused"], false);

    let (status, body) = a
        .post(
            "/internal/api/v1/jobs/audio_cleanup/pause",
            Some(json!({"reason": "storage maintenance"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let started = Instant::now();
    let paused = stream
        .until("the pause on B's stream", |e| {
            e.event.as_deref() == Some("job") && e.json()["paused"] == true
        })
        .await;
    assert_eq!(paused.json()["job_name"], "audio_cleanup");
    assert_eq!(paused.json()["pause_reason"], "storage maintenance");
    assert_eq!(paused.json()["paused_by"], "admin");
    let job = eventually(LIMIT, "the pause in B's /jobs", || async {
        let (_, jobs) = b.get("/internal/api/v1/jobs").await;
        let job = jobs["data"][0].clone();
        (job["paused"] == true).then_some(job)
    })
    .await;
    println!("A's pause in B's /jobs after {:?}", started.elapsed());
    assert_eq!(job["pause_reason"], "storage maintenance");
    assert!(job["paused_at"].is_string(), "{job}");
    // The backlog fields come along from B's own measurement.
    assert!(job.get("backlog").is_some(), "{job}");
    assert!(job.get("backlog_capped").is_some(), "{job}");

    let (status, body) = a
        .post("/internal/api/v1/jobs/audio_cleanup/resume", None)
        .await;
    assert_eq!(status, 200, "{body}");
    stream
        .until("the resume on B's stream", |e| {
            e.event.as_deref() == Some("job") && e.json()["paused"] == false
        })
        .await;
    eventually(LIMIT, "the resume in B's /jobs", || async {
        let (_, jobs) = b.get("/internal/api/v1/jobs").await;
        (jobs["data"][0]["paused"] == false).then_some(())
    })
    .await;
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requests_holding_every_connection_do_not_hold_back_bs_live_view() {
    use diesel_async::SimpleAsyncConnection;
    let (db, _mock, a, b) = two_servers(&[("DATABASE_POOL_SIZE", "1")]).await;
    let mut stream = Stream::past_snapshot(&b).await;

    // A slow API request on B holds its only API connection: it waits on a lock.
    let mut locker = db.connect().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE job_workers IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let base = b.url("/internal/api/v1/workers");
    let slow = tokio::spawn(async move {
        reqwest::Client::new()
            .get(base)
            .bearer_auth(TOKEN)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (status, body) = a
        .post("/internal/api/v1/jobs/cost_update/pause", None)
        .await;
    assert_eq!(status, 200, "{body}");
    // Well before the lock goes (and the 30 s re-read would repair a missed change).
    let waited = Instant::now();
    stream
        .until("the pause on B's stream while its API pool is busy", |e| {
            e.event.as_deref() == Some("job")
                && e.json()["job_name"] == "cost_update"
                && e.json()["paused"] == true
        })
        .await;
    assert!(
        waited.elapsed() < Duration::from_secs(8),
        "{:?}",
        waited.elapsed()
    );
    assert!(
        !slow.is_finished(),
        "the slow request was not holding the pool"
    );

    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(slow.await.unwrap().unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_moved_to_another_job_or_deleted_by_hand_leaves_its_jobs_entry_at_once() {
    // The full re-read is far off: only the feed can bring the change in time.
    let (db, _mock, b) = one_server(&[("LIVE_RESYNC_SECS", "3600")]).await;
    let latest_id = |job: &'static str| {
        let b = &b;
        async move { b.job(job).await["latest_execution"]["id"].as_i64() }
    };
    sql(
        &db,
        "INSERT INTO job_executions (id, job_name, status, started_at, completed_at, duration_ms, stats) \
         VALUES (6, 'audio_cleanup', 'success', now(), now(), 5, '{}')",
    )
    .await;
    eventually(LIMIT, "row 6 as audio_cleanup's latest", || async {
        (latest_id("audio_cleanup").await == Some(6)).then_some(())
    })
    .await;

    sql(
        &db,
        "UPDATE job_executions SET job_name = 'cost_update' WHERE id = 6",
    )
    .await;
    let moved = Instant::now();
    eventually(LIMIT, "row 6 moved to cost_update", || async {
        (latest_id("audio_cleanup").await.is_none() && latest_id("cost_update").await == Some(6))
            .then_some(())
    })
    .await;
    assert!(
        moved.elapsed() < Duration::from_secs(10),
        "{:?}",
        moved.elapsed()
    );

    sql(&db, "DELETE FROM job_executions WHERE id = 6").await;
    let deleted = Instant::now();
    eventually(LIMIT, "row 6 gone from cost_update", || async {
        latest_id("cost_update").await.is_none().then_some(())
    })
    .await;
    assert!(
        deleted.elapsed() < Duration::from_secs(10),
        "{:?}",
        deleted.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_backlog_count_reaches_the_stream_as_a_job_event() {
    let (db, _mock, server) = one_server(&[("BACKLOG_REFRESH_SECS", "1")]).await;
    let mut stream = Stream::past_snapshot(&server).await;
    seed_old_audio(&db, 7).await;
    let event = stream
        .until("audio_cleanup's new backlog", |e| {
            e.event.as_deref() == Some("job")
                && e.json()["job_name"] == "audio_cleanup"
                && e.json()["backlog"] == 7
        })
        .await;
    // The same entry as GET /jobs gives.
    let listed = server.job("audio_cleanup").await;
    assert_eq!(listed["backlog"], event.json()["backlog"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_listeners_session_is_lost_b_reconnects_and_converges() {
    let db = TestDatabase::new().await;
    let mock = storage(Duration::ZERO).await;
    let uri = mock.uri();
    // No periodic re-read during the test: only the reconnection can catch B up.
    let quiet = [("LIVE_RESYNC_SECS", "3600")];
    let _a = ServerProcess::start(&vars(&db, &uri, &quiet)).await;
    let b = ServerProcess::start(&vars(&db, &uri, &quiet)).await;
    let listeners = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                     AND application_name = 'background-jobs listener'";
    eventually(LIMIT, "both listeners", || async {
        (sql(&db, listeners).await == 2).then_some(())
    })
    .await;

    // The simulated restart, and a write while nobody listens.
    let killed = sql(
        &db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'background-jobs listener'",
    )
    .await;
    assert_eq!(killed, 2);
    sql(
        &db,
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, stats) \
         VALUES ('cost_update', 'success', now(), now(), 12, '{\"updated\": 7}')",
    )
    .await;
    eventually(
        LIMIT,
        "B to show the write made while it was not listening",
        || async {
            status_of(&b, "cost_update")
                .await
                .filter(|(s, _)| s == "success")
        },
    )
    .await;
    eventually(LIMIT, "both listeners back", || async {
        (sql(&db, listeners).await == 2).then_some(())
    })
    .await;
    assert!(
        b.log().contains("lost the listener's session"),
        "{}",
        b.log()
    );

    // Listening again: a change arrives by notification, long before any re-read.
    let mut stream = Stream::open(&b, None).await;
    sql(
        &db,
        "UPDATE job_executions SET status = 'failed', error_message = 'changed after the restart' \
         WHERE job_name = 'cost_update'",
    )
    .await;
    stream
        .until("the change after reconnecting", |e| {
            e.event.as_deref() == Some("execution") && e.json()["status"] == "failed"
        })
        .await;
    eventually(LIMIT, "B's status after reconnecting", || async {
        status_of(&b, "cost_update")
            .await
            .filter(|(s, _)| s == "failed")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_gets_heartbeats_and_ends_cleanly_when_the_server_stops() {
    let db = TestDatabase::new().await;
    let mock = storage(Duration::ZERO).await;
    let uri = mock.uri();
    let mut server =
        ServerProcess::start(&vars(&db, &uri, &[("EVENTS_HEARTBEAT_SECS", "1")])).await;
    let mut stream = Stream::open(&server, None).await;
    stream
        .until("a heartbeat", |e| e.comment.as_deref() == Some("heartbeat"))
        .await;
    let (exit, _) = server.terminate(LIMIT).await;
    assert_eq!(exit.code(), Some(0));
    // Everything the server sent is read, and then the stream ends without an error.
    loop {
        match stream.next(LIMIT).await {
            Next::End => break,
            Next::Event(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_streams_turned_off_a_stream_is_refused_without_a_retry_time() {
    let db = TestDatabase::new().await;
    let mock = storage(Duration::ZERO).await;
    let uri = mock.uri();
    let server = ServerProcess::start(&vars(&db, &uri, &[("EVENTS_MAX_STREAMS", "0")])).await;
    let resp = ask_stream(&server).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "events_disabled", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_need_the_token_are_capped_and_resume_from_last_event_id() {
    let db = TestDatabase::new().await;
    let mock = storage(Duration::ZERO).await;
    let uri = mock.uri();
    let server = ServerProcess::start(&vars(&db, &uri, &[("EVENTS_MAX_STREAMS", "1")])).await;

    let resp = reqwest::get(server.url("/internal/api/v1/events"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let mut stream = Stream::open(&server, None).await;
    // One job event per job; only the last carries an id.
    let first = stream
        .until("the snapshot", |e| e.event.as_deref() == Some("job"))
        .await;
    assert_eq!(first.id, None, "{first:?}");
    let snapshot = stream
        .until("the snapshot's end", |e| e.event.as_deref() == Some("job"))
        .await;
    let resp = ask_stream(&server).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams", "{body}");

    // Gone while a run happens; back with the id of the last event it had.
    drop(stream);
    let id = server.start_run("audio_cleanup").await;
    let (ended, started_at) = eventually(LIMIT, "the run's end", || async {
        status_of(&server, "audio_cleanup")
            .await
            .filter(|(s, _)| s != "running")
    })
    .await;
    assert!(!started_at.is_empty());
    let last = snapshot.id.expect("events have ids");
    let mut resumed = eventually(LIMIT, "the stream's place to be free", || async {
        let resp = reqwest::Client::new()
            .get(server.url("/internal/api/v1/events"))
            .bearer_auth(TOKEN)
            .header("Last-Event-ID", &last)
            .send()
            .await
            .ok()?;
        (resp.status() == 200).then_some(resp)
    })
    .await;
    // What it missed, in order, starting with the run's start: no snapshot first (a
    // replayed event has an id; all but the last of a snapshot's have none). A `job` event
    // for the first backlog measurement may come before it.
    let mut buffer = String::new();
    let deadline = Instant::now() + LIMIT;
    while !buffer.contains("event: execution") {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, resumed.chunk())
            .await
            .expect("an event")
            .unwrap()
            .expect("more of the stream");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events: Vec<&str> = buffer
        .split("\n\n")
        .filter(|b| b.contains("event: "))
        .collect();
    assert!(events.iter().all(|b| b.contains("id: ")), "{buffer}");
    let first = events
        .iter()
        .find(|b| b.contains("event: execution"))
        .unwrap();
    assert!(first.contains(&format!("\"id\":{id},")), "{buffer}");
    // The feed re-reads a row when told of a change, so a run that ended before its start
    // was read is announced once, ended; otherwise its start comes first.
    assert!(
        first.contains("\"status\":\"running\"")
            || first.contains(&format!("\"status\":{ended:?}")),
        "{buffer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_places_of_clients_that_left_are_free_at_once() {
    let db = TestDatabase::new().await;
    let mock = storage(Duration::ZERO).await;
    let uri = mock.uri();
    // Heartbeats far apart: without a probe, a place would come back only after two.
    let server = ServerProcess::start(&vars(
        &db,
        &uri,
        &[("EVENTS_MAX_STREAMS", "3"), ("EVENTS_HEARTBEAT_SECS", "60")],
    ))
    .await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let stream = Stream::past_snapshot(&server).await;
        streams.push(stream);
    }
    // Every tab reloads at once: the old connections close, the new ones come.
    drop(streams);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut reopened = Vec::new();
    for _ in 0..3 {
        reopened.push(Stream::open(&server, None).await);
    }
    // And the cap still holds against live clients.
    let resp = ask_stream(&server).await;
    assert_eq!(resp.status(), 503);
    drop(reopened);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_usable_listener_the_server_polls_and_says_so() {
    let db = TestDatabase::new().await;
    let mock = storage(Duration::ZERO).await;
    let uri = mock.uri();
    let dead = format!("postgres://postgres@127.0.0.1:{}/nowhere", free_port());
    let off = ServerProcess::start(&vars(&db, &uri, &[("DATABASE_LISTEN_URL", "off")])).await;
    let broken =
        ServerProcess::start(&vars(&db, &uri, &[("DATABASE_LISTEN_URL", dead.as_str())])).await;
    sql(
        &db,
        "INSERT INTO job_executions (job_name, status, started_at, stats) \
         VALUES ('audio_cleanup', 'running', now(), '{\"deleted\": 1}')",
    )
    .await;
    for server in [&off, &broken] {
        eventually(LIMIT, "the write, by polling", || async {
            status_of(server, "audio_cleanup")
                .await
                .filter(|(s, _)| s == "running")
        })
        .await;
    }
    assert!(
        off.log()
            .contains("DATABASE_LISTEN_URL=off: polling the tables"),
        "{}",
        off.log()
    );
    let log = broken.log();
    assert!(log.contains("cannot listen on 127.0.0.1:"), "{log}");
    assert!(log.contains("polling the tables every 1s"), "{log}");
    // Tried again after 1, 2 and 4 s: said once, not at each try.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let log = broken.log();
    assert_eq!(log.matches("cannot listen on").count(), 1, "{log}");
}
