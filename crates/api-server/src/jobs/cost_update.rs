//! `cost_update`: stores each transcription's real cost from the Deepgram Management API.
//!
//! Each run walks the transcriptions that have a `stt_provider_request_id`, no
//! `audio_cost_usd` and were not given up on, in keyset-paginated batches by id (memory
//! stays flat whatever the backlog). It asks Deepgram for each request record
//! (`GET /v1/projects/{project}/requests/{request}`) with bounded concurrency, without
//! pausing between batches, and a writer running alongside stores each batch of results:
//! the prices in one statement guarded by `audio_cost_usd IS NULL`, the reasons for the
//! other rows in another. Three SQL round trips per batch, none per row. The loop is the
//! shared batch pipeline ([`jobs_core::pipeline`]) with a row as its unit: a rejected key
//! aborts (the batch in progress is not written), the error streak halts at once (the
//! lookups in flight are dropped, what is done is written).
//!
//! Per-row lookups rather than the list endpoint: a `GET` answers exactly the id asked,
//! for any age up to Deepgram's 90-day retention, in whichever project; listing needs a
//! project and a time window per call and pages through every request in it, including
//! the many that are already priced, and a missing record cannot be told from one
//! outside the window. At the default concurrency the gets are bounded by latency, not
//! by the database.
//!
//! The project of a request id is the part before its first dot
//! (`<project_id>.<request_id>`); for a bare id it is `DEEPGRAM_PROJECT_ID`, or else each
//! project the key can see (listed once per run; a 404 in one moves on to the next, and the
//! project that answered is tried first for the following ids).
//!
//! Tunables: [`CostUpdateSettings`], read in `config/jobs.rs`; the variables
//! (`COST_UPDATE_*`, `DEEPGRAM_*`) are in the table of [`crate::config`].

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bigdecimal::{BigDecimal, RoundingMode};
use db::cost::{CostCheck, FoundCost, PendingCost};
use deepgram_client::{Client, ClientConfig, CostState, Error as DeepgramError, RequestRecord};
use jobs_core::pipeline::{self, Control, End, Halt, Page, Pipeline, Streak, Totals};
use jobs_core::{async_trait, Job, JobContext, JobError, Stats};
use log::{info, warn};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::config::{Config, ConfigError};

/// Default `COST_UPDATE_CONCURRENCY`: the client's own default.
pub const DEFAULT_CONCURRENCY: usize = deepgram_client::DEFAULT_MAX_CONCURRENCY;
/// Default `COST_UPDATE_BATCH_SIZE`.
pub const DEFAULT_BATCH_SIZE: i64 = 500;
/// Default `COST_UPDATE_MAX_CHECKS`.
pub const DEFAULT_MAX_CHECKS: i32 = 5;
/// Default `COST_UPDATE_MAX_PENDING_CHECKS`: a month of nightly runs.
pub const DEFAULT_MAX_PENDING_CHECKS: i32 = 30;
/// Default `COST_UPDATE_MAX_CONSECUTIVE_ERRORS`.
pub const DEFAULT_MAX_CONSECUTIVE_ERRORS: u32 = 50;
/// Default `DEEPGRAM_REQUEST_TIMEOUT_SECS`.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = deepgram_client::DEFAULT_REQUEST_TIMEOUT.as_secs();
/// Default `DEEPGRAM_MAX_ATTEMPTS`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = deepgram_client::DEFAULT_MAX_ATTEMPTS;
/// Default `DEEPGRAM_BACKOFF_MS`.
pub const DEFAULT_BACKOFF_MS: u64 = deepgram_client::DEFAULT_BASE_BACKOFF.as_millis() as u64;

/// `audio_cost_usd` is `NUMERIC(12,6)`: six decimals, and below one million.
const COST_SCALE: i64 = 6;
const COST_LIMIT_USD: i64 = 1_000_000;
/// Longest number text accepted as a price (a JSON float prints in at most ~25).
const MAX_COST_TEXT: usize = 64;
/// Longest reason stored in `cost_error`.
const MAX_REASON_CHARS: usize = 500;
/// Longest piece of a request id quoted in a reason.
const MAX_QUOTED_ID_CHARS: usize = 80;

/// The counters of a run. `considered = updated + would_update + unchanged + skipped +
/// failed + pending`.
mod keys {
    /// Cost stored on the row.
    pub const UPDATED: &str = "updated";
    /// A price was found but the row already had a cost when the write came.
    pub const UNCHANGED: &str = "unchanged";
    /// No usable request id, or no project holds the request.
    pub const SKIPPED: &str = "skipped";
    /// Deepgram or its answer failed, or the request has no price.
    pub const FAILED: &str = "failed";
    /// Deepgram is still processing the request; asked again next run.
    pub const PENDING: &str = "pending";
    /// Rows given up on by this run (also counted in skipped, failed or pending).
    pub const GAVE_UP: &str = "gave_up";
    /// A dry run's `updated`: a price found that a real run would store.
    pub const WOULD_UPDATE: &str = "would_update";
    /// A dry run's `gave_up`.
    pub const WOULD_GIVE_UP: &str = "would_give_up";
    /// Rows looked at by this run.
    pub const CONSIDERED: &str = "considered";
    /// Deepgram lookups allowed in flight right now: `COST_UPDATE_CONCURRENCY`, lowered
    /// for the whole job while Deepgram answers 429 or 503 (not a row counter).
    pub const CONCURRENCY_LIMIT: &str = "concurrency_limit";
    pub const ALL: [&str; 10] = [
        UPDATED,
        UNCHANGED,
        SKIPPED,
        FAILED,
        PENDING,
        GAVE_UP,
        WOULD_UPDATE,
        WOULD_GIVE_UP,
        CONSIDERED,
        CONCURRENCY_LIMIT,
    ];
}

