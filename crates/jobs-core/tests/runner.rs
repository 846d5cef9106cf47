//! The runner and scheduler against the in-memory execution log, on tokio's paused time:
//! sleeps, timeouts, leases and cron slots advance only when every task waits, so no test
//! depends on how busy the machine is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jobs_core::{
    async_trait, Beat, CancelRequest, Claim, Completion, ExecutionLog, ExecutionRecord, Job,
    JobContext, JobError, LogError, MemoryExecutionLog, NewExecution, RegisteredJob, Registry,
    RunPolicy, RunRequest, Runner, RunnerSettings, Schedule, Scheduler, SchedulerSettings,
    StartError, Stats, Status, TokioClock, Trigger,
};

/// A first attempt claimed directly in the log by `worker_id`: of the cron `slot`, or a
/// manual run without one.
fn attempt_1(
    job_name: &str,
    slot: Option<DateTime<Utc>>,
    worker_id: &str,
    lease: Duration,
) -> NewExecution {
    NewExecution {
        job_name: job_name.into(),
        trigger: if slot.is_some() {
            Trigger::Schedule
        } else {
            Trigger::Manual
        },
        scheduled_for: slot,
        attempt: 1,
        dry_run: false,
        worker_id: worker_id.into(),
        lease,
        requested_by: None,
    }
}

/// The wall-clock time every test starts at (a quarter second past a whole second, so
/// that per-second slots fall between the test's steps).
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-30T12:00:00.250Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A clock at [`t0`] that moves with tokio's (paused) time.
fn clock() -> Arc<TokioClock> {
    Arc::new(TokioClock::starting_at(t0()))
}

fn memory_log() -> Arc<MemoryExecutionLog> {
    Arc::new(MemoryExecutionLog::with_clock(clock()))
}

fn scheduler(runner: Arc<Runner>, registry: Registry, settings: SchedulerSettings) -> Scheduler {
    Scheduler::new(runner, Arc::new(registry), settings).with_clock(clock())
}

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
    /// One `deleted` per batch, a batch every `Duration`, stopping cleanly between batches
    /// when cancelled (as the real jobs do).
    Batches(Duration),
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
            Behaviour::Batches(every) => {
                for _ in 0..1_000 {
                    if ctx.is_cancelled() {
                        return Err(JobError::new("stopped between batches").with_stats(stats));
                    }
                    tokio::time::sleep(*every).await;
                    stats.add("deleted", 1);
                    ctx.report_progress(&stats);
                }
                Ok(stats)
            }
        }
    }
}

fn runner(log: Arc<MemoryExecutionLog>) -> Arc<Runner> {
    runner_on(log)
}

