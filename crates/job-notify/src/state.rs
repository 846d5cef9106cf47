//! The state machine: what a finished run or an overdue check does to a job's stored
//! notification state, and which notice (if any) that change earns.
//!
//! ```text
//!            run failed for good            check: no success for factor × interval
//!   ok ─────────────────────────▶ failing      ok ─────────────────────▶ overdue
//!   overdue ────────────────────▶ failing      (failing jobs are reminded, not overdue)
//!   failing/overdue ── success ──▶ ok (recovery notice)
//!   failing ── failed again ─────▶ failing (no notice; a reminder when one is due)
//!   failing/overdue ── check ────▶ same state (a reminder when one is due)
//! ```
//!
//! Every arrow into a different state earns exactly one notice; staying broken earns a
//! reminder at most once per reminder period, measured from the last notice. The functions
//! here are pure; [`super::Notifier`] applies their result with a compare-and-set, so when
//! several servers decide the same change only one of them sends.

use std::time::Duration;

use chrono::{DateTime, Utc};
use db::notifications::{AlertRecord, AlertState};

use super::message::NoticeKind;

/// A new state to store, and the notice it earns.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The record to write.
    pub record: AlertRecord,
    /// The notice to send once the write won.
    pub notice: Option<NoticeKind>,
}

/// What the overdue check knows about a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The job is switched off: never overdue, and the overdue clock starts again when it
    /// is switched back on.
    Disabled,
    /// The job runs; it is overdue after this long without a success (`None`: its
    /// schedule gives no interval).
    Enabled {
        /// The interval times the overdue factor.
        overdue_after: Option<Duration>,
    },
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn reminder_due(prev: &AlertRecord, now: DateTime<Utc>, reminder: Option<Duration>) -> bool {
    match reminder {
        None => false,
        Some(every) => prev
            .last_notified_at
            .is_none_or(|t| now - t >= chrono_duration(every)),
    }
}

/// A run of the job finished for good (`succeeded`, or failed after its retries).
/// `None` when nothing changes: the execution was already applied (observed twice, by
/// another server, or an older one arriving late).
pub fn on_run(
    prev: &AlertRecord,
    now: DateTime<Utc>,
    execution_id: i64,
    succeeded: bool,
    error: Option<&str>,
    reminder: Option<Duration>,
) -> Option<Decision> {
    if prev
        .last_execution_id
        .is_some_and(|last| last >= execution_id)
    {
        return None;
    }
    let mut record = prev.clone();
    record.last_execution_id = Some(execution_id);
    if succeeded {
        record.state = AlertState::Ok;
        record.last_success_at = Some(now);
        record.failures = 0;
        record.last_error = None;
        if prev.state == AlertState::Ok {
            return Some(Decision {
                record,
                notice: None,
            });
        }
        record.since = now;
        record.last_notified_at = Some(now);
        return Some(Decision {
            record,
            notice: Some(NoticeKind::Recovery),
        });
    }

    record.state = AlertState::Failing;
    record.last_failure_at = Some(now);
    record.last_error = error.map(str::to_owned);
    if prev.state != AlertState::Failing {
        record.since = now;
        record.failures = 1;
        record.last_notified_at = Some(now);
        return Some(Decision {
            record,
            notice: Some(NoticeKind::Failure),
        });
    }
    record.failures = prev.failures.saturating_add(1);
    let notice = if reminder_due(prev, now, reminder) {
        record.last_notified_at = Some(now);
        Some(NoticeKind::Reminder(AlertState::Failing))
    } else {
        None
    };
    Some(Decision { record, notice })
}

/// The periodic check of one job. `None` when nothing changes.
pub fn on_check(
    prev: &AlertRecord,
    now: DateTime<Utc>,
    check: Check,
    reminder: Option<Duration>,
) -> Option<Decision> {
    let overdue_after = match check {
        Check::Disabled => {
            let mut record = prev.clone();
            record.watch_from = now;
            return Some(Decision {
                record,
                notice: None,
            });
        }
        Check::Enabled { overdue_after } => overdue_after,
    };
    match prev.state {
        AlertState::Ok => {
            let after = overdue_after?;
            if now - overdue_reference(prev) <= chrono_duration(after) {
                return None;
            }
            let mut record = prev.clone();
            record.state = AlertState::Overdue;
            record.since = now;
            record.last_notified_at = Some(now);
            Some(Decision {
                record,
                notice: Some(NoticeKind::Overdue),
            })
        }
        AlertState::Failing | AlertState::Overdue => {
            if !reminder_due(prev, now, reminder) {
                return None;
            }
            let mut record = prev.clone();
            record.last_notified_at = Some(now);
            Some(Decision {
                record,
                notice: Some(NoticeKind::Reminder(prev.state)),
            })
        }
    }
}

