//! `audio_cleanup`: deletes from Supabase Storage the audio of transcriptions older than
//! the retention period, and marks each row whose file is gone.
//!
//! This is the one job that destroys data, so every step leans towards leaving things as
//! they are:
//!
//! - candidates are rows created before `now() - AUDIO_RETENTION_DAYS` by the database's
//!   clock (fixed once per run), with an `audio_file_path` and no `audio_deleted_at`,
//!   read in keyset pages of `(created_at, id)`: memory stays flat for any backlog, and a
//!   row left unmarked is passed over by the cursor rather than read again;
//! - a path is turned into a bucket and object name by
//!   [`storage_supabase::parse_audio_path`], which refuses anything that could name
//!   another object or another project (`..`, backslashes, foreign hosts, API routes); a
//!   refused row is counted as `invalid_path`, never deleted, never marked, and the
//!   reasons are logged once per run;
//!   A URL whose query is not one Storage issues (an unescaped `?` in the name) is refused
//!   too, never cut at the `?`;
//! - the key's rights are known before an empty answer is trusted: Storage enforces
//!   row-level security with the key's role, and a key that may not delete gets `200 []`
//!   from a bulk delete — the very answer for names already gone. A key that says it
//!   cannot delete (a JWT whose role is not `service_role`, a `sb_publishable_…` key) is
//!   refused at start-up as a configuration error; a key whose rights cannot be read
//!   (neither a JWT with a role nor `sb_secret_…`) must delete a probe object it wrote in
//!   each bucket, once per run, before anything there is marked — or the run fails naming
//!   `SUPABASE_SERVICE_ROLE_KEY`;
//! - each bucket is looked at once per run ([`Client::get_bucket`]): Storage answers a bulk
//!   delete in a bucket that does not exist with `200 []`, so "not in the answer" means
//!   "already gone" only for a bucket known to exist. Rows of a missing bucket fail as
//!   `bucket_missing`, no delete is sent for them, and the run ends failed naming the
//!   bucket (a key that may not read `storage.buckets` makes every bucket look missing);
//! - an object that a row *inside* the retention period still points at (the same file
//!   reused by a newer transcription) is not deleted: its old rows are counted as
//!   `still_referenced` and left unmarked. The newer rows are read through the same index
//!   once at the start and then, before each delete, only those added since;
//! - a row is marked only when Storage listed its object as deleted, or left it out of
//!   the answer of a successful call on an existing bucket whose delete rights are known
//!   (`already_absent`), and only if it still has the path it was read with;
//! - a refused key or a wrong `SUPABASE_URL` stops the run at once; Storage failing three
//!   batches in a row stops it too (nothing would succeed); a run that ends with files
//!   Storage failed to delete is recorded as failed so that it is retried and noticed.
//! - Storage's 429 `SlowDown` (and 503) lowers the number of Storage requests in flight
//!   for the whole run (the client's adaptive limit, shown as `concurrency_limit` in the
//!   live stats); a batch fails only after its own retries under that limit.
//!
//! The work runs on the shared batch pipeline ([`jobs_core::pipeline`]) with a batch of
//! `AUDIO_CLEANUP_BATCH_SIZE` rows as its unit: the candidates are read about
//! [`ROWS_PER_READ`] rows (whole batches) at a time while up to
//! `AUDIO_CLEANUP_CONCURRENCY` batches are in flight, each batch sending one bulk delete
//! per bucket (1000 names at most per call), then one `UPDATE` for the rows it
//! confirmed. A fatal answer, a failed mark or the Storage failure streak *drains* the
//! run: nothing more is read or sent, and the batches in flight finish and mark what they
//! confirmed.
//!
//! Stats, one per row considered (rows, not distinct objects: when several rows name the
//! same object, Storage is asked once and every one of them counts):
//!
//! ```text
//! considered = deleted + already_absent + would_delete + still_referenced + failed
//! failed     = invalid_path + bucket_missing + storage_error
//! marked    <= deleted + already_absent
//! ```

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use db::cleanup::{CleanupCandidate, PageCursor};
use jobs_core::pipeline::{self, Control, End, Halt, Page, Pipeline, Streak, Totals};
use jobs_core::{async_trait, Job, JobContext, JobError, Stats};
use log::{info, warn};
use storage_supabase::{
    parse_audio_path, plausible_objects, Client, DeleteOutcome, ObjectRef, PathError,
};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::config::{Config, ConfigError};

/// Rows read per page, and so the most names of one bulk delete per bucket.
pub const DEFAULT_BATCH_SIZE: usize = 1000;
/// Batches in flight at once, and Storage requests in flight at once: the client's own
/// default.
pub const DEFAULT_CONCURRENCY: usize = storage_supabase::DEFAULT_MAX_CONCURRENCY;
/// Time allowed to open a connection to Storage.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = storage_supabase::DEFAULT_CONNECT_TIMEOUT.as_secs();
/// Time allowed for one Storage request, answer included.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = storage_supabase::DEFAULT_REQUEST_TIMEOUT.as_secs();
/// Attempts per Storage request, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = storage_supabase::DEFAULT_MAX_ATTEMPTS;
/// First backoff before retrying a Storage request (doubled per retry, full jitter).
pub const DEFAULT_BACKOFF_MS: u64 = storage_supabase::DEFAULT_BASE_BACKOFF.as_millis() as u64;
/// Cap on one backoff sleep.
pub const DEFAULT_MAX_BACKOFF_MS: u64 = storage_supabase::DEFAULT_MAX_BACKOFF.as_millis() as u64;

/// Consecutive batches in which every Storage call failed (after the client's retries)
/// before the run gives up: past that point nothing would succeed.
const STORAGE_FAILURE_LIMIT: u32 = 3;
/// Rows read by one page query, in whole batches (one batch when a batch is larger).
/// Reading many at once visits each table page fewer times when the index order is not
/// the table's (rows sharing one `created_at`): with 1 000 000 such rows, the reads cost
/// PostgreSQL 6.0 s of CPU 1000 rows at a time and 2.8 s 50 000 at a time
/// (BENCHMARKS.md). Memory: about one and a half reads (see `read_ahead`),
/// a few MiB with short paths, some 45 MiB if every path were a 500-character URL.
pub const ROWS_PER_READ: usize = 50_000;

