#![doc = include_str!("../README.md")]

mod db;
mod error;
mod load;
mod mock;
mod naive;
mod process;
mod report;
mod sampler;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use crate::error::Result;
use crate::report::Figure;

/// Benchmarks the real api-server binary: jobs against mock Deepgram/Storage, the HTTP API
/// under load, and the idle server. See BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "bench", version)]
pub struct Args {
    /// What to run.
    #[arg(value_enum, default_value_t = Scenario::All)]
    pub scenario: Scenario,

    /// Shrink every size (2000 rows, 200 naive rows, 3 s load and idle) for a quick CI
    /// run: everything runs and prints its figures, nothing is timed against a goal.
    #[arg(long)]
    pub smoke: bool,

    /// The api-server binary (default: next to this binary).
    #[arg(long, value_name = "PATH")]
    pub api_server: Option<PathBuf>,

    /// PostgreSQL server (and maintenance database) to create the bench databases on.
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = db::DEFAULT_ADMIN_URL,
        hide_env_values = true
    )]
    pub database_url: String,

    /// Rows of every seeding scenario (cost-update 100000, audio-cleanup 1000000, api
    /// 1000000 executions by default; the per-scenario flags below win).
    #[arg(long, value_name = "N")]
    pub rows: Option<u64>,
    /// Pending rows of cost-update.
    #[arg(long, value_name = "N")]
    pub cost_update_rows: Option<u64>,
    /// Old rows of audio-cleanup.
    #[arg(long, value_name = "N")]
    pub audio_cleanup_rows: Option<u64>,
    /// Execution rows of api.
    #[arg(long, value_name = "N")]
    pub api_rows: Option<u64>,

    /// Latency of every mock request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 20)]
    pub latency_ms: u64,

    /// COST_UPDATE_CONCURRENCY of the main cost-update run.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub concurrency: usize,
    /// A second cost-update run at this concurrency (the job's default), on
    /// rows × this ÷ --concurrency rows so it takes about as long; 0 skips it.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub compare_concurrency: usize,
    /// COST_UPDATE_BATCH_SIZE (default: the job's default).
    #[arg(long, value_name = "N")]
    pub cost_update_batch_size: Option<usize>,
    /// AUDIO_CLEANUP_CONCURRENCY (default: the job's default, 4).
    #[arg(long, value_name = "N")]
    pub audio_cleanup_concurrency: Option<usize>,
    /// AUDIO_CLEANUP_BATCH_SIZE (default: the job's default, 1000).
    #[arg(long, value_name = "N")]
    pub audio_cleanup_batch_size: Option<usize>,

    /// Rows of each naive baseline (500; 200 with --smoke); 0 skips them.
    #[arg(long, value_name = "N")]
    pub naive_rows: Option<u64>,

    /// Seconds of load per API endpoint (10; 3 with --smoke).
    #[arg(long, value_name = "SECS")]
    pub load_secs: Option<u64>,
    /// Connections of the API load.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub load_connections: usize,
    /// wrk threads of the API load.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub load_threads: usize,
    /// Use the built-in load loop even when wrk is installed.
    #[arg(long)]
    pub no_wrk: bool,

    /// Seconds the idle server is watched (30; 3 with --smoke).
    #[arg(long, value_name = "SECS")]
    pub idle_secs: Option<u64>,

    /// Changes made on server A in the live scenario (100; 10 with --smoke).
    #[arg(long, value_name = "N")]
    pub live_changes: Option<u64>,
    /// Event streams held open on server B in the live scenario.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub live_streams: usize,

    /// Seconds each mock-capacity check runs (2; 1 with --smoke).
    #[arg(long, value_name = "SECS")]
    pub mock_check_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    All,
    CostUpdate,
    AudioCleanup,
    Api,
    Idle,
    Live,
}

/// The settings every scenario reads, with the defaults resolved.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub api_server: PathBuf,
    pub admin_url: String,
    pub smoke: bool,
    pub latency: Duration,
    pub cost_rows: u64,
    pub cleanup_rows: u64,
    pub api_rows: u64,
    pub concurrency: usize,
    pub compare_concurrency: usize,
    pub cost_batch_size: Option<usize>,
    pub cleanup_concurrency: Option<usize>,
    pub cleanup_batch_size: Option<usize>,
    pub naive_rows: u64,
    pub load_secs: u64,
    pub load_connections: usize,
    pub load_threads: usize,
    pub use_wrk: bool,
    pub idle_secs: u64,
    pub live_changes: u64,
    pub live_streams: usize,
    pub mock_check: Duration,
    /// `getconf CLK_TCK`.
    pub ticks_per_sec: u64,
}

