//! What a notice says: one [`Notice`] rendered as an e-mail subject, a plain-text body, an
//! HTML body (every value escaped) and a webhook JSON body with a Slack-compatible `text`.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use db::notifications::AlertState;
use jobs_core::human_duration;
use serde_json::json;

/// Prefix of every e-mail subject.
pub const SUBJECT_PREFIX: &str = "[background-jobs]";

/// Why a notice is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// A job's run failed for good after it was fine (or overdue).
    Failure,
    /// The first success after failures or an overdue spell.
    Recovery,
    /// No success for longer than the overdue factor times the job's interval.
    Overdue,
    /// The job is still broken (failing or overdue) a reminder period after the last notice.
    Reminder(AlertState),
}

impl NoticeKind {
    /// The `event` of the webhook body and the `kind` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Failure => "failure",
            NoticeKind::Recovery => "recovery",
            NoticeKind::Overdue => "overdue",
            NoticeKind::Reminder(_) => "reminder",
        }
    }
}

/// One notice about one job, with everything known about it.
#[derive(Debug, Clone)]
pub struct Notice {
    /// Why it is sent.
    pub kind: NoticeKind,
    /// The job's state after the event.
    pub state: AlertState,
    /// The job's stable name.
    pub job_name: String,
    /// The job's human name.
    pub display_name: String,
    /// When the event was decided (database clock).
    pub at: DateTime<Utc>,
    /// The execution the notice is about, if one.
    pub execution_id: Option<i64>,
    /// That execution's status (`failed`, `success`).
    pub status: Option<&'static str>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// How long it ran.
    pub duration_ms: Option<i64>,
    /// How it was started and which attempt it was.
    pub trigger: Option<String>,
    /// Attempt number within its slot.
    pub attempt: Option<u32>,
    /// The cron slot it ran for; `None` for a manual run.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The server that ran it (`WORKER_ID`).
    pub worker_id: Option<String>,
    /// Why it failed.
    pub error_message: Option<String>,
    /// Its counters, in the job's order.
    pub stats: Vec<(String, i64)>,
    /// For recoveries and reminders: since when the job was broken.
    pub broken_since: Option<DateTime<Utc>>,
    /// For recoveries and reminders of failures: runs that failed for good meanwhile.
    pub failed_runs: Option<i32>,
    /// The last success observed.
    pub last_success_at: Option<DateTime<Utc>>,
    /// For overdue notices: where "no success" is measured from.
    pub overdue_reference: Option<DateTime<Utc>>,
    /// For overdue notices: the job's typical interval.
    pub interval: Option<Duration>,
    /// For overdue notices: the interval times the overdue factor.
    pub overdue_after: Option<Duration>,
    /// The job's schedule, as written.
    pub schedule: Option<String>,
    /// Link to the dashboard, when `PUBLIC_URL` is set.
    pub dashboard_url: Option<String>,
    /// How often reminders come, for the footer; `None` for never.
    pub reminder_interval: Option<Duration>,
}