/// The job's tunables, read from the environment; see the module docs for the table.
#[derive(Debug, Clone, PartialEq)]
pub struct CostUpdateSettings {
    /// `COST_UPDATE_CONCURRENCY`: lookups in flight (also the client's own limit).
    pub concurrency: usize,
    /// `COST_UPDATE_BATCH_SIZE`: rows per select and per write.
    pub batch_size: i64,
    /// `COST_UPDATE_MAX_CHECKS`: runs with a definite answer but no price before giving up.
    pub max_checks: i32,
    /// `COST_UPDATE_MAX_PENDING_CHECKS`: the limit when the latest answer was "pending".
    pub max_pending_checks: i32,
    /// `COST_UPDATE_MAX_CONSECUTIVE_ERRORS`: lookups failing in a row that fail the run.
    pub max_consecutive_errors: u32,
    /// `DEEPGRAM_REQUESTS_PER_SECOND`: optional cap on request starts per second.
    pub requests_per_second: Option<f64>,
    /// `DEEPGRAM_REQUEST_TIMEOUT_SECS`: one HTTP attempt, body included.
    pub request_timeout: Duration,
    /// `DEEPGRAM_MAX_ATTEMPTS`: attempts per lookup on 429, 5xx and network errors.
    pub max_attempts: u32,
    /// `DEEPGRAM_BACKOFF_MS`: base of the exponential backoff with full jitter.
    pub backoff: Duration,
}

impl Default for CostUpdateSettings {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            batch_size: DEFAULT_BATCH_SIZE,
            max_checks: DEFAULT_MAX_CHECKS,
            max_pending_checks: DEFAULT_MAX_PENDING_CHECKS,
            max_consecutive_errors: DEFAULT_MAX_CONSECUTIVE_ERRORS,
            requests_per_second: None,
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: Duration::from_millis(DEFAULT_BACKOFF_MS),
        }
    }
}

impl CostUpdateSettings {
    /// The Deepgram client's tunables: its concurrency limit matches the job's.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::default()
            .with_max_concurrency(self.concurrency)
            .with_requests_per_second(self.requests_per_second)
            .with_request_timeout(self.request_timeout)
            .with_max_attempts(self.max_attempts)
            .with_base_backoff(self.backoff)
    }
}

/// The nightly cost update; see the module docs.
pub struct CostUpdateJob {
    pool: db::Pool,
    settings: CostUpdateSettings,
    /// `None` when `DEEPGRAM_API_KEY` is unset (the job is then disabled).
    client: Option<Client>,
    /// `DEEPGRAM_PROJECT_ID`, checked to be a UUID.
    project_id: Option<String>,
}

impl std::fmt::Debug for CostUpdateJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CostUpdateJob")
            .field("settings", &self.settings)
            .field("client", &self.client)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

impl CostUpdateJob {
    /// Builds the job from the configuration. Without `DEEPGRAM_API_KEY` the job is built
    /// but disabled; bad tunables, a `DEEPGRAM_PROJECT_ID` that is not a UUID or an unusable
    /// `DEEPGRAM_API_URL` are errors naming the variable.
    pub fn from_config(config: &Config, pool: db::Pool) -> Result<Self, ConfigError> {
        let settings = CostUpdateSettings::from_vars(&config.vars)?;
        let project_id = match config.deepgram.project_id.as_deref().map(str::trim) {
            Some(id) if !is_uuid(id) => {
                return Err(ConfigError::new(
                    "DEEPGRAM_PROJECT_ID",
                    format!("must be a Deepgram project id (a UUID), got {}", quote(id)),
                ))
            }
            other => other.map(str::to_owned),
        };
        let url = &config.deepgram.api_url;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::new(
                "DEEPGRAM_API_URL",
                "must not have a query or a fragment",
            ));
        }
        let client = match &config.deepgram.api_key {
            None => None,
            Some(key) => Some(
                Client::with_config(url.as_str(), key.clone(), settings.client_config())
                    // The client's errors never contain the key.
                    .map_err(|e| ConfigError::new("DEEPGRAM_API_KEY", e.to_string()))?,
            ),
        };
        Ok(Self {
            pool,
            settings,
            client,
            project_id,
        })
    }

    /// The tunables in use.
    pub fn settings(&self) -> &CostUpdateSettings {
        &self.settings
    }
}

#[async_trait]
impl Job for CostUpdateJob {
    fn name(&self) -> &str {
        "cost_update"
    }
    fn display_name(&self) -> &str {
        "Cost Update"
    }
    fn default_schedule(&self) -> &str {
        "0 3 * * *"
    }
    fn disabled_reason(&self) -> Option<String> {
        self.client
            .is_none()
            .then(|| "DEEPGRAM_API_KEY is not set".to_owned())
    }
    fn summary_keys(&self) -> &[&'static str] {
        &["updated", "unchanged", "skipped", "failed"]
    }
    /// A dry run asks Deepgram as usual and counts what it would store (`would_update`)
    /// and give up on (`would_give_up`), but writes nothing to the database.
    fn supports_dry_run(&self) -> bool {
        true
    }

    async fn backlog(&self) -> Result<Option<jobs_core::Backlog>, JobError> {
        self.measure_backlog().await.map(Some)
    }

    async fn run(&self, ctx: &JobContext) -> Result<Stats, JobError> {
        let Some(client) = &self.client else {
            return Err(JobError::new(
                "cost_update is disabled: DEEPGRAM_API_KEY is not set",
            ));
        };
        // A new run starts at full concurrency: whatever slowed the last one down was
        // hours ago.
        client.concurrency_limit().reset();
        // A dry run writes nothing: only what hides rows matters to it.
        let writes = if ctx.dry_run {
            &[][..]
        } else {
            db::cost::WRITTEN_COLUMNS
        };
        super::check_transcriptions_access(&self.pool, writes).await?;
        let pricing = Pricing {
            job: self,
            lookups: Lookups::new(client, self.project_id.clone()),
            dry_run: ctx.dry_run,
        };
        // Lookups and writes overlap: `concurrency` lookups stay in flight across page
        // boundaries while the previous batch of results is stored.
        let settings = pipeline::Settings {
            concurrency: self.settings.concurrency,
            batch: pricing.batch_size(),
            writers: 1,
        };
        let totals = Totals::new(Stats::with_keys(&keys::ALL), 1);
        let report = pipeline::run(&pricing, ctx, settings, totals).await;
        let totals = report.totals;
        log_summary(&totals, ctx.dry_run);
        let reason = match report.end {
            End::Done => return Ok(totals.stats),
            End::Cancelled => Stop::Cancelled,
            End::Halted(stop) => stop,
        };
        Err(JobError::new(reason.to_string()).with_stats(totals.stats))
    }
}

