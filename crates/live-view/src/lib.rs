#![doc = include_str!("../README.md")]
//!
//! The live view: what every server holds in memory of the jobs' state, kept current by
//! the change feed ([`feed`]), and the event streams that follow it; and the JSON shapes
//! ([`views`]) in which the API and the streams show executions and jobs.
//!
//! The database stays the source of truth. The view holds the latest execution of each job
//! (and through it the job list), so `GET /jobs/status` and `GET /jobs` answer without a
//! query, and every change it learns of is published to the open `GET /events` streams.
//! It learns of changes from PostgreSQL's `LISTEN/NOTIFY` (a trigger announces every write
//! of `job_executions`, whichever server made it), re-reads the tables after every
//! reconnection and every [`LiveSettings::resync`] as a safety net, and polls the tables
//! every second while it has no working listener. README ("Live updates") states the
//! staleness bound that follows.
//!
//! Only the feed task writes to the view, one change after the other, so the view only
//! ever moves forward: every write applies rows read after the notification that caused
//! it.

pub mod feed;
pub mod views;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use jobs_core::{ExecutionRecord, Registry, Status};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use db::controls::JobControl;
use secrecy::SecretString;

use crate::views::{Data, ExecutionStatus, ExecutionView, JobView};

/// Default of `LIVE_RESYNC_SECS`.
pub const DEFAULT_RESYNC_SECS: u64 = 30;
/// Default of `EVENTS_MAX_STREAMS`.
pub const DEFAULT_MAX_STREAMS: usize = 100;
/// Default of `EVENTS_HEARTBEAT_SECS`.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 15;
/// How often the tables are read while there is no working listener.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Events kept for `Last-Event-ID` replay; a client further behind gets a fresh snapshot.
const REPLAY_EVENTS: usize = 512;
/// Events queued per stream before a slow reader is sent a fresh snapshot instead.
const STREAM_QUEUE: usize = 256;

/// Where the change feed listens.
#[derive(Debug, Clone)]
pub enum ListenUrl {
    /// `DATABASE_URL` itself (`DATABASE_LISTEN_URL` unset).
    Database,
    /// `DATABASE_LISTEN_URL`: a direct or session-mode address of the same database.
    Url(SecretString),
    /// `DATABASE_LISTEN_URL=off`: no listener, the tables are polled every second.
    Off,
}

/// The live view's and the event streams' settings.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// `DATABASE_LISTEN_URL`.
    pub listen_url: ListenUrl,
    /// `LIVE_RESYNC_SECS`: the full re-read that bounds staleness should a notification be
    /// lost without the session dropping.
    pub resync: Duration,
    /// `EVENTS_MAX_STREAMS`: open `GET /events` streams per server.
    pub max_streams: usize,
    /// `EVENTS_HEARTBEAT_SECS`: a comment line on every idle stream this often.
    pub heartbeat: Duration,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            listen_url: ListenUrl::Database,
            resync: Duration::from_secs(DEFAULT_RESYNC_SECS),
            max_streams: DEFAULT_MAX_STREAMS,
            heartbeat: Duration::from_secs(DEFAULT_HEARTBEAT_SECS),
        }
    }
}

/// The latest execution of a job, as the view decides it: whether `candidate` takes the
/// place of `current`. The one rule of "latest" in memory; its SQL twin is
/// `db::executions::latest_per_job`, and a change to one is a change to both: the newest
/// row by `(started_at, id)` that is not a skipped slot. A skipped slot is never the latest
/// execution, so one skipped while a run goes on never hides that run.
pub fn replaces_latest(current: Option<&ExecutionRecord>, candidate: &ExecutionRecord) -> bool {
    if candidate.status == Status::Skipped {
        return false;
    }
    match current {
        None => true,
        Some(current) if current.id == candidate.id => true,
        Some(current) => (candidate.started_at, candidate.id) > (current.started_at, current.id),
    }
}

/// One published change, as a stream sends it.
#[derive(Debug)]
struct Event {
    seq: u64,
    /// `id:`, `event:` and `data:` lines, ready to send.
    frame: Bytes,
}

