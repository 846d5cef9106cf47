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

async fn body(ctx: &Ctx, db: &BenchDb) -> Result<Vec<Figure>> {
    let mock = Mock::start(Kind::Storage, ctx.latency).await?;
    let rows = ctx.cleanup_rows;
    let (figure, rate) = job_figure(ctx, db, &mock, rows).await?;
    figure.print();
    let mut figures = vec![figure];
    if ctx.naive_rows > 0 {
        let figure = naive_figure(ctx, db, &mock, rows, rate).await?;
        figure.print();
        figures.push(figure);
    }
    Ok(figures)
}

/// Seeds rows `first..first + rows` (`audio/u<i>/<i>.webm`), 40 days old and older.
async fn seed_rows(db: &BenchDb, first: u64, rows: u64) -> Result<()> {
    let last = first + rows - 1;
    seed(
        db,
        &format!("{rows} transcriptions with audio older than the retention"),
        &format!(
            "INSERT INTO transcriptions (id, created_at, audio_file_path) \
             SELECT gen_random_uuid(), now() - interval '40 days' - i * interval '1 second', \
                    '{BUCKET}/u' || i || '/' || i || '.webm' \
             FROM generate_series({first}, {last}) AS i"
        ),
        "transcriptions",
    )
    .await
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

async fn job_figure(ctx: &Ctx, db: &BenchDb, mock: &Mock, rows: u64) -> Result<(Figure, f64)> {
    seed_rows(db, 1, rows).await?;
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

    let mut figure = Figure::new(format!("audio_cleanup c={concurrency} batch={batch}"));
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
    Ok((figure, rate))
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
