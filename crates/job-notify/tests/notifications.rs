//! Failure notifications end to end: a real `Runner` recording into a real PostgreSQL
//! database, the `Notifier` as its observer, e-mail through a real SMTP exchange with a
//! local sink, and the webhook against wiremock.

#[path = "notifications/capture.rs"]
mod capture;
#[path = "notifications/smtp_sink.rs"]
mod smtp_sink;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{SubsecRound, Utc};
use db::testing::TestDatabase;
use job_notify::{EmailSettings, Notifier, NotifySettings, WebhookTarget};
use jobs_core::{
    Job, JobContext, JobError, RegisteredJob, Registry, RunObserver, RunPolicy, RunReport,
    RunRequest, Runner, RunnerSettings, Schedule, Stats, Status, Trigger,
};
use smtp_sink::SmtpSink;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// How long asynchronous deliveries may take before a test gives up waiting.
const DEADLINE: Duration = Duration::from_secs(15);
const DISPLAY_NAME: &str = "Nightly Report";
const DASHBOARD: &str = "https://jobs.example.com/";

/// A job that fails or succeeds on demand: `plan` > 0 fails that many more runs, 0
/// succeeds, < 0 always fails.
struct Switchable {
    name: String,
    plan: Arc<AtomicI64>,
    error: String,
}

#[async_trait]
impl Job for Switchable {
    fn name(&self) -> &str {
        &self.name
    }

    fn display_name(&self) -> &str {
        DISPLAY_NAME
    }

    fn default_schedule(&self) -> &str {
        "0 3 * * *"
    }

    async fn run(&self, _ctx: &JobContext) -> Result<Stats, JobError> {
        let mut stats = Stats::with_keys(&["processed", "failed"]);
        let plan = self.plan.load(Ordering::SeqCst);
        if plan == 0 {
            stats.set("processed", 7);
            return Ok(stats);
        }
        if plan > 0 {
            self.plan.fetch_sub(1, Ordering::SeqCst);
        }
        stats.set("failed", 3);
        Err(JobError::new(self.error.clone()).with_stats(stats))
    }
}

/// A database, a notifier configured by `extra`, a runner observed by it, and one job.
struct Harness {
    db: TestDatabase,
    notifier: Arc<Notifier>,
    runner: Arc<Runner>,
    job: Arc<RegisteredJob>,
    plan: Arc<AtomicI64>,
}

/// The settings the server reads from these variables (a short retry delay unless told).
fn settings(vars: &[(&str, &str)]) -> NotifySettings {
    let var = |name: &str| vars.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let number = |name: &str| var(name).map(|v| v.parse::<u64>().expect(name));
    let mut settings = NotifySettings {
        retry_delay: Duration::from_millis(number("ALERT_RETRY_DELAY_MS").unwrap_or(10)),
        ..NotifySettings::default()
    };
    if let Some(smtp) = var("SMTP_URL") {
        let (from, to) = (var("ALERT_EMAIL_FROM"), var("ALERT_EMAIL_TO"));
        settings.email = Some(
            EmailSettings::parse(smtp, from.unwrap_or_default(), to.unwrap_or_default())
                .expect("e-mail settings"),
        );
    }
    settings.webhook =
        var("ALERT_WEBHOOK_URL").map(|url| WebhookTarget(url.parse().expect("ALERT_WEBHOOK_URL")));
    if let Some(attempts) = number("ALERT_SEND_ATTEMPTS") {
        settings.send_attempts = u32::try_from(attempts).expect("ALERT_SEND_ATTEMPTS");
    }
    if let Some(secs) = number("ALERT_SEND_TIMEOUT_SECS") {
        settings.send_timeout = Duration::from_secs(secs);
    }
    if let Some(factor) = var("ALERT_OVERDUE_FACTOR") {
        settings.overdue_factor = factor.parse().expect("ALERT_OVERDUE_FACTOR");
    }
    settings
}

/// A notifier with these settings on this database, linking to [`DASHBOARD`].
fn notifier(db: &TestDatabase, settings: &NotifySettings) -> Arc<Notifier> {
    let dashboard = DASHBOARD.parse().expect("dashboard URL");
    Notifier::new(settings, Some(&dashboard), db.pool()).expect("a channel is configured")
}