#[derive(Default)]
struct ViewState {
    loaded: bool,
    /// Job name → its latest execution, for every job that ever ran (registered or not).
    latest: BTreeMap<String, ExecutionRecord>,
    /// Job name → its run-time switches (`job_controls`: pause/resume), for every job
    /// that has a row.
    controls: BTreeMap<String, JobControl>,
    /// `GET /jobs/status`'s body, rebuilt on every change.
    status_body: Bytes,
}

struct EventLog {
    last_seq: u64,
    recent: VecDeque<Arc<Event>>,
}

/// What a server knows of the jobs' state, and the streams following it.
pub struct LiveView {
    registry: Arc<Registry>,
    settings: LiveSettings,
    /// Tells a `Last-Event-ID` of this process from one of another (or of before a restart).
    instance: String,
    state: RwLock<ViewState>,
    /// Becomes true at the first load, for the requests that came before it.
    loaded: tokio::sync::watch::Sender<bool>,
    events: Mutex<EventLog>,
    sender: broadcast::Sender<Arc<Event>>,
    streams: AtomicUsize,
    closing: CancellationToken,
    /// Bumped to have every open stream send a heartbeat now ([`LiveView::probe_streams`]).
    probe: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for LiveView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveView")
            .field("instance", &self.instance)
            .field("streams", &self.streams.load(Ordering::Relaxed))
            .finish()
    }
}

/// Why a stream was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRefused {
    /// `EVENTS_MAX_STREAMS` streams are open.
    Full {
        /// The limit.
        max: usize,
    },
    /// The server is shutting down.
    Closing,
}

impl LiveView {
    /// An empty view of `registry`'s jobs; [`feed`] loads and follows it.
    pub fn new(registry: Arc<Registry>, settings: LiveSettings) -> Arc<Self> {
        let (sender, _) = broadcast::channel(STREAM_QUEUE);
        let instance = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        Arc::new(Self {
            registry,
            settings,
            instance,
            state: RwLock::new(ViewState::default()),
            loaded: tokio::sync::watch::Sender::new(false),
            events: Mutex::new(EventLog {
                last_seq: 0,
                recent: VecDeque::with_capacity(REPLAY_EVENTS),
            }),
            sender,
            streams: AtomicUsize::new(0),
            closing: CancellationToken::new(),
            probe: tokio::sync::watch::channel(0).0,
        })
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &LiveSettings {
        &self.settings
    }

    /// Waits, for at most `limit`, until the view was first loaded; returns whether it was.
    /// Requests that come in before the first read of the tables wait for it.
    pub async fn wait_loaded(&self, limit: Duration) -> bool {
        if *self.loaded.borrow() {
            return true;
        }
        let mut watch = self.loaded.subscribe();
        let loaded = tokio::time::timeout(limit, watch.wait_for(|loaded| *loaded))
            .await
            .is_ok_and(|r| r.is_ok());
        loaded
    }

    /// `GET /jobs/status`'s JSON body; `None` until the view was first loaded.
    pub fn status_body(&self) -> Option<Bytes> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.loaded.then(|| state.status_body.clone())
    }

    /// The registered jobs with their latest execution, as `GET /jobs` shows them; `None`
    /// until the view was first loaded.
    pub fn jobs(&self) -> Option<Vec<JobView>> {
        let now = Utc::now();
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        if !state.loaded {
            return None;
        }
        Some(
            self.registry
                .iter()
                .map(|job| state.job_view(job, now))
                .collect(),
        )
    }

