//! Each run's own log lines, captured without changing the jobs.
//!
//! The runner runs `job.run` inside [`scope`] with a fresh [`RunEvents`] buffer; the
//! process-wide logger is wrapped in a [`CapturingLogger`], which, besides passing every
//! record on, copies the `info`, `warn` and `error` records emitted inside such a scope into
//! its buffer. The buffer is task-local: what a job logs from a task it spawns itself is not
//! captured (the jobs here log from their own task). A buffer keeps at most
//! [`MAX_EVENTS_PER_RUN`] lines and counts the rest, so a chatty run cannot grow the table
//! without bound.

use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use log::{Level, LevelFilter, Log, Metadata, Record};

/// Lines kept per run; later ones are counted, not stored.
pub const MAX_EVENTS_PER_RUN: usize = 500;

/// Longest line kept; longer ones are cut with a marker.
const MAX_MESSAGE_LEN: usize = 4 * 1024;

/// One captured log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEvent {
    /// When it was logged.
    pub at: DateTime<Utc>,
    /// `info`, `warn` or `error`.
    pub level: Level,
    /// The formatted message.
    pub message: String,
}

#[derive(Debug, Default)]
struct Inner {
    events: Vec<RunEvent>,
    dropped: u64,
}

/// The lines of one run, shared between the run's task and the runner.
#[derive(Debug, Clone, Default)]
pub struct RunEvents(Arc<Mutex<Inner>>);

impl RunEvents {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a line, or counts it as dropped when the buffer is full.
    pub fn push(&self, level: Level, message: String) {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if inner.events.len() >= MAX_EVENTS_PER_RUN {
            inner.dropped += 1;
            return;
        }
        inner.events.push(RunEvent {
            at: Utc::now(),
            level,
            message: truncate(message),
        });
    }

    /// Takes the lines gathered since the last call, and how many were dropped in all.
    pub fn take(&self) -> (Vec<RunEvent>, u64) {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut inner.events), inner.dropped)
    }
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("… (truncated)");
    }
    message
}

tokio::task_local! {
    static CURRENT: RunEvents;
}

/// Runs `work` with its `info`+ log lines going to `events` as well.
pub async fn scope<F: Future>(events: RunEvents, work: F) -> F::Output {
    CURRENT.scope(events, work).await
}

fn capturing() -> bool {
    CURRENT.try_with(|_| ()).is_ok()
}

/// A logger that passes everything to `inner` and copies run-scoped lines to their run.
#[derive(Debug)]
pub struct CapturingLogger<L> {
    inner: L,
}

impl<L: Log> CapturingLogger<L> {
    /// Wraps `inner`.
    pub fn new(inner: L) -> Self {
        Self { inner }
    }
}

impl<L: Log> Log for CapturingLogger<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata) || (metadata.level() <= Level::Info && capturing())
    }

    fn log(&self, record: &Record<'_>) {
        if record.level() <= Level::Info {
            let _ =
                CURRENT.try_with(|events| events.push(record.level(), record.args().to_string()));
        }
        self.inner.log(record)
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

/// Installs `inner` wrapped in a [`CapturingLogger`] as the process's logger, with the
/// global level at least `info` so that runs' lines reach the wrapper even when `inner`
/// prints only warnings.
pub fn install<L: Log + 'static>(
    inner: L,
    inner_max: LevelFilter,
) -> Result<(), log::SetLoggerError> {
    // Leaked on purpose: the process logger lives as long as the process.
    log::set_logger(Box::leak(Box::new(CapturingLogger::new(inner))))?;
    log::set_max_level(inner_max.max(LevelFilter::Info));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_counts_what_it_drops() {
        let events = RunEvents::new();
        for i in 0..MAX_EVENTS_PER_RUN + 3 {
            events.push(Level::Info, format!("line {i}"));
        }
        let (kept, dropped) = events.take();
        assert_eq!(kept.len(), MAX_EVENTS_PER_RUN);
        assert_eq!(dropped, 3);
        assert_eq!(kept[0].message, "line 0");
    }

    #[test]
    fn long_lines_are_cut() {
        let events = RunEvents::new();
        events.push(Level::Warn, "é".repeat(MAX_MESSAGE_LEN));
        let (kept, _) = events.take();
        assert!(kept[0].message.ends_with("… (truncated)"));
        assert!(kept[0].message.len() <= MAX_MESSAGE_LEN + "… (truncated)".len());
    }

    #[tokio::test]
    async fn only_lines_inside_the_scope_are_captured() {
        struct Nothing;
        impl Log for Nothing {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                false
            }
            fn log(&self, _: &Record<'_>) {}
            fn flush(&self) {}
        }
        let logger = CapturingLogger::new(Nothing);
        let events = RunEvents::new();
        let record = |level, text: &'static str| {
            logger.log(
                &Record::builder()
                    .level(level)
                    .args(format_args!("{text}"))
                    .build(),
            )
        };
        record(Level::Info, "outside");
        scope(events.clone(), async {
            record(Level::Info, "inside");
            record(Level::Debug, "too detailed");
            record(Level::Error, "broken");
        })
        .await;
        let (kept, dropped) = events.take();
        let lines: Vec<_> = kept.iter().map(|e| (e.level, e.message.as_str())).collect();
        assert_eq!(lines, [(Level::Info, "inside"), (Level::Error, "broken")]);
        assert_eq!(dropped, 0);
    }
}
