//! The runner and scheduler against the in-memory execution log.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::Utc;
use jobs_core::{
    async_trait, ExecutionLog, Job, JobContext, JobError, MemoryExecutionLog, RegisteredJob,
    Registry, RunPolicy, RunRequest, Runner, RunnerSettings, Schedule, Scheduler,
    SchedulerSettings, StartError, Stats, Status,
};

/// Captures log lines so the contract's wording can be checked.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", record.level(), record.args()));
    }
    fn flush(&self) {}
}

fn logs() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(capture).unwrap();
        log::set_max_level(log::LevelFilter::Info);
        capture
    })
}

fn lines_containing(needle: &str) -> Vec<String> {
    logs()
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

enum Behaviour {
    Succeed,
    Fail(&'static str),
    Panic,
    Sleep(Duration),
    FailTimes(usize),
}

struct TestJob {
    name: &'static str,
    display: &'static str,
    behaviour: Behaviour,
    runs: AtomicUsize,
    dry_run: bool,
}

impl TestJob {
    fn new(name: &'static str, display: &'static str, behaviour: Behaviour) -> Self {
        Self {
            name,
            display,
            behaviour,
            runs: AtomicUsize::new(0),
            dry_run: false,
        }
    }
}

#[async_trait]
impl Job for TestJob {
    fn name(&self) -> &str {
        self.name
    }
    fn display_name(&self) -> &str {
        self.display
    }
    fn default_schedule(&self) -> &str {
        "0 2 * * *"
    }
    fn summary_keys(&self) -> &[&'static str] {
        &["deleted", "failed"]
    }
    fn supports_dry_run(&self) -> bool {
        self.dry_run
    }
    async fn run(&self, ctx: &JobContext) -> Result<Stats, JobError> {
        let n = self.runs.fetch_add(1, Ordering::SeqCst);
        let mut stats = Stats::with_keys(&["deleted", "failed"]);
        match &self.behaviour {
            Behaviour::Succeed => {
                stats.add("deleted", 45);
                stats.add("failed", 2);
                Ok(stats)
            }
            Behaviour::Fail(msg) => {
                stats.add("failed", 7);
                Err(JobError::new(*msg).with_stats(stats))
            }
            Behaviour::Panic => panic!("boom in the job"),
            Behaviour::Sleep(d) => {
                stats.add("deleted", 1);
                ctx.report_progress(&stats);
                tokio::time::sleep(*d).await;
                Ok(stats)
            }
            Behaviour::FailTimes(k) if n < *k => {
                Err(JobError::new(format!("attempt {} failed", n + 1)))
            }
            Behaviour::FailTimes(_) => Ok(stats),
        }
    }
}

fn runner(log: Arc<MemoryExecutionLog>) -> Arc<Runner> {
    Arc::new(Runner::new(
        log,
        RunnerSettings {
            worker_id: "test-host:1".into(),
            lease: Duration::from_secs(5),
            heartbeat_interval: Duration::from_millis(50),
            progress_interval: Duration::from_millis(20),
        },
    ))
}

fn registered(job: TestJob) -> Arc<RegisteredJob> {
    Arc::new(
        RegisteredJob::new(job, Schedule::parse("0 2 * * *").unwrap()).with_policy(RunPolicy {
            timeout: Some(Duration::from_secs(10)),
            max_attempts: 1,
            retry_base_delay: Duration::from_millis(10),
        }),
    )
}

#[tokio::test]
async fn a_successful_run_is_recorded_with_stats_and_duration() {
    logs();
    let log = Arc::new(MemoryExecutionLog::new());
    let job = registered(TestJob::new(
        "audio_cleanup",
        "Audio Cleanup",
        Behaviour::Succeed,
    ));
    let report = runner(log.clone())
        .run(job, RunRequest::manual(false))
        .await
        .unwrap();
    assert_eq!(report.status, Status::Success);
    let rows = log.all();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.status, Status::Success);
    assert_eq!(row.stats, serde_json::json!({"deleted": 45, "failed": 2}));
    assert_eq!(row.error_message, None);
    let completed = row.completed_at.unwrap();
    assert_eq!(
        row.duration_ms.unwrap(),
        (completed - row.started_at).num_milliseconds()
    );
    assert_eq!(row.trigger, "manual");

    assert_eq!(
        lines_containing("Starting audio cleanup"),
        vec!["INFO [Job] Starting audio cleanup (scheduled: 0 2 * * *)".to_string()]
    );
    let done = lines_containing("Audio cleanup completed");
    assert_eq!(done.len(), 1);
    let re_ok = done[0]
        .starts_with("INFO [Job] ✅ Audio cleanup completed: 45 deleted, 2 failed (")
        && done[0].ends_with("s)");
    assert!(re_ok, "{}", done[0]);
}

#[tokio::test]
async fn a_returned_error_becomes_a_failed_execution_with_its_stats() {
    logs();
    let log = Arc::new(MemoryExecutionLog::new());
    let job = registered(TestJob::new(
        "cost_update",
        "Cost Update",
        Behaviour::Fail("Deepgram rejected the API key (401)"),
    ));
    let report = runner(log.clone())
        .run(job, RunRequest::manual(false))
        .await
        .unwrap();
    assert_eq!(report.status, Status::Failed);
    let row = &log.all()[0];
    assert_eq!(row.status, Status::Failed);
    assert_eq!(
        row.error_message.as_deref(),
        Some("Deepgram rejected the API key (401)")
    );
    assert_eq!(row.stats, serde_json::json!({"deleted": 0, "failed": 7}));
    assert!(row.duration_ms.is_some() && row.completed_at.is_some());
    let line = lines_containing("Cost update failed");
    assert!(
        line[0]
            .starts_with("INFO [Job] ❌ Cost update failed: Deepgram rejected the API key (401) ("),
        "{}",
        line[0]
    );
}

#[tokio::test]
async fn a_panic_becomes_a_failed_execution_and_the_runner_goes_on() {
    let log = Arc::new(MemoryExecutionLog::new());
    let runner = runner(log.clone());
    let panicking = registered(TestJob::new("panicky", "Panicky", Behaviour::Panic));
    let report = runner
        .run(panicking, RunRequest::manual(false))
        .await
        .unwrap();
    assert_eq!(report.status, Status::Failed);
    assert_eq!(
        log.all()[0].error_message.as_deref(),
        Some("panicked: boom in the job")
    );
    // The same runner still runs other jobs.
    let fine = registered(TestJob::new("fine", "Fine", Behaviour::Succeed));
    let report = runner.run(fine, RunRequest::manual(false)).await.unwrap();
    assert_eq!(report.status, Status::Success);
}

#[tokio::test]
async fn a_run_past_its_timeout_is_cancelled_and_recorded() {
    let log = Arc::new(MemoryExecutionLog::new());
    let job = Arc::new(
        RegisteredJob::new(
            TestJob::new("slow", "Slow", Behaviour::Sleep(Duration::from_secs(30))),
            Schedule::parse("0 2 * * *").unwrap(),
        )
        .with_policy(RunPolicy {
            timeout: Some(Duration::from_millis(200)),
            max_attempts: 1,
            retry_base_delay: Duration::from_millis(10),
        }),
    );
    let report = runner(log.clone())
        .run(job, RunRequest::manual(false))
        .await
        .unwrap();
    assert_eq!(
        report.error_message.as_deref(),
        Some("timed out after 200ms")
    );
    let row = &log.all()[0];
    assert_eq!(row.status, Status::Failed);
    // The progress reported before the timeout is kept.
    assert_eq!(row.stats["deleted"], 1);
}

#[tokio::test]
async fn progress_is_written_to_the_running_execution() {
    let log = Arc::new(MemoryExecutionLog::new());
    let job = registered(TestJob::new(
        "progress",
        "Progress",
        Behaviour::Sleep(Duration::from_millis(400)),
    ));
    let started = runner(log.clone())
        .start(job, RunRequest::manual(false))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let row = &log.all()[0];
    assert_eq!(row.status, Status::Running);
    assert_eq!(row.stats["deleted"], 1, "live progress: {:?}", row.stats);
    started.handle.await.unwrap();
    assert_eq!(log.all()[0].status, Status::Success);
}

#[tokio::test]
async fn a_job_already_running_is_not_started_twice() {
    let log = Arc::new(MemoryExecutionLog::new());
    let runner = runner(log.clone());
    let job = registered(TestJob::new(
        "busy",
        "Busy",
        Behaviour::Sleep(Duration::from_millis(300)),
    ));
    let first = runner
        .start(job.clone(), RunRequest::manual(false))
        .await
        .unwrap();
    let second = runner.start(job, RunRequest::manual(false)).await;
    assert!(
        matches!(second, Err(StartError::AlreadyRunning(_))),
        "{second:?}"
    );
    first.handle.await.unwrap();
    assert_eq!(log.all().len(), 1);
}

#[tokio::test]
async fn disabled_jobs_and_unsupported_dry_runs_are_refused() {
    let log = Arc::new(MemoryExecutionLog::new());
    let runner = runner(log.clone());
    let paused = Arc::new(
        RegisteredJob::new(
            TestJob::new("paused", "Paused", Behaviour::Succeed),
            Schedule::parse("0 2 * * *").unwrap(),
        )
        .paused("listed in DISABLED_JOBS"),
    );
    match runner.start(paused, RunRequest::manual(false)).await {
        Err(StartError::Disabled { reason, .. }) => assert_eq!(reason, "listed in DISABLED_JOBS"),
        other => panic!("{other:?}"),
    }
    let no_dry = registered(TestJob::new("nodry", "No Dry", Behaviour::Succeed));
    assert!(matches!(
        runner.start(no_dry, RunRequest::manual(true)).await,
        Err(StartError::DryRunUnsupported(_))
    ));
    assert!(log.all().is_empty());
}

#[tokio::test]
async fn a_failed_scheduled_slot_is_retried_and_each_attempt_recorded() {
    let log = Arc::new(MemoryExecutionLog::new());
    let job = Arc::new(
        RegisteredJob::new(
            TestJob::new("flaky", "Flaky", Behaviour::FailTimes(2)),
            Schedule::parse("0 2 * * *").unwrap(),
        )
        .with_policy(RunPolicy {
            timeout: None,
            max_attempts: 3,
            retry_base_delay: Duration::from_millis(20),
        }),
    );
    let slot = Utc::now();
    let report = runner(log.clone())
        .run(job, RunRequest::slot(jobs_core::Trigger::Schedule, slot))
        .await
        .unwrap();
    assert_eq!(report.status, Status::Success);
    assert_eq!(report.attempt, 3);
    let rows = log.all();
    let statuses: Vec<(Status, i32)> = rows.iter().map(|r| (r.status, r.attempt)).collect();
    assert_eq!(
        statuses,
        vec![
            (Status::Failed, 1),
            (Status::Failed, 2),
            (Status::Success, 3)
        ]
    );
    assert!(rows.iter().all(|r| r.scheduled_for == Some(slot)));
}

#[tokio::test]
async fn shutdown_interrupts_what_outlives_the_grace_period() {
    let log = Arc::new(MemoryExecutionLog::new());
    let runner = runner(log.clone());
    let job = registered(TestJob::new(
        "long",
        "Long",
        Behaviour::Sleep(Duration::from_secs(30)),
    ));
    let started = runner.start(job, RunRequest::manual(false)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let clean = runner.shutdown(Duration::from_millis(100)).await;
    assert!(!clean);
    let report = started.handle.await.unwrap();
    assert_eq!(
        report.error_message.as_deref(),
        Some("interrupted by shutdown")
    );
    let row = &log.all()[0];
    assert_eq!(row.status, Status::Failed);
    assert_eq!(
        row.error_message.as_deref(),
        Some("interrupted by shutdown")
    );
    // Nothing new starts after shutdown.
    let other = registered(TestJob::new("other", "Other", Behaviour::Succeed));
    assert!(matches!(
        runner.start(other, RunRequest::manual(false)).await,
        Err(StartError::ShuttingDown)
    ));
}

#[tokio::test]
async fn expired_leases_are_closed_but_live_ones_are_not() {
    let log = Arc::new(MemoryExecutionLog::new());
    let base = jobs_core::NewExecution {
        job_name: "dead".into(),
        trigger: jobs_core::Trigger::Manual,
        scheduled_for: None,
        attempt: 1,
        dry_run: false,
        worker_id: "gone-host:8080".into(),
        lease: Duration::from_millis(1),
        requested_by: None,
    };
    log.claim(&base).await.unwrap();
    let live = jobs_core::NewExecution {
        job_name: "alive".into(),
        lease: Duration::from_secs(60),
        ..base.clone()
    };
    log.claim(&live).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let closed = log.expire_leases().await.unwrap();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].job_name, "dead");
    assert!(closed[0]
        .error_message
        .as_deref()
        .unwrap()
        .contains("gone-host:8080"));
    let alive = log
        .all()
        .into_iter()
        .find(|r| r.job_name == "alive")
        .unwrap();
    assert_eq!(alive.status, Status::Running);
}

