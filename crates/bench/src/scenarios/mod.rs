//! The five scenarios, and what the two job scenarios share: migrating the bench database
//! with the real binary, running `api-server run-job` under watch, and reading what the
//! run recorded.

pub mod api;
pub mod audio_cleanup;
pub mod cost_update;
pub mod idle;
pub mod live;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::BenchDb;
use crate::error::{bail, Context, Result};
use crate::mock::{Mock, MockStats};
use crate::process::{Launch, Server, Watched, Watcher};
use crate::report::{self, Figure};
use crate::sampler::{Profile, Sampler};
use crate::Ctx;

/// How often the child's `/proc` files and `pg_stat_activity` are read.
pub const POLL: Duration = Duration::from_millis(20);

/// Creates `bench_<scenario>_<pid>`, migrates it with `api-server migrate`, runs `body`
/// and drops the database whatever happened.
pub async fn with_database<F, Fut>(ctx: &Ctx, scenario: &str, body: F) -> Result<Vec<Figure>>
where
    F: FnOnce(Arc<BenchDb>) -> Fut,
    Fut: Future<Output = Result<Vec<Figure>>>,
{
    println!();
    println!("== {scenario}");
    let db = Arc::new(BenchDb::create(&ctx.admin_url, scenario).await?);
    let result = async {
        migrate(ctx, &db).await?;
        body(Arc::clone(&db)).await
    }
    .await;
    // `body` has returned, so this is the last reference (else `Drop` drops it).
    if let Ok(db) = Arc::try_unwrap(db) {
        if let Err(e) = db.drop_now().await {
            eprintln!("warning: {e}");
        }
    }
    result
}

/// `api-server migrate` on the bench database.
async fn migrate(ctx: &Ctx, db: &BenchDb) -> Result<()> {
    let started = Instant::now();
    let mut server = Server::spawn(&Launch {
        binary: ctx.api_server.clone(),
        args: vec!["migrate".to_owned()],
        env: vec![("DATABASE_URL".to_owned(), db.url().to_owned())],
        label: format!("migrate-{}", db.name()),
    })?;
    let status = server.wait(Duration::from_secs(300)).await?;
    if !status.success() {
        bail!(
            "api-server migrate failed ({status}):\n{}",
            server.log_tail(20)
        );
    }
    server.remove_log();
    println!(
        "migrated {} with api-server migrate in {}",
        db.name(),
        report::secs(started.elapsed())
    );
    Ok(())
}

/// Runs SQL that seeds a table, then `VACUUM ANALYZE` (as a production table would be),
/// and says how long it took.
pub async fn seed(db: &BenchDb, what: &str, sql: &str, table: &str) -> Result<()> {
    let started = Instant::now();
    db.execute(&format!("SET synchronous_commit = off; {sql}"))
        .await
        .with_context(|| format!("seeding {what}"))?;
    db.execute(&format!("VACUUM ANALYZE {table}")).await?;
    println!("seeded {what} in {}", report::secs(started.elapsed()));
    Ok(())
}

/// What one `api-server run-job` run did.
pub struct JobRun {
    pub status: std::process::ExitStatus,
    pub wall: Duration,
    pub spawned_at: Instant,
    pub exited_at: Instant,
    pub watched: Watched,
    pub profile: Profile,
    /// Transactions of the bench database during the run.
    pub sql: i64,
    pub log_tail: String,
}

/// Runs `api-server run-job <job>` with `env` on top of `DATABASE_URL`, watching its
/// memory and CPU and the database, and counting the database's transactions across it.
/// The mock's counters are reset first.
pub async fn run_job(
    ctx: &Ctx,
    db: &BenchDb,
    mock: &Mock,
    job: &str,
    env: Vec<(String, String)>,
    timeout: Duration,
) -> Result<JobRun> {
    db.wait_idle().await?;
    let before = db.transactions().await?;
    mock.stats().reset();
    let mut all_env = vec![("DATABASE_URL".to_owned(), db.url().to_owned())];
    all_env.extend(env);
    let sampler = Sampler::start(ctx.admin_url.clone(), db.name().to_owned(), POLL);
    let mut server = Server::spawn(&Launch {
        binary: ctx.api_server.clone(),
        args: vec!["run-job".to_owned(), job.to_owned()],
        env: all_env,
        label: format!("run-job-{job}"),
    })?;
    let watcher = Watcher::start(server.pid(), POLL);
    let status = server.wait(timeout).await;
    let exited_at = Instant::now();
    let watched = watcher.finish().await;
    let profile = sampler.finish().await;
    let status = status?;
    db.wait_idle().await?;
    let after = db.transactions().await?;
    let log_tail = server.log_tail(15);
    if status.success() {
        server.remove_log();
    } else {
        eprintln!("run-job {job} log kept at {}", server.log_path.display());
    }
    Ok(JobRun {
        status,
        wall: exited_at - server.spawned_at,
        spawned_at: server.spawned_at,
        exited_at,
        watched,
        profile,
        sql: after - before,
        log_tail,
    })
}

