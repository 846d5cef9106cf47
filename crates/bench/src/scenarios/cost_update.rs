//! `cost-update`: pending rows with composed request ids (`<project>.<request>`), priced by
//! `api-server run-job cost_update` against the Deepgram mock. The ceiling is
//! `COST_UPDATE_CONCURRENCY ÷ latency`: no run can look up faster than its lookups in
//! flight allow. Afterwards every row must hold its own request's price.

use std::time::Duration;

use crate::db::BenchDb;
use crate::error::Result;
use crate::load::{self, Target};
use crate::mock::{self, Kind, Mock, MockStats, API_KEY, PROJECT_ID};
use crate::naive;
use crate::report::{self, Figure};
use crate::sampler::Sampler;
use crate::scenarios::{
    job_fields, latest_execution, naive_details, phase_details, run_job, seed, with_database,
    JobRun, POLL,
};
use crate::Ctx;

/// The job's own default `COST_UPDATE_CONCURRENCY`.
const JOB_DEFAULT_CONCURRENCY: usize = 8;
const GOAL_RATIO: f64 = 0.90;
const GOAL_RSS_MIB: u64 = 100;
const GOAL_SQL_PER_ROW: f64 = 0.1;

pub async fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    with_database(ctx, "cost_update", |db| async move { body(ctx, &db).await }).await
}

async fn body(ctx: &Ctx, db: &BenchDb) -> Result<Vec<Figure>> {
    let mock = Mock::start(Kind::Deepgram, ctx.latency).await?;
    let mut runs = vec![(ctx.concurrency, ctx.cost_rows)];
    let compare = ctx.compare_concurrency;
    if compare > 0 && compare != ctx.concurrency {
        // About as long as the main run: fewer rows at a lower ceiling.
        let rows =
            (ctx.cost_rows * compare as u64 / ctx.concurrency as u64).max(ctx.cost_rows.min(200));
        runs.push((compare, rows));
    }
    let mut figures = Vec::new();
    let mut main_rate = None;
    for (index, (concurrency, rows)) in runs.into_iter().enumerate() {
        let tag = index as u32 + 1;
        let (figure, rate) = job_figure(ctx, db, &mock, tag, concurrency, rows).await?;
        figure.print();
        main_rate.get_or_insert(rate);
        figures.push(figure);
    }
    let figure = limited_figure(ctx, db, 5, (ctx.cost_rows / 20).max(200)).await?;
    figure.print();
    figures.push(figure);
    if ctx.naive_rows > 0 {
        let figure = naive_figure(ctx, db, &mock, 9, main_rate.unwrap_or(0.0)).await?;
        figure.print();
        figures.push(figure);
    }
    Ok(figures)
}

/// Rows of one figure are told apart by their `created_at` (2001-01-<tag>).
fn tag_sql(tag: u32) -> String {
    format!("make_timestamptz(2001, 1, {tag}, 0, 0, 0, 'UTC')")
}

async fn seed_rows(db: &BenchDb, tag: u32, rows: u64) -> Result<()> {
    seed(
        db,
        &format!("{rows} pending transcriptions"),
        &format!(
            "INSERT INTO transcriptions (id, created_at, stt_provider_request_id) \
             SELECT gen_random_uuid(), {}, '{PROJECT_ID}.' || gen_random_uuid() \
             FROM generate_series(1, {rows})",
            tag_sql(tag)
        ),
        "transcriptions",
    )
    .await
}

/// Rows of the figure still without a cost, and rows whose cost is not their request's.
async fn check_costs(db: &BenchDb, tag: u32) -> Result<(i64, i64)> {
    let client = db.connect().await?;
    let row = client
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE audio_cost_usd IS NULL), \
                        count(*) FILTER (WHERE audio_cost_usd IS NOT NULL \
                                           AND audio_cost_usd <> {}) \
                 FROM transcriptions WHERE created_at = {}",
                mock::expected_cost_sql("stt_provider_request_id"),
                tag_sql(tag)
            ),
            &[],
        )
        .await
        .map_err(|e| crate::error::Error::new(format!("checking the stored costs: {e}")))?;
    Ok((row.get(0), row.get(1)))
}

/// The mock alone at `concurrency` requests in flight: what it can serve.
async fn mock_capacity(ctx: &Ctx, mock: &Mock, concurrency: usize) -> Result<f64> {
    let target = Target::get(
        mock.addr(),
        format!("/v1/projects/{PROJECT_ID}/requests/a847f427-4ad5-4d67-9b95-db801e58251c"),
    )
    .header("authorization", format!("Token {API_KEY}"));
    let result = load::run_builtin(&target, concurrency, ctx.mock_check).await?;
    Ok(result.rps)
}

