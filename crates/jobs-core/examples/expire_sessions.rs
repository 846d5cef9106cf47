//! A complete job on the shared batch pipeline: it deletes expired sessions.
//!
//! A job of the server is the same file under `crates/api-server/src/jobs/`, with a
//! database pool where this one holds an in-memory table, plus one `register(…)` line in
//! `build_registry`.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use jobs_core::pipeline::{self, Control, End, Halt, Page, Pipeline, Settings, Totals};
use jobs_core::{async_trait, Job, JobContext, JobError, Stats, Trigger};

/// Rows read per page, and written per batch.
const PAGE: usize = 100;

/// Deletes the sessions that expired before `now`.
pub struct ExpireSessions {
    /// Session id → expiry (seconds since the epoch): a table, in a real job.
    pub sessions: Mutex<BTreeMap<u64, i64>>,
    /// The time the sessions are compared with.
    pub now: i64,
}

#[async_trait]
impl Job for ExpireSessions {
    fn name(&self) -> &str {
        "expire_sessions"
    }
    fn display_name(&self) -> &str {
        "Expire Sessions"
    }
    fn default_schedule(&self) -> &str {
        "*/10 * * * *"
    }

    async fn run(&self, ctx: &JobContext) -> Result<Stats, JobError> {
        let totals = Totals::new(Stats::with_keys(&["expired", "kept", "considered"]), 3);
        let settings = Settings {
            concurrency: 4,
            batch: PAGE,
            writers: 1,
        };
        let report = pipeline::run(self, ctx, settings, totals).await;
        let stats = report.totals.stats;
        match report.end {
            End::Done => Ok(stats),
            End::Cancelled => Err(JobError::new("cancelled; the rest is left").with_stats(stats)),
            End::Halted(reason) => Err(JobError::new(reason).with_stats(stats)),
        }
    }
}

#[async_trait]
impl Pipeline for ExpireSessions {
    type Cursor = u64;
    type Item = (u64, i64);
    type Done = (u64, bool);
    type Reason = &'static str;
    type Example = u64;
    type Error = String;

    /// A page: the next sessions by id (a keyset `SELECT … WHERE id > $1 LIMIT 100`).
    async fn fetch(&self, after: Option<u64>) -> Result<Page<(u64, i64), u64>, String> {
        let sessions = self.sessions.lock().map_err(|_| "the table is poisoned")?;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let rows = sessions
            .range((from, Bound::Unbounded))
            .take(PAGE)
            .map(|(id, expires_at)| (*id, *expires_at))
            .collect();
        Ok(Page::keyset(rows, PAGE, |(id, _)| *id))
    }

    /// One row: has it expired?
    async fn process(
        &self,
        (id, expires_at): (u64, i64),
        _: &Control<String>,
    ) -> Result<(u64, bool), Halt<String>> {
        Ok((id, expires_at <= self.now))
    }

    /// One batch: delete the expired sessions (one `DELETE … WHERE id = ANY($1)`).
    async fn write(
        &self,
        batch: Vec<(u64, bool)>,
        totals: &mut Totals<&'static str, u64>,
        _: &Control<String>,
    ) -> Result<(), String> {
        let mut sessions = self.sessions.lock().map_err(|_| "the table is poisoned")?;
        for (id, expired) in batch {
            totals.stats.incr("considered");
            if expired {
                sessions.remove(&id);
                totals.stats.incr("expired");
            } else {
                totals.stats.incr("kept");
                totals.reasons.add("not expired yet", 1, Some(id));
            }
        }
        Ok(())
    }
}

fn main() {
    let job = ExpireSessions {
        sessions: Mutex::new((1..=250).map(|id| (id, (id % 3) as i64)).collect()),
        now: 1,
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let ctx = JobContext::new(1, Trigger::Manual, false);
    let stats = runtime.block_on(job.run(&ctx)).expect("the run succeeds");
    println!("{}", stats.summary(&[]));
}
