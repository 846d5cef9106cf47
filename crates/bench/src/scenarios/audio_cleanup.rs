//! `audio-cleanup`: old rows with paths `audio/u<i>/<i>.webm`, deleted from the Storage
//! mock and marked by `api-server run-job audio_cleanup`. The ceiling is what Storage
//! allows: `AUDIO_CLEANUP_CONCURRENCY × names per bulk delete ÷ latency`. Afterwards every
//! row must be marked and every object deleted exactly once.

use std::time::Duration;

use bytes::Bytes;

use crate::db::BenchDb;
use crate::error::{Context, Result};
use crate::load::{self, Target};
use crate::mock::{Kind, Mock, MockStats, API_KEY, BUCKET};
use crate::naive;
use crate::report::{self, Figure};
use crate::sampler::Sampler;
use crate::scenarios::{
    job_fields, latest_execution, naive_details, phase_details, run_job, seed, with_database,
    JobRun, POLL,
};
use crate::Ctx;

/// The job's defaults (`AUDIO_CLEANUP_CONCURRENCY`, `AUDIO_CLEANUP_BATCH_SIZE`).
const JOB_DEFAULT_CONCURRENCY: usize = 4;
const JOB_DEFAULT_BATCH: usize = 1000;
/// Storage's limit of names per bulk delete.
const NAMES_PER_CALL: usize = 1000;
/// The goal: a million rows in under a minute.
const GOAL_ROWS_PER_SEC: f64 = 1_000_000.0 / 60.0;
const GOAL_RSS_MIB: u64 = 100;

pub async fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    with_database(
        ctx,
        "audio_cleanup",
        |db| async move { body(ctx, &db).await },
    )
    .await
}

/// How the table looks when the job starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    /// Bulk-loaded and never analyzed (autovacuum off for the table meanwhile).
    NotAnalyzed,
    /// Bulk-loaded, then `VACUUM ANALYZE`.
    Analyzed,
    /// Every row with one `created_at`, analyzed.
    SharedCreatedAt,
}

impl Table {
    fn label(self) -> &'static str {
        match self {
            Table::NotAnalyzed => "without ANALYZE",
            Table::Analyzed => "after ANALYZE",
            Table::SharedCreatedAt => "one shared created_at",
        }
    }
}

/// Each table shape under 10 s, the slowest within 1.5× of the fastest.
const GOAL_PLAN_WALL_SECS: f64 = 10.0;
const GOAL_PLAN_SPREAD: f64 = 1.5;

async fn body(ctx: &Ctx, db: &BenchDb) -> Result<Vec<Figure>> {
    let mock = Mock::start(Kind::Storage, ctx.latency).await?;
    let rows = ctx.cleanup_rows;
    let mut figures = Vec::new();
    let mut walls = Vec::new();
    let mut rate = 0.0;
    // Never analyzed first: the freshly migrated table has no statistics at all yet.
    for (index, table) in [Table::NotAnalyzed, Table::Analyzed, Table::SharedCreatedAt]
        .into_iter()
        .enumerate()
    {
        if index > 0 {
            db.execute("TRUNCATE transcriptions").await?;
        }
        let (figure, table_rate, wall) = job_figure(ctx, db, &mock, rows, table).await?;
        figure.print();
        figures.push(figure);
        walls.push((table, wall));
        if table == Table::Analyzed {
            rate = table_rate;
        }
    }
    db.execute("TRUNCATE transcriptions").await?;
    let floor = marking_floor(db, rows).await?;
    let figure = plan_figure(&walls, floor);
    figure.print();
    figures.push(figure);
    if ctx.naive_rows > 0 {
        let figure = naive_figure(ctx, db, &mock, rows, rate).await?;
        figure.print();
        figures.push(figure);
    }
    Ok(figures)
}

