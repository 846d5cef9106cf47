//! The admin dashboard (`GET /`) in a real headless Chromium, driven over WebDriver by
//! fantoccini, against the real server binary and a seeded PostgreSQL database.
//!
//! Needs `chromium` and `chromedriver` (`scripts/install-test-deps.sh`); `CHROMIUM` and
//! `CHROMEDRIVER` override their paths. Screenshots of every state are written to
//! `target/test-artifacts/`; with `UPDATE_DASHBOARD_SCREENSHOT=1`, the one of the cards
//! after a success and a failure is also copied to `docs/dashboard.png`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use db::testing::TestDatabase;
use diesel_async::RunQueryDsl;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::browser::{js_str, Browser, Server};
use crate::support::sql;
use crate::support::storage::{audio_bucket, SERVICE_ROLE_KEY};

const TOKEN: &str = "browser-admin-token-0123456789";

/// Both jobs enabled; their services are never reached unless a test runs a job.
const BOTH_ENABLED: &[(&str, &str)] = &[
    ("SUPABASE_URL", "http://127.0.0.1:9"),
    ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY),
    ("DEEPGRAM_API_KEY", "browser-test-deepgram-key"),
    ("DEEPGRAM_API_URL", "http://127.0.0.1:9"),
];

/// The latest cron slot of a job's default schedule (daily, UTC) at or before now, in SQL.
fn latest_slot(job: &str) -> String {
    let hour = match job {
        "audio_cleanup" => 2,
        "cost_update" => 3,
        other => panic!("no schedule known for {other}"),
    };
    let today = format!("(date_trunc('day', now(), 'UTC') + interval '{hour} hours')");
    format!("({today} - CASE WHEN {today} > now() THEN interval '1 day' ELSE interval '0' END)")
}

/// A finished scheduled execution of a job, `days_ago` days before its latest slot (0: the
/// latest slot itself). A test seeds each job's latest slot, so that the scheduler does
/// not record missed slots for it whatever the time of day.
fn finished(
    job: &str,
    status: &str,
    days_ago: i64,
    duration_ms: i64,
    stats: Value,
    error: Option<&str>,
) -> String {
    let slot = format!("({} - {days_ago} * interval '1 day')", latest_slot(job));
    format!(
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, \
         stats, error_message, triggered_by, scheduled_for, worker_id) VALUES ({job}, {status}, \
         {slot} + interval '250 milliseconds', \
         {slot} + interval '250 milliseconds' + {duration_ms} * interval '1 millisecond', \
         {duration_ms}, {stats}::jsonb, {error}, 'schedule', {slot}, 'web-1:8080')",
        job = lit(job),
        status = lit(status),
        stats = lit(&stats.to_string()),
        error = error.map_or_else(|| "NULL".to_owned(), lit),
    )
}

/// Whether a "Last run" fact reads like a relative time with the exact one under it.
fn relative_and_exact(fact: &str) -> bool {
    let mut lines = fact.lines();
    let relative = lines.next().unwrap_or_default();
    let exact = lines.next().unwrap_or_default();
    (relative.ends_with(" ago") || relative == "just now" || relative == "yesterday")
        && exact.ends_with(" UTC")
}

/// An execution running on another server, with a lease that is being renewed.
fn running(job: &str, started_secs_ago: i64, stats: Value) -> String {
    format!(
        "INSERT INTO job_executions (job_name, status, started_at, stats, triggered_by, attempt, \
         worker_id, heartbeat_at, lease_expires_at) VALUES ({job}, 'running', \
         now() - {started_secs_ago} * interval '1 second', {stats}::jsonb, 'manual', 1, \
         'web-2:8080', now(), now() + interval '1 hour')",
        job = lit(job),
        stats = lit(&stats.to_string()),
    )
}

/// An SQL string literal.
fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// JavaScript for the card of a job.
fn card(job: &str) -> String {
    format!(
        "document.querySelector('article.card[data-job={}]')",
        js_str(job)
    )
}

async fn cards_shown(browser: &Browser, count: usize) {
    browser
        .wait_for(
            &format!("{count} job cards"),
            &format!(
                "document.querySelectorAll('#jobs article.card[data-job]').length === {count} \
                 && document.getElementById('jobs').getAttribute('aria-busy') === 'false'"
            ),
        )
        .await;
}

async fn wait_status(browser: &Browser, job: &str, status: &str) {
    browser
        .wait_for(
            &format!("{job} shown as {status}"),
            &format!(
                "{c} && {c}.dataset.status === {s}",
                c = card(job),
                s = js_str(status)
            ),
        )
        .await;
}

/// The stat grid of a card, label → shown value.
async fn stats(browser: &Browser, job: &str) -> BTreeMap<String, String> {
    let value = browser
        .eval(&format!(
            "Object.fromEntries(Array.from({}.querySelectorAll('.stats .stat'))\
             .map(s => [s.querySelector('dt').textContent, s.querySelector('dd').textContent]))",
            card(job)
        ))
        .await;
    serde_json::from_value(value).unwrap_or_default()
}

/// The facts of a card (Last run, Duration, Next run, Schedule), label → text.
async fn facts(browser: &Browser, job: &str) -> BTreeMap<String, String> {
    let value = browser
        .eval(&format!(
            "Object.fromEntries(Array.from({}.querySelectorAll('.facts .fact'))\
             .map(f => [f.querySelector('dt').textContent, f.querySelector('dd').innerText]))",
            card(job)
        ))
        .await;
    serde_json::from_value(value).unwrap_or_default()
}

async fn badges(browser: &Browser, job: &str) -> Vec<String> {
    let value = browser
        .eval(&format!(
            "Array.from({}.querySelectorAll('.badge')).map(b => b.dataset.badge + ':' + \
             b.textContent.trim() + ':' + (b.querySelector('svg') ? 'icon' : 'no-icon'))",
            card(job)
        ))
        .await;
    serde_json::from_value(value).unwrap_or_default()
}

