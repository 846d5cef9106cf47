#![doc = include_str!("../README.md")]

mod email;
mod message;
mod retry;
mod settings;
pub mod state;
mod webhook;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use db::notifications::{self, AlertState, NewNotice, PendingNotice, StoredAlert};
use db::DbError;
use jobs_core::{RegisteredJob, Registry, RunObserver, RunReport, Status};
use log::{debug, info, warn};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::email::EmailChannel;
pub use self::message::{escape_html, Notice, NoticeKind, SUBJECT_PREFIX};
pub use self::retry::{GaveUp, SendError};
pub use self::settings::{
    EmailSettings, EmailSettingsError, NotifySettings, SmtpSecurity, SmtpTarget, WebhookTarget,
    DEFAULT_OVERDUE_CHECK_SECS, DEFAULT_OVERDUE_FACTOR, DEFAULT_REMINDER_HOURS,
    DEFAULT_RETRY_DELAY_MS, DEFAULT_SEND_ATTEMPTS, DEFAULT_SEND_TIMEOUT_SECS, MAX_OVERDUE_FACTOR,
    MIN_OVERDUE_FACTOR,
};
use self::state::{Check, Decision};
pub use self::webhook::WebhookChannel;

/// Compare-and-set rounds before giving up on a row that keeps changing under us.
const MAX_CAS_ROUNDS: usize = 8;
/// Shortest period of the overdue watch, whatever it is asked for.
const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(10);
/// A notice not delivered within a day is dropped (and logged): it would say old news.
const NOTICE_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// Delivery passes of one notice before it is dropped (and logged).
const MAX_NOTICE_TRIES: i32 = 20;

/// Why a state change could not be recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The job's row kept changing while we tried to write it.
    #[error("the notification state of {0} kept changing; gave up after {MAX_CAS_ROUNDS} tries")]
    Contention(String),
}

/// Deliveries so far by this notifier (the same events the `metrics` counters record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// E-mails the SMTP server accepted.
    pub email_sent: u64,
    /// E-mails given up on.
    pub email_failed: u64,
    /// Webhook posts answered with 2xx.
    pub webhook_sent: u64,
    /// Webhook posts given up on.
    pub webhook_failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    email_sent: AtomicU64,
    email_failed: AtomicU64,
    webhook_sent: AtomicU64,
    webhook_failed: AtomicU64,
}

/// Sends failure, recovery, overdue and reminder notices; see the [crate](crate) docs.
///
/// Build it with [`Notifier::new`], add it to the runner with
/// `Runner::with_observer`, start [`Notifier::spawn_overdue_watch`], and call
/// [`Notifier::shutdown`] at the end so that notices in flight go out.
pub struct Notifier {
    inner: Arc<Inner>,
    /// Deliveries in flight.
    tracker: TaskTracker,
    /// Run outcomes, applied one at a time in the order they were observed (a later run
    /// must never be applied before an earlier one); started on first use, inside the
    /// runtime.
    queue: OnceLock<mpsc::UnboundedSender<RunFacts>>,
    /// Outcomes queued or being applied.
    pending: Arc<AtomicUsize>,
}

struct Inner {
    pool: db::Pool,
    settings: NotifySettings,
    email: Option<EmailChannel>,
    webhook: Option<WebhookChannel>,
    dashboard_url: Option<String>,
    counters: Counters,
    /// Set while the database fails the overdue check, so that an outage is logged once.
    check_failing: AtomicBool,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("email", &self.inner.email)
            .field("webhook", &self.inner.webhook)
            .field("queued", &self.pending.load(Ordering::SeqCst))
            .field("sending", &self.tracker.len())
            .finish()
    }
}