#[tokio::test]
async fn the_scheduler_runs_each_per_second_slot_once() {
    let log = Arc::new(MemoryExecutionLog::new());
    let runner = runner(log.clone());
    let mut registry = Registry::new();
    registry.register(
        RegisteredJob::new(
            TestJob::new("every_second", "Every Second", Behaviour::Succeed),
            Schedule::parse("* * * * * *").unwrap(),
        )
        .with_policy(RunPolicy {
            timeout: None,
            max_attempts: 1,
            retry_base_delay: Duration::from_millis(10),
        }),
    );
    let scheduler = Scheduler::new(
        runner.clone(),
        Arc::new(registry),
        SchedulerSettings {
            tick: Duration::from_millis(100),
            misfire_window: Duration::from_secs(0),
            lease_check_interval: Duration::from_secs(1),
        },
    );
    let loop_task = tokio::spawn(scheduler.run());
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    runner.shutdown(Duration::from_secs(2)).await;
    loop_task.await.unwrap();
    let rows = log.all();
    let mut slots: Vec<_> = rows.iter().map(|r| r.scheduled_for.unwrap()).collect();
    let n = slots.len();
    slots.dedup();
    assert_eq!(slots.len(), n, "a slot ran twice: {rows:?}");
    assert!((3..=4).contains(&n), "{n} runs in 3.5 s");
    assert!(rows.iter().all(|r| r.status == Status::Success));
}

