//! A sampling profiler of the database side: every few milliseconds it reads
//! `pg_stat_activity` for the bench database (through the maintenance connection, so the
//! samples are not the bench database's transactions) and the CPU of each backend. From it:
//! how many statements were running on average, which ones, what they waited for, and how
//! much CPU PostgreSQL spent for the run. It also tracks this process's CPU (the mocks) and
//! the whole machine's (other engineers' builds show up there).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::process::{cpu_ticks, machine_ticks, TickBook};

/// What the sampler saw.
#[derive(Debug, Default, Clone)]
pub struct Profile {
    pub samples: u64,
    /// Sum over samples of the number of active statements.
    pub active: u64,
    /// Active samples by statement kind.
    pub by_statement: BTreeMap<String, u64>,
    /// Active samples by wait event (`CPU` when not waiting).
    pub by_wait: BTreeMap<String, u64>,
    /// CPU ticks of the bench database's backends.
    pub backend_ticks: u64,
    pub backends: usize,
    /// CPU ticks of this process (mocks, samplers, load loops).
    pub bench_ticks: u64,
    /// Busy and total ticks of the whole machine.
    pub machine_busy: u64,
    pub machine_total: u64,
    pub elapsed: Duration,
}

impl Profile {
    /// Average number of statements running at once.
    pub fn avg_active(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.active as f64 / self.samples as f64
        }
    }

    /// `name 62%, name 30%` of the top entries of a sample map.
    pub fn top(map: &BTreeMap<String, u64>, n: usize) -> String {
        let total: u64 = map.values().sum();
        if total == 0 {
            return "none sampled".to_owned();
        }
        let mut entries: Vec<(&String, &u64)> = map.iter().collect();
        entries.sort_by(|a, b| b.1.cmp(a.1));
        entries
            .iter()
            .take(n)
            .map(|(name, count)| format!("{name} {:.0}%", **count as f64 * 100.0 / total as f64))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Cores the machine was busy on average (all processes, ours and others').
    pub fn machine_cores(&self, cores: f64) -> f64 {
        if self.machine_total == 0 {
            0.0
        } else {
            self.machine_busy as f64 / self.machine_total as f64 * cores
        }
    }
}

/// A running sampler.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Profile>,
}

impl Sampler {
    /// Starts sampling `database` every `every` through a connection of its own to
    /// `admin_url` (another database of the same server).
    pub fn start(admin_url: String, database: String, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let bench_start = cpu_ticks("self").unwrap_or(0);
            let machine_start = machine_ticks().unwrap_or((0, 0));
            let mut profile = Profile::default();
            let mut backends = TickBook::default();
            let admin = match crate::db::connect(&admin_url).await {
                Ok(admin) => Some(admin),
                Err(e) => {
                    eprintln!("warning: the database sampler cannot connect: {e}");
                    None
                }
            };
            let statement = match &admin {
                None => None,
                Some(admin) => admin
                .prepare(
                    "SELECT pid, state, coalesce(wait_event_type || ':' || wait_event, 'CPU'), \
                     left(regexp_replace(query, '\\s+', ' ', 'g'), 200) \
                     FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'",
                )
                .await
                .ok()
                .map(|statement| (admin, statement)),
            };
            while !flag.load(Ordering::SeqCst) {
                if let Some((admin, statement)) = &statement {
                    if let Ok(rows) = admin.query(statement, &[&database]).await {
                        profile.samples += 1;
                        for row in rows {
                            let pid: i32 = row.get(0);
                            let pid = u32::try_from(pid).unwrap_or_default();
                            backends.read(pid);
                            let state: Option<String> = row.get(1);
                            if state.as_deref() != Some("active") {
                                continue;
                            }
                            profile.active += 1;
                            let wait: String = row.get(2);
                            *profile.by_wait.entry(wait).or_default() += 1;
                            let query: String = row.get(3);
                            *profile
                                .by_statement
                                .entry(statement_kind(&query))
                                .or_default() += 1;
                        }
                    }
                }
                tokio::time::sleep(every).await;
            }
            profile.elapsed = started.elapsed();
            profile.backend_ticks = backends.spent();
            profile.backends = backends.len();
            profile.bench_ticks = cpu_ticks("self").unwrap_or(0).saturating_sub(bench_start);
            let machine_end = machine_ticks().unwrap_or((0, 0));
            profile.machine_busy = machine_end.0.saturating_sub(machine_start.0);
            profile.machine_total = machine_end.1.saturating_sub(machine_start.1);
            profile
        });
        Self { stop, task }
    }

    pub async fn finish(self) -> Profile {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap_or_default()
    }
}

/// A short name for a statement of the jobs or the API, else its first words.
pub fn statement_kind(query: &str) -> String {
    const KNOWN: [(&str, &str); 10] = [
        (
            "SELECT id, created_at, audio_file_path",
            "cleanup page SELECT",
        ),
        (
            "UPDATE transcriptions AS t SET audio_deleted_at",
            "cleanup mark UPDATE",
        ),
        (
            "SELECT id, CASE WHEN char_length(stt_provider_request_id)",
            "cost pending SELECT",
        ),
        (
            "UPDATE transcriptions t SET audio_cost_usd",
            "cost store UPDATE",
        ),
        (
            "UPDATE transcriptions t SET cost_status",
            "cost checks UPDATE",
        ),
        ("UPDATE job_executions", "job_executions UPDATE"),
        ("INSERT INTO job_executions", "job_executions INSERT"),
        ("WITH RECURSIVE names", "status (latest per job)"),
        ("SELECT now() - make_interval", "cutoff SELECT"),
        ("SELECT id, job_name", "history SELECT"),
    ];
    let trimmed = query.trim_start();
    if trimmed.trim_end() == "SELECT $1" {
        // diesel-async's pool checks each connection it hands out (`RecyclingMethod::Verified`).
        return "pool checkout ping (SELECT 1)".to_owned();
    }
    for (prefix, name) in KNOWN {
        if trimmed.starts_with(prefix) {
            return name.to_owned();
        }
    }
    trimmed.chars().take(48).collect()
}