impl Notifier {
    /// A notifier with these settings; `public_url` is the base of the dashboard link.
    /// `None` when no channel is configured.
    pub fn new(
        settings: &NotifySettings,
        public_url: Option<&url::Url>,
        pool: db::Pool,
    ) -> Option<Arc<Notifier>> {
        let email = settings
            .email
            .as_ref()
            .map(|e| EmailChannel::new(e, settings.send_timeout));
        let webhook = settings.webhook.as_ref().and_then(|target| {
            WebhookChannel::new(target.clone(), settings.send_timeout)
                .map_err(|e| warn!("[Notify] webhook notices are off: {e}"))
                .ok()
        });
        if email.is_none() && webhook.is_none() {
            return None;
        }
        let mut channels = Vec::new();
        if let Some(e) = &email {
            channels.push(format!(
                "e-mail to {} recipient(s) through {}",
                e.recipients(),
                e.target()
            ));
        }
        if let Some(w) = &webhook {
            channels.push(format!("webhook {}", w.target()));
        }
        info!("[Notify] failure notices go to: {}", channels.join("; "));
        if let Some(target) = email.as_ref().map(EmailChannel::target) {
            if target.sends_credentials_in_clear() {
                let when = match target.security() {
                    SmtpSecurity::Opportunistic => " whenever it offers no STARTTLS",
                    _ => "",
                };
                warn!(
                    "[Notify] SMTP_URL sends its user name and password to {} in clear \
                     text{when}; use smtps:// or ?tls=required unless the relay is on a \
                     network you trust",
                    target.host()
                );
            }
        }
        let dashboard_url = public_url.map(|url| {
            let mut s = url.as_str().to_owned();
            if !s.ends_with('/') {
                s.push('/');
            }
            s
        });
        Some(Arc::new(Notifier {
            inner: Arc::new(Inner {
                pool,
                settings: settings.clone(),
                email,
                webhook,
                dashboard_url,
                counters: Counters::default(),
                check_failing: AtomicBool::new(false),
            }),
            tracker: TaskTracker::new(),
            queue: OnceLock::new(),
            pending: Arc::new(AtomicUsize::new(0)),
        }))
    }

    /// Starts the worker that applies run outcomes in order and spawns their deliveries.
    fn start_worker(&self) -> mpsc::UnboundedSender<RunFacts> {
        let (tx, mut rx) = mpsc::unbounded_channel::<RunFacts>();
        let inner = Arc::clone(&self.inner);
        let tracker = self.tracker.clone();
        let pending = Arc::clone(&self.pending);
        // Ends when the notifier (the sender) is dropped.
        tokio::spawn(async move {
            while let Some(facts) = rx.recv().await {
                if let Some(notice) = inner.apply_run(&facts).await {
                    let inner = Arc::clone(&inner);
                    tracker.spawn(async move { inner.deliver(notice).await });
                }
                pending.fetch_sub(1, Ordering::SeqCst);
            }
        });
        tx
    }

    /// The settings it was built with (`overdue_check_interval` is the period to hand to
    /// [`Notifier::spawn_overdue_watch`]).
    pub fn settings(&self) -> &NotifySettings {
        &self.inner.settings
    }

    /// Deliveries so far.
    pub fn delivery_counts(&self) -> DeliveryCounts {
        let c = &self.inner.counters;
        DeliveryCounts {
            email_sent: c.email_sent.load(Ordering::Relaxed),
            email_failed: c.email_failed.load(Ordering::Relaxed),
            webhook_sent: c.webhook_sent.load(Ordering::Relaxed),
            webhook_failed: c.webhook_failed.load(Ordering::Relaxed),
        }
    }

