//! Unix cron schedules on top of the `cron` crate.
//!
//! Users write standard Unix cron: five fields (`minute hour day-of-month month
//! day-of-week`) or six with seconds first. The `cron` crate reads six or seven fields,
//! numbers weekdays 1–7 from Sunday and always ANDs day-of-month with day-of-week. This
//! module translates:
//!
//! * weekdays are read the Unix way (0–7, 0 and 7 both Sunday, names allowed) and handed
//!   to the crate as names, so no number is ever read the crate's way;
//! * when both day fields are restricted (neither starts with `*`), a day matches if
//!   *either* matches, as in Vixie cron: the schedule is evaluated as two crate schedules
//!   and the earlier fire time wins;
//! * times are evaluated as wall-clock times in the schedule's zone (UTC by default). A
//!   wall-clock slot that falls in a daylight-saving gap fires once at the first valid
//!   instant after the gap; a slot in a repeated (fall-back) hour fires once, at its first
//!   occurrence.

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Checks the characters of one field: digits, names, and `* , - / ?` (and the `#`, `L`,
/// `W` forms the crate knows), with no list or range left open at either end.
fn syntax(field: &str, name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "*,-/?#".contains(c);
    let open_ended = |c: char| ",-/".contains(c);
    if !field.chars().all(allowed) || field.starts_with(open_ended) || field.ends_with(open_ended) {
        return Err(format!(
            "the {name} field {field:?} is not valid cron syntax (digits, names, * , - / only)"
        ));
    }
    Ok(())
}

/// The `cron` crate's message without its echo of `given` (the expression as this module
/// rewrote it, which would confuse) and the caret line under it, on one line.
fn crate_reason(message: &str, given: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != given.trim() && !l.chars().all(|c| c == '^'))
        .collect();
    if lines.is_empty() {
        "a field is not valid cron syntax".to_owned()
    } else {
        lines.join("; ")
    }
}

/// A schedule that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression {expression:?}: {reason}")]
pub struct ScheduleError {
    /// The expression as given.
    pub expression: String,
    /// Why it was refused.
    pub reason: String,
}

/// A parsed Unix cron schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    fields: [String; 6],
    tz: Tz,
    /// Day-of-month branch (or the only schedule when the day fields are ANDed).
    primary: cron::Schedule,
    /// Day-of-week branch, present only when both day fields are restricted (OR).
    secondary: Option<cron::Schedule>,
}

const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
/// How far the fire-time searches walk before declaring that a schedule never fires.
const SEARCH_LIMIT: usize = 1_000;

impl Schedule {
    /// Parses a 5-field (or 6-field, seconds first) Unix cron expression, evaluated in UTC.
    /// The macros `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight` and
    /// `@hourly` are accepted too.
    pub fn parse(expression: &str) -> Result<Self, ScheduleError> {
        Self::parse_in(expression, Tz::UTC)
    }