    /// The latest execution of each job that ever ran, by job name.
    pub fn latest(&self) -> Vec<ExecutionRecord> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.latest.values().cloned().collect()
    }

    /// Executions read after a notification: each is published, and becomes its job's
    /// latest when [`replaces_latest`] says so. A row identical to the one shown is not
    /// news (a lease heartbeat changes nothing the API shows).
    pub fn apply_executions(&self, records: Vec<ExecutionRecord>) {
        let mut out = Vec::new();
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            for record in records {
                let current = state.latest.get(&record.job_name);
                if current == Some(&record) {
                    continue;
                }
                out.push(Outgoing::Execution(record.clone()));
                if replaces_latest(current, &record) {
                    out.push(Outgoing::Job(record.job_name.clone()));
                    state.latest.insert(record.job_name.clone(), record);
                }
            }
            if !out.is_empty() {
                refresh_status_body(&mut state);
            }
        }
        self.publish(out);
    }

    /// A full re-read (`db::executions::latest_per_job` and `db::controls::all`): the view
    /// becomes exactly that, and what differs is published.
    pub fn replace_all(&self, latest: Vec<ExecutionRecord>, controls: Vec<JobControl>) {
        let mut out = Vec::new();
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            // A switch this server wrote after the re-read was taken stays.
            let mut controls: BTreeMap<String, JobControl> = controls
                .into_iter()
                .map(|c| match state.controls.get(&c.job_name) {
                    Some(held) if !c.supersedes(Some(held)) => (c.job_name.clone(), held.clone()),
                    _ => (c.job_name.clone(), c),
                })
                .collect();
            for (name, control) in &controls {
                if state.controls.get(name) != Some(control) {
                    out.push(Outgoing::Job(name.clone()));
                }
            }
            for name in state.controls.keys() {
                if !controls.contains_key(name) {
                    out.push(Outgoing::Job(name.clone()));
                }
            }
            std::mem::swap(&mut state.controls, &mut controls);
            let mut fresh: BTreeMap<String, ExecutionRecord> = latest
                .into_iter()
                .map(|r| (r.job_name.clone(), r))
                .collect();
            for (name, record) in &fresh {
                if state.latest.get(name) != Some(record) {
                    out.push(Outgoing::Execution(record.clone()));
                    out.push(Outgoing::Job(name.clone()));
                }
            }
            for name in state.latest.keys() {
                if !fresh.contains_key(name) {
                    out.push(Outgoing::Job(name.clone()));
                }
            }
            std::mem::swap(&mut state.latest, &mut fresh);
            let first_load = !state.loaded;
            state.loaded = true;
            if first_load || !out.is_empty() {
                refresh_status_body(&mut state);
            }
        }
        self.loaded.send_replace(true);
        self.publish(out);
    }

    /// One job's state re-read after a `job` notification (its latest execution and its
    /// `job_controls` row): always published, since what changed may be outside the latest
    /// execution (pause/resume).
    pub fn replace_job(
        &self,
        job_name: &str,
        latest: Option<ExecutionRecord>,
        control: Option<JobControl>,
    ) {
        let mut out = Vec::new();
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            match control {
                Some(control) => {
                    if control.supersedes(state.controls.get(job_name)) {
                        state.controls.insert(job_name.to_owned(), control);
                    }
                }
                None => {
                    state.controls.remove(job_name);
                }
            }
            let changed = state.latest.get(job_name) != latest.as_ref();
            match latest {
                Some(record) => {
                    if changed {
                        out.push(Outgoing::Execution(record.clone()));
                    }
                    state.latest.insert(job_name.to_owned(), record);
                }
                None => {
                    state.latest.remove(job_name);
                }
            }
            out.push(Outgoing::Job(job_name.to_owned()));
            if changed {
                refresh_status_body(&mut state);
            }
        }
        self.publish(out);
    }

    /// A job's switches as this server just wrote them (pause/resume through its API), so
    /// that its own `GET /jobs` shows them at once; the `job` notification the write fired
    /// brings the same row to every server, this one included.
    pub fn apply_control(&self, control: JobControl) {
        let name = control.job_name.clone();
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            let held = state.controls.get(&name);
            // Equal, or older than what a notification already brought.
            if held == Some(&control) || !control.supersedes(held) {
                return;
            }
            state.controls.insert(name.clone(), control);
        }
        self.publish(vec![Outgoing::Job(name)]);
    }

    /// Sends `job`'s entry to every stream: something of it that this view does not hold
    /// changed (its backlog, measured by the server itself).
    pub fn announce_job(&self, job: &str) {
        self.publish(vec![Outgoing::Job(job.to_owned())]);
    }

    /// Frames the changes and sends them to every open stream, in order.
    fn publish(&self, out: Vec<Outgoing>) {
        if out.is_empty() {
            return;
        }
        let now = Utc::now();
        let frames: Vec<(&'static str, String)> = {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            out.into_iter()
                .filter_map(|o| match o {
                    Outgoing::Execution(record) => Some((
                        "execution",
                        serde_json::to_string(&ExecutionView::from(&record)).ok()?,
                    )),
                    Outgoing::Job(name) => {
                        let job = self.registry.get(&name)?;
                        let view = state.job_view(&job, now);
                        Some(("job", serde_json::to_string(&view).ok()?))
                    }
                })
                .collect()
        };
        let mut log = self.events.lock().unwrap_or_else(|e| e.into_inner());
        for (kind, data) in frames {
            log.last_seq += 1;
            let seq = log.last_seq;
            let event = Arc::new(Event {
                seq,
                frame: frame(Some(&self.event_id(seq)), kind, &data),
            });
            if log.recent.len() == REPLAY_EVENTS {
                log.recent.pop_front();
            }
            log.recent.push_back(Arc::clone(&event));
            // No receiver is not an error: nobody is watching.
            let _ = self.sender.send(event);
        }
    }

    fn event_id(&self, seq: u64) -> String {
        format!("{}.{seq}", self.instance)
    }

    /// Every registered job as a `job` event. The last one carries the id of the latest
    /// event published, so that a client resuming from it misses nothing; the others carry
    /// none, so that a client cut off halfway through resumes with the id it had before
    /// (or none) and gets what it lacks, not only what follows.
    fn snapshot(&self, seq: u64) -> Vec<Bytes> {
        let now = Utc::now();
        let id = self.event_id(seq);
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let views: Vec<String> = self
            .registry
            .iter()
            .filter_map(|job| serde_json::to_string(&state.job_view(job, now)).ok())
            .collect();
        let last = views.len().saturating_sub(1);
        views
            .iter()
            .enumerate()
            .map(|(i, data)| frame((i == last).then_some(id.as_str()), "job", data))
            .collect()
    }

    /// Opens a stream: the events after `last_event_id` when this server still has them,
    /// else a fresh snapshot of every job; then every change as it is published, and a
    /// heartbeat comment when idle.
    pub fn subscribe(
        self: &Arc<Self>,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, StreamRefused> {
        if self.closing.is_cancelled() {
            return Err(StreamRefused::Closing);
        }
        let max = self.settings.max_streams;
        self.streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| StreamRefused::Full { max })?;
        let slot = StreamSlot(Arc::clone(self));
        let mut pending: VecDeque<Bytes> = VecDeque::new();
        pending.push_back(Bytes::from_static(b"retry: 2000\n\n"));
        // Subscribing under the log's lock: every event is either in the replay below or
        // received later, never both and never neither.
        let (receiver, replay, seq) = {
            let log = self.events.lock().unwrap_or_else(|e| e.into_inner());
            let receiver = self.sender.subscribe();
            let replay = last_event_id.and_then(|id| self.replay_after(&log, id));
            (receiver, replay, log.last_seq)
        };
        match replay {
            Some(events) => pending.extend(events),
            // A change published meanwhile shows in both the snapshot and the stream: a
            // repeated `job` event is harmless, a missing one would not be.
            None => pending.extend(self.snapshot(seq)),
        }
        let heartbeat = self.settings.heartbeat;
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Subscription {
            view: Arc::clone(self),
            pending,
            receiver,
            heartbeat: ticker,
            probe: self.probe.subscribe(),
            _slot: slot,
        })
    }

    /// Has every open stream send a heartbeat now. A client that went away without closing
    /// its connection cleanly is only noticed when a write to it fails (the second one after
    /// it left, as a rule), which idle streams do once per heartbeat; called twice, a short
    /// moment apart, this frees such a stream's place at once.
    pub fn probe_streams(&self) {
        self.probe.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The frames after `id`, when `id` is one of this process's and still kept.
    fn replay_after(&self, log: &EventLog, id: &str) -> Option<Vec<Bytes>> {
        let (instance, seq) = id.trim().split_once('.')?;
        let seq: u64 = seq.parse().ok()?;
        if instance != self.instance || seq > log.last_seq {
            return None;
        }
        let oldest_kept = log.recent.front().map_or(log.last_seq + 1, |e| e.seq);
        if seq + 1 < oldest_kept {
            return None;
        }
        Some(
            log.recent
                .iter()
                .filter(|e| e.seq > seq)
                .map(|e| e.frame.clone())
                .collect(),
        )
    }

    /// Ends every open stream cleanly and refuses new ones: the first step of shutdown.
    pub fn close_streams(&self) {
        self.closing.cancel();
    }
}