/// Why a run stopped before the backlog was done.
#[derive(Debug, thiserror::Error)]
enum Stop {
    /// The pipeline ended as cancelled (timeout, shutdown, an operator's cancel).
    #[error("cancelled before the backlog was done; the remaining rows are left for the next run")]
    Cancelled,
    #[error("reading the rows to price failed: {0}")]
    Read(db::DbError),
    #[error("storing the results failed: {0}")]
    Write(db::DbError),
    /// A rejected key, or Deepgram failing every lookup.
    #[error("{0}")]
    Deepgram(String),
}

/// A run's counters, and per reason the rows and the first one as an example.
type CostTotals = Totals<Reason, (Uuid, String)>;

/// One run: the rows to price, one Deepgram lookup per row, one write per batch.
struct Pricing<'a> {
    job: &'a CostUpdateJob,
    lookups: Lookups<'a>,
    dry_run: bool,
}

impl Pricing<'_> {
    fn batch_size(&self) -> usize {
        usize::try_from(self.job.settings.batch_size).unwrap_or(usize::MAX)
    }
}

#[async_trait]
impl Pipeline for Pricing<'_> {
    type Cursor = Uuid;
    type Item = PendingCost;
    type Done = (PendingCost, Outcome);
    type Reason = Reason;
    type Example = (Uuid, String);
    type Error = Stop;

    /// The pending rows after `after`, keyset by id.
    async fn fetch(&self, after: Option<Uuid>) -> Result<Page<PendingCost, Uuid>, Stop> {
        let mut conn = self
            .job
            .pool
            .get()
            .await
            .map_err(|e| Stop::Read(e.into()))?;
        let rows = db::cost::pending_batch(&mut conn, after, self.job.settings.batch_size)
            .await
            .map_err(Stop::Read)?;
        Ok(Page::keyset(rows, self.batch_size(), |row| row.id))
    }

    /// Looks the row up; a rejected key stops the run at once, without writing the
    /// batch in progress.
    async fn process(
        &self,
        row: PendingCost,
        _: &Control<Stop>,
    ) -> Result<(PendingCost, Outcome), Halt<Stop>> {
        match self.lookups.check(&row).await {
            Ok(outcome) => Ok((row, outcome)),
            Err(Abort(reason)) => Err(Halt::Abort(Stop::Deepgram(reason))),
        }
    }

    /// Writes one batch's results (unless dry run) and counts them: one statement for
    /// the prices, one for the rest.
    async fn write(
        &self,
        results: Vec<(PendingCost, Outcome)>,
        totals: &mut CostTotals,
        _: &Control<Stop>,
    ) -> Result<(), Stop> {
        let settings = &self.job.settings;
        let mut priced = Vec::new();
        let mut checks = Vec::new();
        let mut tallies = Vec::new();
        for (row, outcome) in results {
            totals.stats.incr(keys::CONSIDERED);
            match outcome {
                Outcome::Priced(cost) => priced.push(FoundCost {
                    id: row.id,
                    // Priced rows were looked up, so their request id was loaded.
                    request_id: row.request_id.clone().unwrap_or_default(),
                    cost,
                }),
                Outcome::Unpriced { reason, detail } => {
                    totals.stats.incr(reason.stat());
                    let (counted, give_up) = match reason.limit(settings) {
                        Limit::Now => (true, true),
                        Limit::After(max) => (true, row.check_count.saturating_add(1) >= max),
                        Limit::Never => (false, false),
                    };
                    let error = shorten(&detail, MAX_REASON_CHARS);
                    tallies.push((reason, (row.id, error.clone())));
                    checks.push(CostCheck {
                        id: row.id,
                        request_id: row.request_id.clone(),
                        status: reason.code().to_owned(),
                        error: Some(error),
                        counted,
                        give_up,
                    });
                }
            }
        }
        if self.dry_run {
            totals.stats.add(keys::WOULD_UPDATE, count(priced.len()));
            totals.stats.add(
                keys::WOULD_GIVE_UP,
                count(checks.iter().filter(|c| c.give_up).count()),
            );
        } else {
            let mut conn = self
                .job
                .pool
                .get()
                .await
                .map_err(|e| Stop::Write(e.into()))?;
            let updated = db::cost::store_costs(&mut conn, &priced)
                .await
                .map_err(Stop::Write)?;
            totals.stats.add(keys::UPDATED, count(updated.len()));
            totals
                .stats
                .add(keys::UNCHANGED, count(priced.len() - updated.len()));
            let recorded = db::cost::record_checks(&mut conn, &checks)
                .await
                .map_err(Stop::Write)?;
            totals.stats.add(keys::GAVE_UP, count(recorded.gave_up));
        }
        for (reason, example) in tallies {
            totals.reasons.add(reason, 1, Some(example));
        }
        Ok(())
    }

    /// 429, 5xx, network errors and 403 in a row grow the streak; a price or a definite
    /// answer ends it; a row's own bad id does neither.
    fn streak(&self, (_, outcome): &(PendingCost, Outcome)) -> Streak {
        match outcome {
            Outcome::Priced(_) => Streak::Reset,
            Outcome::Unpriced { reason, .. } => match reason {
                // Nothing was asked, so nothing was learnt about Deepgram.
                Reason::NoRequestId
                | Reason::MalformedRequestId
                | Reason::NoProject
                | Reason::ProjectRefused
                | Reason::ProjectNotFound => Streak::Keep,
                Reason::Forbidden | Reason::Unavailable => Streak::Fail,
                _ => Streak::Reset,
            },
        }
    }

    /// After `COST_UPDATE_MAX_CONSECUTIVE_ERRORS` failures in a row the run stops: the
    /// lookups in flight are dropped, what is done is written.
    fn streak_broken(
        &self,
        in_a_row: u32,
        (_, last): &(PendingCost, Outcome),
    ) -> Option<Halt<Stop>> {
        if in_a_row < self.job.settings.max_consecutive_errors {
            return None;
        }
        let last = match last {
            Outcome::Unpriced { detail, .. } => shorten(detail, 300),
            Outcome::Priced(_) => String::new(),
        };
        Some(Halt::Now(Stop::Deepgram(format!(
            "{in_a_row} Deepgram lookups in a row failed (429, 5xx, network or 403; \
             last: {last}); stopped, the remaining rows are left for the next run"
        ))))
    }

    fn concurrency_limit(&self) -> Option<usize> {
        Some(self.lookups.client.concurrency_limit().current())
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One line per outcome kind, e.g. `skipped 12 rows: 7 no request id (e.g. …), 5
/// malformed request id (e.g. …)`, instead of one line per row.
fn log_summary(totals: &CostTotals, dry_run: bool) {
    let prefix = if dry_run { "[dry run] " } else { "" };
    for stat in [keys::SKIPPED, keys::FAILED, keys::PENDING] {
        let parts: Vec<String> = totals
            .reasons
            .iter()
            .filter(|(reason, _)| reason.stat() == stat)
            .filter_map(|(reason, count)| {
                let (id, detail) = count.examples.first()?;
                Some(format!(
                    "{} {} (e.g. transcription {id}: {})",
                    count.items,
                    reason.label(),
                    shorten(detail, 200)
                ))
            })
            .collect();
        if parts.is_empty() {
            continue;
        }
        let line = format!(
            "{prefix}cost_update {stat} {} rows: {}",
            totals.stats.get(stat),
            parts.join(", ")
        );
        if stat == keys::FAILED {
            warn!("{line}");
        } else {
            info!("{line}");
        }
    }
    if dry_run {
        let would = totals.stats.get(keys::WOULD_UPDATE);
        let give_up = totals.stats.get(keys::WOULD_GIVE_UP);
        info!(
            "{prefix}cost_update would store {would} costs and give up on {give_up} rows; \
             nothing was written"
        );
    }
    let gave_up = totals.stats.get(keys::GAVE_UP);
    if gave_up > 0 {
        info!(
            "cost_update gave up on {gave_up} rows that cannot be priced \
             (see transcriptions.cost_status and cost_error; clear cost_gave_up_at to retry)"
        );
    }
    let unchanged = totals.stats.get(keys::UNCHANGED);
    if unchanged > 0 {
        info!("cost_update left {unchanged} rows unchanged: they were priced meanwhile by someone else");
    }
}

/// Why a row got no cost this run. The order is the order of the summary log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reason {
    /// `stt_provider_request_id` is empty or blank.
    NoRequestId,
    /// Not `<project>.<request>` nor a bare request UUID.
    MalformedRequestId,
    /// 404 from the named project, or from every candidate project.
    NotFound,
    /// A bare id, no `DEEPGRAM_PROJECT_ID`, and the key sees no project.
    NoProject,
    /// `response` is null or `{}`: Deepgram is still processing.
    Pending,
    /// `details` without `usd`: no price visible to this key.
    NoPrice,
    /// The transcription request itself failed: there is no cost.
    RequestFailed,
    /// `usd` unreadable, negative or too large for `NUMERIC(12,6)`.
    InvalidPrice,
    /// The record of another request, or of another project, than the one asked for.
    BadAnswer,
    /// Another 4xx answer (400, 405…).
    Rejected,
    /// 403: the key may not read this project.
    Forbidden,
    /// The project answered 403 earlier in the run; not asked again.
    ProjectRefused,
    /// 404 `PROJECT_NOT_FOUND`: the project (from the id, `DEEPGRAM_PROJECT_ID` or the
    /// list) is not the key's; asked once per run.
    ProjectNotFound,
    /// 429, 5xx or network failure after every attempt, or an answer that is not
    /// Deepgram's (HTML, a redirect, a proxy, an empty, non-JSON, oddly shaped or
    /// oversized body).
    Unavailable,
}