    /// Parses an expression evaluated as wall-clock time in `tz`.
    pub fn parse_in(expression: &str, tz: Tz) -> Result<Self, ScheduleError> {
        let err = |reason: String| ScheduleError {
            expression: expression.to_owned(),
            reason,
        };
        let trimmed = expression.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_owned(),
            "@monthly" => "0 0 1 * *".to_owned(),
            "@weekly" => "0 0 * * 0".to_owned(),
            "@daily" | "@midnight" => "0 0 * * *".to_owned(),
            "@hourly" => "0 * * * *".to_owned(),
            _ if trimmed.starts_with('@') => return Err(err(format!("unknown macro {trimmed}"))),
            _ => trimmed.to_owned(),
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let fields: [String; 6] = match parts.as_slice() {
            [m, h, dom, mon, dow] => ["0", m, h, dom, mon, dow].map(str::to_owned),
            [s, m, h, dom, mon, dow] => [*s, m, h, dom, mon, dow].map(str::to_owned),
            _ => {
                return Err(err(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with \
                     seconds first, got {}",
                    parts.len()
                )))
            }
        };
        let [sec, min, hour, dom, month, dow] = &fields;
        for (field, name) in [
            (sec, "second"),
            (min, "minute"),
            (hour, "hour"),
            (dom, "day-of-month"),
            (month, "month"),
            (dow, "day-of-week"),
        ] {
            syntax(field, name).map_err(&err)?;
        }
        let dom = if dom == "?" { "*" } else { dom.as_str() };
        let dow_src = if dow == "?" { "*" } else { dow.as_str() };
        for (field, name, low, high) in [
            (sec.as_str(), "second", 0, 59),
            (min.as_str(), "minute", 0, 59),
            (hour.as_str(), "hour", 0, 23),
            (dom, "day-of-month", 1, 31),
            (month.as_str(), "month", 1, 12),
        ] {
            numbers_in_range(field, name, low, high).map_err(&err)?;
        }
        let dow_names = weekday_names(dow_src).map_err(&err)?;
        let build = |dom: &str, dow: &str| {
            let given = format!("{sec} {min} {hour} {dom} {month} {dow}");
            cron::Schedule::from_str(&given).map_err(|e| err(crate_reason(&e.to_string(), &given)))
        };
        let both_restricted = !dom.starts_with('*') && !dow_src.starts_with('*');
        let (primary, secondary) = if both_restricted {
            (build(dom, "*")?, Some(build("*", &dow_names)?))
        } else {
            (build(dom, &dow_names)?, None)
        };
        let schedule = Self {
            expression: trimmed.to_owned(),
            fields: fields.clone(),
            tz,
            primary,
            secondary,
        };
        // Refuse expressions that can never fire, such as 30 February.
        let probe = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if probe.and_then(|p| schedule.next_after(p)).is_none() {
            return Err(err("it never fires".to_owned()));
        }
        Ok(schedule)
    }

    /// The expression as the user wrote it.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The zone the expression is evaluated in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut cursor = self.wall(after);
        for _ in 0..SEARCH_LIMIT {
            let wall = self.next_wall(cursor)?;
            let instant = self.instant(wall)?;
            if instant > after {
                return Some(instant);
            }
            cursor = wall;
        }
        None
    }

    /// The last fire time at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut cursor = self.wall(at) + Duration::seconds(1);
        for _ in 0..SEARCH_LIMIT {
            let wall = self.prev_wall(cursor)?;
            let instant = self.instant(wall)?;
            if instant <= at {
                return Some(instant);
            }
            cursor = wall;
        }
        None
    }

    /// Fire times strictly after `after`, up to and including `until`.
    pub fn fire_times_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut cursor = after;
        std::iter::from_fn(move || {
            let next = self.next_after(cursor)?;
            if next > until {
                return None;
            }
            cursor = next;
            Some(next)
        })
    }

    /// Typical gap between two fire times, measured over the next few of them; used to
    /// judge when a job is overdue.
    pub fn typical_interval(&self, from: DateTime<Utc>) -> Option<Duration> {
        let mut times = Vec::with_capacity(6);
        let mut cursor = from;
        for _ in 0..6 {
            cursor = self.next_after(cursor)?;
            times.push(cursor);
        }
        times.windows(2).map(|w| w[1] - w[0]).max()
    }

    /// The schedule in words, e.g. "every day at 02:00 UTC".
    pub fn describe(&self) -> String {
        describe(&self.fields, &self.tz.to_string())
            .unwrap_or_else(|| format!("cron \"{}\" ({})", self.expression, self.tz))
    }

    /// Wall-clock time of an instant in the schedule's zone, as a UTC-typed value so the
    /// `cron` crate evaluates it without any zone arithmetic of its own.
    fn wall(&self, instant: DateTime<Utc>) -> DateTime<Utc> {
        Utc.from_utc_datetime(&instant.with_timezone(&self.tz).naive_local())
    }

    fn next_wall(&self, cursor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let a = self.primary.after(&cursor).next();
        let b = self
            .secondary
            .as_ref()
            .and_then(|s| s.after(&cursor).next());
        earliest(a, b)
    }

    fn prev_wall(&self, cursor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let a = self.primary.after(&cursor).next_back();
        let b = self
            .secondary
            .as_ref()
            .and_then(|s| s.after(&cursor).next_back());
        match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The real instant of a wall-clock time: the first occurrence in a repeated hour, the
    /// first valid instant after a skipped one.
    fn instant(&self, wall: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let naive: NaiveDateTime = wall.naive_utc();
        if let Some(t) = self.tz.from_local_datetime(&naive).earliest() {
            return Some(t.with_timezone(&Utc));
        }
        // Inside a gap: walk forward minute by minute (gaps are at most a few hours).
        let mut probe = naive;
        for _ in 0..(48 * 60) {
            probe += Duration::minutes(1);
            let probe_min = probe.with_second(0).unwrap_or(probe);
            if let Some(t) = self.tz.from_local_datetime(&probe_min).earliest() {
                return Some(t.with_timezone(&Utc));
            }
        }
        None
    }
}

