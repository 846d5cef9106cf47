//! The notification variables, read with the rest of the configuration into the
//! notifier's [`NotifySettings`] (the `job-notify` crate checks the values only it
//! understands: SMTP URLs and e-mail addresses).
//! The variables are in the table of [`crate::config`].

use std::time::Duration;

use job_notify::{
    EmailSettings, NotifySettings, WebhookTarget, DEFAULT_OVERDUE_CHECK_SECS,
    DEFAULT_OVERDUE_FACTOR, DEFAULT_REMINDER_HOURS, DEFAULT_RETRY_DELAY_MS, DEFAULT_SEND_ATTEMPTS,
    DEFAULT_SEND_TIMEOUT_SECS, MAX_OVERDUE_FACTOR, MIN_OVERDUE_FACTOR,
};

use super::{ConfigError, Vars};

const EMAIL_VARIABLES: [&str; 3] = ["SMTP_URL", "ALERT_EMAIL_FROM", "ALERT_EMAIL_TO"];

/// Reads and checks the notification variables; a bad value names its variable.
pub(super) fn settings(vars: &Vars) -> Result<NotifySettings, ConfigError> {
    let email = email(vars)?;
    let webhook = vars.url("ALERT_WEBHOOK_URL")?.map(WebhookTarget);

    let overdue_factor = match vars.get("ALERT_OVERDUE_FACTOR") {
        None => DEFAULT_OVERDUE_FACTOR,
        Some(raw) => {
            let factor: f64 = raw.parse().map_err(|_| {
                ConfigError::new(
                    "ALERT_OVERDUE_FACTOR",
                    format!("must be a number such as 2 or 1.5, got {raw:?}"),
                )
            })?;
            if !(MIN_OVERDUE_FACTOR..=MAX_OVERDUE_FACTOR).contains(&factor) {
                return Err(ConfigError::new(
                    "ALERT_OVERDUE_FACTOR",
                    format!(
                        "must be between {MIN_OVERDUE_FACTOR} and {MAX_OVERDUE_FACTOR}, got {raw}"
                    ),
                ));
            }
            factor
        }
    };
    let reminder_hours: u64 =
        vars.int_in("ALERT_REMINDER_HOURS", DEFAULT_REMINDER_HOURS, 0, 24 * 366)?;
    Ok(NotifySettings {
        email,
        webhook,
        overdue_factor,
        overdue_check_interval: vars.secs(
            "ALERT_OVERDUE_CHECK_SECS",
            DEFAULT_OVERDUE_CHECK_SECS,
            1,
            86_400,
        )?,
        reminder_interval: (reminder_hours > 0)
            .then(|| Duration::from_secs(reminder_hours * 3_600)),
        send_timeout: vars.secs("ALERT_SEND_TIMEOUT_SECS", DEFAULT_SEND_TIMEOUT_SECS, 1, 300)?,
        send_attempts: vars.int_in("ALERT_SEND_ATTEMPTS", DEFAULT_SEND_ATTEMPTS, 1, 10)?,
        retry_delay: Duration::from_millis(vars.int_in(
            "ALERT_RETRY_DELAY_MS",
            DEFAULT_RETRY_DELAY_MS,
            0,
            600_000,
        )?),
    })
}

