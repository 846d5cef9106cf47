//! The notification settings, read from the same [`Vars`] as the rest of the configuration.
//!
//! | variable | default |
//! |---|---|
//! | `SMTP_URL`, `ALERT_EMAIL_FROM`, `ALERT_EMAIL_TO` | unset (all three or none) |
//! | `ALERT_WEBHOOK_URL` | unset |
//! | `ALERT_OVERDUE_FACTOR` | `2` |
//! | `ALERT_OVERDUE_CHECK_SECS` | `300` |
//! | `ALERT_REMINDER_HOURS` | `24` (`0` = never) |
//! | `ALERT_SEND_TIMEOUT_SECS` | `10` |
//! | `ALERT_SEND_ATTEMPTS` | `3` |
//! | `ALERT_RETRY_DELAY_MS` | `1000` |

use std::time::Duration;

use lettre::message::{Mailbox, Mailboxes};
use lettre::{AsyncSmtpTransport, Tokio1Executor};

use crate::config::{ConfigError, Secret, Vars};

/// Default multiple of a job's interval without a success after which it is overdue.
pub const DEFAULT_OVERDUE_FACTOR: f64 = 2.0;
/// Default period of the overdue check.
pub const DEFAULT_OVERDUE_CHECK_SECS: u64 = 300;
/// Default period between reminders while a job stays broken.
pub const DEFAULT_REMINDER_HOURS: u64 = 24;
/// Default limit of one delivery attempt.
pub const DEFAULT_SEND_TIMEOUT_SECS: u64 = 10;
/// Default number of delivery attempts per notice and channel.
pub const DEFAULT_SEND_ATTEMPTS: u32 = 3;
/// Default delay before the second attempt; doubled for each further one.
pub const DEFAULT_RETRY_DELAY_MS: u64 = 1_000;
/// The smallest overdue factor: below it, a run that merely takes a little longer than the
/// previous one would count as overdue.
const MIN_OVERDUE_FACTOR: f64 = 1.5;

/// Everything the notifier reads from the environment.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// E-mail over SMTP (`SMTP_URL`, `ALERT_EMAIL_FROM`, `ALERT_EMAIL_TO`).
    pub email: Option<EmailSettings>,
    /// The webhook (`ALERT_WEBHOOK_URL`).
    pub webhook: Option<WebhookTarget>,
    /// `ALERT_OVERDUE_FACTOR`: a job is overdue when it has not succeeded for this many of
    /// its intervals.
    pub overdue_factor: f64,
    /// `ALERT_OVERDUE_CHECK_SECS`: how often the overdue watch looks.
    pub overdue_check_interval: Duration,
    /// `ALERT_REMINDER_HOURS`: a reminder while a job stays broken, at most this often;
    /// `None` (`0`) for never.
    pub reminder_interval: Option<Duration>,
    /// `ALERT_SEND_TIMEOUT_SECS`: limit of one delivery attempt (SMTP: of each exchange).
    pub send_timeout: Duration,
    /// `ALERT_SEND_ATTEMPTS`: attempts per notice and channel on transient failures.
    pub send_attempts: u32,
    /// `ALERT_RETRY_DELAY_MS`: delay before the second attempt, doubled for each further.
    pub retry_delay: Duration,
}

impl Default for NotifySettings {
    /// No channel, default tunables.
    fn default() -> Self {
        Self {
            email: None,
            webhook: None,
            overdue_factor: DEFAULT_OVERDUE_FACTOR,
            overdue_check_interval: Duration::from_secs(DEFAULT_OVERDUE_CHECK_SECS),
            reminder_interval: Some(Duration::from_secs(DEFAULT_REMINDER_HOURS * 3_600)),
            send_timeout: Duration::from_secs(DEFAULT_SEND_TIMEOUT_SECS),
            send_attempts: DEFAULT_SEND_ATTEMPTS,
            retry_delay: Duration::from_millis(DEFAULT_RETRY_DELAY_MS),
        }
    }
}

impl NotifySettings {
    /// Reads and checks the notification variables; a bad value names its variable.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let email = EmailSettings::from_vars(vars)?;
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
                if !(MIN_OVERDUE_FACTOR..=1_000.0).contains(&factor) {
                    return Err(ConfigError::new(
                        "ALERT_OVERDUE_FACTOR",
                        format!("must be between {MIN_OVERDUE_FACTOR} and 1000, got {raw}"),
                    ));
                }
                factor
            }
        };
        let reminder_hours: u64 =
            vars.int_in("ALERT_REMINDER_HOURS", DEFAULT_REMINDER_HOURS, 0, 24 * 366)?;
        Ok(Self {
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
            send_timeout: vars.secs(
                "ALERT_SEND_TIMEOUT_SECS",
                DEFAULT_SEND_TIMEOUT_SECS,
                1,
                300,
            )?,
            send_attempts: vars.int_in("ALERT_SEND_ATTEMPTS", DEFAULT_SEND_ATTEMPTS, 1, 10)?,
            retry_delay: Duration::from_millis(vars.int_in(
                "ALERT_RETRY_DELAY_MS",
                DEFAULT_RETRY_DELAY_MS,
                0,
                600_000,
            )?),
        })
    }

    /// True when at least one channel is configured.
    pub fn is_enabled(&self) -> bool {
        self.email.is_some() || self.webhook.is_some()
    }
}

