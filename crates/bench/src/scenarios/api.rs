//! `api`: a history of executions (two jobs, spread over 90 days, one in seven failed)
//! behind `api-server serve`, loaded endpoint after endpoint by `wrk` (or the built-in loop)
//! with the same connections. `/healthz` touches neither the database nor serialisation of
//! rows, so it is the ceiling the other endpoints are compared with, in the same run.

use std::net::SocketAddr;
use std::time::Duration;

use crate::db::BenchDb;
use crate::error::{bail, Context, Result};
use crate::load::{self, LoadResult, Target};
use crate::mock::{Kind, Mock};
use crate::process::{cpu_ticks, Launch, Server, Watched, Watcher};
use crate::report::{self, Figure};
use crate::sampler::Sampler;
use crate::scenarios::{free_port, seed, serve_env, wait_ready, with_database, POLL};
use crate::Ctx;

const GOAL_SHARE_OF_HEALTHZ: f64 = 0.5;
const GOAL_P99: Duration = Duration::from_millis(10);

pub async fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    with_database(ctx, "api", |db| async move { body(ctx, &db).await }).await
}

async fn seed_history(db: &BenchDb, rows: u64) -> Result<()> {
    // Evenly spread over 90 days (distinct started_at, so distinct cron slots); odd and
    // even rows alternate jobs; every seventh row failed; every fifth was manual.
    seed(
        db,
        &format!("{rows} executions"),
        &format!(
            "INSERT INTO job_executions (job_name, status, started_at, completed_at, duration_ms, \
               stats, error_message, created_at, scheduled_for, triggered_by, attempt, dry_run, worker_id) \
             SELECT CASE WHEN i % 2 = 0 THEN 'cost_update' ELSE 'audio_cleanup' END, \
                    CASE WHEN i % 7 = 3 THEN 'failed' ELSE 'success' END, \
                    t, t + ms * interval '1 millisecond', ms, \
                    jsonb_build_object('considered', i % 1000, 'updated', i % 997, \
                                       'failed', CASE WHEN i % 7 = 3 THEN 1 ELSE 0 END), \
                    CASE WHEN i % 7 = 3 THEN 'Deepgram answered 503 Service Unavailable' END, \
                    t, \
                    CASE WHEN i % 5 = 0 THEN NULL ELSE date_trunc('second', t) END, \
                    CASE WHEN i % 5 = 0 THEN 'manual' ELSE 'schedule' END, \
                    1, false, 'bench-host:8080' \
             FROM generate_series(1, {rows}) AS i \
             CROSS JOIN LATERAL (SELECT now() - i * (interval '90 days' / {rows}) AS t, \
                                        (500 + i % 60000) AS ms) AS x"
        ),
        "job_executions",
    )
    .await
}

async fn body(ctx: &Ctx, db: &BenchDb) -> Result<Vec<Figure>> {
    seed_history(db, ctx.api_rows).await?;
    let deepgram = Mock::start(Kind::Deepgram, ctx.latency).await?;
    let storage = Mock::start(Kind::Storage, ctx.latency).await?;
    let port = free_port()?;
    let mut server = Server::spawn(&Launch {
        binary: ctx.api_server.clone(),
        args: vec!["serve".to_owned()],
        env: serve_env(db, port, &deepgram, &storage),
        label: "serve-api".to_owned(),
    })?;
    let watcher = Watcher::start(server.pid(), POLL);
    let ready = wait_ready(&mut server, port, Duration::from_secs(60)).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let since = history_start(db).await?;
    let endpoints = endpoints(addr, &since).await?;
    let mut figures = Vec::new();
    let mut healthz: Option<LoadResult> = None;
    for (label, target) in endpoints {
        let result = load_one(ctx, db, &server, &label, &target, healthz.as_ref()).await?;
        let (figure, outcome) = result;
        figure.print();
        if healthz.is_none() {
            healthz = Some(outcome);
        }
        figures.push(figure);
    }

    let stop = server.stop(Duration::from_secs(30)).await?;
    let watched = watcher.finish().await;
    let mut figure = Figure::new("api server");
    figure
        .field("executions", ctx.api_rows.to_string())
        .field("ready", report::millis(ready))
        .field("rss_peak", report::mib(watched.peak_kib))
        .field("load", if ctx.use_wrk { "wrk" } else { "built-in" });
    if !stop.success() {
        figure.fail(format!("serve exited with {stop} after SIGTERM"));
    } else {
        server.remove_log();
    }
    figure.detail(format!(
        "load per endpoint: {} threads, {} connections, {} s, keep-alive; goal per endpoint: \
         ≥ {:.0}% of /healthz rps and p99 < {} ms",
        ctx.load_threads,
        ctx.load_connections,
        ctx.load_secs,
        GOAL_SHARE_OF_HEALTHZ * 100.0,
        GOAL_P99.as_millis()
    ));
    figure.print();
    figures.push(figure);
    Ok(figures)
}