fn runner_on(log: Arc<dyn ExecutionLog>) -> Arc<Runner> {
    Arc::new(Runner::new(
        log,
        RunnerSettings {
            worker_id: "test-host:1".into(),
            lease: Duration::from_secs(5),
            heartbeat_interval: Duration::from_millis(50),
            progress_interval: Duration::from_millis(20),
            cancel_grace: Duration::from_secs(5),
            ..RunnerSettings::default()
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

#[tokio::test(start_paused = true)]
async fn a_successful_run_is_recorded_with_stats_and_duration() {
    logs();
    let log = memory_log();
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

#[tokio::test(start_paused = true)]
async fn a_returned_error_becomes_a_failed_execution_with_its_stats() {
    logs();
    let log = memory_log();
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

#[tokio::test(start_paused = true)]
async fn a_panic_becomes_a_failed_execution_and_the_runner_goes_on() {
    let log = memory_log();
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

#[tokio::test(start_paused = true)]
async fn a_run_past_its_timeout_is_cancelled_and_recorded() {
    let log = memory_log();
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

#[tokio::test(start_paused = true)]
async fn progress_is_written_to_the_running_execution() {
    let log = memory_log();
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

#[tokio::test(start_paused = true)]
async fn a_job_already_running_is_not_started_twice() {
    let log = memory_log();
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

#[tokio::test(start_paused = true)]
async fn disabled_jobs_and_unsupported_dry_runs_are_refused() {
    let log = memory_log();
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

#[tokio::test(start_paused = true)]
async fn a_failed_scheduled_slot_is_retried_and_each_attempt_recorded() {
    let log = memory_log();
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
    let slot = t0();
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

#[tokio::test(start_paused = true)]
async fn shutdown_interrupts_what_outlives_the_grace_period() {
    let log = memory_log();
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

#[tokio::test(start_paused = true)]
async fn expired_leases_are_closed_but_live_ones_are_not() {
    let log = memory_log();
    log.claim(&attempt_1(
        "dead",
        None,
        "gone-host:8080",
        Duration::from_millis(1),
    ))
    .await
    .unwrap();
    log.claim(&attempt_1(
        "alive",
        None,
        "gone-host:8080",
        Duration::from_secs(60),
    ))
    .await
    .unwrap();
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

#[tokio::test(start_paused = true)]
async fn the_scheduler_runs_each_per_second_slot_once() {
    let log = memory_log();
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
    let scheduler = scheduler(
        runner.clone(),
        registry,
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
    // From 12:00:00.25 to 12:00:03.75: the slots :01, :02 and :03.
    assert_eq!(n, 3, "{rows:#?}");
    assert!(rows.iter().all(|r| r.status == Status::Success));
}

fn quick_policy() -> RunPolicy {
    RunPolicy {
        timeout: None,
        max_attempts: 1,
        retry_base_delay: Duration::from_millis(10),
    }
}

#[tokio::test(start_paused = true)]
async fn on_start_the_latest_missed_slot_is_caught_up_and_older_misses_are_recorded() {
    let log = memory_log();
    let schedule = Schedule::parse("* * * * *").unwrap(); // every minute
    let now = t0();
    // The last slot that ran, about five minutes ago.
    let last = schedule
        .latest_at_or_before(now - chrono::Duration::minutes(5))
        .unwrap();
    let jobs_core::Claim::Started { id, .. } = log
        .claim(&attempt_1(
            "minutely",
            Some(last),
            "old:1",
            Duration::from_secs(60),
        ))
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
            retry_in: None,
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
    let scheduler = scheduler(
        runner.clone(),
        registry,
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
    assert_eq!(skipped[0].status, Status::Skipped);
    assert_eq!(
        skipped[0].scheduled_for,
        Some(catch_up_slot - chrono::Duration::minutes(1))
    );
}

#[tokio::test(start_paused = true)]
async fn a_slot_arriving_while_the_previous_run_goes_is_recorded_as_skipped() {
    let log = memory_log();
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
    let scheduler = scheduler(
        runner.clone(),
        registry,
        SchedulerSettings {
            tick: Duration::from_millis(50),
            misfire_window: Duration::from_secs(0),
            lease_check_interval: Duration::from_secs(1),
        },
    );
    let task = tokio::spawn(scheduler.run());
    // While the first run goes, the job's latest execution is that run, whatever was
    // skipped meanwhile.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let latest = log.latest_per_job().await.unwrap();
        if let Some(latest) = latest.first() {
            assert_ne!(latest.status, Status::Skipped, "{latest:?}");
        }
    }
    let latest = log.latest_per_job().await.unwrap();
    assert_eq!(latest[0].status, Status::Running, "{latest:?}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
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
    assert!(
        skipped.iter().all(|r| r.status == Status::Skipped),
        "{rows:#?}"
    );
    // Every slot is accounted for once: run or skipped.
    let mut slots: Vec<_> = rows.iter().filter_map(|r| r.scheduled_for).collect();
    let n = slots.len();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), n);
}

fn batches(name: &'static str, timeout: Option<Duration>, max_attempts: u32) -> Arc<RegisteredJob> {
    Arc::new(batches_job(name, timeout, max_attempts))
}

/// A job that deletes one item a second until it is asked to stop.
fn batches_job(name: &'static str, timeout: Option<Duration>, max_attempts: u32) -> RegisteredJob {
    RegisteredJob::new(
        TestJob::new(name, "Batches", Behaviour::Batches(Duration::from_secs(1))),
        Schedule::parse("0 2 * * *").unwrap(),
    )
    .with_policy(RunPolicy {
        timeout,
        max_attempts,
        retry_base_delay: Duration::from_secs(10),
    })
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_run_stops_at_its_next_batch_and_keeps_its_partial_stats() {
    let log = memory_log();
    let job = batches("batches", Some(Duration::from_millis(2_500)), 1);
    let started = tokio::time::Instant::now();
    let report = runner(log.clone())
        .run(job, RunRequest::manual(false))
        .await
        .unwrap();
    // Asked at 2.5 s, it finished its third batch at 3 s and stopped there, long before
    // the grace period would have dropped it.
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    let row = &log.all()[0];
    assert_eq!(row.status, Status::Failed);
    assert_eq!(row.error_message.as_deref(), Some("timed out after 2s"));
    assert_eq!(row.stats["deleted"], 3, "{row:?}");
    assert_eq!(report.stats.get("deleted"), 3);
}

#[tokio::test(start_paused = true)]
async fn a_run_that_ignores_the_cancellation_is_dropped_after_the_grace_period() {
    let log = memory_log();
    let job = Arc::new(
        RegisteredJob::new(
            TestJob::new(
                "stubborn",
                "Stubborn",
                Behaviour::Sleep(Duration::from_secs(600)),
            ),
            Schedule::parse("0 2 * * *").unwrap(),
        )
        .with_policy(RunPolicy {
            timeout: Some(Duration::from_secs(1)),
            max_attempts: 1,
            retry_base_delay: Duration::from_secs(1),
        }),
    );
    let started = tokio::time::Instant::now();
    runner(log.clone())
        .run(job, RunRequest::manual(false))
        .await
        .unwrap();
    // The timeout, then the 5 s cancel grace of `runner()`.
    assert_eq!(started.elapsed(), Duration::from_secs(6));
    let row = &log.all()[0];
    assert_eq!(row.error_message.as_deref(), Some("timed out after 1s"));
    // What it had reported is kept.
    assert_eq!(row.stats["deleted"], 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_asks_running_jobs_to_stop_and_records_their_partial_stats() {
    let log = memory_log();
    let runner = runner(log.clone());
    // The slot's last attempt: nothing is left to hand over, so it is closed here.
    let started = runner
        .start(
            batches("batches", None, 1),
            RunRequest::slot(Trigger::Schedule, t0()),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert!(!runner.shutdown(Duration::from_millis(100)).await);
    let report = started.handle.await.unwrap();
    assert_eq!(
        report.error_message.as_deref(),
        Some("interrupted by shutdown")
    );
    assert!(!report.will_retry);
    let rows = log.all();
    assert_eq!(rows.len(), 1, "no retry after a shutdown: {rows:#?}");
    assert_eq!(rows[0].status, Status::Failed);
    assert_eq!(rows[0].stats["deleted"], 5);
}

#[tokio::test(start_paused = true)]
async fn a_stop_hands_a_slots_remaining_attempts_to_the_other_servers() {
    let log = memory_log();
    let job = batches("batches", None, 3);
    let stopping = runner(log.clone());
    let started = stopping
        .start(Arc::clone(&job), RunRequest::slot(Trigger::Schedule, t0()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert!(!stopping.shutdown(Duration::from_millis(100)).await);
    let report = started.handle.await.unwrap();
    let message = "interrupted by shutdown of server test-host:1; attempt 2 goes to another server";
    assert_eq!(report.error_message.as_deref(), Some(message));
    assert!(!report.will_retry, "not retried by the server that stops");
    // Handed over, not closed: its counters kept, its lease ended.
    let rows = log.all();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].status, Status::Running);
    assert_eq!(rows[0].stats["deleted"], 5);

    // Another server's lease check closes it with that reason and runs attempt 2 of the
    // same slot after the backoff.
    let other = runner(log.clone());
    let closed = other.log().expire_leases().await.unwrap();
    assert_eq!(closed.len(), 1, "{closed:#?}");
    assert_eq!(closed[0].status, Status::Failed);
    assert_eq!(closed[0].error_message.as_deref(), Some(message));
    // A server where the job is disabled (DISABLED_JOBS, missing credentials) would only
    // spend the attempt: it leaves it.
    let disabled =
        Arc::new(batches_job("batches", None, 3).paused("switched off by DISABLED_JOBS"));
    assert!(!other.rescue(&disabled, &closed[0]));
    assert!(other.rescue(&job, &closed[0]));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let rows = log.all();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[1].attempt, 2);
    assert_eq!(rows[1].scheduled_for, Some(t0()));
    // The batches job runs until it is stopped: attempt 2 is under way on the other server.
    assert_eq!(rows[1].status, Status::Running, "{rows:#?}");
    assert!(rows[1].stats["deleted"].as_u64() > Some(0), "{rows:#?}");
}

#[tokio::test(start_paused = true)]
async fn an_operator_cancel_stops_the_run_with_its_partial_stats_and_no_retry() {
    let log = memory_log();
    let runner = runner(log.clone());
    let started = runner
        .start(
            batches("batches", None, 3),
            RunRequest::slot(Trigger::Schedule, t0()),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(runner.cancel(started.execution_id, "cancelled by admin"));
    let report = started.handle.await.unwrap();
    assert!(!report.will_retry);
    let rows = log.all();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].error_message.as_deref(), Some("cancelled by admin"));
    assert_eq!(rows[0].stats["deleted"], 3);
    // Nothing runs under that id any more.
    assert!(!runner.cancel(started.execution_id, "cancelled by admin"));
}

#[tokio::test(start_paused = true)]
async fn a_cancel_recorded_in_the_log_reaches_the_run_at_its_next_heartbeat() {
    let log = memory_log();
    let runner = runner(log.clone());
    let started = runner
        .start(batches("batches", None, 1), RunRequest::manual(false))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // As another server's API would: only the row is told.
    assert_eq!(
        log.request_cancel(started.execution_id, "viewer")
            .await
            .unwrap(),
        CancelRequest::Requested
    );
    started.handle.await.unwrap();
    let row = &log.all()[0];
    assert_eq!(row.error_message.as_deref(), Some("cancelled by viewer"));
    assert_eq!(row.stats["deleted"], 2);
    assert_eq!(
        log.request_cancel(row.id, "viewer").await.unwrap(),
        CancelRequest::NotRunning
    );
    assert_eq!(
        log.request_cancel(999, "viewer").await.unwrap(),
        CancelRequest::NotFound
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancel_of_a_row_whose_lease_is_over_closes_it_at_once() {
    let log = memory_log();
    let claim = log
        .claim(&attempt_1(
            "batches",
            None,
            "gone:8080",
            Duration::from_secs(5),
        ))
        .await
        .unwrap();
    let Claim::Started { id, .. } = claim else {
        panic!("{claim:?}")
    };
    // Its server died: no heartbeat comes, and nobody would read the request.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        log.request_cancel(id, "admin").await.unwrap(),
        CancelRequest::Closed
    );
    let row = &log.all()[0];
    assert_eq!(row.status, Status::Failed);
    assert_eq!(
        row.error_message.as_deref(),
        Some("cancelled by admin: no server held it (its lease had expired)")
    );
    assert!(log.expire_leases().await.unwrap().is_empty());
}

/// A log whose heartbeats can be made to fail, as when the database is unreachable.
struct FlakyLog {
    inner: Arc<MemoryExecutionLog>,
    heartbeats_fail: std::sync::atomic::AtomicBool,
    completions: AtomicUsize,
}

#[async_trait]
impl ExecutionLog for FlakyLog {
    async fn claim(&self, new: &NewExecution) -> Result<Claim, LogError> {
        self.inner.claim(new).await
    }
    async fn heartbeat(
        &self,
        id: i64,
        lease: Duration,
        progress: Option<&Stats>,
    ) -> Result<Beat, LogError> {
        if self.heartbeats_fail.load(Ordering::SeqCst) {
            return Err(LogError("connection refused".into()));
        }
        self.inner.heartbeat(id, lease, progress).await
    }
    async fn request_cancel(&self, id: i64, actor: &str) -> Result<CancelRequest, LogError> {
        self.inner.request_cancel(id, actor).await
    }
    async fn complete(
        &self,
        id: i64,
        completion: &Completion,
    ) -> Result<Option<ExecutionRecord>, LogError> {
        self.completions.fetch_add(1, Ordering::SeqCst);
        self.inner.complete(id, completion).await
    }
    async fn expire_leases(&self) -> Result<Vec<ExecutionRecord>, LogError> {
        self.inner.expire_leases().await
    }
    async fn close_orphans(
        &self,
        worker_id: &str,
        reason: &str,
    ) -> Result<Vec<ExecutionRecord>, LogError> {
        self.inner.close_orphans(worker_id, reason).await
    }
    async fn latest_per_job(&self) -> Result<Vec<ExecutionRecord>, LogError> {
        self.inner.latest_per_job().await
    }
    async fn last_slot(&self, job_name: &str) -> Result<Option<DateTime<Utc>>, LogError> {
        self.inner.last_slot(job_name).await
    }
    async fn record_skipped(
        &self,
        job_name: &str,
        slot: DateTime<Utc>,
        worker_id: &str,
        reason: &str,
    ) -> Result<bool, LogError> {
        self.inner
            .record_skipped(job_name, slot, worker_id, reason)
            .await
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_that_cannot_renew_its_lease_for_a_whole_lease_stops_and_writes_nothing() {
    let inner = memory_log();
    let log = Arc::new(FlakyLog {
        inner: inner.clone(),
        heartbeats_fail: std::sync::atomic::AtomicBool::new(false),
        completions: AtomicUsize::new(0),
    });
    let runner = runner_on(log.clone());
    let started = runner
        .start(batches("batches", None, 1), RunRequest::manual(false))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    log.heartbeats_fail.store(true, Ordering::SeqCst);
    let cut_at = tokio::time::Instant::now();
    let report = started.handle.await.unwrap();
    // The lease of `runner()` is 5 s from the last renewal (at most one 50 ms heartbeat
    // before the cut): it stopped then, without waiting for the batch under way.
    let stopped_after = cut_at.elapsed();
    assert!(
        stopped_after >= Duration::from_millis(4_950) && stopped_after <= Duration::from_secs(5),
        "{stopped_after:?}"
    );
    assert!(report.record.is_none());
    assert_eq!(log.completions.load(Ordering::SeqCst), 0);
    // The row is left for lease expiry (another server may have rescued it already).
    assert_eq!(inner.all()[0].status, Status::Running);
}

#[tokio::test(start_paused = true)]
async fn a_run_closed_by_another_server_stops_at_once_and_does_not_overwrite_the_row() {
    let log = memory_log();
    let runner = runner(log.clone());
    let started = runner
        .start(batches("batches", None, 1), RunRequest::manual(false))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    log.close_orphans("test-host:1", "closed elsewhere")
        .await
        .unwrap();
    let report = started.handle.await.unwrap();
    assert!(report.record.is_none());
    let row = &log.all()[0];
    assert_eq!(row.status, Status::Failed);
    assert_eq!(row.error_message.as_deref(), Some("closed elsewhere"));
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_attempt_lost_with_its_server_gets_its_next_attempt_after_the_backoff() {
    let log = memory_log();
    let slot = t0() - chrono::Duration::seconds(30);
    // Attempt 1 of a slot, claimed by a server that then died (its lease runs out at once).
    log.claim(&attempt_1(
        "flaky",
        Some(slot),
        "dead-host:8080",
        Duration::from_millis(1),
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;

    let runner = runner(log.clone());
    let mut registry = Registry::new();
    registry.register(
        RegisteredJob::new(
            TestJob::new("flaky", "Flaky", Behaviour::Succeed),
            Schedule::parse("0 2 * * *").unwrap(),
        )
        .with_policy(RunPolicy {
            timeout: None,
            max_attempts: 2,
            retry_base_delay: Duration::from_secs(20),
        }),
    );
    let scheduler = scheduler(
        runner.clone(),
        registry,
        SchedulerSettings {
            tick: Duration::from_millis(100),
            misfire_window: Duration::from_secs(0),
            lease_check_interval: Duration::from_secs(1),
        },
    );
    let task = tokio::spawn(scheduler.run());
    // The backoff of attempt 1 is between 10 and 20 s.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(log.all().len(), 1, "not before the backoff");
    tokio::time::sleep(Duration::from_secs(12)).await;
    runner.shutdown(Duration::from_secs(5)).await;
    task.await.unwrap();
    let rows = log.all();
    let attempts: Vec<(i32, Status, Option<DateTime<Utc>>)> = rows
        .iter()
        .map(|r| (r.attempt, r.status, r.scheduled_for))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, Status::Failed, Some(slot)),
            (2, Status::Success, Some(slot))
        ],
        "{rows:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_attempt_at_its_last_try_is_not_retried() {
    let log = memory_log();
    log.claim(&attempt_1(
        "once",
        Some(t0()),
        "dead-host:8080",
        Duration::from_millis(1),
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let runner = runner(log.clone());
    let mut registry = Registry::new();
    registry.register(
        RegisteredJob::new(
            TestJob::new("once", "Once", Behaviour::Succeed),
            Schedule::parse("0 2 * * *").unwrap(),
        )
        .with_policy(quick_policy()),
    );
    let task = tokio::spawn(
        scheduler(
            runner.clone(),
            registry,
            SchedulerSettings {
                tick: Duration::from_millis(100),
                misfire_window: Duration::from_secs(0),
                lease_check_interval: Duration::from_secs(1),
            },
        )
        .run(),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    runner.shutdown(Duration::from_secs(1)).await;
    task.await.unwrap();
    let rows = log.all();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].status, Status::Failed);
}

#[tokio::test(start_paused = true)]
async fn leases_of_years_do_not_overflow() {
    let log = memory_log();
    let claim = log
        .claim(&attempt_1("forever", None, "w", Duration::MAX))
        .await
        .unwrap();
    let Claim::Started { id, .. } = claim else {
        panic!("{claim:?}")
    };
    assert_eq!(
        log.heartbeat(id, Duration::from_secs(30 * 86_400), None)
            .await
            .unwrap(),
        Beat::Renewed
    );
    assert!(log.expire_leases().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_start_whose_caller_goes_away_still_runs_and_records_the_execution() {
    let log = memory_log();
    let runner = runner(log.clone());
    let job = registered(TestJob::new("abandoned", "Abandoned", Behaviour::Succeed));
    // The caller (an HTTP request whose client disconnected) stops waiting at once.
    let gave_up =
        tokio::time::timeout(Duration::ZERO, runner.start(job, RunRequest::manual(false))).await;
    assert!(gave_up.is_err(), "the start was not abandoned");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rows = log.all();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].status, Status::Success);
}
