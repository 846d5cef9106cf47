//! The change feed: keeps a [`LiveView`] current.
//!
//! - **Listening** (the normal mode): a dedicated session runs `LISTEN job_events`
//!   (`DATABASE_LISTEN_URL`, else `DATABASE_URL`). Each notification names a row; the feed
//!   re-reads the rows named by everything that has arrived (one query per burst) and
//!   applies them. Before it trusts a new session it sends a probe notification through
//!   the pool and waits for it to come back: through a transaction-mode pooler `LISTEN`
//!   seems to work but nothing ever arrives, and the probe says so.
//! - **After every (re)connection**, and every `LIVE_RESYNC_SECS`, the feed re-reads the
//!   tables in full, so a notification sent while it was not listening never leaves the
//!   view stale; the periodic re-read also pings the session, finding one that died
//!   silently.
//! - **Polling**: with `DATABASE_LISTEN_URL=off`, or while no working listener can be had
//!   (reconnecting with backoff, 0.2 s doubling to 30 s), the tables are read every second.
//!
//! Every mode change is logged once, with the `[Live]` prefix.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use db::listen::{Change, Listener, CHANNEL};
use db::{ConnectTarget, DbError, Pool};
use log::{debug, info, warn};
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;

use crate::{LiveView, POLL_INTERVAL};

/// First wait before reconnecting a lost listener; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How long a probe notification may take to come back.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the listener's session may take to answer a ping.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Most notifications folded into one re-read.
const MAX_BURST: usize = 1_000;

/// Reads the whole view again from the tables.
pub async fn resync(view: &LiveView, pool: &Pool) -> Result<(), DbError> {
    let mut conn = pool.get().await?;
    let latest = db::executions::latest_per_job(&mut conn).await?;
    let controls = db::controls::all(&mut conn).await?;
    view.replace_all(latest, controls);
    Ok(())
}

/// Applies a burst of notifications: one re-read of the executions they name, one of each
/// job they name.
pub async fn apply(view: &LiveView, pool: &Pool, changes: &[Change]) -> Result<(), DbError> {
    let mut ids = BTreeSet::new();
    let mut jobs = BTreeSet::new();
    for change in changes {
        match change {
            Change::Execution { id, .. } => {
                ids.insert(*id);
            }
            Change::Job { job_name } => {
                jobs.insert(job_name.clone());
            }
            _ => {}
        }
    }
    if ids.is_empty() && jobs.is_empty() {
        return Ok(());
    }
    let mut conn = pool.get().await?;
    if !ids.is_empty() {
        let ids: Vec<i64> = ids.into_iter().collect();
        let records = db::executions::by_ids(&mut conn, &ids).await?;
        view.apply_executions(records);
    }
    for job in jobs {
        let latest = db::executions::latest_of_job(&mut conn, &job).await?;
        let control = db::controls::get(&mut conn, &job).await?;
        view.replace_job(&job, latest, control);
    }
    Ok(())
}

/// Keeps `view` current until `stop` is cancelled.
pub struct Feed {
    view: Arc<LiveView>,
    pool: Pool,
    /// `None`: `DATABASE_LISTEN_URL=off`, or unset with `DATABASE_URL` leading to a
    /// transaction-mode pooler (`pooled`).
    listen: Option<ConnectTarget>,
    pooled: bool,
}

enum Ended {
    Stopped,
    Lost(String),
}

#[derive(Debug, thiserror::Error)]
enum ListenFailure {
    #[error("{0}")]
    Db(#[from] DbError),
    #[error(
        "a probe notification sent through DATABASE_URL did not come back within {}s; \
         is the listener's address a transaction-mode pooler? Set DATABASE_LISTEN_URL to \
         a direct or session-mode address of the same database",
        PROBE_TIMEOUT.as_secs()
    )]
    NotDelivered,
    #[error("the session ended during the probe")]
    Lost,
}

impl Feed {
    /// A feed for `view`, reading through `pool` and listening on `listen`; `pooled` says
    /// that `listen` is `None` because `DATABASE_URL` leads to a transaction-mode pooler.
    pub fn new(
        view: Arc<LiveView>,
        pool: Pool,
        listen: Option<ConnectTarget>,
        pooled: bool,
    ) -> Self {
        Self {
            view,
            pool,
            listen,
            pooled,
        }
    }