fn quick_policy() -> RunPolicy {
    RunPolicy {
        timeout: None,
        max_attempts: 1,
        retry_base_delay: Duration::from_millis(10),
    }
}

#[tokio::test]
async fn on_start_the_latest_missed_slot_is_caught_up_and_older_misses_are_recorded() {
    let log = Arc::new(MemoryExecutionLog::new());
    let schedule = Schedule::parse("* * * * *").unwrap(); // every minute
    let now = Utc::now();
    // The last slot that ran, about five minutes ago.
    let last = schedule
        .latest_at_or_before(now - chrono::Duration::minutes(5))
        .unwrap();
    let jobs_core::Claim::Started { id, .. } = log
        .claim(&jobs_core::NewExecution {
            job_name: "minutely".into(),
            trigger: jobs_core::Trigger::Schedule,
            scheduled_for: Some(last),
            attempt: 1,
            dry_run: false,
            worker_id: "old:1".into(),
            lease: Duration::from_secs(60),
            requested_by: None,
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    log.complete(
        id,
        &jobs_core::Completion {
            status: Status::Success,
            stats: Stats::new(),
            error_message: None,
        },
    )
    .await
    .unwrap();

    let runner = runner(log.clone());
    let mut registry = Registry::new();
    registry.register(
        RegisteredJob::new(
            TestJob::new("minutely", "Minutely", Behaviour::Succeed),
            schedule.clone(),
        )
        .with_policy(quick_policy()),
    );
    let scheduler = Scheduler::new(
        runner.clone(),
        Arc::new(registry),
        SchedulerSettings {
            tick: Duration::from_millis(50),
            misfire_window: Duration::from_secs(600),
            lease_check_interval: Duration::from_secs(1),
        },
    );
    let task = tokio::spawn(scheduler.run());
    tokio::time::sleep(Duration::from_millis(500)).await;
    runner.shutdown(Duration::from_secs(2)).await;
    task.await.unwrap();

    let rows = log.all();
    let catch_up_slot = schedule.latest_at_or_before(now).unwrap();
    let caught_up = rows
        .iter()
        .find(|r| r.trigger == "catch_up")
        .expect("a catch-up run");
    assert_eq!(caught_up.scheduled_for, Some(catch_up_slot));
    assert_eq!(caught_up.status, Status::Success);
    let skipped: Vec<_> = rows
        .iter()
        .filter(|r| {
            r.error_message
                .as_deref()
                .is_some_and(|m| m.starts_with("skipped:"))
        })
        .collect();
    assert_eq!(skipped.len(), 1, "{rows:#?}");
    let missed = schedule
        .fire_times_between(last, catch_up_slot - chrono::Duration::seconds(1))
        .count();
    let message = skipped[0].error_message.as_deref().unwrap();
    assert!(
        message.contains(&format!("{missed} slots")) && message.contains("no server was running"),
        "{message} (expected {missed} slots)"
    );
    assert_eq!(skipped[0].status, Status::Failed);
    assert_eq!(
        skipped[0].scheduled_for,
        Some(catch_up_slot - chrono::Duration::minutes(1))
    );
}

#[tokio::test]
async fn a_slot_arriving_while_the_previous_run_goes_is_recorded_as_skipped() {
    let log = Arc::new(MemoryExecutionLog::new());
    let runner = runner(log.clone());
    let mut registry = Registry::new();
    registry.register(
        RegisteredJob::new(
            TestJob::new(
                "slow",
                "Slow",
                Behaviour::Sleep(Duration::from_millis(2_300)),
            ),
            Schedule::parse("* * * * * *").unwrap(),
        )
        .with_policy(quick_policy()),
    );
    let scheduler = Scheduler::new(
        runner.clone(),
        Arc::new(registry),
        SchedulerSettings {
            tick: Duration::from_millis(50),
            misfire_window: Duration::from_secs(0),
            lease_check_interval: Duration::from_secs(1),
        },
    );
    let task = tokio::spawn(scheduler.run());
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    runner.shutdown(Duration::from_secs(5)).await;
    task.await.unwrap();

    let rows = log.all();
    let runs: Vec<_> = rows
        .iter()
        .filter(|r| r.status == Status::Success)
        .collect();
    let skipped: Vec<_> = rows
        .iter()
        .filter(|r| {
            r.error_message.as_deref()
                == Some("skipped: the previous run of this job was still going")
        })
        .collect();
    assert!(!runs.is_empty(), "{rows:#?}");
    assert!(skipped.len() >= 2, "{rows:#?}");
    // Every slot is accounted for once: run or skipped.
    let mut slots: Vec<_> = rows.iter().filter_map(|r| r.scheduled_for).collect();
    let n = slots.len();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), n);
}