async fn job_figure(
    ctx: &Ctx,
    db: &BenchDb,
    mock: &Mock,
    tag: u32,
    concurrency: usize,
    rows: u64,
) -> Result<(Figure, f64)> {
    seed_rows(db, tag, rows).await?;
    let ceiling = concurrency as f64 / ctx.latency.as_secs_f64().max(1e-6);
    let capacity = mock_capacity(ctx, mock, concurrency).await?;
    let mut env = vec![
        ("DEEPGRAM_API_KEY".to_owned(), API_KEY.to_owned()),
        ("DEEPGRAM_API_URL".to_owned(), mock.url()),
        (
            "COST_UPDATE_CONCURRENCY".to_owned(),
            concurrency.to_string(),
        ),
    ];
    if let Some(batch) = ctx.cost_batch_size {
        env.push(("COST_UPDATE_BATCH_SIZE".to_owned(), batch.to_string()));
    }
    let expected = Duration::from_secs_f64(rows as f64 / ceiling);
    let run = run_job(
        ctx,
        db,
        mock,
        "cost_update",
        env,
        Duration::from_secs(120) + expected * 20,
    )
    .await?;

    let name = if concurrency == JOB_DEFAULT_CONCURRENCY {
        format!("cost_update c={concurrency} (default)")
    } else {
        format!("cost_update c={concurrency}")
    };
    let mut figure = Figure::new(name);
    let rate = job_fields(&mut figure, rows, &run, ceiling);
    let stats = mock.stats();
    let calls = MockStats::get(&stats.request_records) + MockStats::get(&stats.project_lists);
    figure
        .field(
            "calls/row",
            format!("{:.2}", calls as f64 / rows.max(1) as f64),
        )
        .field(
            "mock_capacity",
            format!(
                "{}/s ({:.0}% of ceiling; the job ran at {:.0}% of it)",
                report::rate(capacity),
                capacity / ceiling * 100.0,
                rate / capacity.max(1e-9) * 100.0
            ),
        );
    verify(db, &mut figure, &run, tag, rows).await?;
    let sql_per_row = run.sql as f64 / rows.max(1) as f64;
    let rss_mib = run.watched.peak_kib / 1024;
    figure.goal(&[
        (
            rate >= GOAL_RATIO * ceiling,
            format!("rate ≥ {:.0}% of ceiling", GOAL_RATIO * 100.0),
        ),
        (rss_mib < GOAL_RSS_MIB, format!("RSS < {GOAL_RSS_MIB} MiB")),
        (
            sql_per_row <= GOAL_SQL_PER_ROW,
            format!("≤ {GOAL_SQL_PER_ROW} SQL round trips per row"),
        ),
    ]);
    phase_details(&mut figure, &run, mock, rows, concurrency);
    report::profile_details(
        &mut figure,
        run.wall,
        &run.watched,
        &run.profile,
        ctx.ticks_per_sec,
    );
    figure.detail(format!(
        "sql: {} transactions in the run (= round trips: each Sync ends one; an unprepared statement \
         is two, prepare and execute), {:.1} rows per round trip",
        run.sql,
        rows as f64 / run.sql.max(1) as f64
    ));
    Ok((figure, rate))
}

/// What the limited stand-in admits at once (429 beyond, no `Retry-After`), and the job's
/// concurrency against it.
const LIMITED_CAPACITY: u64 = 4;
const LIMITED_JOB_CONCURRENCY: usize = 16;
const GOAL_LIMITED_RATIO: f64 = 0.80;
const GOAL_LIMITED_429_SHARE: f64 = 0.15;

/// The job at concurrency 16 behind a Deepgram that admits 4 lookups at once: the job's
/// shared adaptive limit must find the 4 without failing rows or hammering the vendor.
async fn limited_figure(ctx: &Ctx, db: &BenchDb, tag: u32, rows: u64) -> Result<Figure> {
    let mock =
        Mock::start_with_capacity(Kind::Deepgram, ctx.latency, Some(LIMITED_CAPACITY)).await?;
    seed_rows(db, tag, rows).await?;
    let allowed = LIMITED_CAPACITY as f64 / ctx.latency.as_secs_f64().max(1e-6);
    let env = vec![
        ("DEEPGRAM_API_KEY".to_owned(), API_KEY.to_owned()),
        ("DEEPGRAM_API_URL".to_owned(), mock.url()),
        (
            "COST_UPDATE_CONCURRENCY".to_owned(),
            LIMITED_JOB_CONCURRENCY.to_string(),
        ),
    ];
    let expected = Duration::from_secs_f64(rows as f64 / allowed);
    let run = run_job(
        ctx,
        db,
        &mock,
        "cost_update",
        env,
        Duration::from_secs(120) + expected * 20,
    )
    .await?;
    let mut figure = Figure::new(format!(
        "cost_update c={LIMITED_JOB_CONCURRENCY} behind a limit of {LIMITED_CAPACITY} at once"
    ));
    let rate = job_fields(&mut figure, rows, &run, allowed);
    let stats = mock.stats();
    let calls = MockStats::get(&stats.requests);
    let too_many = MockStats::get(&stats.too_many);
    let share = too_many as f64 / calls.max(1) as f64;
    figure
        .field(
            "calls/row",
            format!("{:.2}", calls as f64 / rows.max(1) as f64),
        )
        .field(
            "429s",
            format!("{too_many} ({:.1}% of calls)", share * 100.0),
        );
    verify(db, &mut figure, &run, tag, rows).await?;
    let (_, recorded, _) = latest_execution(db, "cost_update").await?;
    let failed = recorded["failed"].as_u64().unwrap_or(u64::MAX);
    figure.goal(&[
        (failed == 0, "no row failed".to_owned()),
        (
            share <= GOAL_LIMITED_429_SHARE,
            format!(
                "≤ {:.0}% of calls answered 429",
                GOAL_LIMITED_429_SHARE * 100.0
            ),
        ),
        (
            rate >= GOAL_LIMITED_RATIO * allowed,
            format!("≥ {:.0}% of the allowed rate", GOAL_LIMITED_RATIO * 100.0),
        ),
    ]);
    figure.detail(format!(
        "ceiling here = the stand-in's {LIMITED_CAPACITY} at once ÷ latency; the job's final \
         concurrency_limit was {}",
        recorded["concurrency_limit"]
    ));
    phase_details(&mut figure, &run, &mock, rows, LIMITED_JOB_CONCURRENCY);
    Ok(figure)
}