/// Batches of `batch_size` rows read by one page query.
fn batches_per_read(batch_size: usize) -> usize {
    (ROWS_PER_READ / batch_size.max(1)).max(1)
}
/// Row ids shown per reason in the log summary of unusable paths.
const EXAMPLES_PER_REASON: usize = 3;

/// Stats keys, in the order they are reported.
const STAT_KEYS: [&str; 11] = [
    DELETED,
    FAILED,
    ALREADY_ABSENT,
    WOULD_DELETE,
    STILL_REFERENCED,
    INVALID_PATH,
    BUCKET_MISSING,
    STORAGE_ERROR,
    CONSIDERED,
    MARKED,
    CONCURRENCY_LIMIT,
];
/// Rows whose object a row inside the retention period still points at; not deleted,
/// not marked, not a failure.
const STILL_REFERENCED: &str = "still_referenced";
/// Storage requests allowed in flight right now (not a row counter): the configured
/// concurrency, lowered for the whole run while Storage answers 429 `SlowDown`.
const CONCURRENCY_LIMIT: &str = "concurrency_limit";
/// Where the delete-rights probe object is written, under a fresh name per run.
const PROBE_PREFIX: &str = "background-jobs-probe";
/// Rows whose object Storage confirmed it deleted in this run.
const DELETED: &str = "deleted";
/// Rows whose file was not deleted in this run; they stay unmarked (sum of the three
/// reasons below).
const FAILED: &str = "failed";
/// Rows whose object was not in an existing bucket any more; marked.
const ALREADY_ABSENT: &str = "already_absent";
/// Dry runs: rows whose object would be sent for deletion.
const WOULD_DELETE: &str = "would_delete";
/// Rows whose `audio_file_path` was refused.
const INVALID_PATH: &str = "invalid_path";
/// Rows naming a bucket that does not exist.
const BUCKET_MISSING: &str = "bucket_missing";
/// Rows whose Storage call failed (after retries) or was not sent after a fatal error.
const STORAGE_ERROR: &str = "storage_error";
/// Rows read and handled in this run.
const CONSIDERED: &str = "considered";
/// Rows whose `audio_deleted_at` this run set.
const MARKED: &str = "marked";

/// The job's tunables, read from the environment with [`AudioCleanupSettings::from_vars`]
/// (in `config/jobs.rs`; the variables are in the table of [`crate::config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioCleanupSettings {
    /// `AUDIO_CLEANUP_BATCH_SIZE`.
    pub batch_size: usize,
    /// `AUDIO_CLEANUP_CONCURRENCY`.
    pub concurrency: usize,
    /// `AUDIO_CLEANUP_DRY_RUN`.
    pub dry_run: bool,
    /// `SUPABASE_CONNECT_TIMEOUT_SECS`.
    pub connect_timeout: Duration,
    /// `SUPABASE_REQUEST_TIMEOUT_SECS`.
    pub request_timeout: Duration,
    /// `SUPABASE_MAX_ATTEMPTS`.
    pub max_attempts: u32,
    /// `SUPABASE_BACKOFF_MS`.
    pub base_backoff: Duration,
    /// `SUPABASE_MAX_BACKOFF_MS`.
    pub max_backoff: Duration,
}

impl Default for AudioCleanupSettings {
    fn default() -> Self {
        Self {
            batch_size: DEFAULT_BATCH_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            dry_run: false,
            connect_timeout: Duration::from_secs(DEFAULT_CONNECT_TIMEOUT_SECS),
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_backoff: Duration::from_millis(DEFAULT_BACKOFF_MS),
            max_backoff: Duration::from_millis(DEFAULT_MAX_BACKOFF_MS),
        }
    }
}

/// The nightly audio clean-up.
pub struct AudioCleanupJob {
    pool: db::Pool,
    /// `None` when Supabase is not configured (then `disabled` says why).
    storage: Option<Client>,
    retention_days: i64,
    settings: AudioCleanupSettings,
    disabled: Option<String>,
}

impl std::fmt::Debug for AudioCleanupJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioCleanupJob")
            .field("storage", &self.storage)
            .field("retention_days", &self.retention_days)
            .field("settings", &self.settings)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

impl AudioCleanupJob {
    /// Builds the job from the configuration. Without `SUPABASE_URL` or
    /// `SUPABASE_SERVICE_ROLE_KEY` the job is disabled with that reason; a bad tunable or
    /// an unusable URL or key is an error naming the variable (never showing the key).
    pub fn from_config(config: &Config, pool: db::Pool) -> Result<Self, ConfigError> {
        let settings = AudioCleanupSettings::from_vars(&config.vars)?;
        let (storage, disabled) = match (&config.supabase.url, &config.supabase.service_role_key) {
            (None, _) => (None, Some("SUPABASE_URL is not set".to_owned())),
            (_, None) => (
                None,
                Some("SUPABASE_SERVICE_ROLE_KEY is not set".to_owned()),
            ),
            (Some(url), Some(key)) => {
                let client = Client::builder(url.as_str(), key.clone())
                    .connect_timeout(settings.connect_timeout)
                    .request_timeout(settings.request_timeout)
                    .max_attempts(settings.max_attempts)
                    .base_backoff(settings.base_backoff)
                    .max_backoff(settings.max_backoff)
                    .max_concurrency(settings.concurrency)
                    .build()
                    .map_err(|e| {
                        // The client's errors never contain the key; their variant says
                        // whether the key or the URL is at fault.
                        let variable = match e {
                            storage_supabase::Error::InvalidKey { .. }
                            | storage_supabase::Error::KeyCannotDelete { .. } => {
                                "SUPABASE_SERVICE_ROLE_KEY"
                            }
                            _ => "SUPABASE_URL",
                        };
                        ConfigError::new(variable, e.to_string())
                    })?;
                (Some(client), None)
            }
        };
        Ok(Self {
            pool,
            storage,
            retention_days: config.audio_retention_days,
            settings,
            disabled,
        })
    }

    /// The tunables in effect.
    pub fn settings(&self) -> &AudioCleanupSettings {
        &self.settings
    }
}

