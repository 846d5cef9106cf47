//! The `cost_update` job against a real PostgreSQL (a fresh database per test) and a
//! wiremock Deepgram answering in the shapes the Management API really uses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api_server::config::{Config, Vars};
use api_server::jobs::CostUpdateJob;
use db::testing::TestDatabase;
use diesel::sql_types::{Bool, Integer, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use jobs_core::{
    Job, JobContext, JobError, RegisteredJob, RunRequest, Runner, RunnerSettings, Schedule, Stats,
    Status, Trigger,
};
use serde_json::{json, Value};
use uuid::Uuid;
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "dg-secret-key-7f3a9c";
const PROJECT: &str = "3b1fe4f2-9c3e-4e0a-8f5a-2a54c1d0b7aa";
const OTHER_PROJECT: &str = "8c2d6f1e-5a4b-4c3d-9e8f-7a6b5c4d3e2f";
const UNKNOWN_PROJECT: &str = "00000000-1111-4222-8333-444444444444";

// ---------------------------------------------------------------------------------------
// Deepgram, as documented

/// A request record exactly as `GET /v1/projects/{p}/requests/{r}` returns it.
fn record(project: &str, request: &str, response: Value) -> Value {
    json!({
        "request_id": request,
        "project_uuid": project,
        "created": "2026-10-28T02:00:15.234567Z",
        "path": "/v1/listen?model=nova-3&smart_format=true",
        "api_key_id": "0e1b5c7a-2d3f-4a8b-9c1d-6e2f3a4b5c6d",
        "response": response,
        "callback": null
    })
}

/// A `response` that carries a price.
fn priced(usd: Value) -> Value {
    json!({
        "details": {
            "usd": usd,
            "duration": 25.933,
            "total_audio": 25.933,
            "channels": 1,
            "streams": 1,
            "method": "sync",
            "tier": "nova-3",
            "models": ["30089e05-99d1-4376-b32e-c263170674af"],
            "tags": [],
            "features": ["punctuate"],
            "config": {}
        },
        "code": 200,
        "completed": "2026-10-28T02:00:17.001Z"
    })
}

/// A `response` with details but no `usd`: no price for this key.
fn unpriced() -> Value {
    json!({
        "details": {"duration": 25.933, "total_audio": 25.933, "channels": 1, "streams": 1,
                    "method": "sync", "tier": "nova-3", "models": [], "tags": [],
                    "features": [], "config": {}},
        "code": 200,
        "completed": "2026-10-28T02:00:17.001Z"
    })
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

fn project_not_found() -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(json!({
        "category": "PROJECT_NOT_FOUND",
        "message": "Project not found.",
        "details": "",
        "request_id": "6f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    }))
}

/// A 404 for a request the project does not hold (unknown, or past the 90-day retention),
/// in the plain-text shape Deepgram uses besides its JSON error bodies. Not
/// `PROJECT_NOT_FOUND`: that one is about the project, whatever the request.
fn request_not_found() -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_raw("Not Found", "text/plain")
}

fn invalid_auth() -> ResponseTemplate {
    ResponseTemplate::new(401).set_body_json(json!({
        "err_code": "INVALID_AUTH",
        "err_msg": "Invalid credentials.",
        "request_id": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    }))
}

/// Answers `GET /v1/projects/{project}/requests/{request}` sent with the key.
async fn answer(server: &MockServer, project: &str, request: &str, response: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(format!("/v1/projects/{project}/requests/{request}")))
        .and(header("authorization", format!("Token {KEY}").as_str()))
        .respond_with(response)
        .mount(server)
        .await;
}

async fn requests_to(server: &MockServer, fragment: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path().contains(fragment))
        .count()
}

// ---------------------------------------------------------------------------------------
// The job and the database

fn config(server: &MockServer, extra: &[(&str, &str)]) -> Config {
    let uri = server.uri();
    let mut pairs = vec![
        ("DEEPGRAM_API_KEY", KEY),
        ("DEEPGRAM_API_URL", uri.as_str()),
        ("DEEPGRAM_MAX_ATTEMPTS", "2"),
        ("DEEPGRAM_BACKOFF_MS", "1"),
    ];
    pairs.extend_from_slice(extra);
    Config::from_vars(Vars::from_pairs(pairs)).expect("valid configuration")
}

fn job(db: &TestDatabase, server: &MockServer, extra: &[(&str, &str)]) -> CostUpdateJob {
    CostUpdateJob::from_config(&config(server, extra), db.pool()).expect("job builds")
}

async fn run(job: &CostUpdateJob) -> Result<Stats, JobError> {
    job.run(&JobContext::new(1, Trigger::Manual, false)).await
}

async fn run_ok(job: &CostUpdateJob) -> Stats {
    let stats = run(job).await.expect("the run succeeds");
    assert_adds_up(&stats);
    stats
}

/// Every row looked at ends in exactly one of the five outcomes.
fn assert_adds_up(stats: &Stats) {
    let sum: i64 = [
        "updated",
        "would_update",
        "unchanged",
        "skipped",
        "failed",
        "pending",
    ]
    .iter()
    .map(|k| stats.get(k))
    .sum();
    assert_eq!(
        sum,
        stats.get("considered"),
        "stats do not add up: {stats:?}"
    );
}

fn counts(stats: &Stats) -> [i64; 7] {
    [
        "updated",
        "unchanged",
        "skipped",
        "failed",
        "pending",
        "gave_up",
        "considered",
    ]
    .map(|k| stats.get(k))
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

/// A row of `PROJECT` whose request Deepgram prices at 0.0043 (stored as `0.004300`).
async fn a_row_deepgram_prices(server: &MockServer, conn: &mut AsyncPgConnection) -> Uuid {
    let request = new_id();
    answer(
        server,
        PROJECT,
        &request,
        ok(record(PROJECT, &request, priced(json!(0.0043)))),
    )
    .await;
    insert(conn, Some(&format!("{PROJECT}.{request}"))).await
}

async fn insert(conn: &mut AsyncPgConnection, request_id: Option<&str>) -> Uuid {
    diesel::sql_query(
        "INSERT INTO transcriptions (stt_provider_request_id) VALUES ($1) RETURNING id",
    )
    .bind::<Nullable<Text>, _>(request_id)
    .get_result::<Id>(conn)
    .await
    .expect("insert a transcription")
    .id
}

async fn set_cost(conn: &mut AsyncPgConnection, id: Uuid, cost: &str) {
    diesel::sql_query("UPDATE transcriptions SET audio_cost_usd = $2::numeric WHERE id = $1")
        .bind::<diesel::sql_types::Uuid, _>(id)
        .bind::<Text, _>(cost)
        .execute(conn)
        .await
        .expect("set a cost");
}

/// A row as the job leaves it.
#[derive(Debug, Clone, PartialEq, diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = Nullable<Text>)]
    cost: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    status: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    error: Option<String>,
    #[diesel(sql_type = Integer)]
    checks: i32,
    #[diesel(sql_type = Bool)]
    checked: bool,
    #[diesel(sql_type = Bool)]
    gave_up: bool,
}

impl Row {
    fn status(&self) -> Option<&str> {
        self.status.as_deref()
    }
    fn cost(&self) -> Option<&str> {
        self.cost.as_deref()
    }
}

async fn row(conn: &mut AsyncPgConnection, id: Uuid) -> Row {
    diesel::sql_query(
        "SELECT audio_cost_usd::text AS cost, cost_status AS status, cost_error AS error, \
           cost_check_count AS checks, cost_checked_at IS NOT NULL AS checked, \
           cost_gave_up_at IS NOT NULL AS gave_up \
         FROM transcriptions WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .get_result(conn)
    .await
    .expect("read a transcription")
}

/// A row nobody touched: no cost, no bookkeeping.
fn untouched() -> Row {
    Row {
        cost: None,
        status: None,
        error: None,
        checks: 0,
        checked: false,
        gave_up: false,
    }
}

fn new_id() -> String {
    Uuid::new_v4().to_string()
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_update_prices_every_priceable_row_exactly_and_explains_every_other_one() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;

    // Priceable: composed ids in either envelope, a zero price, a bare id in the
    // configured project, and an id with stray whitespace around it.
    let (ra, rb, rc, rd, re) = (new_id(), new_id(), new_id(), new_id(), new_id());
    answer(
        &server,
        PROJECT,
        &ra,
        ok(record(PROJECT, &ra, priced(json!(0.0043)))),
    )
    .await;
    answer(
        &server,
        OTHER_PROJECT,
        &rb,
        ok(json!({"request": record(OTHER_PROJECT, &rb, priced(json!(1.5)))})),
    )
    .await;
    answer(
        &server,
        PROJECT,
        &rc,
        ok(record(PROJECT, &rc, priced(json!(0)))),
    )
    .await;
    answer(
        &server,
        PROJECT,
        &rd,
        ok(record(PROJECT, &rd, priced(json!(0.25)))),
    )
    .await;
    answer(
        &server,
        PROJECT,
        &re,
        ok(record(PROJECT, &re, priced(json!(2)))),
    )
    .await;
    let a = insert(&mut conn, Some(&format!("{PROJECT}.{ra}"))).await;
    let b = insert(&mut conn, Some(&format!("{OTHER_PROJECT}.{rb}"))).await;
    let c = insert(&mut conn, Some(&format!("{PROJECT}.{rc}"))).await;
    let d = insert(&mut conn, Some(&rd)).await;
    let e = insert(&mut conn, Some(&format!("  {PROJECT}.{re}\n"))).await;

    // Not considered at all: no request id, or already priced.
    let no_id = insert(&mut conn, None).await;
    let already = insert(&mut conn, Some(&format!("{PROJECT}.{}", new_id()))).await;
    set_cost(&mut conn, already, "7.7").await;

    // Skipped without asking Deepgram.
    let empty = insert(&mut conn, Some("")).await;
    let blank = insert(&mut conn, Some("   ")).await;
    let garbage = insert(&mut conn, Some("garbage")).await;
    // Any project part is looked up as it is, unless it cannot be an id (whitespace).
    let bad_project = insert(&mut conn, Some(&format!("not a project.{}", new_id()))).await;
    let dots = insert(&mut conn, Some(&format!("{PROJECT}.{}.extra", new_id()))).await;
    let long = insert(&mut conn, Some(&"x".repeat(5_000))).await;

    // Asked, and answered without a usable price.
    let ids: Vec<String> = (0..10).map(|_| new_id()).collect();
    let [rm, rn, ro, rp, rq, rr, rs, rt, ru, rv] = <[String; 10]>::try_from(ids).expect("ten");
    answer(&server, PROJECT, &rm, ok(record(PROJECT, &rm, Value::Null))).await;
    answer(&server, PROJECT, &rn, ok(record(PROJECT, &rn, json!({})))).await;
    answer(&server, PROJECT, &ro, ok(record(PROJECT, &ro, unpriced()))).await;
    let failed_request = json!({"code": 400, "message": "Bad Request: failed to process audio: corrupt or unsupported data"});
    answer(
        &server,
        PROJECT,
        &rp,
        ok(record(PROJECT, &rp, failed_request)),
    )
    .await;
    answer(
        &server,
        PROJECT,
        &rq,
        ok(record(PROJECT, &rq, priced(json!(-0.5)))),
    )
    .await;
    answer(
        &server,
        PROJECT,
        &rr,
        ok(record(PROJECT, &rr, priced(json!(5e6)))),
    )
    .await;
    answer(
        &server,
        PROJECT,
        &rs,
        ok(record(PROJECT, &rs, priced(json!("abc")))),
    )
    .await;
    answer(&server, UNKNOWN_PROJECT, &rt, project_not_found()).await;
    answer(&server, PROJECT, &ru, request_not_found()).await;
    let malformed =
        ResponseTemplate::new(200).set_body_raw("{\"request_id\": ", "application/json");
    answer(&server, PROJECT, &rv, malformed).await;
    let m = insert(&mut conn, Some(&format!("{PROJECT}.{rm}"))).await;
    let n = insert(&mut conn, Some(&format!("{PROJECT}.{rn}"))).await;
    let o = insert(&mut conn, Some(&format!("{PROJECT}.{ro}"))).await;
    let p = insert(&mut conn, Some(&format!("{PROJECT}.{rp}"))).await;
    let q = insert(&mut conn, Some(&format!("{PROJECT}.{rq}"))).await;
    let r = insert(&mut conn, Some(&format!("{PROJECT}.{rr}"))).await;
    let s = insert(&mut conn, Some(&format!("{PROJECT}.{rs}"))).await;
    let t = insert(&mut conn, Some(&format!("{UNKNOWN_PROJECT}.{rt}"))).await;
    let u = insert(&mut conn, Some(&format!("{PROJECT}.{ru}"))).await;
    let v = insert(&mut conn, Some(&format!("{PROJECT}.{rv}"))).await;
    // A bare id the configured project does not hold (wiremock answers 404).
    let missing = insert(&mut conn, Some(&new_id())).await;

    let job = job(&db, &server, &[("DEEPGRAM_PROJECT_ID", PROJECT)]);
    let stats = run_ok(&job).await;
    // updated, unchanged, skipped, failed, pending, gave_up, considered
    assert_eq!(counts(&stats), [5, 0, 8, 7, 2, 6, 22], "{stats:?}");

    for (id, cost) in [
        (a, "0.004300"),
        (b, "1.500000"),
        (c, "0.000000"),
        (d, "0.250000"),
        (e, "2.000000"),
    ] {
        let stored = row(&mut conn, id).await;
        assert_eq!(stored.cost(), Some(cost));
        assert_eq!(stored.status(), Some("priced"));
    }
    assert_eq!(row(&mut conn, no_id).await, untouched());
    assert_eq!(
        row(&mut conn, already).await,
        Row {
            cost: Some("7.700000".to_owned()),
            ..untouched()
        }
    );
    // (row, cost_status, cost_check_count, given up)
    let expectations = [
        (empty, "no_request_id", 1, true),
        (blank, "no_request_id", 1, true),
        (garbage, "malformed_request_id", 1, true),
        (bad_project, "malformed_request_id", 1, true),
        (dots, "malformed_request_id", 1, true),
        (long, "malformed_request_id", 1, true),
        (m, "pending", 1, false),
        (n, "pending", 1, false),
        (o, "no_price", 1, false),
        (p, "request_failed", 1, false),
        (q, "invalid_price", 1, false),
        (r, "invalid_price", 1, false),
        (s, "invalid_price", 1, false),
        // A project Deepgram does not know is not the request's fault.
        (t, "project_not_found", 0, false),
        (u, "not_found", 1, false),
        // Truncated JSON is no answer of Deepgram's: an outage.
        (v, "unavailable", 0, false),
        (missing, "not_found", 1, false),
    ];
    for (id, status, checks, gave_up) in expectations {
        let stored = row(&mut conn, id).await;
        assert_eq!(stored.cost(), None, "{status}: {stored:?}");
        assert_eq!(stored.status(), Some(status), "{stored:?}");
        assert!(
            stored.error.as_deref().is_some_and(|e| !e.is_empty()),
            "{stored:?}"
        );
        assert_eq!(
            (stored.checks, stored.checked, stored.gave_up),
            (checks, true, gave_up),
            "{status}: {stored:?}"
        );
    }
    let project_part = row(&mut conn, bad_project).await.error.unwrap_or_default();
    assert!(project_part.contains("\"not a project\""), "{project_part}");
    let failed = row(&mut conn, p).await.error.unwrap_or_default();
    assert!(
        failed.contains("code 400") && failed.contains("failed to process audio"),
        "{failed}"
    );
    let negative = row(&mut conn, q).await.error.unwrap_or_default();
    assert!(negative.contains("negative"), "{negative}");

    // Malformed ids were never sent; each lookup was one call (no 5xx here).
    for fragment in ["not-a-project", "garbage", "extra", "xxxx"] {
        assert_eq!(
            requests_to(&server, fragment).await,
            0,
            "{fragment} was sent"
        );
    }
    assert_eq!(requests_to(&server, "/v1/projects/").await, 16);

    // Nothing is asked twice: a second run has only the pending rows and the ones that
    // have not reached the give-up limit yet.
    let again = run_ok(&job).await;
    assert_eq!(again.get("considered"), 11, "{again:?}");
    assert_eq!(row(&mut conn, a).await.cost(), Some("0.004300"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_ids_are_looked_up_in_each_project_the_key_can_see_until_one_has_them() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/projects"))
        .respond_with(ok(json!({"projects": [
            {"project_id": PROJECT, "name": "Staging"},
            {"project_id": OTHER_PROJECT, "name": "Production"}
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    // The first project holds only one composed id; everything else there is a 404.
    let composed = new_id();
    Mock::given(method("GET"))
        .and(path(format!("/v1/projects/{PROJECT}/requests/{composed}")))
        .respond_with(ok(record(PROJECT, &composed, priced(json!(0.1)))))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(format!("^/v1/projects/{PROJECT}/requests/")))
        .respond_with(request_not_found())
        .with_priority(2)
        .mount(&server)
        .await;
    let mut bare = Vec::new();
    for (i, usd) in [0.0043, 0.5, 12.0].into_iter().enumerate() {
        let request = new_id();
        answer(
            &server,
            OTHER_PROJECT,
            &request,
            ok(record(OTHER_PROJECT, &request, priced(json!(usd)))),
        )
        .await;
        let id = insert(&mut conn, Some(&request)).await;
        bare.push((id, ["0.004300", "0.500000", "12.000000"][i]));
    }
    let nowhere = insert(&mut conn, Some(&new_id())).await;
    let composed_row = insert(&mut conn, Some(&format!("{PROJECT}.{composed}"))).await;

    let job = job(&db, &server, &[("COST_UPDATE_CONCURRENCY", "1")]);
    let stats = run_ok(&job).await;
    assert_eq!(counts(&stats), [4, 0, 1, 0, 0, 0, 5], "{stats:?}");
    for (id, cost) in bare {
        assert_eq!(row(&mut conn, id).await.cost(), Some(cost));
    }
    assert_eq!(row(&mut conn, composed_row).await.cost(), Some("0.100000"));
    let lost = row(&mut conn, nowhere).await;
    assert_eq!(lost.status(), Some("not_found"));
    assert!(
        lost.error
            .as_deref()
            .unwrap_or_default()
            .contains("2 project(s)"),
        "{lost:?}"
    );
    // Once a bare id was found in the second project, that one is asked first: the first
    // project sees at most the lookups before that and the id found nowhere.
    let first_project_bare = requests_to(&server, &format!("{PROJECT}/requests/")).await - 1;
    assert!(
        first_project_bare <= 2,
        "{first_project_bare} lookups in the first project"
    );
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_priced_by_someone_else_during_the_lookup_counts_as_unchanged_and_keeps_its_cost() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;
    let request = new_id();
    answer(
        &server,
        PROJECT,
        &request,
        ok(record(PROJECT, &request, priced(json!(0.0043)))).set_delay(Duration::from_millis(1500)),
    )
    .await;
    let id = insert(&mut conn, Some(&format!("{PROJECT}.{request}"))).await;

    let job = Arc::new(job(&db, &server, &[]));
    let running = tokio::spawn({
        let job = Arc::clone(&job);
        async move { run(&job).await }
    });
    // The row was read once Deepgram is asked; price it before the answer comes back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while requests_to(&server, &request).await == 0 {
        assert!(Instant::now() < deadline, "Deepgram was never asked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    set_cost(&mut conn, id, "9.99").await;

    let stats = running
        .await
        .expect("the run task")
        .expect("the run succeeds");
    assert_adds_up(&stats);
    assert_eq!(counts(&stats), [0, 1, 0, 0, 0, 0, 1], "{stats:?}");
    assert_eq!(row(&mut conn, id).await.cost(), Some("9.990000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_rows_stay_null_and_are_asked_again_until_deepgram_has_the_price() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;
    let request = new_id();
    // Still processing on the first two runs, priced on the third.
    Mock::given(method("GET"))
        .and(path(format!("/v1/projects/{PROJECT}/requests/{request}")))
        .respond_with(ok(record(PROJECT, &request, Value::Null)))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    answer(
        &server,
        PROJECT,
        &request,
        ok(record(PROJECT, &request, priced(json!(0.0043)))),
    )
    .await;
    let id = insert(&mut conn, Some(&format!("{PROJECT}.{request}"))).await;

    // Pending rows have their own, longer limit: one check is not enough to give up.
    let job = job(&db, &server, &[("COST_UPDATE_MAX_CHECKS", "1")]);
    for checks in 1..=2 {
        let stats = run_ok(&job).await;
        assert_eq!(counts(&stats), [0, 0, 0, 0, 1, 0, 1], "{stats:?}");
        let pending = row(&mut conn, id).await;
        assert_eq!(
            (
                pending.cost(),
                pending.status(),
                pending.checks,
                pending.gave_up
            ),
            (None, Some("pending"), checks, false)
        );
    }
    let stats = run_ok(&job).await;
    assert_eq!(counts(&stats), [1, 0, 0, 0, 0, 0, 1], "{stats:?}");
    let done = row(&mut conn, id).await;
    assert_eq!(
        (done.cost(), done.status(), done.error.as_deref()),
        (Some("0.004300"), Some("priced"), None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_can_never_be_priced_are_given_up_after_the_configured_number_of_runs() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;
    let ids: Vec<String> = (0..5).map(|_| new_id()).collect();
    let [no_price, failed, gone, pending, down] = <[String; 5]>::try_from(ids).expect("five");
    let failed_request = json!({"code": 400, "message": "Bad Request: failed to process audio"});
    for (request, response, calls) in [
        (&no_price, ok(record(PROJECT, &no_price, unpriced())), 2),
        (&failed, ok(record(PROJECT, &failed, failed_request)), 2),
        (&gone, request_not_found(), 2),
        (&pending, ok(record(PROJECT, &pending, json!({}))), 3),
        // Always down: 2 attempts on each of the 4 runs, never given up.
        (
            &down,
            ResponseTemplate::new(503).set_body_string("upstream unavailable"),
            8,
        ),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/v1/projects/{PROJECT}/requests/{request}")))
            .respond_with(response)
            .expect(calls)
            .mount(&server)
            .await;
    }
    let mut rows = Vec::new();
    for request in [&no_price, &failed, &gone, &pending, &down] {
        rows.push(insert(&mut conn, Some(&format!("{PROJECT}.{request}"))).await);
    }
    let job = job(
        &db,
        &server,
        &[
            ("COST_UPDATE_MAX_CHECKS", "2"),
            ("COST_UPDATE_MAX_PENDING_CHECKS", "3"),
        ],
    );

    // updated, unchanged, skipped, failed, pending, gave_up, considered
    let first = run_ok(&job).await;
    assert_eq!(counts(&first), [0, 0, 1, 3, 1, 0, 5], "{first:?}");
    let second = run_ok(&job).await;
    assert_eq!(counts(&second), [0, 0, 1, 3, 1, 3, 5], "{second:?}");
    let third = run_ok(&job).await;
    assert_eq!(counts(&third), [0, 0, 0, 1, 1, 1, 2], "{third:?}");
    let fourth = run_ok(&job).await;
    assert_eq!(counts(&fourth), [0, 0, 0, 1, 0, 0, 1], "{fourth:?}");

    let states: Vec<(Option<String>, i32, bool)> = {
        let mut states = Vec::new();
        for id in &rows {
            let r = row(&mut conn, *id).await;
            assert_eq!(r.cost(), None);
            states.push((r.status, r.checks, r.gave_up));
        }
        states
    };
    assert_eq!(
        states,
        vec![
            (Some("no_price".to_owned()), 2, true),
            (Some("request_failed".to_owned()), 2, true),
            (Some("not_found".to_owned()), 2, true),
            (Some("pending".to_owned()), 3, true),
            (Some("unavailable".to_owned()), 0, false),
        ]
    );
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_api_key_fails_the_run_at_once_with_a_clear_message_and_touches_no_row() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex("^/v1/projects"))
        .respond_with(invalid_auth())
        .mount(&server)
        .await;
    let mut rows = Vec::new();
    for _ in 0..30 {
        rows.push(insert(&mut conn, Some(&format!("{PROJECT}.{}", new_id()))).await);
    }
    rows.push(insert(&mut conn, Some(&new_id())).await);
    rows.push(insert(&mut conn, Some("garbage")).await);

    let pool = db.pool();
    let job = CostUpdateJob::from_config(&config(&server, &[]), pool.clone()).expect("job");
    let runner = Arc::new(Runner::new(
        Arc::new(db::PgExecutionLog::new(pool)),
        RunnerSettings::default(),
    ));
    let registered = Arc::new(RegisteredJob::new(
        job,
        Schedule::parse("0 3 * * *").expect("schedule"),
    ));
    let report = runner
        .run(registered, RunRequest::manual(false))
        .await
        .expect("the run starts");

    assert_eq!(report.status, Status::Failed);
    let message = report.error_message.unwrap_or_default();
    assert!(
        message.starts_with("Deepgram rejected DEEPGRAM_API_KEY (401 INVALID_AUTH)"),
        "{message}"
    );
    assert!(!message.contains(KEY), "the key leaked: {message}");
    assert_eq!(report.stats.get("considered"), 0, "{:?}", report.stats);
    let record = report.record.expect("the execution is recorded");
    assert_eq!(record.status, Status::Failed);
    assert_eq!(record.error_message.as_deref(), Some(message.as_str()));
    // At most the lookups already in flight when the first 401 came back.
    let calls = requests_to(&server, "/v1/projects").await;
    assert!((1..=8).contains(&calls), "{calls} calls");
    for id in rows {
        assert_eq!(row(&mut conn, id).await, untouched());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_and_failing_lookups_are_failed_rows_that_are_tried_again_every_run() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;
    let (limited, broken, fine) = (new_id(), new_id(), new_id());
    let too_many = ResponseTemplate::new(429)
        .insert_header("Retry-After", "0")
        .set_body_json(json!({"err_code": "TOO_MANY_REQUESTS", "err_msg": "Too many requests.", "request_id": "r-1"}));
    answer(&server, PROJECT, &limited, too_many).await;
    answer(
        &server,
        PROJECT,
        &broken,
        ResponseTemplate::new(500).set_body_string("Internal Server Error"),
    )
    .await;
    answer(
        &server,
        PROJECT,
        &fine,
        ok(record(PROJECT, &fine, priced(json!(0.75)))),
    )
    .await;
    let limited_row = insert(&mut conn, Some(&format!("{PROJECT}.{limited}"))).await;
    let broken_row = insert(&mut conn, Some(&format!("{PROJECT}.{broken}"))).await;
    let fine_row = insert(&mut conn, Some(&format!("{PROJECT}.{fine}"))).await;

    let job = job(&db, &server, &[("COST_UPDATE_MAX_CHECKS", "1")]);
    let first = run_ok(&job).await;
    assert_eq!(counts(&first), [1, 0, 0, 2, 0, 0, 3], "{first:?}");
    let second = run_ok(&job).await;
    assert_eq!(counts(&second), [0, 0, 0, 2, 0, 0, 2], "{second:?}");

    assert_eq!(row(&mut conn, fine_row).await.cost(), Some("0.750000"));
    for id in [limited_row, broken_row] {
        let r = row(&mut conn, id).await;
        assert_eq!(
            (r.cost(), r.status(), r.checks, r.gave_up),
            (None, Some("unavailable"), 0, false)
        );
    }
    let reason = row(&mut conn, limited_row).await.error.unwrap_or_default();
    assert!(reason.contains("429"), "{reason}");
    // Two attempts per lookup per run.
    assert_eq!(requests_to(&server, &limited).await, 4);
    assert_eq!(requests_to(&server, &broken).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_fails_when_deepgram_fails_too_many_lookups_in_a_row() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex("^/v1/projects/"))
        .respond_with(ResponseTemplate::new(503).set_body_string("no healthy upstream"))
        .mount(&server)
        .await;
    for _ in 0..6 {
        insert(&mut conn, Some(&format!("{PROJECT}.{}", new_id()))).await;
    }
    let job = job(
        &db,
        &server,
        &[
            ("COST_UPDATE_MAX_CONSECUTIVE_ERRORS", "3"),
            ("COST_UPDATE_CONCURRENCY", "1"),
            ("DEEPGRAM_MAX_ATTEMPTS", "1"),
        ],
    );
    let error = run(&job).await.expect_err("the run fails");
    assert!(
        error
            .message
            .starts_with("3 Deepgram lookups in a row failed"),
        "{}",
        error.message
    );
    let stats = error.stats.expect("stats so far");
    assert_adds_up(&stats);
    assert_eq!(counts(&stats), [0, 0, 0, 3, 0, 0, 3], "{stats:?}");
    assert_eq!(requests_to(&server, "/v1/projects/").await, 3);
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let checked: N = diesel::sql_query(
        "SELECT count(*) AS n FROM transcriptions WHERE cost_status = 'unavailable' AND cost_check_count = 0",
    )
    .get_result(&mut conn)
    .await
    .expect("count");
    assert_eq!(checked.n, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_written_to_the_running_execution_as_batches_complete() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;
    let mut rows = Vec::new();
    for _ in 0..7 {
        let request = new_id();
        answer(
            &server,
            PROJECT,
            &request,
            ok(record(PROJECT, &request, priced(json!(0.01))))
                .set_delay(Duration::from_millis(200)),
        )
        .await;
        rows.push(insert(&mut conn, Some(&format!("{PROJECT}.{request}"))).await);
    }
    let pool = db.pool();
    let config = config(
        &server,
        &[
            ("COST_UPDATE_BATCH_SIZE", "2"),
            ("COST_UPDATE_CONCURRENCY", "2"),
        ],
    );
    let job = CostUpdateJob::from_config(&config, pool.clone()).expect("job");
    let runner = Arc::new(Runner::new(
        Arc::new(db::PgExecutionLog::new(pool)),
        RunnerSettings {
            progress_interval: Duration::from_millis(20),
            heartbeat_interval: Duration::from_millis(20),
            ..RunnerSettings::default()
        },
    ));
    let registered = Arc::new(RegisteredJob::new(
        job,
        Schedule::parse("0 3 * * *").expect("schedule"),
    ));
    let running = tokio::spawn({
        let runner = Arc::clone(&runner);
        async move { runner.run(registered, RunRequest::manual(false)).await }
    });

    #[derive(diesel::QueryableByName)]
    struct Progress {
        #[diesel(sql_type = Nullable<diesel::sql_types::Jsonb>)]
        stats: Option<Value>,
    }
    let mut seen = Vec::new();
    while !running.is_finished() {
        let progress: Vec<Progress> = diesel::sql_query(
            "SELECT stats FROM job_executions WHERE job_name = 'cost_update' AND status = 'running'",
        )
        .load(&mut conn)
        .await
        .expect("read the execution");
        for p in progress {
            if let Some(considered) = p.stats.as_ref().and_then(|s| s["considered"].as_i64()) {
                seen.push(considered);
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let report = running.await.expect("run task").expect("run starts");
    assert_eq!(report.status, Status::Success, "{:?}", report.error_message);
    assert_eq!(
        counts(&report.stats),
        [7, 0, 0, 0, 0, 0, 7],
        "{:?}",
        report.stats
    );
    assert!(
        seen.iter().any(|n| (1..7).contains(n)),
        "no partial progress on the running execution: {seen:?}"
    );
    let record = report.record.expect("recorded");
    assert_eq!(record.stats["updated"], json!(7));
    for id in rows {
        assert_eq!(row(&mut conn, id).await.cost(), Some("0.010000"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_counts_what_it_would_do_and_writes_nothing() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;
    let (good, bad) = (new_id(), new_id());
    answer(
        &server,
        PROJECT,
        &good,
        ok(record(PROJECT, &good, priced(json!(0.0043)))),
    )
    .await;
    answer(
        &server,
        PROJECT,
        &bad,
        ok(record(PROJECT, &bad, unpriced())),
    )
    .await;
    let rows = [
        insert(&mut conn, Some(&format!("{PROJECT}.{good}"))).await,
        insert(&mut conn, Some(&format!("{PROJECT}.{bad}"))).await,
        insert(&mut conn, Some("garbage")).await,
    ];
    let job = job(&db, &server, &[]);
    assert!(job.supports_dry_run());
    let stats = job
        .run(&JobContext::new(1, Trigger::Manual, true))
        .await
        .expect("dry run");
    assert_adds_up(&stats);
    // What a real run would store and give up on is told apart from what it did.
    assert_eq!(counts(&stats), [0, 0, 1, 1, 0, 0, 3], "{stats:?}");
    assert_eq!(
        (stats.get("would_update"), stats.get("would_give_up")),
        (1, 1),
        "{stats:?}"
    );
    for id in rows {
        assert_eq!(row(&mut conn, id).await, untouched());
    }
    let real = run_ok(&job).await;
    assert_eq!(counts(&real), [1, 0, 1, 1, 0, 1, 3], "{real:?}");
    assert_eq!(real.get("would_update"), 0, "{real:?}");
    assert_eq!(row(&mut conn, rows[0]).await.cost(), Some("0.004300"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_api_key_the_job_is_disabled_and_says_why() {
    let pool = db::ConnectTarget::parse("postgres://postgres@127.0.0.1:5432/unused")
        .expect("target")
        .pool(1)
        .expect("pool");
    let config = Config::from_vars(Vars::default()).expect("config");
    let job = CostUpdateJob::from_config(&config, pool).expect("job");
    assert_eq!(
        job.disabled_reason().as_deref(),
        Some("DEEPGRAM_API_KEY is not set")
    );
    assert_eq!(job.name(), "cost_update");
    assert_eq!(job.display_name(), "Cost Update");
    assert_eq!(job.default_schedule(), "0 3 * * *");
    assert_eq!(
        job.summary_keys(),
        ["updated", "unchanged", "skipped", "failed"]
    );
    let error = job
        .run(&JobContext::new(1, Trigger::Manual, false))
        .await
        .expect_err("a disabled job does not run");
    assert!(
        error.message.contains("DEEPGRAM_API_KEY"),
        "{}",
        error.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_refused_with_the_variable_named_and_no_secret_shown() {
    let pool = db::ConnectTarget::parse("postgres://postgres@127.0.0.1:5432/unused")
        .expect("target")
        .pool(1)
        .expect("pool");
    let base = [("DEEPGRAM_API_KEY", KEY)];
    for (name, value) in [
        ("DEEPGRAM_PROJECT_ID", "my-project"),
        (
            "DEEPGRAM_PROJECT_ID",
            "3b1fe4f2-9c3e-4e0a-8f5a-2a54c1d0b7aa.x",
        ),
        ("COST_UPDATE_CONCURRENCY", "0"),
        ("COST_UPDATE_BATCH_SIZE", "lots"),
        ("COST_UPDATE_MAX_CHECKS", "0"),
        ("DEEPGRAM_REQUESTS_PER_SECOND", "-1"),
        ("DEEPGRAM_REQUEST_TIMEOUT_SECS", "0"),
        ("DEEPGRAM_API_URL", "https://api.deepgram.com/?region=eu"),
    ] {
        let config = Config::from_vars(Vars::from_pairs(base.into_iter().chain([(name, value)])))
            .expect("config");
        let error = CostUpdateJob::from_config(&config, pool.clone()).expect_err(value);
        assert_eq!(error.variable, name, "{error}");
        assert!(!error.to_string().contains(KEY));
    }
    let config = Config::from_vars(Vars::from_pairs([("DEEPGRAM_API_KEY", "bad\u{7f}key")]))
        .expect("config");
    let error = CostUpdateJob::from_config(&config, pool).expect_err("unusable key");
    assert_eq!(error.variable, "DEEPGRAM_API_KEY");
    assert!(!error.to_string().contains("bad\u{7f}key"), "{error}");
}

/// A Deepgram that admits `capacity` lookups at once and answers the others 429 without
/// `Retry-After`, as its Management API does under a concurrency limit. Each admitted
/// lookup takes `latency`; the windows of admitted lookups tell how many are in flight.
struct ConcurrencyLimited {
    capacity: usize,
    latency: Duration,
    admitted: std::sync::Mutex<Vec<Instant>>,
    too_many: std::sync::atomic::AtomicUsize,
    served: std::sync::atomic::AtomicUsize,
}

impl wiremock::Respond for ConcurrencyLimited {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        use std::sync::atomic::Ordering;
        let now = Instant::now();
        let mut ends = self.admitted.lock().unwrap();
        ends.retain(|end| *end > now);
        if ends.len() >= self.capacity {
            self.too_many.fetch_add(1, Ordering::SeqCst);
            return ResponseTemplate::new(429).set_body_json(json!({
                "err_code": "TOO_MANY_REQUESTS",
                "err_msg": "Too many requests. Please try again later.",
                "request_id": "5f4d3c2b-1a09-4876-9543-210fedcba987"
            }));
        }
        ends.push(now + self.latency);
        self.served.fetch_add(1, Ordering::SeqCst);
        let request_id = request.url.path().rsplit('/').next().unwrap_or_default();
        ok(record(PROJECT, request_id, priced(json!(0.25)))).set_delay(self.latency)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_vendor_concurrency_limit_the_job_slows_down_as_a_whole_and_no_row_fails() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;
    let deepgram = Arc::new(ConcurrencyLimited {
        capacity: 4,
        latency: Duration::from_millis(40),
        admitted: std::sync::Mutex::new(Vec::new()),
        too_many: Default::default(),
        served: Default::default(),
    });
    struct Shared(Arc<ConcurrencyLimited>);
    impl wiremock::Respond for Shared {
        fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
            self.0.respond(request)
        }
    }
    Mock::given(method("GET"))
        .and(path_regex(format!("^/v1/projects/{PROJECT}/requests/")))
        .respond_with(Shared(Arc::clone(&deepgram)))
        .mount(&server)
        .await;
    let rows = 120;
    for _ in 0..rows {
        insert(&mut conn, Some(&format!("{PROJECT}.{}", new_id()))).await;
    }
    let job = job(
        &db,
        &server,
        &[
            ("COST_UPDATE_CONCURRENCY", "16"),
            ("DEEPGRAM_MAX_ATTEMPTS", "4"),
            ("DEEPGRAM_BACKOFF_MS", "20"),
        ],
    );

    let stats = run_ok(&job).await;

    assert_eq!(counts(&stats), [rows, 0, 0, 0, 0, 0, rows], "{stats:?}");
    // Each lookup alone would keep 12 of 16 calls bouncing; the shared limit keeps the
    // 429s well below one per row.
    let too_many = AtomicUsize::load(&deepgram.too_many, Ordering::SeqCst) as i64;
    assert!(
        too_many < rows / 2,
        "{too_many} answers were 429 for {rows} rows"
    );
    assert_eq!(
        AtomicUsize::load(&deepgram.served, Ordering::SeqCst) as i64,
        rows
    );
    let limit = stats.get("concurrency_limit");
    assert!(
        (1..16).contains(&limit),
        "the live limit came down: {limit}"
    );
}

/// A project whose lookups get `refusal` (10 rows, first in id order) and one that prices
/// its row: the refused project is asked once, its rows fail as `forbidden` without
/// counting towards giving up, and the other project's row is priced.
async fn a_refused_project_is_asked_once_and_the_others_go_on(refusal: ResponseTemplate) {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(format!(
            "^/v1/projects/{OTHER_PROJECT}/requests/.*$"
        )))
        .respond_with(refusal)
        .mount(&server)
        .await;
    for n in 0..10 {
        diesel::sql_query(format!(
            "INSERT INTO transcriptions (id, stt_provider_request_id) VALUES \
             ('00000000-0000-4000-8000-{n:012}', '{OTHER_PROJECT}.{}')",
            new_id()
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let priced_row = a_row_deepgram_prices(&server, &mut conn).await;

    // One lookup at a time, so that none is in flight when the first refusal comes back;
    // a streak limit below the refused rows, which must not grow it.
    let job = job(
        &db,
        &server,
        &[
            ("COST_UPDATE_MAX_CONSECUTIVE_ERRORS", "3"),
            ("COST_UPDATE_CONCURRENCY", "1"),
        ],
    );
    let stats = run_ok(&job).await;

    assert_eq!(
        (stats.get("updated"), stats.get("failed")),
        (1, 10),
        "{stats:?}"
    );
    assert_eq!(row(&mut conn, priced_row).await.cost(), Some("0.004300"));
    assert_eq!(
        requests_to(&server, OTHER_PROJECT).await,
        1,
        "the refused project is asked once per run"
    );
    let refused = row(
        &mut conn,
        Uuid::parse_str("00000000-0000-4000-8000-000000000000").unwrap(),
    )
    .await;
    assert_eq!(refused.status(), Some("forbidden"), "{refused:?}");
    assert_eq!(refused.checks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_the_key_may_not_read_is_asked_once_and_does_not_stop_the_others() {
    a_refused_project_is_asked_once_and_the_others_go_on(ResponseTemplate::new(403).set_body_json(
        json!({
            "category": "INSUFFICIENT_PERMISSIONS",
            "message": "Your account does not have permission to access this project.",
        }),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_for_a_missing_permission_refuses_one_project_and_the_run_goes_on() {
    a_refused_project_is_asked_once_and_the_others_go_on(ResponseTemplate::new(401).set_body_json(
        json!({
            "err_code": "INSUFFICIENT_PERMISSIONS",
            "err_msg": "User does not have sufficient permissions.",
            "request_id": "5b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
        }),
    ))
    .await;
}

/// Runs the job `times` times, each run succeeding.
async fn run_times(job: &CostUpdateJob, times: usize) {
    for _ in 0..times {
        run_ok(job).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_are_not_deepgrams_json_are_outages_and_never_give_a_row_up() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;
    let redirect = ResponseTemplate::new(301).insert_header("location", "https://portal.example/");
    let empty = ResponseTemplate::new(200);
    let proxy = ResponseTemplate::new(407)
        .insert_header("proxy-authenticate", "Basic realm=\"corp\"")
        .set_body_string("Proxy Authentication Required");
    // Far beyond any answer of Deepgram's (the client reads at most a few MiB).
    let huge = ResponseTemplate::new(200).set_body_raw(
        vec![b' '; deepgram_client::MAX_RESPONSE_BYTES + 1],
        "application/json",
    );
    let mut rows = Vec::new();
    for template in [redirect, empty, proxy, huge] {
        let request = new_id();
        answer(&server, PROJECT, &request, template).await;
        rows.push(insert(&mut conn, Some(&format!("{PROJECT}.{request}"))).await);
    }
    // A bare id, and a "list of projects" that is not Deepgram's.
    Mock::given(method("GET"))
        .and(path("/v1/projects"))
        .respond_with(ok(json!({})))
        .mount(&server)
        .await;
    rows.push(insert(&mut conn, Some(&new_id())).await);

    // More runs than COST_UPDATE_MAX_CHECKS (5): none of them counts against a row.
    let job = job(&db, &server, &[]);
    run_times(&job, 6).await;

    for id in rows {
        let stored = row(&mut conn, id).await;
        assert_eq!(stored.status(), Some("unavailable"), "{stored:?}");
        assert_eq!((stored.checks, stored.gave_up), (0, false), "{stored:?}");
        assert_eq!(stored.cost(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_deepgram_does_not_know_is_asked_once_and_named_and_never_gives_rows_up() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(format!(
            "^/v1/projects/{UNKNOWN_PROJECT}/requests/.*$"
        )))
        .respond_with(project_not_found())
        .mount(&server)
        .await;
    let mut bare = Vec::new();
    for _ in 0..3 {
        bare.push(insert(&mut conn, Some(&new_id())).await);
    }
    let composed = insert(&mut conn, Some(&format!("{UNKNOWN_PROJECT}.{}", new_id()))).await;
    let priced_row = a_row_deepgram_prices(&server, &mut conn).await;

    let job = job(
        &db,
        &server,
        &[
            ("DEEPGRAM_PROJECT_ID", UNKNOWN_PROJECT),
            ("COST_UPDATE_CONCURRENCY", "1"),
        ],
    );
    let stats = run_ok(&job).await;
    assert_eq!(stats.get("updated"), 1, "{stats:?}");
    assert_eq!(row(&mut conn, priced_row).await.cost(), Some("0.004300"));
    assert_eq!(
        requests_to(&server, UNKNOWN_PROJECT).await,
        1,
        "the unknown project is asked once per run"
    );
    run_times(&job, 5).await;
    for id in bare {
        let stored = row(&mut conn, id).await;
        assert_eq!(stored.status(), Some("project_not_found"), "{stored:?}");
        assert_eq!((stored.checks, stored.gave_up), (0, false), "{stored:?}");
        let error = stored.error.unwrap_or_default();
        assert!(
            error.contains("DEEPGRAM_PROJECT_ID") && error.contains(UNKNOWN_PROJECT),
            "{error}"
        );
        assert!(!error.contains("retention"), "{error}");
    }
    let stored = row(&mut conn, composed).await;
    assert_eq!(stored.status(), Some("project_not_found"), "{stored:?}");
    assert_eq!((stored.checks, stored.gave_up), (0, false), "{stored:?}");
    assert!(
        stored.error.unwrap_or_default().contains(UNKNOWN_PROJECT),
        "the wrong project is named"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_do_not_price_the_row_are_told_apart_and_never_stored_as_zero() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;
    let mut expect = Vec::new();
    // Positive prices that NUMERIC(12,6) would round to 0.
    for usd in [json!(0.0000004), json!(1e-7), json!(5e-324)] {
        let request = new_id();
        answer(
            &server,
            PROJECT,
            &request,
            ok(record(PROJECT, &request, priced(usd))),
        )
        .await;
        let id = insert(&mut conn, Some(&format!("{PROJECT}.{request}"))).await;
        expect.push((id, "invalid_price", 1));
    }
    // The record of the same request id in another project.
    let request = new_id();
    answer(
        &server,
        PROJECT,
        &request,
        ok(record(OTHER_PROJECT, &request, priced(json!(0.5)))),
    )
    .await;
    let id = insert(&mut conn, Some(&format!("{PROJECT}.{request}"))).await;
    expect.push((id, "bad_answer", 1));
    // A message without an error code: the original request did not fail.
    for response in [
        json!({"message": "ok", "code": 200}),
        json!({"message": "processing"}),
    ] {
        let request = new_id();
        answer(
            &server,
            PROJECT,
            &request,
            ok(record(PROJECT, &request, response)),
        )
        .await;
        let id = insert(&mut conn, Some(&format!("{PROJECT}.{request}"))).await;
        expect.push((id, "pending", 1));
    }

    let stats = run_ok(&job(&db, &server, &[])).await;
    assert_eq!(stats.get("updated"), 0, "{stats:?}");
    for (id, status, checks) in expect {
        let stored = row(&mut conn, id).await;
        assert_eq!(stored.cost(), None, "{status}: {stored:?}");
        assert_eq!(stored.status(), Some(status), "{stored:?}");
        assert_eq!(stored.checks, checks, "{stored:?}");
        let error = stored.error.clone().unwrap_or_default();
        if status == "invalid_price" {
            assert!(error.contains("below 0.0000005"), "{error}");
        }
        if status == "bad_answer" {
            assert!(error.contains(OTHER_PROJECT), "{error}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_spelled_with_json_escapes_in_an_answer_is_never_stored() {
    let db = TestDatabase::new().await;
    let mut conn = db.connect().await;
    let server = MockServer::start().await;
    // KEY as a JSON encoder may write it: its first character as a \u escape.
    let escaped = format!("\\u{:04x}{}", u32::from(KEY.as_bytes()[0]), &KEY[1..]);
    let rejected = new_id();
    answer(
        &server,
        PROJECT,
        &rejected,
        ResponseTemplate::new(400).set_body_raw(
            format!(
                r#"{{"err_code":"BAD_REQUEST","err_msg":"bad token {escaped}","request_id":"r"}}"#
            ),
            "application/json",
        ),
    )
    .await;
    let failed = new_id();
    let body = record(PROJECT, &failed, json!({"code": 400, "message": "MARK"}))
        .to_string()
        .replace("MARK", &format!("audio fetch with {escaped} failed"));
    answer(
        &server,
        PROJECT,
        &failed,
        ResponseTemplate::new(200).set_body_raw(body, "application/json"),
    )
    .await;
    let a = insert(&mut conn, Some(&format!("{PROJECT}.{rejected}"))).await;
    let b = insert(&mut conn, Some(&format!("{PROJECT}.{failed}"))).await;

    run_ok(&job(&db, &server, &[])).await;

    for (id, status) in [(a, "rejected"), (b, "request_failed")] {
        let stored = row(&mut conn, id).await;
        assert_eq!(stored.status(), Some(status), "{stored:?}");
        let error = stored.error.unwrap_or_default();
        assert!(
            !error.contains(KEY) && !error.contains(&escaped),
            "the key leaked: {error}"
        );
        assert!(error.contains("***"), "{error}");
    }
}