/// Width and height of a PNG file.
fn png_size(file: &Path) -> (u32, u32) {
    let png = std::fs::read(file).unwrap_or_default();
    let be = |at: usize| {
        png.get(at..at + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    (be(16), be(20))
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Card rectangles: (left, top, width, bottom).
async fn card_rects(browser: &Browser) -> Vec<(f64, f64, f64, f64)> {
    let value = browser
        .eval(
            "Array.from(document.querySelectorAll('#jobs article.card')).map(c => { \
             const r = c.getBoundingClientRect(); return [r.left, r.top, r.width, r.bottom]; })",
        )
        .await;
    serde_json::from_value::<Vec<[f64; 4]>>(value)
        .unwrap_or_default()
        .into_iter()
        .map(|[a, b, c, d]| (a, b, c, d))
        .collect()
}

/// Records CSP violations from now on; `violations` reads them.
async fn watch_csp(browser: &Browser) {
    browser
        .eval(
            "(window.__violations = [], document.addEventListener('securitypolicyviolation', \
             e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI)), true)",
        )
        .await;
}

async fn violations(browser: &Browser) -> Value {
    browser.eval("window.__violations").await
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loading_skeletons_then_an_unreachable_api_then_retry() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "success",
            0,
            4200,
            json!({"deleted": 2}),
            None,
        ),
    )
    .await;
    // The server cannot read the jobs' state from a locked table, so the API waits for
    // its first read: the page shows its skeleton cards meanwhile.
    let mut lock = db.connect().await;
    diesel::sql_query("BEGIN").execute(&mut lock).await.unwrap();
    diesel::sql_query("LOCK TABLE job_executions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    let mut server = Server::start("loading", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("loading", 1280, 800).await;
    browser.goto(&server.base).await;
    browser
        .wait_for(
            "skeleton cards",
            "document.querySelectorAll('#jobs .card.skeleton').length === 2 \
             && document.getElementById('jobs').getAttribute('aria-busy') === 'true'",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.getElementById('loading-text').textContent")
            .await,
        json!("Loading jobs…")
    );
    browser.screenshot("1-skeleton").await;

    // The server goes away while the page waits for it.
    server.kill();
    browser
        .wait_for(
            "the error state",
            "!document.getElementById('load-error').hidden",
        )
        .await;
    assert_eq!(
        browser.text("#load-error-title").await,
        "Cannot reach the jobs API"
    );
    assert!(browser
        .text("#load-error-detail")
        .await
        .contains("did not answer"));
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#jobs .skeleton, #jobs article').length")
            .await,
        json!(0)
    );
    assert_eq!(
        browser
            .eval("document.getElementById('load-error').getAttribute('role')")
            .await,
        json!("alert")
    );
    browser.screenshot("2-unreachable").await;

    // Back up: Retry shows the cards.
    diesel::sql_query("COMMIT")
        .execute(&mut lock)
        .await
        .unwrap();
    server.restart().await;
    browser.click("#retry").await;
    cards_shown(&browser, 2).await;
    browser
        .wait_for(
            "the error gone",
            "document.getElementById('load-error').hidden",
        )
        .await;
    wait_status(&browser, "audio_cleanup", "success").await;

    // Down again after a successful load: the cards stay, marked as stale.
    server.kill();
    browser.click("#refresh").await;
    browser
        .wait_for(
            "the stale-data error",
            "!document.getElementById('load-error').hidden",
        )
        .await;
    assert!(
        browser
            .text("#load-error-title")
            .await
            .starts_with("Cannot reach the jobs API — showing data from"),
        "{}",
        browser.text("#load-error-title").await
    );
    assert_eq!(card_rects(&browser).await.len(), 2);
    browser.screenshot("3-stale").await;
    server.restart().await;
    // The event stream was open before the outage: when it reconnects the page reads the
    // jobs by itself, which may come before the click. Retry is pressed only if not.
    browser
        .eval(
            "(() => { if (!document.getElementById('load-error').hidden) \
               document.getElementById('retry').click(); return true; })()",
        )
        .await;
    browser
        .wait_for(
            "the error gone",
            "document.getElementById('load-error').hidden",
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_state_with_never_run_and_disabled_jobs() {
    let db = TestDatabase::new().await;
    // audio_cleanup enabled, cost_update disabled (no DEEPGRAM_API_KEY).
    let server = Server::start(
        "empty",
        db.url(),
        &[
            ("SUPABASE_URL", "http://127.0.0.1:9"),
            ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY),
        ],
    )
    .await;
    let browser = Browser::open("empty", 1280, 800).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;

    browser
        .wait_for(
            "the empty state",
            "!document.getElementById('empty').hidden",
        )
        .await;
    assert_eq!(browser.text("#empty-title").await, "Nothing has run yet");
    let detail = browser.text("#empty-detail").await;
    // "in 5 hours", or "tomorrow (…)" when the day's 02:00 has just passed.
    assert!(
        detail.contains("The first scheduled run is Audio Cleanup, in ")
            || detail.contains("The first scheduled run is Audio Cleanup, tomorrow ("),
        "{detail}"
    );

    assert_eq!(
        browser
            .eval(
                "Array.from(document.querySelectorAll('#jobs article h3')).map(h => h.textContent)"
            )
            .await,
        json!(["Audio Cleanup", "Cost Update"])
    );
    wait_status(&browser, "audio_cleanup", "never").await;
    wait_status(&browser, "cost_update", "never").await;
    assert_eq!(
        badges(&browser, "audio_cleanup").await,
        ["never:Never run:icon"]
    );
    assert_eq!(
        badges(&browser, "cost_update").await,
        ["never:Never run:icon", "disabled:Disabled:icon"]
    );
    let audio = facts(&browser, "audio_cleanup").await;
    assert_eq!(audio["Last run"], "Never");
    assert!(
        audio["Next run"].starts_with("in ") || audio["Next run"].starts_with("tomorrow"),
        "{audio:?}"
    );
    assert!(
        audio["Schedule"].starts_with("every day at 02:00 UTC"),
        "{audio:?}"
    );
    let cost = facts(&browser, "cost_update").await;
    assert_eq!(cost["Next run"], "Not scheduled while disabled");
    assert!(browser
        .text("article[data-job=cost_update] [data-role=disabled-reason]")
        .await
        .contains("DEEPGRAM_API_KEY is not set"));

    // Run now: available for the enabled job only, with the reason for the other.
    assert_eq!(
        browser
            .eval(&format!(
                "[{a}.querySelector('[data-action=run]').disabled, \
                  {c}.querySelector('[data-action=run]').disabled, \
                  {c}.querySelector('[data-action=run]').title]",
                a = card("audio_cleanup"),
                c = card("cost_update")
            ))
            .await,
        json!([false, true, "Disabled: DEEPGRAM_API_KEY is not set"])
    );
    browser
        .wait_for(
            "the empty history",
            "document.getElementById('history-empty').textContent === 'No job has run in the last 30 days.'",
        )
        .await;
    browser.screenshot("never-run-and-disabled").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_failed_and_running_cards_with_their_stats() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "success",
            0,
            90_400,
            json!({"deleted": 45, "already_absent": 3, "failed": 0, "considered": 48,
                   "marked": 48, "invalid_path": 0, "bucket_missing": 0, "storage_error": 0,
                   "would_delete": 0}),
            None,
        ),
    )
    .await;
    sql(
        &db,
        &finished(
            "cost_update",
            "failed",
            0,
            12_300,
            json!({"priced": 118, "pending": 4, "failed": 37, "no_price": 2}),
            Some("Deepgram answered 503 Service Unavailable for 3 batches in a row; 37 transcriptions left unpriced"),
        ),
    )
    .await;
    let server = Server::start("cards", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("cards", 1280, 800).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    wait_status(&browser, "audio_cleanup", "success").await;
    wait_status(&browser, "cost_update", "failed").await;
    assert_eq!(
        browser
            .eval("[window.innerWidth, window.innerHeight, matchMedia('(prefers-color-scheme: dark)').matches]")
            .await,
        json!([1280, 800, false])
    );

    // Success: green with a check, times, duration, every stat humanised.
    assert_eq!(
        badges(&browser, "audio_cleanup").await,
        ["success:Success:icon"]
    );
    let audio = facts(&browser, "audio_cleanup").await;
    assert!(relative_and_exact(&audio["Last run"]), "{audio:?}");
    assert_eq!(audio["Duration"], "1 min 30 s");
    assert!(
        audio["Next run"].starts_with("in ") || audio["Next run"].starts_with("tomorrow"),
        "{audio:?}"
    );
    assert!(audio["Schedule"].contains("every day at 02:00 UTC"));
    assert!(audio["Schedule"].contains("0 2 * * *"));
    let title = browser
        .eval(&format!(
            "{}.querySelector('time').title",
            card("audio_cleanup")
        ))
        .await;
    assert!(
        title
            .as_str()
            .is_some_and(|t| t.starts_with("UTC: ") && t.ends_with(" UTC")),
        "{title}"
    );
    // `would_delete` says what a dry run would do: a real run's is not shown.
    assert_eq!(
        stats(&browser, "audio_cleanup").await,
        map(&[
            ("Already absent", "3"),
            ("Bucket missing", "0"),
            ("Considered", "48"),
            ("Deleted", "45"),
            ("Failed", "0"),
            ("Invalid path", "0"),
            ("Marked", "48"),
            ("Storage error", "0"),
        ])
    );

    // Failure: red with an X, its error message and stats.
    assert_eq!(
        badges(&browser, "cost_update").await,
        ["failed:Failed:icon"]
    );
    assert_eq!(
        browser
            .text("article[data-job=cost_update] [data-role=error] .error-text")
            .await,
        "Deepgram answered 503 Service Unavailable for 3 batches in a row; 37 transcriptions left unpriced"
    );
    assert_eq!(facts(&browser, "cost_update").await["Duration"], "12 s");
    assert_eq!(
        stats(&browser, "cost_update").await,
        map(&[
            ("Failed", "37"),
            ("No price", "2"),
            ("Pending", "4"),
            ("Priced", "118")
        ])
    );
    assert_eq!(
        browser.text("#jobs-summary").await,
        "2 jobs · 1 failed · 1 succeeded"
    );

    // Two columns on a desktop: side by side, same width.
    let rects = card_rects(&browser).await;
    assert_eq!(rects.len(), 2);
    assert!((rects[0].1 - rects[1].1).abs() < 1.0, "{rects:?}");
    assert!(rects[1].0 > rects[0].0 + rects[0].2, "{rects:?}");
    assert!((rects[0].2 - rects[1].2).abs() < 1.0, "{rects:?}");

    let shot = browser.screenshot("1-success-and-failure").await;
    assert_eq!(png_size(&shot), (1280, 800));
    if std::env::var("UPDATE_DASHBOARD_SCREENSHOT").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard.png");
        std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
        std::fs::copy(&shot, &docs).expect("copy the screenshot to docs/dashboard.png");
    }

    // Another server starts a run: the refresh button shows it, blue with a spinner.
    sql(
        &db,
        &running("audio_cleanup", 20, json!({"deleted": 3, "considered": 10})),
    )
    .await;
    browser.click("#refresh").await;
    wait_status(&browser, "audio_cleanup", "running").await;
    assert_eq!(
        badges(&browser, "audio_cleanup").await,
        ["running:Running:icon"]
    );
    assert_eq!(
        browser
            .eval(&format!(
                "{c}.querySelector('.badge-running svg').classList.contains('spinner') \
                 && getComputedStyle({c}.querySelector('.badge-running svg')).animationName",
                c = card("audio_cleanup")
            ))
            .await,
        json!("spin")
    );
    assert_eq!(
        browser
            .eval(&format!(
                "[{c}.querySelector('[data-action=run]').disabled, \
                  {c}.querySelector('[data-action=run]').textContent, \
                  {c}.querySelector('.stats-title').textContent]",
                c = card("audio_cleanup")
            ))
            .await,
        json!([true, "Running…", "Progress"])
    );
    let audio = facts(&browser, "audio_cleanup").await;
    assert!(audio.contains_key("Running for"), "{audio:?}");
    assert_eq!(
        stats(&browser, "audio_cleanup").await,
        map(&[("Considered", "10"), ("Deleted", "3")])
    );
    browser
        .wait_for(
            "live updates",
            "document.getElementById('updated-mode').textContent === ' · live'",
        )
        .await;

    // Live progress, then the end of the run, with no click: the page follows the server's
    // event stream.
    sql(
        &db,
        "UPDATE job_executions SET stats = '{\"deleted\": 1234, \"considered\": 2000}' \
         WHERE status = 'running'",
    )
    .await;
    browser
        .wait_for(
            "live stats",
            &format!(
                "Array.from({}.querySelectorAll('.stats dd')).some(d => d.textContent === '1,234')",
                card("audio_cleanup")
            ),
        )
        .await;
    browser.screenshot("2-running").await;
    sql(
        &db,
        "UPDATE job_executions SET status = 'success', completed_at = now(), \
         duration_ms = 21500, stats = '{\"deleted\": 1990, \"considered\": 2000, \"failed\": 10}' \
         WHERE status = 'running'",
    )
    .await;
    wait_status(&browser, "audio_cleanup", "success").await;
    assert_eq!(facts(&browser, "audio_cleanup").await["Duration"], "22 s");
    assert_eq!(
        stats(&browser, "audio_cleanup").await,
        map(&[
            ("Considered", "2,000"),
            ("Deleted", "1,990"),
            ("Failed", "10")
        ])
    );
    browser
        .wait_for(
            "the announcement",
            "document.getElementById('announce').textContent === 'Audio Cleanup finished: Success.'",
        )
        .await;
    browser.screenshot("3-finished").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_jobs_card_advances_from_the_event_stream_without_polling() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "success",
            0,
            4200,
            json!({"deleted": 2}),
            None,
        ),
    )
    .await;
    sql(
        &db,
        &finished(
            "cost_update",
            "success",
            0,
            1200,
            json!({"updated": 5}),
            None,
        ),
    )
    .await;
    let server = Server::start("stream", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("stream", 1280, 800).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    browser
        .wait_for(
            "the event stream",
            "document.getElementById('updated').dataset.mode === 'stream' \
             && document.getElementById('updated-mode').textContent === ' · live'",
        )
        .await;

    // Polling off from here: a request for the job list or the status fails, and is
    // counted. The stream's own request is already open.
    browser
        .eval(
            "(window.__polls = 0, window.__fetch = window.fetch, \
              window.fetch = (input, init) => { \
                const url = String(input instanceof Request ? input.url : input); \
                if (/\\/internal\\/api\\/v1\\/jobs(\\/status)?(\\?|$)/.test(url)) { \
                  window.__polls += 1; \
                  return Promise.reject(new TypeError('polling is disabled in this test')); \
                } \
                return window.__fetch(input, init); \
              }, true)",
        )
        .await;

    // Another server runs audio_cleanup: it starts, advances and ends on the card.
    sql(
        &db,
        &running(
            "audio_cleanup",
            5,
            json!({"deleted": 1, "considered": 4000}),
        ),
    )
    .await;
    wait_status(&browser, "audio_cleanup", "running").await;
    for deleted in ["250", "1,500", "3,999"] {
        sql(
            &db,
            &format!(
                "UPDATE job_executions SET stats = jsonb_build_object('deleted', {}, \
                 'considered', 4000) WHERE status = 'running'",
                deleted.replace(',', "")
            ),
        )
        .await;
        browser
            .wait_for(
                &format!("{deleted} deleted on the card"),
                &format!(
                    "Array.from({}.querySelectorAll('.stats .stat')).some(s => \
                     s.querySelector('dt').textContent === 'Deleted' \
                     && s.querySelector('dd').textContent === {})",
                    card("audio_cleanup"),
                    js_str(deleted)
                ),
            )
            .await;
    }
    browser.screenshot("stream-running").await;
    sql(
        &db,
        "UPDATE job_executions SET status = 'success', completed_at = now(), duration_ms = 6000, \
         stats = '{\"deleted\": 4000, \"considered\": 4000}' WHERE status = 'running'",
    )
    .await;
    wait_status(&browser, "audio_cleanup", "success").await;
    assert_eq!(facts(&browser, "audio_cleanup").await["Duration"], "6.0 s");
    assert_eq!(browser.eval("window.__polls").await, json!(0));
    assert_eq!(
        browser
            .eval("document.getElementById('load-error').hidden")
            .await,
        json!(true)
    );
    browser.screenshot("stream-finished").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_messages_and_stats_keys_are_shown_literally_and_run_nothing() {
    const PAYLOAD: &str = "<img src=x onerror=\"window.__pwned=1;document.title='pwned'\">\
                           <script>window.__pwned=1;document.title='pwned'</script><b>bold</b>";
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "cost_update",
            "failed",
            0,
            800,
            json!({"<img src=x onerror=\"window.__pwned=2\">": 1, "deleted": 2}),
            Some(PAYLOAD),
        ),
    )
    .await;
    let server = Server::start("xss", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("xss", 1280, 800).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    wait_status(&browser, "cost_update", "failed").await;
    watch_csp(&browser).await;

    assert_eq!(
        browser
            .eval(&format!(
                "{}.querySelector('[data-role=error] .error-text').textContent",
                card("cost_update")
            ))
            .await,
        json!(PAYLOAD)
    );
    let stats = stats(&browser, "cost_update").await;
    assert!(
        stats
            .iter()
            .any(|(label, value)| label.starts_with("<img src=x onerror=") && value == "1"),
        "{stats:?}"
    );

    // The history table shows it as text too.
    browser
        .click("article[data-job=cost_update] [data-action=history]")
        .await;
    browser
        .wait_for(
            "the failed run in the history",
            "document.querySelector('#history-rows tr[data-status=failed] .details-error')",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('#history-rows .details-error').textContent")
            .await,
        json!(PAYLOAD)
    );
    browser.click("#refresh").await;
    cards_shown(&browser, 2).await;

    // Nothing ran, nothing was parsed as markup, and the page broke no rule of its policy.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        browser
            .eval(
                "[typeof window.__pwned, document.title, \
                 document.querySelectorAll('main img, main script, main b').length]"
            )
            .await,
        json!(["undefined", "Background Jobs · Internal Admin Dashboard", 0])
    );
    assert_eq!(violations(&browser).await, json!([]));
    browser.screenshot("literal-error").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_goes_running_then_success() {
    let storage = audio_bucket().await;
    Mock::given(method("DELETE"))
        .and(path("/storage/v1/object/audio"))
        .and(body_json(json!({"prefixes": ["a.webm"]})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([{
                    "name": "a.webm", "bucket_id": "audio", "owner": "",
                    "id": "5b8f1c1e-7d4a-4a9e-9a57-2f1f6d0c8e42",
                    "version": "0f0c9c7e-4a3b-4a51-9d39-6a1c5a8d2e11",
                    "created_at": "2025-06-01T10:00:00.000Z",
                    "updated_at": "2025-06-01T10:00:00.000Z",
                    "last_accessed_at": "2025-06-01T10:00:00.000Z",
                    "metadata": {
                        "eTag": "\"x\"", "size": 1, "mimetype": "audio/webm",
                        "cacheControl": "max-age=3600",
                        "lastModified": "2025-06-01T10:00:00.000Z",
                        "contentLength": 1, "httpStatusCode": 200
                    },
                    "user_metadata": {}
                }]))
                .set_delay(Duration::from_secs(3)),
        )
        .expect(1)
        .mount(&storage)
        .await;

    let db = TestDatabase::new().await;
    sql(
        &db,
        "INSERT INTO transcriptions (created_at, audio_file_path) \
         VALUES (now() - interval '40 days', 'audio/a.webm')",
    )
    .await;
    let server = Server::start(
        "run-now",
        db.url(),
        &[
            ("SUPABASE_URL", &storage.uri()),
            ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY),
        ],
    )
    .await;
    let browser = Browser::open("run-now", 1280, 800).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    wait_status(&browser, "audio_cleanup", "never").await;

    browser
        .click("article[data-job=audio_cleanup] [data-action=run]")
        .await;
    wait_status(&browser, "audio_cleanup", "running").await;
    assert_eq!(
        badges(&browser, "audio_cleanup").await,
        ["running:Running:icon"]
    );
    assert_eq!(
        browser
            .eval(&format!(
                "{}.querySelector('[data-action=run]').disabled",
                card("audio_cleanup")
            ))
            .await,
        json!(true)
    );
    // The event stream may show the run before the request's own answer brings its message.
    browser
        .wait_for(
            "the run's message",
            "(document.querySelector('article[data-job=audio_cleanup] [data-role=run-message]') \
             || {}).textContent?.startsWith('Started run #')",
        )
        .await;
    browser.screenshot("1-running").await;

    wait_status(&browser, "audio_cleanup", "success").await;
    let stats = stats(&browser, "audio_cleanup").await;
    assert_eq!(
        stats.get("Deleted").map(String::as_str),
        Some("1"),
        "{stats:?}"
    );
    assert_eq!(
        stats.get("Considered").map(String::as_str),
        Some("1"),
        "{stats:?}"
    );
    let audio = facts(&browser, "audio_cleanup").await;
    assert!(audio["Duration"].ends_with(" s"), "{audio:?}");
    assert!(audio["Last run"].starts_with("just now\n"), "{audio:?}");
    assert_eq!(
        browser
            .eval(&format!(
                "[{c}.querySelector('[data-action=run]').disabled, \
                  {c}.querySelector('.card-sub').textContent]",
                c = card("audio_cleanup")
            ))
            .await,
        json!([false, "audio_cleanup · Manual run"])
    );
    // The history follows: the manual run is listed.
    browser
        .wait_for(
            "the run in the history",
            "document.querySelector('#history-rows tr[data-status=success]')",
        )
        .await;
    browser.screenshot("2-success").await;
    browser.close().await;
    storage.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_explains_that_a_job_is_already_running() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "success",
            0,
            3000,
            json!({"deleted": 1}),
            None,
        ),
    )
    .await;
    let server = Server::start("conflict", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("conflict", 1280, 800).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    wait_status(&browser, "audio_cleanup", "success").await;

    // Another server starts it before this page has heard of it: the write's notification
    // is held back (the change-feed trigger is off for that one statement).
    {
        use diesel_async::SimpleAsyncConnection;
        let mut conn = db.connect().await;
        conn.batch_execute(&format!(
            "BEGIN; ALTER TABLE job_executions DISABLE TRIGGER job_executions_notify; {}; \
             ALTER TABLE job_executions ENABLE TRIGGER job_executions_notify; COMMIT",
            running("audio_cleanup", 5, json!({"deleted": 0}))
        ))
        .await
        .unwrap();
    }
    browser
        .click("article[data-job=audio_cleanup] [data-action=run]")
        .await;
    browser
        .wait_for(
            "the conflict message",
            "document.querySelector('article[data-job=audio_cleanup] \
             [data-role=run-message]')?.textContent.includes('already running')",
        )
        .await;
    let message = browser
        .text("article[data-job=audio_cleanup] [data-role=run-message]")
        .await;
    assert!(
        message.starts_with("Audio Cleanup is already running (started by its schedule, another server or another person)."),
        "{message}"
    );
    // …and the page shows that run as soon as the server hears of it (its next progress).
    sql(
        &db,
        "UPDATE job_executions SET stats = '{\"deleted\": 1}' WHERE status = 'running'",
    )
    .await;
    wait_status(&browser, "audio_cleanup", "running").await;
    browser.screenshot("already-running").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asks_for_the_token_and_says_when_it_is_wrong() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "success",
            0,
            1500,
            json!({"deleted": 1}),
            None,
        ),
    )
    .await;
    let mut vars = BOTH_ENABLED.to_vec();
    vars.push(("ADMIN_TOKEN", TOKEN));
    let server = Server::start("auth", db.url(), &vars).await;
    let browser = Browser::open("auth", 1280, 800).await;
    browser.goto(&server.base).await;

    browser
        .wait_for("the token form", "!document.getElementById('auth').hidden")
        .await;
    assert_eq!(
        browser
            .eval(
                "[document.querySelector('label[for=token-input]').textContent, \
                  document.getElementById('token-input').type, \
                  document.activeElement.id, \
                  document.getElementById('jobs-section').hidden, \
                  document.getElementById('auth-error').hidden]"
            )
            .await,
        json!(["Admin token", "password", "token-input", true, true])
    );
    browser.screenshot("1-token-form").await;

    // A wrong token, submitted with the keyboard.
    browser
        .type_into("#token-input", "not-the-token-0123456789\u{e007}")
        .await;
    browser
        .wait_for(
            "the rejection",
            "!document.getElementById('auth-error').hidden",
        )
        .await;
    assert_eq!(
        browser.text("#auth-error").await,
        "That token was not accepted. Check it and try again."
    );
    assert_eq!(
        browser
            .eval("sessionStorage.getItem('bgjobs.adminToken')")
            .await,
        Value::Null
    );
    browser.screenshot("2-wrong-token").await;

    // The right one: cards, and the token kept for this tab.
    browser.type_into("#token-input", TOKEN).await;
    browser.click("#auth-form button[type=submit]").await;
    cards_shown(&browser, 2).await;
    wait_status(&browser, "audio_cleanup", "success").await;
    assert_eq!(
        browser
            .eval(
                "[document.getElementById('auth').hidden, \
                  sessionStorage.getItem('bgjobs.adminToken'), \
                  document.getElementById('sign-out').hidden]"
            )
            .await,
        json!([true, TOKEN, false])
    );
    browser
        .wait_for(
            "the history with the token",
            "document.querySelector('#history-rows tr[data-status=success]')",
        )
        .await;

    // A reload goes straight to the cards.
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    assert_eq!(
        browser.eval("document.getElementById('auth').hidden").await,
        json!(true)
    );

    // Signing out forgets it.
    browser.click("#sign-out").await;
    browser
        .wait_for(
            "the token form again",
            "!document.getElementById('auth').hidden",
        )
        .await;
    assert_eq!(
        browser
            .eval("sessionStorage.getItem('bgjobs.adminToken')")
            .await,
        Value::Null
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_token_sees_the_write_controls_disabled_and_the_admin_token_enabled() {
    const VIEWER: &str = "viewer-token-0123456789abcdef";
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "failed",
            0,
            1500,
            json!({"deleted": 1}),
            Some("boom"),
        ),
    )
    .await;
    let mut vars = BOTH_ENABLED.to_vec();
    vars.push(("ADMIN_TOKEN", TOKEN));
    vars.push(("VIEWER_TOKEN", VIEWER));
    let server = Server::start("viewer", db.url(), &vars).await;
    let browser = Browser::open("viewer", 1280, 800).await;
    browser.goto(&server.base).await;
    browser
        .wait_for("the token form", "!document.getElementById('auth').hidden")
        .await;
    browser.type_into("#token-input", VIEWER).await;
    browser.click("#auth-form button[type=submit]").await;
    cards_shown(&browser, 2).await;

    let controls = "[...document.querySelectorAll('article[data-job=audio_cleanup] \
         [data-action=run], article[data-job=audio_cleanup] [data-action=pause], \
         article[data-job=audio_cleanup] [data-action=dry-run]')]";
    browser
        .wait_for(
            "the write controls disabled for the viewer",
            &format!("{controls}.length === 3 && {controls}.every((b) => b.disabled)"),
        )
        .await;
    let titles = browser
        .eval(&format!("{controls}.map((b) => b.title)"))
        .await;
    for title in titles.as_array().unwrap() {
        assert!(title.as_str().unwrap().starts_with("Read-only"), "{titles}");
    }
    // Not only in tooltips: a visible note says it, and describes each disabled control.
    browser
        .wait_for(
            "the read-only note",
            "!document.getElementById('read-only-note').hidden",
        )
        .await;
    assert!(browser
        .text("#read-only-note")
        .await
        .starts_with("Signed in read-only"));
    assert_eq!(
        browser
            .eval(&format!(
                "{controls}.map((b) => b.getAttribute('aria-describedby'))"
            ))
            .await,
        json!(["read-only-note", "read-only-note", "read-only-note"])
    );
    // Reading still works: the history.
    browser
        .wait_for(
            "the history for the viewer",
            "document.querySelector('#history-rows tr[data-status=failed]')",
        )
        .await;
    browser.screenshot("1-viewer").await;

    // The admin token gets them back.
    browser.click("#sign-out").await;
    browser
        .wait_for(
            "the token form again",
            "!document.getElementById('auth').hidden",
        )
        .await;
    browser.type_into("#token-input", TOKEN).await;
    browser.click("#auth-form button[type=submit]").await;
    browser
        .wait_for(
            "the write controls enabled for the admin",
            &format!("{controls}.length === 3 && {controls}.every((b) => !b.disabled)"),
        )
        .await;
    assert_eq!(
        browser
            .eval("document.getElementById('read-only-note').hidden")
            .await,
        json!(true)
    );
    browser.close().await;
}

