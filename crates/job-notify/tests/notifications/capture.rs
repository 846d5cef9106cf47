//! What the notifier logs and counts, captured in memory for assertions. Both the logger and
//! the `metrics` recorder are process-wide, so tests filter by something unique to them
//! (a job name) or compare counters before and after.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

/// One captured log line.
#[derive(Debug, Clone)]
pub struct Line {
    pub level: log::Level,
    pub message: String,
}

fn lines() -> &'static Mutex<Vec<Line>> {
    static LINES: OnceLock<Mutex<Vec<Line>>> = OnceLock::new();
    LINES.get_or_init(|| Mutex::new(Vec::new()))
}

fn counters() -> &'static Mutex<HashMap<String, Arc<AtomicU64>>> {
    static COUNTERS: OnceLock<Mutex<HashMap<String, Arc<AtomicU64>>>> = OnceLock::new();
    COUNTERS.get_or_init(|| Mutex::new(HashMap::new()))
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("job_notify")
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            lines().lock().unwrap().push(Line {
                level: record.level(),
                message: record.args().to_string(),
            });
        }
    }

    fn flush(&self) {}
}

struct Recorder;

/// `name{k=v,…}` with the labels sorted.
fn key_string(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    format!("{name}{{{}}}", labels.join(","))
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        let name = key_string(key.name(), &labels);
        let counter = Arc::clone(counters().lock().unwrap().entry(name).or_default());
        Counter::from_arc(counter)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Installs the capturing logger and recorder (once per process).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = log::set_boxed_logger(Box::new(Logger));
        log::set_max_level(log::LevelFilter::Debug);
        let _ = metrics::set_global_recorder(Recorder);
    });
}

/// Captured lines at `level` that contain `needle`.
pub fn logged(level: log::Level, needle: &str) -> Vec<String> {
    lines()
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.level == level && l.message.contains(needle))
        .map(|l| l.message.clone())
        .collect()
}

/// A counter's value as recorded through the `metrics` facade.
pub fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    counters()
        .lock()
        .unwrap()
        .get(&key_string(name, labels))
        .map_or(0, |c| c.load(Ordering::Relaxed))
}
