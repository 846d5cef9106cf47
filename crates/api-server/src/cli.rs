//! The command line (contract §2) and its exit codes.

use std::process::ExitCode;
use std::sync::Arc;

use actix_web::{web, HttpServer};
use chrono::Utc;
use clap::{Parser, Subcommand};
use jobs_core::{RunRequest, Scheduler, StartError, Status};
use log::{error, info, warn};

use crate::app::Services;
use crate::config::{Config, ConfigError, Vars};
use crate::http::{build_app, AppState};

/// Background jobs for the speech-to-text product: nightly audio clean-up and cost
/// update, recorded in PostgreSQL and watched over HTTP.
#[derive(Debug, Parser)]
#[command(name = "api-server", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending migrations, then run the scheduler and the HTTP server until SIGINT
    /// or SIGTERM (the default command).
    Serve,
    /// Run one job now in the foreground, recorded like a scheduled run.
    RunJob {
        /// The job's name, e.g. audio_cleanup or cost_update.
        job_name: String,
        /// Report what the job would do and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Apply pending migrations and exit.
    Migrate {
        /// Print the statements that would run and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the jobs: schedule, enabled or why not, next run time.
    Jobs,
}

/// A failure with its exit code: 2 for usage and configuration, 1 for the rest.
#[derive(Debug)]
pub struct Exit {
    code: u8,
    message: String,
}

impl Exit {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }
    fn failure(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<ConfigError> for Exit {
    fn from(e: ConfigError) -> Self {
        Exit::usage(format!("invalid configuration: {e}"))
    }
}

/// Parses the command line, runs the command, and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The environment and `.env`, read once for the logger and the rest.
    let vars = match Vars::from_env().and_then(|vars| init_logging(&vars).map(|()| vars)) {
        Ok(vars) => vars,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli, vars)) {
        Ok(code) => code,
        Err(exit) => {
            eprintln!("error: {}", exit.message);
            ExitCode::from(exit.code)
        }
    }
}

/// Installs the logger as `LOG_FORMAT` and `RUST_LOG` say (the environment or `.env`),
/// before the rest of the configuration is read so that its errors are logged.
fn init_logging(vars: &Vars) -> Result<(), ConfigError> {
    let settings = crate::config::LogSettings::from_vars(vars)?;
    vars.check_readable()?;
    crate::logging::init(&settings);
    Ok(())
}

async fn run(cli: Cli, vars: Vars) -> Result<ExitCode, Exit> {
    let config = Config::from_vars(vars)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::RunJob { job_name, dry_run } => run_job(config, &job_name, dry_run).await,
        Command::Migrate { dry_run: false } => migrate(config).await,
        Command::Migrate { dry_run: true } => migrate_dry_run(config).await,
        Command::Jobs => list_jobs(config).await,
    }
}