/// Lets the server reach `db` again, or refuses it from now on (its open sessions end).
async fn reachable(db: &TestDatabase, allow: bool) {
    let mut admin = db::testing::admin_target().connect().await.unwrap();
    diesel::sql_query(format!(
        "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS {allow}",
        db.name()
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    if !allow {
        diesel::sql_query(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            db.name()
        ))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

/// A running execution (id 1) of `job`, started `secs_ago`, with `stats`, shown on its
/// details page by a server named `name`.
async fn running_run_details(
    name: &str,
    job: &str,
    secs_ago: i64,
    stats: Value,
) -> (TestDatabase, Server, Browser) {
    let db = TestDatabase::new().await;
    sql(&db, &running(job, secs_ago, stats)).await;
    let server = Server::start(name, db.url(), BOTH_ENABLED).await;
    let browser = Browser::open(name, 1280, 900).await;
    browser
        .goto(&format!("{}/#/executions/1", server.base))
        .await;
    browser
        .wait_for(
            "the running run's details",
            "!document.getElementById('run-detail').hidden && \
             !document.getElementById('run-cancel').hidden",
        )
        .await;
    (db, server, browser)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_details_page_follows_the_run_through_a_server_outage() {
    let (db, mut server, browser) =
        running_run_details("outage-detail", "cost_update", 30, json!({"updated": 3})).await;

    // The server goes away; meanwhile the run ends (as a restart's recovery would end it).
    server.kill();
    browser
        .wait_for(
            "the failed read said",
            "!document.getElementById('run-error-load').hidden",
        )
        .await;
    sql(
        &db,
        "UPDATE job_executions SET status = 'failed', completed_at = now(), duration_ms = 31000, \
         error_message = 'interrupted: server web-2:8080 restarted while it ran', lease_expires_at = NULL",
    )
    .await;
    server.restart().await;

    // Without navigating: the page reads the run again and shows how it ended.
    browser
        .wait_for(
            "the run shown as failed after the outage",
            "document.getElementById('run-cancel').hidden && \
             document.getElementById('run-error-load').hidden && \
             document.getElementById('run-error-text').textContent.includes('interrupted')",
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_slots_say_why_and_odd_values_stay_readable() {
    let db = TestDatabase::new().await;
    let long_error = format!("Storage answered 500: {}", "x".repeat(20_000));
    for statement in [
        finished(
            "cost_update",
            "failed",
            3,
            1200,
            json!({}),
            Some(&long_error),
        ),
        finished(
            "audio_cleanup",
            "skipped",
            2,
            0,
            json!({}),
            Some("skipped: the job was paused"),
        ),
        finished(
            "audio_cleanup",
            "success",
            0,
            1500,
            json!({"deleted": 1e30, "tiny": 1e-9, "nested": {"a": {"b": {"c": 1}}}}),
            None,
        ),
    ] {
        sql(&db, &statement).await;
    }
    let server = Server::start("odd-values", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("odd-values", 1280, 1000).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    browser
        .wait_for(
            "the history rows",
            "['1', '2', '3'].every((id) => document.querySelector(`#history-rows tr[data-id=\"${id}\"]`))",
        )
        .await;

    // A skipped slot says why, and is no bar of the runs chart (the server may have
    // recorded a missed slot of its own: skipped too).
    assert_eq!(
        browser
            .text("#history-rows tr[data-id=\"2\"] .details-skipped")
            .await,
        "skipped: the job was paused"
    );
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#chart rect.bar').length")
            .await,
        json!(2)
    );
    // A slot skipped later is no job's latest execution, yet the list shows it without a
    // reload of the page.
    sql(
        &db,
        &finished(
            "cost_update",
            "skipped",
            1,
            0,
            json!({}),
            Some("skipped: a later slot"),
        ),
    )
    .await;
    browser
        .wait_for(
            "the later skipped slot in the history",
            "[...document.querySelectorAll('#history-rows .details-skipped')].some((e) => e.textContent === 'skipped: a later slot')",
        )
        .await;
    // A 20 000-character message takes a few lines of its row, not pages.
    let height = browser
        .eval("document.querySelector('#history-rows tr[data-id=\"1\"]').getBoundingClientRect().height")
        .await;
    assert!(height.as_f64().unwrap() < 120.0, "{height}");
    // Numbers a float cannot hold exactly are not shown digit by digit; deep values as JSON.
    let shown = stats(&browser, "audio_cleanup").await;
    let picked: Vec<Option<&str>> = ["Deleted", "Tiny", "Nested › A › B"]
        .iter()
        .map(|label| shown.get(*label).map(String::as_str))
        .collect();
    assert_eq!(
        picked,
        [Some("1.000e+30"), Some("1.000e-9"), Some("{\"c\":1}")],
        "{shown:?}"
    );

    // The skipped slot's page shows the reason, not an error.
    browser
        .click("#history-rows tr[data-id=\"2\"] a[data-role=open-run]")
        .await;
    browser
        .wait_for(
            "the skipped slot's reason",
            "!document.getElementById('run-detail').hidden && \
             !document.getElementById('run-skipped').hidden",
        )
        .await;
    assert_eq!(
        browser.text("#run-skipped-text").await,
        "skipped: the job was paused"
    );
    assert_eq!(
        browser
            .eval("document.getElementById('run-error').hidden")
            .await,
        json!(true)
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_screen_shows_one_column() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "success",
            0,
            90_400,
            json!({"deleted": 45, "already_absent": 3, "failed": 0}),
            None,
        ),
    )
    .await;
    sql(
        &db,
        &finished(
            "cost_update",
            "failed",
            0,
            1200,
            json!({"priced": 12, "failed": 1}),
            Some("Deepgram answered 401 Unauthorized: the API key was rejected"),
        ),
    )
    .await;
    let server = Server::start("phone", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open_phone("phone", 375, 812).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    assert_eq!(browser.eval("window.innerWidth").await, json!(375));

    let rects = card_rects(&browser).await;
    assert_eq!(rects.len(), 2);
    let (left0, _, width0, bottom0) = rects[0];
    let (left1, top1, width1, _) = rects[1];
    assert!((left0 - left1).abs() < 1.0, "not one column: {rects:?}");
    assert!((width0 - width1).abs() < 1.0, "{rects:?}");
    assert!(top1 >= bottom0, "cards overlap: {rects:?}");
    assert!(width0 > 300.0 && left0 + width0 <= 375.0, "{rects:?}");
    // Nothing wider than the screen.
    assert_eq!(
        browser
            .eval("document.documentElement.scrollWidth <= window.innerWidth")
            .await,
        json!(true)
    );
    // The header says in words whether the figures are live, not with a dot alone.
    browser
        .wait_for(
            "live updates",
            "document.getElementById('updated-mode').textContent === ' · live'",
        )
        .await;
    assert_eq!(
        browser
            .eval(
                "(() => { const r = document.getElementById('updated-mode').getBoundingClientRect(); \
                 return r.width > 0 && r.height > 0 && r.left >= 0 && r.right <= window.innerWidth; })()"
            )
            .await,
        json!(true)
    );
    assert!(browser.text("#updated").await.ends_with("· live"));
    browser.screenshot("cards").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_table_with_status_filter_paging_and_chart_in_dark_mode() {
    let db = TestDatabase::new().await;
    // 45 runs of audio_cleanup over 28 days (every 5th failed), the newest at its latest
    // slot, and another job's run.
    sql(
        &db,
        &format!(
            "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, \
             stats, error_message, triggered_by, scheduled_for, worker_id) \
             SELECT 'audio_cleanup', CASE WHEN n % 5 = 0 THEN 'failed' ELSE 'success' END, \
                    {slot} - ((n - 1) * 15) * interval '1 hour', \
                    {slot} - ((n - 1) * 15) * interval '1 hour' + (20 + n) * interval '1 second', \
                    (20 + n) * 1000, jsonb_build_object('deleted', n, 'failed', 0), \
                    CASE WHEN n % 5 = 0 THEN 'Storage answered 503 three times (run ' || n || ')' END, \
                    'schedule', {slot} - ((n - 1) * 15) * interval '1 hour', 'web-1:8080' \
             FROM generate_series(1, 45) n",
            slot = latest_slot("audio_cleanup")
        ),
    )
    .await;
    sql(
        &db,
        &finished("cost_update", "success", 0, 800, json!({"priced": 3}), None),
    )
    .await;
    let server = Server::start("history", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open_dark("history", 1280, 1400).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    // Dark colours when the system prefers them.
    assert_eq!(
        browser
            .eval(
                "[matchMedia('(prefers-color-scheme: dark)').matches, \
                  getComputedStyle(document.body).backgroundColor]"
            )
            .await,
        json!([true, "rgb(15, 20, 27)"])
    );
    watch_csp(&browser).await;

    browser
        .click("article[data-job=cost_update] [data-action=history]")
        .await;
    browser
        .wait_for(
            "cost_update's history",
            "document.querySelectorAll('#history-rows tr').length === 1",
        )
        .await;
    browser
        .click("article[data-job=audio_cleanup] [data-action=history]")
        .await;
    browser
        .wait_for(
            "the first page",
            "document.querySelectorAll('#history-rows tr').length === 20",
        )
        .await;
    assert_eq!(
        browser
            .eval("[document.getElementById('history-job').value, document.activeElement.id]")
            .await,
        json!(["audio_cleanup", "history-title"])
    );
    let first = browser
        .eval(
            "Array.from(document.querySelectorAll('#history-rows tr')).map(r => \
             r.querySelector('time').getAttribute('datetime'))",
        )
        .await;
    let first: Vec<String> = serde_json::from_value(first).unwrap();
    let mut sorted = first.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(first, sorted, "not newest first");
    assert_eq!(
        browser.text("#history-count").await,
        "Showing 20 runs · more available"
    );

    // The chart: one bar per run of the 30 days, coloured by outcome, with a text legend.
    assert_eq!(
        browser
            .eval(
                "[document.querySelectorAll('#chart rect.bar').length, \
                  document.querySelectorAll('#chart rect.bar-failed').length, \
                  document.querySelectorAll('#chart rect.bar-success').length, \
                  Array.from(document.querySelectorAll('#chart-legend li')).map(l => l.textContent)]"
            )
            .await,
        json!([45, 9, 36, ["Success 36", "Failed 9", "Running 0"]])
    );
    assert!(browser
        .eval("document.getElementById('chart-desc').textContent")
        .await
        .as_str()
        .is_some_and(|d| d.starts_with("45 runs in the last 30 days: 36 succeeded, 9 failed")));
    browser.screenshot("1-history").await;

    // Paging with the cursor.
    browser.click("#load-more").await;
    browser
        .wait_for(
            "the second page",
            "document.querySelectorAll('#history-rows tr').length === 40",
        )
        .await;
    browser.click("#load-more").await;
    browser
        .wait_for(
            "the last page",
            "document.querySelectorAll('#history-rows tr').length === 45 \
             && document.getElementById('load-more').hidden",
        )
        .await;
    assert_eq!(
        browser
            .eval("new Set(Array.from(document.querySelectorAll('#history-rows tr')).map(r => r.dataset.id)).size")
            .await,
        json!(45)
    );
    assert_eq!(browser.text("#history-count").await, "Showing 45 runs");

    // The status filter.
    let select = browser
        .client
        .find(fantoccini::Locator::Css("#history-status"))
        .await
        .unwrap();
    select.select_by_value("failed").await.unwrap();
    browser
        .wait_for(
            "only failed runs",
            "document.querySelectorAll('#history-rows tr').length === 9 && \
             Array.from(document.querySelectorAll('#history-rows tr')).every(r => r.dataset.status === 'failed')",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('#history-rows tr .details-error').textContent")
            .await,
        json!("Storage answered 503 three times (run 5)")
    );
    assert_eq!(
        browser.text("#history-count").await,
        "Showing 9 failed runs"
    );
    // The chart still shows every run.
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#chart rect.bar').length")
            .await,
        json!(45)
    );
    browser.screenshot("2-failed-only").await;

    select.select_by_value("running").await.unwrap();
    browser
        .wait_for(
            "no running runs",
            "document.querySelectorAll('#history-rows tr').length === 0 && \
             document.getElementById('history-empty').textContent === \
             'No run of Audio Cleanup is in progress.'",
        )
        .await;
    select.select_by_value("success").await.unwrap();
    browser
        .wait_for(
            "successful runs, first page",
            "document.querySelectorAll('#history-rows tr').length === 20 && \
             !document.getElementById('load-more').hidden && \
             Array.from(document.querySelectorAll('#history-rows tr')).every(r => r.dataset.status === 'success')",
        )
        .await;
    assert_eq!(violations(&browser).await, json!([]));
    browser.close().await;
}

// ---------------------------------------------------------------------------------------
// The operator console: pause and resume, dry run, cancel, run details, filters, trends.

/// Copies a screenshot to `docs/<name>` when `UPDATE_DASHBOARD_SCREENSHOT=1`.
fn publish(shot: &Path, name: &str) {
    if std::env::var("UPDATE_DASHBOARD_SCREENSHOT").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs")
            .join(name);
        std::fs::copy(shot, &docs).unwrap_or_else(|e| panic!("copy to {}: {e}", docs.display()));
    }
}

/// A Storage mock with bucket `audio` that must receive no delete.
async fn storage_without_deletes() -> MockServer {
    let storage = audio_bucket().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&storage)
        .await;
    storage
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_from_the_card_persist_and_a_disabled_job_offers_neither() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "success",
            0,
            1200,
            json!({"deleted": 2, "failed": 0}),
            None,
        ),
    )
    .await;
    // cost_update stays disabled (no Deepgram key).
    let server = Server::start(
        "pause",
        db.url(),
        &[
            ("SUPABASE_URL", "http://127.0.0.1:9"),
            ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY),
        ],
    )
    .await;
    let browser = Browser::open("pause", 1280, 900).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    watch_csp(&browser).await;
    // A disabled job: config-level, no pause or resume control.
    assert_eq!(
        browser
            .eval(&format!(
                "[{c}.querySelector('[data-action=pause]'), {c}.querySelector('[data-action=resume]')]",
                c = card("cost_update")
            ))
            .await,
        json!([null, null])
    );

    browser
        .click("article[data-job=audio_cleanup] [data-action=pause]")
        .await;
    browser
        .wait_for(
            "the pause form",
            "document.querySelector('article[data-job=audio_cleanup] [data-action=pause-reason]')",
        )
        .await;
    browser
        .type_into(
            "article[data-job=audio_cleanup] [data-action=pause-reason]",
            "storage migration tonight",
        )
        .await;
    browser
        .click("article[data-job=audio_cleanup] [data-action=pause-confirm]")
        .await;
    browser
        .wait_for(
            "the card shown as paused",
            &format!("{}.dataset.state === 'paused'", card("audio_cleanup")),
        )
        .await;
    assert_eq!(
        badges(&browser, "audio_cleanup").await,
        ["success:Success:icon", "paused:Paused:icon"]
    );
    let note = browser
        .text("article[data-job=audio_cleanup] [data-role=paused]")
        .await;
    assert!(
        note.contains("Scheduled runs are paused by local"),
        "{note}"
    );
    assert!(note.contains("Reason: storage migration tonight"), "{note}");
    assert_eq!(
        facts(&browser, "audio_cleanup").await["Next run"],
        "Not scheduled while paused"
    );
    // Run now stays available for a paused job.
    assert_eq!(
        browser
            .eval(&format!(
                "{}.querySelector('[data-action=run]').disabled",
                card("audio_cleanup")
            ))
            .await,
        json!(false)
    );
    let shot = browser.screenshot("1-paused").await;
    publish(&shot, "console-card.png");

    // Stored, not just shown: a reload shows it again.
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    watch_csp(&browser).await;
    browser
        .wait_for(
            "still paused after a reload",
            &format!("{}.dataset.state === 'paused'", card("audio_cleanup")),
        )
        .await;

    browser
        .click("article[data-job=audio_cleanup] [data-action=resume]")
        .await;
    browser
        .wait_for(
            "the card resumed",
            &format!(
                "{c}.dataset.state === 'success' && !{c}.querySelector('[data-role=paused]') \
                 && {c}.querySelector('[data-action=pause]')",
                c = card("audio_cleanup")
            ),
        )
        .await;
    // The event stream may show the card resumed before the request's own answer comes
    // back with its message.
    browser
        .wait_for(
            "the resume message",
            "(document.querySelector('article[data-job=audio_cleanup] [data-role=run-message]') \
             || {}).textContent?.includes('is resumed')",
        )
        .await;
    assert_eq!(violations(&browser).await, json!([]));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_from_the_card_shows_what_it_would_do_and_changes_nothing() {
    let storage = storage_without_deletes().await;
    let db = TestDatabase::new().await;
    sql(
        &db,
        "INSERT INTO transcriptions (created_at, audio_file_path) VALUES \
         (now() - interval '40 days', 'audio/a.webm'), (now() - interval '41 days', 'audio/b.webm')",
    )
    .await;
    let server = Server::start(
        "dry-run",
        db.url(),
        &[
            ("SUPABASE_URL", &storage.uri()),
            ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY),
        ],
    )
    .await;
    let browser = Browser::open("dry-run", 1280, 900).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    // Only a job that supports it offers a dry run.
    assert_eq!(
        browser
            .eval(&format!(
                "{}.querySelector('[data-action=dry-run]').textContent",
                card("audio_cleanup")
            ))
            .await,
        json!("Dry run")
    );
    browser
        .click("article[data-job=audio_cleanup] [data-action=dry-run]")
        .await;
    browser
        .wait_for(
            "the dry run's details, finished",
            "/^#\\/executions\\/\\d+$/.test(location.hash) && \
             !document.getElementById('run-detail').hidden && \
             document.getElementById('run-cancel').hidden && \
             !document.querySelector('#run-badges [data-badge=running]') && \
             document.querySelector('#run-badges [data-badge=dry]')",
        )
        .await;
    // Its own neutral badge: a dry run is no success.
    assert_eq!(
        browser
            .eval(
                "[document.getElementById('run-dry').hidden, \
                  Array.from(document.querySelectorAll('#run-badges .badge')).map(b => b.dataset.badge + ':' + b.textContent.trim()), \
                  document.getElementById('jobs-section').hidden]"
            )
            .await,
        json!([false, ["dry:Dry run"], true])
    );
    let stats = browser
        .eval(
            "Object.fromEntries(Array.from(document.querySelectorAll('#run-stats .stat'))\
             .map(s => [s.querySelector('dt').textContent, s.querySelector('dd').textContent]))",
        )
        .await;
    assert_eq!(stats["Would delete"], "2", "{stats}");
    let log = browser.text("#run-events").await;
    assert!(log.contains("(dry run, nothing changed)"), "{log}");
    browser.screenshot("1-dry-run").await;
    browser.close().await;
    storage.verify().await;
    // Nothing was marked deleted.
    let mut conn = db.connect().await;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let marked: N = diesel::sql_query(
        "SELECT count(*) AS n FROM transcriptions WHERE audio_deleted_at IS NOT NULL",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(marked.n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_details_open_from_the_history_with_its_log_and_offer_run_again() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "failed",
            0,
            42_000,
            json!({"considered": 10, "already_absent": 1, "failed": 4, "deleted": 5}),
            Some("Storage answered 503 three times"),
        ),
    )
    .await;
    sql(
        &db,
        "INSERT INTO job_execution_events (execution_id, at, level, message) \
         SELECT id, started_at + interval '1 second', 'info', '[Job] audio_cleanup: batch 1 of 2' \
         FROM job_executions UNION ALL \
         SELECT id, started_at + interval '2 seconds', 'error', 'Storage answered 503 <b>three</b> times' \
         FROM job_executions",
    )
    .await;
    sql(
        &db,
        &finished(
            "cost_update",
            "success",
            0,
            800,
            json!({"updated": 3}),
            None,
        ),
    )
    .await;
    let server = Server::start("run-details", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("run-details", 1280, 1000).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    watch_csp(&browser).await;
    browser
        .click("article[data-job=audio_cleanup] [data-action=history]")
        .await;
    browser
        .wait_for(
            "the failed run in the history",
            "document.querySelector('#history-rows tr[data-status=failed] a[data-role=open-run]')",
        )
        .await;
    browser
        .click("#history-rows tr[data-status=failed] a[data-role=open-run]")
        .await;
    browser
        .wait_for(
            "the run's details with its log",
            "!document.getElementById('run-detail').hidden && \
             document.querySelectorAll('#run-events li').length === 2",
        )
        .await;
    let hash = browser.eval("location.hash").await;
    assert!(
        hash.as_str().unwrap().starts_with("#/executions/"),
        "{hash}"
    );
    assert_eq!(
        browser
            .eval(
                "Array.from(document.querySelectorAll('#run-events li')).map(l => \
                 [l.dataset.level, l.querySelector('.event-message').textContent])"
            )
            .await,
        json!([
            ["info", "[Job] audio_cleanup: batch 1 of 2"],
            ["error", "Storage answered 503 <b>three</b> times"]
        ])
    );
    // The job's own keys first, then the rest (in the order the API lists them).
    assert_eq!(
        browser
            .eval("Array.from(document.querySelectorAll('#run-stats .stat dt')).map(d => d.textContent)")
            .await,
        json!(["Deleted", "Failed", "Already absent", "Considered"])
    );
    let facts = browser
        .eval(
            "Object.fromEntries(Array.from(document.querySelectorAll('#run-facts .fact'))\
             .map(f => [f.querySelector('dt').textContent, f.querySelector('dd').innerText]))",
        )
        .await;
    assert_eq!(facts["Trigger"], "Scheduled", "{facts}");
    assert_eq!(facts["Worker"], "web-1:8080", "{facts}");
    assert_eq!(facts["Duration"], "42 s", "{facts}");
    assert!(
        facts["Attempts"]
            .as_str()
            .unwrap()
            .contains("attempt 1 (Failed)"),
        "{facts}"
    );
    assert_eq!(
        browser.text("#run-error-text").await,
        "Storage answered 503 three times"
    );
    assert_eq!(
        browser
            .eval("[document.getElementById('run-again').hidden, document.getElementById('run-cancel').hidden]")
            .await,
        json!([false, true])
    );
    assert_eq!(browser.text("#run-again").await, "Run again");
    let shot = browser.screenshot("1-details").await;
    publish(&shot, "run-details.png");

    // Addressable: a reload opens the same view.
    browser.client.refresh().await.unwrap();
    browser
        .wait_for(
            "the details after a reload",
            "!document.getElementById('run-detail').hidden && \
             document.querySelectorAll('#run-events li').length === 2",
        )
        .await;
    watch_csp(&browser).await;
    // Back to the dashboard.
    browser.click("#run-detail a.back-link").await;
    browser
        .wait_for(
            "the dashboard again",
            "document.getElementById('run-detail').hidden && !document.getElementById('jobs-section').hidden",
        )
        .await;
    assert_eq!(violations(&browser).await, json!([]));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_filters_are_kept_in_the_url_and_restored_on_reload() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &format!(
            "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, \
             stats, error_message, triggered_by, scheduled_for, worker_id) \
             SELECT 'audio_cleanup', CASE WHEN n % 2 = 0 THEN 'failed' ELSE 'success' END, \
                    {slot} - n * interval '1 day' + interval '1 hour', \
                    {slot} - n * interval '1 day' + interval '1 hour' + interval '5 seconds', 5000, \
                    '{{}}', CASE WHEN n % 2 = 0 THEN 'boom' END, \
                    CASE WHEN n % 3 = 0 THEN 'manual' ELSE 'schedule' END, \
                    CASE WHEN n % 3 = 0 THEN NULL ELSE {slot} - n * interval '1 day' END, 'web-1:8080' \
             FROM generate_series(1, 12) n",
            slot = latest_slot("audio_cleanup")
        ),
    )
    .await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "success",
            0,
            800,
            json!({"deleted": 1}),
            None,
        ),
    )
    .await;
    sql(
        &db,
        &finished(
            "cost_update",
            "success",
            0,
            800,
            json!({"updated": 3}),
            None,
        ),
    )
    .await;
    let server = Server::start("filters", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("filters", 1280, 1000).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    // All jobs by default.
    browser
        .wait_for(
            "every job's runs",
            "document.querySelectorAll('#history-rows tr').length === 14",
        )
        .await;
    let select = |id: &'static str| {
        let client = browser.client.clone();
        async move {
            client
                .find(fantoccini::Locator::Css(id))
                .await
                .unwrap_or_else(|e| panic!("{id}: {e}"))
        }
    };
    select("#history-job")
        .await
        .select_by_value("audio_cleanup")
        .await
        .unwrap();
    select("#history-status")
        .await
        .select_by_value("failed")
        .await
        .unwrap();
    select("#history-trigger")
        .await
        .select_by_value("manual")
        .await
        .unwrap();
    // Runs 6 and 12 are manual and failed; run 12 started 12 days before the latest slot.
    let from = browser
        .eval(
            "(() => { const d = new Date(Date.now() - 9 * 86400000); \
             return d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + \
             String(d.getDate()).padStart(2, '0'); })()",
        )
        .await;
    let from = from.as_str().unwrap().to_owned();
    browser
        .eval(&format!(
            "(() => {{ const el = document.getElementById('history-from'); el.value = {}; \
             el.dispatchEvent(new Event('change')); return true; }})()",
            js_str(&from)
        ))
        .await;
    let expect_rows = "Array.from(document.querySelectorAll('#history-rows tr')).map(r => \
         [r.dataset.job, r.dataset.status, r.dataset.trigger])";
    browser
        .wait_for(
            "only the manual failed run since the date",
            "document.querySelectorAll('#history-rows tr').length === 1",
        )
        .await;
    assert_eq!(
        browser.eval(expect_rows).await,
        json!([["audio_cleanup", "failed", "manual"]])
    );
    let search = browser.eval("location.search").await;
    let search = search.as_str().unwrap().to_owned();
    for part in [
        "job=audio_cleanup",
        "status=failed",
        "trigger=manual",
        &format!("from={from}"),
    ] {
        assert!(search.contains(part), "{search} lacks {part}");
    }

    // A reload keeps every filter.
    browser.client.refresh().await.unwrap();
    cards_shown(&browser, 2).await;
    browser
        .wait_for(
            "the same filtered history after a reload",
            "document.querySelectorAll('#history-rows tr').length === 1",
        )
        .await;
    assert_eq!(
        browser
            .eval(
                "['history-job', 'history-status', 'history-trigger', 'history-from', 'history-to']\
                 .map(id => document.getElementById(id).value)"
            )
            .await,
        json!(["audio_cleanup", "failed", "manual", from, ""])
    );
    assert_eq!(
        browser.eval(expect_rows).await,
        json!([["audio_cleanup", "failed", "manual"]])
    );
    browser.screenshot("1-filtered").await;

    browser.click("#history-clear").await;
    browser
        .wait_for(
            "every run again",
            "document.querySelectorAll('#history-rows tr').length === 14 && location.search === ''",
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trends_draw_success_rate_duration_and_counters_per_day() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &format!(
            "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, \
             stats, error_message, triggered_by, scheduled_for, worker_id) \
             SELECT 'audio_cleanup', CASE WHEN n % 4 = 0 THEN 'failed' ELSE 'success' END, \
                    {slot} - n * interval '1 day', {slot} - n * interval '1 day' + (20 + n) * interval '1 second', \
                    (20 + n) * 1000, jsonb_build_object('deleted', 100 + n * 3, 'failed', n % 4, 'considered', 120 + n * 3), \
                    CASE WHEN n % 4 = 0 THEN 'boom' END, 'schedule', {slot} - n * interval '1 day', 'web-1:8080' \
             FROM generate_series(0, 20) n",
            slot = latest_slot("audio_cleanup")
        ),
    )
    .await;
    sql(
        &db,
        &finished(
            "cost_update",
            "success",
            0,
            800,
            json!({"updated": 3}),
            None,
        ),
    )
    .await;
    let server = Server::start("trends", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("trends", 1280, 1100).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    watch_csp(&browser).await;
    browser
        .click("article[data-job=audio_cleanup] [data-action=trends]")
        .await;
    browser
        .wait_for(
            "three trend charts",
            "!document.getElementById('trends').hidden && \
             document.querySelectorAll('#trends-charts figure').length === 3",
        )
        .await;
    assert_eq!(
        browser.eval("location.hash").await,
        json!("#/jobs/audio_cleanup/trends")
    );
    assert_eq!(
        browser
            .eval(
                "[document.querySelectorAll('[data-chart=success] rect.bar-success').length, \
                  document.querySelectorAll('[data-chart=success] rect.trend-failed').length, \
                  document.querySelectorAll('[data-chart=duration] polyline').length > 0, \
                  Array.from(document.querySelectorAll('[data-chart=counters] .legend li')).map(l => l.textContent)]"
            )
            .await,
        json!([21, 6, true, ["Deleted 2,730", "Failed 30", "Considered 3,150"]])
    );
    let shot = browser.screenshot("1-trends").await;
    publish(&shot, "trends.png");
    let select = browser
        .client
        .find(fantoccini::Locator::Css("#trends-days"))
        .await
        .unwrap();
    select.select_by_value("7").await.unwrap();
    browser
        .wait_for(
            "seven days",
            "document.querySelector('[data-chart=success] .chart-axis span').textContent !== '' && \
             [6, 7].includes(document.querySelectorAll('[data-chart=success] rect.bar-success').length)",
        )
        .await;
    assert_eq!(violations(&browser).await, json!([]));

    // Opened directly by its address, the page names the job as the cards do.
    browser
        .goto(&format!("{}/#/jobs/audio_cleanup/trends", server.base))
        .await;
    browser.client.refresh().await.unwrap();
    browser
        .wait_for(
            "the trends title with the display name",
            "document.getElementById('trends-title').textContent === 'Trends · Audio Cleanup'",
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_a_running_card_asks_its_server_to_stop() {
    let db = TestDatabase::new().await;
    sql(&db, &running("audio_cleanup", 20, json!({"deleted": 3}))).await;
    // Written by another system: no server holds it, so the cancel closes it at once. (Its
    // hand-kept heartbeat keeps the lease check off it for as long as the test runs.)
    sql(
        &db,
        "INSERT INTO job_executions (job_name, status, started_at, heartbeat_at) \
         VALUES ('cost_update', 'running', now(), now() + interval '1 hour')",
    )
    .await;
    let server = Server::start("cancel", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("cancel", 1280, 900).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    wait_status(&browser, "audio_cleanup", "running").await;
    browser
        .click("article[data-job=audio_cleanup] [data-action=cancel]")
        .await;
    browser
        .click("article[data-job=audio_cleanup] [data-action=cancel-confirm]")
        .await;
    let message = browser
        .wait_for(
            "the cancel answer",
            "document.querySelector('article[data-job=audio_cleanup] [data-role=run-message]').textContent",
        )
        .await;
    assert!(
        message
            .as_str()
            .unwrap()
            .starts_with("Cancellation of run #"),
        "{message}"
    );

    wait_status(&browser, "cost_update", "running").await;
    browser
        .click("article[data-job=cost_update] [data-action=cancel]")
        .await;
    browser
        .click("article[data-job=cost_update] [data-action=cancel-confirm]")
        .await;
    let message = browser
        .wait_for(
            "the answer for a run no server held",
            "document.querySelector('article[data-job=cost_update] [data-role=run-message]').textContent",
        )
        .await;
    assert!(
        message
            .as_str()
            .unwrap()
            .ends_with("was not held by any server; it is now closed as failed."),
        "{message}"
    );
    wait_status(&browser, "cost_update", "failed").await;
    browser.close().await;
}

/// Waits up to `limit` (longer than the usual deadline) until `expression` is true.
async fn wait_longer(browser: &Browser, what: &str, expression: &str, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while browser.eval(&format!("Boolean({expression})")).await != json!(true) {
        if std::time::Instant::now() > deadline {
            let shot = browser.screenshot(&format!("TIMEOUT-{what}")).await;
            panic!(
                "timed out after {limit:?} waiting for {what}; screenshot {}",
                shot.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Counts the page's requests whose address matches `pattern` (a JavaScript regular
/// expression) in `window.__asked`; `answer`, if given, is JavaScript that makes a
/// `Response` for them instead of the server.
async fn count_requests(browser: &Browser, pattern: &str, answer: Option<&str>) {
    let answer = answer.map_or_else(|| "null".to_owned(), |a| format!("() => {a}"));
    browser
        .eval(&format!(
            "(window.__asked = 0, window.__fetch = window.__fetch || window.fetch, \
              window.__answer = {answer}, \
              window.fetch = (input, init) => {{ \
                const url = String(input instanceof Request ? input.url : input); \
                if ({pattern}.test(url)) {{ \
                  window.__asked += 1; \
                  if (window.__answer) return Promise.resolve(window.__answer()); \
                }} \
                return window.__fetch(input, init); \
              }}, true)"
        ))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_event_stream_the_page_polls_on_its_own_schedule() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "success",
            0,
            1200,
            json!({"deleted": 2}),
            None,
        ),
    )
    .await;
    // No streams at all: every try of the stream is refused with 503 `events_disabled`,
    // and retried with backoff.
    let mut vars = BOTH_ENABLED.to_vec();
    vars.push(("EVENTS_MAX_STREAMS", "0"));
    let server = Server::start("poll-fallback", db.url(), &vars).await;
    let browser = Browser::open("poll-fallback", 1280, 900).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    browser
        .wait_for(
            "the polling mode",
            "document.getElementById('updated').dataset.mode === 'slow' \
             && document.getElementById('updated-mode').textContent === ' · every 10 s'",
        )
        .await;

    // Paused on another server (the same database): the page learns it at its next poll,
    // at most 10 s away however often the stream is retried meanwhile.
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/internal/api/v1/jobs/audio_cleanup/pause",
            server.base
        ))
        .json(&json!({"reason": "disk swap"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    wait_longer(
        &browser,
        "the pause by polling",
        &format!("{}.dataset.state === 'paused'", card("audio_cleanup")),
        Duration::from_secs(13),
    )
    .await;
    assert_eq!(
        browser
            .eval("document.getElementById('updated').dataset.mode")
            .await,
        json!("slow")
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_reach_the_database_is_not_shown_as_live() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "success",
            0,
            1200,
            json!({"deleted": 2}),
            None,
        ),
    )
    .await;
    let server = Server::start("not-ready", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("not-ready", 1280, 900).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    browser
        .wait_for(
            "live updates",
            "document.getElementById('updated-mode').textContent === ' · live'",
        )
        .await;

    // The database refuses the server from now on: its routes still answer from memory.
    reachable(&db, false).await;
    browser
        .wait_for(
            "the not-ready banner",
            "!document.getElementById('not-ready').hidden \
             && document.getElementById('not-ready').dataset.problem === 'database_unavailable'",
        )
        .await;
    assert_eq!(
        browser.text("#not-ready-title").await,
        "This server cannot reach the database"
    );
    let detail = browser.text("#not-ready-detail").await;
    assert!(detail.starts_with("Figures as of "), "{detail}");
    assert!(detail.contains("may be out of date"), "{detail}");
    let mode = browser.text("#updated-mode").await;
    assert!(!mode.contains("live"), "{mode}");
    assert_eq!(
        browser
            .eval("document.getElementById('updated').dataset.mode")
            .await,
        json!("not-ready")
    );
    browser.screenshot("not-ready").await;

    // Reachable again: the banner goes and the page is live again.
    reachable(&db, true).await;
    browser
        .wait_for(
            "the banner gone and live again",
            "document.getElementById('not-ready').hidden \
             && document.getElementById('updated-mode').textContent === ' · live'",
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_is_neither_a_success_nor_a_failure_and_the_last_real_run_stays_shown() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "failed",
            0,
            1200,
            json!({"deleted": 1, "failed": 3}),
            Some("Storage answered 503"),
        ),
    )
    .await;
    let dry = |job: &str, secs_ago: i64| {
        format!(
            "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, \
             stats, triggered_by, dry_run, worker_id) VALUES ({}, 'success', \
             now() - {secs_ago} * interval '1 second', now() - {secs_ago} * interval '1 second' \
             + interval '2 seconds', 2000, '{{\"would_delete\": 5}}', 'manual', true, 'web-1:8080')",
            lit(job)
        )
    };
    sql(&db, &dry("audio_cleanup", 60)).await;
    sql(&db, &dry("cost_update", 30)).await;
    let server = Server::start("dry-outcome", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("dry-outcome", 1280, 1000).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;

    // The real run's failure stays the card's outcome; the dry run has its own badge.
    wait_status(&browser, "audio_cleanup", "failed").await;
    assert_eq!(
        badges(&browser, "audio_cleanup").await,
        ["failed:Failed:icon", "dry:Dry run:icon"]
    );
    assert_eq!(
        browser
            .text("article[data-job=audio_cleanup] [data-role=error] .error-text")
            .await,
        "Storage answered 503"
    );
    let note = browser
        .text("article[data-job=audio_cleanup] [data-role=dry-run]")
        .await;
    assert!(note.contains("changed nothing"), "{note}");
    // A job with only a dry run: no outcome to show but the dry run, neutrally.
    wait_status(&browser, "cost_update", "dry").await;
    assert_eq!(badges(&browser, "cost_update").await, ["dry:Dry run:icon"]);
    assert_eq!(
        browser.text("#jobs-summary").await,
        "2 jobs · 1 failed · 1 with dry runs only"
    );
    // The chart counts them apart.
    browser
        .wait_for(
            "the chart",
            "document.querySelectorAll('#chart rect.bar').length === 3",
        )
        .await;
    assert_eq!(
        browser
            .eval(
                "[document.querySelectorAll('#chart rect.bar-success').length, \
                  document.querySelectorAll('#chart rect.bar-dry').length, \
                  Array.from(document.querySelectorAll('#chart-legend li')).map(l => l.textContent)]"
            )
            .await,
        json!([0, 2, ["Success 0", "Failed 1", "Running 0", "Dry run 2"]])
    );
    assert_eq!(
        browser
            .eval(
                "Array.from(document.querySelectorAll('#history-rows tr .badge')).map(b => b.dataset.badge)"
            )
            .await,
        json!(["dry", "dry", "failed"])
    );
    browser.screenshot("dry-outcome").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_cards_buttons_stay_the_same_elements_while_progress_arrives() {
    let db = TestDatabase::new().await;
    sql(&db, &running("audio_cleanup", 5, json!({"deleted": 1}))).await;
    let server = Server::start("stable-card", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("stable-card", 1280, 900).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    wait_status(&browser, "audio_cleanup", "running").await;
    browser
        .wait_for(
            "live updates",
            "document.getElementById('updated-mode').textContent === ' · live'",
        )
        .await;
    let cancel = browser
        .client
        .find(fantoccini::Locator::Css(
            "article[data-job=audio_cleanup] [data-action=cancel]",
        ))
        .await
        .unwrap();
    browser
        .eval(&format!(
            "(window.__cancel = {c}.querySelector('[data-action=cancel]'), \
              window.__pause = {c}.querySelector('[data-action=pause]'), true)",
            c = card("audio_cleanup")
        ))
        .await;

    // Progress arrives, and the card shows it, on the same elements.
    for deleted in [10, 20, 30] {
        sql(
            &db,
            &format!(
                "UPDATE job_executions SET stats = '{{\"deleted\": {deleted}}}' WHERE status = 'running'"
            ),
        )
        .await;
        browser
            .wait_for(
                &format!("{deleted} deleted"),
                &format!(
                    "Array.from({}.querySelectorAll('.stats dd')).some(d => d.textContent === '{deleted}')",
                    card("audio_cleanup")
                ),
            )
            .await;
    }
    assert_eq!(
        browser
            .eval(&format!(
                "[window.__cancel.isConnected, \
                  window.__cancel === {c}.querySelector('[data-action=cancel]'), \
                  window.__pause === {c}.querySelector('[data-action=pause]')]",
                c = card("audio_cleanup")
            ))
            .await,
        json!([true, true, true])
    );
    // The element found before the updates takes the click: it asks first.
    cancel
        .click()
        .await
        .expect("the Cancel run button found before the updates");
    let confirm = browser
        .client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(fantoccini::Locator::Css(
            "article[data-job=audio_cleanup] [data-action=cancel-confirm]",
        ))
        .await
        .unwrap();
    assert!(browser
        .text("article[data-job=audio_cleanup] [data-role=cancel-form]")
        .await
        .starts_with("Stop run #1?"));
    sql(
        &db,
        "UPDATE job_executions SET stats = '{\"deleted\": 40}' WHERE status = 'running'",
    )
    .await;
    browser
        .wait_for(
            "40 deleted",
            &format!(
                "Array.from({}.querySelectorAll('.stats dd')).some(d => d.textContent === '40')",
                card("audio_cleanup")
            ),
        )
        .await;
    confirm
        .click()
        .await
        .expect("the confirmation found before the update");
    browser
        .wait_for(
            "the cancel answer",
            "document.querySelector('article[data-job=audio_cleanup] [data-role=run-message]')\
             .textContent.startsWith('Cancellation of run #1 requested')",
        )
        .await;

    // The run ends: the note about a cancellation in progress goes with it.
    sql(
        &db,
        "UPDATE job_executions SET status = 'failed', completed_at = now(), duration_ms = 9000, \
         error_message = 'cancelled by local', lease_expires_at = NULL WHERE status = 'running'",
    )
    .await;
    wait_status(&browser, "audio_cleanup", "failed").await;
    browser
        .wait_for(
            "the cancel note gone",
            "document.querySelector('article[data-job=audio_cleanup] [data-role=run-message]')\
             .textContent === ''",
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_a_runs_details_page_asks_first_and_its_note_ends_with_the_run() {
    let (db, _server, browser) =
        running_run_details("detail-cancel", "audio_cleanup", 5, json!({"deleted": 1})).await;
    // Its lines are stored when it ends: the page says so instead of "logged nothing".
    assert_eq!(
        browser.text("#run-events-empty").await,
        "Log lines appear when the run ends."
    );

    browser.click("#run-cancel").await;
    browser
        .wait_for(
            "the confirmation",
            "!document.getElementById('run-cancel-confirm').hidden \
             && document.getElementById('run-cancel').hidden",
        )
        .await;
    assert!(browser
        .text("#run-cancel-question")
        .await
        .starts_with("Stop run #1?"));
    // Asked, not done: "Keep it running" goes back.
    browser.click("#run-cancel-keep").await;
    browser
        .wait_for(
            "Cancel run again",
            "document.getElementById('run-cancel-confirm').hidden \
             && !document.getElementById('run-cancel').hidden",
        )
        .await;
    assert_eq!(browser.text("#run-msg").await, "");

    browser.click("#run-cancel").await;
    browser.click("#run-cancel-go").await;
    browser
        .wait_for(
            "the cancel answer",
            "document.getElementById('run-msg').textContent.startsWith('Cancellation of run #1 requested')",
        )
        .await;
    sql(
        &db,
        "UPDATE job_executions SET status = 'failed', completed_at = now(), duration_ms = 9000, \
         error_message = 'cancelled by local', lease_expires_at = NULL WHERE status = 'running'",
    )
    .await;
    browser
        .wait_for(
            "the run ended and the note gone",
            "document.getElementById('run-cancel').hidden \
             && document.getElementById('run-error-text').textContent === 'cancelled by local' \
             && document.getElementById('run-msg').textContent === ''",
        )
        .await;
    assert_eq!(
        browser.text("#run-events-empty").await,
        "This run logged nothing."
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_job_that_is_also_disabled_shows_the_pause_and_offers_resume() {
    let db = TestDatabase::new().await;
    // cost_update is disabled: no Deepgram key.
    let server = Server::start(
        "paused-disabled",
        db.url(),
        &[
            ("SUPABASE_URL", "http://127.0.0.1:9"),
            ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY),
        ],
    )
    .await;
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/internal/api/v1/jobs/cost_update/pause",
            server.base
        ))
        .json(&json!({"reason": "price table migration"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let browser = Browser::open("paused-disabled", 1280, 900).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    browser
        .wait_for(
            "the pause on the disabled card",
            &format!(
                "{}.querySelector('[data-role=paused]')",
                card("cost_update")
            ),
        )
        .await;
    assert_eq!(
        badges(&browser, "cost_update").await,
        [
            "never:Never run:icon",
            "disabled:Disabled:icon",
            "paused:Paused:icon"
        ]
    );
    let note = browser
        .text("article[data-job=cost_update] [data-role=paused]")
        .await;
    assert!(note.contains("Reason: price table migration"), "{note}");
    browser
        .click("article[data-job=cost_update] [data-action=resume]")
        .await;
    browser
        .wait_for(
            "the pause lifted",
            &format!(
                "!{c}.querySelector('[data-role=paused]') && !{c}.querySelector('[data-action=resume]') \
                 && !{c}.querySelector('[data-action=pause]') && {c}.querySelector('[data-role=disabled-reason]')",
                c = card("cost_update")
            ),
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_from_the_api_cannot_reorder_the_text_around_it() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "success",
            0,
            1200,
            json!({"deleted": 2}),
            None,
        ),
    )
    .await;
    // Who paused it, as stored, with a right-to-left override and no end to it.
    sql(
        &db,
        "INSERT INTO job_controls (job_name, paused, paused_at, paused_by, pause_reason, updated_at, version) \
         VALUES ('audio_cleanup', true, now(), E'\\u202Eadmin', E'\\u202Edisk swap', now(), 1)",
    )
    .await;
    let server = Server::start("bidi", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("bidi", 1280, 900).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    browser
        .wait_for(
            "the paused note",
            &format!(
                "{}.querySelector('[data-role=paused]')",
                card("audio_cleanup")
            ),
        )
        .await;
    // The page's own words after the name still read left to right: "Run" before "now".
    let order = browser
        .eval(&format!(
            "(() => {{ \
               const p = {}.querySelector('[data-role=paused] .note-body p:nth-child(2)'); \
               const walker = document.createTreeWalker(p, NodeFilter.SHOW_TEXT); \
               let node; \
               while ((node = walker.nextNode()) && !node.data.includes('Run now still works')); \
               const at = (word) => {{ const r = document.createRange(); \
                 const i = node.data.indexOf(word); r.setStart(node, i); r.setEnd(node, i + word.length); \
                 return r.getBoundingClientRect(); }}; \
               const [run, now] = [at('Run '), at('now still')]; \
               return Math.abs(run.top - now.top) < 2 && run.left < now.left; }})()",
            card("audio_cleanup")
        ))
        .await;
    browser.screenshot("bidi").await;
    let note = browser
        .eval(&format!(
            "{}.querySelector('[data-role=paused]').innerHTML",
            card("audio_cleanup")
        ))
        .await;
    assert_eq!(order, json!(true), "{note}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_address_that_is_no_run_says_so_without_asking_again() {
    let db = TestDatabase::new().await;
    let server = Server::start("no-such-run", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("no-such-run", 1280, 900).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;

    // Beyond 64 bits: no execution can have it, so nothing is asked.
    count_requests(&browser, "/\\/jobs\\/executions\\/\\d/", None).await;
    browser
        .eval("(location.hash = '#/executions/99999999999999999999999', true)")
        .await;
    browser
        .wait_for(
            "no such run",
            "!document.getElementById('run-error-load').hidden",
        )
        .await;
    let text = browser.text("#run-error-load").await;
    assert!(text.starts_with("No such run"), "{text}");
    assert!(!text.contains("e+"), "{text}");

    // A number the server refuses (4xx): said once, not asked again.
    count_requests(
        &browser,
        "/\\/jobs\\/executions\\/5(\\/|$)/",
        Some(
            "new Response(JSON.stringify({error: {code: 'invalid_path', message: 'bad id'}}), \
             {status: 400, headers: {'Content-Type': 'application/json'}})",
        ),
    )
    .await;
    browser
        .eval("(location.hash = '#/executions/5', true)")
        .await;
    browser
        .wait_for(
            "the refusal",
            "document.getElementById('run-error-load').textContent.startsWith('No such run: the server refused #5')",
        )
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(browser.eval("window.__asked").await, json!(1));
    assert_eq!(browser.text("#run-title").await, "Run #5");
    browser.close().await;
}

/// A finished manual dry run of `job`, `secs_ago` seconds ago.
fn dry_run(job: &str, status: &str, secs_ago: i64, stats: Value, error: Option<&str>) -> String {
    format!(
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, \
         stats, error_message, triggered_by, dry_run, worker_id) VALUES ({job}, {status}, \
         now() - {secs_ago} * interval '1 second', \
         now() - {secs_ago} * interval '1 second' + interval '2 seconds', 2000, \
         {stats}::jsonb, {error}, 'manual', true, 'web-1:8080')",
        job = lit(job),
        status = lit(status),
        stats = lit(&stats.to_string()),
        error = error.map_or_else(|| "NULL".to_owned(), lit),
    )
}

/// Counts the executions of the test database matching an SQL condition.
async fn count_executions(db: &TestDatabase, condition: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.connect().await;
    let n: N = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM job_executions WHERE {condition}"
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    n.n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_again_on_a_failed_dry_run_runs_a_dry_run_again_and_says_so() {
    let storage = storage_without_deletes().await;
    let db = TestDatabase::new().await;
    crate::support::seed_old_audio(&db, 2).await;
    sql(
        &db,
        &dry_run(
            "audio_cleanup",
            "failed",
            60,
            json!({"would_delete": 0}),
            Some("Storage answered 503"),
        ),
    )
    .await;
    let server = Server::start(
        "dry-again",
        db.url(),
        &[
            ("SUPABASE_URL", &storage.uri()),
            ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE_KEY),
        ],
    )
    .await;
    let browser = Browser::open("dry-again", 1280, 900).await;
    browser
        .goto(&format!("{}/#/executions/1", server.base))
        .await;
    browser
        .wait_for(
            "the failed dry run's details",
            "!document.getElementById('run-again').hidden",
        )
        .await;
    // The button says what it does: another dry run, not a real one.
    assert_eq!(browser.text("#run-again").await, "Dry run again");
    browser.click("#run-again").await;
    browser
        .wait_for(
            "the new run's details, a dry run",
            "location.hash !== '#/executions/1' && /^#\\/executions\\/\\d+$/.test(location.hash) \
             && document.querySelector('#run-badges [data-badge=dry]') \
             && !document.getElementById('run-dry').hidden",
        )
        .await;
    browser.close().await;
    assert_eq!(count_executions(&db, "NOT dry_run").await, 0);
    assert_eq!(count_executions(&db, "dry_run").await, 2);
    storage.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_stays_failed_after_more_than_a_hundred_dry_runs() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "failed",
            0,
            1200,
            json!({"deleted": 1, "failed": 3}),
            Some("Storage answered 503"),
        ),
    )
    .await;
    // 120 dry runs since, the latest a minute ago.
    sql(
        &db,
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, \
         stats, triggered_by, dry_run, worker_id) \
         SELECT 'audio_cleanup', 'success', now() - (60 + g) * interval '1 second', \
         now() - (59 + g) * interval '1 second', 1000, '{\"would_delete\": 5}', 'manual', true, \
         'web-1:8080' FROM generate_series(1, 120) g",
    )
    .await;
    let server = Server::start("dry-many", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("dry-many", 1280, 1000).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    wait_status(&browser, "audio_cleanup", "failed").await;
    assert_eq!(
        badges(&browser, "audio_cleanup").await,
        ["failed:Failed:icon", "dry:Dry run:icon"]
    );
    assert_eq!(
        browser
            .text("article[data-job=audio_cleanup] [data-role=error] .error-text")
            .await,
        "Storage answered 503"
    );
    let summary = browser.text("#jobs-summary").await;
    assert!(summary.contains("1 failed"), "{summary}");
    assert!(!summary.contains("dry runs only"), "{summary}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lookup_of_the_last_real_run_says_so_and_is_asked_again() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "failed",
            0,
            1200,
            json!({"deleted": 1, "failed": 3}),
            Some("Storage answered 503"),
        ),
    )
    .await;
    sql(
        &db,
        &dry_run(
            "audio_cleanup",
            "success",
            60,
            json!({"would_delete": 5}),
            None,
        ),
    )
    .await;
    let server = Server::start("real-unknown", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("real-unknown", 1280, 1000).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    wait_status(&browser, "audio_cleanup", "failed").await;

    // The database refuses the server; the page is opened again meanwhile: the jobs come
    // from the server's memory, the history lookup fails.
    reachable(&db, false).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    // Unknown, not "no real run".
    wait_status(&browser, "audio_cleanup", "unknown").await;
    assert_eq!(
        badges(&browser, "audio_cleanup").await,
        ["unknown:Outcome unknown:icon", "dry:Dry run:icon"]
    );
    let note = browser
        .text("article[data-job=audio_cleanup] [data-role=dry-run]")
        .await;
    assert!(
        note.contains("The outcome of the last real run could not be loaded"),
        "{note}"
    );
    assert!(!note.contains("No real run"), "{note}");
    let summary = browser.text("#jobs-summary").await;
    assert!(!summary.contains("dry runs only"), "{summary}");
    assert!(
        summary.contains("1 with the last outcome unknown"),
        "{summary}"
    );
    browser.screenshot("unknown").await;

    // Reachable again: asked again, and the failure is back.
    reachable(&db, true).await;
    wait_status(&browser, "audio_cleanup", "failed").await;
    browser.close().await;
}

/// A TCP proxy in front of `target` that forwards everything, except that a connection
/// asking for the event stream goes silent 2 s after the request (held open, the
/// server's bytes dropped), as a misbehaving proxy would.
async fn stalling_proxy(target: u16) -> u16 {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                continue;
            };
            let silent = Arc::new(AtomicBool::new(false));
            let (mut client_rx, mut client_tx) = client.into_split();
            let (mut up_rx, mut up_tx) = upstream.into_split();
            let mark = Arc::clone(&silent);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match client_rx.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let request = &buf[..n];
                    if request
                        .windows(27)
                        .any(|w| w == b"GET /internal/api/v1/events")
                    {
                        let mark = Arc::clone(&mark);
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            mark.store(true, Ordering::SeqCst);
                        });
                    }
                    if up_tx.write_all(request).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match up_rx.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if AtomicBool::load(&silent, Ordering::SeqCst) {
                        continue;
                    }
                    if client_tx.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                // The event stream is held open, saying nothing, for as long as the test
                // runs; any other connection the server closed is closed.
                if AtomicBool::load(&silent, Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                let _ = client_tx.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_event_stream_is_not_called_live_and_the_page_polls() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "audio_cleanup",
            "success",
            0,
            1200,
            json!({"deleted": 2}),
            None,
        ),
    )
    .await;
    let server = Server::start("stalled-stream", db.url(), BOTH_ENABLED).await;
    let proxy = stalling_proxy(server.port).await;
    let browser = Browser::open("stalled-stream", 1280, 900).await;
    browser.goto(&format!("http://127.0.0.1:{proxy}/")).await;
    cards_shown(&browser, 2).await;
    browser
        .wait_for(
            "live updates",
            "document.getElementById('updated-mode').textContent === ' · live'",
        )
        .await;

    // Nothing, not even a heartbeat, comes through any more: within 35 s of silence (and
    // a margin) the page stops calling itself live and polls.
    wait_longer(
        &browser,
        "the stalled stream given up",
        "document.getElementById('updated').dataset.mode === 'slow' \
         && document.getElementById('updated-mode').textContent === ' · every 10 s'",
        Duration::from_secs(50),
    )
    .await;
    // A new stream through the same proxy passes its first events, then stalls: it is not
    // called live without a heartbeat.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        browser
            .eval("document.getElementById('updated').dataset.mode")
            .await,
        json!("slow")
    );

    // Paused on the server directly: polling shows it.
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/internal/api/v1/jobs/audio_cleanup/pause",
            server.base
        ))
        .json(&json!({"reason": "disk swap"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    wait_longer(
        &browser,
        "the pause by polling",
        &format!("{}.dataset.state === 'paused'", card("audio_cleanup")),
        Duration::from_secs(14),
    )
    .await;
    browser.screenshot("stalled").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_ends_while_stop_is_asked_hands_focus_to_the_title_and_says_so() {
    let (db, _server, browser) =
        running_run_details("detail-focus", "audio_cleanup", 5, json!({"deleted": 1})).await;
    browser.click("#run-cancel").await;
    browser
        .wait_for(
            "the confirmation, focused",
            "!document.getElementById('run-cancel-confirm').hidden \
             && document.activeElement.id === 'run-cancel-go'",
        )
        .await;

    // Cancelled from another server: the run ends while the question is open.
    sql(
        &db,
        "UPDATE job_executions SET status = 'failed', completed_at = now(), duration_ms = 9000, \
         error_message = 'cancelled by web-2:8080', lease_expires_at = NULL WHERE status = 'running'",
    )
    .await;
    browser
        .wait_for(
            "the run shown as ended",
            "document.getElementById('run-cancel-confirm').hidden \
             && document.getElementById('run-error-text').textContent === 'cancelled by web-2:8080'",
        )
        .await;
    assert_eq!(
        browser.eval("document.activeElement.id").await,
        json!("run-title")
    );
    browser
        .wait_for(
            "the change announced",
            "document.getElementById('announce').textContent\
             .startsWith('Run #1 has ended (Failed)')",
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_that_an_admin_can_still_run_a_paused_job() {
    const VIEWER: &str = "viewer-token-0123456789abcdef";
    let db = TestDatabase::new().await;
    let mut vars = BOTH_ENABLED.to_vec();
    vars.push(("ADMIN_TOKEN", TOKEN));
    vars.push(("VIEWER_TOKEN", VIEWER));
    let server = Server::start("viewer-paused", db.url(), &vars).await;
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/internal/api/v1/jobs/audio_cleanup/pause",
            server.base
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"reason": "disk swap"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let browser = Browser::open("viewer-paused", 1280, 900).await;
    browser.goto(&server.base).await;
    browser
        .wait_for("the token form", "!document.getElementById('auth').hidden")
        .await;
    browser.type_into("#token-input", VIEWER).await;
    browser.click("#auth-form button[type=submit]").await;
    cards_shown(&browser, 2).await;
    browser
        .wait_for(
            "the read-only note",
            "!document.getElementById('read-only-note').hidden",
        )
        .await;
    let note = browser
        .text("article[data-job=audio_cleanup] [data-role=paused]")
        .await;
    assert!(note.contains("An admin can still run it now."), "{note}");
    assert!(!note.contains("Run now still works"), "{note}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_run_would_do_is_shown_for_dry_runs_only() {
    let db = TestDatabase::new().await;
    sql(
        &db,
        &finished(
            "cost_update",
            "success",
            0,
            800,
            json!({"updated": 3, "would_update": 0, "would_give_up": 0}),
            None,
        ),
    )
    .await;
    sql(
        &db,
        &dry_run(
            "audio_cleanup",
            "success",
            60,
            json!({"would_delete": 5}),
            None,
        ),
    )
    .await;
    let server = Server::start("would-stats", db.url(), BOTH_ENABLED).await;
    let browser = Browser::open("would-stats", 1280, 1000).await;
    browser.goto(&server.base).await;
    cards_shown(&browser, 2).await;
    wait_status(&browser, "cost_update", "success").await;
    assert_eq!(
        stats(&browser, "cost_update").await,
        map(&[("Updated", "3")])
    );
    wait_status(&browser, "audio_cleanup", "dry").await;
    assert_eq!(
        stats(&browser, "audio_cleanup").await,
        map(&[("Would delete", "5")])
    );
    // The history row and the run's details too.
    browser
        .wait_for(
            "the history",
            "document.querySelectorAll('#history-rows tr').length === 2",
        )
        .await;
    let rows = browser
        .eval(
            "Array.from(document.querySelectorAll('#history-rows tr')).map(r => \
             r.dataset.job + ': ' + r.lastElementChild.textContent)",
        )
        .await;
    assert_eq!(
        rows,
        json!(["audio_cleanup: Would delete: 5", "cost_update: Updated: 3"])
    );
    browser
        .eval("(location.hash = '#/executions/1', true)")
        .await;
    browser
        .wait_for(
            "the real run's details",
            "document.querySelectorAll('#run-stats .stat').length > 0 \
             && document.getElementById('run-title').textContent.startsWith('Run #1')",
        )
        .await;
    assert_eq!(
        browser
            .eval("Array.from(document.querySelectorAll('#run-stats .stat dt')).map(d => d.textContent)")
            .await,
        json!(["Updated"])
    );
    browser.close().await;
}
