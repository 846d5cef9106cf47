//! The `audio_cleanup` job against a real PostgreSQL database and a local Supabase Storage
//! that answers exactly like the real one (HTTP 400 carrying the real status in the body,
//! `200 []` for names that do not exist, full object records for deleted ones).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_server::config::{Config, Vars};
use api_server::jobs::AudioCleanupJob;
use db::testing::TestDatabase;
use diesel::sql_types::{Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use jobs_core::{
    Job, JobContext, RegisteredJob, RunRequest, Runner, RunnerSettings, Schedule, Stats, Status,
    Trigger,
};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::sql;

/// A legacy service-role key: a JWT whose payload says `{"role": "service_role"}` (the
/// signature is Storage's business, not the client's).
const KEY: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZSIsInJvbGUiOiJzZXJ2aWNlX3JvbGUifQ.c2VydmljZS1yb2xlLWtleS10aGF0LW11c3QtbmV2ZXItbGVhaw";
const JSON: &str = "application/json; charset=utf-8";
const OLD: &str = "40 days";
const YOUNG: &str = "1 day";

// ---------------------------------------------------------------------------------------
// A Storage fake in the real server's shapes.

/// The objects a fake bucket holds; a bulk delete removes and returns the ones it has.
#[derive(Clone, Default)]
struct Objects(Arc<Mutex<HashSet<String>>>);

impl Objects {
    fn with<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        Self(Arc::new(Mutex::new(
            names.into_iter().map(Into::into).collect(),
        )))
    }
    fn remaining(&self) -> BTreeSet<String> {
        self.0.lock().unwrap().iter().cloned().collect()
    }
}

/// Answers `DELETE /storage/v1/object/{bucket}` like Storage: the deleted objects with every
/// field, names that do not exist silently left out.
struct BulkDelete {
    bucket: &'static str,
    objects: Objects,
    delay: Duration,
}

impl Respond for BulkDelete {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Ok(body) = request.body_json::<Value>() else {
            return storage_error(400, "400", "InvalidRequest", "Error", "body must be JSON");
        };
        let Some(prefixes) = body["prefixes"].as_array() else {
            return storage_error(
                400,
                "400",
                "InvalidRequest",
                "Error",
                "body must have required property 'prefixes'",
            );
        };
        let mut objects = self.objects.0.lock().unwrap();
        let deleted: Vec<Value> = prefixes
            .iter()
            .filter_map(Value::as_str)
            .filter(|name| objects.remove(*name))
            .map(|name| deleted_object(self.bucket, name))
            .collect();
        json_response(200, &Value::Array(deleted)).set_delay(self.delay)
    }
}

fn json_response(status: u16, body: &Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_string(), JSON)
}

fn storage_error(
    http: u16,
    status: &str,
    code: &str,
    error: &str,
    message: &str,
) -> ResponseTemplate {
    json_response(
        http,
        &json!({ "statusCode": status, "code": code, "error": error, "message": message }),
    )
}

fn deleted_object(bucket: &str, name: &str) -> Value {
    json!({
        "bucket_id": bucket,
        "name": name,
        "owner": "",
        "owner_id": "",
        "version": "0f0c9c7e-4a3b-4a51-9d39-6a1c5a8d2e11",
        "id": "5b8f1c1e-7d4a-4a9e-9a57-2f1f6d0c8e42",
        "updated_at": "2025-06-01T10:00:00.000Z",
        "created_at": "2025-06-01T10:00:00.000Z",
        "last_accessed_at": "2025-06-01T10:00:00.000Z",
        "metadata": {
            "eTag": "\"c4ca4238a0b923820dcc509a6f75849b\"",
            "size": 48213,
            "mimetype": "audio/webm",
            "cacheControl": "max-age=3600",
            "lastModified": "2025-06-01T10:00:00.000Z",
            "contentLength": 48213,
            "httpStatusCode": 200
        },
        "user_metadata": {}
    })
}

fn bucket_record(id: &str) -> Value {
    json!({
        "id": id, "name": id, "owner": "", "owner_id": "", "public": false, "type": "STANDARD",
        "file_size_limit": null, "allowed_mime_types": null,
        "created_at": "2025-01-01T00:00:00.000Z", "updated_at": "2025-01-01T00:00:00.000Z"
    })
}

fn no_such_bucket() -> ResponseTemplate {
    storage_error(
        400,
        "404",
        "NoSuchBucket",
        "Bucket not found",
        "Bucket not found",
    )
}

fn access_denied() -> ResponseTemplate {
    storage_error(
        400,
        "403",
        "AccessDenied",
        "Unauthorized",
        "signature verification failed",
    )
}

fn internal_error() -> ResponseTemplate {
    storage_error(
        500,
        "500",
        "InternalError",
        "internal",
        "Internal Server Error",
    )
}

/// A Storage with an `audio` bucket holding `objects` and no `ghost` bucket (whose bulk
/// deletes answer `200 []`, as the real server does for a missing bucket).
async fn storage(objects: &Objects, delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/storage/v1/bucket/audio"))
        .respond_with(json_response(200, &bucket_record("audio")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/storage/v1/bucket/ghost"))
        .respond_with(no_such_bucket())
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .respond_with(BulkDelete {
            bucket: "audio",
            objects: objects.clone(),
            delay,
        })
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/ghost"))
        .respond_with(json_response(200, &json!([])))
        .mount(&server)
        .await;
    server
}

/// Every request Storage received, as `(method, path)`.
async fn requests(server: &MockServer) -> Vec<(String, String)> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| (r.method.to_string(), r.url.path().to_owned()))
        .collect()
}