/// The work must be done: the job succeeded, every row has its own request's price, and
/// the execution's counters agree.
async fn verify(
    db: &BenchDb,
    figure: &mut Figure,
    run: &JobRun,
    tag: u32,
    rows: u64,
) -> Result<()> {
    if !run.status.success() {
        figure.fail(format!(
            "run-job exited with {}: {}",
            run.status,
            run.log_tail.lines().last().unwrap_or_default()
        ));
    }
    let (unpriced, wrong) = check_costs(db, tag).await?;
    if unpriced > 0 {
        figure.fail(format!("{unpriced} rows left without a cost"));
    }
    if wrong > 0 {
        figure.fail(format!("{wrong} rows hold another request's cost"));
    }
    let (status, stats, duration_ms) = latest_execution(db, "cost_update").await?;
    let updated = stats["updated"].as_u64().unwrap_or(0);
    if status != "success" || updated != rows {
        figure.fail(format!(
            "execution recorded {status} with updated={updated} of {rows}"
        ));
    }
    figure.detail(format!(
        "checked: {} rows priced with their own request's usd, {unpriced} without; execution {status} \
         in {} ms, stats {stats}",
        rows as i64 - unpriced - wrong,
        duration_ms.unwrap_or_default()
    ));
    Ok(())
}

async fn naive_figure(
    ctx: &Ctx,
    db: &BenchDb,
    mock: &Mock,
    tag: u32,
    job_rate: f64,
) -> Result<Figure> {
    let rows = ctx.naive_rows;
    seed_rows(db, tag, rows).await?;
    db.wait_idle().await?;
    let before = db.transactions().await?;
    mock.stats().reset();
    let sampler = Sampler::start(ctx.admin_url.clone(), db.name().to_owned(), POLL);
    let run = naive::cost_update(db, &mock.url(), rows).await?;
    let profile = sampler.finish().await;
    db.wait_idle().await?;
    let sql = db.transactions().await? - before;
    let ceiling = 1.0 / ctx.latency.as_secs_f64().max(1e-6);
    let rate = run.rows as f64 / run.wall.as_secs_f64().max(1e-9);
    let calls = MockStats::get(&mock.stats().request_records);
    let mut figure = Figure::new("cost_update naive");
    figure
        .field("rows", run.rows.to_string())
        .field("wall", report::secs(run.wall))
        .field("rate", format!("{}/s", report::rate(rate)))
        .field("ceiling", format!("{}/s", report::rate(ceiling)))
        .field("ratio", format!("{:.0}%", rate / ceiling * 100.0))
        .field("sql/row", format!("{:.2}", sql as f64 / rows.max(1) as f64))
        .field(
            "calls/row",
            format!("{:.2}", calls as f64 / rows.max(1) as f64),
        )
        .field("gain", format!("{:.1}x", job_rate / rate.max(1e-9)));
    let (unpriced, wrong) = check_costs(db, tag).await?;
    if unpriced > 0 || wrong > 0 || run.rows != rows {
        figure.fail(format!(
            "naive run priced {} of {rows} rows ({unpriced} left, {wrong} wrong)",
            run.rows
        ));
    }
    figure.detail(format!(
        "one row at a time: SELECT … LIMIT 1, GET the record, UPDATE; gain = cost_update c={} rate ÷ this rate",
        ctx.concurrency
    ));
    naive_details(&mut figure, &run, mock, &profile, ctx);
    Ok(figure)
}