/// Where and to whom failure e-mails go.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `SMTP_URL`.
    pub smtp: SmtpTarget,
    /// `ALERT_EMAIL_FROM`.
    pub from: Mailbox,
    /// `ALERT_EMAIL_TO` (at least one).
    pub to: Vec<Mailbox>,
}

impl EmailSettings {
    const VARIABLES: [&'static str; 3] = ["SMTP_URL", "ALERT_EMAIL_FROM", "ALERT_EMAIL_TO"];

    /// `None` when none of the three variables is set; an error naming the first missing
    /// one when only some are.
    fn from_vars(vars: &Vars) -> Result<Option<Self>, ConfigError> {
        let set: Vec<&str> = Self::VARIABLES
            .into_iter()
            .filter(|v| vars.get(v).is_some())
            .collect();
        if set.is_empty() {
            return Ok(None);
        }
        if let Some(missing) = Self::VARIABLES.into_iter().find(|v| vars.get(v).is_none()) {
            return Err(ConfigError::new(
                missing,
                format!(
                    "must be set too: e-mail notices need SMTP_URL, ALERT_EMAIL_FROM and \
                     ALERT_EMAIL_TO (only {} is set)",
                    set.join(" and ")
                ),
            ));
        }
        let smtp = SmtpTarget::parse(vars.get("SMTP_URL").unwrap_or_default())
            .map_err(|message| ConfigError::new("SMTP_URL", message))?;

        let raw_from = vars.get("ALERT_EMAIL_FROM").unwrap_or_default();
        let from: Mailbox = raw_from.parse().map_err(|e| {
            ConfigError::new(
                "ALERT_EMAIL_FROM",
                format!("{raw_from:?} is not an e-mail address such as jobs@example.com ({e})"),
            )
        })?;

        let raw_to = vars.get("ALERT_EMAIL_TO").unwrap_or_default();
        let to: Vec<Mailbox> = raw_to
            .parse::<Mailboxes>()
            .map_err(|e| {
                ConfigError::new(
                    "ALERT_EMAIL_TO",
                    format!(
                        "{raw_to:?} is not a comma-separated list of e-mail addresses such as \
                         ops@example.com, oncall@example.com ({e})"
                    ),
                )
            })?
            .into_iter()
            .collect();
        if to.is_empty() {
            return Err(ConfigError::new(
                "ALERT_EMAIL_TO",
                "must name at least one address",
            ));
        }
        Ok(Some(Self { smtp, from, to }))
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: plain text (a relay on the local network, a test sink).
    None,
    /// `smtp://…?tls=opportunistic`: STARTTLS when the server offers it.
    Opportunistic,
    /// `smtp://…?tls=required`: STARTTLS, refused without it.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Tls,
}

/// A parsed `SMTP_URL`. `Debug` and `Display` hide the password.
#[derive(Clone)]
pub struct SmtpTarget {
    url: Secret,
    host: String,
    port: u16,
    security: SmtpSecurity,
    user: Option<String>,
}

impl SmtpTarget {
    /// Reads `smtp://host[:port]`, `smtp://host[:port]?tls=required|opportunistic` or
    /// `smtps://user:password@host[:port]`. The error never repeats the value (it may hold
    /// a password).
    pub fn parse(raw: &str) -> Result<Self, String> {
        const FORMS: &str = "smtp://host:port, smtp://user:password@host:port?tls=required \
                             or smtps://user:password@host[:port]";
        let url =
            url::Url::parse(raw).map_err(|e| format!("is not a URL ({e}); expected {FORMS}"))?;
        let tls = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let security = match (url.scheme(), tls.as_deref()) {
            ("smtp", None) => SmtpSecurity::None,
            ("smtp", Some("required")) => SmtpSecurity::StartTls,
            ("smtp", Some("opportunistic")) => SmtpSecurity::Opportunistic,
            ("smtp", Some(other)) => {
                return Err(format!(
                    "tls={other:?} is not understood: use tls=required or tls=opportunistic"
                ))
            }
            ("smtps", _) => SmtpSecurity::Tls,
            (scheme, _) => return Err(format!("unknown scheme {scheme:?}: expected {FORMS}")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("has no host; expected {FORMS}"))?
            .to_owned();
        let port = url.port().unwrap_or(match security {
            SmtpSecurity::None => 25,
            SmtpSecurity::Opportunistic | SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
        });
        let user = (!url.username().is_empty()).then(|| url.username().to_owned());
        match (&user, url.password()) {
            (Some(_), None) => return Err("has a user name but no password".to_owned()),
            (None, Some(_)) => return Err("has a password but no user name".to_owned()),
            _ => {}
        }
        // lettre reads the URL itself when the transport is built; make sure it will.
        AsyncSmtpTransport::<Tokio1Executor>::from_url(raw)
            .map_err(|e| format!("cannot be used for SMTP: {e}"))?;
        Ok(Self {
            url: Secret::new(raw),
            host,
            port,
            security,
            user,
        })
    }

    /// The server's host name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The server's port (the scheme's default when the URL names none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How the connection is secured.
    pub fn security(&self) -> SmtpSecurity {
        self.security
    }

    /// The URL with its password, for the one place that connects.
    pub(crate) fn url(&self) -> &Secret {
        &self.url
    }
}

impl std::fmt::Display for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.security == SmtpSecurity::Tls {
            "smtps"
        } else {
            "smtp"
        };
        write!(f, "{scheme}://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}:***@")?;
        }
        write!(f, "{}:{}", self.host, self.port)?;
        match self.security {
            SmtpSecurity::StartTls => write!(f, "?tls=required"),
            SmtpSecurity::Opportunistic => write!(f, "?tls=opportunistic"),
            SmtpSecurity::None | SmtpSecurity::Tls => Ok(()),
        }
    }
}

impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmtpTarget({self})")
    }
}

/// The `ALERT_WEBHOOK_URL`. Such URLs are often credentials themselves (a Slack incoming
/// webhook's path is its secret), so `Debug` and `Display` show only scheme and host.
#[derive(Clone)]
pub struct WebhookTarget(pub url::Url);

impl WebhookTarget {
    /// The whole URL, for the one place that posts to it.
    pub fn url(&self) -> &url::Url {
        &self.0
    }
}

impl std::fmt::Display for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}",
            self.0.scheme(),
            self.0.host_str().unwrap_or("")
        )?;
        if let Some(port) = self.0.port() {
            write!(f, ":{port}")?;
        }
        f.write_str("/***")
    }
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookTarget({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<NotifySettings, ConfigError> {
        NotifySettings::from_vars(&Vars::from_pairs(pairs.iter().copied()))
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
        assert_eq!(email.smtp.security(), SmtpSecurity::None);
        assert_eq!(email.from.email.to_string(), "jobs@example.com");
        let to: Vec<String> = email.to.iter().map(|m| m.email.to_string()).collect();
        assert_eq!(to, ["ops@example.com", "oncall@example.com"]);
    }

    #[test]
    fn smtp_urls_of_every_form_are_understood() {
        let cases = [
            ("smtp://relay.local", 25, SmtpSecurity::None),
            (
                "smtp://u:p@mail.example.com?tls=required",
                587,
                SmtpSecurity::StartTls,
            ),
            (
                "smtp://mail.example.com:2587?tls=opportunistic",
                2587,
                SmtpSecurity::Opportunistic,
            ),
            ("smtps://u:p@mail.example.com", 465, SmtpSecurity::Tls),
            ("smtps://u:p@mail.example.com:1465", 1465, SmtpSecurity::Tls),
        ];
        for (url, port, security) in cases {
            let t = SmtpTarget::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!((t.port(), t.security()), (port, security), "{url}");
        }
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

    #[test]
    fn passwords_and_webhook_paths_never_show() {
        let s = settings(&[
            ("SMTP_URL", "smtps://mailer:hunter2-smtp@mail.example.com"),
            ("ALERT_EMAIL_FROM", "jobs@example.com"),
            ("ALERT_EMAIL_TO", "ops@example.com"),
            (
                "ALERT_WEBHOOK_URL",
                "https://hooks.slack.com/services/T000/B000/sekret-token",
            ),
        ])
        .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2-smtp"), "{debug}");
        assert!(!debug.contains("sekret-token"), "{debug}");
        assert!(
            debug.contains("smtps://mailer:***@mail.example.com:465"),
            "{debug}"
        );
        assert!(debug.contains("https://hooks.slack.com/***"), "{debug}");

        let e = SmtpTarget::parse("ftp://u:hunter2-smtp@mail.example.com").unwrap_err();
        assert!(!e.contains("hunter2-smtp"), "{e}");
    }
}