/// `None` when none of the three e-mail variables is set; an error naming the first
/// missing one when only some are.
fn email(vars: &Vars) -> Result<Option<EmailSettings>, ConfigError> {
    let set: Vec<&str> = EMAIL_VARIABLES
        .into_iter()
        .filter(|v| vars.get(v).is_some())
        .collect();
    if set.is_empty() {
        return Ok(None);
    }
    if let Some(missing) = EMAIL_VARIABLES.into_iter().find(|v| vars.get(v).is_none()) {
        return Err(ConfigError::new(
            missing,
            format!(
                "must be set too: e-mail notices need SMTP_URL, ALERT_EMAIL_FROM and \
                 ALERT_EMAIL_TO (only {} is set)",
                set.join(" and ")
            ),
        ));
    }
    let value = |name| vars.get(name).unwrap_or_default();
    EmailSettings::parse(
        value("SMTP_URL"),
        value("ALERT_EMAIL_FROM"),
        value("ALERT_EMAIL_TO"),
    )
    .map(Some)
    .map_err(|e| ConfigError::new(e.variable(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<NotifySettings, ConfigError> {
        super::settings(&Vars::from_pairs(pairs.iter().copied()))
    }

    const EMAIL: [(&str, &str); 3] = [
        ("SMTP_URL", "smtp://127.0.0.1:2525"),
        ("ALERT_EMAIL_FROM", "Jobs <jobs@example.com>"),
        (
            "ALERT_EMAIL_TO",
            "ops@example.com, Oncall <oncall@example.com>",
        ),
    ];

    #[test]
    fn nothing_configured_means_no_channel_and_default_tunables() {
        let s = settings(&[]).unwrap();
        assert!(!s.is_enabled());
        assert_eq!(s.overdue_factor, 2.0);
        assert_eq!(s.overdue_check_interval, Duration::from_secs(300));
        assert_eq!(s.reminder_interval, Some(Duration::from_secs(24 * 3600)));
        assert_eq!(s.send_timeout, Duration::from_secs(10));
        assert_eq!(s.send_attempts, 3);
        assert_eq!(s.retry_delay, Duration::from_secs(1));
    }

    #[test]
    fn email_settings_read_sender_and_every_recipient() {
        let s = settings(&EMAIL).unwrap();
        let email = s.email.expect("e-mail configured");
        assert_eq!(email.smtp.host(), "127.0.0.1");
        assert_eq!(email.smtp.port(), 2525);
        assert_eq!(email.from.email.to_string(), "jobs@example.com");
        assert_eq!(email.to.len(), 2);
    }

    #[test]
    fn partial_email_settings_name_the_missing_variable() {
        let e = settings(&EMAIL[..1]).unwrap_err();
        assert_eq!(e.variable, "ALERT_EMAIL_FROM", "{e}");
        let e = settings(&[EMAIL[0], EMAIL[1]]).unwrap_err();
        assert_eq!(e.variable, "ALERT_EMAIL_TO", "{e}");
        let e = settings(&[EMAIL[2]]).unwrap_err();
        assert_eq!(e.variable, "SMTP_URL", "{e}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let with = |name: &'static str, value: &'static str| {
            let mut pairs = EMAIL.to_vec();
            pairs.retain(|(k, _)| *k != name);
            pairs.push((name, value));
            settings(&pairs)
        };
        let cases = [
            ("SMTP_URL", "not a url"),
            ("SMTP_URL", "http://mail.example.com"),
            ("SMTP_URL", "smtp://mail.example.com?tls=sometimes"),
            ("SMTP_URL", "smtps://user@mail.example.com"),
            ("ALERT_EMAIL_FROM", "jobs-at-example.com"),
            ("ALERT_EMAIL_TO", "ops@example.com, nobody"),
            ("ALERT_WEBHOOK_URL", "hooks.slack.com/services/x"),
            ("ALERT_WEBHOOK_URL", "ftp://hooks.example.com/x"),
            ("ALERT_OVERDUE_FACTOR", "twice"),
            ("ALERT_OVERDUE_FACTOR", "1"),
            ("ALERT_OVERDUE_CHECK_SECS", "0"),
            ("ALERT_REMINDER_HOURS", "-1"),
            ("ALERT_SEND_ATTEMPTS", "0"),
            ("ALERT_SEND_TIMEOUT_SECS", "soon"),
            ("ALERT_RETRY_DELAY_MS", "fast"),
        ];
        for (name, value) in cases {
            let e = with(name, value).unwrap_err();
            assert_eq!(e.variable, name, "{name}={value}: {e}");
        }
    }

    #[test]
    fn a_reminder_period_of_zero_means_never() {
        let s = settings(&[("ALERT_REMINDER_HOURS", "0")]).unwrap();
        assert_eq!(s.reminder_interval, None);
        let s = settings(&[("ALERT_OVERDUE_FACTOR", "3.5")]).unwrap();
        assert_eq!(s.overdue_factor, 3.5);
    }
}