    /// Runs until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        // The first load, before anything else: the API waits for it.
        tokio::select! {
            _ = stop.cancelled() => return,
            loaded = resync(&self.view, &self.pool) => if let Err(e) = loaded {
                warn!("[Live] the first read of the jobs' state failed: {e}; retrying");
            }
        }
        let Some(target) = self.listen.clone() else {
            info!(
                "[Live] {}: polling the tables every {}s for changes",
                if self.pooled {
                    "DATABASE_URL leads to a transaction-mode pooler, where LISTEN cannot work, \
                     and DATABASE_LISTEN_URL is unset"
                } else {
                    "DATABASE_LISTEN_URL=off"
                },
                POLL_INTERVAL.as_secs()
            );
            self.poll(None, &stop, &mut false).await;
            return;
        };
        let address = target.address();
        let mut retry = FIRST_RETRY;
        // An outage is logged once, when it begins (not at each try), and its end once.
        let mut failing = false;
        let mut behind = false;
        loop {
            match self.connect(&target).await {
                Ok(listener) => {
                    failing = false;
                    behind = false;
                    info!(
                        "[Live] listening for changes on {address} (LISTEN {CHANNEL}, session {}); \
                         full re-read every {}s",
                        listener.backend_pid(),
                        self.view.settings.resync.as_secs()
                    );
                    retry = FIRST_RETRY;
                    match self.listen(listener, &stop).await {
                        Ended::Stopped => return,
                        Ended::Lost(why) => warn!(
                            "[Live] lost the listener's session on {address} ({why}); \
                             polling the tables every {}s while reconnecting",
                            POLL_INTERVAL.as_secs()
                        ),
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    warn!(
                        "[Live] cannot listen on {address}: {e}; polling the tables every {}s \
                         and trying again (with backoff up to {}s) until it works",
                        POLL_INTERVAL.as_secs(),
                        MAX_RETRY.as_secs()
                    );
                }
                Err(e) => debug!(
                    "[Live] still cannot listen on {address}: {e}; next try in {:.1}s",
                    retry.as_secs_f64()
                ),
            }
            if self.poll(Some(retry), &stop, &mut behind).await {
                return;
            }
            retry = (retry * 2).min(MAX_RETRY);
        }
    }

    /// A listening session that has shown it receives notifications, then a full re-read.
    async fn connect(&self, target: &ConnectTarget) -> Result<Listener, ListenFailure> {
        let mut listener = target.listen(CHANNEL).await?;
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        {
            let mut conn = self.pool.get().await.map_err(DbError::from)?;
            db::listen::send(&mut conn, &Change::probe_payload(&nonce)).await?;
        }
        let deadline = Instant::now() + PROBE_TIMEOUT;
        let mut early = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, listener.recv()).await {
                Err(_) => return Err(ListenFailure::NotDelivered),
                Ok(None) => return Err(ListenFailure::Lost),
                Ok(Some(payload)) => match Change::parse(&payload) {
                    Some(Change::Probe { nonce: n }) if n == nonce => break,
                    Some(change) => early.push(change),
                    None => {}
                },
            }
        }
        // Listening since before this read: nothing written from now on can be missed.
        resync(&self.view, &self.pool).await?;
        apply(&self.view, &self.pool, &early).await?;
        Ok(listener)
    }

    async fn listen(&self, mut listener: Listener, stop: &CancellationToken) -> Ended {
        let period = self.view.settings.resync;
        let mut full = tokio::time::interval_at(Instant::now() + period, period);
        full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A re-read failed: try again every second until one succeeds.
        let mut behind = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ended::Stopped,
                payload = listener.recv() => {
                    let Some(payload) = payload else {
                        return Ended::Lost("the session ended".into());
                    };
                    let mut changes: Vec<Change> = Change::parse(&payload).into_iter().collect();
                    while changes.len() < MAX_BURST {
                        match listener.try_recv() {
                            Some(p) => changes.extend(Change::parse(&p)),
                            None => break,
                        }
                    }
                    if let Err(e) = apply(&self.view, &self.pool, &changes).await {
                        if !behind {
                            warn!("[Live] re-reading changed rows failed: {e}; retrying every second");
                        }
                        behind = true;
                    }
                }
                _ = full.tick() => {
                    match timeout(PING_TIMEOUT, listener.ping()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Ended::Lost(e.to_string()),
                        Err(_) => return Ended::Lost(format!("no answer to a ping in {}s", PING_TIMEOUT.as_secs())),
                    }
                    behind = self.catch_up(behind).await;
                }
                _ = sleep(POLL_INTERVAL), if behind => {
                    behind = self.catch_up(behind).await;
                }
            }
        }
    }

    /// A full re-read; returns whether the view is still behind.
    async fn catch_up(&self, behind: bool) -> bool {
        match resync(&self.view, &self.pool).await {
            Ok(()) => {
                if behind {
                    info!("[Live] caught up with the tables");
                }
                false
            }
            Err(e) => {
                if !behind {
                    warn!("[Live] re-reading the tables failed: {e}; retrying every second");
                }
                true
            }
        }
    }

    /// Reads the tables every second, for `limit` or until stopped; returns true when
    /// stopped.
    /// `behind` is kept across calls, so that an outage is logged once, not once a call.
    async fn poll(
        &self,
        limit: Option<Duration>,
        stop: &CancellationToken,
        behind: &mut bool,
    ) -> bool {
        let until = limit.map(|l| Instant::now() + l);
        loop {
            if until.is_some_and(|until| Instant::now() >= until) {
                return false;
            }
            *behind = match resync(&self.view, &self.pool).await {
                Ok(()) => {
                    if *behind {
                        info!("[Live] reading the tables works again");
                    }
                    false
                }
                Err(e) => {
                    if !*behind {
                        warn!("[Live] reading the tables failed: {e}; retrying every second");
                    }
                    true
                }
            };
            let wait = until.map_or(POLL_INTERVAL, |until| {
                POLL_INTERVAL.min(until.saturating_duration_since(Instant::now()))
            });
            tokio::select! {
                _ = stop.cancelled() => return true,
                _ = sleep(wait) => {}
            }
        }
    }
}