#[async_trait]
impl Job for AudioCleanupJob {
    fn name(&self) -> &str {
        "audio_cleanup"
    }
    fn display_name(&self) -> &str {
        "Audio Cleanup"
    }
    fn default_schedule(&self) -> &str {
        "0 2 * * *"
    }
    fn disabled_reason(&self) -> Option<String> {
        self.disabled.clone()
    }
    fn summary_keys(&self) -> &[&'static str] {
        &[DELETED, FAILED]
    }
    fn supports_dry_run(&self) -> bool {
        true
    }

    fn always_dry_run(&self) -> bool {
        self.settings.dry_run
    }

    async fn backlog(&self) -> Result<Option<jobs_core::Backlog>, JobError> {
        self.measure_backlog().await.map(Some)
    }

    async fn run(&self, ctx: &JobContext) -> Result<Stats, JobError> {
        let Some(storage) = &self.storage else {
            let reason = self
                .disabled
                .as_deref()
                .unwrap_or("Supabase is not configured");
            return Err(JobError::new(format!(
                "audio_cleanup is disabled: {reason}"
            )));
        };
        // A new run starts at full concurrency: whatever slowed the last one down was
        // hours ago.
        storage.concurrency_limit().reset();
        // A dry run writes nothing: only what hides rows matters to it.
        let writes: &[&str] = if ctx.dry_run || self.settings.dry_run {
            &[]
        } else {
            &["audio_deleted_at"]
        };
        super::check_transcriptions_access(&self.pool, writes).await?;
        let window = retention_window(&self.pool, self.retention_days)
            .await
            .map_err(JobError::new)?;
        let run = Run {
            pool: &self.pool,
            storage,
            batch_size: self.settings.batch_size,
            dry_run: ctx.dry_run || self.settings.dry_run,
            buckets: Mutex::new(HashMap::new()),
            references: References::default(),
            probe_name: format!("{PROBE_PREFIX}/{}.txt", Uuid::new_v4()),
            cutoff: window.cutoff,
            started: (window.now, std::time::Instant::now()),
        };
        run.execute(ctx, self.settings.concurrency).await
    }
}

/// What Storage said about a bucket; cached for the run. Failures to find out are not
/// cached: the next batch asks again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BucketState {
    Exists,
    Missing,
}

/// A bucket's state, or the fatal error Storage answered when asked.
type BucketAnswer = Result<BucketState, storage_supabase::Error>;

/// The fewest rows a page of the newer rows' look reads.
const REFERENCE_PAGE_ROWS: usize = 1000;

/// How far back each read of the newer rows starts again: longer than any transaction
/// of the application that inserts a transcription.
const REFERENCE_LOOKBACK: chrono::Duration = chrono::Duration::seconds(30);

/// The objects that rows inside the retention period point at, as hashes of bucket and
/// name (8 bytes a row; a collision only keeps an object that could have gone). Read
/// once, then extended before each delete with the rows added since (and the last
/// [`REFERENCE_LOOKBACK`] again).
struct References {
    /// Set once the first read, of the whole window, is done.
    first: OnceCell<()>,
    known: Mutex<Known>,
    /// Places for the reads after the first.
    readers: tokio::sync::Semaphore,
}

/// Reads of newer rows at once, after the first: with a batch's look taking a few round
/// trips and batches arriving every few times that, two rarely keep one waiting.
const READERS: usize = 2;

impl Default for References {
    fn default() -> Self {
        Self {
            first: OnceCell::new(),
            known: Mutex::default(),
            readers: tokio::sync::Semaphore::new(READERS),
        }
    }
}

impl References {
    /// Whether a finished read started at or after `arrived`, and so saw every row
    /// committed before it.
    fn covers(&self, arrived: std::time::Instant) -> bool {
        self.lock()
            .read_started
            .is_some_and(|started| started >= arrived)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the finished reads of newer rows came to.
#[derive(Default)]
struct Known {
    /// Where the next read of the recent window starts; `None` before the first.
    after: Option<PageCursor>,
    /// The last row read that is dated after the window (a future `created_at`, from an
    /// application server with a wrong clock): such rows are read once, not at each read.
    future_after: Option<PageCursor>,
    objects: HashSet<u64>,
    /// When the latest-starting finished read started; `None` before the first.
    read_started: Option<std::time::Instant>,
}

/// One finished read of newer rows.
struct Read {
    started: std::time::Instant,
    after: Option<PageCursor>,
    future_after: Option<PageCursor>,
    objects: Vec<u64>,
}

impl Known {
    /// Adds a read. Reads run side by side, so each cursor keeps the further of its own
    /// and the read's: each read saw everything up to its own.
    fn add(&mut self, read: Read) {
        self.after = later(self.after, read.after);
        self.future_after = later(self.future_after, read.future_after);
        self.objects.extend(read.objects);
        self.read_started = self.read_started.max(Some(read.started));
    }
}

/// The further of two cursors, in the window's `(created_at, id)` order.
fn later(a: Option<PageCursor>, b: Option<PageCursor>) -> Option<PageCursor> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if (b.created_at, b.id) > (a.created_at, a.id) {
            b
        } else {
            a
        }),
        (a, b) => a.or(b),
    }
}

/// Adds every object `rows` could mean.
fn ingest(objects: &mut Vec<u64>, rows: &[CleanupCandidate]) {
    // Every object a newer row could mean is kept, even when its path is one this job
    // would refuse to delete by: a guess may only ever keep a file.
    for row in rows {
        for object in plausible_objects(&row.audio_file_path) {
            objects.push(object_key(&object));
        }
    }
}

fn object_key(object: &ObjectRef) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    object.hash(&mut hasher);
    hasher.finish()
}

/// One run's shared state.
struct Run<'a> {
    pool: &'a db::Pool,
    storage: &'a Client,
    batch_size: usize,
    dry_run: bool,
    buckets: Mutex<HashMap<String, Arc<OnceCell<BucketAnswer>>>>,
    references: References,
    /// The object written and deleted to prove the key's delete rights in a bucket.
    probe_name: String,
    /// The run's retention cutoff.
    cutoff: DateTime<Utc>,
    /// The database's clock at the start, with the instant it was read: the database's
    /// time now is `started.0 + started.1.elapsed()`, with no second query.
    started: (DateTime<Utc>, std::time::Instant),
}