/// The least PostgreSQL work any client can do for the marks, on this machine today: the
/// same rows seeded again and marked by two bare `UPDATE`s, one per core, each over half
/// of the ids, with no reads, no Storage and no job. The job's walls are read against it,
/// as runs of one binary on this kind of machine differ by more than any change measured.
async fn marking_floor(db: &BenchDb, rows: u64) -> Result<Duration> {
    seed_rows(db, 1, rows).await?;
    db.execute("CHECKPOINT").await?;
    let mark = |half: &'static str| async move {
        let client = db.connect().await?;
        client
            .batch_execute(&format!(
                "SET synchronous_commit = off; UPDATE transcriptions SET audio_deleted_at = now() \
                 WHERE audio_deleted_at IS NULL AND audio_file_path IS NOT NULL AND id {half}"
            ))
            .await
            .context("marking the floor's rows")
    };
    let started = std::time::Instant::now();
    let (low, high) = tokio::join!(
        mark("< '80000000-0000-0000-0000-000000000000'::uuid"),
        mark(">= '80000000-0000-0000-0000-000000000000'::uuid")
    );
    low?;
    high?;
    let wall = started.elapsed();
    println!(
        "marked {rows} rows with two bare UPDATEs in {}",
        report::secs(wall)
    );
    Ok(wall)
}

/// The three tables side by side: the plan must not depend on the statistics.
fn plan_figure(walls: &[(Table, Duration)], floor: Duration) -> Figure {
    let mut figure = Figure::new("audio_cleanup plans");
    let secs: Vec<f64> = walls.iter().map(|(_, wall)| wall.as_secs_f64()).collect();
    let fastest = secs.iter().copied().fold(f64::INFINITY, f64::min);
    let slowest = secs.iter().copied().fold(0.0, f64::max);
    for (table, wall) in walls {
        figure.field(table.label(), report::secs(*wall));
    }
    let spread = slowest / fastest.max(1e-9);
    figure.field("slowest/fastest", format!("{spread:.2}"));
    figure.field("floor (2 bare UPDATEs)", report::secs(floor));
    figure.field(
        "slowest/floor",
        format!("{:.2}", slowest / floor.as_secs_f64().max(1e-9)),
    );
    figure.goal(&[
        (
            slowest < GOAL_PLAN_WALL_SECS,
            format!("each < {GOAL_PLAN_WALL_SECS:.0} s"),
        ),
        (
            spread <= GOAL_PLAN_SPREAD,
            format!("slowest ≤ {GOAL_PLAN_SPREAD}× fastest"),
        ),
    ]);
    figure
}

/// Seeds rows `first..first + rows` (`audio/u<i>/<i>.webm`), 40 days old and older,
/// analyzed.
async fn seed_rows(db: &BenchDb, first: u64, rows: u64) -> Result<()> {
    seed_table(db, first, rows, Table::Analyzed).await
}

async fn seed_table(db: &BenchDb, first: u64, rows: u64, table: Table) -> Result<()> {
    let last = first + rows - 1;
    let created_at = match table {
        Table::SharedCreatedAt => "now() - interval '40 days'",
        Table::NotAnalyzed | Table::Analyzed => {
            "now() - interval '40 days' - i * interval '1 second'"
        }
    };
    let insert = format!(
        "INSERT INTO transcriptions (id, created_at, audio_file_path) \
         SELECT gen_random_uuid(), {created_at}, '{BUCKET}/u' || i || '/' || i || '.webm' \
         FROM generate_series({first}, {last}) AS i"
    );
    let what = format!(
        "{rows} transcriptions with audio older than the retention ({})",
        table.label()
    );
    if table != Table::NotAnalyzed {
        return seed(db, &what, &insert, "transcriptions").await;
    }
    let started = std::time::Instant::now();
    db.execute(&format!(
        "ALTER TABLE transcriptions SET (autovacuum_enabled = false); \
         SET synchronous_commit = off; {insert}"
    ))
    .await
    .with_context(|| format!("seeding {what}"))?;
    println!("seeded {what} in {}", report::secs(started.elapsed()));
    Ok(())
}

/// Seeded rows `first..first + rows` still unmarked.
async fn unmarked(db: &BenchDb, first: u64, rows: u64) -> Result<i64> {
    let client = db.connect().await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM transcriptions WHERE audio_deleted_at IS NULL \
             AND audio_file_path IS NOT NULL \
             AND split_part(split_part(audio_file_path, '/', 3), '.', 1)::int8 BETWEEN $1 AND $2",
            &[&(first as i64), &((first + rows - 1) as i64)],
        )
        .await
        .context("counting unmarked rows")?;
    Ok(row.get(0))
}