/// Where "no success for …" is measured from: the last success, or when watching began
/// (the row's creation, moved forward while the job was disabled), whichever is later.
pub fn overdue_reference(record: &AlertRecord) -> DateTime<Utc> {
    match record.last_success_at {
        Some(success) => success.max(record.watch_from),
        None => record.watch_from,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn t(hours: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(hours)
    }

    fn fresh() -> AlertRecord {
        AlertRecord {
            state: AlertState::Ok,
            since: t(0),
            watch_from: t(0),
            last_success_at: None,
            last_failure_at: None,
            failures: 0,
            last_execution_id: None,
            last_error: None,
            last_notified_at: None,
        }
    }

    /// Applies runs in order and returns the notices they earned.
    fn run_all(runs: &[(i64, bool, i64)]) -> (AlertRecord, Vec<NoticeKind>) {
        let mut record = fresh();
        let mut notices = Vec::new();
        for &(id, ok, hour) in runs {
            if let Some(d) = on_run(&record, t(hour), id, ok, Some("boom"), Some(DAY)) {
                record = d.record;
                notices.extend(d.notice);
            }
        }
        (record, notices)
    }

    #[test]
    fn a_job_that_stays_broken_earns_one_failure_notice_and_one_recovery() {
        let (record, notices) =
            run_all(&[(1, false, 1), (2, false, 2), (3, false, 3), (4, true, 4)]);
        assert_eq!(notices, [NoticeKind::Failure, NoticeKind::Recovery]);
        assert_eq!(record.state, AlertState::Ok);
        assert_eq!(record.failures, 0);
        assert_eq!(record.last_success_at, Some(t(4)));
    }

    #[test]
    fn successes_of_a_healthy_job_earn_nothing() {
        let (_, notices) = run_all(&[(1, true, 1), (2, true, 2)]);
        assert!(notices.is_empty());
    }

    #[test]
    fn a_reminder_comes_once_the_reminder_period_has_passed() {
        let (record, notices) = run_all(&[
            (1, false, 0),
            (2, false, 23),
            (3, false, 24),
            (4, false, 30),
        ]);
        assert_eq!(
            notices,
            [
                NoticeKind::Failure,
                NoticeKind::Reminder(AlertState::Failing)
            ]
        );
        assert_eq!(record.failures, 4);
        assert_eq!(record.since, t(0));
        assert_eq!(record.last_notified_at, Some(t(24)));
    }

    #[test]
    fn no_reminder_when_reminders_are_off() {
        let mut record = fresh();
        let d = on_run(&record, t(0), 1, false, None, None).unwrap();
        record = d.record;
        assert!(on_run(&record, t(100), 2, false, None, None)
            .unwrap()
            .notice
            .is_none());
        assert!(on_check(
            &record,
            t(100),
            Check::Enabled {
                overdue_after: None
            },
            None
        )
        .is_none());
    }

    #[test]
    fn an_execution_seen_twice_or_late_changes_nothing() {
        let (record, _) = run_all(&[(5, false, 1)]);
        assert_eq!(on_run(&record, t(2), 5, false, None, Some(DAY)), None);
        assert_eq!(on_run(&record, t(2), 4, true, None, Some(DAY)), None);
    }

    #[test]
    fn overdue_is_measured_from_the_last_success_or_from_when_watching_began() {
        let check = Check::Enabled {
            overdue_after: Some(2 * DAY),
        };
        // Never succeeded: measured from the row's creation, so a fresh install is quiet.
        assert_eq!(on_check(&fresh(), t(47), check, Some(DAY)), None);
        let d = on_check(&fresh(), t(49), check, Some(DAY)).unwrap();
        assert_eq!(d.notice, Some(NoticeKind::Overdue));
        assert_eq!(d.record.state, AlertState::Overdue);

        let (succeeded, _) = run_all(&[(1, true, 10)]);
        assert_eq!(on_check(&succeeded, t(57), check, Some(DAY)), None);
        assert!(on_check(&succeeded, t(59), check, Some(DAY)).is_some());
    }

    #[test]
    fn an_overdue_job_is_alerted_once_then_reminded_then_recovers() {
        let check = Check::Enabled {
            overdue_after: Some(2 * DAY),
        };
        let overdue = on_check(&fresh(), t(49), check, Some(DAY)).unwrap().record;
        assert_eq!(on_check(&overdue, t(50), check, Some(DAY)), None);
        let reminded = on_check(&overdue, t(73), check, Some(DAY)).unwrap();
        assert_eq!(
            reminded.notice,
            Some(NoticeKind::Reminder(AlertState::Overdue))
        );
        let recovered = on_run(&reminded.record, t(74), 1, true, None, Some(DAY)).unwrap();
        assert_eq!(recovered.notice, Some(NoticeKind::Recovery));
        let failed = on_run(&overdue, t(74), 1, false, None, Some(DAY)).unwrap();
        assert_eq!(failed.notice, Some(NoticeKind::Failure));
    }

    #[test]
    fn a_failing_job_is_reminded_by_the_check_but_never_called_overdue() {
        let (failing, _) = run_all(&[(1, false, 0)]);
        let check = Check::Enabled {
            overdue_after: Some(Duration::from_secs(3_600)),
        };
        assert_eq!(on_check(&failing, t(5), check, Some(DAY)), None);
        assert_eq!(
            on_check(&failing, t(24), check, Some(DAY)).unwrap().notice,
            Some(NoticeKind::Reminder(AlertState::Failing))
        );
    }

    #[test]
    fn a_disabled_job_is_never_overdue_and_restarts_its_clock() {
        let d = on_check(&fresh(), t(100), Check::Disabled, Some(DAY)).unwrap();
        assert_eq!(d.notice, None);
        assert_eq!(d.record.watch_from, t(100));
        let check = Check::Enabled {
            overdue_after: Some(2 * DAY),
        };
        assert_eq!(on_check(&d.record, t(101), check, Some(DAY)), None);
    }
}