use chrono::Timelike;

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Checks the numbers of a field (`5`, `1-5`, `*/15`, `10-50/5`, lists of these) against
/// the field's range, so that the message names the field and its range; the `cron`
/// crate's own would show its rewritten expression and an off-by-one bound.
fn numbers_in_range(field: &str, name: &str, low: u32, high: u32) -> Result<(), String> {
    for item in field.split(',') {
        let range = item.split_once('/').map_or(item, |(range, _)| range);
        for token in range.split('-') {
            if let Ok(n) = token.parse::<u32>() {
                if n < low || n > high {
                    return Err(format!("{name} {n} is out of range {low}-{high}"));
                }
            }
        }
    }
    Ok(())
}

/// Reads a Unix day-of-week field (0–7 from Sunday, names, ranges, steps, lists) and
/// renders it as a list of names that the `cron` crate cannot misread.
fn weekday_names(field: &str) -> Result<String, String> {
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("day-of-week step {s:?} is not a number"))?;
                if step == 0 {
                    return Err("day-of-week step must be at least 1".to_owned());
                }
                (r, step)
            }
            None => (item, 1),
        };
        let (start, end) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (weekday(a)?, weekday(b)?)
        } else {
            let day = weekday(range)?;
            // `n/step` runs to the end of the week, as in Vixie cron.
            if item.contains('/') {
                (day, 7)
            } else {
                (day, day)
            }
        };
        if start > end {
            return Err(format!("day-of-week range {range:?} runs backwards"));
        }
        let mut d = start;
        while d <= end {
            days[(d % 7) as usize] = true;
            d += step;
        }
    }
    Ok(WEEKDAYS
        .iter()
        .zip(days)
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(","))
}

fn weekday(token: &str) -> Result<u32, String> {
    if let Ok(n) = token.parse::<u32>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(format!("day-of-week {n} is out of range 0-7"))
        };
    }
    WEEKDAYS
        .iter()
        .position(|d| d.eq_ignore_ascii_case(token))
        .map(|p| p as u32)
        .ok_or_else(|| format!("day-of-week {token:?} is not a number 0-7 or a name"))
}