impl Ctx {
    fn from_args(args: &Args) -> Result<Self> {
        let smoke = args.smoke;
        let pick = |specific: Option<u64>, full: u64| {
            specific
                .or(args.rows)
                .unwrap_or(if smoke { 2000 } else { full })
        };
        Ok(Self {
            api_server: process::locate_api_server(args.api_server.as_deref())?,
            admin_url: args.database_url.clone(),
            smoke,
            latency: Duration::from_millis(args.latency_ms),
            cost_rows: pick(args.cost_update_rows, 100_000),
            cleanup_rows: pick(args.audio_cleanup_rows, 1_000_000),
            api_rows: pick(args.api_rows, 1_000_000),
            concurrency: args.concurrency.max(1),
            compare_concurrency: args.compare_concurrency,
            cost_batch_size: args.cost_update_batch_size,
            cleanup_concurrency: args.audio_cleanup_concurrency,
            cleanup_batch_size: args.audio_cleanup_batch_size,
            naive_rows: args.naive_rows.unwrap_or(if smoke { 200 } else { 500 }),
            load_secs: args.load_secs.unwrap_or(if smoke { 3 } else { 10 }).max(1),
            load_connections: args.load_connections.max(1),
            load_threads: args.load_threads.max(1),
            use_wrk: !args.no_wrk && load::wrk_available(),
            idle_secs: args.idle_secs.unwrap_or(if smoke { 3 } else { 30 }),
            live_changes: args
                .live_changes
                .unwrap_or(if smoke { 10 } else { 100 })
                .max(1),
            live_streams: args.live_streams,
            mock_check: Duration::from_secs(args.mock_check_secs.unwrap_or(if smoke {
                1
            } else {
                2
            })),
            ticks_per_sec: process::clock_ticks(),
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        tokio::select! {
            code = run(args) => code,
            _ = tokio::signal::ctrl_c() => {
                // Dropping `run` kills the children and drops the databases.
                eprintln!("interrupted: children killed, bench databases dropped");
                ExitCode::from(130)
            }
        }
    })
}

async fn run(args: Args) -> ExitCode {
    let ctx = match Ctx::from_args(&args) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    report::set_smoke(ctx.smoke);
    let started = Instant::now();
    println!(
        "bench: api-server {}, latency {} ms, load by {}{}",
        ctx.api_server.display(),
        ctx.latency.as_millis(),
        if ctx.use_wrk { "wrk" } else { "built-in loop" },
        if ctx.smoke {
            ", smoke sizes (goals not judged)"
        } else {
            ""
        }
    );
    let selected: Vec<Scenario> = match args.scenario {
        Scenario::All => vec![
            Scenario::CostUpdate,
            Scenario::AudioCleanup,
            Scenario::Api,
            Scenario::Idle,
            Scenario::Live,
        ],
        one => vec![one],
    };
    let mut figures: Vec<Figure> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for scenario in selected {
        let result = match scenario {
            Scenario::CostUpdate => scenarios::cost_update::run(&ctx).await,
            Scenario::AudioCleanup => scenarios::audio_cleanup::run(&ctx).await,
            Scenario::Api => scenarios::api::run(&ctx).await,
            Scenario::Idle => scenarios::idle::run(&ctx).await,
            Scenario::Live => scenarios::live::run(&ctx).await,
            Scenario::All => Ok(Vec::new()),
        };
        match result {
            Ok(mut done) => figures.append(&mut done),
            Err(e) => {
                eprintln!("error: scenario {scenario:?} failed: {e}");
                errors.push(format!("{scenario:?}: {e}"));
            }
        }
    }

    println!();
    println!(
        "== summary ({} figures in {})",
        figures.len(),
        report::secs(started.elapsed())
    );
    for figure in &figures {
        println!("{}", figure.line());
    }
    let failed: Vec<&Figure> = figures.iter().filter(|f| f.failure.is_some()).collect();
    for error in &errors {
        println!("scenario error: {error}");
    }
    if failed.is_empty() && errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!(
            "bench FAILED: {} figure(s) did not do their work, {} scenario(s) errored",
            failed.len(),
            errors.len()
        );
        ExitCode::FAILURE
    }
}