/// Why rows stay unmarked, for the summary log: unusable paths (with a few row ids) and
/// buckets that do not exist.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Trouble {
    InvalidPath(&'static str),
    MissingBucket(String),
}

/// The run's counters, troubles and last Storage error.
type CleanupTotals = Totals<Trouble, Uuid>;

/// What one bucket, one batch (or the whole run, once merged) came to.
#[derive(Debug)]
struct Outcome {
    /// Counters, troubles, and the last Storage error as `last_error`.
    totals: CleanupTotals,
    /// A Storage call got an answer.
    storage_ok: bool,
    /// A Storage call failed after the client's retries.
    storage_failed: bool,
    /// Why the run must stop now.
    fatal: Option<String>,
}

impl Default for Outcome {
    fn default() -> Self {
        Self {
            totals: Totals::new(Stats::with_keys(&STAT_KEYS), EXAMPLES_PER_REASON),
            storage_ok: false,
            storage_failed: false,
            fatal: None,
        }
    }
}

impl Outcome {
    fn count(&mut self, key: &str, rows: usize) {
        debug_assert!(key != CONCURRENCY_LIMIT);
        let rows = i64::try_from(rows).unwrap_or(i64::MAX);
        self.totals.stats.add(key, rows);
        if matches!(key, INVALID_PATH | BUCKET_MISSING | STORAGE_ERROR) {
            self.totals.stats.add(FAILED, rows);
        }
    }

    fn invalid_path(&mut self, id: Uuid, error: &PathError) {
        self.count(INVALID_PATH, 1);
        self.totals
            .reasons
            .add(Trouble::InvalidPath(reason_label(error)), 1, Some(id));
    }

    /// A row whose URL has a query and whose object was not found under the name before
    /// the `?`: the object may be named with the query, so the row is not marked.
    fn unproven_absence(&mut self, id: Option<Uuid>) {
        self.count(INVALID_PATH, 1);
        self.totals.reasons.add(
            Trouble::InvalidPath(
                "a URL with a query whose object was not found under the name before the '?' \
                 (the name may go on after it)",
            ),
            1,
            id,
        );
    }

    fn missing_bucket(&mut self, bucket: String, rows: usize) {
        self.count(BUCKET_MISSING, rows);
        self.totals
            .reasons
            .add(Trouble::MissingBucket(bucket), rows, None);
    }

    /// Rows whose Storage call failed with `error`.
    fn storage_failure(&mut self, rows: usize, error: &storage_supabase::Error) {
        self.count(STORAGE_ERROR, rows);
        self.storage_failed = true;
        self.totals.last_error = Some(error.to_string());
        if self.fatal.is_none() {
            self.fatal = fatal_reason(error);
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.totals.merge(other.totals);
        self.storage_ok |= other.storage_ok;
        self.storage_failed |= other.storage_failed;
        if self.fatal.is_none() {
            self.fatal = other.fatal;
        }
    }

    /// Asks the run to stop when this outcome is fatal; the batches in flight finish.
    fn halt_if_fatal(&self, control: &Control<String>) {
        if let Some(reason) = &self.fatal {
            control.halt(Halt::Drain(reason.clone()));
        }
    }
}

/// The errors after which no Storage call of this run can succeed.
fn fatal_reason(error: &storage_supabase::Error) -> Option<String> {
    if error.is_auth_error() {
        return Some(format!(
            "Supabase Storage rejected SUPABASE_SERVICE_ROLE_KEY ({error})"
        ));
    }
    if let storage_supabase::Error::RightsNotProven { .. } = error {
        return Some(format!(
            "SUPABASE_SERVICE_ROLE_KEY may not be able to delete objects, so an empty answer \
             cannot be read as \"already gone\" and nothing was marked there: {error}; use the \
             service-role key (a JWT with role service_role, or a sb_secret_… key)"
        ));
    }
    if matches!(error, storage_supabase::Error::UnknownRoute { .. }) {
        return Some(format!(
            "SUPABASE_URL does not point at Supabase Storage ({error})"
        ));
    }
    None
}

/// A short, stable name for why a path was refused, for the per-run summary.
fn reason_label(error: &PathError) -> &'static str {
    match error {
        PathError::Empty => "empty",
        PathError::LeadingSlash => "leading slash",
        PathError::MissingObject => "no object name",
        PathError::EmptySegment => "empty segment",
        PathError::DotSegment => "dot segment",
        PathError::Backslash => "backslash",
        PathError::ControlCharacter => "control character",
        PathError::InvalidPercentEncoding => "bad percent-encoding",
        PathError::NameTooLong { .. } => "name too long",
        PathError::InvalidBucket { .. } => "invalid bucket name",
        PathError::InvalidUrl => "invalid URL",
        PathError::ForeignOrigin { .. } => "foreign host",
        PathError::NotStorageObjectUrl { .. } => "not a Storage object URL",
        PathError::UnexpectedQuery { .. } => "query Storage does not issue",
        _ => "other",
    }
}

fn db_error(action: &str, error: impl std::fmt::Display) -> String {
    format!("database error while {action}: {error}")
}

/// The rows of one batch that name objects of one bucket: object name → row indices.
type BucketGroup = HashMap<String, Vec<usize>>;

/// One page of candidates once processed: what it came to, and the rows to mark.
struct Batch {
    outcome: Outcome,
    rows: Vec<CleanupCandidate>,
    confirmed: Vec<usize>,
}

/// Reads the database's `now()` and `now() - retention` once per run.
async fn retention_window(
    pool: &db::Pool,
    retention_days: i64,
) -> Result<db::cleanup::RetentionWindow, String> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| db_error("connecting", db::DbError::from(e)))?;
    db::cleanup::retention_window(&mut conn, retention_days)
        .await
        .map_err(|e| db_error("reading the retention cutoff", e))
}

/// What a bulk delete asks before it is sent again: the look at newer rows, taken again.
/// A look that fails withholds every name, and keeps its error for the batch.
struct LookAgain<'r, 'a> {
    run: &'r Run<'a>,
    error: Mutex<Option<String>>,
}