/// When a reason leads to giving up on the row.
enum Limit {
    /// At once: the row's own data can never be priced.
    Now,
    /// When the row's check count reaches this.
    After(i32),
    /// Never: not the row's fault (outage, permissions, configuration).
    Never,
}

impl Reason {
    /// The value stored in `cost_status`.
    fn code(self) -> &'static str {
        match self {
            Self::NoRequestId => "no_request_id",
            Self::MalformedRequestId => "malformed_request_id",
            Self::NotFound => "not_found",
            Self::NoProject => "no_project",
            Self::Pending => "pending",
            Self::NoPrice => "no_price",
            Self::RequestFailed => "request_failed",
            Self::InvalidPrice => "invalid_price",
            Self::BadAnswer => "bad_answer",
            Self::Rejected => "rejected",
            Self::Forbidden | Self::ProjectRefused => "forbidden",
            Self::ProjectNotFound => "project_not_found",
            Self::Unavailable => "unavailable",
        }
    }

    /// Words for the summary log.
    fn label(self) -> &'static str {
        match self {
            Self::NoRequestId => "no request id",
            Self::MalformedRequestId => "malformed request id",
            Self::NotFound => "not found at Deepgram",
            Self::NoProject => "no project to look in",
            Self::Pending => "still processing",
            Self::NoPrice => "no price for this key",
            Self::RequestFailed => "original request failed",
            Self::InvalidPrice => "unusable price",
            Self::BadAnswer => "malformed answer",
            Self::Rejected => "request rejected",
            Self::Forbidden | Self::ProjectRefused => "access refused",
            Self::ProjectNotFound => "project unknown to Deepgram",
            Self::Unavailable => "Deepgram unavailable",
        }
    }

    /// The contract counter the row adds to.
    fn stat(self) -> &'static str {
        match self {
            Self::NoRequestId | Self::MalformedRequestId | Self::NotFound | Self::NoProject => {
                keys::SKIPPED
            }
            Self::Pending => keys::PENDING,
            Self::NoPrice
            | Self::RequestFailed
            | Self::InvalidPrice
            | Self::BadAnswer
            | Self::Rejected
            | Self::Forbidden
            | Self::ProjectRefused
            | Self::ProjectNotFound
            | Self::Unavailable => keys::FAILED,
        }
    }

    fn limit(self, settings: &CostUpdateSettings) -> Limit {
        match self {
            Self::NoRequestId | Self::MalformedRequestId => Limit::Now,
            Self::Pending => Limit::After(settings.max_pending_checks),
            Self::NotFound
            | Self::NoPrice
            | Self::RequestFailed
            | Self::InvalidPrice
            | Self::BadAnswer
            | Self::Rejected => Limit::After(settings.max_checks),
            Self::NoProject
            | Self::Forbidden
            | Self::ProjectRefused
            | Self::ProjectNotFound
            | Self::Unavailable => Limit::Never,
        }
    }
}

/// What a lookup found out about one row.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// The cost, rounded to the column's six decimals and checked to fit.
    Priced(BigDecimal),
    /// No cost this run, and why.
    Unpriced { reason: Reason, detail: String },
}

impl Outcome {
    fn unpriced(reason: Reason, detail: impl Into<String>) -> Self {
        Self::Unpriced {
            reason,
            detail: detail.into(),
        }
    }
}

