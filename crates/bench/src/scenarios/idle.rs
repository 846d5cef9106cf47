//! `idle`: `api-server serve` with both jobs enabled (against the mocks, scheduled on
//! 1 January so nothing fires), from spawn to `/readyz` 200, then watched doing nothing:
//! resident memory, CPU from `/proc/<pid>/stat`, calls to the mocks, and the database
//! transactions of the whole life of the process.

use std::time::{Duration, Instant};

use crate::db::BenchDb;
use crate::error::Result;
use crate::mock::{Kind, Mock};
use crate::process::{cpu_ticks, memory_kib, Launch, Server};
use crate::report::{self, Figure};
use crate::scenarios::{free_port, serve_env, wait_ready, with_database};
use crate::Ctx;

pub async fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    with_database(ctx, "idle", |db| async move { body(ctx, &db).await }).await
}

async fn body(ctx: &Ctx, db: &BenchDb) -> Result<Vec<Figure>> {
    let deepgram = Mock::start(Kind::Deepgram, ctx.latency).await?;
    let storage = Mock::start(Kind::Storage, ctx.latency).await?;
    db.wait_idle().await?;
    let sql_before = db.transactions().await?;
    let port = free_port()?;
    let mut server = Server::spawn(&Launch {
        binary: ctx.api_server.clone(),
        args: vec!["serve".to_owned()],
        env: serve_env(db, port, &deepgram, &storage),
        label: "serve-idle".to_owned(),
    })?;
    let ready = wait_ready(&mut server, port, Duration::from_secs(60)).await?;
    // Let start-up work (first scheduler tick, first overdue check) pass before watching.
    tokio::time::sleep(Duration::from_millis(500)).await;
    deepgram.stats().reset();
    storage.stats().reset();

    let pid = server.pid();
    let window = Duration::from_secs(ctx.idle_secs);
    let ticks_before = cpu_ticks(&pid.to_string()).unwrap_or(0);
    let watched_from = Instant::now();
    tokio::time::sleep(window).await;
    let watched_for = watched_from.elapsed();
    let ticks = cpu_ticks(&pid.to_string())
        .unwrap_or(ticks_before)
        .saturating_sub(ticks_before);
    let (peak_kib, rss_kib) = memory_kib(pid).unwrap_or((0, 0));
    let calls = deepgram
        .stats()
        .requests
        .load(std::sync::atomic::Ordering::SeqCst)
        + storage
            .stats()
            .requests
            .load(std::sync::atomic::Ordering::SeqCst);

    let stopping = Instant::now();
    let status = server.stop(Duration::from_secs(30)).await?;
    let stopped_in = stopping.elapsed();
    db.wait_idle().await?;
    let sql = db.transactions().await? - sql_before;
    let life = server.spawned_at.elapsed();

    let cpu_secs = ticks as f64 / ctx.ticks_per_sec as f64;
    let mut figure = Figure::new("idle serve");
    figure
        .field("ready", report::millis(ready))
        .field("rss", report::mib(rss_kib))
        .field("rss_peak", report::mib(peak_kib))
        .field(
            "cpu",
            format!(
                "{cpu_secs:.2}s/{}s ({:.2}% of a core)",
                watched_for.as_secs(),
                cpu_secs / watched_for.as_secs_f64() * 100.0
            ),
        )
        .field("mock_calls", calls.to_string())
        .field("stop", report::millis(stopped_in));
    if !status.success() {
        figure.fail(format!("serve exited with {status} after SIGTERM"));
    } else {
        server.remove_log();
    }
    if calls > 0 {
        figure.fail(format!("{calls} calls to the mocks while idle"));
    }
    figure.detail(format!(
        "ready = spawn to the first /readyz 200 (migration check included); cpu = utime+stime at {} ticks/s \
         over the idle window; {sql} database transactions in the process's whole life of {} \
         (start-up, idle, shutdown)",
        ctx.ticks_per_sec,
        report::secs(life)
    ));
    figure.print();
    Ok(vec![figure])
}