/// The names of every bulk delete sent for `bucket`, one list per call.
async fn delete_calls(server: &MockServer, bucket: &str) -> Vec<Vec<String>> {
    let route = format!("/storage/v1/object/{bucket}");
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "DELETE" && r.url.path() == route)
        .map(|r| {
            let body: Value = r.body_json().unwrap();
            body["prefixes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

async fn count_requests(server: &MockServer, verb: &str, route: &str) -> usize {
    requests(server)
        .await
        .iter()
        .filter(|(m, p)| m == verb && p == route)
        .count()
}

// ---------------------------------------------------------------------------------------
// The database side.

async fn seed(db: &TestDatabase, age: &str, audio_file_path: Option<&str>) {
    let mut conn = db.connect().await;
    diesel::sql_query(
        "INSERT INTO transcriptions (created_at, audio_file_path) VALUES (now() - $1::interval, $2)",
    )
    .bind::<Text, _>(age)
    .bind::<Nullable<Text>, _>(audio_file_path)
    .execute(&mut conn)
    .await
    .unwrap();
}

async fn seed_many(db: &TestDatabase, age: &str, paths: &[String]) {
    for p in paths {
        seed(db, age, Some(p)).await;
    }
}

#[derive(diesel::QueryableByName)]
struct PathRow {
    #[diesel(sql_type = Nullable<Text>)]
    audio_file_path: Option<String>,
}

/// The paths of the rows whose `audio_deleted_at` is set.
async fn marked(db: &TestDatabase) -> BTreeSet<String> {
    let mut conn = db.connect().await;
    let rows: Vec<PathRow> = diesel::sql_query(
        "SELECT audio_file_path FROM transcriptions WHERE audio_deleted_at IS NOT NULL",
    )
    .load(&mut conn)
    .await
    .unwrap();
    rows.into_iter()
        .map(|r| r.audio_file_path.unwrap_or_default())
        .collect()
}

// ---------------------------------------------------------------------------------------
// The job.

fn job(server: &MockServer, db: &TestDatabase, extra: &[(&str, &str)]) -> AudioCleanupJob {
    let uri = server.uri();
    let mut pairs: Vec<(&str, &str)> = vec![
        ("SUPABASE_URL", &uri),
        ("SUPABASE_SERVICE_ROLE_KEY", KEY),
        ("SUPABASE_BACKOFF_MS", "1"),
        ("SUPABASE_MAX_BACKOFF_MS", "5"),
        ("SUPABASE_REQUEST_TIMEOUT_SECS", "10"),
    ];
    pairs.extend_from_slice(extra);
    let config = Config::from_vars(Vars::from_pairs(pairs)).unwrap();
    AudioCleanupJob::from_config(&config, db.pool()).unwrap()
}

async fn run(job: &AudioCleanupJob, dry_run: bool) -> Result<Stats, jobs_core::JobError> {
    job.run(&JobContext::new(1, Trigger::Manual, dry_run)).await
}

/// A run over rows naming the missing `ghost` bucket: it does its work elsewhere, then
/// fails naming the bucket, with the counters it reached.
async fn run_with_ghost(job: &AudioCleanupJob, dry_run: bool) -> Stats {
    let error = run(job, dry_run)
        .await
        .expect_err("a referenced bucket that is missing fails the run");
    assert!(
        error.message.contains("no bucket \"ghost\""),
        "{}",
        error.message
    );
    error.stats.expect("the counters reached")
}

/// The row counters (the live `concurrency_limit` is not one).
fn counters(stats: &Stats) -> BTreeMap<String, i64> {
    stats
        .iter()
        .filter(|(k, _)| *k != "concurrency_limit")
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

fn expected(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    let mut all: BTreeMap<String, i64> = [
        "deleted",
        "failed",
        "already_absent",
        "would_delete",
        "still_referenced",
        "invalid_path",
        "bucket_missing",
        "storage_error",
        "considered",
        "marked",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), 0))
    .collect();
    for (k, v) in pairs {
        all.insert((*k).to_owned(), *v);
    }
    all
}

/// The identities the stats promise.
fn assert_stats_add_up(stats: &Stats) {
    let g = |k| stats.get(k);
    assert_eq!(
        g("considered"),
        g("deleted")
            + g("already_absent")
            + g("would_delete")
            + g("still_referenced")
            + g("failed"),
        "{stats:?}"
    );
    assert_eq!(
        g("failed"),
        g("invalid_path") + g("bucket_missing") + g("storage_error"),
        "{stats:?}"
    );
    assert!(
        g("marked") <= g("deleted") + g("already_absent"),
        "{stats:?}"
    );
}

fn names(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------
// A realistic mixed table.

/// Old rows in every accepted form, garbage, a missing bucket, young rows, a row already
/// marked and one without audio. Returns the paths that must end up marked.
async fn seed_mixed(db: &TestDatabase, uri: &str) -> BTreeSet<String> {
    let confirmed = vec![
        "audio/u1/a.webm".to_owned(),
        format!("{uri}/storage/v1/object/public/audio/u1/b.webm"),
        format!(
            "{uri}/storage/v1/object/sign/audio/u2/c%20d.webm?token=eyJhbGciOiJIUzI1NiJ9.e30.sig"
        ),
        format!("{uri}/storage/v1/object/authenticated/audio/u2/e.webm"),
        format!("{uri}/storage/v1/object/audio/u3/f.webm?download=1"),
        format!("{uri}/storage/v1/object/public/audio/u6/it%27s%20%281%29%20%26%20100.webm"),
        "audio/u4/gone.webm".to_owned(),
        "audio/u5/shared.webm".to_owned(),
        format!("{uri}/storage/v1/object/public/audio/u5/shared.webm"),
    ];
    seed_many(db, OLD, &confirmed).await;
    let garbage = [
        "../x",
        "",
        "https://evil.example.com/storage/v1/object/public/audio/u1/a.webm",
        "audio/u7/../../secret.webm",
    ];
    for g in garbage {
        seed(db, OLD, Some(g)).await;
    }
    seed(db, OLD, Some("ghost/u1/x.webm")).await;
    seed(db, YOUNG, Some("audio/young/y.webm")).await;
    // Just inside the retention period by the database's clock.
    seed(db, "29 days 23 hours", Some("audio/young/edge.webm")).await;
    seed(db, OLD, None).await;
    sql(
        db,
        "INSERT INTO transcriptions (created_at, audio_file_path, audio_deleted_at) \
         VALUES (now() - interval '90 days', 'audio/done/z.webm', '2026-01-01T00:00:00Z')",
    )
    .await;

    let mut marked: BTreeSet<String> = confirmed.into_iter().collect();
    marked.insert("audio/done/z.webm".to_owned());
    marked
}

fn mixed_objects() -> Objects {
    Objects::with([
        "u1/a.webm",
        "u1/b.webm",
        "u2/c d.webm",
        "u2/e.webm",
        "u3/f.webm",
        "u6/it's (1) & 100.webm",
        "u5/shared.webm",
        "young/y.webm",
        "young/edge.webm",
        "done/z.webm",
        "u7/secret.webm",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_audio_is_deleted_and_only_rows_storage_confirmed_are_marked() {
    let db = TestDatabase::new().await;
    let objects = mixed_objects();
    let server = storage(&objects, Duration::ZERO).await;
    let must_be_marked = seed_mixed(&db, &server.uri()).await;

    let stats = run_with_ghost(&job(&server, &db, &[]), false).await;

    // Exactly the old rows' objects were asked for, each once, and only in `audio`.
    let calls = delete_calls(&server, "audio").await;
    let sent: Vec<String> = calls.iter().flatten().cloned().collect();
    let sent_set: BTreeSet<String> = sent.iter().cloned().collect();
    assert_eq!(
        sent.len(),
        sent_set.len(),
        "a name was sent twice: {sent:?}"
    );
    assert_eq!(
        sent_set,
        names(&[
            "u1/a.webm",
            "u1/b.webm",
            "u2/c d.webm",
            "u2/e.webm",
            "u3/f.webm",
            "u6/it's (1) & 100.webm",
            "u4/gone.webm",
            "u5/shared.webm",
        ])
    );
    assert_eq!(calls.len(), 1, "one bulk delete per bucket per batch");
    assert_eq!(
        count_requests(&server, "DELETE", "/storage/v1/object/ghost").await,
        0
    );
    assert!(requests(&server)
        .await
        .iter()
        .all(|(m, p)| m == "GET" || p == "/storage/v1/object/audio"));
    assert_eq!(
        count_requests(&server, "GET", "/storage/v1/bucket/audio").await,
        1
    );
    assert_eq!(
        count_requests(&server, "GET", "/storage/v1/bucket/ghost").await,
        1
    );

    // Young rows, garbage and the missing bucket stay as they were.
    assert_eq!(marked(&db).await, must_be_marked);
    assert_eq!(
        objects.remaining(),
        names(&[
            "young/y.webm",
            "young/edge.webm",
            "done/z.webm",
            "u7/secret.webm"
        ])
    );

    assert_eq!(
        counters(&stats),
        expected(&[
            ("considered", 14),
            ("deleted", 8),
            ("already_absent", 1),
            ("invalid_path", 4),
            ("bucket_missing", 1),
            ("failed", 5),
            ("marked", 9),
        ])
    );
    assert_stats_add_up(&stats);
    // The contract's keys come first, in its order.
    let keys: Vec<&str> = stats.iter().map(|(k, _)| k).collect();
    assert_eq!(&keys[..2], ["deleted", "failed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_finds_nothing_left_to_do_but_the_rows_it_cannot_handle() {
    let db = TestDatabase::new().await;
    let objects = mixed_objects();
    let server = storage(&objects, Duration::ZERO).await;
    let must_be_marked = seed_mixed(&db, &server.uri()).await;
    let job = job(&server, &db, &[]);
    run_with_ghost(&job, false).await;
    let deletes_before = delete_calls(&server, "audio").await.len();

    let stats = run_with_ghost(&job, false).await;

    assert_eq!(delete_calls(&server, "audio").await.len(), deletes_before);

    // The unusable rows are considered again (and fail again); nothing is deleted.
    assert_eq!(
        counters(&stats),
        expected(&[
            ("considered", 5),
            ("invalid_path", 4),
            ("bucket_missing", 1),
            ("failed", 5),
        ])
    );
    assert_eq!(marked(&db).await, must_be_marked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_sends_no_delete_and_changes_no_row() {
    let db = TestDatabase::new().await;
    let objects = mixed_objects();
    let server = storage(&objects, Duration::ZERO).await;
    seed_mixed(&db, &server.uri()).await;
    let before = marked(&db).await;
    let remaining = objects.remaining();

    let stats = run_with_ghost(&job(&server, &db, &[]), true).await;

    assert!(
        requests(&server).await.iter().all(|(m, _)| m == "GET"),
        "{:?}",
        requests(&server).await
    );
    assert_eq!(marked(&db).await, before);
    assert_eq!(objects.remaining(), remaining);
    assert_eq!(
        counters(&stats),
        expected(&[
            ("considered", 14),
            ("would_delete", 9),
            ("invalid_path", 4),
            ("bucket_missing", 1),
            ("failed", 5),
        ])
    );
    assert_stats_add_up(&stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_cleanup_dry_run_makes_every_run_dry() {
    let db = TestDatabase::new().await;
    let objects = mixed_objects();
    let server = storage(&objects, Duration::ZERO).await;
    seed_mixed(&db, &server.uri()).await;
    let before = marked(&db).await;

    let stats = run_with_ghost(
        &job(&server, &db, &[("AUDIO_CLEANUP_DRY_RUN", "true")]),
        false,
    )
    .await;

    assert_eq!(
        count_requests(&server, "DELETE", "/storage/v1/object/audio").await,
        0
    );
    assert_eq!(marked(&db).await, before);
    assert_eq!(stats.get("would_delete"), 9);
    assert_eq!(stats.get("deleted"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_fails_the_run_at_once_with_a_clear_message_and_marks_nothing() {
    let db = TestDatabase::new().await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(access_denied())
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(access_denied())
        .mount(&server)
        .await;
    let paths: Vec<String> = (0..6).map(|i| format!("audio/u/{i}.webm")).collect();
    seed_many(&db, OLD, &paths).await;
    let job = job(&server, &db, &[("AUDIO_CLEANUP_BATCH_SIZE", "2")]);

    let runner = Arc::new(Runner::new(
        Arc::new(db::PgExecutionLog::new(db.pool())),
        RunnerSettings::default(),
    ));
    let entry = Arc::new(RegisteredJob::new(
        job,
        Schedule::parse("0 2 * * *").unwrap(),
    ));
    let started = Instant::now();
    let report = runner.run(entry, RunRequest::manual(false)).await.unwrap();

    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(report.status, Status::Failed);
    let message = report.error_message.clone().unwrap();
    assert!(
        message.contains("Supabase Storage rejected SUPABASE_SERVICE_ROLE_KEY")
            && message.contains("signature verification failed"),
        "{message}"
    );
    assert!(!message.contains(KEY), "the key leaked: {message}");
    let record = report.record.unwrap();
    assert_eq!(record.status, Status::Failed);
    assert_eq!(record.error_message.as_deref(), Some(message.as_str()));
    assert!(!record.stats.to_string().contains(KEY));
    // One look at the bucket, not retried, and no delete sent.
    assert_eq!(requests(&server).await.len(), 1);
    assert!(marked(&db).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_refused_on_delete_stops_the_run_and_marks_nothing() {
    let db = TestDatabase::new().await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/storage/v1/bucket/audio"))
        .respond_with(json_response(200, &bucket_record("audio")))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(access_denied())
        .mount(&server)
        .await;
    let paths: Vec<String> = (0..6).map(|i| format!("audio/u/{i}.webm")).collect();
    seed_many(&db, OLD, &paths).await;

    let error = run(
        &job(
            &server,
            &db,
            &[
                ("AUDIO_CLEANUP_BATCH_SIZE", "2"),
                ("AUDIO_CLEANUP_CONCURRENCY", "1"),
            ],
        ),
        false,
    )
    .await
    .unwrap_err();

    assert!(
        error.message.contains("SUPABASE_SERVICE_ROLE_KEY"),
        "{}",
        error.message
    );
    assert_eq!(
        delete_calls(&server, "audio").await.len(),
        1,
        "stopped at once"
    );
    let stats = error.stats.unwrap();
    assert_eq!(stats.get("storage_error"), 2);
    assert_eq!(stats.get("deleted"), 0);
    assert_stats_add_up(&stats);
    assert!(marked(&db).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_supabase_url_fails_the_run_instead_of_reading_404_as_gone() {
    let db = TestDatabase::new().await;
    // Nothing mounted: every route answers a bare HTTP 404, as a server that is not
    // Supabase Storage would.
    let server = MockServer::start().await;
    seed(&db, OLD, Some("audio/u/a.webm")).await;

    let error = run(&job(&server, &db, &[]), false).await.unwrap_err();

    assert!(error.message.contains("SUPABASE_URL"), "{}", error.message);
    assert!(marked(&db).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_errors_are_retried_and_the_rows_then_marked() {
    let db = TestDatabase::new().await;
    let objects = Objects::with(["u/a.webm", "u/b.webm"]);
    let server = storage(&objects, Duration::ZERO).await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .respond_with(storage_error(
            429,
            "429",
            "SlowDown",
            "slow_down",
            "Please reduce your request rate",
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .respond_with(internal_error())
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    seed(&db, OLD, Some("audio/u/a.webm")).await;
    seed(&db, OLD, Some("audio/u/b.webm")).await;

    let stats = run(&job(&server, &db, &[]), false).await.unwrap();

    assert_eq!(delete_calls(&server, "audio").await.len(), 3);
    assert_eq!(stats.get("deleted"), 2);
    assert_eq!(stats.get("failed"), 0);
    assert_eq!(
        marked(&db).await,
        names(&["audio/u/a.webm", "audio/u/b.webm"])
    );
    assert!(objects.remaining().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_server_error_leaves_rows_unmarked_and_counts_them_failed() {
    let db = TestDatabase::new().await;
    let objects = Objects::with(["u/a.webm", "u/b.webm", "u/c.webm"]);
    let server = storage(&objects, Duration::ZERO).await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .respond_with(internal_error())
        .with_priority(1)
        .mount(&server)
        .await;
    let paths: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| format!("audio/u/{n}.webm"))
        .collect();
    seed_many(&db, OLD, &paths).await;

    let error = run(&job(&server, &db, &[("SUPABASE_MAX_ATTEMPTS", "2")]), false)
        .await
        .unwrap_err();

    assert!(
        error
            .message
            .contains("Supabase Storage failed for 3 files")
            && error.message.contains("500"),
        "{}",
        error.message
    );
    let stats = error.stats.unwrap();
    assert_eq!(
        counters(&stats),
        expected(&[("considered", 3), ("storage_error", 3), ("failed", 3)])
    );
    assert_eq!(
        delete_calls(&server, "audio").await.len(),
        2,
        "two attempts"
    );
    assert!(marked(&db).await.is_empty());
    assert_eq!(objects.remaining().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_outage_stops_the_run_after_three_failed_batches() {
    let db = TestDatabase::new().await;
    let server = storage(&Objects::default(), Duration::ZERO).await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .respond_with(internal_error())
        .with_priority(1)
        .mount(&server)
        .await;
    let paths: Vec<String> = (0..10).map(|i| format!("audio/u/{i}.webm")).collect();
    seed_many(&db, OLD, &paths).await;

    let error = run(
        &job(
            &server,
            &db,
            &[
                ("AUDIO_CLEANUP_BATCH_SIZE", "1"),
                ("AUDIO_CLEANUP_CONCURRENCY", "1"),
                ("SUPABASE_MAX_ATTEMPTS", "1"),
            ],
        ),
        false,
    )
    .await
    .unwrap_err();

    assert!(
        error.message.contains("3 batches in a row"),
        "{}",
        error.message
    );
    assert_eq!(delete_calls(&server, "audio").await.len(), 3);
    let stats = error.stats.unwrap();
    assert_eq!(stats.get("considered"), 3);
    assert_eq!(stats.get("storage_error"), 3);
    assert!(marked(&db).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_many_batches_reports_progress_after_each_batch() {
    let db = TestDatabase::new().await;
    let objects = Objects::with((0..5).map(|i| format!("u/{i}.webm")));
    let server = storage(&objects, Duration::from_millis(150)).await;
    // Oldest first: two unusable rows (a quick first batch), then 5 deletable ones, so
    // that every later batch takes the Storage delay and its progress stays visible.
    seed(&db, "70 days", Some("../x")).await;
    seed(&db, "69 days", Some("ghost/u/x.webm")).await;
    for i in 0..5 {
        let age = format!("{} days", 60 - i);
        seed(&db, &age, Some(&format!("audio/u/{i}.webm"))).await;
    }
    let job = job(
        &server,
        &db,
        &[
            ("AUDIO_CLEANUP_BATCH_SIZE", "2"),
            ("AUDIO_CLEANUP_CONCURRENCY", "1"),
        ],
    );
    let ctx = JobContext::new(1, Trigger::Manual, false);

    let work = job.run(&ctx);
    tokio::pin!(work);
    let mut seen: Vec<i64> = Vec::new();
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = tokio::time::sleep(Duration::from_millis(5)) => {
                if let Some(progress) = ctx.last_progress() {
                    let considered = progress.get("considered");
                    if seen.last() != Some(&considered) {
                        seen.push(considered);
                    }
                }
            }
        }
    };
    let error = result.expect_err("the missing ghost bucket fails the run");
    assert!(error.message.contains("\"ghost\""), "{}", error.message);
    let stats = error.stats.expect("stats");

    assert!(
        seen.starts_with(&[2, 4, 6]),
        "progress after each batch: {seen:?}"
    );
    assert_eq!(ctx.last_progress(), Some(stats.clone()));
    let calls = delete_calls(&server, "audio").await;
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|c| c.len() <= 2));
    assert_eq!(
        counters(&stats),
        expected(&[
            ("considered", 7),
            ("deleted", 5),
            ("marked", 5),
            ("invalid_path", 1),
            ("bucket_missing", 1),
            ("failed", 2),
        ])
    );
    assert_eq!(
        count_requests(&server, "GET", "/storage/v1/bucket/audio").await,
        1,
        "the bucket is checked once per run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_checked_once_its_rows_stay_unmarked_and_the_run_fails_naming_it() {
    let db = TestDatabase::new().await;
    let server = storage(&Objects::with(["u/a.webm"]), Duration::ZERO).await;
    let mut paths: Vec<String> = (0..6).map(|i| format!("ghost/u/{i}.webm")).collect();
    paths.push("audio/u/a.webm".into());
    seed_many(&db, OLD, &paths).await;

    let stats = run_with_ghost(
        &job(&server, &db, &[("AUDIO_CLEANUP_BATCH_SIZE", "2")]),
        false,
    )
    .await;

    assert_eq!(
        count_requests(&server, "GET", "/storage/v1/bucket/ghost").await,
        1
    );
    assert_eq!(
        count_requests(&server, "DELETE", "/storage/v1/object/ghost").await,
        0
    );
    assert_eq!(stats.get("bucket_missing"), 6);
    assert_eq!(stats.get("deleted"), 1);
    assert_eq!(marked(&db).await, names(&["audio/u/a.webm"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_sharing_one_object_are_all_marked_across_batches() {
    let db = TestDatabase::new().await;
    let objects = Objects::with(["u/shared.webm"]);
    let server = storage(&objects, Duration::ZERO).await;
    let uri = server.uri();
    seed(&db, "50 days", Some("audio/u/shared.webm")).await;
    seed(&db, "49 days", Some("audio/u/other.webm")).await;
    let url = format!("{uri}/storage/v1/object/public/audio/u/shared.webm");
    seed(&db, "48 days", Some(&url)).await;

    let stats = run(
        &job(
            &server,
            &db,
            &[
                ("AUDIO_CLEANUP_BATCH_SIZE", "2"),
                ("AUDIO_CLEANUP_CONCURRENCY", "1"),
            ],
        ),
        false,
    )
    .await
    .unwrap();

    assert_eq!(stats.get("deleted"), 1);
    assert_eq!(stats.get("already_absent"), 2);
    assert_eq!(
        marked(&db).await,
        names(&["audio/u/shared.webm", "audio/u/other.webm", &url])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_deletes_carry_at_most_1000_names_per_call() {
    let db = TestDatabase::new().await;
    let objects = Objects::with((1..=2500).map(|i| format!("bulk/{i}.webm")));
    let server = storage(&objects, Duration::ZERO).await;
    sql(
        &db,
        "INSERT INTO transcriptions (created_at, audio_file_path) \
         SELECT now() - interval '40 days' - g * interval '1 second', 'audio/bulk/' || g || '.webm' \
         FROM generate_series(1, 2500) AS g",
    )
    .await;

    // One page of 2500 rows: the client splits it into calls of 1000.
    let stats = run(
        &job(&server, &db, &[("AUDIO_CLEANUP_BATCH_SIZE", "2500")]),
        false,
    )
    .await
    .unwrap();

    let mut sizes: Vec<usize> = delete_calls(&server, "audio")
        .await
        .iter()
        .map(Vec::len)
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [500, 1000, 1000]);
    assert_eq!(stats.get("deleted"), 2500);
    assert_eq!(stats.get("marked"), 2500);
    assert!(objects.remaining().is_empty());
    assert_eq!(marked(&db).await.len(), 2500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_batch_sends_one_call_per_thousand_rows() {
    let db = TestDatabase::new().await;
    let objects = Objects::with((1..=2500).map(|i| format!("bulk/{i}.webm")));
    let server = storage(&objects, Duration::ZERO).await;
    sql(
        &db,
        "INSERT INTO transcriptions (created_at, audio_file_path) \
         SELECT now() - interval '40 days', 'audio/bulk/' || g || '.webm' \
         FROM generate_series(1, 2500) AS g",
    )
    .await;

    let stats = run(&job(&server, &db, &[]), false).await.unwrap();

    let calls = delete_calls(&server, "audio").await;
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|c| c.len() <= 1000));
    assert_eq!(
        count_requests(&server, "GET", "/storage/v1/bucket/audio").await,
        1
    );
    assert_eq!(stats.get("deleted"), 2500);
    assert_eq!(marked(&db).await.len(), 2500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_run_is_recorded_with_its_stats() {
    let db = TestDatabase::new().await;
    let server = storage(&Objects::with(["u/a.webm"]), Duration::ZERO).await;
    seed(&db, OLD, Some("audio/u/a.webm")).await;
    seed(&db, OLD, Some("audio/u/b.webm")).await;
    let runner = Arc::new(Runner::new(
        Arc::new(db::PgExecutionLog::new(db.pool())),
        RunnerSettings::default(),
    ));
    let entry = Arc::new(RegisteredJob::new(
        job(&server, &db, &[]),
        Schedule::parse("0 2 * * *").unwrap(),
    ));

    let report = runner.run(entry, RunRequest::manual(false)).await.unwrap();

    let record = report.record.unwrap();
    assert_eq!(record.status, Status::Success);
    assert_eq!(record.stats["deleted"], 1);
    assert_eq!(record.stats["already_absent"], 1);
    assert_eq!(record.stats["failed"], 0);
    assert_eq!(record.stats["marked"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_leaves_rows_whose_path_changed_since_they_were_read() {
    let db = TestDatabase::new().await;
    seed(&db, OLD, Some("audio/u/new-upload.webm")).await;
    let mut conn = db.connect().await;
    let cutoff = db::cleanup::retention_cutoff(&mut conn, 30).await.unwrap();
    let rows = db::cleanup::candidates_page(&mut conn, cutoff, None, 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    // The same row as read before the application stored a new upload in it.
    let mut read_before = rows[0].clone();
    read_before.audio_file_path = "audio/u/old.webm".to_owned();

    let stale = db::cleanup::mark_audio_deleted(&mut conn, [&read_before])
        .await
        .unwrap();
    let current = db::cleanup::mark_audio_deleted(&mut conn, &rows)
        .await
        .unwrap();
    let again = db::cleanup::mark_audio_deleted(&mut conn, &rows)
        .await
        .unwrap();

    assert_eq!((stale, current, again), (0, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_cutoff_comes_from_the_database_clock() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    #[derive(diesel::QueryableByName)]
    struct Now {
        #[diesel(sql_type = Timestamptz)]
        now: chrono::DateTime<chrono::Utc>,
    }
    let now: Now = diesel::sql_query("SELECT now() AS now")
        .get_result(&mut conn)
        .await
        .unwrap();

    let cutoff = db::cleanup::retention_cutoff(&mut conn, 30).await.unwrap();

    let age = now.now - cutoff;
    assert!(
        (age - chrono::Duration::days(30)).num_seconds().abs() < 5,
        "{age:?}"
    );
}

#[test]
fn the_job_is_disabled_with_the_reason_when_supabase_is_not_configured() {
    let pool = db::ConnectTarget::parse("postgres://postgres@127.0.0.1:5432/postgres")
        .unwrap()
        .pool(1)
        .unwrap();
    let build = |pairs: &[(&str, &str)]| {
        let config = Config::from_vars(Vars::from_pairs(pairs.iter().copied())).unwrap();
        AudioCleanupJob::from_config(&config, pool.clone())
    };

    let no_url = build(&[("SUPABASE_SERVICE_ROLE_KEY", KEY)]).unwrap();
    assert_eq!(
        no_url.disabled_reason().as_deref(),
        Some("SUPABASE_URL is not set")
    );
    let no_key = build(&[("SUPABASE_URL", "https://abc.supabase.co")]).unwrap();
    assert_eq!(
        no_key.disabled_reason().as_deref(),
        Some("SUPABASE_SERVICE_ROLE_KEY is not set")
    );
    let ready = build(&[
        ("SUPABASE_URL", "https://abc.supabase.co"),
        ("SUPABASE_SERVICE_ROLE_KEY", KEY),
    ])
    .unwrap();
    assert_eq!(ready.disabled_reason(), None);
    assert!(ready.supports_dry_run());
    assert_eq!(
        (ready.name(), ready.display_name(), ready.default_schedule()),
        ("audio_cleanup", "Audio Cleanup", "0 2 * * *")
    );
    assert_eq!(ready.summary_keys(), ["deleted", "failed"]);
    assert!(!format!("{ready:?}").contains(KEY));

    let bad = build(&[
        ("SUPABASE_URL", "https://abc.supabase.co"),
        ("SUPABASE_SERVICE_ROLE_KEY", KEY),
        ("AUDIO_CLEANUP_BATCH_SIZE", "0"),
    ])
    .unwrap_err();
    assert_eq!(bad.variable, "AUDIO_CLEANUP_BATCH_SIZE");
}

/// Answers every bulk delete as if each name existed, after `delay`, holding no state
/// but a count of calls and of the most names one call carried.
struct DeletesEverything {
    delay: Duration,
    calls: Arc<AtomicUsize>,
    largest: Arc<AtomicUsize>,
}

impl Respond for DeletesEverything {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = request.body_json().unwrap_or_default();
        let deleted: Vec<Value> = body["prefixes"]
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|name| deleted_object("audio", name))
                    .collect()
            })
            .unwrap_or_default();
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.largest.fetch_max(deleted.len(), Ordering::SeqCst);
        json_response(200, &Value::Array(deleted)).set_delay(self.delay)
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// The issue's load target: a million old rows against a Storage adding 20 ms per call.
/// Slow to seed, so run on demand:
/// `AUDIO_CLEANUP_LOAD_ROWS=1000000 cargo test --release -p api-server --test audio_cleanup -- --ignored`.
/// The peak RSS printed is the whole test process's (mock server and its request log
/// included), an upper bound for the job's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load test; run on demand"]
async fn a_million_old_rows_are_cleaned_within_a_minute() {
    let rows: i64 = std::env::var("AUDIO_CLEANUP_LOAD_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let db = TestDatabase::new().await;
    // No request log: it would hold every body and blur the memory figure.
    let server = MockServer::builder()
        .disable_request_recording()
        .start()
        .await;
    let (calls, largest) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    Mock::given(method("GET"))
        .and(path("/storage/v1/bucket/audio"))
        .respond_with(json_response(200, &bucket_record("audio")))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .respond_with(DeletesEverything {
            delay: Duration::from_millis(20),
            calls: Arc::clone(&calls),
            largest: Arc::clone(&largest),
        })
        .mount(&server)
        .await;
    sql(
        &db,
        &format!(
            "INSERT INTO transcriptions (created_at, audio_file_path) \
             SELECT now() - interval '40 days' - g * interval '1 millisecond', \
                    'audio/user' || (g % 1000) || '/' || g || '.webm' \
             FROM generate_series(1, {rows}) AS g"
        ),
    )
    .await;
    sql(&db, "ANALYZE transcriptions").await;

    let started = Instant::now();
    let stats = run(&job(&server, &db, &[]), false).await.unwrap();
    let elapsed = started.elapsed();

    eprintln!(
        "{rows} rows in {elapsed:.1?}, peak RSS {} MiB (seeding included): {stats:?}",
        peak_rss_kib() / 1024
    );
    assert_eq!(stats.get("deleted"), rows);
    assert_eq!(stats.get("marked"), rows);
    let calls = i64::try_from(AtomicUsize::load(&calls, Ordering::SeqCst)).unwrap();
    assert!(calls <= (rows + 999) / 1000, "{calls} calls");
    assert!(AtomicUsize::load(&largest, Ordering::SeqCst) <= 1000);
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
}

// ---------------------------------------------------------------------------------------
// Keys, rights and what an empty answer means.

/// An unsigned JWT carrying `claims`, shaped like Supabase's legacy keys.
fn jwt(claims: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.c2lnbmF0dXJl",
        engine.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        engine.encode(claims)
    )
}

fn build_with_key(
    server: &MockServer,
    db: &TestDatabase,
    key: &str,
) -> Result<AudioCleanupJob, api_server::config::ConfigError> {
    let uri = server.uri();
    let pairs: Vec<(&str, &str)> = vec![
        ("SUPABASE_URL", &uri),
        ("SUPABASE_SERVICE_ROLE_KEY", key),
        ("SUPABASE_BACKOFF_MS", "1"),
        ("SUPABASE_MAX_BACKOFF_MS", "5"),
    ];
    let config = Config::from_vars(Vars::from_pairs(pairs)).unwrap();
    AudioCleanupJob::from_config(&config, db.pool())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anon_role_key_or_a_publishable_key_is_refused_naming_the_variable() {
    let db = TestDatabase::new().await;
    let server = MockServer::start().await;
    for key in [
        jwt(r#"{"iss":"supabase","ref":"abc","role":"anon"}"#),
        jwt(r#"{"role":"authenticated"}"#),
        "sb_publishable_AbCdEf0123456789_secretish".to_owned(),
    ] {
        let error = build_with_key(&server, &db, &key).expect_err("a key that cannot delete");
        assert_eq!(error.variable, "SUPABASE_SERVICE_ROLE_KEY", "{error}");
        let message = error.to_string();
        assert!(message.contains("cannot delete"), "{message}");
        assert!(!message.contains(&key), "the key leaked: {message}");
    }
    assert!(requests(&server).await.is_empty(), "nothing was sent");
}

/// Storage behind row-level security, seen with a key that may read the bucket and write
/// but not delete: every bulk delete answers `200 []`, as the real server does.
async fn rls_storage(objects: &Objects, upload_refused: bool) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/storage/v1/bucket/audio"))
        .respond_with(json_response(200, &bucket_record("audio")))
        .mount(&server)
        .await;
    let upload = if upload_refused {
        storage_error(
            400,
            "403",
            "Unauthorized",
            "Unauthorized",
            "new row violates row-level security policy",
        )
    } else {
        json_response(
            200,
            &json!({"Key": "audio/probe", "Id": "5b8f1c1e-7d4a-4a9e-9a57-2f1f6d0c8e42"}),
        )
    };
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(
            "^/storage/v1/object/audio/background-jobs-probe/.+",
        ))
        .respond_with(upload)
        .mount(&server)
        .await;
    let _ = objects;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .respond_with(json_response(200, &json!([])))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rls_stand_in_answering_200_empty_never_leads_to_marking() {
    let db = TestDatabase::new().await;
    let objects = Objects::with(["u/0.webm"]);
    for upload_refused in [false, true] {
        let server = rls_storage(&objects, upload_refused).await;
        let paths: Vec<String> = (0..4).map(|i| format!("audio/u/{i}.webm")).collect();
        seed_many(&db, OLD, &paths).await;
        // A key whose rights cannot be read from it: neither a JWT nor sb_secret_.
        let job = build_with_key(&server, &db, "opaque-key-with-unknown-rights").unwrap();

        let error = run(&job, false).await.expect_err("rights not proven");

        assert!(
            error.message.contains("SUPABASE_SERVICE_ROLE_KEY")
                && error.message.contains("\"audio\""),
            "{}",
            error.message
        );
        assert!(!error.message.contains("opaque-key"), "{}", error.message);
        let stats = error.stats.unwrap();
        assert_eq!(stats.get("already_absent"), 0);
        assert_eq!(stats.get("marked"), 0);
        assert!(marked(&db).await.is_empty());
        // No delete of the rows' objects was sent: only the probe's, if it was written.
        let calls = delete_calls(&server, "audio").await;
        assert!(
            calls
                .iter()
                .flatten()
                .all(|name| name.starts_with("background-jobs-probe/")),
            "{calls:?}"
        );
        assert_eq!(calls.len(), usize::from(!upload_refused));
        sql(&db, "DELETE FROM transcriptions").await;
    }
}

/// `storage()` plus uploads into `objects` (the probe) and the secret-key checks.
async fn storage_accepting_uploads(objects: &Objects) -> MockServer {
    let server = storage(objects, Duration::ZERO).await;
    struct Upload(Objects);
    impl Respond for Upload {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let name = request
                .url
                .path()
                .trim_start_matches("/storage/v1/object/audio/")
                .to_owned();
            self.0 .0.lock().unwrap().insert(name.clone());
            json_response(200, &json!({"Key": format!("audio/{name}"), "Id": "1"}))
        }
    }
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(
            "^/storage/v1/object/audio/.+",
        ))
        .respond_with(Upload(objects.clone()))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_unknown_rights_proves_them_once_per_bucket_before_anything_is_marked() {
    let db = TestDatabase::new().await;
    let objects = Objects::with(["u/0.webm", "u/1.webm"]);
    let server = storage_accepting_uploads(&objects).await;
    let paths: Vec<String> = (0..4).map(|i| format!("audio/u/{i}.webm")).collect();
    seed_many(&db, OLD, &paths).await;
    let job = build_with_key(&server, &db, "opaque-key-with-unknown-rights").unwrap();

    let stats = run(&job, false).await.unwrap();

    assert_eq!((stats.get("deleted"), stats.get("already_absent")), (2, 2));
    assert_eq!(marked(&db).await.len(), 4);
    assert!(objects.remaining().is_empty(), "the probe is gone too");
    let uploads = requests(&server)
        .await
        .iter()
        .filter(|(m, _)| m == "POST")
        .count();
    assert_eq!(uploads, 1, "one probe per bucket per run");
    let calls = delete_calls(&server, "audio").await;
    assert!(
        calls[0][0].starts_with("background-jobs-probe/"),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_key_is_trusted_sent_as_apikey_and_bearer_and_never_as_a_browser() {
    let db = TestDatabase::new().await;
    let objects = Objects::with(["u/0.webm"]);
    let server = storage(&objects, Duration::ZERO).await;
    seed(&db, OLD, Some("audio/u/0.webm")).await;
    let key = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz";
    let job = build_with_key(&server, &db, key).unwrap();

    let stats = run(&job, false).await.unwrap();

    assert_eq!(stats.get("deleted"), 1);
    let received = server.received_requests().await.unwrap();
    assert!(
        received.iter().all(|r| r.method.as_str() != "POST"),
        "no probe"
    );
    for request in &received {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("apikey"), key);
        assert_eq!(header("authorization"), format!("Bearer {key}"));
        assert!(
            !header("user-agent").contains("Mozilla"),
            "{}",
            header("user-agent")
        );
    }
}

// ---------------------------------------------------------------------------------------
// URLs and write guards.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_with_an_unescaped_question_mark_is_refused_not_cut_at_the_question_mark() {
    let db = TestDatabase::new().await;
    // Each name before the `?` exists: cutting a URL at its `?` would delete it. After the
    // `?` come unknown text, or Storage's own parameter names with values Storage never
    // gives them, or a second `?`.
    let tails = [
        "1.webm",
        "width=1.webm",
        "format=y.webm",
        "quality=abc.webm",
        "resize=z.webm",
        "height=2&width=1.webm",
    ];
    let mut all: Vec<String> = Vec::new();
    for (i, tail) in tails.iter().enumerate() {
        all.push(format!("q{i}/what"));
        all.push(format!("q{i}/what?{tail}"));
    }
    all.push("t/x".to_owned());
    all.push("t/x?token=a.webm".to_owned());
    let objects = Objects::with(all.iter().map(String::as_str));
    let server = storage(&objects, Duration::ZERO).await;
    let base = format!("{}/storage/v1/object", server.uri());
    let mut urls: Vec<String> = tails
        .iter()
        .enumerate()
        .map(|(i, tail)| format!("{base}/public/audio/q{i}/what?{tail}"))
        .collect();
    // The signed URL of the object `t/x?token=a.webm`.
    urls.push(format!(
        "{base}/sign/audio/t/x?token=a.webm?token=eyJhbGciOiJIUzI1NiJ9.e30.c2ln"
    ));
    seed_many(&db, OLD, &urls).await;

    let stats = run(&job(&server, &db, &[]), false).await.unwrap();

    assert_eq!(
        objects.remaining(),
        all.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert!(delete_calls(&server, "audio").await.is_empty());
    assert!(marked(&db).await.is_empty());
    let n = urls.len() as i64;
    assert_eq!(
        counters(&stats),
        expected(&[("considered", n), ("invalid_path", n), ("failed", n)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_with_a_query_is_marked_only_when_its_object_was_seen_deleted() {
    let db = TestDatabase::new().await;
    // `q/a.webm?download=x.webm` is a name Storage allows; `q/a.webm` does not exist.
    let objects = Objects::with(["d/real.webm", "q/a.webm?download=x.webm", "r/pic.webm"]);
    let server = storage(&objects, Duration::ZERO).await;
    let base = format!("{}/storage/v1", server.uri());
    let old = [
        // A download URL of a real object: deleted and marked.
        format!("{base}/object/public/audio/d/real.webm?download=x.webm"),
        // Its object is not under the name before the '?': not proven gone, not marked.
        format!("{base}/object/public/audio/q/a.webm?download=x.webm"),
        // An image transform's URL names the object it renders.
        format!("{base}/render/image/public/audio/r/pic.webm?width=10"),
        // A plain path already gone: absent is proof enough.
        "audio/gone/before.webm".to_owned(),
        // So is a signed URL's: its token is never part of a name.
        format!("{base}/object/sign/audio/gone/signed.webm?token=eyJ0.eX0.c2ln"),
    ];
    seed_many(&db, OLD, &old).await;

    let stats = run(&job(&server, &db, &[]), false).await.unwrap();

    assert_eq!(objects.remaining(), names(&["q/a.webm?download=x.webm"]));
    assert_eq!(
        marked(&db).await,
        names(&[
            old[0].as_str(),
            old[2].as_str(),
            "audio/gone/before.webm",
            old[4].as_str()
        ])
    );
    assert_eq!(
        counters(&stats),
        expected(&[
            ("considered", 5),
            ("deleted", 2),
            ("already_absent", 2),
            ("marked", 4),
            ("invalid_path", 1),
            ("failed", 1),
        ])
    );
    assert_stats_add_up(&stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_a_row_inside_the_retention_period_still_points_at_is_not_deleted() {
    let db = TestDatabase::new().await;
    let objects = Objects::with(["u/reused.webm", "u/own.webm"]);
    let server = storage(&objects, Duration::ZERO).await;
    seed(&db, OLD, Some("audio/u/reused.webm")).await;
    seed(&db, OLD, Some("audio/u/own.webm")).await;
    // A recent transcription uses the same file, written as a URL.
    let url = format!(
        "{}/storage/v1/object/public/audio/u/reused.webm",
        server.uri()
    );
    seed(&db, YOUNG, Some(&url)).await;

    let stats = run(&job(&server, &db, &[]), false).await.unwrap();

    assert_eq!(objects.remaining(), names(&["u/reused.webm"]));
    assert_eq!(marked(&db).await, names(&["audio/u/own.webm"]));
    assert_eq!(
        counters(&stats),
        expected(&[
            ("considered", 2),
            ("deleted", 1),
            ("marked", 1),
            ("still_referenced", 1),
        ])
    );
    assert_stats_add_up(&stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recent_row_protects_what_its_path_could_mean_even_when_the_job_refuses_that_path() {
    let db = TestDatabase::new().await;
    // Every object but `u/own.webm` has a newer row pointing at it.
    let kept = [
        "u/cache.webm",
        "u/e f.webm",
        "u/render.webm",
        "u/spaced.webm",
        "u/what?1.webm",
        "u/dot.webm",
        "u/encdot.webm",
        "u/up.webm",
        "u/plaindot.webm",
        "u/lead.webm",
        "u/double.webm",
    ];
    let objects = Objects::with(kept.iter().copied().chain(["u/own.webm"]));
    let server = storage(&objects, Duration::ZERO).await;
    let base = format!("{}/storage/v1", server.uri());
    let mut old = vec![
        "audio/u/cache.webm".to_owned(),
        "audio/u/what?1.webm".to_owned(),
        "audio/u/spaced.webm".to_owned(),
        "audio/u/render.webm".to_owned(),
        "audio/u/own.webm".to_owned(),
        format!("{base}/object/public/audio/u/e%20f.webm"),
    ];
    for name in ["dot", "encdot", "up", "plaindot", "lead", "double"] {
        old.push(format!("audio/u/{name}.webm"));
    }
    seed_many(&db, OLD, &old).await;
    // Recent rows the job would refuse to delete by: a cache-busting query, an unescaped
    // '?', white space, a path written encoded in the plain form, an image transform.
    let recent = [
        format!("{base}/object/public/audio/u/cache.webm?v=2"),
        format!("{base}/object/public/audio/u/what?1.webm"),
        "audio/u/spaced.webm ".to_owned(),
        "audio/u/e%20f.webm".to_owned(),
        format!("{base}/render/image/public/audio/u/render.webm?width=100"),
        // Dot segments, encoded or not, and doubled or leading slashes: what a client
        // fetching the path reaches.
        format!("{base}/object/public/audio/u/x/../dot.webm"),
        format!("{base}/object/public/audio/u/x/%2e%2e/encdot.webm"),
        format!("{base}/object/public/audio/zz/../u/up.webm?width=5"),
        "audio/u/x/../plaindot.webm".to_owned(),
        "/audio/u/lead.webm".to_owned(),
        "audio/u//double.webm".to_owned(),
    ];
    seed_many(&db, YOUNG, &recent).await;

    let stats = run(&job(&server, &db, &[]), false).await.unwrap();

    assert_eq!(objects.remaining(), names(&kept));
    assert_eq!(marked(&db).await, names(&["audio/u/own.webm"]));
    assert_eq!(stats.get("still_referenced"), 11, "{stats:?}");
    assert_stats_add_up(&stats);
}

/// Runs the job on 100 old rows in batches of ten, beside `NEWER` newer rows created as
/// `created_at` (an SQL expression), and checks that it read the newer rows through the
/// clean-up index once, not once per batch, and that a newer row so dated still protects
/// the file it points at.
async fn newer_rows_are_read_once(created_at: &str) {
    const NEWER: i64 = 3000;
    let db = TestDatabase::new().await;
    let old: Vec<String> = (0..100).map(|i| format!("audio/u/{i}.webm")).collect();
    let objects = Objects::with(
        old.iter()
            .map(|p| p.trim_start_matches("audio/").to_owned()),
    );
    let server = storage(&objects, Duration::ZERO).await;
    seed_many(&db, OLD, &old).await;
    let mut conn = db.connect().await;
    // The newer rows: one of them uses the first old row's file.
    diesel::sql_query(format!(
        "INSERT INTO transcriptions (created_at, audio_file_path) \
         SELECT {created_at}, CASE WHEN i = 1 THEN 'audio/u/0.webm' \
                ELSE 'audio/n/' || i || '.webm' END \
         FROM generate_series(1, {NEWER}) AS i"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let tuples_read = || async {
        #[derive(diesel::QueryableByName)]
        struct Read {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = db.connect().await;
        diesel::sql_query(
            "SELECT idx_tup_read AS n FROM pg_stat_user_indexes \
             WHERE indexrelname = 'idx_transcriptions_audio_cleanup'",
        )
        .get_result::<Read>(&mut conn)
        .await
        .unwrap()
        .n
    };
    let before = tuples_read().await;

    let job = job(
        &server,
        &db,
        &[
            ("AUDIO_CLEANUP_BATCH_SIZE", "10"),
            ("AUDIO_CLEANUP_CONCURRENCY", "1"),
        ],
    );
    let stats = run(&job, false).await.unwrap();
    assert_eq!(stats.get("deleted"), 99, "{stats:?}");
    assert_eq!(stats.get("still_referenced"), 1, "{stats:?}");
    assert_eq!(objects.remaining(), names(&["u/0.webm"]));
    // The job's connections close with it, and each backend reports its reads as it ends.
    drop(job);
    let mut read = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        read = tuples_read().await - before;
        if read >= NEWER {
            break;
        }
    }
    assert!(read >= NEWER, "the reads were not reported: {read}");
    // Read once (plus the old rows and the last moments' look-back): not ten times.
    assert!(
        read < 2 * NEWER,
        "{read} index tuples read for {NEWER} newer rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_rows_sharing_one_created_at_are_read_once_not_once_per_batch() {
    // Imported in one statement three days ago: one `created_at` for all of them.
    newer_rows_are_read_once("now() - interval '3 days'").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_rows_dated_in_the_future_are_read_once_not_once_per_batch() {
    // An application server whose clock is an hour ahead.
    newer_rows_are_read_once("now() + interval '1 hour' + i * interval '1 ms'").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_row_whose_insert_commits_late_still_protects_its_object() {
    let db = TestDatabase::new().await;
    let objects = Objects::with(["u/a.webm", "u/b.webm"]);
    let server = storage(&objects, Duration::from_millis(1500)).await;
    seed(&db, "50 days", Some("audio/u/a.webm")).await;
    seed(&db, "45 days", Some("audio/u/b.webm")).await;
    // The application's insert of a new transcription that reuses b's file: its
    // `created_at` is its transaction's start, and it commits only while the job runs.
    use diesel_async::SimpleAsyncConnection;
    let mut late = db.connect().await;
    late.batch_execute(
        "BEGIN; INSERT INTO transcriptions (audio_file_path) VALUES ('audio/u/b.webm')",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    seed(&db, "0 seconds", Some("audio/u/other.webm")).await;

    // One row per batch: the first batch reads the newer rows (without the late one), the
    // second is b's.
    let job = job(
        &server,
        &db,
        &[
            ("AUDIO_CLEANUP_BATCH_SIZE", "1"),
            ("AUDIO_CLEANUP_CONCURRENCY", "1"),
        ],
    );
    let running = tokio::spawn(async move { run(&job, false).await });
    while delete_calls(&server, "audio").await.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    late.batch_execute("COMMIT").await.unwrap();
    let stats = running.await.unwrap().unwrap();

    assert_eq!(objects.remaining(), names(&["u/b.webm"]));
    assert_eq!(marked(&db).await, names(&["audio/u/a.webm"]));
    assert_eq!(stats.get("still_referenced"), 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_row_committed_while_batches_run_side_by_side_protects_a_later_batch() {
    let db = TestDatabase::new().await;
    let objects = Objects::with(["u/a.webm", "u/b.webm", "u/c.webm", "u/d.webm"]);
    let server = storage(&objects, Duration::from_millis(800)).await;
    for (age, name) in [("50", "a"), ("49", "b"), ("48", "c"), ("47", "d")] {
        seed(
            &db,
            &format!("{age} days"),
            Some(&format!("audio/u/{name}.webm")),
        )
        .await;
    }
    // Two batches at a time, one row each: a and b go first, and their look at newer rows
    // is over before the new row that reuses d's file commits; c and d come after.
    let job = job(
        &server,
        &db,
        &[
            ("AUDIO_CLEANUP_BATCH_SIZE", "1"),
            ("AUDIO_CLEANUP_CONCURRENCY", "2"),
        ],
    );
    let running = tokio::spawn(async move { run(&job, false).await });
    while delete_calls(&server, "audio").await.len() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seed(&db, "0 seconds", Some("audio/u/d.webm")).await;
    let stats = running.await.unwrap().unwrap();

    assert_eq!(objects.remaining(), names(&["u/d.webm"]));
    assert_eq!(stats.get("still_referenced"), 1, "{stats:?}");
    assert_eq!(stats.get("deleted"), 3, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_sent_again_looks_at_newer_rows_again_first() {
    let db = TestDatabase::new().await;
    let objects = Objects::with(["u/a.webm", "u/b.webm"]);
    let server = storage(&objects, Duration::ZERO).await;
    // The first bulk delete fails slowly, as Storage may under load; the retry succeeds.
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .respond_with(internal_error().set_delay(Duration::from_millis(600)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    seed(&db, "50 days", Some("audio/u/a.webm")).await;
    seed(&db, "45 days", Some("audio/u/b.webm")).await;
    let job = job(
        &server,
        &db,
        &[
            ("AUDIO_CLEANUP_BATCH_SIZE", "2"),
            ("AUDIO_CLEANUP_CONCURRENCY", "1"),
        ],
    );
    let running = tokio::spawn(async move { run(&job, false).await });
    while delete_calls(&server, "audio").await.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // While the first attempt is out, a new transcription reuses a's file.
    seed(&db, "0 seconds", Some("audio/u/a.webm")).await;
    let stats = running.await.unwrap().unwrap();

    let calls = delete_calls(&server, "audio").await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1], vec!["u/b.webm".to_owned()], "{calls:?}");
    assert_eq!(objects.remaining(), names(&["u/a.webm"]));
    assert_eq!(marked(&db).await, names(&["audio/u/b.webm"]));
    assert_eq!(stats.get("still_referenced"), 1, "{stats:?}");
    assert_eq!(stats.get("deleted"), 1, "{stats:?}");
    assert_stats_add_up(&stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_naming_no_possible_object_is_refused_not_marked_as_already_gone() {
    let db = TestDatabase::new().await;
    // The audio exists under its real name; the rows spell it encoded (twice, for the URL),
    // with a trailing space, or with a token on a URL that is not signed.
    let objects = Objects::with([
        "u/e f.webm",
        "u/l m.webm",
        "u/v.webm",
        "u/qq",
        "u/qq?token=1.webm",
    ]);
    let server = storage(&objects, Duration::ZERO).await;
    let base = format!("{}/storage/v1/object", server.uri());
    let old = [
        "audio/u/e%20f.webm".to_owned(),
        format!("{base}/public/audio/u/l%2520m.webm"),
        "audio/u/v.webm ".to_owned(),
        format!("{base}/public/audio/u/qq?token=1.webm"),
    ];
    seed_many(&db, OLD, &old).await;

    // Invalid paths are counted failed and logged, the run itself succeeds (README).
    let stats = run(&job(&server, &db, &[]), false).await.unwrap();

    // Nothing deleted, nothing marked: each row is an invalid path with its reason.
    assert_eq!(
        objects.remaining(),
        names(&[
            "u/e f.webm",
            "u/l m.webm",
            "u/qq",
            "u/qq?token=1.webm",
            "u/v.webm"
        ])
    );
    assert!(marked(&db).await.is_empty());
    assert_eq!(stats.get("invalid_path"), 4, "{stats:?}");
    assert_eq!(stats.get("already_absent"), 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stats_show_the_storage_concurrency_limit() {
    let db = TestDatabase::new().await;
    let objects = Objects::with(["u/0.webm"]);
    let server = storage(&objects, Duration::ZERO).await;
    seed(&db, OLD, Some("audio/u/0.webm")).await;
    let job = job(&server, &db, &[("AUDIO_CLEANUP_CONCURRENCY", "6")]);
    let ctx = JobContext::new(1, Trigger::Manual, false);

    let stats = job.run(&ctx).await.unwrap();

    assert_eq!(stats.get("concurrency_limit"), 6);
    assert_eq!(
        ctx.last_progress().map(|p| p.get("concurrency_limit")),
        Some(6)
    );
}