/// The whole run must stop (the key was rejected); the message says why.
#[derive(Debug, Clone, PartialEq)]
struct Abort(String);

/// Where a bare request id is looked up.
enum Projects {
    /// `DEEPGRAM_PROJECT_ID`.
    Configured(Vec<String>),
    /// The projects the key can see, listed on first need, once per run.
    Listed(OnceCell<Result<Vec<String>, DeepgramError>>),
}

/// One run's Deepgram side: the client, the candidate projects for bare ids, and which of
/// them answered last (tried first next time, so that a key with several projects does
/// not pay one 404 per row).
struct Lookups<'a> {
    client: &'a Client,
    projects: Projects,
    preferred: AtomicUsize,
    /// Projects that refused the key (403, or 401 `INSUFFICIENT_PERMISSIONS`) or that
    /// Deepgram does not know (404 `PROJECT_NOT_FOUND`) in this run: their other rows are
    /// not asked about again (and do not grow the error streak), so that one such project
    /// does not stop the run before the other projects' rows are reached.
    troubled: std::sync::Mutex<std::collections::HashMap<String, Trouble>>,
}

/// Why a project is not asked again in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// The key may not read it.
    Refused,
    /// Deepgram does not know it: every request in it would get the same answer.
    Unknown,
}

impl<'a> Lookups<'a> {
    fn new(client: &'a Client, project_id: Option<String>) -> Self {
        Self {
            client,
            projects: match project_id {
                Some(id) => Projects::Configured(vec![id]),
                None => Projects::Listed(OnceCell::new()),
            },
            preferred: AtomicUsize::new(0),
            troubled: std::sync::Mutex::default(),
        }
    }

    fn trouble(&self, project: &str) -> Option<Trouble> {
        self.troubled
            .lock()
            .ok()
            .and_then(|troubled| troubled.get(project).copied())
    }

    /// Remembers the project's trouble; `true` the first time in this run (only that
    /// answer says something new: lookups already in flight for it get the same one).
    fn mark(&self, project: &str, trouble: Trouble) -> bool {
        self.troubled
            .lock()
            .map(|mut troubled| troubled.insert(project.to_owned(), trouble).is_none())
            .unwrap_or(true)
    }

    /// The outcome of a row whose project the key may not read, after the first.
    fn refused(project: &str) -> Outcome {
        Outcome::unpriced(
            Reason::ProjectRefused,
            format!(
                "Deepgram refused the API key access to project {} earlier in this run; \
                 not asked again",
                quote(project)
            ),
        )
    }

    /// The outcome of a row whose project Deepgram does not know, naming what to fix;
    /// warned about once per project and run.
    fn unknown_project(&self, project: &str, source: ProjectSource) -> Outcome {
        let detail = match source {
            ProjectSource::RequestId => format!(
                "Deepgram does not know project {} (404 PROJECT_NOT_FOUND), the part before the \
                 dot of stt_provider_request_id: it is not a project of DEEPGRAM_API_KEY's \
                 account; check the key, or the stored id",
                quote(project)
            ),
            ProjectSource::Configured => format!(
                "Deepgram does not know DEEPGRAM_PROJECT_ID {} (404 PROJECT_NOT_FOUND): set it \
                 to a project of DEEPGRAM_API_KEY's account, or unset it to use every project \
                 the key can see",
                quote(project)
            ),
            ProjectSource::Listed => format!(
                "Deepgram does not know project {} (404 PROJECT_NOT_FOUND), although it lists it \
                 among the API key's projects",
                quote(project)
            ),
        };
        if self.mark(project, Trouble::Unknown) {
            warn!("cost_update: {detail}; its rows are not asked about again in this run");
        }
        Outcome::unpriced(Reason::ProjectNotFound, detail)
    }

    /// The outcome for one row; `Err` only when the whole run must stop.
    async fn check(&self, row: &PendingCost) -> Result<Outcome, Abort> {
        match parse_request_id(row) {
            Err(outcome) => Ok(outcome),
            Ok(RequestRef::Composed { project, request }) => {
                match self.trouble(project) {
                    Some(Trouble::Refused) => return Ok(Self::refused(project)),
                    Some(Trouble::Unknown) => {
                        return Ok(self.unknown_project(project, ProjectSource::RequestId))
                    }
                    None => {}
                }
                match self.client.get_request(project, request).await {
                    Ok(record) => Ok(record_outcome(&record, project, request)),
                    Err(e @ DeepgramError::Forbidden { .. }) => {
                        // Only the project's first refusal counts towards the error streak.
                        if self.mark(project, Trouble::Refused) {
                            error_outcome(&e, "")
                        } else {
                            Ok(Outcome::unpriced(Reason::ProjectRefused, e.to_string()))
                        }
                    }
                    Err(DeepgramError::ProjectNotFound { .. }) => {
                        Ok(self.unknown_project(project, ProjectSource::RequestId))
                    }
                    Err(e) => error_outcome(&e, ""),
                }
            }
            Ok(RequestRef::Bare(request)) => self.check_bare(request).await,
        }
    }

