//! Figures: one line each (`name  key=value …  goal met`), with indented detail lines of
//! where the time went. A figure whose work was not done carries a failure, which makes
//! the bench exit non-zero; a missed goal does not.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::process::Watched;
use crate::sampler::Profile;

/// Set by `--smoke`: sizes are too small for the goals to mean anything, so none is judged.
static SMOKE: AtomicBool = AtomicBool::new(false);

pub fn set_smoke(smoke: bool) {
    SMOKE.store(smoke, Ordering::SeqCst);
}

/// One measured figure.
#[derive(Debug, Clone, Default)]
pub struct Figure {
    pub name: String,
    pub fields: Vec<(String, String)>,
    /// `Some(Ok(what))`: goal met; `Some(Err(why))`: missed.
    pub goal: Option<std::result::Result<String, String>>,
    pub details: Vec<String>,
    /// The work was not done (rows left, wrong answers, a crash): the bench fails.
    pub failure: Option<String>,
}

impl Figure {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    pub fn field(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.fields.push((key.to_owned(), value.into()));
        self
    }

    pub fn detail(&mut self, line: impl Into<String>) -> &mut Self {
        self.details.push(line.into());
        self
    }

    pub fn fail(&mut self, why: impl Into<String>) -> &mut Self {
        let why = why.into();
        self.failure = Some(match self.failure.take() {
            Some(earlier) => format!("{earlier}; {why}"),
            None => why,
        });
        self
    }

    /// Records the goal: met when every check passes; the failed checks say why not.
    /// Not judged in a smoke run.
    pub fn goal(&mut self, checks: &[(bool, String)]) -> &mut Self {
        if SMOKE.load(Ordering::SeqCst) {
            return self;
        }
        let missed: Vec<&str> = checks
            .iter()
            .filter(|(ok, _)| !ok)
            .map(|(_, what)| what.as_str())
            .collect();
        self.goal = Some(if missed.is_empty() {
            Ok(checks
                .iter()
                .map(|(_, what)| what.as_str())
                .collect::<Vec<_>>()
                .join(", "))
        } else {
            Err(missed.join(", "))
        });
        self
    }

    /// The figure's one line.
    pub fn line(&self) -> String {
        let mut line = format!("{:<28}", self.name);
        for (key, value) in &self.fields {
            let _ = write!(line, " {key}={value}");
        }
        match &self.goal {
            Some(Ok(_)) => line.push_str("  goal met"),
            Some(Err(why)) => {
                let _ = write!(line, "  goal missed ({why})");
            }
            None => {}
        }
        if let Some(why) = &self.failure {
            let _ = write!(line, "  FAILED: {why}");
        }
        line
    }

    pub fn print(&self) {
        println!("{}", self.line());
        for detail in &self.details {
            println!("    {detail}");
        }
    }
}

/// `37.1s`, `850ms`. Measured figures keep a decimal so that runs compare; the operators'
/// formatter (`jobs_core::human_duration`, for logs and notices) rounds instead.
pub fn secs(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

/// `0.41ms`, `12.3ms`.
pub fn millis(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2}ms")
    } else {
        format!("{ms:.1}ms")
    }
}

/// A rate with no more digits than it deserves: `2695`, `48.3`.
pub fn rate(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.0}MiB", kib as f64 / 1024.0)
}

/// The detail lines of a run's CPU and database profile.
pub fn profile_details(
    figure: &mut Figure,
    wall: Duration,
    child: &Watched,
    profile: &Profile,
    ticks_per_sec: u64,
) {
    let tick = |t: u64| t as f64 / ticks_per_sec as f64;
    let wall_s = wall.as_secs_f64().max(1e-9);
    let server = tick(child.cpu_ticks);
    let postgres = tick(profile.backend_ticks);
    let bench = tick(profile.bench_ticks);
    let cores = std::thread::available_parallelism().map_or(2, usize::from) as f64;
    let machine = profile.machine_cores(cores);
    let ours = (server + postgres + bench) / wall_s;
    figure.detail(format!(
        "cpu: api-server {server:.1}s ({:.2} cores), postgres {postgres:.1}s ({:.2} cores, {} backends), \
         bench+mocks {bench:.1}s ({:.2} cores); machine busy {machine:.2} of {cores} cores, of which others' {:.2}",
        server / wall_s,
        postgres / wall_s,
        profile.backends,
        bench / wall_s,
        (machine - ours).max(0.0),
    ));
    figure.detail(format!(
        "db: {:.2} statements active on average ({} samples); by statement: {}; waits: {}",
        profile.avg_active(),
        profile.samples,
        Profile::top(&profile.by_statement, 4),
        Profile::top(&profile.by_wait, 4),
    ));
}