impl storage_supabase::Recheck for LookAgain<'_, '_> {
    fn withhold<'b>(
        &'b self,
        bucket: &'b str,
        names: &'b [String],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = HashSet<String>> + Send + 'b>> {
        Box::pin(async move {
            if let Err(error) = self.run.look(std::time::Instant::now()).await {
                *self.error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
                return names.iter().cloned().collect();
            }
            let references = self.run.references.lock();
            names
                .iter()
                .filter(|name| {
                    references.objects.contains(&object_key(&ObjectRef {
                        bucket: bucket.to_owned(),
                        name: (*name).clone(),
                    }))
                })
                .cloned()
                .collect()
        })
    }
}

/// A page is a batch: one bulk delete per bucket, one `UPDATE` for the rows it confirmed.
#[async_trait]
impl Pipeline for Run<'_> {
    type Cursor = PageCursor;
    type Item = Vec<CleanupCandidate>;
    type Done = Batch;
    type Reason = Trouble;
    type Example = Uuid;
    type Error = String;

    async fn fetch(
        &self,
        after: Option<PageCursor>,
    ) -> Result<Page<Vec<CleanupCandidate>, PageCursor>, String> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| db_error("connecting", db::DbError::from(e)))?;
        let read = self
            .batch_size
            .saturating_mul(batches_per_read(self.batch_size));
        let limit = i64::try_from(read).unwrap_or(i64::MAX);
        let rows = db::cleanup::candidates_page(&mut conn, self.cutoff, after, limit)
            .await
            .map_err(|e| db_error("reading transcriptions", e))?;
        Ok(Page::keyset(rows, read, CleanupCandidate::cursor).chunks(self.batch_size))
    }

    async fn process(
        &self,
        rows: Vec<CleanupCandidate>,
        control: &Control<String>,
    ) -> Result<Batch, Halt<String>> {
        let (outcome, confirmed) = self.clean(&rows, control).await;
        outcome.halt_if_fatal(control);
        Ok(Batch {
            outcome,
            rows,
            confirmed,
        })
    }

    /// Marks the rows whose files are gone. A failure stops the run; the batches in
    /// flight still finish and mark theirs.
    async fn write(
        &self,
        batches: Vec<Batch>,
        totals: &mut CleanupTotals,
        control: &Control<String>,
    ) -> Result<(), String> {
        for mut batch in batches {
            if !batch.confirmed.is_empty() && !self.dry_run {
                match self.mark(&batch.rows, &batch.confirmed).await {
                    Ok(marked) => batch.outcome.count(MARKED, marked),
                    Err(e) => {
                        warn!(
                            "[Job] audio_cleanup: {} rows whose files are gone could not be marked; \
                             the next run finds them already absent and marks them: {e}",
                            batch.confirmed.len()
                        );
                        control.halt(Halt::Drain(e));
                    }
                }
            }
            totals.merge(batch.outcome.totals);
        }
        Ok(())
    }

    /// A batch in which every Storage call failed grows the streak; one that got an
    /// answer ends it.
    fn streak(&self, batch: &Batch) -> Streak {
        if batch.outcome.storage_ok {
            Streak::Reset
        } else if batch.outcome.storage_failed {
            Streak::Fail
        } else {
            Streak::Keep
        }
    }

    fn streak_broken(&self, in_a_row: u32, last: &Batch) -> Option<Halt<String>> {
        (in_a_row >= STORAGE_FAILURE_LIMIT).then(|| {
            Halt::Drain(format!(
                "Supabase Storage failed {in_a_row} batches in a row ({}); stopped early",
                last.outcome
                    .totals
                    .last_error
                    .as_deref()
                    .unwrap_or("unknown error")
            ))
        })
    }

    fn concurrency_limit(&self) -> Option<usize> {
        Some(self.storage.concurrency_limit().current())
    }

    /// A read of [`ROWS_PER_READ`] rows takes a while on a large table: the next one
    /// starts while half of the last one is still waiting, so Storage is never left idle.
    fn read_ahead(&self) -> usize {
        batches_per_read(self.batch_size) / 2
    }
}