    async fn check_bare(&self, request: &str) -> Result<Outcome, Abort> {
        let (projects, source, kind) = match &self.projects {
            Projects::Configured(ids) => (
                ids.as_slice(),
                "DEEPGRAM_PROJECT_ID",
                ProjectSource::Configured,
            ),
            Projects::Listed(cell) => match cell.get_or_init(|| self.list_projects()).await {
                Ok(ids) => (
                    ids.as_slice(),
                    "the projects the API key can see",
                    ProjectSource::Listed,
                ),
                Err(e) => return error_outcome(e, "listing the API key's projects: "),
            },
        };
        if projects.is_empty() {
            return Ok(Outcome::unpriced(
                Reason::NoProject,
                "a bare request id, DEEPGRAM_PROJECT_ID is not set and the API key sees no project",
            ));
        }
        let first = self
            .preferred
            .load(Ordering::Relaxed)
            .min(projects.len() - 1);
        let order = std::iter::once(first).chain((0..projects.len()).filter(|i| *i != first));
        // The key may not read a project, or Deepgram does not know it: another one may
        // still hold the request.
        let mut refused = None;
        let mut unknown = None;
        let mut not_found = 0;
        for index in order {
            let project = projects[index].as_str();
            match self.trouble(project) {
                Some(Trouble::Refused) => {
                    refused.get_or_insert_with(|| Ok(Self::refused(project)));
                    continue;
                }
                Some(Trouble::Unknown) => {
                    unknown.get_or_insert_with(|| self.unknown_project(project, kind));
                    continue;
                }
                None => {}
            }
            match self.client.get_request(project, request).await {
                Ok(record) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(record_outcome(&record, project, request));
                }
                Err(DeepgramError::NotFound { .. }) => not_found += 1,
                Err(e @ DeepgramError::Forbidden { .. }) => {
                    refused = Some(if self.mark(project, Trouble::Refused) {
                        error_outcome(&e, "")
                    } else {
                        Ok(Self::refused(project))
                    });
                }
                Err(DeepgramError::ProjectNotFound { .. }) => {
                    unknown = Some(self.unknown_project(project, kind));
                }
                Err(e) => return error_outcome(&e, ""),
            }
        }
        if let Some(outcome) = refused {
            return outcome;
        }
        match unknown {
            // No project that exists was asked: the request may be anywhere.
            Some(outcome) if not_found == 0 => Ok(outcome),
            _ => Ok(Outcome::unpriced(
                Reason::NotFound,
                format!(
                    "not found in {source} ({not_found} project(s)): unknown request, or older than Deepgram's 90-day retention",
                ),
            )),
        }
    }

    async fn list_projects(&self) -> Result<Vec<String>, DeepgramError> {
        let projects = self.client.list_projects().await?;
        let listed = projects.len();
        let ids: Vec<String> = projects
            .into_iter()
            .map(|p| p.project_id.trim().to_owned())
            .filter(|id| is_uuid(id))
            .collect();
        if ids.len() < listed {
            warn!(
                "cost_update: ignoring {} listed Deepgram project(s) whose id is not a UUID",
                listed - ids.len()
            );
        }
        info!(
            "cost_update: bare request ids are looked up in the {} project(s) the API key can see",
            ids.len()
        );
        Ok(ids)
    }
}

/// Where the project of a lookup came from, to say what to fix when Deepgram does not
/// know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProjectSource {
    /// The part before the dot of `<project>.<request>`.
    RequestId,
    /// `DEEPGRAM_PROJECT_ID`.
    Configured,
    /// `GET /v1/projects`.
    Listed,
}

/// A request id split into what to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestRef<'a> {
    /// `<project>.<request>`: Deepgram's UUIDs, or the replaced system's own ids such as
    /// `abc123def456.7890xyz`, looked up as they are (the client percent-encodes each part).
    Composed { project: &'a str, request: &'a str },
    /// A bare request UUID.
    Bare(&'a str),
}

/// Reads `stt_provider_request_id` (surrounding whitespace ignored). With one dot it is
/// `<project>.<request>`: both parts non-empty and without whitespace or control
/// characters, whatever their form (UUIDs, or the ids the replaced system stored). Without
/// a dot it must be a request UUID, looked up in the configured or visible projects.
fn parse_request_id(row: &PendingCost) -> Result<RequestRef<'_>, Outcome> {
    let Some(raw) = row.request_id.as_deref() else {
        return Err(Outcome::unpriced(
            Reason::MalformedRequestId,
            format!(
                "the request id is {} characters long; a Deepgram request id has at most 73",
                row.request_id_chars
            ),
        ));
    };
    let id = raw.trim();
    if id.is_empty() {
        return Err(Outcome::unpriced(
            Reason::NoRequestId,
            "stt_provider_request_id is empty",
        ));
    }
    match id.split_once('.') {
        Some((project, request)) => {
            let bad_part = [("project", project), ("request", request)]
                .into_iter()
                .find(|(_, part)| !is_id_part(part));
            match bad_part {
                Some((which, part)) => Err(Outcome::unpriced(
                    Reason::MalformedRequestId,
                    format!(
                        "the {which} part {} of {} is not an id (empty, a second dot, whitespace or a control character)",
                        quote(part),
                        quote(id)
                    ),
                )),
                None => Ok(RequestRef::Composed { project, request }),
            }
        }
        None if is_uuid(id) => Ok(RequestRef::Bare(id)),
        None => Err(Outcome::unpriced(
            Reason::MalformedRequestId,
            format!(
                "{} is neither a request UUID nor <project>.<request>",
                quote(id)
            ),
        )),
    }
}

/// One part of `<project>.<request>`: non-empty, no dot, no whitespace or control
/// character. Anything else (`/`, `?`, `%`, non-ASCII) is percent-encoded in the URL.
fn is_id_part(part: &str) -> bool {
    !part.is_empty()
        && !part
            .chars()
            .any(|c| c == '.' || c.is_whitespace() || c.is_control())
}

/// A UUID in its usual hyphenated form (any case).
fn is_uuid(text: &str) -> bool {
    text.len() == 36 && Uuid::try_parse(text).is_ok()
}

/// What a request record says about the row. A record of another request, or of the
/// same request id in another project, is refused: its price is not this row's.
fn record_outcome(record: &RequestRecord, project: &str, asked: &str) -> Outcome {
    if !record.request_id.trim().eq_ignore_ascii_case(asked) {
        return Outcome::unpriced(
            Reason::BadAnswer,
            format!(
                "Deepgram answered with the record of another request ({})",
                quote(&record.request_id)
            ),
        );
    }
    if let Some(answered) = &record.project_uuid {
        if !answered.trim().eq_ignore_ascii_case(project) {
            return Outcome::unpriced(
                Reason::BadAnswer,
                format!(
                    "Deepgram answered with the record of a request in another project ({}, asked {})",
                    quote(answered),
                    quote(project)
                ),
            );
        }
    }
    match record.cost_state() {
        CostState::Priced(usd) => match parse_cost(&usd) {
            Ok(cost) => Outcome::Priced(cost),
            Err(why) => Outcome::unpriced(Reason::InvalidPrice, why),
        },
        CostState::Pending => Outcome::unpriced(
            Reason::Pending,
            "Deepgram has not accounted the request yet (empty response)",
        ),
        CostState::NoPrice => Outcome::unpriced(
            Reason::NoPrice,
            "Deepgram shows no price for this request to this API key (details without usd)",
        ),
        CostState::RequestFailed { code, message } => Outcome::unpriced(
            Reason::RequestFailed,
            format!(
                "the transcription request itself failed ({}{}); it has no cost",
                code.map_or_else(|| "no code".to_owned(), |c| format!("code {c}")),
                message.map(|m| format!(": {m}")).unwrap_or_default()
            ),
        ),
        CostState::InvalidPrice { raw } => Outcome::unpriced(
            Reason::InvalidPrice,
            format!("usd is not a number: {}", shorten(&raw.to_string(), 100)),
        ),
    }
}