/// The latest execution of `job`: status, stats and `duration_ms`.
pub async fn latest_execution(
    db: &BenchDb,
    job: &str,
) -> Result<(String, serde_json::Value, Option<i32>)> {
    let client = db.connect().await?;
    let row = client
        .query_opt(
            "SELECT status::text, coalesce(stats, '{}'::jsonb)::text, duration_ms \
             FROM job_executions WHERE job_name = $1 ORDER BY id DESC LIMIT 1",
            &[&job],
        )
        .await
        .context("reading job_executions")?
        .with_context(|| format!("no execution of {job} was recorded"))?;
    let stats: String = row.get(1);
    let stats = serde_json::from_str(&stats).context("reading the execution's stats")?;
    Ok((row.get(0), stats, row.get(2)))
}

/// The start-up, steady and finishing phases of a job run, from the mock's first and last
/// request, and the average requests in flight at the mock.
pub fn phase_details(figure: &mut Figure, run: &JobRun, mock: &Mock, items: u64, limit: usize) {
    let stats = mock.stats();
    let (Some(first), Some(last)) = (
        stats.first_start(mock.epoch()),
        stats.last_end(mock.epoch()),
    ) else {
        figure.detail("phases: the mock saw no request");
        return;
    };
    let start = first.saturating_duration_since(run.spawned_at);
    let steady = last.saturating_duration_since(first);
    let finish = run.exited_at.saturating_duration_since(last);
    let in_flight = stats.concurrency().map_or(0.0, |(c, _)| c);
    let requests = MockStats::get(&stats.requests).max(1);
    let answer_time = Duration::from_nanos(MockStats::get(&stats.busy_ns) / requests);
    figure.detail(format!(
        "phases: start {} (spawn to first call: process, migration check, first page), \
         calls {} ({}/s over that span, {in_flight:.1} in flight at the mock on average of {limit} allowed, \
         each answered in {} on average), finish {} (last answer to exit)",
        report::secs(start),
        report::secs(steady),
        report::rate(items as f64 / steady.as_secs_f64().max(1e-9)),
        report::millis(answer_time),
        report::secs(finish),
    ));
}

/// The common fields of a job figure.
/// The per-row breakdown and CPU profile shared by both naive baselines.
pub fn naive_details(
    figure: &mut Figure,
    run: &crate::naive::NaiveRun,
    mock: &Mock,
    profile: &Profile,
    ctx: &Ctx,
) {
    let answer = Duration::from_nanos(
        MockStats::get(&mock.stats().busy_ns) / MockStats::get(&mock.stats().requests).max(1),
    );
    figure.detail(format!(
        "per row: {} in all, of which the mock's answer {}; the rest is the two SQL round trips \
         and the client",
        report::millis(run.wall / u32::try_from(run.rows.max(1)).unwrap_or(u32::MAX)),
        report::millis(answer)
    ));
    report::profile_details(
        figure,
        run.wall,
        &Watched::default(),
        profile,
        ctx.ticks_per_sec,
    );
}

pub fn job_fields(figure: &mut Figure, rows: u64, run: &JobRun, ceiling: f64) -> f64 {
    let rate = rows as f64 / run.wall.as_secs_f64().max(1e-9);
    let ratio = rate / ceiling;
    figure
        .field("rows", rows.to_string())
        .field("wall", report::secs(run.wall))
        .field("rate", format!("{}/s", report::rate(rate)))
        .field("ceiling", format!("{}/s", report::rate(ceiling)))
        .field("ratio", format!("{:.0}%", ratio * 100.0))
        .field("rss_peak", report::mib(run.watched.peak_kib))
        .field(
            "sql/row",
            format!("{:.4}", run.sql as f64 / rows.max(1) as f64),
        );
    rate
}

/// The environment of a production-like `serve`: both jobs enabled against the mocks, with
/// schedules that do not fire during a bench (1 January) and no catch-up run at start, and
/// an execution history that is not pruned while it is measured.
pub fn serve_env(
    db: &BenchDb,
    port: u16,
    deepgram: &Mock,
    storage: &Mock,
) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", db.url().to_owned()),
        ("BIND_ADDR", format!("127.0.0.1:{port}")),
        ("DEEPGRAM_API_KEY", crate::mock::API_KEY.to_owned()),
        ("DEEPGRAM_API_URL", deepgram.url()),
        ("SUPABASE_URL", storage.url()),
        ("SUPABASE_SERVICE_ROLE_KEY", crate::mock::API_KEY.to_owned()),
        ("AUDIO_CLEANUP_SCHEDULE", "0 0 1 1 *".to_owned()),
        ("COST_UPDATE_SCHEDULE", "0 0 1 1 *".to_owned()),
        ("MISFIRE_WINDOW_SECS", "0".to_owned()),
        ("EXECUTION_RETENTION_DAYS", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A free loopback port.
pub fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .context("finding a free port")
}

/// Polls `GET /readyz` every 2 ms until it answers 200; the time since spawn.
pub async fn wait_ready(server: &mut Server, port: u16, timeout: Duration) -> Result<Duration> {
    let target = crate::load::Target::get(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        "/readyz",
    );
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok((200, _)) = crate::load::fetch(&target).await {
            return Ok(server.spawned_at.elapsed());
        }
        if let Some(status) = server.try_exit()? {
            bail!(
                "api-server serve exited before it was ready ({status}):\n{}",
                server.log_tail(20)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "api-server serve not ready after {}s:\n{}",
                timeout.as_secs(),
                server.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