/// The endpoints, checked once for the right answer before they are loaded. The paged
/// one uses the cursor of the filtered first page.
async fn endpoints(addr: SocketAddr, since: &str) -> Result<Vec<(String, Target)>> {
    let get = |path: &str| Target::get(addr, path);
    let mut list = vec![
        ("/healthz".to_owned(), get("/healthz")),
        (
            "/jobs/status".to_owned(),
            get("/internal/api/v1/jobs/status"),
        ),
        ("/jobs".to_owned(), get("/internal/api/v1/jobs")),
        (
            "/jobs/executions".to_owned(),
            get("/internal/api/v1/jobs/executions?limit=50"),
        ),
    ];
    // Over the whole 90 days of history (the default window is 30 days).
    let filtered = format!(
        "/internal/api/v1/jobs/executions?job_name=cost_update&status=failed&limit=50&since={since}"
    );
    let first = answer(&get(&filtered)).await?;
    let cursor = first["next_cursor"]
        .as_str()
        .context("the filtered first page has no next_cursor")?;
    list.push((
        "/jobs/executions filtered p2".to_owned(),
        get(&format!("{filtered}&cursor={cursor}")),
    ));

    for (label, target) in &list {
        let value = answer(target).await?;
        let rows = value["data"].as_array().map_or(0, Vec::len);
        let ok = match label.as_str() {
            "/healthz" => value["status"] == "ok",
            "/jobs/status" => rows == 2,
            "/jobs" => {
                rows == 2
                    && value["data"].as_array().is_some_and(|data| {
                        data.iter().all(|j| j["latest_execution"]["id"].is_i64())
                    })
            }
            "/jobs/executions" => rows == 50 && value["next_cursor"].is_string(),
            _ => {
                rows == 50
                    && value["data"].as_array().is_some_and(|data| {
                        data.iter()
                            .all(|e| e["job_name"] == "cost_update" && e["status"] == "failed")
                    })
            }
        };
        if !ok {
            bail!(
                "{label} answered unexpectedly: {}",
                shorten(&value.to_string())
            );
        }
    }
    Ok(list)
}

/// 91 days ago in RFC 3339 (UTC), by the database's clock: before the oldest execution.
async fn history_start(db: &BenchDb) -> Result<String> {
    let client = db.connect().await?;
    let row = client
        .query_one(
            "SELECT to_char((now() - interval '91 days') AT TIME ZONE 'UTC', \
             'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            &[],
        )
        .await
        .context("reading the database's clock")?;
    Ok(row.get(0))
}

async fn answer(target: &Target) -> Result<serde_json::Value> {
    let (status, body) = load::fetch(target).await?;
    let text = String::from_utf8_lossy(&body);
    if status != 200 {
        bail!("{} answered {status}: {}", target.path, shorten(&text));
    }
    serde_json::from_slice(&body).with_context(|| format!("{} is not JSON", target.path))
}

fn shorten(text: &str) -> String {
    text.chars().take(300).collect()
}

async fn load_one(
    ctx: &Ctx,
    db: &BenchDb,
    server: &Server,
    label: &str,
    target: &Target,
    healthz: Option<&LoadResult>,
) -> Result<(Figure, LoadResult)> {
    let duration = Duration::from_secs(ctx.load_secs);
    let pid = server.pid().to_string();
    let cpu_before = cpu_ticks(&pid).unwrap_or(0);
    let sampler = Sampler::start(ctx.admin_url.clone(), db.name().to_owned(), POLL);
    let started = std::time::Instant::now();
    let result = if ctx.use_wrk {
        load::run_wrk(target, ctx.load_threads, ctx.load_connections, duration).await?
    } else {
        load::run_builtin(target, ctx.load_connections, duration).await?
    };
    let wall = started.elapsed();
    let profile = sampler.finish().await;
    let server_ticks = cpu_ticks(&pid)
        .unwrap_or(cpu_before)
        .saturating_sub(cpu_before);

    let mut figure = Figure::new(format!("api {label}"));
    figure
        .field("rps", report::rate(result.rps))
        .field("p50", report::millis(result.p50))
        .field("p99", report::millis(result.p99));
    let mut checks = vec![(
        result.p99 < GOAL_P99,
        format!("p99 < {} ms", GOAL_P99.as_millis()),
    )];
    if let Some(base) = healthz {
        let share = result.rps / base.rps.max(1e-9);
        figure.field("vs_healthz", format!("{:.0}%", share * 100.0));
        checks.insert(
            0,
            (
                share >= GOAL_SHARE_OF_HEALTHZ,
                format!("≥ {:.0}% of /healthz rps", GOAL_SHARE_OF_HEALTHZ * 100.0),
            ),
        );
    }
    figure.field("requests", result.requests.to_string());
    if result.non_2xx > 0 {
        figure.fail(format!("{} answers were not 2xx", result.non_2xx));
    }
    if result.errors * 100 > result.requests.max(1) {
        figure.fail(format!("{} socket errors", result.errors));
    }
    figure.goal(&checks);
    let watched = Watched {
        cpu_ticks: server_ticks,
        ..Watched::default()
    };
    report::profile_details(&mut figure, wall, &watched, &profile, ctx.ticks_per_sec);
    let per_request =
        |ticks: u64| ticks as f64 / ctx.ticks_per_sec as f64 / result.requests.max(1) as f64 * 1e6;
    let (server_us, postgres_us) = (
        per_request(server_ticks),
        per_request(profile.backend_ticks),
    );
    let cores = std::thread::available_parallelism().map_or(2, usize::from) as f64;
    figure.detail(format!(
        "per request: api-server {server_us:.0} µs CPU + postgres {postgres_us:.0} µs CPU; \
         these two alone on all {cores} cores could serve at most {} rps",
        report::rate(cores * 1e6 / (server_us + postgres_us).max(1e-9))
    ));
    figure.detail(format!(
        "({} runs in its own process: its CPU is part of \"others'\"; {} socket errors)",
        result.tool, result.errors
    ));
    Ok((figure, result))
}