/// Turns a client error into the row's outcome, or stops the run on a rejected key.
fn error_outcome(error: &DeepgramError, context: &str) -> Result<Outcome, Abort> {
    let detail = format!("{context}{error}");
    let reason = match error {
        DeepgramError::Unauthorized { code, message } => {
            return Err(Abort(format!(
            "Deepgram rejected DEEPGRAM_API_KEY (401 {}): {message}; check the key and run again",
            code.as_deref().unwrap_or("unauthorized")
        )))
        }
        e if e.is_retryable() => Reason::Unavailable,
        DeepgramError::Forbidden { .. } => Reason::Forbidden,
        DeepgramError::ProjectNotFound { .. } => Reason::ProjectNotFound,
        DeepgramError::NotFound { .. } => Reason::NotFound,
        // JSON of a shape Deepgram never sends (`{}` for a list of projects): whatever
        // answered, it says nothing about the row.
        DeepgramError::Decode { .. } => Reason::Unavailable,
        DeepgramError::Http { .. } => Reason::Rejected,
        DeepgramError::InvalidArgument { .. } => Reason::MalformedRequestId,
        _ => Reason::Unavailable,
    };
    Ok(Outcome::unpriced(reason, detail))
}

/// The price as stored: the exact decimal of the JSON number's text, rounded half-up to
/// six decimals (the column's scale). Refuses negative amounts, positive ones that would
/// round to 0, and anything that would not fit `NUMERIC(12,6)` (one million or more).
fn parse_cost(usd: &serde_json::Number) -> Result<BigDecimal, String> {
    let text = usd.to_string();
    let Some(value) = usd.as_f64().filter(|v| v.is_finite()) else {
        return Err(format!("usd {} is not a finite number", shorten(&text, 40)));
    };
    if value < 0.0 {
        return Err(format!("usd {} is negative", shorten(&text, 40)));
    }
    if value >= COST_LIMIT_USD as f64 || text.len() > MAX_COST_TEXT {
        return Err(format!(
            "usd {} does not fit NUMERIC(12,6) (must be below {COST_LIMIT_USD})",
            shorten(&text, 40)
        ));
    }
    let exact = BigDecimal::from_str(&text)
        .map_err(|e| format!("usd {} is not a decimal number: {e}", shorten(&text, 40)))?;
    let rounded = exact.with_scale_round(COST_SCALE, RoundingMode::HalfUp);
    // 0 is stored only when Deepgram says 0: a positive amount that rounds to nothing
    // would read as "free".
    if rounded == 0 && exact > 0 {
        return Err(format!(
            "usd {} is positive but below 0.0000005, and would be stored as 0 in NUMERIC(12,6)",
            shorten(&text, 40)
        ));
    }
    if rounded >= COST_LIMIT_USD {
        return Err(format!(
            "usd {text} rounds to {rounded}, which does not fit NUMERIC(12,6)"
        ));
    }
    Ok(rounded)
}

/// `text` cut to `max` characters (on a character boundary), ending in `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A piece of stored data quoted for a message: escaped, and cut when long.
fn quote(text: &str) -> String {
    format!("{:?}", shorten(text, MAX_QUOTED_ID_CHARS))
}

/// Rows counted at most by [`Job::backlog`]: past it the backlog reads as "100 000 or
/// more", which keeps the count an index-only scan of at most this many entries.
pub const BACKLOG_CAP: u64 = 100_000;