fn job(name: &str, error: &str, schedule: &str) -> (RegisteredJob, Arc<AtomicI64>) {
    let plan = Arc::new(AtomicI64::new(0));
    let job = RegisteredJob::new(
        Switchable {
            name: name.to_owned(),
            plan: Arc::clone(&plan),
            error: error.to_owned(),
        },
        Schedule::parse(schedule).expect("schedule"),
    );
    (job, plan)
}

fn runner(pool: &db::Pool, observer: Option<Arc<Notifier>>) -> Arc<Runner> {
    let mut runner = Runner::new(
        Arc::new(db::PgExecutionLog::new(pool.clone())),
        RunnerSettings {
            worker_id: "notify-test:0".into(),
            ..RunnerSettings::default()
        },
    );
    if let Some(notifier) = observer {
        runner = runner.with_observer(notifier);
    }
    Arc::new(runner)
}

impl Harness {
    async fn new(job_name: &str, extra: &[(&str, &str)]) -> Self {
        Self::with_job(job_name, "quota exceeded", RunPolicy::default(), extra).await
    }

    async fn with_job(
        job_name: &str,
        error: &str,
        policy: RunPolicy,
        extra: &[(&str, &str)],
    ) -> Self {
        capture::install();
        let db = TestDatabase::new().await;
        let notifier = notifier(&db, &settings(extra));
        let runner = runner(&db.pool(), Some(Arc::clone(&notifier)));
        let (job, plan) = job(job_name, error, "0 3 * * *");
        Self {
            db,
            notifier,
            runner,
            job: Arc::new(job.with_policy(policy)),
            plan,
        }
    }

    /// Runs the job once, manually, failing or not as told.
    async fn run(&self, fail: bool) -> RunReport {
        self.plan.store(if fail { -1 } else { 0 }, Ordering::SeqCst);
        let report = self
            .runner
            .run(Arc::clone(&self.job), RunRequest::manual(false))
            .await
            .expect("the run starts");
        assert_eq!(
            report.status,
            if fail {
                Status::Failed
            } else {
                Status::Success
            }
        );
        report
    }

    async fn settle(&self) {
        assert!(
            self.notifier.wait_idle(DEADLINE).await,
            "notices still in flight after {DEADLINE:?}"
        );
    }

    async fn sql(&self, statement: &str) {
        let mut conn = self.db.connect().await;
        // Qualified: the trait in scope would shadow `AtomicI64::load` in this file.
        diesel_async::RunQueryDsl::execute(diesel::sql_query(statement), &mut conn)
            .await
            .expect(statement);
    }
}