impl Notice {
    /// A notice with nothing but its kind, state and job; the rest is filled in by callers.
    pub fn new(
        kind: NoticeKind,
        state: AlertState,
        job_name: &str,
        display_name: &str,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            kind,
            state,
            job_name: job_name.to_owned(),
            display_name: display_name.to_owned(),
            at,
            execution_id: None,
            status: None,
            started_at: None,
            duration_ms: None,
            trigger: None,
            attempt: None,
            scheduled_for: None,
            worker_id: None,
            error_message: None,
            stats: Vec::new(),
            broken_since: None,
            failed_runs: None,
            last_success_at: None,
            overdue_reference: None,
            interval: None,
            overdue_after: None,
            schedule: None,
            dashboard_url: None,
            reminder_interval: None,
        }
    }

    /// What happened, in two to four words after the job's name.
    fn outcome(&self) -> &'static str {
        match self.kind {
            NoticeKind::Failure => "failed",
            NoticeKind::Recovery => "recovered",
            NoticeKind::Overdue => "is overdue",
            NoticeKind::Reminder(AlertState::Overdue) => "is still overdue",
            NoticeKind::Reminder(_) => "is still failing",
        }
    }

    /// `[background-jobs] Cost Update failed`.
    pub fn subject(&self) -> String {
        format!("{SUBJECT_PREFIX} {} {}", self.display_name, self.outcome())
    }

    /// One sentence: what happened and the most useful detail.
    pub fn headline(&self) -> String {
        let name = &self.display_name;
        let outcome = self.outcome();
        match self.kind {
            NoticeKind::Failure => match &self.error_message {
                Some(e) => format!("{name} {outcome}: {e}"),
                None => format!("{name} {outcome}."),
            },
            NoticeKind::Recovery => {
                let mut s = format!("{name} {outcome}: its last run succeeded");
                if let Some(n) = self.failed_runs.filter(|n| *n > 0) {
                    let _ = write!(s, " after {n} failed run{}", plural(n));
                }
                if let Some(since) = self.broken_since {
                    let _ = write!(s, " (broken since {})", utc(since));
                }
                s.push('.');
                s
            }
            NoticeKind::Overdue | NoticeKind::Reminder(AlertState::Overdue) => {
                let mut s = format!("{name} {outcome}: ");
                match (self.last_success_at, self.overdue_reference) {
                    (Some(t), _) => {
                        let _ = write!(s, "no successful run since {}", utc(t));
                    }
                    (None, Some(t)) => {
                        let _ = write!(s, "no successful run since watching began at {}", utc(t));
                    }
                    (None, None) => s.push_str("no successful run"),
                }
                if let Some(interval) = self.interval {
                    let _ = write!(s, " (it normally runs every {})", human_duration(interval));
                }
                s.push('.');
                s
            }
            NoticeKind::Reminder(_) => {
                let mut s = format!("{name} {outcome}");
                if let Some(since) = self.broken_since {
                    let _ = write!(s, " since {}", utc(since));
                }
                if let Some(n) = self.failed_runs.filter(|n| *n > 0) {
                    let _ = write!(s, " ({n} failed run{})", plural(n));
                }
                match &self.error_message {
                    Some(e) => {
                        let _ = write!(s, ": {e}");
                    }
                    None => s.push('.'),
                }
                s
            }
        }
    }

    /// The labelled details, in display order; only what is known.
    pub fn details(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![("Job", format!("{} ({})", self.display_name, self.job_name))];
        rows.push(("Event", self.kind.as_str().to_owned()));
        if let Some(status) = self.status {
            rows.push(("Status", status.to_owned()));
        }
        if let Some(t) = self.started_at {
            rows.push(("Started", utc(t)));
        }
        if let Some(ms) = self.duration_ms {
            rows.push(("Duration", millis(ms)));
        }
        if let Some(id) = self.execution_id {
            let mut s = format!("#{id}");
            match (&self.trigger, self.attempt) {
                (Some(t), Some(a)) => {
                    let _ = write!(s, " ({t}, attempt {a})");
                }
                (Some(t), None) => {
                    let _ = write!(s, " ({t})");
                }
                _ => {}
            }
            rows.push(("Execution", s));
        }
        if let Some(slot) = self.scheduled_for {
            rows.push(("Slot", utc(slot)));
        }
        if let Some(worker) = &self.worker_id {
            rows.push(("Server", worker.clone()));
        }
        if let Some(e) = &self.error_message {
            rows.push(("Error", e.clone()));
        }
        if !self.stats.is_empty() {
            rows.push(("Stats", stats_line(&self.stats)));
        }
        if let Some(t) = self.broken_since {
            let label = match self.kind {
                NoticeKind::Reminder(AlertState::Overdue) => "Overdue since",
                NoticeKind::Recovery => "Broken since",
                _ => "Failing since",
            };
            rows.push((label, utc(t)));
        }
        if let Some(n) = self.failed_runs.filter(|n| *n > 0) {
            rows.push(("Failed runs", n.to_string()));
        }
        if let Some(t) = self.last_success_at {
            rows.push(("Last success", utc(t)));
        } else if matches!(
            self.kind,
            NoticeKind::Overdue | NoticeKind::Reminder(AlertState::Overdue)
        ) {
            rows.push(("Last success", "none observed".to_owned()));
        }
        if let Some(schedule) = &self.schedule {
            rows.push(("Schedule", schedule.clone()));
        }
        if let (Some(interval), Some(after)) = (self.interval, self.overdue_after) {
            rows.push((
                "Overdue rule",
                format!(
                    "runs every {}; alert after {} without success",
                    human_duration(interval),
                    human_duration(after)
                ),
            ));
        }
        rows.push(("Time", utc(self.at)));
        if let Some(url) = &self.dashboard_url {
            rows.push(("Dashboard", url.clone()));
        }
        rows
    }

    fn footer(&self) -> String {
        let reminders = match self.reminder_interval {
            Some(every) => format!(
                "a reminder every {} while it stays broken",
                human_duration(every)
            ),
            None => "no reminders while it stays broken".to_owned(),
        };
        format!(
            "You get one notice when a job starts failing, when it recovers and when it is \
             overdue, and {reminders}."
        )
    }

    /// The plain-text e-mail body.
    pub fn plain_text(&self) -> String {
        let rows = self.details();
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
        let mut out = self.headline();
        out.push_str("\n\n");
        for (label, value) in &rows {
            let _ = writeln!(out, "{:<width$} {value}", format!("{label}:"));
        }
        out.push_str("\n-- \n");
        out.push_str(&self.footer());
        out.push('\n');
        out
    }

    /// The HTML e-mail body; every value is escaped.
    pub fn html(&self) -> String {
        let mut out = String::from("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
        out.push_str(&escape_html(&self.subject()));
        out.push_str("</title></head>\n<body style=\"font-family: sans-serif\">\n<p><strong>");
        out.push_str(&escape_html(&self.headline()));
        out.push_str(
            "</strong></p>\n<table cellpadding=\"4\" style=\"border-collapse: collapse\">\n",
        );
        for (label, value) in self.details() {
            let value_html = if label == "Dashboard" {
                let v = escape_html(&value);
                format!("<a href=\"{v}\">{v}</a>")
            } else if label == "Error" {
                format!(
                    "<pre style=\"margin: 0; white-space: pre-wrap\">{}</pre>",
                    escape_html(&value)
                )
            } else {
                escape_html(&value)
            };
            let _ = writeln!(
                out,
                "<tr><th align=\"left\" valign=\"top\">{}</th><td>{value_html}</td></tr>",
                escape_html(label)
            );
        }
        out.push_str("</table>\n<p style=\"color: #666\">");
        out.push_str(&escape_html(&self.footer()));
        out.push_str("</p>\n</body></html>\n");
        out
    }

    /// The webhook body: a Slack-compatible `text` and the structured details beside it.
    /// Every key is always present (`null` when unknown), so receivers can rely on the shape.
    pub fn webhook_json(&self) -> serde_json::Value {
        let icon = match self.kind {
            NoticeKind::Failure | NoticeKind::Reminder(AlertState::Failing) => "❌",
            NoticeKind::Recovery => "✅",
            NoticeKind::Overdue | NoticeKind::Reminder(_) => "⏰",
        };
        let mut text = format!("{icon} {}", self.headline());
        let mut facts = Vec::new();
        if let Some(id) = self.execution_id {
            facts.push(format!("execution #{id}"));
        }
        if let Some(ms) = self.duration_ms {
            facts.push(millis(ms));
        }
        if !self.stats.is_empty() {
            facts.push(stats_line(&self.stats));
        }
        if !facts.is_empty() {
            let _ = write!(text, " ({})", facts.join(", "));
        }
        if let Some(url) = &self.dashboard_url {
            let _ = write!(text, " {url}");
        }
        let stats: serde_json::Map<String, serde_json::Value> = self
            .stats
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        json!({
            "text": escape_slack(&text),
            "event": self.kind.as_str(),
            "state": self.state.as_str(),
            "job_name": self.job_name,
            "display_name": self.display_name,
            "status": self.status,
            "execution_id": self.execution_id,
            "started_at": self.started_at.map(rfc3339),
            "scheduled_for": self.scheduled_for.map(rfc3339),
            "worker_id": self.worker_id,
            "duration_ms": self.duration_ms,
            "error_message": self.error_message,
            "stats": stats,
            "since": self.broken_since.map(rfc3339),
            "failed_runs": self.failed_runs,
            "last_success_at": self.last_success_at.map(rfc3339),
            "overdue_after_secs": self.overdue_after.map(|d| d.as_secs()),
            "occurred_at": rfc3339(self.at),
            "dashboard_url": self.dashboard_url,
        })
    }
}