    /// Checks every job of `registry` now and then every `interval` until `stop`: a job
    /// that has not succeeded for `ALERT_OVERDUE_FACTOR` times its interval gets one overdue
    /// notice, and broken jobs get their reminders. Overdue is measured from the last
    /// success, or from when the job's state row was created if it never succeeded (so a
    /// fresh install does not alert at once); disabled jobs are never overdue.
    pub fn spawn_overdue_watch(
        self: Arc<Self>,
        registry: Arc<Registry>,
        stop: CancellationToken,
        interval: Duration,
    ) -> JoinHandle<()> {
        let interval = interval.max(MIN_WATCH_INTERVAL);
        tokio::spawn(async move {
            debug!("[Notify] overdue watch started, every {interval:?}");
            while !stop.is_cancelled() {
                // Not cancelled midway: a state change that was written must be sent.
                self.check_overdue(&registry).await;
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
            debug!("[Notify] overdue watch stopped");
        })
    }

    /// One pass of the overdue watch over every job. Returns the notices it started
    /// sending (they are delivered in the background).
    pub async fn check_overdue(&self, registry: &Registry) -> usize {
        let mut started = 0;
        let mut failed = None;
        // A job an operator paused at run time is not overdue: it was told not to run.
        let paused = match self.paused_jobs().await {
            Ok(paused) => paused,
            Err(e) => {
                failed = Some(format!("reading the paused jobs: {e}"));
                Vec::new()
            }
        };
        for job in registry.iter() {
            let check = if job.is_enabled() && !paused.iter().any(|name| name == job.name()) {
                Check::Enabled {
                    overdue_after: overdue_after(job, self.inner.settings.overdue_factor),
                }
            } else {
                Check::Disabled
            };
            let reminder = self.inner.settings.reminder_interval;
            let result = self
                .inner
                .transition(
                    job.name(),
                    |stored| state::on_check(&stored.record, stored.now, check, reminder),
                    |before, decision, kind| {
                        self.inner.check_notice(job, kind, check, before, decision)
                    },
                )
                .await;
            match result {
                Ok(Some((_, _, Some(notice)))) => {
                    let inner = Arc::clone(&self.inner);
                    self.tracker
                        .spawn(async move { inner.deliver(notice).await });
                    started += 1;
                }
                Ok(_) => {}
                Err(e) => failed = Some(format!("{}: {e}", job.name())),
            }
        }
        // Notices whose sender stopped or died, or whose channels failed last time.
        match self.inner.claim_stale().await {
            Ok(stale) => {
                for notice in stale {
                    let inner = Arc::clone(&self.inner);
                    self.tracker
                        .spawn(async move { inner.deliver(notice).await });
                    started += 1;
                }
            }
            Err(e) => failed = Some(format!("the pending notices: {e}")),
        }
        match failed {
            Some(e) => {
                if !self.inner.check_failing.swap(true, Ordering::Relaxed) {
                    warn!(
                        "[Notify] the overdue check failed ({e}); retrying quietly until it works"
                    );
                }
            }
            None => {
                if self.inner.check_failing.swap(false, Ordering::Relaxed) {
                    info!("[Notify] the overdue check works again");
                }
            }
        }
        started
    }

    /// The jobs paused at run time (`job_controls`).
    async fn paused_jobs(&self) -> Result<Vec<String>, DbError> {
        let mut conn = self.inner.pool.get().await.map_err(DbError::from)?;
        Ok(db::controls::all(&mut conn)
            .await?
            .into_iter()
            .filter(|control| control.paused)
            .map(|control| control.job_name)
            .collect())
    }

    /// Waits until no outcome is being recorded and no notice is being sent, up to
    /// `timeout`. Returns false on timeout.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        // A delivery is spawned before its outcome stops counting as pending.
        while self.pending.load(Ordering::SeqCst) > 0 || !self.tracker.is_empty() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// At shutdown: lets notices in flight finish for up to `grace`. Returns false when
    /// some were still going.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        let done = self.wait_idle(grace).await;
        self.tracker.close();
        if !done {
            warn!(
                "[Notify] {} outcome(s) and {} notice(s) still in flight after {grace:?}; \
                 abandoning them",
                self.pending.load(Ordering::SeqCst),
                self.tracker.len()
            );
        }
        done
    }
}

#[async_trait::async_trait]
impl RunObserver for Notifier {
    /// Returns at once: the outcome is queued; recording it and sending happen in the
    /// background.
    async fn finished(&self, job: &RegisteredJob, report: &RunReport) {
        // A failed attempt that will be retried is not a failure yet; dry runs change
        // nothing and say nothing about the job's health.
        if report.will_retry
            || report.status == Status::Running
            || report.record.as_ref().is_some_and(|r| r.dry_run)
        {
            return;
        }
        let facts = RunFacts::new(job, report);
        self.pending.fetch_add(1, Ordering::SeqCst);
        let queue = self.queue.get_or_init(|| self.start_worker());
        if let Err(lost) = queue.send(facts) {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            warn!(
                "[Notify] the notification worker has stopped; no notice for {} execution {}",
                lost.0.job_name, lost.0.execution_id
            );
        }
    }
}

/// What a notice needs from a finished run, copied out of the report.
#[derive(Debug, Clone)]
struct RunFacts {
    job_name: String,
    display_name: String,
    schedule: String,
    execution_id: i64,
    succeeded: bool,
    error: Option<String>,
    started_at: DateTime<Utc>,
    duration_ms: i64,
    trigger: String,
    attempt: u32,
    scheduled_for: Option<DateTime<Utc>>,
    worker_id: Option<String>,
    stats: Vec<(String, i64)>,
}