/// Waits until the mock server got at least `n` requests; returns their JSON bodies.
async fn webhook_bodies(server: &MockServer, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let requests = server.received_requests().await.unwrap_or_default();
        if requests.len() >= n || Instant::now() >= deadline {
            return requests
                .iter()
                .map(|r| serde_json::from_slice(&r.body).expect("webhook body is JSON"))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn webhook_ok() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    server
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_is_emailed_with_its_details_and_escaped_html() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let h = Harness::with_job(
        "email_details_job",
        "<script>alert(1)</script> quota & limits",
        RunPolicy::default(),
        &[
            ("SMTP_URL", &url),
            ("ALERT_EMAIL_FROM", "Jobs <jobs@example.com>"),
            (
                "ALERT_EMAIL_TO",
                "ops@example.com, Oncall <oncall@example.com>",
            ),
        ],
    )
    .await;
    let sent_before = capture::counter(
        "notifications_sent_total",
        &[("channel", "email"), ("kind", "failure")],
    );

    let report = h.run(true).await;

    let mails = sink.wait_for(1, DEADLINE).await;
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let mail = &mails[0];
    assert!(!mail.helo.is_empty(), "the client said EHLO with its name");
    assert_eq!(mail.mail_from, "jobs@example.com");
    assert_eq!(mail.rcpt_to, ["ops@example.com", "oncall@example.com"]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("[background-jobs] Nightly Report failed")
    );
    assert!(mail
        .header("Content-Type")
        .unwrap_or_default()
        .starts_with("multipart/alternative"));

    let text = mail.part("text/plain").expect("a plain-text part");
    let execution = format!("#{} (manual, attempt 1)", report.execution_id);
    for wanted in [
        "Nightly Report failed: <script>alert(1)</script> quota & limits",
        execution.as_str(),
        "UTC",
        "Duration:",
        "processed 0, failed 3",
        "Server:",
        "notify-test:0",
        DASHBOARD,
    ] {
        assert!(text.contains(wanted), "{wanted:?} missing from:\n{text}");
    }
    let html = mail.part("text/html").expect("an HTML part");
    assert!(!html.contains("<script>"), "unescaped script in:\n{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; quota &amp; limits"),
        "{html}"
    );
    assert!(
        html.contains(&format!("#{}", report.execution_id)),
        "{html}"
    );

    h.settle().await;
    assert_eq!(h.notifier.delivery_counts().email_sent, 1);
    assert!(
        capture::counter(
            "notifications_sent_total",
            &[("channel", "email"), ("kind", "failure")]
        ) > sent_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_slack_text_and_details_and_a_500_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("try later"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .with_priority(2)
        .mount(&server)
        .await;
    let hook = format!("{}/services/T0/B0/secret", server.uri());
    let h = Harness::new("webhook_details_job", &[("ALERT_WEBHOOK_URL", &hook)]).await;

    let report = h.run(true).await;

    let bodies = webhook_bodies(&server, 2).await;
    assert_eq!(bodies.len(), 2, "the 500 is retried once: {bodies:#?}");
    assert_eq!(bodies[0], bodies[1], "a retry posts the same notice");
    let body = &bodies[1];
    let text = body["text"].as_str().expect("text");
    assert!(
        text.starts_with("❌ Nightly Report failed: quota exceeded"),
        "{text}"
    );
    assert!(text.contains(DASHBOARD), "{text}");
    assert_eq!(body["event"], "failure");
    assert_eq!(body["job_name"], "webhook_details_job");
    assert_eq!(body["display_name"], DISPLAY_NAME);
    assert_eq!(body["status"], "failed");
    assert_eq!(body["execution_id"], report.execution_id);
    assert!(body["started_at"]
        .as_str()
        .is_some_and(|s| s.ends_with('Z')));
    assert!(body["duration_ms"].as_i64().is_some());
    assert_eq!(body["error_message"], "quota exceeded");
    assert_eq!(body["stats"]["failed"], 3);
    assert_eq!(body["dashboard_url"], DASHBOARD);
    // One id per notice, the same in every copy, for a receiver to drop repeats.
    assert!(
        body["notice_id"].as_str().is_some_and(|id| id.len() > 30),
        "{body}"
    );
    assert_eq!(body["worker_id"], "notify-test:0");

    h.settle().await;
    let counts = h.notifier.delivery_counts();
    assert_eq!((counts.webhook_sent, counts.webhook_failed), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_keeps_failing_fails_nothing_and_is_counted_and_logged_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let hook = format!("{}/hook", server.uri());
    let h = Harness::new(
        "webhook_down_job",
        &[("ALERT_WEBHOOK_URL", &hook), ("ALERT_SEND_ATTEMPTS", "3")],
    )
    .await;
    let failed_before = capture::counter("notifications_failed_total", &[("channel", "webhook")]);

    // The run itself is unaffected: recorded as the job decided.
    let report = h.run(false).await;
    assert_eq!(report.status, Status::Success);
    let report = h.run(true).await;
    assert_eq!(report.error_message.as_deref(), Some("quota exceeded"));

    h.settle().await;
    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 3, "three attempts of one notice");
    let counts = h.notifier.delivery_counts();
    assert_eq!((counts.webhook_sent, counts.webhook_failed), (0, 1));
    assert!(
        capture::counter("notifications_failed_total", &[("channel", "webhook")]) > failed_before
    );
    let warnings = capture::logged(log::Level::Warn, "webhook about webhook_down_job");
    assert_eq!(
        warnings.len(),
        1,
        "logged once, not per attempt: {warnings:#?}"
    );
    assert!(warnings[0].contains("after 3 attempts"), "{warnings:?}");
    assert!(
        !warnings[0].contains("/hook"),
        "the URL path stays out of logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answering_4xx_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_string("no_service"))
        .mount(&server)
        .await;
    let hook = format!("{}/hook", server.uri());
    let h = Harness::new("webhook_gone_job", &[("ALERT_WEBHOOK_URL", &hook)]).await;

    h.run(true).await;
    h.settle().await;

    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        1
    );
    assert_eq!(h.notifier.delivery_counts().webhook_failed, 1);
    let warnings = capture::logged(log::Level::Warn, "webhook about webhook_gone_job");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("404"), "{warnings:?}");
    // Refused for good: not kept for a later pass either.
    assert!(warnings[0].contains("not sent again"), "{warnings:?}");
    assert!(outbox(&h.db).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_stays_broken_gets_one_notice_and_then_one_recovery() {
    let sink = SmtpSink::start().await;
    let server = webhook_ok().await;
    let (url, hook) = (sink.url(), server.uri());
    let h = Harness::new(
        "storm_job",
        &[
            ("SMTP_URL", &url),
            ("ALERT_EMAIL_FROM", "jobs@example.com"),
            ("ALERT_EMAIL_TO", "ops@example.com"),
            ("ALERT_WEBHOOK_URL", &hook),
        ],
    )
    .await;

    for _ in 0..3 {
        h.run(true).await;
    }
    h.settle().await;
    assert_eq!(sink.mails().len(), 1, "three failed runs, one e-mail");
    assert_eq!(webhook_bodies(&server, 1).await.len(), 1);

    h.run(false).await;
    let mails = sink.wait_for(2, DEADLINE).await;
    let bodies = webhook_bodies(&server, 2).await;
    h.settle().await;
    h.run(false).await;
    h.settle().await;

    let subjects: Vec<String> = sink
        .mails()
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect();
    assert_eq!(
        subjects,
        [
            "[background-jobs] Nightly Report failed",
            "[background-jobs] Nightly Report recovered"
        ]
    );
    let recovery = mails[1].part("text/plain").unwrap_or_default();
    assert!(
        recovery.contains("its last run succeeded after 3 failed runs"),
        "{recovery}"
    );
    let events: Vec<&str> = bodies.iter().filter_map(|b| b["event"].as_str()).collect();
    assert_eq!(events, ["failure", "recovery"]);
    assert!(bodies[1]["text"]
        .as_str()
        .unwrap_or_default()
        .starts_with("✅ Nightly Report recovered"));
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_that_will_be_retried_is_not_a_failure_yet() {
    let server = webhook_ok().await;
    let hook = server.uri();
    let policy = RunPolicy {
        timeout: Some(Duration::from_secs(30)),
        max_attempts: 2,
        retry_base_delay: Duration::from_millis(20),
    };
    let h = Harness::with_job(
        "retried_job",
        "flaky upstream",
        policy,
        &[("ALERT_WEBHOOK_URL", &hook)],
    )
    .await;
    let slot =
        |minute: u32| Utc::now().trunc_subsecs(0) - chrono::Duration::minutes(i64::from(minute));

    // Fails once, succeeds on its retry: nothing to report.
    h.plan.store(1, Ordering::SeqCst);
    let report = h
        .runner
        .run(
            Arc::clone(&h.job),
            RunRequest::slot(Trigger::Schedule, slot(10)),
        )
        .await
        .expect("run");
    assert_eq!((report.status, report.attempt), (Status::Success, 2));
    h.settle().await;
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        0
    );

    // Fails on every attempt: one notice, about the last one.
    h.plan.store(-1, Ordering::SeqCst);
    let report = h
        .runner
        .run(
            Arc::clone(&h.job),
            RunRequest::slot(Trigger::Schedule, slot(5)),
        )
        .await
        .expect("run");
    assert_eq!((report.status, report.attempt), (Status::Failed, 2));
    h.settle().await;
    let bodies = webhook_bodies(&server, 1).await;
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    assert_eq!(bodies[0]["execution_id"], report.execution_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_stays_broken_is_reminded_once_the_reminder_period_passed() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let h = Harness::new(
        "reminder_job",
        &[
            ("SMTP_URL", &url),
            ("ALERT_EMAIL_FROM", "jobs@example.com"),
            ("ALERT_EMAIL_TO", "ops@example.com"),
        ],
    )
    .await;
    let back_date = "UPDATE job_notification_state \
                     SET last_notified_at = now() - interval '25 hours' \
                     WHERE job_name = 'reminder_job'";

    h.run(true).await;
    h.run(true).await;
    h.settle().await;
    assert_eq!(sink.mails().len(), 1, "no reminder within the period");

    // A day later, the next failed run brings a reminder.
    h.sql(back_date).await;
    h.run(true).await;
    let mails = sink.wait_for(2, DEADLINE).await;
    assert_eq!(mails.len(), 2);
    assert_eq!(
        mails[1].header("Subject").as_deref(),
        Some("[background-jobs] Nightly Report is still failing")
    );
    let text = mails[1].part("text/plain").unwrap_or_default();
    assert!(text.contains("(3 failed runs): quota exceeded"), "{text}");

    // Without runs, the periodic check reminds too, once per period.
    h.sql(back_date).await;
    let mut registry = Registry::new();
    let (watched, _) = job("reminder_job", "unused", "0 3 * * *");
    registry.register(watched);
    assert_eq!(h.notifier.check_overdue(&registry).await, 1);
    assert_eq!(h.notifier.check_overdue(&registry).await, 0);
    let mails = sink.wait_for(3, DEADLINE).await;
    h.settle().await;
    assert_eq!(sink.mails().len(), 3);
    assert_eq!(
        mails[2].header("Subject").as_deref(),
        Some("[background-jobs] Nightly Report is still failing")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_success_for_twice_its_interval_gets_one_overdue_alert() {
    let server = webhook_ok().await;
    let hook = server.uri();
    let h = Harness::new(
        "unused_job",
        &[("ALERT_WEBHOOK_URL", &hook), ("ALERT_OVERDUE_FACTOR", "2")],
    )
    .await;
    let mut registry = Registry::new();
    let (every_second, _) = job("every_second_job", "unused", "* * * * * *");
    let (paused, _) = job("paused_job", "unused", "* * * * * *");
    registry.register(every_second);
    registry.register(paused.paused("switched off by DISABLED_JOBS"));
    // Paused by an operator at run time (the dashboard's pause): not overdue either.
    let (held, _) = job("held_job", "unused", "* * * * * *");
    registry.register(held);
    h.sql(
        "INSERT INTO job_controls (job_name, paused, paused_by) VALUES ('held_job', true, 'admin')",
    )
    .await;
    let registry = Arc::new(registry);
    let stop = CancellationToken::new();
    let started = Instant::now();
    let watch = Arc::clone(&h.notifier).spawn_overdue_watch(
        Arc::clone(&registry),
        stop.clone(),
        Duration::from_millis(100),
    );

    // A fresh install does not alert at once.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        server.received_requests().await.unwrap_or_default().len(),
        0
    );

    let bodies = webhook_bodies(&server, 1).await;
    assert_eq!(bodies.len(), 1);
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(bodies[0]["event"], "overdue");
    assert_eq!(bodies[0]["job_name"], "every_second_job");
    assert_eq!(bodies[0]["overdue_after_secs"], 2);
    let text = bodies[0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("Nightly Report is overdue: no successful run since watching began"),
        "{text}"
    );

    // It stays one alert while the job stays overdue; the disabled job never gets one.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let bodies = webhook_bodies(&server, 1).await;
    assert_eq!(bodies.len(), 1, "{bodies:#?}");

    // The first success afterwards is a recovery.
    let job = registry.get("every_second_job").expect("registered");
    h.runner
        .run(job, RunRequest::manual(false))
        .await
        .expect("run");
    let bodies = webhook_bodies(&server, 2).await;
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[1]["event"], "recovery");
    assert_eq!(bodies[1]["job_name"], "every_second_job");

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the watch stops when told")
        .expect("the watch does not panic");
    h.settle().await;
    assert!(webhook_bodies(&server, 2)
        .await
        .iter()
        .all(|b| b["job_name"] != "paused_job" && b["job_name"] != "held_job"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_smtp_server_delays_and_fails_nothing_and_is_logged_once() {
    // A port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let url = format!("smtp://127.0.0.1:{port}");
    let mut h = Harness::new(
        "dead_smtp_job",
        &[
            ("SMTP_URL", &url),
            ("ALERT_EMAIL_FROM", "jobs@example.com"),
            ("ALERT_EMAIL_TO", "ops@example.com"),
            ("ALERT_SEND_ATTEMPTS", "3"),
            // Inline sending would take at least 300 + 600 ms.
            ("ALERT_RETRY_DELAY_MS", "300"),
        ],
    )
    .await;
    let failed_before = capture::counter("notifications_failed_total", &[("channel", "email")]);
    // The report comes from a runner without observers; the notifier sees it directly.
    h.runner = runner(&h.db.pool(), None);
    let report = h.run(true).await;

    let started = Instant::now();
    h.notifier.finished(&h.job, &report).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(200), "finished took {took:?}");

    wait_until("the e-mail to be given up", || {
        h.notifier.delivery_counts().email_failed == 1
    })
    .await;
    h.settle().await;
    assert_eq!(h.notifier.delivery_counts().email_sent, 0);
    assert!(
        capture::counter("notifications_failed_total", &[("channel", "email")]) > failed_before
    );
    let warnings = capture::logged(log::Level::Warn, "e-mail about dead_smtp_job");
    assert_eq!(
        warnings.len(),
        1,
        "logged once, not per attempt: {warnings:#?}"
    );
    assert!(warnings[0].contains("after 3 attempts"), "{warnings:?}");
    assert!(
        warnings[0].contains(&format!("127.0.0.1:{port}")),
        "{warnings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_smtp_server_is_given_up_after_the_send_timeout() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let url = format!("smtp://127.0.0.1:{port}");
    let h = Harness::new(
        "silent_smtp_job",
        &[
            ("SMTP_URL", &url),
            ("ALERT_EMAIL_FROM", "jobs@example.com"),
            ("ALERT_EMAIL_TO", "ops@example.com"),
            ("ALERT_SEND_ATTEMPTS", "1"),
            ("ALERT_SEND_TIMEOUT_SECS", "4"),
        ],
    )
    .await;

    // The run must not wait for the 4 s send timeout (wide margin for a busy machine).
    let started = Instant::now();
    h.run(true).await;
    assert!(
        started.elapsed() < Duration::from_millis(3_000),
        "the run waited"
    );
    wait_until("the e-mail to time out", || {
        h.notifier.delivery_counts().email_failed == 1
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_sent_again_after_a_lost_answer_carry_one_message_id() {
    // The relay keeps the message, then answers after the send timeout: the attempt looks
    // failed and is made again.
    let sink = SmtpSink::start_acking_after(Duration::from_millis(2_500)).await;
    let url = sink.url();
    let h = Harness::new(
        "slow_ack_job",
        &[
            ("SMTP_URL", &url),
            ("ALERT_EMAIL_FROM", "jobs@example.com"),
            ("ALERT_EMAIL_TO", "ops@example.com"),
            ("ALERT_SEND_ATTEMPTS", "2"),
            ("ALERT_SEND_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    h.run(true).await;
    let mails = sink.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let ids: Vec<Option<String>> = mails.iter().map(|m| m.header("Message-ID")).collect();
    assert!(
        ids[0]
            .as_deref()
            .is_some_and(|id| id.starts_with('<') && id.contains('@')),
        "{ids:?}"
    );
    assert_eq!(ids[0], ids[1]);
    wait_until("the delivery to be given up", || {
        h.notifier.delivery_counts().email_failed == 1
    })
    .await;
    let warnings = capture::logged(log::Level::Warn, "slow_ack_job");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("may have been delivered")),
        "{warnings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_observing_the_same_transitions_send_one_notice_each_time() {
    capture::install();
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let db = TestDatabase::new().await;
    let settings = settings(&[
        ("SMTP_URL", &url),
        ("ALERT_EMAIL_FROM", "jobs@example.com"),
        ("ALERT_EMAIL_TO", "ops@example.com"),
    ]);
    let replica_a = notifier(&db, &settings);
    let replica_b = notifier(&db, &settings);
    let runner = runner(&db.pool(), None);
    let (job, plan) = job("replicated_job", "quota exceeded", "0 3 * * *");
    let job = Arc::new(job);

    // Fail, fail, succeed, fail: both replicas observe every report at the same moment.
    for fail in [true, true, false, true] {
        plan.store(if fail { -1 } else { 0 }, Ordering::SeqCst);
        let report = runner
            .run(Arc::clone(&job), RunRequest::manual(false))
            .await
            .expect("run");
        tokio::join!(
            replica_a.finished(&job, &report),
            replica_b.finished(&job, &report)
        );
        assert!(replica_a.wait_idle(DEADLINE).await && replica_b.wait_idle(DEADLINE).await);
    }

    // A restarted server reads the state from the database: still failing, no new notice.
    let restarted = notifier(&db, &settings);
    plan.store(-1, Ordering::SeqCst);
    let report = runner
        .run(Arc::clone(&job), RunRequest::manual(false))
        .await
        .expect("run");
    restarted.finished(&job, &report).await;
    assert!(restarted.wait_idle(DEADLINE).await);

    let subjects: Vec<String> = sink
        .mails()
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect();
    assert_eq!(
        subjects,
        [
            "[background-jobs] Nightly Report failed",
            "[background-jobs] Nightly Report recovered",
            "[background-jobs] Nightly Report failed",
        ]
    );
    let sent = replica_a.delivery_counts().email_sent
        + replica_b.delivery_counts().email_sent
        + restarted.delivery_counts().email_sent;
    assert_eq!(sent, 3);
}

#[tokio::test]
async fn a_password_sent_in_clear_to_another_host_is_warned_about_once_at_start() {
    capture::install();
    // Nothing connects: the warning comes from building the notifier.
    let pool = db::ConnectTarget::parse("postgres://postgres@127.0.0.1:1/unused")
        .and_then(|target| target.pool(1))
        .expect("pool");
    let start = |smtp_url: &str| {
        let settings = settings(&[
            ("SMTP_URL", smtp_url),
            ("ALERT_EMAIL_FROM", "jobs@example.com"),
            ("ALERT_EMAIL_TO", "ops@example.com"),
        ]);
        Notifier::new(&settings, None, pool.clone()).expect("notifier")
    };

    start("smtp://mailer:relay-pass-1@plain-relay.example.com:25");
    let warnings = capture::logged(log::Level::Warn, "plain-relay.example.com");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("in clear text"), "{warnings:?}");
    assert!(!warnings[0].contains("relay-pass-1"), "{warnings:?}");

    // Encrypted, on this machine, or without a password: nothing to warn about.
    for quiet in [
        "smtps://mailer:relay-pass-2@tls-relay.example.com",
        "smtp://mailer:relay-pass-3@starttls-relay.example.com?tls=required",
        "smtp://mailer:relay-pass-4@127.0.0.1:2525",
        "smtp://anonymous-relay.example.com",
    ] {
        start(quiet);
    }
    let warnings = capture::logged(log::Level::Warn, "in clear text");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
}

/// Notices waiting in the outbox, with their delivery passes.
async fn outbox(db: &TestDatabase) -> Vec<(String, i32)> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        kind: String,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        tries: i32,
    }
    let mut conn = db.connect().await;
    let rows: Vec<Row> = diesel_async::RunQueryDsl::load(
        diesel::sql_query("SELECT kind::text AS kind, tries FROM job_notices ORDER BY id"),
        &mut conn,
    )
    .await
    .expect("job_notices");
    rows.into_iter().map(|r| (r.kind, r.tries)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_its_server_could_not_deliver_is_sent_later_by_another_server() {
    // Server A's relay is down: the failure notice it decided stays in the outbox.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dead = format!("smtp://{}", closed.local_addr().expect("address"));
    drop(closed);
    let mail = |url: &str| {
        settings(&[
            ("SMTP_URL", url),
            ("ALERT_EMAIL_FROM", "jobs@example.com"),
            ("ALERT_EMAIL_TO", "ops@example.com"),
            ("ALERT_SEND_ATTEMPTS", "1"),
        ])
    };
    let h = Harness::new(
        "outbox_job",
        &[
            ("SMTP_URL", &dead),
            ("ALERT_EMAIL_FROM", "jobs@example.com"),
            ("ALERT_EMAIL_TO", "ops@example.com"),
            ("ALERT_SEND_ATTEMPTS", "1"),
        ],
    )
    .await;
    let a = Arc::clone(&h.notifier);
    h.run(true).await;
    h.settle().await;
    assert_eq!(a.delivery_counts().email_failed, 1);
    assert_eq!(outbox(&h.db).await, vec![("failure".to_owned(), 1)]);

    // Server B's relay works. It leaves the notice to A while A's claim is fresh…
    let sink = SmtpSink::start().await;
    let b = notifier(&h.db, &mail(&sink.url()));
    let registry = Registry::new();
    assert_eq!(b.check_overdue(&registry).await, 0);
    // …and sends it once the claim is older than a whole delivery pass.
    h.sql("UPDATE job_notices SET claimed_at = now() - interval '1 hour'")
        .await;
    assert_eq!(b.check_overdue(&registry).await, 1);
    let mails = sink.wait_for(1, DEADLINE).await;
    assert_eq!(mails.len(), 1);
    let subject = mails[0].header("Subject").unwrap_or_default();
    assert!(subject.contains("failed"), "{subject}");
    assert!(b.wait_idle(DEADLINE).await);
    assert!(outbox(&h.db).await.is_empty());
    assert_eq!(b.delivery_counts().email_sent, 1);
    // Delivered: nothing is sent again.
    h.sql("UPDATE job_notification_state SET updated_at = now()")
        .await;
    assert_eq!(b.check_overdue(&registry).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_past_its_last_try_is_dropped_and_logged() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let h = Harness::new(
        "outbox_drop_job",
        &[
            ("SMTP_URL", &url),
            ("ALERT_EMAIL_FROM", "jobs@example.com"),
            ("ALERT_EMAIL_TO", "ops@example.com"),
        ],
    )
    .await;
    h.sql(
        "INSERT INTO job_notices (job_name, kind, subject, plain_text, html, webhook_body, \
         message_id, email_pending, webhook_pending, tries, created_at, claimed_at) \
         VALUES ('outbox_drop_job', 'failure', '[jobs] Old news failed', 'x', '<p>x</p>', '{}', \
                 '<old@example.com>', true, false, 3, now() - interval '2 days', now() - interval '1 day')",
    )
    .await;
    assert_eq!(h.notifier.check_overdue(&Registry::new()).await, 0);
    assert!(outbox(&h.db).await.is_empty());
    assert!(sink.mails().is_empty());
    let warnings = capture::logged(log::Level::Warn, "outbox_drop_job");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("gave up on the failure notice")),
        "{warnings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_history_shows_no_success_for_days_is_overdue_at_the_first_check() {
    let server = webhook_ok().await;
    let hook = server.uri();
    let h = Harness::new("unused_job", &[("ALERT_WEBHOOK_URL", &hook)]).await;
    // A database taken over from another system: the nightly job last succeeded three
    // days ago, and a second nightly job yesterday.
    h.sql(
        "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms) VALUES \
         ('stale_nightly', 'success', now() - interval '3 days', now() - interval '3 days', 5), \
         ('fresh_nightly', 'success', now() - interval '1 day', now() - interval '1 day', 5)",
    )
    .await;
    let mut registry = Registry::new();
    registry.register(job("stale_nightly", "unused", "0 3 * * *").0);
    registry.register(job("fresh_nightly", "unused", "0 3 * * *").0);

    assert_eq!(h.notifier.check_overdue(&registry).await, 1);
    let bodies = webhook_bodies(&server, 1).await;
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    assert_eq!(bodies[0]["event"], "overdue");
    assert_eq!(bodies[0]["job_name"], "stale_nightly");
    assert!(bodies[0]["last_success_at"].is_string(), "{}", bodies[0]);
    h.settle().await;
}