/// Words for the common shapes; `None` for anything else.
fn describe(fields: &[String; 6], tz: &str) -> Option<String> {
    let [sec, min, hour, dom, month, dow] = fields.each_ref().map(String::as_str);
    let num = |s: &str| s.parse::<u32>().ok();
    let every = |s: &str| s.strip_prefix("*/").and_then(|n| n.parse::<u32>().ok());
    let plural = |n: u32, unit: &str| {
        if n == 1 {
            format!("every {unit}")
        } else {
            format!("every {n} {unit}s")
        }
    };
    let day_part = match (dom, month, dow) {
        ("*", "*", "*") => Some(String::from("every day")),
        ("*", "*", d) => {
            let names = weekday_names(d).ok()?;
            let full: Vec<&str> = names
                .split(',')
                .map(|n| match n {
                    "SUN" => "Sunday",
                    "MON" => "Monday",
                    "TUE" => "Tuesday",
                    "WED" => "Wednesday",
                    "THU" => "Thursday",
                    "FRI" => "Friday",
                    _ => "Saturday",
                })
                .collect();
            Some(format!("every {}", full.join(", ")))
        }
        (d, "*", "*") => num(d).map(|d| format!("on day {d} of every month")),
        (d, m, "*") => {
            let d = num(d)?;
            let m = num(m).filter(|m| (1..=12).contains(m))?;
            Some(format!("every year on {} {d}", MONTHS[(m - 1) as usize]))
        }
        _ => None,
    };
    match (sec, min, hour) {
        ("0", m, h) if num(m).is_some() && num(h).is_some() => Some(format!(
            "{} at {:02}:{:02} {tz}",
            day_part?,
            num(h)?,
            num(m)?
        )),
        ("0", m, "*") if num(m).is_some() && day_part.as_deref() == Some("every day") => {
            Some(format!("every hour at minute {}", num(m)?))
        }
        ("0", "*", "*") if day_part.as_deref() == Some("every day") => {
            Some("every minute".to_owned())
        }
        ("0", m, "*") if every(m).is_some() && day_part.as_deref() == Some("every day") => {
            Some(plural(every(m)?, "minute"))
        }
        ("*", "*", "*") if day_part.as_deref() == Some("every day") => {
            Some("every second".to_owned())
        }
        (s, "*", "*") if every(s).is_some() && day_part.as_deref() == Some("every day") => {
            Some(plural(every(s)?, "second"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Weekday};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next_n(schedule: &Schedule, from: &str, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = utc(from);
        for _ in 0..n {
            t = schedule.next_after(t).unwrap();
            out.push(t);
        }
        out
    }

    #[test]
    fn five_field_daily_schedule_fires_at_two_utc() {
        let s = Schedule::parse("0 2 * * *").unwrap();
        assert_eq!(
            s.next_after(utc("2026-11-28T21:13:00Z")),
            Some(utc("2026-11-29T02:00:00Z"))
        );
        // Strictly after: at the slot itself, the next one is a day later.
        assert_eq!(
            s.next_after(utc("2026-11-29T02:00:00Z")),
            Some(utc("2026-11-30T02:00:00Z"))
        );
    }

    #[test]
    fn weekday_one_means_monday_as_in_unix_cron() {
        let s = Schedule::parse("0 2 * * 1").unwrap();
        for t in next_n(&s, "2026-11-28T00:00:00Z", 5) {
            assert_eq!(t.weekday(), Weekday::Mon, "{t}");
        }
        // 2026-11-30 is a Monday.
        assert_eq!(
            s.next_after(utc("2026-11-28T00:00:00Z")),
            Some(utc("2026-11-30T02:00:00Z"))
        );
    }

    #[test]
    fn weekday_zero_and_seven_are_both_sunday() {
        let zero = Schedule::parse("0 0 * * 0").unwrap();
        let seven = Schedule::parse("0 0 * * 7").unwrap();
        let sun = Schedule::parse("0 0 * * sun").unwrap();
        let a = next_n(&zero, "2026-11-28T00:00:00Z", 3);
        assert_eq!(a, next_n(&seven, "2026-11-28T00:00:00Z", 3));
        assert_eq!(a, next_n(&sun, "2026-11-28T00:00:00Z", 3));
        assert_eq!(a[0], utc("2026-11-29T00:00:00Z")); // a Sunday
    }

    #[test]
    fn weekday_ranges_and_steps_use_unix_numbering() {
        // 5-7: Friday, Saturday, Sunday.
        let s = Schedule::parse("0 0 * * 5-7").unwrap();
        let days: Vec<Weekday> = next_n(&s, "2026-11-23T00:00:00Z", 3)
            .iter()
            .map(|t| t.weekday())
            .collect();
        assert_eq!(days, vec![Weekday::Fri, Weekday::Sat, Weekday::Sun]);
        // 1-5: weekdays only.
        let s = Schedule::parse("30 6 * * 1-5").unwrap();
        for t in next_n(&s, "2026-11-28T00:00:00Z", 10) {
            assert!(!matches!(t.weekday(), Weekday::Sat | Weekday::Sun), "{t}");
        }
        // 1/2: Monday, Wednesday, Friday (to the end of the week).
        let s = Schedule::parse("0 0 * * 1/2").unwrap();
        let days: Vec<Weekday> = next_n(&s, "2026-11-29T00:00:00Z", 3)
            .iter()
            .map(|t| t.weekday())
            .collect();
        assert_eq!(days, vec![Weekday::Mon, Weekday::Wed, Weekday::Fri]);
    }

    #[test]
    fn restricted_day_of_month_and_day_of_week_are_ored() {
        // On the 1st and on every Monday.
        let s = Schedule::parse("0 0 1 * 1").unwrap();
        let got = next_n(&s, "2026-11-28T00:00:00Z", 5);
        let want = [
            "2026-11-30T00:00:00Z", // Monday
            "2026-12-01T00:00:00Z", // the 1st (a Tuesday)
            "2026-12-07T00:00:00Z", // Monday
            "2026-12-14T00:00:00Z",
            "2026-12-21T00:00:00Z",
        ]
        .map(utc);
        assert_eq!(got, want);
    }

    #[test]
    fn a_star_day_field_keeps_and_semantics() {
        // Day-of-week starts with '*': only the day-of-month restriction applies.
        let s = Schedule::parse("0 0 13 * *").unwrap();
        assert_eq!(
            s.next_after(utc("2026-11-28T00:00:00Z")),
            Some(utc("2026-12-13T00:00:00Z"))
        );
    }

    #[test]
    fn six_fields_put_seconds_first() {
        let s = Schedule::parse("*/10 * * * * *").unwrap();
        assert_eq!(
            next_n(&s, "2026-11-28T00:00:05Z", 2),
            vec![utc("2026-11-28T00:00:10Z"), utc("2026-11-28T00:00:20Z")]
        );
    }

    #[test]
    fn invalid_expressions_are_refused_with_a_reason() {
        for bad in [
            "",
            "* * *",
            "0 2 * * 8",
            "61 2 * * *",
            "0 25 * * *",
            "0 2 * * mon-sun-x",
            "0 0 30 2 *",
            "@often",
            "0 2 * * 5-1",
            "0 2 * * */0",
        ] {
            let err = Schedule::parse(bad).unwrap_err();
            assert!(!err.reason.is_empty(), "{bad}");
        }
    }

    #[test]
    fn a_number_out_of_its_fields_range_is_named_with_the_range() {
        for (bad, reason) in [
            ("61 * * * *", "minute 61 is out of range 0-59"),
            ("0 24 * * *", "hour 24 is out of range 0-23"),
            ("0 2 32 * *", "day-of-month 32 is out of range 1-31"),
            ("0 2 0 * *", "day-of-month 0 is out of range 1-31"),
            ("0 2 * 13 *", "month 13 is out of range 1-12"),
            ("0-60/5 0 * * *", "minute 60 is out of range 0-59"),
            ("60 0 2 * * *", "second 60 is out of range 0-59"),
        ] {
            assert_eq!(Schedule::parse(bad).unwrap_err().reason, reason, "{bad}");
        }
        // The bounds themselves, steps and names are fine.
        for good in [
            "59 23 31 12 *",
            "*/15 * * * *",
            "0 2 1 jan-dec *",
            "0-59/15 0 * * *",
        ] {
            assert!(Schedule::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn latest_at_or_before_finds_the_missed_slot() {
        let s = Schedule::parse("0 2 * * *").unwrap();
        assert_eq!(
            s.latest_at_or_before(utc("2026-11-28T05:00:00Z")),
            Some(utc("2026-11-28T02:00:00Z"))
        );
        assert_eq!(
            s.latest_at_or_before(utc("2026-11-28T02:00:00Z")),
            Some(utc("2026-11-28T02:00:00Z"))
        );
        let or = Schedule::parse("0 0 1 * 1").unwrap();
        assert_eq!(
            or.latest_at_or_before(utc("2026-12-03T00:00:00Z")),
            Some(utc("2026-12-01T00:00:00Z"))
        );
    }

    #[test]
    fn spring_forward_gap_slot_runs_once_at_the_next_valid_instant() {
        // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
        let tz: Tz = "America/New_York".parse().unwrap();
        let s = Schedule::parse_in("30 2 * * *", tz).unwrap();
        let got = next_n(&s, "2026-03-07T12:00:00Z", 3);
        assert_eq!(
            got,
            vec![
                utc("2026-03-08T07:00:00Z"), // 03:00 EDT, the first valid instant
                utc("2026-03-09T06:30:00Z"), // 02:30 EDT
                utc("2026-03-10T06:30:00Z"),
            ]
        );
        // Two slots inside the gap collapse into one run.
        let s = Schedule::parse_in("0,30 2 * * *", tz).unwrap();
        let got = next_n(&s, "2026-03-08T06:00:00Z", 2);
        assert_eq!(
            got,
            vec![utc("2026-03-08T07:00:00Z"), utc("2026-03-09T06:00:00Z")]
        );
    }

    #[test]
    fn fall_back_repeated_hour_slot_runs_once() {
        // New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
        let tz: Tz = "America/New_York".parse().unwrap();
        let s = Schedule::parse_in("30 1 * * *", tz).unwrap();
        let got = next_n(&s, "2026-10-31T12:00:00Z", 2);
        assert_eq!(
            got,
            vec![
                utc("2026-11-01T05:30:00Z"), // 01:30 EDT, first occurrence only
                utc("2026-11-02T06:30:00Z"), // 01:30 EST the next day
            ]
        );
        // From inside the repeated hour, the second 01:30 is not fired.
        assert_eq!(
            s.next_after(utc("2026-11-01T06:10:00Z")),
            Some(utc("2026-11-02T06:30:00Z"))
        );
    }

    #[test]
    fn zoned_schedule_fires_at_local_wall_clock_time() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let s = Schedule::parse_in("0 2 * * *", tz).unwrap();
        // Winter: CET is UTC+1.
        assert_eq!(
            s.next_after(utc("2026-11-28T12:00:00Z")),
            Some(utc("2026-11-29T01:00:00Z"))
        );
        // Summer: CEST is UTC+2.
        assert_eq!(
            s.next_after(utc("2026-07-01T12:00:00Z")),
            Some(utc("2026-07-02T00:00:00Z"))
        );
    }

    #[test]
    fn describes_common_schedules_in_words() {
        let d = |e: &str| Schedule::parse(e).unwrap().describe();
        assert_eq!(d("0 2 * * *"), "every day at 02:00 UTC");
        assert_eq!(d("0 3 * * *"), "every day at 03:00 UTC");
        assert_eq!(d("15 4 * * 1"), "every Monday at 04:15 UTC");
        assert_eq!(d("0 0 1 * *"), "on day 1 of every month at 00:00 UTC");
        assert_eq!(d("*/5 * * * *"), "every 5 minutes");
        assert_eq!(d("* * * * *"), "every minute");
        assert_eq!(d("* * * * * *"), "every second");
        assert_eq!(d("0 0 1 * 1"), "cron \"0 0 1 * 1\" (UTC)");
    }

    #[test]
    fn typical_interval_of_a_daily_schedule_is_a_day() {
        let s = Schedule::parse("0 2 * * *").unwrap();
        assert_eq!(
            s.typical_interval(utc("2026-11-28T00:00:00Z")),
            Some(Duration::days(1))
        );
    }

    #[test]
    fn a_bad_field_is_named_on_one_line_without_the_crates_rewritten_echo() {
        for (expression, want) in [
            (
                "-1 * * * *",
                "the minute field \"-1\" is not valid cron syntax",
            ),
            (
                "\u{ff10} * * * *",
                "the minute field \"\u{ff10}\" is not valid cron syntax",
            ),
            (
                "0 1, * * *",
                "the hour field \"1,\" is not valid cron syntax",
            ),
            (
                "0 0 * * MON-",
                "the day-of-week field \"MON-\" is not valid cron syntax",
            ),
            ("*/0 * * * *", "range step cannot be zero"),
            ("L * * * *", "field does not support using names"),
        ] {
            let reason = Schedule::parse(expression).unwrap_err().reason;
            assert!(reason.contains(want), "{expression}: {reason}");
            assert!(
                !reason.contains('\n') && !reason.contains('^'),
                "{expression}: {reason}"
            );
            assert!(!reason.contains("SUN,MON"), "{expression}: {reason}");
        }
    }
}