impl RunFacts {
    fn new(job: &RegisteredJob, report: &RunReport) -> Self {
        let elapsed_ms = i64::try_from(report.elapsed.as_millis()).unwrap_or(i64::MAX);
        let started_at = report
            .record
            .as_ref()
            .map(|r| r.started_at)
            .unwrap_or_else(|| Utc::now() - chrono::Duration::milliseconds(elapsed_ms));
        Self {
            job_name: job.name().to_owned(),
            display_name: job.job.display_name().to_owned(),
            schedule: job.schedule.expression().to_owned(),
            execution_id: report.execution_id,
            succeeded: report.status == Status::Success,
            error: report.error_message.clone(),
            started_at,
            duration_ms: report
                .record
                .as_ref()
                .and_then(|r| r.duration_ms)
                .unwrap_or(elapsed_ms),
            trigger: report.trigger.as_str().to_owned(),
            attempt: report.attempt,
            scheduled_for: report.scheduled_for,
            worker_id: report.record.as_ref().and_then(|r| r.worker_id.clone()),
            stats: report
                .stats
                .iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        }
    }
}

/// The job's typical interval times the factor; `None` when its schedule gives none.
fn overdue_after(job: &RegisteredJob, factor: f64) -> Option<Duration> {
    let interval = job.schedule.typical_interval(Utc::now())?.to_std().ok()?;
    Duration::try_from_secs_f64(interval.as_secs_f64() * factor).ok()
}