impl Run<'_> {
    async fn execute(&self, ctx: &JobContext, concurrency: usize) -> Result<Stats, JobError> {
        // Up to `concurrency` pages are processed at once while the next one is read, and
        // as many marked (each batch's `UPDATE` is independent of the others').
        let settings = pipeline::Settings {
            concurrency,
            batch: 1,
            writers: concurrency,
        };
        let totals = Totals::new(Stats::with_keys(&STAT_KEYS), EXAMPLES_PER_REASON);
        let report = pipeline::run(self, ctx, settings, totals).await;
        let total = report.totals;
        self.log_summary(&total);
        let stats = total.stats.clone();
        match report.end {
            End::Halted(reason) => return Err(JobError::new(reason).with_stats(stats)),
            End::Cancelled => {
                return Err(JobError::new(format!(
                    "audio_cleanup was cancelled after {} rows; the rest is left for the next run",
                    stats.get(CONSIDERED)
                ))
                .with_stats(stats))
            }
            End::Done => {}
        }
        let buckets = missing_buckets(&total);
        if !buckets.is_empty() {
            return Err(JobError::new(format!(
                "Supabase Storage has no bucket {}; their rows stay unmarked (create the bucket, \
                 or check that SUPABASE_SERVICE_ROLE_KEY is the service-role key: other keys \
                 may not see buckets)",
                buckets.join(", ")
            ))
            .with_stats(stats));
        }
        let storage_errors = stats.get(STORAGE_ERROR);
        if storage_errors > 0 {
            return Err(JobError::new(format!(
                "Supabase Storage failed for {storage_errors} files ({}); their rows stay unmarked and are tried again next run",
                total.last_error.as_deref().unwrap_or("unknown error")
            ))
            .with_stats(stats));
        }
        Ok(stats)
    }

    /// Handles one page: parse, group by bucket, delete (or count, in a dry run). Returns
    /// the counts and the indices of the rows that may be marked.
    async fn clean(
        &self,
        rows: &[CleanupCandidate],
        control: &Control<String>,
    ) -> (Outcome, Vec<usize>) {
        let mut outcome = Outcome::default();
        if control.is_halting() {
            // Read just before the run stopped: left for the next run, not counted.
            return (outcome, Vec::new());
        }
        outcome.count(CONSIDERED, rows.len());

        let project_url = self.storage.project_url();
        let mut groups: HashMap<String, BucketGroup> = HashMap::new();
        for (index, row) in rows.iter().enumerate() {
            match parse_audio_path(&row.audio_file_path, project_url) {
                Ok(object) => groups
                    .entry(object.bucket)
                    .or_default()
                    .entry(object.name)
                    .or_default()
                    .push(index),
                Err(error) => outcome.invalid_path(row.id, &error),
            }
        }

        if !groups.is_empty() {
            if let Err(e) = self.keep_referenced(&mut groups, &mut outcome).await {
                // Without knowing which objects newer rows use, nothing may be deleted.
                let rows: usize = groups
                    .values()
                    .flat_map(HashMap::values)
                    .map(Vec::len)
                    .sum();
                outcome.count(STORAGE_ERROR, rows);
                outcome.fatal = Some(e);
                return (outcome, Vec::new());
            }
        }

        // A URL with a query names the object before its `?` only if the query is
        // Storage's: its absence proves nothing (the name may go on after the `?`).
        let ambiguous: HashSet<usize> = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| storage_supabase::has_query(&row.audio_file_path))
            .map(|(index, _)| index)
            .collect();
        let results =
            futures_util::future::join_all(groups.into_iter().map(|(bucket, group)| {
                self.clean_bucket(bucket, group, rows, &ambiguous, control)
            }))
            .await;
        let mut confirmed: Vec<usize> = Vec::new();
        for (bucket_outcome, rows_done) in results {
            outcome.merge(bucket_outcome);
            confirmed.extend(rows_done);
        }
        (outcome, confirmed)
    }

    /// Takes out of `groups` the objects that rows inside the retention period still point
    /// at, counting their rows as `still_referenced`; first reads the rows added since the
    /// last call.
    async fn keep_referenced(
        &self,
        groups: &mut HashMap<String, BucketGroup>,
        outcome: &mut Outcome,
    ) -> Result<(), String> {
        self.look(std::time::Instant::now()).await?;
        let references = self.references.lock();
        if references.objects.is_empty() {
            return Ok(());
        }
        for (bucket, group) in groups.iter_mut() {
            group.retain(|name, rows| {
                let object = ObjectRef {
                    bucket: bucket.clone(),
                    name: name.clone(),
                };
                let referenced = references.objects.contains(&object_key(&object));
                if referenced {
                    outcome.count(STILL_REFERENCED, rows.len());
                }
                !referenced
            });
        }
        groups.retain(|_, group| !group.is_empty());
        Ok(())
    }

    /// Makes sure what is known of the newer rows comes from a read that started at or
    /// after `arrived`, reading when none did.
    async fn look(&self, arrived: std::time::Instant) -> Result<(), String> {
        // The whole window is read once, by the first batch; the batches that arrive
        // meanwhile wait for it rather than each reading it all.
        self.references
            .first
            .get_or_try_init(|| self.read_references(arrived))
            .await?;
        // Then a batch needs a read that started after it arrived: it sees every row
        // committed before. Reads run side by side, each from where the last finished
        // one ended; a batch that a finished read already covers reads nothing. (One read
        // at a time, each batch its own, kept Storage's places idle a quarter of the run.)
        if !self.references.covers(arrived) {
            // At most `READERS` at once (each holds a connection); a read that finished
            // while this batch waited may cover it.
            let _reader = self.references.readers.acquire().await.ok();
            if !self.references.covers(arrived) {
                self.read_references(std::time::Instant::now()).await?;
            }
        }
        Ok(())
    }

    /// Reads the rows inside the retention period added since the last finished read, and
    /// those dated in the future not read yet, and adds them to what is known. `started`:
    /// the instant before the read's first query.
    async fn read_references(&self, started: std::time::Instant) -> Result<(), String> {
        let cutoff = self.cutoff;
        // Pages of at least a thousand rows, whatever the batch size: a look with a batch
        // of 1 would otherwise read the recent window one row per round trip.
        let page = self.batch_size.max(REFERENCE_PAGE_ROWS);
        let limit = i64::try_from(page).unwrap_or(i64::MAX);
        let (mut after, future_after) = {
            let known = self.references.lock();
            (known.after, known.future_after)
        };
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| db_error("connecting", db::DbError::from(e)))?;
        let read_at = self.started.0
            + chrono::Duration::from_std(self.started.1.elapsed()).unwrap_or(chrono::Duration::MAX);
        // The window read again at each call ends a look-back after now: rows dated later
        // than that are in the future, and are read once, by their own cursor, below.
        let upper = read_at + REFERENCE_LOOKBACK;
        // A future cursor at or before `upper` is inside the window now, read there.
        let mut future_after = future_after.filter(|cursor| cursor.created_at > upper);
        let mut objects = Vec::new();
        loop {
            let read =
                db::cleanup::referenced_since(&mut conn, cutoff, upper, after, future_after, limit)
                    .await
                    .map_err(|e| db_error("reading the audio of recent transcriptions", e))?;
            let more = read.window.len() >= page || read.future.len() >= page;
            if let Some(last) = read.window.last() {
                after = Some(last.cursor());
            }
            if let Some(last) = read.future.last() {
                future_after = Some(last.cursor());
            }
            ingest(&mut objects, &read.window);
            ingest(&mut objects, &read.future);
            if !more {
                break;
            }
        }
        // A row's `created_at` defaults to its transaction's start, so a row not yet
        // visible to this read has a `created_at` after `read_at - REFERENCE_LOOKBACK`:
        // the next call reads from there again if the rows read reach past it. Rows
        // sharing an older `created_at` are not read again.
        let floor = read_at - REFERENCE_LOOKBACK;
        if let Some(cursor) = after.as_mut() {
            if cursor.created_at > floor {
                cursor.created_at = floor;
                cursor.id = uuid::Uuid::nil();
            }
        }
        self.references.lock().add(Read {
            started,
            after,
            future_after,
            objects,
        });
        Ok(())
    }

    async fn mark(&self, rows: &[CleanupCandidate], confirmed: &[usize]) -> Result<usize, String> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| db_error("connecting", db::DbError::from(e)))?;
        db::cleanup::mark_audio_deleted(&mut conn, confirmed.iter().filter_map(|&i| rows.get(i)))
            .await
            .map_err(|e| db_error("marking transcriptions", e))
    }

    /// Deletes one bucket's objects of a batch. Returns the counts and the indices of the
    /// rows that may be marked.
    async fn clean_bucket(
        &self,
        bucket: String,
        mut group: BucketGroup,
        rows: &[CleanupCandidate],
        ambiguous: &HashSet<usize>,
        control: &Control<String>,
    ) -> (Outcome, Vec<usize>) {
        let mut outcome = Outcome::default();
        let rows_in = |group: &BucketGroup| group.values().map(Vec::len).sum::<usize>();

        match self.bucket_state(&bucket, control).await {
            Err(error) => {
                // Fatal answers were already acted on (and are cached) by `bucket_state`.
                outcome.storage_failure(rows_in(&group), &error);
                return (outcome, Vec::new());
            }
            Ok(BucketState::Missing) => {
                outcome.missing_bucket(bucket, rows_in(&group));
                return (outcome, Vec::new());
            }
            Ok(BucketState::Exists) => {}
        }
        if self.dry_run {
            outcome.count(WOULD_DELETE, rows_in(&group));
            return (outcome, Vec::new());
        }
        if control.is_halting() {
            // Another batch hit a fatal error: send nothing more.
            outcome.count(STORAGE_ERROR, rows_in(&group));
            return (outcome, Vec::new());
        }

        let names: Vec<&str> = group.keys().map(String::as_str).collect();
        // Storage asked again (429, 503, a timeout) may be seconds later: each retry looks
        // at the newer rows again first.
        let guard = LookAgain {
            run: self,
            error: Mutex::new(None),
        };
        let result = self
            .storage
            .delete_objects_rechecked(&bucket, &names, Some(&guard))
            .await;
        drop(names);
        if let Some(error) = guard
            .error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            // Without knowing which objects newer rows use, nothing more may be deleted.
            outcome.fatal = Some(error);
        }
        let delete = match result {
            Ok(delete) => delete,
            Err(error) => {
                outcome.storage_failure(rows_in(&group), &error);
                return (outcome, Vec::new());
            }
        };
        let DeleteOutcome {
            deleted,
            not_returned,
            failed,
            skipped,
            withheld,
            ..
        } = delete;
        // Taken out before a retry: a newer row uses them now (or the look failed).
        let withheld_rows: usize = withheld
            .iter()
            .filter_map(|name| group.remove(name))
            .map(|rows| rows.len())
            .sum();
        if withheld_rows > 0 {
            let key = if outcome.fatal.is_some() {
                STORAGE_ERROR
            } else {
                STILL_REFERENCED
            };
            outcome.count(key, withheld_rows);
        }

        let mut confirmed = Vec::new();
        let mut take = |names: Vec<String>, key: &str, outcome: &mut Outcome| {
            for name in names {
                if let Some(rows) = group.remove(&name) {
                    outcome.count(key, rows.len());
                    confirmed.extend(rows);
                }
            }
        };
        if !deleted.is_empty() || !not_returned.is_empty() {
            outcome.storage_ok = true;
        }
        take(deleted, DELETED, &mut outcome);
        // The bucket is known to exist, so a name missing from a successful answer is an
        // object that is already gone; except for a URL with a query, whose object may
        // be named with the query.
        let mut absent = Vec::new();
        for name in not_returned {
            if let Some(rows_of) = group.remove(&name) {
                for index in rows_of {
                    if ambiguous.contains(&index) {
                        let id = rows.get(index).map(|row| row.id);
                        outcome.unproven_absence(id);
                    } else {
                        outcome.count(ALREADY_ABSENT, 1);
                        absent.push(index);
                    }
                }
            }
        }
        confirmed.extend(absent);

        for chunk in failed {
            let rows: usize = chunk
                .names
                .iter()
                .filter_map(|name| group.remove(name))
                .map(|rows| rows.len())
                .sum();
            outcome.storage_failure(rows, &chunk.error);
        }
        let skipped_rows: usize = skipped
            .iter()
            .filter_map(|name| group.remove(name))
            .map(|rows| rows.len())
            .sum();
        outcome.count(STORAGE_ERROR, skipped_rows);
        // Names the answer did not account for (never expected): not confirmed, so failed.
        outcome.count(STORAGE_ERROR, rows_in(&group));
        outcome.halt_if_fatal(control);
        (outcome, confirmed)
    }

    /// Looks at a bucket once per run; concurrent batches wait for the same answer. A
    /// fatal answer (refused key, wrong URL) is kept too, so it is asked for once; other
    /// failures are not, so a later batch asks again.
    async fn bucket_state(
        &self,
        bucket: &str,
        control: &Control<String>,
    ) -> Result<BucketState, storage_supabase::Error> {
        let cell = {
            let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(buckets.entry(bucket.to_owned()).or_default())
        };
        let answer = cell
            .get_or_try_init(|| async {
                match self.storage.get_bucket(bucket).await {
                    Ok(_) if self.dry_run || !self.storage.key_rights().must_be_proven() => {
                        Ok(Ok(BucketState::Exists))
                    }
                    Ok(_) => match self
                        .storage
                        .prove_delete_rights(bucket, &self.probe_name)
                        .await
                    {
                        Ok(()) => {
                            info!(
                                "[Job] audio_cleanup: SUPABASE_SERVICE_ROLE_KEY proved it may \
                                 delete objects in bucket {bucket:?} (probe object written and \
                                 deleted)"
                            );
                            Ok(Ok(BucketState::Exists))
                        }
                        Err(error) if error.is_not_found() => Ok(Ok(BucketState::Missing)),
                        Err(error) if fatal_reason(&error).is_some() => Ok(Err(error)),
                        Err(error) => Err(error),
                    },
                    Err(error) if error.is_not_found() => Ok(Ok(BucketState::Missing)),
                    Err(error) if fatal_reason(&error).is_some() => Ok(Err(error)),
                    Err(error) => Err(error),
                }
            })
            .await?;
        if let Err(error) = answer {
            // Every batch that meets the error stops the run (the first reason is kept).
            if let Some(reason) = fatal_reason(error) {
                control.halt(Halt::Drain(reason));
            }
        }
        answer.clone()
    }

    /// One log line per kind of trouble, and one with the whole count: never one per row.
    fn log_summary(&self, total: &CleanupTotals) {
        let stats = &total.stats;
        let invalid: Vec<String> = total
            .reasons
            .iter()
            .filter_map(|(trouble, count)| match trouble {
                Trouble::InvalidPath(reason) => {
                    let examples: Vec<String> =
                        count.examples.iter().map(Uuid::to_string).collect();
                    Some(format!(
                        "{} {reason} (e.g. {})",
                        count.items,
                        examples.join(", ")
                    ))
                }
                Trouble::MissingBucket(_) => None,
            })
            .collect();
        if !invalid.is_empty() {
            warn!(
                "[Job] audio_cleanup: {} rows have unusable audio_file_path and stay unmarked: {}",
                stats.get(INVALID_PATH),
                invalid.join(", ")
            );
        }
        let buckets = missing_buckets(total);
        if !buckets.is_empty() {
            warn!(
                "[Job] audio_cleanup: {} rows name buckets that do not exist and stay unmarked: {}",
                stats.get(BUCKET_MISSING),
                buckets.join(", ")
            );
        }
        if stats.get(STORAGE_ERROR) > 0 {
            warn!(
                "[Job] audio_cleanup: {} files were not deleted because Supabase Storage failed \
                 (last error: {}); their rows stay unmarked",
                stats.get(STORAGE_ERROR),
                total.last_error.as_deref().unwrap_or("none recorded")
            );
        }
        info!(
            "[Job] audio_cleanup{}: rows created before {}: {}",
            if self.dry_run {
                " (dry run, nothing changed)"
            } else {
                ""
            },
            self.cutoff.to_rfc3339(),
            stats.summary(&[])
        );
    }
}