/// The mock alone at the job's Storage concurrency, each call a full bulk delete.
async fn mock_capacity(ctx: &Ctx, mock: &Mock, concurrency: usize) -> Result<f64> {
    let names: Vec<String> = (1..=NAMES_PER_CALL)
        .map(|i| format!("capacity{i}/{i}.webm"))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "prefixes": names }))
        .context("encoding the capacity check's body")?;
    let mut target = Target::get(mock.addr(), format!("/storage/v1/object/{BUCKET}"))
        .header("apikey", API_KEY)
        .header("authorization", format!("Bearer {API_KEY}"));
    target.method = hyper::Method::DELETE;
    target.body = Bytes::from(body);
    let result = load::run_builtin(&target, concurrency, ctx.mock_check).await?;
    Ok(result.rps)
}

async fn job_figure(
    ctx: &Ctx,
    db: &BenchDb,
    mock: &Mock,
    rows: u64,
    table: Table,
) -> Result<(Figure, f64, Duration)> {
    seed_table(db, 1, rows, table).await?;
    let concurrency = ctx.cleanup_concurrency.unwrap_or(JOB_DEFAULT_CONCURRENCY);
    let batch = ctx.cleanup_batch_size.unwrap_or(JOB_DEFAULT_BATCH);
    let per_call = batch.min(NAMES_PER_CALL);
    let ceiling = (concurrency * per_call) as f64 / ctx.latency.as_secs_f64().max(1e-6);
    let capacity = mock_capacity(ctx, mock, concurrency).await?;
    let mut env = vec![
        ("SUPABASE_URL".to_owned(), mock.url()),
        ("SUPABASE_SERVICE_ROLE_KEY".to_owned(), API_KEY.to_owned()),
    ];
    if let Some(concurrency) = ctx.cleanup_concurrency {
        env.push((
            "AUDIO_CLEANUP_CONCURRENCY".to_owned(),
            concurrency.to_string(),
        ));
    }
    if let Some(batch) = ctx.cleanup_batch_size {
        env.push(("AUDIO_CLEANUP_BATCH_SIZE".to_owned(), batch.to_string()));
    }
    // Generous: at the goal's rate, twenty times over.
    let timeout = Duration::from_secs(120) + Duration::from_secs_f64(rows as f64 / 2000.0 * 20.0);
    let run = run_job(ctx, db, mock, "audio_cleanup", env, timeout).await?;
    if table == Table::NotAnalyzed {
        db.execute("ALTER TABLE transcriptions RESET (autovacuum_enabled)")
            .await?;
    }

    let mut figure = Figure::new(format!(
        "audio_cleanup c={concurrency} batch={batch} ({})",
        table.label()
    ));
    let rate = job_fields(&mut figure, rows, &run, ceiling);
    let stats = mock.stats();
    let deletes = MockStats::get(&stats.bulk_deletes) + MockStats::get(&stats.single_deletes);
    let checks = MockStats::get(&stats.bucket_checks);
    let calls = deletes + checks;
    figure
        .field(
            "calls/1000rows",
            format!("{:.3}", calls as f64 * 1000.0 / rows.max(1) as f64),
        )
        .field(
            "mock_capacity",
            format!(
                "{}/s ({:.0}% of ceiling)",
                report::rate(capacity * per_call as f64),
                capacity * per_call as f64 / ceiling * 100.0
            ),
        );
    verify(db, &mut figure, &run, mock, rows).await?;
    let max_deletes = rows.div_ceil(NAMES_PER_CALL as u64);
    figure.goal(&[
        (
            rate >= GOAL_ROWS_PER_SEC,
            "1M rows < 60 s (≥ 16667 rows/s)".to_owned(),
        ),
        (
            deletes <= max_deletes,
            "≤ 1 DELETE per 1000 files".to_owned(),
        ),
        (
            run.watched.peak_kib / 1024 < GOAL_RSS_MIB,
            format!("RSS < {GOAL_RSS_MIB} MiB"),
        ),
    ]);
    figure.detail(format!(
        "storage calls: {deletes} bulk DELETEs (at most {max_deletes} allowed) + {checks} bucket check(s)"
    ));
    phase_details(&mut figure, &run, mock, rows, concurrency);
    report::profile_details(
        &mut figure,
        run.wall,
        &run.watched,
        &run.profile,
        ctx.ticks_per_sec,
    );
    let batches = rows.div_ceil(batch as u64);
    figure.detail(format!(
        "sql: {} transactions ({:.2} per batch of {batch}); db time ≈ {:.1} ms per batch \
         ({:.2} statements active on average × wall ÷ {batches} batches)",
        run.sql,
        run.sql as f64 / batches.max(1) as f64,
        run.profile.avg_active() * run.wall.as_secs_f64() * 1e3 / batches.max(1) as f64,
        run.profile.avg_active(),
    ));
    let wall = run.wall;
    Ok((figure, rate, wall))
}