impl Inner {
    /// Reads the job's row, decides, and writes the decision if nobody changed the row
    /// meanwhile; on a lost race, reads again and decides again. A decision that earns a
    /// notice puts it in the outbox in the same statement, claimed by this server, so that
    /// exactly one server sends it and a stop or crash cannot lose it. Returns the row as
    /// read, the decision written and the notice to deliver; `None` when nothing was to
    /// change.
    async fn transition(
        &self,
        job_name: &str,
        decide: impl Fn(&StoredAlert) -> Option<Decision>,
        notice: impl Fn(&StoredAlert, &Decision, NoticeKind) -> Notice,
    ) -> Result<Option<(StoredAlert, Decision, Option<PendingNotice>)>, NotifyError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        for _ in 0..MAX_CAS_ROUNDS {
            let stored = notifications::load_or_create(&mut conn, job_name).await?;
            let Some(decision) = decide(&stored) else {
                return Ok(None);
            };
            let new = decision
                .notice
                .map(|kind| self.outbox_entry(&notice(&stored, &decision, kind)));
            let (won, id) = notifications::compare_and_set_with_notice(
                &mut conn,
                job_name,
                stored.version,
                &decision.record,
                new.as_ref(),
            )
            .await?;
            if won {
                let pending = new.zip(id).map(|(new, id)| PendingNotice {
                    id,
                    job_name: job_name.to_owned(),
                    kind: new.kind,
                    subject: new.subject,
                    plain_text: new.plain_text,
                    html: new.html,
                    webhook_body: new.webhook_body,
                    message_id: new.message_id,
                    email_pending: new.email,
                    webhook_pending: new.webhook,
                    tries: 0,
                });
                return Ok(Some((stored, decision, pending)));
            }
        }
        Err(NotifyError::Contention(job_name.to_owned()))
    }

    /// A notice as the outbox keeps it: rendered once, for every channel configured here.
    fn outbox_entry(&self, notice: &Notice) -> NewNotice {
        let message_id = self.email.as_ref().map_or_else(
            || format!("<{}@localhost>", uuid::Uuid::new_v4()),
            EmailChannel::new_message_id,
        );
        // The same id in every copy of the webhook's body, for a receiver to drop repeats.
        let mut webhook_body = notice.webhook_json();
        if let Some(body) = webhook_body.as_object_mut() {
            body.insert(
                "notice_id".to_owned(),
                serde_json::Value::String(message_id.trim_matches(['<', '>']).to_owned()),
            );
        }
        NewNotice {
            kind: notice.kind.as_str().to_owned(),
            subject: notice.subject(),
            plain_text: notice.plain_text(),
            html: notice.html(),
            webhook_body,
            message_id,
            email: self.email.is_some(),
            webhook: self.webhook.is_some(),
        }
    }

    /// Claims the notices a stopped or dead sender left, or whose last pass failed, once
    /// their claim is older than a whole delivery pass could take; drops (and logs) those
    /// a day old or tried [`MAX_NOTICE_TRIES`] times.
    async fn claim_stale(&self) -> Result<Vec<PendingNotice>, DbError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let (claimed, dropped) = notifications::claim_stale_notices(
            &mut conn,
            self.settings.delivery_claim(),
            NOTICE_MAX_AGE,
            MAX_NOTICE_TRIES,
            16,
        )
        .await?;
        for notice in dropped {
            warn!(
                "[Notify] gave up on the {} notice about {} after {} pass(es): {}",
                notice.kind, notice.job_name, notice.tries, notice.subject
            );
        }
        Ok(claimed)
    }

    /// Records a run's outcome; returns the notice it earned, if any.
    async fn apply_run(&self, facts: &RunFacts) -> Option<PendingNotice> {
        let reminder = self.settings.reminder_interval;
        let result = self
            .transition(
                &facts.job_name,
                |stored| {
                    state::on_run(
                        &stored.record,
                        stored.now,
                        facts.execution_id,
                        facts.succeeded,
                        facts.error.as_deref(),
                        reminder,
                    )
                },
                |before, decision, kind| self.run_notice(facts, kind, before, decision),
            )
            .await;
        match result {
            Ok(Some((_, _, notice))) => notice,
            Ok(None) => {
                debug!(
                    "[Notify] {} execution {} was already accounted for",
                    facts.job_name, facts.execution_id
                );
                None
            }
            Err(e) => {
                warn!(
                    "[Notify] could not record the outcome of {} execution {}: {e}; no notice sent",
                    facts.job_name, facts.execution_id
                );
                None
            }
        }
    }

    fn base_notice(
        &self,
        kind: NoticeKind,
        state: AlertState,
        job_name: &str,
        display_name: &str,
        schedule: &str,
        at: DateTime<Utc>,
    ) -> Notice {
        let mut notice = Notice::new(kind, state, job_name, display_name, at);
        notice.schedule = Some(schedule.to_owned());
        notice.dashboard_url = self.dashboard_url.clone();
        notice.reminder_interval = self.settings.reminder_interval;
        notice
    }

    fn run_notice(
        &self,
        facts: &RunFacts,
        kind: NoticeKind,
        before: &StoredAlert,
        decision: &Decision,
    ) -> Notice {
        let record = &decision.record;
        let mut n = self.base_notice(
            kind,
            record.state,
            &facts.job_name,
            &facts.display_name,
            &facts.schedule,
            before.now,
        );
        n.execution_id = Some(facts.execution_id);
        n.status = Some(if facts.succeeded { "success" } else { "failed" });
        n.started_at = Some(facts.started_at);
        n.duration_ms = Some(facts.duration_ms);
        n.trigger = Some(facts.trigger.clone());
        n.attempt = Some(facts.attempt);
        n.scheduled_for = facts.scheduled_for;
        n.worker_id = facts.worker_id.clone();
        n.error_message = facts.error.clone();
        n.stats = facts.stats.clone();
        match kind {
            NoticeKind::Recovery => {
                n.broken_since = Some(before.record.since);
                n.failed_runs =
                    (before.record.state == AlertState::Failing).then_some(before.record.failures);
            }
            NoticeKind::Reminder(_) => {
                n.broken_since = Some(record.since);
                n.failed_runs = Some(record.failures);
                n.last_success_at = record.last_success_at;
            }
            NoticeKind::Failure | NoticeKind::Overdue => {
                n.last_success_at = record.last_success_at;
            }
        }
        n
    }

    fn check_notice(
        &self,
        job: &RegisteredJob,
        kind: NoticeKind,
        check: Check,
        before: &StoredAlert,
        decision: &Decision,
    ) -> Notice {
        let record = &decision.record;
        let mut n = self.base_notice(
            kind,
            record.state,
            job.name(),
            job.job.display_name(),
            job.schedule.expression(),
            before.now,
        );
        n.last_success_at = record.last_success_at;
        if record.state == AlertState::Failing {
            n.execution_id = record.last_execution_id;
            n.status = Some("failed");
            n.error_message = record.last_error.clone();
            n.failed_runs = Some(record.failures);
        } else {
            n.overdue_reference = Some(state::overdue_reference(record));
            if let Check::Enabled {
                overdue_after: Some(after),
            } = check
            {
                n.overdue_after = Some(after);
                n.interval =
                    Duration::try_from_secs_f64(after.as_secs_f64() / self.settings.overdue_factor)
                        .ok();
            }
        }
        if matches!(kind, NoticeKind::Reminder(_)) {
            n.broken_since = Some(record.since);
        }
        n
    }

    /// Sends a notice to every channel still waiting for it, at once; then deletes it from
    /// the outbox, or keeps it with the channels that failed for a later pass. Never fails.
    async fn deliver(&self, notice: PendingNotice) {
        let done = |email: bool| async move {
            let recorded = async {
                let mut conn = self.pool.get().await.map_err(DbError::from)?;
                notifications::channel_done(&mut conn, notice.id, email).await
            };
            if let Err(e) = recorded.await {
                debug!("[Notify] a delivery was not recorded at once ({e}); recorded at the end");
            }
        };
        let email = async {
            let result = self.send_email(&notice).await;
            if matches!(result, Some(Ok(_))) {
                done(true).await;
            }
            result
        };
        let webhook = async {
            let result = self.send_webhook(&notice).await;
            if matches!(result, Some(Ok(_))) {
                done(false).await;
            }
            result
        };
        let (email, webhook) = tokio::join!(email, webhook);
        // A channel not configured on this server stays pending for one that has it; one
        // that refused the notice for good (SMTP 5xx, HTTP 4xx) is not asked again.
        let settled = |result: &Option<Result<u32, GaveUp>>| {
            matches!(
                result,
                Some(Ok(_))
                    | Some(Err(GaveUp {
                        permanent: true,
                        ..
                    }))
            )
        };
        let email_pending = notice.email_pending && !settled(&email);
        let webhook_pending = notice.webhook_pending && !settled(&webhook);
        let errors: Vec<String> = [email, webhook]
            .into_iter()
            .filter_map(|r| r.and_then(Result::err))
            .map(|gave_up| gave_up.to_string())
            .collect();
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        let settled = async {
            let mut conn = self.pool.get().await.map_err(DbError::from)?;
            notifications::settle_notice(
                &mut conn,
                notice.id,
                email_pending,
                webhook_pending,
                error.as_deref(),
            )
            .await
        };
        if let Err(e) = settled.await {
            // Left claimed: sent again once the claim is old.
            warn!(
                "[Notify] the delivery of the {} notice about {} was not recorded ({e}); it may be sent again",
                notice.kind, notice.job_name
            );
        }
    }

    /// `None` when the e-mail is not pending or this server has no e-mail channel.
    async fn send_email(&self, notice: &PendingNotice) -> Option<Result<u32, GaveUp>> {
        let channel = self.email.as_ref().filter(|_| notice.email_pending)?;
        let what = format!("e-mail about {} ({})", notice.job_name, notice.kind);
        let result = match channel.message_from(
            &notice.subject,
            notice.plain_text.clone(),
            notice.html.clone(),
            &notice.message_id,
        ) {
            Ok(message) => {
                retry::with_retries(
                    &what,
                    self.settings.send_attempts,
                    self.settings.retry_delay,
                    || channel.send_once(&message),
                )
                .await
            }
            Err(SendError::Permanent(message) | SendError::Transient { message, .. }) => {
                Err(GaveUp {
                    message,
                    attempts: 0,
                    permanent: true,
                })
            }
        };
        self.record_delivery("email", notice, &what, result.clone());
        Some(result)
    }

    /// `None` when the webhook post is not pending or this server has no webhook.
    async fn send_webhook(&self, notice: &PendingNotice) -> Option<Result<u32, GaveUp>> {
        let channel = self.webhook.as_ref().filter(|_| notice.webhook_pending)?;
        let what = format!("webhook about {} ({})", notice.job_name, notice.kind);
        let result = retry::with_retries(
            &what,
            self.settings.send_attempts,
            self.settings.retry_delay,
            || channel.send_once(&notice.webhook_body),
        )
        .await;
        self.record_delivery("webhook", notice, &what, result.clone());
        Some(result)
    }

    /// Logs the outcome of one delivery once, and counts it.
    fn record_delivery(
        &self,
        channel: &'static str,
        notice: &PendingNotice,
        what: &str,
        result: Result<u32, GaveUp>,
    ) {
        let (sent, failed) = match channel {
            "email" => (&self.counters.email_sent, &self.counters.email_failed),
            _ => (&self.counters.webhook_sent, &self.counters.webhook_failed),
        };
        match result {
            Ok(attempts) => {
                sent.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(
                    "notifications_sent_total",
                    "channel" => channel,
                    "kind" => notice.kind.clone()
                )
                .increment(1);
                info!(
                    "[Notify] {what} sent: {}{}",
                    notice.subject,
                    if attempts > 1 {
                        format!(" (attempt {attempts})")
                    } else {
                        String::new()
                    }
                );
            }
            Err(gave_up) => {
                failed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("notifications_failed_total", "channel" => channel).increment(1);
                if gave_up.permanent {
                    warn!("[Notify] {what} not sent: {gave_up}; refused for good, not sent again");
                } else {
                    warn!("[Notify] {what} not sent: {gave_up}; it is tried again later");
                }
            }
        }
    }
}