impl ViewState {
    /// A job as `GET /jobs` shows it: its latest execution, backlog and pause state.
    fn job_view(&self, job: &jobs_core::RegisteredJob, now: chrono::DateTime<Utc>) -> JobView {
        JobView::new(job, self.latest.get(job.name()), now)
            .with_control(self.controls.get(job.name()))
    }
}

enum Outgoing {
    Execution(ExecutionRecord),
    Job(String),
}

fn refresh_status_body(state: &mut ViewState) {
    let body = Data {
        data: state
            .latest
            .values()
            .map(ExecutionStatus::from)
            .collect::<Vec<_>>(),
    };
    state.status_body = serde_json::to_vec(&body)
        .map(Bytes::from)
        .unwrap_or_default();
}

/// One SSE event, with an id or without (a client then keeps the id it had). `data` is
/// single-line JSON, so one `data:` line holds it.
fn frame(id: Option<&str>, kind: &str, data: &str) -> Bytes {
    Bytes::from(match id {
        Some(id) => format!("id: {id}\nevent: {kind}\ndata: {data}\n\n"),
        None => format!("event: {kind}\ndata: {data}\n\n"),
    })
}

/// An idle stream's keep-alive, also written on demand ([`LiveView::probe_streams`]).
const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// Holds one of the `EVENTS_MAX_STREAMS` places while its stream is open.
struct StreamSlot(Arc<LiveView>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An open stream's source of bytes.
pub struct Subscription {
    view: Arc<LiveView>,
    pending: VecDeque<Bytes>,
    receiver: broadcast::Receiver<Arc<Event>>,
    heartbeat: tokio::time::Interval,
    probe: tokio::sync::watch::Receiver<u64>,
    _slot: StreamSlot,
}

impl Subscription {
    /// The next bytes to send; `None` ends the stream (the server is shutting down).
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some(chunk);
            }
            tokio::select! {
                biased;
                _ = self.view.closing.cancelled() => return None,
                received = self.receiver.recv() => match received {
                    Ok(event) => return Some(event.frame.clone()),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow to follow: the current state replaces what was missed.
                        let seq = self.view.events.lock().unwrap_or_else(|e| e.into_inner()).last_seq;
                        self.receiver = self.receiver.resubscribe();
                        self.pending.extend(self.view.snapshot(seq));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(HEARTBEAT)),
                Ok(()) = self.probe.changed() => return Some(Bytes::from_static(HEARTBEAT)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn record(id: i64, job: &str, status: Status, minute: u32) -> ExecutionRecord {
        ExecutionRecord {
            id,
            job_name: job.to_owned(),
            status,
            started_at: Utc.with_ymd_and_hms(2026, 11, 30, 2, minute, 0).unwrap(),
            completed_at: None,
            duration_ms: None,
            stats: serde_json::json!({}),
            error_message: None,
            scheduled_for: None,
            trigger: "manual".to_owned(),
            attempt: 1,
            worker_id: None,
            dry_run: false,
            requested_by: None,
        }
    }

    fn view(max_streams: usize) -> Arc<LiveView> {
        LiveView::new(
            Arc::new(Registry::new()),
            LiveSettings {
                max_streams,
                ..LiveSettings::default()
            },
        )
    }

    fn control(job: &str, paused: bool, version: i64) -> JobControl {
        JobControl {
            job_name: job.to_owned(),
            paused,
            paused_at: None,
            paused_by: paused.then(|| "admin".to_owned()),
            pause_reason: None,
            version,
        }
    }

    fn held(view: &LiveView, job: &str) -> Option<JobControl> {
        let state = view.state.read().unwrap();
        state.controls.get(job).cloned()
    }

    #[test]
    fn an_older_read_of_a_jobs_switches_never_replaces_a_newer_one() {
        let view = view(4);
        // This server resumed (version 3); a notification's re-read taken before that
        // write, and a full re-read taken before it, arrive afterwards.
        view.apply_control(control("a", false, 3));
        view.replace_job("a", None, Some(control("a", true, 2)));
        assert_eq!(held(&view, "a"), Some(control("a", false, 3)));
        view.replace_all(
            Vec::new(),
            vec![control("a", true, 2), control("b", true, 1)],
        );
        assert_eq!(held(&view, "a"), Some(control("a", false, 3)));
        assert_eq!(held(&view, "b"), Some(control("b", true, 1)));
        // This server's own write arriving after a newer notification is dropped.
        view.replace_job("a", None, Some(control("a", true, 4)));
        view.apply_control(control("a", false, 3));
        assert_eq!(held(&view, "a"), Some(control("a", true, 4)));
        // A newer read replaces it.
        view.replace_all(Vec::new(), vec![control("a", false, 5)]);
        assert_eq!(held(&view, "a"), Some(control("a", false, 5)));
    }

    #[test]
    fn a_newer_start_or_the_same_row_replaces_the_latest_and_an_older_one_does_not() {
        let current = record(5, "a", Status::Running, 10);
        assert!(replaces_latest(None, &current));
        assert!(replaces_latest(
            Some(&current),
            &record(5, "a", Status::Success, 10)
        ));
        assert!(replaces_latest(
            Some(&current),
            &record(6, "a", Status::Running, 11)
        ));
        assert!(!replaces_latest(
            Some(&current),
            &record(4, "a", Status::Failed, 9)
        ));
        // Same start: the higher id wins, as in the SQL.
        assert!(replaces_latest(
            Some(&current),
            &record(7, "a", Status::Running, 10)
        ));
        // A skipped slot never does, not even a newer one, as in the SQL.
        assert!(!replaces_latest(
            Some(&current),
            &record(8, "a", Status::Skipped, 12)
        ));
        assert!(!replaces_latest(None, &record(8, "a", Status::Skipped, 12)));
    }

    #[test]
    fn the_status_body_follows_changes_and_ignores_older_rows() {
        let view = view(1);
        assert!(view.status_body().is_none());
        view.replace_all(vec![record(5, "a", Status::Running, 10)], Vec::new());
        let body: serde_json::Value = serde_json::from_slice(&view.status_body().unwrap()).unwrap();
        assert_eq!(body["data"][0]["status"], "running");
        view.apply_executions(vec![record(3, "a", Status::Failed, 5)]);
        view.apply_executions(vec![record(5, "a", Status::Success, 10)]);
        let body: serde_json::Value = serde_json::from_slice(&view.status_body().unwrap()).unwrap();
        assert_eq!(body["data"][0]["status"], "success");
        view.replace_all(Vec::new(), Vec::new());
        assert_eq!(
            view.status_body().unwrap(),
            Bytes::from_static(br#"{"data":[]}"#)
        );
    }

    #[tokio::test]
    async fn streams_beyond_the_limit_are_refused_and_a_closed_one_frees_its_place() {
        let view = view(1);
        view.replace_all(Vec::new(), Vec::new());
        let first = view.subscribe(None).unwrap();
        assert_eq!(
            view.subscribe(None).err(),
            Some(StreamRefused::Full { max: 1 })
        );
        drop(first);
        assert!(view.subscribe(None).is_ok());
    }

    #[tokio::test]
    async fn last_event_id_replays_what_followed_and_an_unknown_one_gets_a_snapshot() {
        let view = view(4);
        view.replace_all(Vec::new(), Vec::new());
        view.apply_executions(vec![record(1, "a", Status::Running, 1)]);
        let id = view.event_id(view.events.lock().unwrap().last_seq);
        view.apply_executions(vec![record(1, "a", Status::Success, 1)]);
        let mut resumed = view.subscribe(Some(&id)).unwrap();
        assert_eq!(
            resumed.next_chunk().await.unwrap(),
            Bytes::from_static(b"retry: 2000\n\n")
        );
        let next = String::from_utf8(resumed.next_chunk().await.unwrap().to_vec()).unwrap();
        assert!(
            next.contains("event: execution") && next.contains("\"success\""),
            "{next}"
        );
        // The registry is empty, so a snapshot is nothing but the retry line.
        let mut fresh = view.subscribe(Some("other.3")).unwrap();
        fresh.next_chunk().await.unwrap();
        assert!(fresh.pending.is_empty());
        view.close_streams();
        assert_eq!(resumed.next_chunk().await, None);
        assert_eq!(view.subscribe(None).err(), Some(StreamRefused::Closing));
    }
}