impl CostUpdateJob {
    /// Transcriptions with a request id and no cost that are not given up on: the rows its next run would pick up, counted up to [`BACKLOG_CAP`].
    async fn measure_backlog(&self) -> Result<jobs_core::Backlog, JobError> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| JobError::new(format!("measuring the backlog: {e}")))?;
        db::monitoring::cost_update_backlog(&mut conn, BACKLOG_CAP)
            .await
            .map_err(|e| JobError::new(format!("measuring the backlog: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "3b1fe4f2-9c3e-4e0a-8f5a-2a54c1d0b7aa";
    const R: &str = "a847f427-4ad5-4d67-9b95-db801e58251c";

    fn row(request_id: &str) -> PendingCost {
        PendingCost {
            id: Uuid::nil(),
            request_id: Some(request_id.to_owned()),
            request_id_chars: i32::try_from(request_id.chars().count()).unwrap_or(i32::MAX),
            check_count: 0,
        }
    }

    fn reason_of(request_id: &str) -> Option<Reason> {
        match parse_request_id(&row(request_id)) {
            Ok(_) => None,
            Err(Outcome::Unpriced { reason, .. }) => Some(reason),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn request_ids_split_at_the_dot_and_old_style_parts_are_kept_as_they_are() {
        let composed = format!("{P}.{R}");
        assert_eq!(
            parse_request_id(&row(&composed)),
            Ok(RequestRef::Composed {
                project: P,
                request: R
            })
        );
        assert_eq!(parse_request_id(&row(R)), Ok(RequestRef::Bare(R)));
        let padded = format!("  {R}\n");
        assert_eq!(parse_request_id(&row(&padded)), Ok(RequestRef::Bare(R)));
        let upper = R.to_uppercase();
        assert_eq!(
            parse_request_id(&row(&upper)),
            Ok(RequestRef::Bare(upper.as_str()))
        );

        // The replaced system's ids: neither part a UUID, looked up as they are.
        assert_eq!(
            parse_request_id(&row("abc123def456.7890xyz")),
            Ok(RequestRef::Composed {
                project: "abc123def456",
                request: "7890xyz"
            })
        );
        let mixed = format!("abc.{R}");
        assert_eq!(
            parse_request_id(&row(&mixed)),
            Ok(RequestRef::Composed {
                project: "abc",
                request: R
            })
        );
        // Characters that mean something in a URL stay in the part (the client encodes
        // them); they never split or move the path.
        assert_eq!(
            parse_request_id(&row("a/b?x.c#d%2F")),
            Ok(RequestRef::Composed {
                project: "a/b?x",
                request: "c#d%2F"
            })
        );

        assert_eq!(reason_of(""), Some(Reason::NoRequestId));
        assert_eq!(reason_of(" \t\n"), Some(Reason::NoRequestId));
        for bad in [
            "abc".to_owned(),
            format!("{P}.{R}.extra"),
            "a..b".to_owned(),
            "a b.c".to_owned(),
            "a.b\tc".to_owned(),
            format!("{P}..{R}"),
            format!(".{R}"),
            format!("{P}."),
            R.replace('-', ""),
            format!("{{{R}}}"),
            format!("urn:uuid:{R}"),
            format!("{P}/{R}"),
            format!("{R}\u{0}"),
            "é".repeat(36),
        ] {
            assert_eq!(reason_of(&bad), Some(Reason::MalformedRequestId), "{bad:?}");
        }
    }

    #[test]
    fn a_request_id_too_long_to_load_is_malformed() {
        let mut long = row("");
        long.request_id = None;
        long.request_id_chars = 5_000;
        let Err(Outcome::Unpriced { reason, detail }) = parse_request_id(&long) else {
            panic!("a too-long id must not parse");
        };
        assert_eq!(reason, Reason::MalformedRequestId);
        assert!(detail.contains("5000 characters"), "{detail}");
    }

    #[test]
    fn malformed_ids_are_quoted_short_and_escaped_in_reasons() {
        let nasty = format!("{}\u{7}.{R}", "x".repeat(10_000));
        let Err(Outcome::Unpriced { detail, .. }) = parse_request_id(&row(&nasty)) else {
            panic!("must be malformed");
        };
        assert!(detail.len() < 400, "{detail}");
        assert!(!detail.contains('\u{7}'));
    }

    fn cost(json: &str) -> Result<BigDecimal, String> {
        let number: serde_json::Number = serde_json::from_str(json).expect("a JSON number");
        parse_cost(&number)
    }

    fn decimal(text: &str) -> Result<BigDecimal, String> {
        Ok(BigDecimal::from_str(text).expect("a decimal"))
    }

    #[test]
    fn costs_are_exact_decimals_rounded_to_the_column_scale() {
        assert_eq!(cost("0.0043"), decimal("0.0043"));
        assert_eq!(cost("0"), decimal("0"));
        assert_eq!(cost("12.5"), decimal("12.5"));
        assert_eq!(cost("0.0000005"), decimal("0.000001"));
        assert_eq!(cost("-0"), decimal("0"));
        assert_eq!(cost("999999.999999"), decimal("999999.999999"));
        // A float the f64 cannot hold exactly is stored as its shortest text, not as its
        // binary expansion (0.1000000000000000055…).
        assert_eq!(cost("0.1"), decimal("0.1"));
        assert_eq!(
            cost("0.1").map(|c| c.to_string()),
            Ok("0.100000".to_owned())
        );
    }

    #[test]
    fn negative_huge_or_unreadable_costs_are_refused() {
        for bad in [
            "-0.01",
            "-1e-9",
            "1000000",
            "1e6",
            "1e300",
            "999999.9999999",
            // Positive, but would be stored as 0.
            "1e-7",
            "0.00000049",
            "0.0000004",
            "5e-324",
        ] {
            assert!(cost(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn record_outcomes_follow_the_documented_states() {
        let record = |response: serde_json::Value| {
            RequestRecord::from_json(serde_json::json!({"request_id": R, "response": response}))
                .expect("record")
        };
        let reason = |o: Outcome| match o {
            Outcome::Unpriced { reason, .. } => Some(reason),
            Outcome::Priced(_) => None,
        };
        assert_eq!(
            record_outcome(
                &record(serde_json::json!({"details": {"usd": 0.0043}})),
                P,
                R
            ),
            Outcome::Priced(BigDecimal::from_str("0.004300").expect("decimal"))
        );
        assert_eq!(
            reason(record_outcome(&record(serde_json::Value::Null), P, R)),
            Some(Reason::Pending)
        );
        assert_eq!(
            reason(record_outcome(&record(serde_json::json!({})), P, R)),
            Some(Reason::Pending)
        );
        assert_eq!(
            reason(record_outcome(
                &record(serde_json::json!({"details": {"duration": 1.0}})),
                P,
                R
            )),
            Some(Reason::NoPrice)
        );
        assert_eq!(
            reason(record_outcome(
                &record(serde_json::json!({"code": 400, "message": "Bad audio"})),
                P,
                R
            )),
            Some(Reason::RequestFailed)
        );
        assert_eq!(
            reason(record_outcome(
                &record(serde_json::json!({"details": {"usd": "abc"}})),
                P,
                R
            )),
            Some(Reason::InvalidPrice)
        );
        assert_eq!(
            reason(record_outcome(
                &record(serde_json::json!({"details": {"usd": -2}})),
                P,
                R
            )),
            Some(Reason::InvalidPrice)
        );
        assert_eq!(
            reason(record_outcome(
                &record(serde_json::json!({"details": {"usd": 1}})),
                P,
                P
            )),
            Some(Reason::BadAnswer)
        );
        let elsewhere = RequestRecord::from_json(serde_json::json!({
            "request_id": R,
            "project_uuid": "8c2d6f1e-5a4b-4c3d-9e8f-7a6b5c4d3e2f",
            "response": {"details": {"usd": 1}}
        }))
        .expect("record");
        assert_eq!(
            reason(record_outcome(&elsewhere, P, R)),
            Some(Reason::BadAnswer)
        );
        let same = RequestRecord::from_json(serde_json::json!({
            "request_id": R,
            "project_uuid": P.to_uppercase(),
            "response": {"details": {"usd": 1}}
        }))
        .expect("record");
        assert_eq!(reason(record_outcome(&same, P, R)), None);
    }

    #[test]
    fn a_rejected_key_stops_the_run_with_a_message_naming_the_variable() {
        let error = DeepgramError::Unauthorized {
            code: Some("INVALID_AUTH".to_owned()),
            message: "Invalid credentials.".to_owned(),
        };
        let Err(Abort(message)) = error_outcome(&error, "") else {
            panic!("401 must abort");
        };
        assert!(
            message.starts_with("Deepgram rejected DEEPGRAM_API_KEY (401 INVALID_AUTH)"),
            "{message}"
        );
        let limited = DeepgramError::RateLimited { retry_after: None };
        assert!(matches!(
            error_outcome(&limited, ""),
            Ok(Outcome::Unpriced {
                reason: Reason::Unavailable,
                ..
            })
        ));
    }
}