fn plural(n: i32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `2026-11-28 03:00:00 UTC`.
pub fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A run's length from its `duration_ms` (never negative).
fn millis(ms: i64) -> String {
    human_duration(Duration::from_millis(ms.max(0).unsigned_abs()))
}

/// `deleted 45, failed 2`.
fn stats_line(stats: &[(String, i64)]) -> String {
    stats
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Slack reads `<…>` as links and mentions and `&` as an entity: escape those three.
fn escape_slack(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 3, 0, 1).unwrap()
    }

    fn failure() -> Notice {
        let mut n = Notice::new(
            NoticeKind::Failure,
            AlertState::Failing,
            "cost_update",
            "Cost Update",
            at(),
        );
        n.execution_id = Some(42);
        n.status = Some("failed");
        n.started_at = Some(Utc.with_ymd_and_hms(2026, 11, 28, 3, 0, 0).unwrap());
        n.duration_ms = Some(1_234);
        n.trigger = Some("schedule".into());
        n.attempt = Some(3);
        n.scheduled_for = Some(Utc.with_ymd_and_hms(2026, 11, 28, 3, 0, 0).unwrap());
        n.worker_id = Some("jobs-7d9f-abc".into());
        n.error_message = Some("<script>alert('x')</script> & more".into());
        n.stats = vec![("updated".into(), 0), ("failed".into(), 12)];
        n.dashboard_url = Some("https://jobs.example.com/".into());
        n.reminder_interval = Some(Duration::from_secs(86_400));
        n
    }

    #[test]
    fn a_failure_names_the_job_and_outcome_in_the_subject() {
        assert_eq!(failure().subject(), "[background-jobs] Cost Update failed");
        let mut n = failure();
        n.kind = NoticeKind::Recovery;
        assert_eq!(n.subject(), "[background-jobs] Cost Update recovered");
        n.kind = NoticeKind::Reminder(AlertState::Overdue);
        assert_eq!(
            n.subject(),
            "[background-jobs] Cost Update is still overdue"
        );
    }

    #[test]
    fn the_plain_body_lists_time_duration_error_stats_execution_and_link() {
        let text = failure().plain_text();
        for wanted in [
            "Started:",
            "2026-11-28 03:00:00 UTC",
            "Duration:",
            " 1s\n",
            "#42 (schedule, attempt 3)",
            "Slot:",
            "Server:",
            "jobs-7d9f-abc",
            "<script>alert('x')</script> & more",
            "updated 0, failed 12",
            "https://jobs.example.com/",
            "a reminder every 24h",
        ] {
            assert!(text.contains(wanted), "{wanted:?} missing from:\n{text}");
        }
    }

    #[test]
    fn the_html_body_escapes_every_value() {
        let html = failure().html();
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"),
            "{html}"
        );
        assert!(html.contains("<a href=\"https://jobs.example.com/\">"));
    }

    #[test]
    fn the_webhook_body_has_slack_text_and_structured_details() {
        let body = failure().webhook_json();
        let text = body["text"].as_str().unwrap();
        assert!(
            text.starts_with("❌ Cost Update failed: &lt;script&gt;"),
            "{text}"
        );
        assert!(text.contains("execution #42"), "{text}");
        assert_eq!(body["event"], "failure");
        assert_eq!(body["job_name"], "cost_update");
        assert_eq!(body["display_name"], "Cost Update");
        assert_eq!(body["status"], "failed");
        assert_eq!(body["execution_id"], 42);
        assert_eq!(body["started_at"], "2026-11-28T03:00:00.000Z");
        assert_eq!(body["scheduled_for"], "2026-11-28T03:00:00.000Z");
        assert_eq!(body["worker_id"], "jobs-7d9f-abc");
        assert_eq!(body["duration_ms"], 1234);
        assert_eq!(body["error_message"], "<script>alert('x')</script> & more");
        assert_eq!(body["stats"]["failed"], 12);
        assert_eq!(body["dashboard_url"], "https://jobs.example.com/");
    }

    #[test]
    fn an_overdue_notice_says_since_when_and_the_rule() {
        let mut n = Notice::new(
            NoticeKind::Overdue,
            AlertState::Overdue,
            "cost_update",
            "Cost Update",
            at(),
        );
        n.last_success_at = Some(Utc.with_ymd_and_hms(2026, 11, 26, 3, 0, 30).unwrap());
        n.interval = Some(Duration::from_secs(86_400));
        n.overdue_after = Some(Duration::from_secs(2 * 86_400));
        assert_eq!(
            n.headline(),
            "Cost Update is overdue: no successful run since 2026-11-26 03:00:30 UTC \
             (it normally runs every 24h)."
        );
        assert!(n
            .plain_text()
            .contains("runs every 24h; alert after 48h without success"));
        assert_eq!(n.webhook_json()["status"], serde_json::Value::Null);
    }

    #[test]
    fn run_lengths_read_as_everywhere_else() {
        assert_eq!(millis(250), "250ms");
        assert_eq!(millis(90_400), "90s");
        assert_eq!(millis(-5), "0ms");
    }
}