async fn migrate(config: Config) -> Result<ExitCode, Exit> {
    let services = Services::prepare(config)?;
    let applied = services
        .migrate()
        .await
        .map_err(|e| Exit::usage(format!("migrations not applied: {e}")))?;
    if applied.is_empty() {
        println!("database {} is up to date", services.target.database());
    } else {
        println!(
            "applied {} migration(s) to {}: {}",
            applied.len(),
            services.target.database(),
            applied.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the pending migrations' SQL, as SQL comments and statements, without changing
/// anything (the database is not even created).
async fn migrate_dry_run(config: Config) -> Result<ExitCode, Exit> {
    let services = Services::prepare(config)?;
    let plan = db::plan_migrations(&services.target)
        .await
        .map_err(|e| Exit::usage(format!("migrations not planned: {e}")))?;
    let database = services.target.database();
    println!("-- dry run: nothing was changed in {database}");
    if !plan.database_exists {
        println!("-- database {database} does not exist: migrate would create it first");
    }
    for note in &plan.notes {
        println!("-- {note}");
    }
    if plan.pending.is_empty() {
        println!("-- database {database} is up to date: no statement would run");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "-- {} pending migration(s), applied in one transaction:",
        plan.pending.len()
    );
    for (name, sql) in &plan.pending {
        println!("\n-- migration {name}\n{}", sql.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit 2 when the database cannot be adopted as it is (a usage problem for the operator),
/// 1 for other database failures.
fn not_ready(e: db::DbError) -> Exit {
    match e {
        db::DbError::Incompatible(_) => Exit::usage(format!("database not ready: {e}")),
        e => Exit::failure(format!("database not ready: {e}")),
    }
}

async fn list_jobs(config: Config) -> Result<ExitCode, Exit> {
    let services = Services::prepare(config)?;
    let now = Utc::now();
    // A pause lives in the database: without one, the list is still shown, and says so.
    let pauses = read_pauses(&services.pool).await;
    let rows: Vec<[String; 5]> = services
        .registry
        .iter()
        .map(|job| {
            [
                job.name().to_owned(),
                format!(
                    "{} ({})",
                    job.schedule.expression(),
                    job.schedule.describe()
                ),
                match job.disabled_reason() {
                    None => "yes".to_owned(),
                    Some(reason) => format!("no: {reason}"),
                },
                match &pauses {
                    Ok(pauses) => pauses
                        .iter()
                        .find(|c| c.job_name == job.name() && c.paused)
                        .map_or_else(|| "no".to_owned(), describe_pause),
                    Err(_) => "unknown".to_owned(),
                },
                job.schedule
                    .next_after(now)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "never".to_owned()),
            ]
        })
        .collect();
    let header = ["JOB", "SCHEDULE", "ENABLED", "PAUSED", "NEXT RUN"].map(str::to_owned);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(rows.iter()) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(rows.iter()) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    if let Err(e) = pauses {
        eprintln!("pauses not shown (PAUSED unknown): {e}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The jobs' run-time switches, within a few seconds or not at all.
async fn read_pauses(pool: &db::Pool) -> Result<Vec<db::controls::JobControl>, String> {
    let read = async {
        let mut conn = pool
            .get()
            .await
            .map_err(|e| db::DbError::from(e).to_string())?;
        db::controls::all(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .map_err(|_| "the database did not answer within 5 s".to_owned())?
}

/// `yes since <time> by <who>: <reason>`.
fn describe_pause(control: &db::controls::JobControl) -> String {
    let mut text = "yes".to_owned();
    if let Some(at) = control.paused_at {
        text.push_str(&format!(
            " since {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    if let Some(by) = &control.paused_by {
        text.push_str(&format!(" by {by}"));
    }
    if let Some(reason) = &control.pause_reason {
        text.push_str(&format!(": {reason}"));
    }
    text
}

async fn run_job(config: Config, name: &str, dry_run: bool) -> Result<ExitCode, Exit> {
    let services = Services::prepare(config)?;
    let Some(job) = services.registry.get(name) else {
        return Err(Exit::usage(format!(
            "unknown job {name:?}; known jobs: {}",
            services.registry.names().join(", ")
        )));
    };
    if let Some(reason) = job.disabled_reason() {
        return Err(Exit::usage(format!("job {name} is disabled: {reason}")));
    }
    // A job its configuration keeps to dry runs (AUDIO_CLEANUP_DRY_RUN) runs dry here too.
    let dry_run = dry_run || job.job.always_dry_run();
    if dry_run && !job.job.supports_dry_run() {
        return Err(Exit::usage(format!(
            "job {name} does not support --dry-run"
        )));
    }
    // SIGINT/SIGTERM from here on stop the run cleanly instead of killing the process.
    let signalled = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let signalled = signalled.clone();
        async move {
            shutdown_signal().await;
            signalled.cancel();
        }
    });
    if dry_run {
        // A dry run changes nothing: not even the schema (nor creates the database).
        let plan = db::plan_migrations(&services.target)
            .await
            .map_err(not_ready)?;
        let database = services.target.database();
        if !plan.database_exists {
            return Err(Exit::usage(format!(
                "database {database} does not exist, and a dry run creates nothing: \
                 run `api-server migrate` first"
            )));
        }
        if !plan.pending.is_empty() {
            return Err(Exit::usage(format!(
                "database {database} has {} pending migration(s), and a dry run changes \
                 nothing: apply them with `api-server migrate` first (`api-server migrate \
                 --dry-run` shows them)",
                plan.pending.len()
            )));
        }
    } else {
        services.migrate().await.map_err(not_ready)?;
    }
    let worker = format!(
        "{}:run-job:{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
    );
    let notifier = services.notifier();
    let runner = services.runner_with(worker, notifier.clone());
    // Without a server, nothing else closes what a killed run-job left running: do it
    // here, so that its row does not block this run for good.
    if let Err(e) = runner.close_expired(&services.registry).await {
        log::warn!("[Job] could not close expired executions: {e}");
    }
    if signalled.is_cancelled() {
        return Err(Exit::failure("interrupted before the run started"));
    }
    let mut request = RunRequest::manual(dry_run).requested_by("cli");
    if let Ok(pauses) = read_pauses(&services.pool).await {
        if let Some(control) = pauses.iter().find(|c| c.job_name == name && c.paused) {
            let note = crate::http::paused_run_note(Some(control));
            warn!("[Job] {name}: {note}");
            request = request.with_note(note);
        }
    }
    let mut started = match runner.start(job, request).await {
        Ok(started) => started,
        Err(StartError::AlreadyRunning(_)) => {
            return Err(Exit::failure(format!(
                "job {name} is already running; try again when it has finished"
            )))
        }
        Err(e) => return Err(Exit::failure(e.to_string())),
    };
    let finished = tokio::select! {
        report = &mut started.handle => report,
        _ = signalled.cancelled() => {
            info!("signal received: asking {name} to stop");
            runner.shutdown(std::time::Duration::ZERO).await;
            started.handle.await
        }
    };
    let report = finished.map_err(|e| Exit::failure(format!("run of {name} was lost: {e}")))?;
    if let Some(notifier) = notifier {
        // Let a failure notice leave before the process exits.
        notifier.shutdown(std::time::Duration::from_secs(15)).await;
    }
    if report.status == Status::Success {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

async fn serve(config: Config) -> Result<ExitCode, Exit> {
    config.check_bind_security()?;
    if config.admin_token_is_weak() {
        log::warn!("ADMIN_TOKEN is shorter than 16 characters; use a long random token (e.g. openssl rand -hex 24)");
    }
    let services = Services::prepare(config)?;
    services.migrate().await.map_err(not_ready)?;
    let config = Arc::clone(&services.config);
    let notifier = services.notifier();
    let runner = services.runner_with(config.worker_id.clone(), notifier.clone());
    let mut scheduler = Scheduler::new(
        Arc::clone(&runner),
        Arc::clone(&services.registry),
        services.scheduler_settings(),
    );
    for job in services.registry.iter() {
        match job.disabled_reason() {
            None => info!(
                "[Job] {} scheduled {} ({}), next run {}",
                job.name(),
                job.schedule.expression(),
                job.schedule.describe(),
                job.schedule
                    .next_after(Utc::now())
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "never".into())
            ),
            Some(reason) => info!("[Job] {} disabled: {reason}", job.name()),
        }
    }

    // The port first: a second process started by mistake with this server's address (and
    // so its worker id) must stop here, before it takes the live server's runs for
    // leftovers of its own previous life and closes them.
    let listener = std::net::TcpListener::bind(config.bind_addr).map_err(|e| {
        Exit::failure(format!(
            "cannot listen on {} (BIND_ADDR): {e}",
            config.bind_addr
        ))
    })?;

    // Before any request is served (they wait in the socket's queue): a run started
    // through the API must never be taken for a leftover of this server's previous process.
    scheduler.recover().await;

    let (live, feed) = services
        .live_view()
        .map_err(|e| Exit::usage(format!("invalid configuration: DATABASE_LISTEN_URL: {e}")))?;
    let state = web::Data::new(AppState {
        pool: services.pool.clone(),
        registry: Arc::clone(&services.registry),
        runner: Arc::clone(&runner),
        access: crate::http::Access::from_config(&config),
        live: Arc::clone(&live),
    });
    let server = HttpServer::new(move || build_app(state.clone()))
        .disable_signals()
        .shutdown_timeout(10)
        .client_request_timeout(std::time::Duration::from_secs(10))
        .client_disconnect_timeout(std::time::Duration::from_secs(5))
        .keep_alive(std::time::Duration::from_secs(30))
        .listen(listener)
        .map_err(|e| {
            Exit::failure(format!(
                "cannot listen on {} (BIND_ADDR): {e}",
                config.bind_addr
            ))
        })?
        .run();
    let http = server.handle();
    let server_task = tokio::spawn(server);
    let scheduler_task = tokio::spawn(scheduler.run());
    let stop_watch = tokio_util::sync::CancellationToken::new();
    let feed_task = tokio::spawn(feed.run(stop_watch.clone()));
    if let Some(notifier) = &notifier {
        let interval = notifier.settings().overdue_check_interval;
        Arc::clone(notifier).spawn_overdue_watch(
            Arc::clone(&services.registry),
            stop_watch.clone(),
            interval,
        );
    }
    let announce = Arc::clone(&live);
    tokio::spawn(crate::backlog::refresh_loop(
        Arc::clone(&services.registry),
        config.backlog_refresh,
        stop_watch.clone(),
        // The backlog is part of a job's entry: its streams hear of a new count.
        move |job| announce.announce_job(job),
    ));
    // Its own token: the row goes as soon as a stop begins, so that no other server hands
    // a run over to this one while it stops.
    let stop_presence = tokio_util::sync::CancellationToken::new();
    let presence = tokio::spawn(announce_worker(
        services.live_pool.clone(),
        config.worker_id.clone(),
        config.scheduling.heartbeat,
        scheduling_settings(&services.registry, &config.notify),
        stop_presence.clone(),
    ));
    if let Some(days) = config.scheduling.execution_retention_days {
        tokio::spawn(prune_history(
            services.pool.clone(),
            days,
            Arc::clone(&runner),
        ));
    }
    info!(
        "listening on http://{} as worker {}",
        config.bind_addr, config.worker_id
    );

    shutdown_signal().await;
    // Whatever happens below (a database that stops answering mid-stop), the process ends.
    let limit = config.scheduling.shutdown_grace + config.scheduling.cancel_grace + STOP_MARGIN;
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        error!(
            "the stop did not finish within {}s; exiting now",
            limit.as_secs()
        );
        std::process::exit(1);
    });
    stop_presence.cancel();
    // Event streams end first, so that open dashboards do not hold the HTTP server's
    // graceful stop; the view itself follows the running jobs to their end.
    live.close_streams();
    info!(
        "shutting down: no new runs; waiting up to {}s for running jobs",
        config.scheduling.shutdown_grace.as_secs()
    );
    let clean = runner.shutdown(config.scheduling.shutdown_grace).await;
    let unrecorded = runner.unrecorded_ends();
    if unrecorded > 0 {
        error!(
            "{unrecorded} run(s) ended without their end being recorded (the database did not \
             answer): their rows stay running until their lease expires, then any server \
             marks them failed"
        );
    } else if !clean {
        info!(
            "running jobs were interrupted: recorded as failed, or handed over to another server"
        );
    }
    let _ = tokio::time::timeout(PRESENCE_REMOVAL, presence).await;
    close_unheld_runs(
        &runner,
        &services.registry,
        &services.live_pool,
        &config.worker_id,
    )
    .await;
    stop_watch.cancel();
    http.stop(true).await;
    if let Some(notifier) = &notifier {
        notifier.shutdown(std::time::Duration::from_secs(10)).await;
    }
    let _ = scheduler_task.await;
    let _ = feed_task.await;
    if let Ok(Err(e)) = server_task.await {
        error!("HTTP server stopped with an error: {e}");
    }
    if unrecorded > 0 {
        info!("stopped, with {unrecorded} run end(s) not recorded");
        return Ok(ExitCode::FAILURE);
    }
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// What a stop may take beyond the two grace periods before the process exits anyway:
/// the HTTP drain and the notice flush (10 s each) and the records' writes.
const STOP_MARGIN: std::time::Duration = std::time::Duration::from_secs(25);

/// How long a stopping server tries to remove its row from `job_workers`.
const PRESENCE_REMOVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The last server to stop closes what another stopping server handed over and nobody
/// took (its lease ended, and no live server's lease check is left to close it), so that
/// nothing stays running. With another server alive, that server does it and runs the
/// next attempt.
async fn close_unheld_runs(
    runner: &Arc<jobs_core::Runner>,
    registry: &jobs_core::Registry,
    pool: &db::Pool,
    worker_id: &str,
) {
    let others = async {
        let mut conn = pool.get().await.map_err(db::DbError::from)?;
        let live = db::workers::live(&mut conn).await?;
        Ok::<_, db::DbError>(live.iter().any(|w| w.worker_id != worker_id))
    };
    match tokio::time::timeout(PRESENCE_REMOVAL, others).await {
        Ok(Ok(false)) => {}
        _ => return,
    }
    // The runner bounds the call (its log timeout).
    let _ = runner.close_expired(registry).await;
}

/// Keeps this server's row in `job_workers` fresh every heartbeat, so that
/// `GET /internal/api/v1/workers` lists it, and removes it once `stop` is cancelled (as a
/// stop begins, so that no other server hands it a run meanwhile).
async fn announce_worker(
    pool: db::Pool,
    worker_id: String,
    every: std::time::Duration,
    settings: serde_json::Value,
    stop: tokio_util::sync::CancellationToken,
) {
    let started_at = Utc::now();
    let version = env!("CARGO_PKG_VERSION");
    let secs = i32::try_from(every.as_secs().max(1)).unwrap_or(i32::MAX);
    let mut failing = false;
    // (server, its settings) already warned about: each disagreement is logged once.
    let mut warned: std::collections::HashSet<(String, String)> = Default::default();
    loop {
        let result = match pool.get().await {
            Ok(mut conn) => {
                let beat = db::workers::heartbeat(
                    &mut conn, &worker_id, version, started_at, secs, &settings,
                )
                .await;
                if beat.is_ok() {
                    if let Ok(live) = db::workers::live(&mut conn).await {
                        warn_of_other_settings(&worker_id, &settings, &live, &mut warned);
                    }
                }
                beat
            }
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(()) if failing => {
                info!("worker heartbeat works again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) if !failing => {
                log::warn!(
                    "worker heartbeat failed: {e}; this server may drop off the servers list"
                );
                failing = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => break,
        }
    }
    let remove = async {
        let mut conn = pool.get().await.map_err(db::DbError::from)?;
        db::workers::remove(&mut conn, &worker_id).await
    };
    match tokio::time::timeout(PRESENCE_REMOVAL, remove).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::warn!("could not remove this server from the servers list: {e}"),
        Err(_) => log::warn!("could not remove this server from the servers list in time"),
    }
}

/// What this server schedules, per job, and where its notices go, as it tells the other
/// servers (`job_workers`).
fn scheduling_settings(
    registry: &jobs_core::Registry,
    notify: &job_notify::NotifySettings,
) -> serde_json::Value {
    let jobs: serde_json::Map<String, serde_json::Value> = registry
        .iter()
        .map(|job| {
            (
                job.name().to_owned(),
                serde_json::json!({
                    "schedule": job.schedule.expression(),
                    "timezone": job.schedule.timezone().name(),
                    "enabled": job.is_enabled(),
                    "max_attempts": job.policy.max_attempts,
                    "retry_delay_secs": job.policy.retry_base_delay.as_secs(),
                    "timeout_secs": job.policy.timeout.map(|t| t.as_secs()),
                }),
            )
        })
        .collect();
    // Each notice is sent by the server that decides it, to its own channels.
    let notices = serde_json::json!({
        "email": notify.email.is_some(),
        "webhook": notify.webhook.is_some(),
    });
    serde_json::json!({ "jobs": jobs, "notices": notices })
}

/// Warns, once per server and settings, of a live server that schedules the jobs
/// differently: replicas share one database, and each would run its own schedule.
fn warn_of_other_settings(
    me: &str,
    mine: &serde_json::Value,
    live: &[db::workers::WorkerRow],
    warned: &mut std::collections::HashSet<(String, String)>,
) {
    for other in live {
        if other.worker_id == me || other.settings.is_null() || other.settings == *mine {
            continue;
        }
        if !warned.insert((other.worker_id.clone(), other.settings.to_string())) {
            continue;
        }
        let ours = &mine["jobs"];
        let theirs = &other.settings["jobs"];
        let mut names: Vec<&String> = ours
            .as_object()
            .into_iter()
            .chain(theirs.as_object())
            .flat_map(|jobs| jobs.keys())
            .collect();
        names.sort();
        names.dedup();
        let mut differences: Vec<String> = names
            .into_iter()
            .filter(|name| ours[name.as_str()] != theirs[name.as_str()])
            .map(|name| {
                format!(
                    "{name}: {} there, {} here",
                    theirs[name.as_str()],
                    ours[name.as_str()]
                )
            })
            .collect();
        if mine["notices"] != other.settings["notices"] {
            differences.push(format!(
                "notices: {} there, {} here (each notice goes only to the channels of the \
                 server that decides it)",
                other.settings["notices"], mine["notices"]
            ));
        }
        log::warn!(
            "[Job] server {} schedules the jobs differently from this one ({}); replicas \
             should share one configuration, or each runs its own schedule and sends its own \
             notices",
            other.worker_id,
            differences.join("; ")
        );
    }
}

/// Deletes executions older than the retention, 30 s after start and then daily.
async fn prune_history(pool: db::Pool, days: i32, runner: Arc<jobs_core::Runner>) {
    const BATCH: i64 = 1_000;
    let mut wait = std::time::Duration::from_secs(30);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = runner.stopping() => return,
        }
        wait = std::time::Duration::from_secs(24 * 60 * 60);
        let result = match pool.get().await {
            Ok(mut conn) => db::executions::prune(&mut conn, days, BATCH).await,
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(0) => {}
            Ok(n) => info!("pruned {n} execution(s) older than {days} days"),
            Err(e) => {
                log::warn!("pruning the execution history failed: {e}; will try again tomorrow")
            }
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