/// `"ghost" (2 rows)` for each bucket that does not exist.
fn missing_buckets(total: &CleanupTotals) -> Vec<String> {
    total
        .reasons
        .iter()
        .filter_map(|(trouble, count)| match trouble {
            Trouble::MissingBucket(bucket) => Some(format!("{bucket:?} ({} rows)", count.items)),
            Trouble::InvalidPath(_) => None,
        })
        .collect()
}

/// Rows counted at most by [`Job::backlog`]: past it the backlog reads as "100 000 or
/// more", which keeps the count an index-only scan of at most this many entries.
pub const BACKLOG_CAP: u64 = 100_000;

impl AudioCleanupJob {
    /// Audio past its retention that is not deleted yet: the rows its next run would pick up, counted up to [`BACKLOG_CAP`].
    async fn measure_backlog(&self) -> Result<jobs_core::Backlog, JobError> {
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| JobError::new(format!("measuring the backlog: {e}")))?;
        db::monitoring::audio_cleanup_backlog(&mut conn, self.retention_days, BACKLOG_CAP)
            .await
            .map_err(|e| JobError::new(format!("measuring the backlog: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_finishing_out_of_order_keep_the_furthest_cursors_and_every_object() {
        let at = |secs: i64, id: u128| PageCursor {
            created_at: DateTime::from_timestamp(secs, 0).expect("time"),
            id: Uuid::from_u128(id),
        };
        let t0 = std::time::Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        let mut known = Known::default();
        // The later read finishes first.
        known.add(Read {
            started: t1,
            after: Some(at(100, 1)),
            future_after: None,
            objects: vec![1, 2],
        });
        known.add(Read {
            started: t0,
            after: Some(at(90, 7)),
            future_after: Some(at(500, 3)),
            objects: vec![3],
        });
        assert_eq!(known.after, Some(at(100, 1)));
        assert_eq!(known.future_after, Some(at(500, 3)));
        assert_eq!(known.read_started, Some(t1));
        assert_eq!(known.objects, HashSet::from([1, 2, 3]));
        // The same time: the greater id is further.
        known.add(Read {
            started: t0,
            after: Some(at(100, 2)),
            future_after: Some(at(500, 2)),
            objects: Vec::new(),
        });
        assert_eq!(known.after, Some(at(100, 2)));
        assert_eq!(known.future_after, Some(at(500, 3)));
        assert_eq!(known.read_started, Some(t1));
    }

    #[test]
    fn a_read_is_whole_batches_of_about_fifty_thousand_rows() {
        assert_eq!(batches_per_read(DEFAULT_BATCH_SIZE), 50);
        assert_eq!(batches_per_read(10_000), 5);
        assert_eq!(batches_per_read(300), 166);
        assert_eq!(batches_per_read(ROWS_PER_READ * 2), 1);
        assert_eq!(batches_per_read(0), ROWS_PER_READ);
    }

    #[test]
    fn failures_add_up_to_the_failed_counter() {
        let mut outcome = Outcome::default();
        let error = PathError::DotSegment;
        outcome.invalid_path(Uuid::nil(), &error);
        outcome.count(BUCKET_MISSING, 2);
        outcome.count(STORAGE_ERROR, 3);
        outcome.count(DELETED, 4);
        assert_eq!(outcome.totals.stats.get(FAILED), 6);
        let invalid = outcome
            .totals
            .reasons
            .get(&Trouble::InvalidPath("dot segment"));
        assert_eq!(invalid.map(|count| count.items), Some(1));
    }

    #[test]
    fn only_a_refused_key_or_a_wrong_url_is_fatal() {
        let refused = storage_supabase::Error::Unauthorized {
            message: "signature verification failed".into(),
        };
        let reason = fatal_reason(&refused).unwrap();
        assert!(reason.contains("SUPABASE_SERVICE_ROLE_KEY"), "{reason}");
        assert!(reason.contains("signature verification failed"), "{reason}");
        let route = storage_supabase::Error::UnknownRoute {
            message: "Route DELETE:/x not found".into(),
        };
        assert!(fatal_reason(&route).unwrap().contains("SUPABASE_URL"));
        let server = storage_supabase::Error::Server {
            status: 500,
            body: String::new(),
        };
        assert_eq!(fatal_reason(&server), None);
    }
}