/// Every row marked, every object deleted once, and the execution agrees.
async fn verify(
    db: &BenchDb,
    figure: &mut Figure,
    run: &JobRun,
    mock: &Mock,
    rows: u64,
) -> Result<()> {
    if !run.status.success() {
        figure.fail(format!(
            "run-job exited with {}: {}",
            run.status,
            run.log_tail.lines().last().unwrap_or_default()
        ));
    }
    let left = unmarked(db, 1, rows).await?;
    if left > 0 {
        figure.fail(format!("{left} rows left unmarked"));
    }
    let stats = mock.stats();
    let names = MockStats::get(&stats.names_deleted);
    let sum = MockStats::get(&stats.name_index_sum);
    let expected_sum = rows * (rows + 1) / 2;
    if names != rows || sum != expected_sum {
        figure.fail(format!(
            "Storage was asked to delete {names} names (index sum {sum}), expected each of {rows} once (sum {expected_sum})"
        ));
    }
    let (status, stats, duration_ms) = latest_execution(db, "audio_cleanup").await?;
    let deleted = stats["deleted"].as_u64().unwrap_or(0);
    let marked = stats["marked"].as_u64().unwrap_or(0);
    if status != "success" || deleted != rows || marked != rows {
        figure.fail(format!(
            "execution recorded {status} with deleted={deleted}, marked={marked} of {rows}"
        ));
    }
    figure.detail(format!(
        "checked: {} rows marked, {left} left; each object deleted once ({names} names); execution {status} in {} ms, stats {stats}",
        rows as i64 - left,
        duration_ms.unwrap_or_default()
    ));
    Ok(())
}

async fn naive_figure(
    ctx: &Ctx,
    db: &BenchDb,
    mock: &Mock,
    job_rows: u64,
    job_rate: f64,
) -> Result<Figure> {
    let rows = ctx.naive_rows;
    let first = job_rows + 1;
    seed_rows(db, first, rows).await?;
    db.wait_idle().await?;
    let before = db.transactions().await?;
    mock.stats().reset();
    let sampler = Sampler::start(ctx.admin_url.clone(), db.name().to_owned(), POLL);
    let run = naive::audio_cleanup(db, &mock.url(), rows).await?;
    let profile = sampler.finish().await;
    db.wait_idle().await?;
    let sql = db.transactions().await? - before;
    let ceiling = 1.0 / ctx.latency.as_secs_f64().max(1e-6);
    let rate = run.rows as f64 / run.wall.as_secs_f64().max(1e-9);
    let stats = mock.stats();
    let calls = MockStats::get(&stats.single_deletes) + MockStats::get(&stats.bulk_deletes);
    let mut figure = Figure::new("audio_cleanup naive");
    figure
        .field("rows", run.rows.to_string())
        .field("wall", report::secs(run.wall))
        .field("rate", format!("{}/s", report::rate(rate)))
        .field("ceiling", format!("{}/s", report::rate(ceiling)))
        .field("ratio", format!("{:.0}%", rate / ceiling * 100.0))
        .field("sql/row", format!("{:.2}", sql as f64 / rows.max(1) as f64))
        .field(
            "calls/1000rows",
            format!("{:.0}", calls as f64 * 1000.0 / rows.max(1) as f64),
        )
        .field("gain", format!("{:.0}x", job_rate / rate.max(1e-9)));
    let left = unmarked(db, first, rows).await?;
    let names = MockStats::get(&stats.names_deleted);
    if left > 0 || run.rows != rows || names != rows {
        figure.fail(format!(
            "naive run marked {} of {rows} rows ({left} left, {names} objects deleted)",
            run.rows
        ));
    }
    figure.detail(
        "one row at a time: SELECT … LIMIT 1, DELETE /storage/v1/object/{bucket}/{path}, UPDATE; \
         gain = the job's rate ÷ this rate",
    );
    naive_details(&mut figure, &run, mock, &profile, ctx);
    Ok(figure)
}
