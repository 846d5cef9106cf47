//! The `api-server` child: spawned with a clean environment, its output in a log file,
//! watched through `/proc` (peak RSS, CPU), and killed if the bench stops early.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::error::{bail, Context, Result};

/// Where `api-server` is: `--api-server`, else next to the bench binary.
pub fn locate_api_server(given: Option<&Path>) -> Result<PathBuf> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()
            .context("finding the bench binary")?
            .parent()
            .context("the bench binary has no directory")?
            .join("api-server"),
    };
    if !path.is_file() {
        bail!(
            "api-server not found at {}: build it with `cargo build --release -p api-server -p bench` \
             (or pass --api-server PATH)",
            path.display()
        );
    }
    // Absolute: the children run in the temporary directory.
    std::fs::canonicalize(&path).with_context(|| format!("resolving {}", path.display()))
}

/// How to start the server.
#[derive(Debug, Clone)]
pub struct Launch {
    pub binary: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The log file's name stem (in the temporary directory).
    pub label: String,
}

/// A running child; killed when dropped.
pub struct Server {
    child: Child,
    pid: u32,
    pub log_path: PathBuf,
    pub spawned_at: Instant,
}

impl Server {
    /// Starts the child with only `PATH`, `RUST_LOG` and `launch.env` set, in the temporary
    /// directory (so that no `.env` file is read).
    pub fn spawn(launch: &Launch) -> Result<Self> {
        let log_path =
            std::env::temp_dir().join(format!("bench-{}-{}.log", launch.label, std::process::id()));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .with_context(|| format!("opening {} twice", log_path.display()))?;
        let mut command = Command::new(&launch.binary);
        command
            .args(&launch.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        let spawned_at = Instant::now();
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_file(&log_path);
                return Err(e).with_context(|| format!("starting {}", launch.binary.display()));
            }
        };
        let pid = child.id().context("the child has no pid")?;
        Ok(Self {
            child,
            pid,
            log_path,
            spawned_at,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if it has exited.
    pub fn try_exit(&mut self) -> Result<Option<std::process::ExitStatus>> {
        self.child.try_wait().context("checking the child")
    }

    /// Waits for the exit, at most `timeout` (then kills it and fails).
    pub async fn wait(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.context("waiting for the child"),
            Err(_) => {
                let _ = self.child.kill().await;
                bail!(
                    "api-server did not finish within {}s; killed (log: {})",
                    timeout.as_secs(),
                    self.log_path.display()
                )
            }
        }
    }

    /// SIGTERM, then waits up to `grace` for a clean exit (SIGKILL after that).
    pub async fn stop(&mut self, grace: Duration) -> Result<std::process::ExitStatus> {
        if self.try_exit()?.is_none() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status();
        }
        self.wait(grace).await
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Deletes the log (kept when something failed, so it can be read).
    pub fn remove_log(&self) {
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// `/proc/<pid>/status` `VmHWM` (peak resident set) and `VmRSS`, in KiB.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(&status)
}

fn parse_status(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            line.strip_prefix(name)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// `utime + stime` of `/proc/<pid>/stat` (or `/proc/self/stat`), in clock ticks.
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat)
}

fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0], so utime (14) is fields[11] and stime (15) fields[12].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when it cannot be asked).
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .filter(|ticks: &u64| *ticks > 0)
        .unwrap_or(100)
}

/// Busy and total jiffies of the whole machine (`/proc/stat` first line).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    // idle (4th) and iowait (5th) are not busy.
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// What a [`Watcher`] saw of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watched {
    /// Highest `VmHWM` read, KiB.
    pub peak_kib: u64,
    /// Last `VmRSS` read, KiB.
    pub rss_kib: u64,
    /// Last `utime + stime` read, ticks.
    pub cpu_ticks: u64,
}

/// Polls a process's `/proc` files every `every` until it is gone or stopped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Watched>,
}

impl Watcher {
    pub fn start(pid: u32, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut seen = Watched::default();
            let pid_text = pid.to_string();
            while !flag.load(Ordering::SeqCst) {
                match memory_kib(pid) {
                    Some((peak, rss)) => {
                        seen.peak_kib = seen.peak_kib.max(peak);
                        seen.rss_kib = rss;
                    }
                    // Exited (a zombie has no memory lines): keep what was seen.
                    None => break,
                }
                if let Some(ticks) = cpu_ticks(&pid_text) {
                    seen.cpu_ticks = seen.cpu_ticks.max(ticks);
                }
                tokio::time::sleep(every).await;
            }
            seen
        });
        Self { stop, task }
    }

    /// Reads once more and stops.
    pub async fn finish(self) -> Watched {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap_or_default()
    }
}

/// CPU ticks of a set of processes between the first and the last reading of each
/// (a process that exits keeps its last reading).
#[derive(Debug, Default, Clone)]
pub struct TickBook {
    first: HashMap<u32, u64>,
    last: HashMap<u32, u64>,
}

impl TickBook {
    pub fn read(&mut self, pid: u32) {
        if let Some(ticks) = cpu_ticks(&pid.to_string()) {
            self.first.entry(pid).or_insert(ticks);
            let last = self.last.entry(pid).or_default();
            *last = (*last).max(ticks);
        }
    }

    /// Ticks spent since each process was first read.
    pub fn spent(&self) -> u64 {
        self.last
            .iter()
            .map(|(pid, last)| last.saturating_sub(self.first.get(pid).copied().unwrap_or(*last)))
            .sum()
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_gives_peak_and_current_rss() {
        let status =
            "Name:\tapi-server\nVmPeak:\t  900000 kB\nVmHWM:\t   31744 kB\nVmRSS:\t   30012 kB\n";
        assert_eq!(parse_status(status), Some((31_744, 30_012)));
        assert_eq!(parse_status("Name:\tzombie\nState:\tZ (zombie)\n"), None);
    }

    #[test]
    fn stat_ticks_are_counted_after_the_command_name() {
        let stat =
            "4242 (api server) S 1 4242 4242 0 -1 4194560 1200 0 0 0 150 25 0 0 20 0 9 0 1000 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(175));
        assert_eq!(cpu_ticks("self").map(|t| t < u64::MAX), Some(true));
    }
}
